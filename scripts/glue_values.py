"""Every value a chapter glues (myst-nb `glue`), read from executed notebooks: one line per value.

    python scripts/glue_values.py artifacts/smoke/notebooks > after.txt
    diff before.txt after.txt        # empty when a refactoring changed no number or sentence of the book
    python scripts/glue_values.py artifacts/smoke/notebooks --compare before.txt   # changed / missing / added

Text and Markdown values are printed as they are stored; glued figures are left out (their bytes depend on the
renderer, not on the analysis; `--figures` lists their names), so the diff compares every number and sentence.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

TEXT_MIMES = ("text/markdown", "text/plain")


def glued(notebook: Path) -> dict[str, str]:
    """{name: value} of the glue outputs of one executed notebook."""
    out = {}
    for cell in json.loads(notebook.read_text())["cells"]:
        for o in cell.get("outputs", []):
            record = o.get("metadata", {}).get("scrapbook")
            if not record:
                continue
            prefix, data = record.get("mime_prefix", ""), o.get("data", {})
            mimes = {k.removeprefix(prefix): v for k, v in data.items()}
            if any(m.startswith("image/") for m in mimes):
                out[record["name"]] = "<figure>"
                continue
            mime = next((m for m in TEXT_MIMES if m in mimes), None)
            value = mimes[mime] if mime else "<no text value>"
            out[record["name"]] = "".join(value) if isinstance(value, list) else str(value)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path, help="a folder of executed notebooks (artifacts/<profile>/notebooks)")
    ap.add_argument("--figures", action="store_true", help="also list the glued figures (as <figure>)")
    ap.add_argument("--compare", type=Path, metavar="BEFORE",
                    help="a listing written earlier by this script: report the values that changed, disappeared or "
                         "are new, and exit 1 if any changed or disappeared")
    args = ap.parse_args(argv)
    notebooks = sorted(p for p in args.folder.glob("*.ipynb") if not p.name.endswith((".in.ipynb", ".tmp.ipynb")))
    if not notebooks:
        print(f"error: no executed notebook in {args.folder}: run `make book` first", file=sys.stderr)
        return 2
    lines = [f"{nb.stem}.{name} = {json.dumps(value)}" for nb in notebooks
             for name, value in sorted(glued(nb).items()) if args.figures or value != "<figure>"]
    if args.compare is None:
        print("\n".join(lines))
        return 0
    before = dict(ln.split(" = ", 1) for ln in args.compare.read_text().splitlines() if " = " in ln)
    after = dict(ln.split(" = ", 1) for ln in lines)
    changed = [k for k in before if k in after and before[k] != after[k]]
    missing = [k for k in before if k not in after]
    added = [k for k in after if k not in before]
    for k in changed:
        print(f"changed  {k}: {before[k]} -> {after[k]}")
    for k in missing:
        print(f"missing  {k} (was {before[k]})")
    for k in added:
        print(f"added    {k} = {after[k]}")
    print(f"{len(before)} values before: {len(before) - len(changed) - len(missing)} identical, {len(changed)} changed, "
          f"{len(missing)} missing; {len(added)} added")
    return 1 if changed or missing else 0


if __name__ == "__main__":
    sys.exit(main())

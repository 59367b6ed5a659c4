"""Every value a chapter glues (myst-nb `glue`), read from executed notebooks: one line per value.

    python scripts/glue_values.py artifacts/smoke/notebooks > after.txt
    diff before.txt after.txt        # empty when a refactoring changed no number or sentence of the book

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
    args = ap.parse_args(argv)
    notebooks = sorted(p for p in args.folder.glob("*.ipynb") if not p.name.endswith((".in.ipynb", ".tmp.ipynb")))
    if not notebooks:
        print(f"error: no executed notebook in {args.folder}: run `make book` first", file=sys.stderr)
        return 2
    for nb in notebooks:
        for name, value in sorted(glued(nb).items()):
            if value == "<figure>" and not args.figures:
                continue
            print(f"{nb.stem}.{name} = {json.dumps(value)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

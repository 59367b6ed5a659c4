"""Reading an executed chapter notebook: its glued values as the book shows them, and the sections of its page
(their titles and the ids Sphinx gives them), to say where a value is shown."""

from __future__ import annotations

import json
import re
from pathlib import Path

TEXT_MIMES = ("text/markdown", "text/plain")


def glued(notebook: Path) -> dict[str, str]:
    """{name: value} of the glue outputs of one executed notebook, as scripts/glue_values.py reads them: the text
    of the Markdown or plain-text record ("<figure>" for a glued figure)."""
    out = {}
    for cell in json.loads(Path(notebook).read_text())["cells"]:
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


def shown(raw: str, spec: str = "") -> str:
    """A glued value as the book shows it, `{glue:text}`key:spec`` (myst-nb's own formatting: the plain text read
    as a Python literal, so a string loses its quotes, then formatted with `spec`)."""
    from myst_nb.core.variables import format_plain_text

    return format_plain_text(raw, spec)


def plain(md: str) -> str:
    """Markdown of a glued sentence as plain text (emphasis and code marks dropped)."""
    return re.sub(r"\*\*|`", "", md).strip()


def _cell_text(cell) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
ROLE = re.compile(r"\{[\w:-]+\}`([^`]*)`")


def heading_text(md: str) -> str | None:
    """The text Sphinx makes of a MyST heading (the text of its inline Markdown: code, emphasis and links as their
    text), or None when it pastes a glued value or holds a role (its text is not known from the source)."""
    from markdown_it import MarkdownIt

    if ROLE.search(md):
        return None
    tokens = MarkdownIt("commonmark").parseInline(md)[0].children or []
    return "".join(t.content for t in tokens if t.type in ("text", "code_inline")).strip()


def section_id(title: str) -> str:
    """The id Sphinx gives the section of a heading (docutils' make_id of its text)."""
    from docutils.nodes import make_id

    return make_id(title)


def sections(notebook: Path) -> list[dict]:
    """Every heading of a notebook's Markdown, in order: level, title (None if unknown), id (None if unknown or a
    repeated title, whose id Sphinx numbers) and (cell, offset) where it starts. Fenced blocks are skipped."""
    out, seen = [], set()
    for c, cell in enumerate(json.loads(Path(notebook).read_text())["cells"]):
        if cell["cell_type"] != "markdown":
            continue
        fence, offset = None, 0
        for line in _cell_text(cell).splitlines(keepends=True):
            stripped = line.strip()
            if fence is None and stripped.startswith(("```", ":::")):
                fence = stripped[:3]
            elif fence is not None and stripped.startswith(fence):
                fence = None
            elif fence is None and (m := HEADING.match(stripped)):
                title = heading_text(m[2])
                sid = section_id(title) if title else None
                out.append({"level": len(m[1]), "title": title, "id": None if sid in seen else sid,
                            "at": (c, offset)})
                seen.add(sid)
            offset += len(line)
    return out


def where_shown(notebook: Path, mark: str) -> dict | None:
    """The section that shows `mark` (a glue key, found where a {glue:...} role pastes it; or any other text of the
    notebook, a figure's name or a table's cell): the first occurrence under a level-2 or deeper heading, else the
    first at all, and the heading above it. None when the mark is not in the notebook."""
    cells = json.loads(Path(notebook).read_text())["cells"]
    role = re.compile(r"\{glue(?::\w+)?\}`" + re.escape(mark) + r"[`:]")
    hits = []
    for c, cell in enumerate(cells):
        text = _cell_text(cell)
        hits += [(c, m.start()) for m in (role.finditer(text) if cell["cell_type"] == "markdown" else ())]
        if not re.fullmatch(r"\w+", mark):
            hits += [(c, m.start()) for m in re.finditer(re.escape(mark), text)]
    heads = sections(notebook)
    titles = [h for h in heads if h["level"] == 1 and h["id"]]
    found = []
    for at in sorted(hits):
        above = [h for h in heads if h["at"] <= at]
        if above:  # a heading without a known id: the page's title instead
            found.append(above[-1] if above[-1]["id"] or not titles else titles[0])
    deep = [h for h in found if h["level"] >= 2 and h["id"]]
    top = [h for h in found if h["id"]]
    return (deep or top or [None])[0]


def page_title(notebook: Path) -> str | None:
    heads = [h for h in sections(notebook) if h["level"] == 1]
    return heads[0]["title"] if heads else None

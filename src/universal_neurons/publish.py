"""What a chapter hands to its page: glued numbers and sentences, tables and numbered figures.

A chapter module (universal_neurons.chapters.<name>) computes a `Chapter`; its notebook calls `glue_all` once and
`figure` once per figure. Every figure is also saved under `<run folder>/figures/<chapter>-<name>.png`.
"""

from __future__ import annotations

import errno
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from .atomic import atomic_path
from .errors import UserError


@dataclass
class Chapter:
    """What a chapter computes. `glue`: name -> value, glued as text (or Markdown, for {glue:md}); `tables`: shown
    on the page; `data`: what its figure functions draw; `profile`: the configuration it ran with."""

    name: str
    profile: Any
    glue: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)


def glue_all(ch: Chapter) -> None:
    """Glue every value of the chapter (nothing is displayed: the page's prose places them)."""
    from myst_nb import glue

    for name, value in ch.glue.items():
        glue(name, value, display=False)


def figure(ch: Chapter, name: str, fig) -> Path:
    """Save `fig` as `<figures>/<chapter>-<name>.png` and glue it as `fig-<chapter>-<name>` for a numbered
    {glue:figure} with a caption; the figure is then closed."""
    from matplotlib_inline.backend_inline import set_matplotlib_formats
    from myst_nb import glue

    set_matplotlib_formats("png")
    if fig.get_layout_engine() is None:  # a figure made with a layout (constrained) keeps it
        fig.tight_layout()
    path = Path(ch.profile.figures_dir) / f"{ch.name}-{name}.png"
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
    except OSError as e:  # a read-only (or full) artifacts folder serving cached results: the page still gets it
        if e.errno not in UNWRITABLE:
            raise
        path = _elsewhere(ch, path, e)
        fig.savefig(path, format="png")
    glue(f"fig-{ch.name}-{name}", fig, display=False)
    plt.close(fig)
    return path


UNWRITABLE = (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT)


def _elsewhere(ch: Chapter, path: Path, e: OSError) -> Path:
    """Where a figure goes when its run folder cannot be written: a temporary folder (said once per run)."""
    import sys
    import tempfile

    folder = Path(tempfile.gettempdir()) / "universal-neurons-figures" / Path(path).parent.parent.name
    folder.mkdir(parents=True, exist_ok=True)
    if folder not in _redirected:
        _redirected.add(folder)
        print(f"note: {path.parent} cannot be written ({e.strerror}); this run's figures go to {folder}",
              file=sys.stderr)
    return folder / path.name


_redirected: set[Path] = set()
NEURON_ID = re.compile(r"\bL\d+\.\d+\b")


def linked_html(df, links: dict[str, str], max_rows: int | None = None) -> str:
    """`df` as an HTML table (class dataframe) whose text cells have every neuron id in `links` ("L<l>.<n>")
    made a link to its page; all other text escaped."""
    import html

    import pandas as pd

    def cell(v):
        if not isinstance(v, str):
            return v
        return NEURON_ID.sub(lambda m: f'<a href="{links[m[0]]}">{m[0]}</a>' if m[0] in links else m[0], html.escape(v))

    out = df.copy()
    for col in out.columns:
        if out[col].dtype == object or pd.api.types.is_string_dtype(out[col]):
            out[col] = out[col].map(cell)
    out.columns = [html.escape(str(c)) for c in out.columns]
    return out.to_html(escape=False, max_rows=max_rows or pd.get_option("display.max_rows"))


def table(ch: Chapter, name: str):
    """A chapter table for its page, the reference's neuron ids linked to their neuron-explorer pages (built by
    `make book`); plain when the explorer has nothing for this run."""
    from IPython.display import HTML

    if "_links" not in ch.data:
        from .neuron_site import links

        try:
            ch.data["_links"] = links(ch.profile)
        except (UserError, OSError):  # no universality tables for this run (yet): plain ids
            ch.data["_links"] = {}
    return HTML(linked_html(ch.tables[name], ch.data["_links"]))


def remove_injected_parameters(notebook) -> None:
    """Tag papermill's injected-parameters cell `remove-cell` in an executed notebook, in place: the page opens
    with prose and numbers; the values stay in the notebook file (and in the run's config.yaml)."""
    import json

    from .atomic import write_text

    path = Path(notebook)
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
    write_text(path, json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


def _one_line_error(shell, etype, value, tb, tb_offset=None):
    """IPython's handler of a UserError: the cell fails (papermill stops the build) with `error: <line>` as its
    whole traceback, as the CLI prints it."""
    stb = [f"error: {value}"]
    shell._showtraceback(etype, value, stb)
    return stb


def one_line_errors_in_notebook() -> bool:
    """In an IPython kernel, show a UserError as one line (`error: <line>`) instead of a traceback; the cell still
    fails. Called when this module is imported (every chapter's notebook imports it before computing)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None:
        return False
    shell.set_custom_exc((UserError,), _one_line_error)
    return True


one_line_errors_in_notebook()


if __name__ == "__main__":  # python -m universal_neurons.publish NOTEBOOK...: used by the Makefile after papermill
    import sys

    for arg in sys.argv[1:]:
        remove_injected_parameters(arg)

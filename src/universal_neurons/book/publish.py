"""What a chapter hands to its page: glued numbers and sentences, tables and numbered figures.

A chapter module (universal_neurons.book.chapters.<name>) computes a `Chapter`; its notebook calls `glue_all` once and
`figure` once per figure. Every figure is also saved under `<run folder>/figures/<chapter>-<name>.png`.
"""

from __future__ import annotations

import errno
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from ..core.atomic import atomic_path, write_text
from ..core.errors import UserError
from ..core.paths import project_dir
from ..explorer.links import links


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


def figure(ch: Chapter, name: str, fig, caption: str | None = None, absent: str | None = None) -> Path:
    """Save `fig` as `<figures>/<chapter>-<name>.png` and glue it as `fig-<chapter>-<name>` for a numbered
    {glue:figure} with a caption; the figure is then closed. With `caption`, also glue `fig-<chapter>-<name>-md`,
    which the page pastes with a `{glue:md}` directive (format myst): the numbered figure with that caption, or,
    when `absent` is a sentence (the figure would show nothing), that sentence instead of a figure."""
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
    if caption is not None:
        from IPython.display import Markdown

        glue(f"fig-{ch.name}-{name}-md", Markdown(figure_markdown(f"fig-{ch.name}-{name}", caption, absent)),
             display=False)
    return path


def figure_markdown(key: str, caption: str, absent: str | None = None) -> str:
    """MyST for a `{glue:md}` directive: the glued figure `key`, numbered and named `key`, with `caption`; or the
    sentence `absent` (no numbered figure) when the figure would show nothing."""
    if absent:
        return absent
    return f"```{{glue:figure}} {key}\n:name: {key}\n\n{caption.strip()}\n```"


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


def linked_ids(text: str, links: dict[str, str]) -> str:
    """`text` (Markdown) with every neuron id in `links` ("L<l>.<n>") made an HTML link to its page."""
    import html

    return NEURON_ID.sub(lambda m: f'<a href="{html.escape(links[m[0]])}">{m[0]}</a>' if m[0] in links else m[0],
                         text)


def _links(ch: Chapter) -> dict[str, str]:
    """The neuron explorer's links of the chapter's run (cached in ch.data); none when it has nothing for it."""
    if "_links" not in ch.data:
        try:
            ch.data["_links"] = links(ch.profile)
        except (UserError, OSError):  # no universality tables for this run (yet): plain ids
            ch.data["_links"] = {}
    return ch.data["_links"]


def glue_linked(ch: Chapter, *keys: str) -> None:
    """Glue `<key>_md` for each glued text `key` that names neurons: the same text, its neuron ids linked to their
    explorer pages (for a `{glue:md}` role in the prose)."""
    from IPython.display import Markdown
    from myst_nb import glue

    for key in keys:
        glue(f"{key}_md", Markdown(linked_ids(str(ch.glue[key]), _links(ch))), display=False)


def table(ch: Chapter, name: str, empty: str | None = None):
    """A chapter table for its page, the reference's neuron ids linked to their neuron-explorer pages (built by
    `make book`); plain when the explorer has nothing for this run. A table without rows is the sentence `empty`
    instead, when given (a header with nothing under it says nothing)."""
    from IPython.display import HTML, Markdown

    if empty is not None and len(ch.tables[name]) == 0:
        return Markdown(empty)
    return HTML(linked_html(ch.tables[name], _links(ch)))


def _one_line_error(shell, etype, value, tb, tb_offset=None):
    """IPython's handler of a UserError: the cell fails (papermill stops the build) with `error: <line>` as its
    whole traceback, as the CLI prints it."""
    stb = [f"error: {value}"]
    shell._showtraceback(etype, value, stb)
    return stb


def _kernel_shell():
    """The running IPython shell (a chapter's kernel), or None outside one."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()


def one_line_errors_in_notebook() -> bool:
    """In an IPython kernel, show a UserError as one line (`error: <line>`) instead of a traceback; the cell still
    fails. Called when this module is imported (every chapter's notebook imports it before computing)."""
    shell = _kernel_shell()
    if shell is None:
        return False
    shell.set_custom_exc((UserError,), _one_line_error)
    return True


def build_log(text: str) -> None:
    """Write `text` to the kernel process's original stderr (papermill's terminal: the build's log), not to the
    page: ipykernel forwards file descriptor 2 into the notebook, so its saved copy of the original is used; without
    one (a plain Python process), sys.__stderr__."""
    import os
    import sys

    fd = getattr(sys.stderr, "_original_stdstream_copy", None)
    try:
        if fd is not None:
            os.write(fd, text.encode("utf-8", "replace"))
        else:
            sys.__stderr__.write(text)
    except (AttributeError, OSError, ValueError):  # no stderr at all: the line is dropped, never put on the page
        pass


class _BuildLog:
    """A file-like object writing to `build_log` (for logging's last-resort handler)."""

    def write(self, text):
        build_log(text)

    def flush(self):
        pass


def _to_build_log(message, category, filename, lineno, file=None, line=None):
    """warnings.showwarning in a chapter's kernel: the warning goes to the build's log, not into the page."""
    import warnings

    build_log(warnings.formatwarning(message, category, filename, lineno, line))


def _series_html(s) -> str:
    """A pandas Series on a page: a two-column table (label, value), never its text repr ("Name: ..., dtype: ...")."""
    import pandas as pd

    frame = pd.DataFrame({"": [str(v) for v in s.to_numpy()]}, index=[str(i) for i in s.index])
    return frame.to_html(header=False, escape=True)


def quiet_kernel() -> bool:
    """In an IPython kernel (a chapter's notebook, which imports this module before computing), keep the page to
    what the chapter shows: no progress bars (tqdm's, Hugging Face's), warnings and library log lines sent to the
    kernel's own stderr (the build's log) instead of the page, table cells never cut (pandas' max_colwidth) and a
    Series shown as a table. `UN_PROGRESS=1` keeps the progress bars (a reader running a chapter by hand)."""
    import logging
    import os
    import sys
    import warnings

    shell = _kernel_shell()
    if shell is None:
        return False
    if os.environ.get("UN_PROGRESS") != "1":
        os.environ["TQDM_DISABLE"] = "1"  # tqdm reads it when first imported
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
        import tqdm.std

        init = tqdm.std.tqdm.__init__
        if not getattr(init, "_quiet", False):  # tqdm already imported: every bar (std, auto, notebook) disabled

            def quiet_init(self, *args, **kwargs):
                kwargs["disable"] = True
                init(self, *args, **kwargs)

            quiet_init._quiet = True
            tqdm.std.tqdm.__init__ = quiet_init
        for name, call in (("huggingface_hub.utils", "disable_progress_bars"),
                           ("transformers.utils.logging", "disable_progress_bar")):
            if name in sys.modules:
                getattr(sys.modules[name], call)()
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    warnings.showwarning = _to_build_log
    logging.lastResort = logging.StreamHandler(_BuildLog())
    logging.lastResort.setLevel(logging.WARNING)
    import pandas as pd

    pd.set_option("display.max_colwidth", None)
    shell.display_formatter.formatters["text/html"].for_type(pd.Series, _series_html)
    return True


def glue_spec(chapter: str, key: str, root=None) -> str | None:
    """The format spec with which the chapter's page shows glued value `key` ({glue:text}`key:spec` in
    notebooks/<chapter>.py), or None when the page names it without one (or not at all)."""
    try:
        text = (Path(root or project_dir()) / "notebooks" / f"{chapter}.py").read_text()
    except OSError:
        return None
    m = re.search(r"\{glue(?::text)?\}`" + re.escape(key) + r":([^`]+)`", text)
    return m[1] if m else None


def as_shown(value: str, spec: str | None) -> str:
    """A glued value (its text) as a page shows it: with the page's format spec when it has one, else a number with
    at most four significant digits (an integer as it is); text unchanged."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return value
    if spec:
        try:
            return format(x, spec)
        except ValueError:
            return value
    if x.is_integer() and re.fullmatch(r"-?\d+(\.0+)?", str(value).strip()):
        return f"{int(x):,}" if abs(x) >= 10_000 else str(int(x))
    return f"{x:.4g}"


def values_as_shown(values, root=None):
    """The claims page's table of the values it read (columns chapter, key, value), each value formatted as its
    chapter's page shows it (`glue_spec`, `as_shown`)."""
    out = values.copy()
    out["value"] = [as_shown(v, glue_spec(c, k, root)) for c, k, v in zip(out["chapter"], out["key"], out["value"])]
    return out


one_line_errors_in_notebook()
quiet_kernel()

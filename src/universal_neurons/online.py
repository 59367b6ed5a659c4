"""The book online: the repository and base URL (set once, in `_config.yml`), the setup cell that lets a chapter
run on a fresh cloud machine (Colab, Binder), and the build's configuration with its date, commit and profile in
every page's footer. Used by the Makefile around `jupyter-book build`."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from pathlib import Path

import yaml

from .atomic import write_text
from .errors import UserError

SETUP_TAG = "setup"  # the setup cell's tag (with remove-cell: not on the page)
PUBLISHED = "book/generated/{name}.ipynb"  # where the publish step keeps each executed chapter (launch buttons)

SETUP_CELL = '''\
# Setup for a fresh cloud machine (Colab, Binder): find the companion's checkout, or clone it, and install the
# package. Inside the checkout with the package installed, it does nothing.
import importlib.util, os, pathlib, subprocess, sys
REPOSITORY, BRANCH = {url!r}, {branch!r}
_cwd = pathlib.Path.cwd()
_root = next((p for p in [_cwd, *_cwd.parents] if (p / "src" / "universal_neurons").is_dir()), None)
if _root is None:  # not in a checkout: clone the published branch (sources, shipped zoo, executed chapters)
    subprocess.run(["git", "clone", "--depth", "1", "--branch", BRANCH, REPOSITORY, "universal-neurons-companion"],
                   check=True)
    _root = pathlib.Path("universal-neurons-companion").resolve()
if _root != _cwd:
    os.chdir(_root)  # the chapters read and write relative to the checkout (artifacts/, zoo/)
if importlib.util.find_spec("universal_neurons") is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-r", "requirements.lock", "-e", "."], check=True)
    sys.path.insert(0, str(_root / "src"))'''


def book_config(path="_config.yml") -> dict:
    """The book's configuration (`_config.yml`)."""
    try:
        return yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise UserError(f"cannot read the book configuration {path} ({type(e).__name__}); restore it with "
                        f"`git checkout -- {path}`") from None


def repository(cfg: dict) -> tuple[str, str]:
    """(url, branch) of the repository block: where the launch buttons and the setup cell find the chapters."""
    repo = cfg.get("repository") or {}
    url, branch = repo.get("url"), repo.get("branch")
    if not url or not branch:
        raise UserError("_config.yml has no repository url or branch; set `repository: {url: ..., branch: ...}`")
    return str(url), str(branch)


def setup_cell(url: str, branch: str) -> str:
    """The setup cell's source for this repository and branch."""
    return SETUP_CELL.format(url=url, branch=branch)


def add_setup_cell(notebook, url: str, branch: str) -> None:
    """Put the setup cell first in `notebook` (an .ipynb file), tagged remove-cell: once, in place."""
    path = Path(notebook)
    nb = json.loads(path.read_text())
    cells = [c for c in nb["cells"] if SETUP_TAG not in c.get("metadata", {}).get("tags", [])]
    cell = {"cell_type": "code", "execution_count": None, "id": "setup", "outputs": [],
            "metadata": {"tags": ["remove-cell", SETUP_TAG]}, "source": setup_cell(url, branch).splitlines(True)}
    nb["cells"] = [cell, *cells]
    write_text(path, json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


def commit(root=".") -> str:
    """The checkout's commit (short), with "+changes" when the working tree differs from it; "unknown" outside git."""
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=10", "HEAD"], capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("+changes" if dirty else "")


def footer(run: str, sha: str, when: dt.datetime) -> str:
    """The line every page ends with: when, from which commit and with which profile it was built."""
    return (f'<p class="build-info">Built on {when:%Y-%m-%d %H:%M} UTC from commit <code>{sha}</code> with the '
            f'profile <code>{run}</code>.</p>')


def write_build_config(out, run: str, source="_config.yml", when: dt.datetime | None = None) -> Path:
    """`_config.yml` with the build's footer (date, commit, profile run), written to `out` for
    `jupyter-book build --config`."""
    cfg = book_config(source)
    when = when or dt.datetime.now(dt.timezone.utc)
    html = cfg.setdefault("html", {})
    html["extra_footer"] = footer(run, commit(Path(source).parent), when)
    write_text(Path(out), yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))
    return Path(out)


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m universal_neurons.online", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("setup-cell", help="put the setup cell first in each notebook")
    s.add_argument("notebooks", nargs="+")
    c = sub.add_parser("config", help="write the build's configuration (footer: date, commit, profile)")
    c.add_argument("--out", required=True)
    c.add_argument("--run", required=True, help="the profile's run name")
    args = ap.parse_args(argv)
    if args.cmd == "setup-cell":
        url, branch = repository(book_config())
        for nb in args.notebooks:
            add_setup_cell(nb, url, branch)
    else:
        write_build_config(args.out, args.run)
    return 0


if __name__ == "__main__":
    import sys

    from .cli import one_line_errors

    sys.exit(one_line_errors(main)())

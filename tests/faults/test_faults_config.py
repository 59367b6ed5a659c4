"""Configuration and parameters: every bad value is one line (`error: ...`, exit status 2 through the
CLI; a UserError in a chapter's `compute` and in a notebook) before any work, and nothing is written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from universal_neurons import UserError, load_profile
from universal_neurons.__main__ import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def art(tmp_path, monkeypatch) -> Path:
    """An empty artifacts root: a refused run must leave it empty."""
    root = tmp_path / "artifacts"
    monkeypatch.setenv("UN_ARTIFACTS", str(root))
    return root


def _nothing_written(art: Path) -> bool:
    return not art.exists() or not any(art.rglob("*"))


def _cli(capsys, *argv) -> tuple[int, str]:
    rc = main(list(argv))
    err = capsys.readouterr().err.strip()
    return rc, err


def _one_line(err: str, pattern: str) -> None:
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    assert re.search(pattern, err), err


@pytest.fixture
def no_cuda(monkeypatch):
    """This machine without CUDA, whatever it has."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


# ---- profile values through the CLI: one line, exit 2, nothing written ------------------------------------------
CASES = [
    ("train.tokens=abc", r"train\.tokens='abc' \(override\) must be a whole number >= 1; e\.g\. train\.tokens="),
    ("train.batch_size=0", r"train\.batch_size=0 \(override\) must be a whole number >= 1"),
    ("train.seeds=abc", r"train\.seeds='abc' \(override\) must be a non-empty list of distinct whole numbers"),
    ("train=5", r"override 'train=5': train is a section; set one key at a time"),
    ("book.threshold=-1", r"book\.threshold=-1 \(override\) must be a number in \(0, 1\] or control"),
    ("book.threshold=2.0", r"book\.threshold=2\.0 \(override\) must be a number in \(0, 1\] or control"),
    ("book.threshold=abc", r"book\.threshold='abc' \(override\) must be a number in \(0, 1\] or control"),
    ("analysis.n_tokens=0", r"analysis\.n_tokens=0 \(override\) must be a whole number >= 1"),
    ("analysis.max_accumulator_gb=0", r"analysis\.max_accumulator_gb=0 \(override\) must be a number in \[0\.001, inf\)"),
    ("analysis.chunk_tokens=0", r"analysis\.chunk_tokens=0 \(override\) must be a whole number >= 1"),
    ("analysis.batch_size=-3", r"analysis\.batch_size=-3 \(override\) must be a whole number >= 1"),
    ("analysis.partners=3", r"analysis\.partners=3 \(override\) must be a non-empty list"),
    ("analysis.reference_seed=9", r"reference_seed=9 is not among train\.seeds \[0, 1, 2\]; set "
                                  r"analysis\.reference_seed=0 .*or add 9 to train\.seeds \(e\.g\. train\.seeds=\[0, 1, 2, 9\]\)"),
    ("analysis.partners=[0]", r"analysis\.partners=\[0\] names the reference 0 itself; remove it"),
    ("analysis.partners=[1, 1]", r"analysis\.partners=\[1, 1\] names a member twice"),
    ("model.n_ctx=0", r"model\.n_ctx=0 \(override\) must be a whole number >= 1"),
    ("model.n_ctx=abc", r"model\.n_ctx='abc' \(override\) must be a whole number >= 1"),
    ("book.threshold=control analysis.control=false", r"book\.threshold=control needs the untrained control "
                                                      r"\(analysis\.control=false\); set analysis\.control=true"),
    ("train.seeds=[0, 1", r"unclosed bracket"),
]


@pytest.mark.parametrize("override,pattern", CASES, ids=[c[0] for c in CASES])
def test_bad_override_is_one_line(override, pattern, art, tmp_path, capsys):
    out = tmp_path / "config.yaml"
    rc, err = _cli(capsys, "config", "--profile", "smoke", "--set", override, "--write", str(out))
    assert rc == 2
    _one_line(err, pattern)
    assert not out.exists() and _nothing_written(art)


def test_models_partners_naming_the_reference(art, capsys):
    rc, err = _cli(capsys, "config", "--profile", "gpt2-small",
                   "--set", "models.partners=[stanford-crfm/alias-gpt2-small-x21]")
    assert rc == 2
    _one_line(err, r"models\.partners names the reference 'stanford-crfm/alias-gpt2-small-x21' itself")


def test_threshold_control_on_real_checkpoints(art, capsys):
    rc, err = _cli(capsys, "config", "--profile", "gpt2-small", "--set", "book.threshold=control")
    assert rc == 2
    _one_line(err, r"book\.threshold=control needs the untrained control \(real checkpoints have none here\); "
                   r"set a number, e\.g\. book\.threshold=0\.5")


# ---- profile files --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text,pattern", [
    ("train: {seeds: [0, 1\n", r"bad\.yaml is not valid YAML \(.* at line \d+, column \d+\); fix that line"),
    ("", r"bad\.yaml is empty; a profile needs at least a train: or a models: section"),
    ("- 1\n- 2\n", r"bad\.yaml is not a mapping of sections \(got list\)"),
    (b"\xff\xfe\x00bad", r"bad\.yaml cannot be read \(UnicodeDecodeError"),
], ids=["malformed", "empty", "list", "not-utf8"])
def test_bad_profile_file(text, pattern, art, tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    rc, err = _cli(capsys, "where", "--profile", str(path))
    assert rc == 2
    _one_line(err, pattern)
    assert _nothing_written(art)


# ---- the device -----------------------------------------------------------------------------------------------
def test_cuda_absent_through_the_cli(no_cuda, art, capsys):
    rc, err = _cli(capsys, "universality", "--profile", "smoke", "--device", "cuda")
    assert rc == 2
    _one_line(err, r"device 'cuda' asked for, but torch sees no CUDA device here: use --device cpu")
    assert _nothing_written(art)


def test_unknown_device_through_the_cli(art, capsys):
    rc, err = _cli(capsys, "properties", "--profile", "smoke", "--device", "gpu0")
    assert rc == 2
    _one_line(err, r"unknown device 'gpu0': use cpu, cuda, cuda:<k> or mps")


@pytest.mark.parametrize("chapter", ["zoo", "universality", "properties", "families", "prediction", "entropy", "attention",
                                     "mysteries", "scale"])
def test_cuda_absent_through_a_chapter(chapter, no_cuda, art):
    import importlib

    compute = importlib.import_module(f"universal_neurons.book.chapters.{chapter}").compute
    with pytest.raises(UserError, match=r"^device 'cuda' asked for, but torch sees no CUDA device here") as e:
        compute("smoke", device="cuda", overrides="")
    assert "\n" not in str(e.value)
    assert _nothing_written(art)


@pytest.mark.parametrize("kwargs,pattern", [
    ({"profile": "smok"}, r"^unknown profile 'smok'; choose one of: .*smoke"),
    ({"profile": 3}, r"^profile=3 must be a profile name \(.*\) or the path of a \.yaml file"),
    ({"overrides": 5}, r"^overrides=5 must be text of section\.key=value items"),
    ({"overrides": "book.threshold=2.0"}, r"book\.threshold=2\.0 \(override\) must be a number in \(0, 1\]"),
    ({"overrides": "analysis.n_tokens=0"}, r"analysis\.n_tokens=0 \(override\) must be a whole number >= 1"),
    ({"device": 0}, r"^device=0 must be text: cpu, cuda"),
], ids=["unknown-profile", "profile-int", "overrides-int", "threshold", "n_tokens", "device-int"])
def test_bad_chapter_parameters(kwargs, pattern, art):
    from universal_neurons.book.chapters import universality

    args = {"profile": "smoke", "device": "cpu", "overrides": "", **kwargs}
    with pytest.raises(UserError, match=pattern) as e:
        universality.compute(args["profile"], device=args["device"], overrides=args["overrides"])
    assert "\n" not in str(e.value)
    assert _nothing_written(art)


def test_load_profile_checks_the_device_only_when_given(no_cuda):
    assert load_profile("smoke").name == "smoke"  # no device: nothing about CUDA
    with pytest.raises(UserError, match="no CUDA device"):
        load_profile("smoke", device="cuda:1")


# ---- a notebook: papermill fails the build with the one line visible ---------------------------------------------
def test_papermill_bad_override_fails_with_one_line(tmp_path):
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    params = nbformat.v4.new_code_cell('profile = "smoke"\ndevice = "cpu"\noverrides = ""')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params,
                nbformat.v4.new_code_cell("from universal_neurons.book import publish\n"
                                          "from universal_neurons.book.chapters import zoo as chapter"),
                nbformat.v4.new_code_cell("ch = chapter.compute(profile, device=device, overrides=overrides)")]
    src, out = tmp_path / "in.ipynb", tmp_path / "out.ipynb"
    nbformat.write(nb, src)
    env = {**os.environ, "UN_ARTIFACTS": str(tmp_path / "artifacts"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "papermill", "--no-progress-bar", "-k", "python3", "--cwd", str(ROOT),
                           str(src), str(out), "-p", "overrides", "book.threshold=2.0"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode != 0  # make book stops here
    line = ("error: profile 'smoke': book.threshold=2.0 (override) must be a number in (0, 1] or control; "
            "e.g. book.threshold=0.5")
    assert line in proc.stderr
    executed = nbformat.read(out, as_version=4)
    errors = [o for c in executed.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.output_type == "error"]
    assert len(errors) == 1 and errors[0].ename == "UserError"
    assert len(errors[0].traceback) == 1 and errors[0].traceback[0].startswith(line)  # one line, no traceback
    assert _nothing_written(tmp_path / "artifacts")


def test_one_line_handler_outside_a_kernel_is_a_no_op():
    from universal_neurons.book import publish

    assert publish.one_line_errors_in_notebook() is False  # plain Python: nothing registered, nothing raised


# ---- the shipped zoo: an override of its recipe says so in one line ---------------------------------------------
def test_recipe_override_of_a_shipped_zoo_is_said(monkeypatch):
    from universal_neurons.config import recipe

    monkeypatch.chdir(ROOT)  # the shipped zoo lies in the checkout
    assert recipe.recipe_note(load_profile("default")) is None
    assert recipe.recipe_note(load_profile("default", "train.seeds=[0, 1, 2, 3, 4] book.threshold=0.4")) is None
    note = recipe.recipe_note(load_profile("default", "train.tokens=1e6 tokenizer.vocab_size=2048"))
    assert "\n" not in note
    assert re.match(r"note: profile 'default' differs from the shipped zoo zoo/release in "
                    r"tokenizer\.vocab_size=2048 \(shipped: 4096\), train\.tokens=1000000 \(shipped: 25000000\): "
                    r"its 4 seed\(s\) are trained here into artifacts/default\+[0-9a-f]{10}/zoo", note), note
    assert recipe.recipe_note(load_profile("smoke")) is None  # no shipped zoo: nothing to say


# ---- analysis.n_tokens beyond what the held-out rows hold: one line where the rows are known ---------------------
def test_n_tokens_beyond_the_heldout_rows():
    import numpy as np

    from universal_neurons.measures.activations import plan_tokens

    rows = np.arange(2 * 8).reshape(2, 8)  # 16 tokens, token 0 dropped: 15 kept
    with pytest.raises(UserError, match=r"^the held-out split keeps only 15 tokens \(2 rows, .*\) but 100 were "
                                        r"requested; lower analysis\.n_tokens") as e:
        plan_tokens(rows, np.array([0]), 100, 8)
    assert "\n" not in str(e.value)
    assert plan_tokens(rows, np.array([0]), 15, 8).n_rows == 2  # exactly what they hold: accepted

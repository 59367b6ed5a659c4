"""Runs that cannot collide, leave nothing half-written and stop early, in one line, on the machine's faults:
the run-folder lock, the writable / free-space checks, disk faults anywhere, leftovers of killed runs."""

import errno
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
import types
from pathlib import Path

import pytest
import torch

from universal_neurons import UserError
from universal_neurons.core import atomic
from universal_neurons.models import zoo
from universal_neurons.__main__ import main
from universal_neurons.core.lock import LOCK_NAME, clean_leftovers, run_lock
from universal_neurons.measures.pass_checkpoints import _drop_stale_states, _resume

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def arts(tmp_path, monkeypatch):
    """An empty artifacts root of its own: the smoke profile's run folder is <tmp>/smoke."""
    monkeypatch.setenv("UN_ARTIFACTS", str(tmp_path))
    monkeypatch.setenv("UN_LOCK_WAIT", "0.5")
    return tmp_path


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("error: ")
    return err[-1]


def tmp_leftovers(folder) -> list[Path]:
    return [p for p in Path(folder).rglob("*.tmp")]


def _holder(folder: Path, seconds: float) -> subprocess.Popen:
    """A second process holding the run folder's lock for `seconds` (it prints `held` once it has it)."""
    code = textwrap.dedent(f"""
        import sys, time
        from universal_neurons.core.lock import run_lock
        with run_lock([{str(folder)!r}], wait=0):
            print("held", flush=True)
            time.sleep({seconds})
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert proc.stdout.readline().strip() == "held"
    return proc


# ---- 1. one run per folder -----------------------------------------------------------------------------------
def test_a_second_run_on_a_locked_folder_is_refused_in_one_line(arts, capsys):
    holder = _holder(arts / "smoke", 30)
    try:
        t0 = time.time()
        assert main(["universality", "--profile", "smoke", "--quiet"]) == 2
        assert time.time() - t0 < 10
        line = error_line(capsys)
        assert f"another run is using {arts / 'smoke'} (pid {holder.pid})" in line
        assert "UN_LOCK_WAIT" in line
    finally:
        holder.kill()
        holder.wait()
    assert not tmp_leftovers(arts)


def test_a_second_run_waits_for_the_first_and_says_so(arts, capsys):
    holder = _holder(arts / "smoke", 1.0)
    try:
        t0 = time.time()
        with run_lock([arts / "smoke"], wait=30):
            waited = time.time() - t0
        assert 0.3 < waited < 30
        assert f"waiting up to 30 s for another run using {arts / 'smoke'} (pid {holder.pid})" in capsys.readouterr().err
    finally:
        holder.wait(timeout=30)


def test_the_lock_is_released_after_a_failed_run(arts, capsys):
    assert main(["universality", "--profile", "smoke", "--quiet"]) == 2  # no zoo here: one line, after the lock
    assert "no checkpoint at" in error_line(capsys)
    with run_lock([arts / "smoke"], wait=0):  # free again
        assert (arts / "smoke" / LOCK_NAME).is_file()


def test_a_bad_lock_wait_is_one_line(arts, monkeypatch, capsys):
    monkeypatch.setenv("UN_LOCK_WAIT", "soon")
    assert main(["universality", "--profile", "smoke", "--quiet"]) == 2
    assert "UN_LOCK_WAIT='soon' is not a number of seconds" in error_line(capsys)


# ---- 2. early checks: a writable folder, enough space --------------------------------------------------------
@pytest.mark.parametrize("code, what", [(errno.EROFS, "read-only file system"), (errno.EACCES, "permission denied")])
def test_an_unwritable_run_folder_stops_at_its_first_write(arts, monkeypatch, capsys, code, what):
    # tests run as root, where chmod 0o555 does not stop writes: creating any file or folder fails instead. An
    # unwritable folder may still serve cached results (test_faults_edges.py); with nothing cached, the first write
    # stops with one line naming its path, before any download or training
    def refused(*a, **k):
        raise OSError(code, os.strerror(code), k.get("dir"))

    monkeypatch.setattr("tempfile.mkstemp", refused)
    monkeypatch.setattr("tempfile.mkdtemp", refused)
    t0 = time.time()
    assert main(["zoo", "--profile", "smoke", "--quiet"]) == 2
    assert time.time() - t0 < 10
    line = error_line(capsys)
    assert f"{arts}" in line and f": {what};" in line and "UN_ARTIFACTS" in line
    assert not (arts / "smoke" / LOCK_NAME).exists()  # an unwritable run folder is not locked (reading needs none)
    assert not tmp_leftovers(arts)


def test_a_nearly_full_disk_stops_at_the_first_write(arts, monkeypatch, capsys):
    monkeypatch.setattr("universal_neurons.core.cli.shutil.disk_usage",
                        lambda p: shutil._ntuple_diskusage(10 * 2**30, 10 * 2**30 - 2**20, 2**20))
    assert main(["zoo", "--profile", "smoke", "--quiet"]) == 2
    line = error_line(capsys)
    assert f"{arts / 'smoke'}: 1 MiB free, but `zoo` writes about" in line and "free some space" in line
    assert [p for p in arts.rglob("*") if p.is_file() and p.name != LOCK_NAME] == []  # nothing written


def test_space_estimate_grows_with_the_zoo():
    from universal_neurons import load_profile
    from universal_neurons.__main__ import _space_needed

    small, big = load_profile("smoke"), load_profile("smoke", ["model.d_model=512 model.d_mlp=2048 model.n_head=8"])
    assert _space_needed(small, "zoo") < _space_needed(big, "zoo")
    assert _space_needed(big, "zoo") > 28 * 12 * 2 * 512 * 512 * 3  # 3 seeds of 2 layers, 28 bytes a parameter


# ---- 3. disk faults anywhere: one line with the path, no temporary file left --------------------------------
def test_a_full_disk_while_writing_leaves_no_temporary_file(tmp_path, monkeypatch, capsys):
    out = tmp_path / "conf" / "config.yaml"

    def full(self, *a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))

    monkeypatch.setattr(Path, "write_text", full)
    assert main(["config", "--profile", "smoke", "--write", str(out)]) == 2
    line = error_line(capsys)
    assert line.startswith(f"error: {out.parent}/.config.yaml.") and "no space left on the device" in line
    assert "UN_ARTIFACTS" in line
    assert list(out.parent.iterdir()) == []  # neither the file nor its temporary


def test_a_read_only_rename_leaves_no_temporary_file(tmp_path, monkeypatch, capsys):
    out = tmp_path / "config.yaml"

    def read_only(src, dst):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(dst))

    monkeypatch.setattr(atomic.os, "replace", read_only)
    assert main(["config", "--profile", "smoke", "--write", str(out)]) == 2
    assert f"error: {out}: read-only file system" in error_line(capsys)
    assert list(tmp_path.iterdir()) == []


def test_a_failed_folder_write_removes_its_temporary_folder(tmp_path):
    with pytest.raises(OSError, match="No space"):
        with atomic.atomic_dir(tmp_path / "seed-0") as tmp:
            (tmp / "model.safetensors").write_bytes(b"half")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp / "model.safetensors"))
    assert list(tmp_path.iterdir()) == []


def test_other_os_errors_are_not_disguised(monkeypatch):
    def boom(*a, **k):
        raise OSError(errno.EIO, "Input/output error", "/dev/sdz")

    monkeypatch.setattr("universal_neurons.__main__._where", boom)
    with pytest.raises(OSError, match="Input/output"):
        main(["where", "--profile", "smoke"])


# ---- 4. leftovers of killed runs -------------------------------------------------------------------------------
def test_temporary_files_of_a_killed_run_are_removed_by_the_next_run(arts, capsys):
    root = arts / "smoke"
    killed = [root / "tables" / ".neurons.csv.k3j_x9ab.tmp", root / "data" / ".train.bin.abc123de.tmp"]
    for f in killed:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text("half written")
    torn_dir = root / "zoo" / ".seed-0.q1w2e3r4.tmp"
    (torn_dir / "sub").mkdir(parents=True)
    (torn_dir / "model.safetensors").write_bytes(b"torn")
    keep = [root / "tables" / "neurons.csv", root / "notebooks" / "zoo.tmp.ipynb"]
    for f in keep:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text("a finished file")
    assert main(["universality", "--profile", "smoke", "--quiet"]) == 2  # cleaned once locked, then: no zoo
    assert "no checkpoint at" in error_line(capsys)
    assert not any(f.exists() for f in killed) and not torn_dir.exists()
    assert all(f.is_file() for f in keep)


def test_clean_leftovers_lists_what_it_removed(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / ".x.json.zz9zz9zz.tmp").write_text("{")
    assert clean_leftovers(tmp_path) == [tmp_path / "a" / ".x.json.zz9zz9zz.tmp"]
    assert clean_leftovers(tmp_path / "missing") == []


def _job(zoo_dir: Path, seed: int = 0, **train) -> dict:
    from universal_neurons import load_profile

    cfg = load_profile("smoke").cfg
    rows = types.SimpleNamespace(header={"provenance": {"corpus": "tiny", "sha256": "0" * 8}})
    return {"seed": seed, "out_dir": zoo_dir / f"seed-{seed}", "train": rows, "heldout": rows,
            "model_cfg": cfg["model"], "train_cfg": {**cfg["train"], **train}, "tokenizer_dir": None}


def _checkpoint(root: Path, step: int, key, files=zoo.CHECKPOINT_FILES) -> Path:
    d = root / f"step-{step:09d}"
    d.mkdir(parents=True)
    for f in files:
        (d / f).write_text(json.dumps({"step": step, "log": [], "key": key}) if f == "state.json" else "x")
    return d


def test_a_torn_zoo_checkpoint_is_skipped_and_removed_the_complete_one_resumed(tmp_path):
    job = _job(tmp_path / "zoo")
    key = zoo.recipe_key(0, job["model_cfg"], job["train_cfg"], job["train"].header["provenance"])
    root = zoo.checkpoint_root(job["out_dir"])
    good = _checkpoint(root, 100, key)
    torn = _checkpoint(root, 200, key, files=("model.safetensors",))  # killed between its files
    assert zoo.latest_checkpoint(root) == good  # training resumes from step 100
    assert zoo.clean_partials([job]) == [torn]
    assert sorted(root.iterdir()) == [good]


def test_zoo_checkpoints_of_another_recipe_are_removed_when_a_run_starts(tmp_path):
    job = _job(tmp_path / "zoo", lr=0.001)  # this run's recipe: another learning rate
    old_key = zoo.recipe_key(0, job["model_cfg"], {**job["train_cfg"], "lr": 0.005}, job["train"].header["provenance"])
    root = zoo.checkpoint_root(job["out_dir"])
    _checkpoint(root, 100, old_key)
    other_seed = _job(tmp_path / "zoo", seed=1)
    keep = _checkpoint(zoo.checkpoint_root(other_seed["out_dir"]), 100, zoo.recipe_key(
        1, other_seed["model_cfg"], other_seed["train_cfg"], other_seed["train"].header["provenance"]))
    zoo.clean_partials([job, other_seed])
    assert not root.exists()  # seed 0's folder, left empty, is gone too
    assert keep.is_dir()  # seed 1's checkpoint matches its recipe: resumed later


def test_an_empty_partial_folder_is_removed(tmp_path):
    job = _job(tmp_path / "zoo")
    (tmp_path / "zoo" / ".partial" / "seed-0").mkdir(parents=True)
    zoo.clean_partials([job])
    assert not (tmp_path / "zoo" / ".partial").exists()
    assert (tmp_path / "zoo").is_dir()


def test_universality_states_of_another_key_or_world_are_removed(tmp_path):
    partial = tmp_path / ".partial"
    partial.mkdir()
    mine = partial / "universality-aaaaaaaaaaaa.rank0-of1.pt"
    stale = [partial / "universality-bbbbbbbbbbbb.rank0-of1.pt", partial / "universality-aaaaaaaaaaaa.rank1-of2.pt",
             partial / ".universality-bbbbbbbbbbbb.rank0-of1.pt.x1y2.tmp"]
    for f in [mine, *stale[:2]]:
        f.write_bytes(b"state")
    assert sorted(_drop_stale_states(partial, "universality-aaaaaaaaaaaa", 1)) == sorted(stale[:2])
    assert sorted(partial.iterdir()) == [mine]
    assert _drop_stale_states(tmp_path / "none", "universality-a", 1) == []


def test_an_unreadable_universality_state_is_removed_and_the_pass_starts_afresh(tmp_path):
    ckpt = tmp_path / "universality-aaaaaaaaaaaa.rank0-of1.pt"
    ckpt.write_bytes(b"not a torch file")
    with pytest.warns(UserWarning, match="unreadable checkpoint"):
        assert _resume(ckpt, "key", "cpu", 1) is None
    assert not ckpt.exists()
    torch.save({"key": "other", "step": 3}, ckpt)
    assert _resume(ckpt, "key", "cpu", 1) is None  # another key: not resumed
    torch.save({"key": "key", "step": 3}, ckpt)
    assert _resume(ckpt, "key", "cpu", 1)["step"] == 3


def test_a_multi_line_user_error_prints_as_one_line(monkeypatch, capsys):
    def multi(*a, **k):
        raise UserError("first part\n  second part")

    monkeypatch.setattr("universal_neurons.__main__._where", multi)
    assert main(["where", "--profile", "smoke"]) == 2
    assert capsys.readouterr().err == "error: first part second part\n"

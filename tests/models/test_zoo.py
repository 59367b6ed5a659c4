"""The zoo trainer: determinism per seed, resume after interruption, learning, bad input."""

import hashlib
import json
import os
import subprocess
import sys

import pytest

from universal_neurons import UserError
from universal_neurons.models import malloc
from universal_neurons.models.zoo import checkpoint_root, latest_checkpoint, train_members, train_seed

SMALL = {"tokens": 30000, "batch_size": 8, "lr": 3e-3, "warmup_steps": 5, "weight_decay": 0.1, "checkpoint_every": 10,
         "eval_tokens": 4096}


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def train(tmp_path, name, seed, smoke, smoke_data, **kw):
    train_rows, heldout, tdir = smoke_data
    return train_seed(seed, tmp_path / "zoo" / name, train_rows, heldout, smoke.cfg["model"], dict(SMALL),
                      tdir, progress=False, **kw)


def test_same_seed_gives_identical_weights_other_seed_differs(tmp_path, smoke, smoke_data):
    a = train(tmp_path, "a", 7, smoke, smoke_data)
    b = train(tmp_path, "b", 7, smoke, smoke_data)
    c = train(tmp_path, "c", 8, smoke, smoke_data)
    assert sha(a / "model.safetensors") == sha(b / "model.safetensors")
    assert sha(a / "model.safetensors") != sha(c / "model.safetensors")
    for f in ("config.json", "tokenizer.json", "training_log.json"):
        assert (a / f).is_file()


def test_interrupted_training_resumes_to_the_same_weights(tmp_path, smoke, smoke_data):
    full = train(tmp_path, "full", 3, smoke, smoke_data)
    ckpt = train(tmp_path, "resumed", 3, smoke, smoke_data, stop_after=12)
    assert not (tmp_path / "zoo" / "resumed").exists(), "an interrupted run must leave no final folder"
    last = latest_checkpoint(ckpt)
    assert json.loads((last / "state.json").read_text())["step"] == 10  # the last checkpoint before the stop
    assert [p.name for p in ckpt.iterdir()] == [last.name], "older checkpoints are dropped"
    resumed = train(tmp_path, "resumed", 3, smoke, smoke_data)
    assert sha(full / "model.safetensors") == sha(resumed / "model.safetensors")
    assert not ckpt.exists(), "the checkpoint is removed once the member is saved"


# A training run killed (os._exit: no clean-up) right after one of the checkpoint's writes at step 20.
KILLED_RUN = """
import os, sys, safetensors.torch, torch
from pathlib import Path
import universal_neurons.core.atomic as atomic, universal_neurons.models.zoo as zoo, universal_neurons.models.checkpoints as ckpts
from universal_neurons import load_profile
from universal_neurons.data.prepare import prepare, tokenizer_dir
out, kill_after, small = Path(sys.argv[1]), sys.argv[2], eval(sys.argv[3])
armed, renames = False, 0
save_checkpoint = zoo._save_checkpoint
def save(root, model, opt, step, *rest):
    global armed
    armed = step == 20
    return save_checkpoint(root, model, opt, step, *rest)
def after(name, fn):
    def wrapped(*a, **k):
        global renames
        r = fn(*a, **k)
        renames += armed and name == "rename"
        if armed and name == kill_after and (name != "rename" or renames == 2):  # 1: state.json, 2: the folder
            os._exit(9)
        return r
    return wrapped
zoo._save_checkpoint = save
safetensors.torch.save_file = after("model", safetensors.torch.save_file)
torch.save = after("optimizer", torch.save)
ckpts.write_json = after("state", ckpts.write_json)
atomic.os.replace = after("rename", os.replace)
prof = load_profile("smoke")
train, heldout = prepare(prof, progress=False)
zoo.train_seed(3, out, train, heldout, prof.cfg["model"], small, tokenizer_dir(prof, progress=False), progress=False)
"""


@pytest.mark.parametrize("kill_after", ["model", "optimizer", "state", "rename"])
def test_training_killed_between_checkpoint_files_resumes_to_the_same_bytes(tmp_path, smoke, smoke_data, kill_after):
    full = train(tmp_path, "full", 3, smoke, smoke_data)
    out = tmp_path / "zoo" / "killed"
    run = subprocess.run([sys.executable, "-c", KILLED_RUN, str(out), kill_after, repr(SMALL)], capture_output=True,
                         text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == 9, run.stderr[-2000:]
    assert not out.exists()
    last = latest_checkpoint(checkpoint_root(out))
    step = json.loads((last / "state.json").read_text())["step"]
    assert step == (20 if kill_after == "rename" else 10)  # the complete checkpoint, never a half-written one
    resumed = train(tmp_path, "killed", 3, smoke, smoke_data)
    assert sha(full / "model.safetensors") == sha(resumed / "model.safetensors")
    assert not checkpoint_root(out).exists()


def test_members_trained_side_by_side_equal_those_trained_one_by_one(tmp_path, smoke, smoke_data):
    """The speed options (SDPA, fused AdamW, one-thread processes side by side, tcmalloc in those processes)
    stay byte-deterministic: the sequential members are trained in this process, with glibc malloc."""
    train_rows, heldout, tdir = smoke_data
    jobs = [{"seed": s, "out_dir": tmp_path / "par" / f"seed-{s}", "train": train_rows, "heldout": heldout,
             "model_cfg": smoke.cfg["model"], "train_cfg": dict(SMALL), "tokenizer_dir": tdir} for s in (1, 2)]
    par = train_members(jobs, progress=False)
    seq = [train(tmp_path, f"seq-{s}", s, smoke, smoke_data) for s in (1, 2)]
    assert [sha(p / "model.safetensors") for p in par] == [sha(p / "model.safetensors") for p in seq]
    info = json.loads((par[0] / "training_log.json").read_text())
    assert info["threads"] == 1 and info["train"]["attention"] == "sdpa" and info["train"]["fused_adamw"] is True


def _mapped_libraries(_=None):
    return open("/proc/self/maps").read()


@pytest.mark.skipif(malloc.find() is None, reason="no tcmalloc on this machine (make env fetches it on Debian)")
def test_members_are_trained_with_tcmalloc_preloaded_and_this_process_is_not():
    """train_members starts its workers under malloc.preloaded(malloc.find()), so the side-by-side test above
    compares tcmalloc-trained members with glibc-trained ones."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with malloc.preloaded(malloc.find()), ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
        child = pool.submit(_mapped_libraries).result()
    assert "libtcmalloc_minimal" in child
    if malloc.LIB not in os.environ.get("LD_PRELOAD", ""):  # unless the test run itself was started with it
        assert "libtcmalloc_minimal" not in _mapped_libraries()


def test_a_checkpoint_of_other_settings_is_not_resumed(tmp_path, smoke, smoke_data):
    train_rows, heldout, tdir = smoke_data
    ckpt = train(tmp_path, "a", 4, smoke, smoke_data, stop_after=12)
    other = train_seed(4, tmp_path / "zoo" / "a", train_rows, heldout, smoke.cfg["model"], dict(SMALL, lr=1e-3), tdir,
                       progress=False)
    fresh = train_seed(4, tmp_path / "zoo" / "b", train_rows, heldout, smoke.cfg["model"], dict(SMALL, lr=1e-3), tdir,
                       progress=False)
    assert not ckpt.exists() and sha(other / "model.safetensors") == sha(fresh / "model.safetensors")


def test_trained_member_is_reused_and_retrained_when_settings_change(tmp_path, smoke, smoke_data):
    a = train(tmp_path, "a", 1, smoke, smoke_data)
    mtime = (a / "model.safetensors").stat().st_mtime_ns
    train(tmp_path, "a", 1, smoke, smoke_data)
    assert (a / "model.safetensors").stat().st_mtime_ns == mtime
    train_rows, heldout, tdir = smoke_data
    train_seed(1, a, train_rows, heldout, smoke.cfg["model"], dict(SMALL, lr=1e-3), tdir, progress=False)
    assert json.loads((a / "training_log.json").read_text())["train"]["lr"] == 1e-3


def test_smoke_zoo_learns_below_unigram_entropy(smoke_zoo):
    for member in smoke_zoo:
        info = json.loads((member / "training_log.json").read_text())
        assert info["heldout_loss"] < info["unigram_entropy_nats"] - 0.5, member
        losses = [e["heldout_loss"] for e in info["log"]]
        assert losses[-1] < losses[0] - 0.5  # first entry: after checkpoint_every steps


def test_default_zoo_learns_well_below_unigram_entropy():
    from universal_neurons import load_profile

    prof = load_profile("default")
    logs = [prof.seed_dir(s) / "training_log.json" for s in prof.seeds]
    if not all(p.is_file() for p in logs):
        pytest.skip("the default zoo is not trained here (make zoo PROFILE=default, ~30 min on 2 cores)")
    for p in logs:
        info = json.loads(p.read_text())
        assert info["heldout_loss"] < info["unigram_entropy_nats"] - 1.0, p


@pytest.mark.parametrize("change, message", [
    ({"tokens": 10}, "less than one batch"),
    ({"batch_size": 10**7}, "exceeds"),
])
def test_bad_training_settings_fail_with_one_line(tmp_path, smoke, smoke_data, change, message):
    train_rows, heldout, tdir = smoke_data
    with pytest.raises(UserError, match=message) as e:
        train_seed(0, tmp_path / "x", train_rows, heldout, smoke.cfg["model"], dict(SMALL, **change), tdir,
                   progress=False)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "x").exists()


def test_snapshots_leave_the_training_unchanged_and_survive_a_resume(tmp_path, smoke, smoke_data):
    from universal_neurons.models.zoo import snapshot_dir, snapshot_steps

    plain = train(tmp_path, "plain", 5, smoke, smoke_data)
    total = SMALL["tokens"] // (SMALL["batch_size"] * smoke.cfg["model"]["n_ctx"])
    steps = snapshot_steps(total, 4)
    assert steps[0] == 0 and steps[-1] == total and len(steps) == 5 and steps == sorted(set(steps))
    snap = train(tmp_path, "snap", 5, smoke, smoke_data, snapshots=4)
    assert sha(plain / "model.safetensors") == sha(snap / "model.safetensors"), "snapshots changed the training"
    folders = sorted(snapshot_dir(snap).iterdir())
    assert [int(f.name.removeprefix("step-")) for f in folders] == steps
    assert sha(folders[-1] / "model.safetensors") == sha(snap / "model.safetensors")
    log = json.loads((folders[2] / "training_log.json").read_text())
    assert log["step"] == steps[2] and log["files"]["model.safetensors"] == sha(folders[2] / "model.safetensors")
    # killed after the third snapshot, then resumed: every snapshot equals the uninterrupted run's
    train(tmp_path, "resumed", 5, smoke, smoke_data, snapshots=4, stop_after=steps[2] + 1)
    resumed = train(tmp_path, "resumed", 5, smoke, smoke_data, snapshots=4)
    again = sorted(snapshot_dir(resumed).iterdir())
    assert [f.name for f in again] == [f.name for f in folders]
    for a, b in zip(folders, again):
        assert sha(a / "model.safetensors") == sha(b / "model.safetensors"), a.name
    from universal_neurons.models.loading import load_model

    model = load_model(folders[1])  # a snapshot loads like a member (checksums verified)
    assert model.cfg.n_layers == smoke.cfg["model"]["n_layer"]

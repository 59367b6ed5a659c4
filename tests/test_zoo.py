"""The zoo trainer: determinism per seed, resume after interruption, learning, bad input."""

import hashlib
import json

import pytest

from universal_neurons import UserError
from universal_neurons.zoo import train_seed

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
    assert json.loads((ckpt / "state.json").read_text())["step"] == 10  # the last checkpoint before the stop
    resumed = train(tmp_path, "resumed", 3, smoke, smoke_data)
    assert sha(full / "model.safetensors") == sha(resumed / "model.safetensors")
    assert not ckpt.exists(), "the checkpoint is removed once the member is saved"


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

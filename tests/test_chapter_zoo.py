"""The zoo chapter: its numbers against the training logs read independently, its sentences both ways."""

import json

import numpy as np
import pandas as pd
import pytest

from universal_neurons import load_profile
from universal_neurons.chapters import zoo
from universal_neurons.publish import Chapter

pytestmark = pytest.mark.usefixtures("one_thread")


def test_context_verdict():
    beats = pd.DataFrame({"heldout_loss": [5.4, 5.5], "unigram_entropy": [6.4, 6.4]})
    assert zoo.context_verdict(beats) == "every member has learned to use context"
    one_fails = beats.assign(heldout_loss=[5.4, 6.5])
    assert zoo.context_verdict(one_fails) == "not every member does better than a model that ignores context"


def test_training_sentence():
    s = pd.DataFrame({"train_seconds": [60.0, 120.0], "tokens_per_s": [30000.0, 34000.0]})
    assert zoo.training_sentence(s, None) == "These checkpoints were trained elsewhere; this book only loads them."
    here = zoo.training_sentence(s, 2)
    assert here == ("Each seed trained for about 1.5 minutes at about 32,000 tokens per second, on 2 thread(s), "
                    "seeds side by side when the cores allow.")
    shipped = zoo.training_sentence(s, 1, {"cpus": ["CPU A", "CPU B"], "folder": "zoo/release", "created": "2026"})
    assert shipped.startswith(here.replace("2 thread", "1 thread"))
    assert "trained once (on CPU A, CPU B) and is shipped in the repository (`zoo/release`, 2026)" in shipped


def test_shipped_provenance():
    assert zoo.shipped_provenance(load_profile("smoke")) is None
    prof = load_profile("default")
    man = json.loads((prof.shipped_dir / "manifest.json").read_text())
    got = zoo.shipped_provenance(prof)
    assert got["cpus"] == sorted({man["seeds"][str(s)]["cpu"] for s in prof.seeds})
    assert got["created"] == man["created"] and got["folder"] == prof.cfg["shipped"]


def test_compute_matches_the_training_logs(smoke, smoke_zoo):
    ch = zoo.compute("smoke")
    logs = [json.loads((smoke.seed_dir(s) / "training_log.json").read_text()) for s in smoke.seeds]
    losses = np.array([log["heldout_loss"] for log in logs], np.float64)
    assert ch.glue["n_seeds"] == len(smoke.seeds) == 3
    assert ch.glue["heldout_mean"] == pytest.approx(losses.mean(), abs=1e-12)
    assert ch.glue["heldout_max"] == losses.max()
    assert ch.glue["unigram_entropy"] == logs[0]["unigram_entropy_nats"]
    assert ch.glue["n_params"] == logs[0]["n_params"]
    minutes = np.mean([log["train_seconds"] for log in logs]) / 60
    assert f"about {minutes:.1f} minutes" in ch.glue["training_md"].data
    samples = ch.tables["samples"]
    assert len(samples) == 3 * len(zoo.PROMPTS)
    assert sorted(samples["model"].unique()) == [f"seed-{s}" for s in smoke.seeds]
    assert samples["continuation"].str.len().gt(0).all()
    assert len(zoo.training_figure(ch).axes[0].lines) == 2 * len(smoke.seeds) + 1


def test_figure_without_curves(smoke):
    summary = pd.DataFrame({"unigram_entropy": [6.0]})
    ch = Chapter("zoo", smoke, data={"summary": summary, "curves": None})
    ax = zoo.training_figure(ch).axes[0]
    assert "trained elsewhere" in ax.texts[0].get_text()

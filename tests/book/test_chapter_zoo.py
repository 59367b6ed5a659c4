"""The zoo chapter: its numbers against the training logs read independently, its sentences both ways."""

import json
import re

import numpy as np
import pandas as pd
import pytest

from universal_neurons import load_profile
from universal_neurons.book.chapters import zoo
from universal_neurons.book.publish import Chapter

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
    shown = float(re.search(r"about ([\d.]+) minutes", ch.glue["training_md"].data).group(1))
    assert shown == pytest.approx(minutes, abs=0.05 + 1e-9)  # one decimal (a mean on the rounding edge may differ)
    samples = ch.tables["samples"]
    assert len(samples) == 3 * len(zoo.PROMPTS)
    assert sorted(samples["model"].unique()) == [f"seed-{s}" for s in smoke.seeds]
    assert samples["continuation"].str.len().gt(0).all()
    assert len(zoo.training_figure(ch).axes[0].lines) == 2 * len(smoke.seeds) + 2  # + the legend's dashed key
    # the two held-out measures, read from the logs and the token rows' headers independently
    heldout = json.loads((smoke.data_dir / "heldout.json").read_text())
    train = json.loads((smoke.data_dir / "train.json").read_text())
    eval_tokens, n_ctx = smoke.cfg["train"]["eval_tokens"], heldout["n_ctx"]
    assert ch.glue["zoo_eval_tokens"] == min(heldout["rows"], eval_tokens // n_ctx) * n_ctx
    assert ch.glue["zoo_curve_tokens"] == min(heldout["rows"], eval_tokens // 4 // n_ctx) * n_ctx
    assert ch.glue["zoo_curve_end_mean"] == pytest.approx(np.mean([log["log"][-1]["heldout_loss"] for log in logs]))
    assert ch.glue["zoo_train_tokens"] == train["rows"] * train["n_ctx"]
    assert ch.glue["zoo_epochs"] == pytest.approx(logs[0]["tokens"] / (train["rows"] * train["n_ctx"]))
    corpus = ch.tables["corpus"]
    assert corpus["training tokens"].sum() == train["rows"] * train["n_ctx"]
    assert corpus["held-out tokens"].sum() == heldout["rows"] * heldout["n_ctx"]
    assert ch.tables["architecture"]["this zoo"]["d_mlp"] == f"{smoke.cfg['model']['d_mlp']:,}"
    md = ch.glue["zoo_holds_md"].data
    assert md.startswith("This chapter judges none of the paper's claims.")
    assert f"held-out loss of {losses.mean():.3f} nats on average" in md
    assert f"{losses.min():.3f}-{losses.max():.3f}" in ch.glue["zoo_heldout_md"].data


def test_untrained_members_give_no_holds(smoke, smoke_zoo):
    """The negative control: the same chapter on untrained stand-ins of the members says they do not use context,
    and its closing section judges no claim."""
    from universal_neurons.runs import control

    prof = load_profile("smoke", "analysis.untrained=true")
    control.untrained_members(prof)
    ch = zoo.compute("smoke", overrides="analysis.untrained=true")
    assert ch.glue["context_verdict"] == "not every member does better than a model that ignores context"
    assert ch.glue["heldout_mean"] > ch.glue["unigram_entropy"]
    md = ch.glue["zoo_holds_md"].data
    assert "untrained stand-ins" in md and "**holds**" not in md


def test_figure_without_curves(smoke):
    summary = pd.DataFrame({"unigram_entropy": [6.0]})
    ch = Chapter("zoo", smoke, data={"summary": summary, "curves": None})
    ax = zoo.training_figure(ch).axes[0]
    assert "trained elsewhere" in ax.texts[0].get_text()


def _synthetic():
    summary = pd.DataFrame({"seed": [0, 1], "parameters": [1000, 1000], "tokens": [4096, 4096], "steps": [8, 8],
                            "heldout_loss": [4.02, 4.03], "unigram_entropy": [6.75, 6.75]})
    curves = pd.DataFrame({"seed": [0, 0, 1, 1], "step": [4, 8, 4, 8], "tokens": [2048, 4096, 2048, 4096],
                           "train_loss": [5.0, 4.0, 5.1, 4.1], "heldout_loss": [4.5, 3.84, 4.6, 3.85]})
    return summary, curves


def test_heldout_measures_and_sentence():
    summary, curves = _synthetic()
    m = zoo.heldout_measures(summary, curves, eval_tokens=262144, n_ctx=128, heldout_rows=3000)
    assert m["curve_tokens"].tolist() == [65536, 65536] and m["final_tokens"].tolist() == [262144, 262144]
    assert m["curve_loss"].tolist() == [3.84, 3.85] and m["final_loss"].tolist() == [4.02, 4.03]
    assert m["same_weights"].all()
    text = zoo.heldout_sentence(m, ["sotu", "brown"])
    assert "over 262,144 held-out tokens: 4.020-4.030 nats" in text
    assert "first 65,536 of those tokens" in text and "end at 3.840-3.850 nats" in text
    assert "(0.180-0.180 nats, the curve lower) is the text, not the model" in text
    assert text.endswith("holds sotu and brown text only.")
    # fewer held-out rows than asked: both measures read them all; the curve's last point not the final weights
    small = zoo.heldout_measures(summary, curves, eval_tokens=262144, n_ctx=128, heldout_rows=100)
    assert small["curve_tokens"].iloc[0] == small["final_tokens"].iloc[0] == 12800
    assert "is the text" not in zoo.heldout_sentence(small, ["sotu"])
    early = zoo.heldout_measures(summary.assign(steps=[9, 9]), curves, 262144, 128, 3000)
    assert not early["same_weights"].any() and "is the text" not in zoo.heldout_sentence(early, ["sotu"])


def test_architecture_table_against_the_paper_and_the_manifest():
    from universal_neurons.core import paper

    man = json.loads((load_profile("default").shipped_dir / "manifest.json").read_text())
    model, vocab = man["recipe"]["model"], man["recipe"]["tokenizer"]["vocab_size"]
    summary = pd.DataFrame({"parameters": [1_200_640]})
    corpus = {"sources": ["sotu", "kjv"], "train_tokens": 7_000_000, "tokens_per_seed": 24_997_888}
    t = zoo.architecture_table(summary, model, vocab, corpus)
    ours, gpt2 = t["this zoo"], t["GPT2-small (the paper's)"]
    assert ours["layers"] == str(model["n_layer"]) and ours["d_mlp"] == f"{model['d_mlp']:,}"
    assert ours["vocabulary"] == f"{vocab:,}" and ours["n_ctx"] == str(model["n_ctx"])
    assert ours["epochs"] == str(round(24_997_888 / 7_000_000, 2)) and ours["training corpus"] == "sotu, kjv"
    g = paper.MODELS.set_index("model").loc["GPT2-small-a"]
    assert gpt2["layers"] == "12" == str(g["n_layer"]) and gpt2["d_mlp"] == "3,072" and gpt2["d_model"] == "768"
    assert gpt2["neurons"] == "36,864"  # 12 x 3072 (the paper's count)
    text = zoo.models_sentence(t, corpus)
    assert f"{124_439_808 / 1_200_640:,.0f} times fewer parameters" in text
    assert "(2,048 neurons against 36,864)" in text and "3.57 passes over the 7,000,000 tokens" in text
    elsewhere = zoo.architecture_table(summary, model, vocab, None)
    assert elsewhere["this zoo"]["training corpus"] == "trained elsewhere"


def test_source_counts():
    from types import SimpleNamespace

    src = np.array([[0, 0, 2], [2, 2, 0]], np.uint16)
    rows = SimpleNamespace(sources=src, source_names=["a", "b", "c"])
    assert zoo.source_counts(rows) == {"a": 3, "b": 0, "c": 3}


def test_notes_and_closing_section():
    summary = pd.DataFrame({"heldout_loss": [4.02, 4.03], "unigram_entropy": [6.75, 6.75]})
    verdict = zoo.context_verdict(summary)
    notes = zoo.zoo_notes(summary, verdict)
    assert notes[0] == ("The 2 members have a held-out loss of 4.025 nats on average (4.020-4.030: a spread of "
                        "0.010 nats across seeds) against a unigram entropy of 6.750: every member has learned to "
                        "use context.")
    assert notes[1] == "The worst member is 2.720 nats below the unigram entropy, 272 times the spread across seeds."
    # untrained stand-ins: a loss near ln(vocabulary), above the unigram entropy; the section judges no claim
    untrained = pd.DataFrame({"heldout_loss": [8.33, 8.35], "unigram_entropy": [6.75, 6.75]})
    v = zoo.context_verdict(untrained)
    notes = zoo.zoo_notes(untrained, v, untrained=True)
    assert "not every member does better than a model that ignores context" in notes[0]
    assert "untrained stand-ins" in notes[0] and "1.600 nats above" in notes[1]
    md = zoo.holds_here([], notes)
    assert md.startswith("This chapter judges none of the paper's claims.") and "**holds**" not in md

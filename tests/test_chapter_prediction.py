"""The prediction chapter: the paper's rules and the scaled partition threshold, its two threshold-free verdicts and
its sentences (each where it holds and where it does not), and its glued numbers on the smoke zoo against numpy
float64 computations from the saved properties table."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from IPython.display import Markdown

from universal_neurons import paper
from universal_neurons.chapters import prediction as chapter


def test_scaled_partition_threshold_keeps_the_multiple_of_one_over_d_model():
    assert chapter.scaled_partition_threshold(0.005, 1024) == 0.005  # the paper's model: unchanged
    assert chapter.scaled_partition_threshold(0.005, 64) == pytest.approx(0.08)
    assert chapter.scaled_partition_threshold(0.005, 64) * 64 == pytest.approx(0.005 * 1024)


def test_rules_follow_the_paper():
    t = pd.DataFrame({"vocab_kurt": [12.0, 12.0, 9.0, 12.0, 3.0], "vocab_skew": [0.5, -0.5, 0.5, 0.0, 0.0],
                      "vocab_var": [0.001, 0.006, 0.004, 0.1, 0.09]})
    r = chapter.with_rules(t, 10.0, 0.005, 64)
    assert r["prediction"].tolist() == [True, False, False, False, False]
    assert r["suppression"].tolist() == [False, True, False, False, False]
    assert r["partition"].tolist() == [False, True, False, True, True]
    assert r["partition_scaled"].tolist() == [False, False, False, True, True]  # above 0.08


@pytest.mark.parametrize("early, late, verdict", [(3.0, 5.0, "holds"), (5.0, 3.0, "does not hold"),
                                                  (4.0, 4.0, "does not hold")])
def test_late_kurtosis_verdict(early, late, verdict):
    assert chapter.late_kurtosis_verdict(early, late) == verdict


@pytest.mark.parametrize("p5, p95, verdict", [(-0.6, 0.4, "holds"), (-0.3, 0.5, "does not hold"),
                                              (-0.5, 0.5, "does not hold")])
def test_suppression_verdict(p5, p95, verdict):
    assert chapter.suppression_verdict(p5, p95) == verdict


def test_examples_sentence():
    assert chapter.examples_sentence({"prediction": False, "suppression": False, "partition": True}) == (
        "The prediction example does not pass the paper's rule; the suppression example does not pass the paper's "
        "rule; the partition example passes the paper's rule.")
    assert chapter.examples_sentence({"prediction": True}) == "The prediction example passes the paper's rule."


def test_high_kurtosis_neurons_by_threshold_or_top_percent():
    rng = np.random.default_rng(0)
    late = pd.DataFrame({"model": np.repeat(["a", "b"], 100), "vocab_kurt": rng.random(200) * 5})
    mask, text = chapter.high_kurtosis(late, 10.0, 5.0)
    cuts = {m: np.quantile(late.loc[late["model"] == m, "vocab_kurt"], 0.95) for m in ("a", "b")}
    expected = late["vocab_kurt"].to_numpy() >= late["model"].map(cuts).to_numpy()
    assert mask.to_numpy().tolist() == expected.tolist() and expected.sum() == 10
    assert text == ("Only 0 neurons of the second half of the layers pass `vocab_kurt` > 10, so this uses the top 5% "
                    "by `vocab_kurt` of each model's second-half layers instead (10 neurons, all models).")
    late.loc[:11, "vocab_kurt"] = 50.0
    mask, text = chapter.high_kurtosis(late, 10.0, 5.0)
    assert mask.sum() == 12 and text == ("The 12 neurons of the second half of the layers (all models) with "
                                         "`vocab_kurt` above 10.")


def test_count_sentence_with_and_without_prediction_neurons():
    none = pd.DataFrame({"prediction": [0, 0], "suppression": [1, 2]})
    assert chapter.count_sentence(none, 10.0) == (
        "No neuron passes the paper's prediction rule (`vocab_kurt` > 10) in any model of this profile, so the counts "
        "cannot test the claims; the percentile curves above can.")
    some = pd.DataFrame({"prediction": [1, 0, 3, 4], "suppression": [0, 0, 2, 9]})
    assert chapter.count_sentence(some, 10.0) == (
        "88% of the prediction neurons sit in the second half of the layers, and the last layer has 9 suppression "
        "against 4 prediction neurons (all models).")  # 7 of 8


def test_universal_kurtosis_sentence_quotes_the_paper():
    assert paper.HIGH_KURT_UNIVERSAL == (289, 1211)
    assert chapter.universal_kurtosis_sentence(11, "top 2% by excess", 0, 10.0) == (
        "Among the 11 top 2% by excess neurons of the reference, 0 have `vocab_kurt` above 10 (the paper: 289 of "
        "the 1,211 universal GPT2-medium neurons).")


def test_class_sentence_with_and_without_ensembles():
    assert chapter.class_sentence(pd.DataFrame(), 30000) == (
        "None of the token classes occurs often enough in this tokenizer and sample to build an ensemble.")
    s = pd.DataFrame({"class": ["x", "x", "y", "y", "y"],
                      "role": ["prediction", "suppression", "prediction", "prediction", "suppression"],
                      "difference": [0.3, -0.1, 0.2, -0.4, 0.5]})
    assert chapter.class_sentence(s, 30000) == (
        "Over 2 classes and 30,000 held-out tokens, 67% of the prediction-ensemble neurons and 50% of the "
        "suppression-ensemble neurons fire more (higher mean post-activation) when the next token is in the class.")


def test_layer_bands_are_mean_min_max_over_models_of_numpy_quantiles():
    rng = np.random.default_rng(3)
    t = pd.DataFrame({"model": np.repeat(["a", "b", "c"], 40), "layer": np.tile(np.repeat([0, 1], 20), 3),
                      "vocab_kurt": rng.random(120) * 8, "vocab_skew": rng.normal(size=120)})
    band = chapter.layer_bands(t)
    for layer in (0, 1):
        for q in chapter.QUANTILES:
            per = [np.quantile(t.loc[(t["model"] == m) & (t["layer"] == layer), "vocab_skew"].to_numpy(np.float64),
                               q / 100) for m in "abc"]
            row = band.loc[(layer, q / 100), "vocab_skew"]
            assert row["mean"] == pytest.approx(np.mean(per), abs=1e-12)
            assert (row["min"], row["max"]) == pytest.approx((min(per), max(per)), abs=1e-12)


# ---- the chapter on the smoke zoo -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ch(smoke, smoke_zoo):
    return chapter.compute("smoke")


@pytest.mark.slow
def test_glued_numbers_equal_numpy_on_the_saved_table(ch, smoke):
    t = pd.read_csv(smoke.tables_dir / "properties.csv")
    d_model = smoke.cfg["model"]["d_model"]
    kurt, skew, var = (t[c].to_numpy(np.float64) for c in ("vocab_kurt", "vocab_skew", "vocab_var"))
    rules = {"prediction": (kurt > 10) & (skew > 0), "suppression": (kurt > 10) & (skew < 0),
             "partition": var > 0.005, "partition_scaled": var > 0.005 * 1024 / d_model}
    ref = (t["model"] == "seed-0").to_numpy()
    g = ch.glue
    for k, m in rules.items():
        assert (g[f"pred_n_{k}"], g[f"pred_all_{k}"]) == (int(m[ref].sum()), int(m.sum())), k
    assert g["pred_d_model"] == d_model and g["pred_n_models"] == len(smoke.seeds)
    assert g["pred_scaled_var"] == pytest.approx(0.005 * 1024 / d_model) and g["pred_random_var"] == 1 / d_model
    assert g["pred_kurt_max"] == kurt.max()
    n_layers = smoke.cfg["model"]["n_layer"]
    half = n_layers // 2
    p95 = np.array([[np.quantile(kurt[(t["model"] == m) & (t["layer"] == l)], 0.95) for l in range(n_layers)]
                    for m in t["model"].unique()]).mean(0)
    assert g["pred_p95_early"] == pytest.approx(p95[:half].mean(), abs=1e-12)
    assert g["pred_p95_late"] == pytest.approx(p95[half:].mean(), abs=1e-12)
    last = [skew[(t["model"] == m) & (t["layer"] == n_layers - 1)] for m in t["model"].unique()]
    p5, p95s = np.mean([np.quantile(s, 0.05) for s in last]), np.mean([np.quantile(s, 0.95) for s in last])
    assert (g["pred_skew_p5_last"], g["pred_skew_p95_last"]) == pytest.approx((p5, p95s), abs=1e-12)
    assert g["pred_verdict_late"] == ("holds" if p95[half:].mean() > p95[:half].mean() else "does not hold")
    assert g["pred_verdict_supp"] == ("holds" if -p5 > p95s else "does not hold")
    for name in ("pred_examples_md", "pred_high_md", "pred_count_md", "pred_uni_md", "pred_class_md"):
        assert isinstance(g[name], Markdown), name
    assert (g["pred_paper_kurt"], g["pred_paper_var"]) == (paper.VOCAB_KURT_THRESHOLD, paper.PARTITION_VAR)
    sel = ch.data["selected"]
    assert g["pred_high_neg_pct"] == pytest.approx(100 * np.mean(sel["vocab_skew"].to_numpy() < 0))


@pytest.mark.slow
def test_class_ensembles_compare_activations_before_class_tokens(ch):
    s = ch.tables["classes"]
    assert set(s["role"]) <= {"prediction", "suppression"} and len(s)
    acts = ch.data["activations"]
    for r in s.head(3).itertuples(index=False):
        a = acts[(acts["class"] == r[0]) & (acts["neuron"] == f"{r[2]} ({r[1]})")]
        inside = a["next token"] == "in class"
        assert r[4] == pytest.approx(a.loc[inside, "activation"].to_numpy(np.float64).mean(), abs=1e-4)
        assert r[5] == pytest.approx(a.loc[~inside, "activation"].to_numpy(np.float64).mean(), abs=1e-4)


@pytest.mark.slow
def test_figures_are_wide_and_drawn(ch):
    for name in ("examples", "percentiles", "skew", "classes"):
        fig = getattr(chapter, f"{name}_figure")(ch)
        assert all(ax.has_data() for ax in fig.axes), name
        if len(fig.axes) > 1:
            assert fig.get_size_inches()[0] >= 10, name
        plt.close(fig)

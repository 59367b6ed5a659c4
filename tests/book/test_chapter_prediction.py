"""The prediction chapter: the paper's rules and the scaled partition threshold, its two claims judged on the
neurons that pass them (binomial null, the lift of the paper's published tables; each verdict on synthetic counts
with a known answer, and not testable on untrained models), its sentences, and its glued numbers on the smoke zoo
against numpy float64 computations from the saved properties table."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from IPython.display import Markdown
from scipy import stats

from universal_neurons.core import paper
from universal_neurons.book.chapters import prediction as chapter


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


# ---- the claims: the paper's rules, a binomial null, half the lift of the paper's published tables ---------------
PAPER_DIRS = {"GPT2-small-a": ("stanford-gpt2-small-a", 12), "GPT2-medium-a": ("stanford-gpt2-medium-a", 24),
              "Pythia-160m": ("pythia-160m", 12)}


def _paper_counts():
    """From the published universal.csv files, read with the csv module: per model, prediction neurons and how many
    in the second half, the universal neurons' share there, the last layer's high-kurtosis neurons and how many
    have negative skew."""
    import csv

    out = {}
    for model, (folder, depth) in PAPER_DIRS.items():
        with open(paper.folder() / folder / "universal.csv") as f:
            rows = [(int(r["layer"]), float(r["vocab_kurt"]), float(r["vocab_skew"])) for r in csv.DictReader(f)]
        pred = [l for l, k, s in rows if k > 10 and s > 0]
        last = [s for l, k, s in rows if k > 10 and l == depth - 1 and s != 0]
        out[model] = (len(pred), sum(l >= depth // 2 for l in pred), np.mean([l >= depth // 2 for l, _, _ in rows]),
                      len(last), sum(s < 0 for s in last))
    return out


def test_paper_shares_from_the_published_tables():
    t = chapter.paper_shares()
    for model, (n, k, null, m, j) in _paper_counts().items():
        assert t.loc[model, "prediction neurons"] == n and t.loc[model, "last-layer high-kurtosis"] == m
        assert t.loc[model, "share late"] == pytest.approx(k / n) and t.loc[model, "null late"] == pytest.approx(null)
        assert t.loc[model, "lift late"] == pytest.approx((k / n - null) / (1 - null))
        assert t.loc[model, "lift suppression"] == pytest.approx((j / m - 0.5) / 0.5)
    # the smallest lifts the rules use: GPT2-medium-a's 124 of 126 late against 649 of 1,211; Pythia's 31 of 38
    assert t["lift late"].idxmin() == "GPT2-medium-a" and t["lift suppression"].idxmin() == "Pythia-160m"
    assert t["lift late"].min() == pytest.approx((124 / 126 - 649 / 1211) / (1 - 649 / 1211))
    assert t["lift suppression"].min() == pytest.approx((31 / 38 - 0.5) / 0.5)


def test_binomial_edge_is_the_95th_percentile_of_the_null_share():
    from math import comb

    for n, q in ((10, 0.5), (40, 0.5), (37, 0.3)):
        cdf = np.cumsum([comb(n, k) * q ** k * (1 - q) ** (n - k) for k in range(n + 1)])
        k95 = int(np.argmax(cdf >= 0.95 - 1e-12))
        assert chapter.binomial_edge(n, q) == pytest.approx(k95 / n)
        assert 1 - cdf[k95] <= 0.05  # a share above the edge has a one-sided binomial p below 0.05
    assert np.isnan(chapter.binomial_edge(0, 0.5))


def test_role_shares_count_the_papers_rules():
    t = pd.DataFrame({"model": ["a"] * 6 + ["b"] * 2, "layer": [0, 0, 1, 1, 1, 1, 0, 1],
                      "vocab_kurt": [12, 3, 15, 20, 11, 4, 30, 50], "vocab_skew": [1, 1, 2, -1, -2, -3, 1, 1]})
    c = chapter.role_shares(t, 2, 10.0)
    assert c == {"n_pred": 4, "n_pred_late": 2, "null_late": 5 / 8, "n_last_high": 4, "n_last_supp": 2}


def _counts(n_pred=0, late=0, null=0.5, n_high=0, supp=0):
    return {"n_pred": n_pred, "n_pred_late": late, "null_late": null, "n_last_high": n_high, "n_last_supp": supp}


@pytest.mark.parametrize("n, k, verdict", [
    (126, 124, "holds"),  # the paper's share in GPT2-medium-a
    (100, 75, "holds"),  # just above our null 0.5 plus half the paper's smallest lift (0.742)
    (100, 60, "direction only"),  # beyond the binomial band (0.58), short of the magnitude
    (100, 55, "does not hold"),  # inside the band
    (100, 20, "does not hold"),  # reversed
    (9, 9, "not testable here"), (0, 0, "not testable here")])
def test_late_evidence(n, k, verdict):
    ev = chapter.late_evidence(_counts(n, k), 10.0, chapter.paper_shares())
    assert ev.verdict == verdict
    if n:
        assert ev.magnitude == pytest.approx(0.5 + 0.5 * (124 / 126 - 649 / 1211) / (1 - 649 / 1211) * 0.5)


@pytest.mark.parametrize("n, k, verdict", [(38, 31, "holds"), (100, 66, "holds"), (100, 60, "direction only"),
                                           (100, 55, "does not hold"), (100, 30, "does not hold"),
                                           (5, 5, "not testable here")])
def test_suppression_evidence(n, k, verdict):
    ev = chapter.suppression_evidence(_counts(n_high=n, supp=k), 10.0, chapter.paper_shares())
    assert ev.verdict == verdict
    assert ev.magnitude == pytest.approx(0.5 + 0.5 * (31 / 38 - 0.5))


def test_not_testable_words():
    papers = chapter.paper_shares()
    one = chapter.late_evidence(_counts(1, 1, 0.5, 1, 0), 10.0, papers)
    assert one.untestable == ("only 1 neuron over the models passes the paper's prediction rule (vocab_kurt > 10, "
                              "vocab_skew > 0), fewer than the 10 a share needs")
    assert chapter.suppression_evidence(_counts(n_high=3), 10.0, papers).untestable == (
        "only 3 neurons of the last layer over the models have vocab_kurt > 10, fewer than the 10 a share needs")


def test_untrained_models_give_no_holds():
    """Fresh random models of the smoke shape (d_model 64, d_mlp 256, 2 layers, a 2,048-token vocabulary): their
    c_v are near-Gaussian (kurtosis near 3), no neuron passes the paper's rules, and neither claim can be judged."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    from universal_neurons.measures import weight_stats

    tables = []
    for seed in range(3):
        cfg = HookedTransformerConfig(n_layers=2, d_model=64, d_head=16, n_heads=4, d_mlp=256, d_vocab=2048,
                                      n_ctx=64, act_fn="gelu_new", normalization_type="LN", seed=seed)
        m = HookedTransformer(cfg)
        m.process_weights_(fold_ln=True, center_writing_weights=True, center_unembed=True)
        t, _ = weight_stats.weight_stats(m)
        tables.append(t.assign(model=f"untrained-{seed}"))
    t = pd.concat(tables, ignore_index=True)
    assert t["vocab_kurt"].max() < 10  # measured: near 3
    c = chapter.role_shares(t, 2, 10.0)
    papers = chapter.paper_shares()
    for ev in (chapter.late_evidence(c, 10.0, papers), chapter.suppression_evidence(c, 10.0, papers)):
        assert ev.verdict == "not testable here"


def test_curves_sentence_says_a_gaussian_has_3():
    assert chapter.curves_sentence(3.38, 3.86, -0.41, 0.52, 10.0) == (
        "Averaged over the models, the 95th percentile of `vocab_kurt` is 3.38 in the first half of the layers and "
        "3.86 in the second (a Gaussian has kurtosis 3; the paper's rule asks for more than 10); in the last layer "
        "the 5th percentile of `vocab_skew` is -0.41 and the 95th 0.52. These curves describe the layers' tails; the "
        "claims are judged on the neurons that pass the paper's rules.")


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
                    "by `vocab_kurt` of each model's second-half layers instead (10 neurons, all models), as a "
                    "description: they are not prediction or suppression neurons by the paper's rule.")
    late.loc[:11, "vocab_kurt"] = 50.0
    mask, text = chapter.high_kurtosis(late, 10.0, 5.0)
    assert mask.sum() == 12 and text == ("The 12 neurons of the second half of the layers (all models) with "
                                         "`vocab_kurt` above 10.")


def test_count_sentence_with_and_without_prediction_neurons():
    none = pd.DataFrame({"prediction": [0, 0], "suppression": [1, 2]})
    assert chapter.count_sentence(none, 10.0) == (
        "Over the models, 0 neurons pass the paper's prediction rule and 3 its suppression rule (`vocab_kurt` > 10).")
    some = pd.DataFrame({"prediction": [1, 0, 3, 4], "suppression": [0, 0, 2, 9]})
    assert chapter.count_sentence(some, 10.0) == (
        "Over the models, 8 neurons pass the paper's prediction rule and 11 its suppression rule (`vocab_kurt` > 10): "
        "88% of the prediction neurons sit in the second half of the layers, and the last layer has 9 suppression "
        "against 4 prediction neurons.")  # 7 of 8


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
    # the claims, from the counts: prediction neurons late against the neurons' share there; suppression among the
    # last layer's high-kurtosis neurons against one half
    layer = t["layer"].to_numpy()
    pred, supp = (kurt > 10) & (skew > 0), (kurt > 10) & (skew < 0)
    n, k, null = pred.sum(), (pred & (layer >= half)).sum(), np.mean(layer >= half)
    m, j = ((pred | supp) & (layer == n_layers - 1)).sum(), (supp & (layer == n_layers - 1)).sum()
    assert (g["pred_n_pred"], g["pred_n_pred_late"], g["pred_n_last_high"], g["pred_n_last_supp"]) == (n, k, m, j)
    assert g["pred_null_late"] == pytest.approx(null)
    for key, count, hits, base in (("late", n, k, null), ("supp", m, j, 0.5)):
        verdict = g[f"pred_verdict_{key}"]
        assert g[f"pred_rule_{key}"].startswith("holds if share of ")
        if count < 10:
            assert verdict == "not testable here"
            continue
        share = hits / count
        assert g[f"pred_share_{key}"] == pytest.approx(share)
        edge = stats.binom.ppf(0.95, count, base) / count
        assert verdict in (("holds", "direction only") if share > edge else ("does not hold",))
    for name in ("pred_examples_md", "pred_high_md", "pred_count_md", "pred_uni_md", "pred_class_md",
                 "pred_curves_md", "pred_holds_md"):
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

"""The universality chapter: its sentences (each where it holds and where it does not), its comparison table against
the paper's published counts, and its glued numbers on the smoke zoo against numpy float64 computations from the
saved tables."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from IPython.display import Markdown

from universal_neurons.core import paper
from universal_neurons.book.chapters import universality as chapter

SUMMARY = {"n_neurons": 1000, "n_dead": 0, "n_universal": 12, "share_universal": 0.012, "share_above_0.3": 0.2,
           "share_above_0.4": 0.05, "excess_q50": 0.08, "excess_q90": 0.15, "excess_q99": 0.55, "excess_max": 0.71,
           "mean_corr_median": 0.7227, "mean_baseline_median": 0.6551}
NONE_UNIVERSAL = {**SUMMARY, "n_universal": 0, "share_universal": 0.0}
CONTROL = {"excess_q50": 0.011, "excess_q99": 0.069, "excess_max": 0.079}


def test_paper_shares_are_the_papers_counts_over_its_neurons():
    assert chapter.paper_shares_words() == "4.16% in GPT2-small-a, 1.23% in GPT2-medium-a, 1.26% in Pythia-160m"
    assert chapter.paper_shares_words({"m": (1, 3)}) == "33.33% in m"


def test_verdict_when_neurons_are_universal():
    text = chapter.verdict(SUMMARY, 0.5, "the paper's threshold of 0.5")
    assert text == ("**12 neurons (1.20%) are universal** by the paper's criterion (the paper finds 4.16% in "
                    "GPT2-small-a, 1.23% in GPT2-medium-a, 1.26% in Pythia-160m).")
    other = chapter.verdict(SUMMARY, 0.4, "the threshold of 0.4")
    assert other.startswith("**12 neurons (1.20%) pass the threshold of 0.4**; by its threshold of 0.5, the paper ")


def test_verdict_when_no_neuron_is_universal():
    text = chapter.verdict(NONE_UNIVERSAL, 0.5, "the paper's threshold of 0.5")
    assert text.startswith("**No neuron of this model passes the paper's threshold of 0.5.** The median neuron's")
    assert "baseline is 0.655 against a median best-partner correlation of 0.723" in text
    assert f"takes back {100 * 0.655 / 0.723:.0f}% of the correlation" in text
    assert "are universal" not in text and "expected" not in text  # no conclusion the numbers did not decide


def test_layers_evidence_against_a_hypergeometric_null():
    """Layer 0's enrichment of universal neurons, judged against the paper's and random placement (scipy)."""
    from scipy import stats

    enrich = {m: (c[0] / paper.D_MLP[m]) / (paper.SHARES[m][0] / paper.SHARES[m][1])
              for m, c in paper.PER_LAYER.items()}
    assert enrich["GPT2-small-a"] == pytest.approx(222 / 3072 / (1533 / 36864))
    need = 1 + (min(enrich.values()) - 1) / 2
    layers = pd.DataFrame({"layer": [0, 1], "neurons": [1024, 1024], "above_0.5": [20, 6]})
    ev = chapter.layers_evidence(layers, 0.5, 10)
    assert ev.value == pytest.approx((20 / 1024) / (26 / 2048)) and ev.magnitude == pytest.approx(need)
    edge = stats.hypergeom(2048, 1024, 26).ppf(0.975) / 1024 / (26 / 2048)
    assert ev.noise == pytest.approx(edge) and ev.verdict == "holds"  # 20 of 26 in layer 0: beyond 18 by chance
    assert chapter.layers_evidence(layers.assign(**{"above_0.5": [16, 10]}), 0.5, 10).verdict == "does not hold"
    assert chapter.layers_evidence(layers.assign(**{"above_0.5": [8, 18]}), 0.5, 10).verdict == "does not hold"
    few = chapter.layers_evidence(layers.assign(**{"above_0.5": [3, 1]}), 0.5, 10)
    assert few.verdict == "not testable here" and "only 4 neurons" in few.rule
    assert chapter.layers_evidence(layers, 0.4, 10).verdict == "not testable here"  # not the paper's threshold


def test_control_paragraph_gives_the_scale_aware_threshold_and_who_passes_it():
    text = chapter.control_paragraph(NONE_UNIVERSAL, CONTROL, 0.0781, 265, 512, 0.5)
    assert text.startswith("Against the untrained control the excess correlation has median 0.011, 99th percentile "
                           "0.069 and maximum 0.079, against 0.080, 0.550 and 0.710 with the trained partners.\n\n")
    assert "the 99.9th percentile of the excess correlation against the untrained control, here 0.078:" in text
    share = 100 * 265 / 512
    assert f"**265 neurons ({share:.2f}% of the live ones) pass it**, against 0 above the paper's 0.5." in text
    assert "which selects 1-5% of GPT-2's neurons" in text  # the paper's shares: 1.23% to 4.16%
    assert "above the threshold of 0.4." in chapter.control_paragraph(SUMMARY, CONTROL, 0.0781, 265, 512, 0.4)


def test_control_paragraph_without_a_control():
    text = chapter.control_paragraph(NONE_UNIVERSAL, None, None, 0, 512, 0.5)
    assert text == "No untrained control was run for this profile (it is run for trained zoos only)."


def test_gap_of_universal_neurons_is_a_number_or_undefined():
    assert chapter.gap_universal_words(0.10449) == "0.104"
    assert chapter.gap_universal_words(None) == "undefined here (no universal neuron)"


def test_paper_distributions_compare_universal_neurons_or_the_top_percent():
    assert chapter.distributions_ours(3) == "universal neurons."
    assert chapter.distributions_ours(0) == "top 1% of neurons by excess correlation, since none is universal."


def test_comparison_table_puts_the_papers_numbers_beside_ours():
    ours = {"model": "ours", "universal": 3, "neurons": 512, "share %": 100 * 3 / 512, "mean gap, all": 0.07,
            "mean gap, universal": 0.1, "mean excess of universal": 0.6}
    t = chapter.comparison_table(ours).set_index("model")
    assert list(t.index) == ["ours", "paper GPT2-small-a", "paper GPT2-medium-a", "paper Pythia-160m",
                             "paper (text, figure 2b)"]
    assert t.loc["ours", "share %"] == round(100 * 3 / 512, 4)
    for name, n, total in (("GPT2-small-a", 1533, 36864), ("GPT2-medium-a", 1211, 98304), ("Pythia-160m", 465, 36864)):
        assert t.loc[f"paper {name}", "share %"] == round(100 * n / total, 4)  # section 4.1: 4.16%, 1.23%, 1.26%
        mean = pd.read_csv(paper.folder() / paper.TABLE_DIRS[name] / "universal.csv")["excess_corr"].mean()
        assert t.loc[f"paper {name}", "mean excess of universal"] == round(mean, 4)  # 0.587, 0.585, 0.587
        assert abs(mean - 0.59) < 0.006
    assert t.loc["paper (text, figure 2b)", ["mean gap, all", "mean gap, universal"]].tolist() == [0.049, 0.105]


# ---- the chapter on the smoke zoo -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ch(smoke, smoke_zoo):
    """The chapter on the smoke zoo, with the profile's settings (the paper's threshold)."""
    return chapter.compute("smoke")


def test_glued_numbers_equal_numpy_on_the_saved_tables(ch, smoke):
    t = pd.read_csv(smoke.tables_dir / "neurons.csv")
    live = t[~t["is_dead"]]
    ex = live["excess_corr"].to_numpy(np.float64)
    gap = live["max_corr"].to_numpy(np.float64) - live["min_corr"].to_numpy(np.float64)
    top = ex >= np.quantile(ex, 0.99)
    g = ch.glue
    assert g["threshold"] == 0.5 and isinstance(g["threshold"], float)
    assert g["n_neurons"] == len(t) and g["n_universal"] == int((ex > 0.5).sum())
    assert g["share_universal_pct"] == pytest.approx(100 * np.mean(ex > 0.5))
    assert g["share_above_03_pct"] == pytest.approx(100 * np.mean(ex > 0.3))
    for q, name in ((0.5, "excess_q50"), (0.9, "excess_q90"), (0.99, "excess_q99")):
        assert g[name] == pytest.approx(np.quantile(ex, q), abs=1e-12)
    assert g["excess_max"] == pytest.approx(ex.max(), abs=1e-12)
    assert g["mean_corr_median"] == pytest.approx(np.median(live["mean_corr"]), abs=1e-12)
    assert g["gap_all"] == pytest.approx(gap.mean(), abs=1e-12)
    assert g["gap_top"] == pytest.approx(gap[top].mean(), abs=1e-12)
    layers = pd.read_csv(smoke.tables_dir / "layer_similarity.csv")
    diag = layers[layers["ref_layer"] == layers["partner_layer"]]["argmax_share"].to_numpy(np.float64)
    assert g["same_layer_pct"] == pytest.approx(100 * diag.mean(), abs=1e-9)
    conv = pd.read_csv(smoke.tables_dir / "convergence.csv")
    assert g["conv_first_tokens"] == conv["n_tokens"].iloc[0] and g["conv_q99_last"] == pytest.approx(g["excess_q99"])
    for name in ("verdict", "control_md", "gap_universal_md", "paper_md", "paper_shares_md"):
        assert isinstance(g[name], Markdown), name
    assert (g["paper_threshold"], g["paper_gap_all"], g["paper_gap_universal"]) == (
        paper.THRESHOLD, paper.GAP_ALL, paper.GAP_UNIVERSAL)


def test_control_paragraph_counts_the_neurons_above_the_controls_quantile(ch, smoke):
    c = pd.read_csv(smoke.tables_dir / "control" / "neurons.csv")
    q = np.quantile(c.loc[~c["is_dead"], "excess_corr"].to_numpy(np.float64), 0.999)
    ex = ch.data["live"]["excess_corr"].to_numpy(np.float64)
    assert ch.data["control_threshold"] == pytest.approx(q, abs=1e-12)
    n = int((ex > q).sum())
    assert f"here {q:.3f}:" in ch.glue["control_md"].data
    assert f"**{n:,} neurons ({100 * n / len(ex):.2f}% of the live ones) pass it**" in ch.glue["control_md"].data


def test_the_control_threshold_setting_uses_the_controls_quantile(ch):
    at_control = chapter.compute("smoke", overrides="book.threshold=control")  # its own run folder: its own pass
    q = np.quantile(at_control.data["control_excess"].to_numpy(np.float64), 0.999)
    assert at_control.glue["threshold"] == pytest.approx(q, abs=1e-12)
    assert q == pytest.approx(ch.data["control_threshold"], abs=1e-6)  # float32 sums: the thread count shows
    ex = at_control.data["live"]["excess_corr"].to_numpy(np.float64)
    assert at_control.glue["n_universal"] == int((ex > q).sum()) > 0
    assert f"pass the scale-aware threshold of {q:.3f}" in at_control.glue["verdict"].data


def test_figures_are_wide_and_drawn(ch):
    for name in ("per_layer", "densities", "partner_agreement", "layer_similarity", "paper_distributions",
                 "convergence"):
        fig = getattr(chapter, f"{name}_figure")(ch)
        panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
        assert all(ax.has_data() for ax in panels), name
        if len(panels) > 1:
            assert fig.get_size_inches()[0] >= 10, name
        plt.close(fig)

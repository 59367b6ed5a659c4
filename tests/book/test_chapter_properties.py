"""The properties chapter: its claim verdicts (each where it holds and where it does not), the Mann-Whitney p-values
against an exact enumeration and a hand-written normal approximation, its group sentences, and its glued numbers
on the smoke zoo against numpy / scipy computations from the saved tables."""

import itertools

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from IPython.display import Markdown
from scipy import special, stats

from universal_neurons.core import paper
from universal_neurons.runs import selection
from universal_neurons.book.chapters import properties as chapter


# ---- the rule: gaps tied to the paper, Holm, effect sizes, verdicts ---------------------------------------------
def test_paper_gaps_are_the_smallest_of_section_4_2s_means():
    """The paper's U / non-U means (section 4.2), typed here from its table, and the smallest gap in the claimed
    direction: relative for sparsity, input bias and L2 penalty, a difference for skew and kurtosis."""
    means = {"sparsity": [(0.045, 0.135), (0.049, 0.139), (0.062, 0.230)],
             "input_bias": [(-0.82, -0.48), (-0.49, -0.25), (-0.07, -0.05)],
             "skew": [(0.95, 0.07), (1.10, 0.03), (0.85, -0.05)], "kurt": [(7.2, 4.0), (8.1, 3.8), (7.1, 3.4)],
             "l2_penalty": [(0.83, 0.64), (0.66, 0.43), (2.06, 1.17)]}
    models = ["GPT2-small-a", "GPT2-medium-a", "Pythia-160m"]
    expected = {"sparsity": (-0.09 / 0.139, "GPT2-medium-a"), "input_bias": (-0.02 / 0.05, "Pythia-160m"),
                "skew": (0.88, "GPT2-small-a"), "kurt": (3.2, "GPT2-small-a"),
                "l2_penalty": (0.19 / 0.64, "GPT2-small-a")}
    for col, sign, _ in chapter.CLAIMS:
        got = chapter.paper_gap(col, sign)
        if col == "mean":
            assert got is None  # the paper prints no mean pre-activation
            continue
        assert got[0] == pytest.approx(expected[col][0], abs=1e-12) and got[1] == expected[col][1], col
        assert (got[2], got[3]) == means[col][models.index(got[1])]


def test_gap_relative_and_difference():
    assert chapter.gap(0.05, 0.10, "relative") == pytest.approx(-0.5)
    assert chapter.gap(-0.3, -0.2, "relative") == pytest.approx(-0.5)  # more negative: a negative gap
    assert chapter.gap(-0.3, 0.2, "relative") == pytest.approx(-2.5)
    assert chapter.gap(5.0, 3.5, "difference") == pytest.approx(1.5)
    assert np.isnan(chapter.gap(1.0, 0.0, "relative"))


def _row(stat, gap, p_holm):
    return pd.Series({"statistic": stat, "gap": gap, "p (Holm)": p_holm})


@pytest.mark.parametrize("stat, sign, gap, p, verdict", [
    ("kurt", +1, 3.2, 1e-6, "holds"),  # the paper's smallest gap, significant
    ("kurt", +1, 1.6, 1e-6, "holds"),  # exactly half of it
    ("kurt", +1, 3.2 / 5, 1e-6, "direction only"),  # a fifth of it
    ("kurt", +1, 3.2, 0.2, "does not hold"),  # the paper's size, inside the noise
    ("kurt", +1, -1.0, 1e-6, "does not hold"),  # reversed
    ("sparsity", -1, -0.7, 1e-4, "holds"), ("sparsity", -1, -0.2, 1e-4, "direction only"),
    ("sparsity", -1, 0.3, 1e-4, "does not hold"),
    ("input_bias", -1, -0.25, 0.01, "holds"), ("input_bias", -1, -0.1, 0.01, "direction only"),
    ("mean", -1, -5.0, 1e-9, "direction only"),  # no paper number: direction at most
    ("mean", -1, -5.0, 0.3, "does not hold"), ("skew", +1, float("nan"), float("nan"), "does not hold")])
def test_claim_evidence_verdicts(stat, sign, gap, p, verdict):
    ev = chapter.claim_evidence(_row(stat, gap, p), sign)
    assert ev.verdict == verdict
    assert "Holm-adjusted over the six claims" in ev.rule


def test_claim_evidence_rules_print_the_papers_numbers():
    ev = chapter.claim_evidence(_row("kurt", 2.0, 1e-3), +1)
    assert ev.rule.startswith("holds if gap U − non-U of the mean pre-activation kurtosis ≥ 1.6 (half the paper's "
                              "smallest, 3.2 in GPT2-small-a: 7.2 / 4)")
    mean = chapter.claim_evidence(_row("mean", -1.0, 1e-3), -1)
    assert "paper prints no mean of it" in mean.rule and mean.magnitude is None


def test_a_stand_in_group_makes_every_claim_not_testable():
    g = _group(3, "top 2% by excess")
    why = chapter.untestable_words(g, 41, 2.0)
    assert why == ("only 3 neurons pass the paper's threshold of 0.5; the top 2% stand-ins (41 neurons) are shown "
                   "as the book's secondary view")
    assert chapter.untestable_words(_group(20, "universal (excess > 0.5)"), 20, 2.0) == ""
    for col, sign, _ in chapter.CLAIMS:  # even an effect at the paper's size
        assert chapter.claim_evidence(_row(col, 10.0 * sign, 1e-12), sign, why).verdict == "not testable here"


def test_untrained_models_give_no_holds():
    """Excess correlations near 0, as an untrained model's are (no learned feature to share), leave no neuron
    above the paper's threshold: the stand-in is compared and no claim is judged, whatever its tests say."""
    rng = np.random.default_rng(0)
    live = pd.DataFrame({"excess_corr": rng.normal(0.02, 0.03, 512), "is_dead": False})
    mask, label = selection.universal_group(live, 0.5, 2.0, 10)
    g = selection.Group(mask, label, 0.5, "the paper's threshold of 0.5", int((live["excess_corr"] > 0.5).sum()))
    assert not g.is_universal and g.n_universal == 0
    why = chapter.untestable_words(g, int(mask.sum()), 2.0)
    pct = pd.DataFrame({c: rng.random(512) * 100 for c, _, _ in chapter.CLAIMS})
    raw = pd.DataFrame({c: rng.normal(size=512) + 3 for c, _, _ in chapter.CLAIMS})
    table = chapter.claim_table(pct, raw, mask)
    verdicts = [chapter.claim_evidence(r, sign, why).verdict
                for (_, sign, _), (_, r) in zip(chapter.CLAIMS, table.iterrows())]
    assert verdicts == ["not testable here"] * 6


def test_holds_note_from_the_numbers():
    t = pd.DataFrame({"statistic": ["a", "b", "c"], "p (Holm)": [0.01, 0.2, 0.04],
                      "effect size (P claimed side)": [0.61, 0.52, 0.7]})
    uni = _group(30, "universal (excess > 0.5)")
    assert chapter.holds_note(t, uni, 30, 2.0) == (
        "On the 30 universal neurons, 2 of the 3 Holm-adjusted p-values are below 0.05. The effect sizes (the "
        "probability that a group neuron lies on the claimed side of a neuron of the rest; 0.5 for none) run from "
        "0.52 (b) to 0.70 (c).")
    stand = chapter.holds_note(t, _group(0, "top 2% by excess"), 11, 2.0)
    assert stand.startswith("The compared group is the top 2% by excess correlation (11 neurons), since only 0 pass "
                            "the paper's threshold of 0.5: on these stand-ins, 2 of the 3")
    assert stand.endswith("They judge none of the paper's claims, which are about universal neurons.")


def _group(n_universal, label, mask=None, thr=0.5, words="the paper's threshold of 0.5"):
    return selection.Group(pd.Series([] if mask is None else mask, dtype=bool), label, thr, words, n_universal)


def test_group_sentence_when_enough_neurons_are_universal():
    g = _group(1234, "universal (excess > 0.5)")
    assert g.is_universal
    assert chapter.group_sentence(g, 1234, 0.51, 10, 2.0) == (
        "1,234 neurons pass the paper's threshold of 0.5: they are the universal group compared below with the rest.")


def test_group_sentence_when_the_top_percent_stands_in():
    g = _group(0, "top 2% by excess")
    assert not g.is_universal
    assert chapter.group_sentence(g, 11, 0.18765, 10, 2.0) == (
        "**No neuron passes the paper's threshold of 0.5**, fewer than the 10 a comparison needs (the universality "
        "chapter shows how far the neurons are from it). Instead, the **top 2% of neurons by excess correlation** "
        "(11 neurons, excess at least 0.188) stand in for the universal neurons below, as the book's secondary "
        "view. They are the most universal neurons of this model, not universal in the paper's sense, so the "
        "paper's claims are not judged on them.")
    few = chapter.group_sentence(_group(3, "top 5% by excess"), 40, 0.3, 10, 5.0)
    assert few.startswith("**Only 3 neurons pass the paper's threshold of 0.5**, fewer than the 10")
    assert "**top 5% of neurons by excess correlation** (40 neurons, excess at least 0.300)" in few


# ---- the Mann-Whitney table against independent computations -----------------------------------------------------
def _exact_p_greater(g, r):
    """P(U >= U_observed) under the null, by enumerating every split of the pooled sample (no ties)."""
    pooled = np.concatenate([g, r])
    u_obs = (g[:, None] > r[None, :]).sum()
    us = []
    for idx in itertools.combinations(range(len(pooled)), len(g)):
        mask = np.zeros(len(pooled), bool)
        mask[list(idx)] = True
        us.append((pooled[mask][:, None] > pooled[~mask][None, :]).sum())
    return float(np.mean(np.array(us) >= u_obs))


def _normal_p(g, r, greater):
    """One-sided p of the Mann-Whitney U by the normal approximation with continuity correction (no ties)."""
    n1, n2 = len(g), len(r)
    u = float((g[:, None] > r[None, :]).sum())
    sigma = np.sqrt(n1 * n2 * (n1 + n2 + 1) / 12.0)
    z = (u - n1 * n2 / 2 - 0.5) / sigma if greater else (n1 * n2 / 2 - u - 0.5) / sigma
    return 0.5 * special.erfc(z / np.sqrt(2))


def _holm(p):
    """Holm's step-down adjustment, written out: sort, multiply by (m - rank), carry the running maximum."""
    p = np.asarray(p, float)
    order = np.argsort(p)
    out, running = np.empty_like(p), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[i]))
        out[i] = running
    return out


def test_claim_table_p_values_small_groups_are_exact():
    rng = np.random.default_rng(1)
    values = rng.permutation(100)[:10].astype(float)
    group = np.array([True] * 4 + [False] * 6)
    pct = pd.DataFrame({"a": values, "b": values[::-1]})
    raw = pd.DataFrame({"a": values, "b": values})
    t = chapter.claim_table(pct, raw, pd.Series(group), claims=[("a", +1, "a high"), ("b", -1, "b low")])
    p_a = _exact_p_greater(values[group], values[~group])
    b = values[::-1]
    p_b = _exact_p_greater(-b[group], -b[~group])
    assert t["p (Mann-Whitney)"].tolist() == pytest.approx([p_a, p_b], abs=1e-12)
    assert t["p (Holm)"].tolist() == pytest.approx(_holm([p_a, p_b]).tolist(), abs=1e-12)
    assert t["median percentile"].tolist() == [np.median(values[group]), np.median(b[group])]
    # effect sizes: the share of (group, rest) pairs with the group on the claimed side, counted pair by pair
    pairs_a = np.mean(values[group][:, None] > values[~group][None, :])
    pairs_b = np.mean(b[group][:, None] < b[~group][None, :])
    assert t["effect size (P claimed side)"].tolist() == pytest.approx([pairs_a, pairs_b], abs=1e-12)


def test_claim_table_large_groups_use_the_normal_approximation():
    rng = np.random.default_rng(0)
    n = 300
    group = np.zeros(n, bool)
    group[rng.choice(n, 30, replace=False)] = True
    high = rng.random(n) * 100 + 25 * group  # the group sits higher
    flat = rng.random(n) * 100  # nothing special: p is large
    low = rng.random(n) * 100 - 25 * group
    pct = pd.DataFrame({"high": high, "flat": flat, "low": low})
    claims = [("high", +1, "high"), ("flat", +1, "flat"), ("low", +1, "claimed high, is low")]
    t = chapter.claim_table(pct, pct, pd.Series(group), claims=claims).set_index("statistic")
    ps = []
    for col in pct:
        g, r = pct[col].to_numpy()[group], pct[col].to_numpy()[~group]
        ps.append(_normal_p(g, r, True))
        assert t.loc[col, "p (Mann-Whitney)"] == pytest.approx(ps[-1], rel=1e-9)
        assert t.loc[col, "median percentile"] == pytest.approx(np.median(g), abs=1e-12)
        assert t.loc[col, "effect size (P claimed side)"] == pytest.approx(np.mean(g[:, None] > r[None, :]), abs=1e-12)
        assert (t.loc[col, "U mean"], t.loc[col, "non-U mean"]) == pytest.approx((g.mean(), r.mean()), abs=1e-9)
    assert t["p (Holm)"].to_numpy() == pytest.approx(_holm(ps), rel=1e-9)
    assert t.loc["high", "p (Holm)"] < 0.05 < t.loc["flat", "p (Holm)"] and t.loc["low", "p (Holm)"] > 0.5


def test_means_table_puts_ours_beside_the_papers():
    live = pd.DataFrame({c: np.arange(6, dtype=float) * (k + 1) for k, c in enumerate(chapter.MEAN_COLS)})
    group = pd.Series([True, True, False, False, False, False])
    t = chapter.means_table(live, group, "ours")
    assert list(t.index) == ["ours", *paper.PROPERTY_MEANS.index]
    for k, c in enumerate(chapter.MEAN_COLS):
        u, n = np.mean([0, 1]) * (k + 1), np.mean([2, 3, 4, 5]) * (k + 1)
        assert t.loc["ours", f"{c} U / non-U"] == f"{u:.3f} / {n:.3f}"
    assert t.loc["GPT2-medium-a", "kurt U / non-U"] == "8.100 / 3.800"  # section 4.2


def test_histogram_picks_the_four_most_universal_and_four_median_neurons():
    live = pd.DataFrame({"layer": 0, "neuron": range(20), "excess_corr": np.linspace(0, 1, 20)[::-1]})
    picks = chapter.histogram_picks(live)
    assert [k for k, _ in picks] == ["top"] * 4 + ["median"] * 4
    assert [r.neuron for _, r in picks] == [0, 1, 2, 3, 8, 9, 10, 11]


# ---- the chapter on the smoke zoo -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ch(smoke, smoke_zoo):
    return chapter.compute("smoke")


def _within_layer_pct(frame, col):
    out = np.empty(len(frame))
    for _, idx in frame.groupby("layer").indices.items():
        out[idx] = stats.rankdata(frame[col].to_numpy(np.float64)[idx], method="average") / len(idx) * 100
    return out


@pytest.mark.slow
def test_glued_numbers_equal_numpy_on_the_saved_tables(ch, smoke):
    t = pd.read_csv(smoke.tables_dir / "neurons.csv")
    live = t[~t["is_dead"]].reset_index(drop=True)
    ex = live["excess_corr"].to_numpy(np.float64)
    g = ch.glue
    n_universal = int((ex > 0.5).sum())
    group = ex > 0.5 if n_universal >= 10 else ex >= np.quantile(ex, 0.98)
    assert (g["prop_n_neurons"], g["prop_n_universal"], g["prop_n_group"]) == (len(live), n_universal, group.sum())
    assert g["prop_n_tokens"] == smoke.cfg["analysis"]["n_tokens"]
    assert g["prop_n_claims"] == 6 and isinstance(g["prop_n_hold"], int)
    ps, effects = [], []
    for col, sign, _ in chapter.CLAIMS:
        pct = _within_layer_pct(live, col)
        med = float(np.median(pct[group]))
        assert g[f"prop_pct_{col}"] == pytest.approx(med, abs=1e-9) and isinstance(g[f"prop_pct_{col}"], float)
        ps.append(stats.mannwhitneyu(pct[group], pct[~group], alternative="greater" if sign > 0 else "less").pvalue)
        diff = sign * (pct[group][:, None] - pct[~group][None, :])
        side, ties = diff > 0, diff == 0
        assert g[f"prop_effect_{col}"] == pytest.approx(np.mean(side + 0.5 * ties), abs=1e-9)
        x = live[col].to_numpy(np.float64)
        d = x[group].mean() - x[~group].mean()
        expected_gap = d if chapter.GAP_KIND[col] == "difference" else d / abs(x[~group].mean())
        assert g[f"prop_gap_{col}"] == pytest.approx(expected_gap, rel=1e-9)
    holm = _holm(ps)
    for (col, _, _), p in zip(chapter.CLAIMS, holm):
        assert g[f"prop_p_holm_{col}"] == pytest.approx(p, rel=1e-9)
        if n_universal < 10:  # the stand-in: nothing is judged
            assert g[f"prop_verdict_{col}"] == "not testable here"
        assert g[f"prop_rule_{col}"].startswith("holds if ")
    assert g["prop_n_hold"] == sum(g[f"prop_verdict_{c}"] == "holds" for c, _, _ in chapter.CLAIMS)
    assert isinstance(g["prop_holds_md"], Markdown) and "## " not in g["prop_holds_md"].data
    assert isinstance(g["prop_group_md"], Markdown) and isinstance(g["prop_label_md"], Markdown)
    means = ch.tables["means"].iloc[0]
    assert means["kurt U / non-U"] == f"{live['kurt'][group].mean():.3f} / {live['kurt'][~group].mean():.3f}"


@pytest.mark.slow
def test_figures_are_wide_and_drawn(ch):
    for name in ("percentiles", "layers", "histograms"):
        fig = getattr(chapter, f"{name}_figure")(ch)
        assert all(ax.has_data() for ax in fig.axes), name
        assert fig.get_size_inches()[0] >= 10, name
        plt.close(fig)

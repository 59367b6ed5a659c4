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

from universal_neurons import paper
from universal_neurons.chapters import properties as chapter


# ---- verdicts and sentences ------------------------------------------------------------------------------------
@pytest.mark.parametrize("median, sign, p, verdict", [
    (70.0, +1, 0.01, "holds"), (30.0, -1, 0.01, "holds"),
    (70.0, +1, 0.2, "points the same way, not significantly"),
    (30.0, -1, 0.05, "points the same way, not significantly"),
    (30.0, +1, 0.001, "does not hold"), (70.0, -1, 0.001, "does not hold"), (50.0, +1, 0.001, "does not hold"),
    (70.0, +1, float("nan"), "points the same way, not significantly")])
def test_claim_verdict(median, sign, p, verdict):
    assert chapter.claim_verdict(median, sign, p) == verdict


def _group(n_universal, label, mask=None, thr=0.5, words="the paper's threshold of 0.5"):
    return chapter.Group(pd.Series([] if mask is None else mask, dtype=bool), label, thr, words, n_universal)


def test_group_sentence_when_enough_neurons_are_universal():
    g = _group(1234, "universal (excess > 0.5)")
    assert g.is_universal
    assert chapter.group_sentence(g, 1234, 0.51, 10, 2.0) == (
        "1,234 neurons pass the paper's threshold of 0.5: they are the universal group compared below with the rest.")


def test_group_sentence_when_the_top_percent_stands_in():
    g = _group(0, "top 2% by excess")
    assert not g.is_universal
    assert chapter.group_sentence(g, 11, 0.18765, 10, 2.0) == (
        "**No neuron passes the paper's threshold of 0.5**, fewer than the 10 a comparison needs (small zoos are "
        "expected to have none: see the universality chapter). Instead, the **top 2% of neurons by excess "
        "correlation** (11 neurons, excess at least 0.188) stand in for the universal neurons below. They are the "
        "most universal neurons of this model, not universal in the paper's sense.")
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


def test_claim_table_p_values_small_groups_are_exact():
    rng = np.random.default_rng(1)
    values = rng.permutation(100)[:10].astype(float)
    group = np.array([True] * 4 + [False] * 6)
    pct = pd.DataFrame({"a": values, "b": values[::-1]})
    t = chapter.claim_table(pct, pd.Series(group), claims=[("a", +1, "a high"), ("b", -1, "b low")])
    assert t["p (Mann-Whitney)"].iloc[0] == pytest.approx(_exact_p_greater(values[group], values[~group]), abs=1e-12)
    b = values[::-1]
    assert t["p (Mann-Whitney)"].iloc[1] == pytest.approx(_exact_p_greater(-b[group], -b[~group]), abs=1e-12)
    assert t["median percentile"].tolist() == [np.median(values[group]), np.median(b[group])]


def test_claim_table_large_groups_use_the_normal_approximation_and_the_verdict_rule():
    rng = np.random.default_rng(0)
    n = 300
    group = np.zeros(n, bool)
    group[rng.choice(n, 30, replace=False)] = True
    high = rng.random(n) * 100 + 25 * group  # the group sits higher: the claim holds
    flat = rng.random(n) * 100  # nothing special: p is large
    low = rng.random(n) * 100 - 25 * group
    pct = pd.DataFrame({"high": high, "flat": flat, "low": low})
    claims = [("high", +1, "high"), ("flat", +1, "flat"), ("low", +1, "claimed high, is low")]
    t = chapter.claim_table(pct, pd.Series(group), claims=claims).set_index("statistic")
    for col in pct:
        g, r = pct[col].to_numpy()[group], pct[col].to_numpy()[~group]
        assert t.loc[col, "p (Mann-Whitney)"] == pytest.approx(_normal_p(g, r, True), rel=1e-9)
        assert t.loc[col, "median percentile"] == pytest.approx(np.median(g), abs=1e-12)
        med, p = np.median(g), _normal_p(g, r, True)
        expected = ("holds" if med > 50 and p < 0.05 else "points the same way, not significantly" if med > 50
                    else "does not hold")
        assert t.loc[col, "verdict"] == expected
    assert t.loc["high", "verdict"] == "holds" and t.loc["low", "verdict"] == "does not hold"


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
    for col, sign, _ in chapter.CLAIMS:
        pct = _within_layer_pct(live, col)
        med = float(np.median(pct[group]))
        assert g[f"prop_pct_{col}"] == pytest.approx(med, abs=1e-9) and isinstance(g[f"prop_pct_{col}"], float)
        p = stats.mannwhitneyu(pct[group], pct[~group], alternative="greater" if sign > 0 else "less").pvalue
        assert g[f"prop_verdict_{col}"] == chapter.claim_verdict(med, sign, p)
    assert g["prop_n_hold"] == sum(g[f"prop_verdict_{c}"] == "holds" for c, _, _ in chapter.CLAIMS)
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

"""The mysteries chapter: the verdict over models (every, some, none), the frequency fit against numpy's corrcoef
and lstsq, the group sentences, and its glued numbers on the smoke zoo against numpy float64 computations from the
saved tables."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from IPython.display import Markdown
from scipy import special

from universal_neurons import paper
from universal_neurons.chapters import mysteries as chapter
from universal_neurons.chapters.properties import Group


@pytest.mark.parametrize("ok, verdict", [([True, True, True], "holds in every model"),
                                         ([True, False, False], "holds in 1 of 3 models"),
                                         (np.array([False, True]), "holds in 1 of 2 models"),
                                         ([False, False, False], "does not hold"),
                                         (pd.Series([True]), "holds in every model")])
def test_in_models(ok, verdict):
    assert chapter.in_models(ok) == verdict


def _pearson_p(r, n):
    """Two-sided p of Pearson's r: the t statistic with n - 2 degrees of freedom, via the regularized incomplete
    beta function."""
    df = n - 2
    t2 = r * r * df / (1 - r * r)
    return special.betainc(df / 2, 0.5, df / (df + t2))


def test_frequency_fit_against_numpy():
    rng = np.random.default_rng(0)
    x = rng.random(400)
    y = -0.3 * x + 0.1 * rng.normal(size=400)
    fit = chapter.frequency_fit(x, y, 5.0)
    r = np.corrcoef(x, y)[0, 1]
    (slope, icept), *_ = np.linalg.lstsq(np.column_stack([x, np.ones_like(x)]), y, rcond=None)
    assert fit["pearson r"] == pytest.approx(r, abs=1e-12)
    assert fit["p"] == pytest.approx(_pearson_p(r, len(x)), rel=1e-6)
    assert (fit["slope"], fit["intercept"]) == pytest.approx((slope, icept), abs=1e-10)
    top = np.argsort(x)[-20:]  # the 5% most frequent: 20 of 400
    rest = np.setdiff1d(np.arange(400), top)
    assert fit["mean cos, 5% most frequent"] == pytest.approx(y[top].mean(), abs=1e-12)
    assert fit["mean cos, rest"] == pytest.approx(y[rest].mean(), abs=1e-12)
    assert (fit["min cos"], fit["max cos"]) == (y.min(), y.max())


def test_group_sentence_universal_or_the_top_percent():
    universal = Group(pd.Series([True] * 1500 + [False] * 10), "universal (excess > 0.5)", 0.5,
                      "the paper's threshold of 0.5", 1500)
    assert chapter.group_sentence(universal, 2.0) == (
        "its 1,500 universal neurons (excess correlation above 0.5) against the rest")
    top = Group(pd.Series([True, False]), "top 2% by excess", 0.5, "the paper's threshold of 0.5", 0)
    assert chapter.group_sentence(top, 2.0) == (
        "its top 2% of neurons by excess correlation against the rest, since only 0 pass the paper's threshold of 0.5")


def test_uniqueness_table_against_numpy():
    live = pd.DataFrame({"max_in_cos": [0.9, 0.8, 0.3, 0.4, 0.5], "max_out_cos": [0.1, 0.2, 0.7, 0.6, 0.9]})
    group = Group(pd.Series([True, True, False, False, False]), "top 2% by excess", 0.5, "x", 0)
    t = chapter.uniqueness_table(live, group)
    assert t.loc[("max_in_cos", "top 2% by excess"), "median"] == pytest.approx(0.85)
    assert t.loc[("max_in_cos", "rest"), "mean"] == pytest.approx(0.4)
    assert t.loc[("max_out_cos", "rest"), "median"] == pytest.approx(0.7)


# ---- the chapter on the smoke zoo -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ch(smoke, smoke_zoo):
    return chapter.compute("smoke")


@pytest.mark.slow
def test_glued_numbers_equal_numpy_on_the_saved_tables(ch, smoke):
    t = pd.read_csv(smoke.tables_dir / "properties.csv")
    g = ch.glue
    rs, ps, frequent, rest, lo, hi = [], [], [], [], [], []
    for m in t["model"].unique():
        x, y = (t.loc[t["model"] == m, c].to_numpy(np.float64) for c in ("sparsity", "in_out_sim"))
        r = np.corrcoef(x, y)[0, 1]
        rs.append(r)
        ps.append(_pearson_p(r, len(x)))
        top = x >= np.quantile(x, 0.95)
        frequent.append(y[top].mean())
        rest.append(y[~top].mean())
        lo.append(y.min())
        hi.append(y.max())
    assert g["mys_n_models"] == len(rs) == len(smoke.seeds)
    assert g["mys_r_ref"] == pytest.approx(rs[0], abs=1e-12)
    assert (g["mys_r_min"], g["mys_r_max"]) == pytest.approx((min(rs), max(rs)), abs=1e-12)
    assert g["mys_frequent_cos"] == pytest.approx(np.mean(frequent), abs=1e-12)
    assert g["mys_rest_cos"] == pytest.approx(np.mean(rest), abs=1e-12)
    assert (g["mys_cos_min"], g["mys_cos_max"]) == (min(lo), max(hi))
    assert g["mys_verdict_r"] == chapter.in_models([r < 0 and p < 0.05 for r, p in zip(rs, ps)])
    assert g["mys_verdict_opposite"] == chapter.in_models([f < 0 for f in frequent])
    assert g["mys_frequent_pct"] == 5.0 and isinstance(g["mys_frequent_pct"], float)
    assert g["mys_paper_saturation"] == paper.IN_OUT_COS_SATURATION

    n = pd.read_csv(smoke.tables_dir / "neurons.csv")
    live = n[~n["is_dead"]]
    ex = live["excess_corr"].to_numpy(np.float64)
    group = ex > 0.5 if (ex > 0.5).sum() >= 10 else ex >= np.quantile(ex, 0.98)
    for col in ("max_in_cos", "max_out_cos"):
        v = live[col].to_numpy(np.float64)
        assert g[f"mys_{col}_group"] == pytest.approx(np.median(v[group]), abs=1e-12)
        assert g[f"mys_{col}_rest"] == pytest.approx(np.median(v[~group]), abs=1e-12)
    assert isinstance(g["mys_group_md"], Markdown) and isinstance(g["mys_label_md"], Markdown)


@pytest.mark.slow
def test_figures_are_wide_and_drawn(ch):
    for name in ("frequency", "uniqueness"):
        fig = getattr(chapter, f"{name}_figure")(ch)
        drawn = [ax for ax in fig.axes if ax.axison]
        assert drawn and all(ax.has_data() for ax in drawn), name
        assert fig.get_size_inches()[0] >= 10, name
        plt.close(fig)


@pytest.mark.slow
def test_book_settings_reach_the_chapter(smoke, smoke_zoo):
    """book.frequent_pct and book.top_pct, set as make book SET does, change what is compared (own run folder)."""
    ch = chapter.compute("smoke", overrides="book.frequent_pct=10 book.top_pct=5")
    assert ch.glue["mys_frequent_pct"] == 10.0 and "mean cos, 10% most frequent" in ch.tables["fits"]
    live = ch.data["live"]
    ex = live["excess_corr"].to_numpy(np.float64)
    assert ch.data["group"].mask.sum() == (ex >= np.quantile(ex, 0.95)).sum()
    assert ch.glue["mys_group_md"].data.startswith("its top 5% of neurons by excess correlation")

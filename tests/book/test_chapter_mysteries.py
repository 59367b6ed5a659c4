"""The mysteries chapter: its two claims judged on synthetic fits with a known answer and on untrained models (no
"holds"), the bootstrap intervals against a plain loop, the frequency fit against numpy's corrcoef and lstsq, the
group sentences, and its glued numbers on the smoke zoo against numpy float64 computations from the saved
tables."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from IPython.display import Markdown
from scipy import special

from universal_neurons.core import paper
from universal_neurons.book.chapters import mysteries as chapter
from universal_neurons.book.chapters.properties import Group


def _fits(r, r_lo, r_hi, cos, lo, hi):
    return pd.DataFrame({"pearson r": r, "r lo": r_lo, "r hi": r_hi, "mean cos, 5% most frequent": cos,
                         "frequent lo": lo, "frequent hi": hi, "mean cos, rest": 0.0, "min cos": -0.9,
                         "max cos": 0.5})


@pytest.mark.parametrize("r, lo, hi, verdict", [
    ([-0.15, -0.11], [-0.2, -0.16], [-0.1, -0.06], "direction only"),  # the paper prints no r: never more
    ([-0.15, -0.01], [-0.2, -0.05], [-0.1, 0.03], "does not hold"),  # one model's interval reaches 0
    ([0.1, 0.2], [0.05, 0.1], [0.15, 0.3], "does not hold")])  # reversed
def test_r_evidence(r, lo, hi, verdict):
    ev = chapter.r_evidence(_fits(r, lo, hi, 0.0, 0.0, 0.0))
    assert ev.verdict == verdict and ev.magnitude is None
    assert ev.value == pytest.approx(np.mean(r)) and ev.interval == (min(lo), max(hi))


@pytest.mark.parametrize("cos, lo, hi, verdict", [
    ([-0.8, -0.7], [-0.85, -0.75], [-0.75, -0.65], "holds"),  # the paper's saturation
    ([-0.4, -0.4], [-0.45, -0.45], [-0.35, -0.35], "holds"),  # exactly half-way
    ([-0.16, -0.16], [-0.2, -0.2], [-0.12, -0.12], "direction only"),  # a fifth of it
    ([-0.8, -0.1], [-0.85, -0.2], [-0.75, 0.01], "does not hold"),  # one model's interval reaches 0
    ([0.3, 0.2], [0.25, 0.15], [0.35, 0.25], "does not hold")])
def test_opposite_evidence(cos, lo, hi, verdict):
    ev = chapter.opposite_evidence(_fits(0.0, 0.0, 0.0, cos, lo, hi), 5.0)
    assert ev.verdict == verdict
    assert ev.magnitude == pytest.approx(-0.4) and "half-way to the paper's saturation near −0.8" in ev.rule


def test_bootstrap_intervals_against_a_loop():
    rng = np.random.default_rng(0)
    x, y = rng.random(200), rng.normal(size=200)
    lo, hi = chapter.bootstrap_r(x, y, n_boot=300, seed=4)
    draw = np.random.default_rng(4).integers(0, 200, size=(300, 200))
    rs = [np.corrcoef(x[i], y[i])[0, 1] for i in draw]
    assert (lo, hi) == pytest.approx((np.quantile(rs, 0.025), np.quantile(rs, 0.975)), abs=1e-12)
    lo, hi = chapter.bootstrap_mean(y, n_boot=300, seed=4)
    ms = [y[i].mean() for i in draw]
    assert (lo, hi) == pytest.approx((np.quantile(ms, 0.025), np.quantile(ms, 0.975)), abs=1e-12)


def test_untrained_models_give_no_holds():
    """Fresh random models of the smoke shape: activation frequency on random tokens against cos(w_in, w_out),
    fitted and judged as the chapter does: neither claim holds."""
    import torch
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    from universal_neurons.measures import weight_stats

    fits = []
    for seed in range(3):
        cfg = HookedTransformerConfig(n_layers=2, d_model=64, d_head=16, n_heads=4, d_mlp=256, d_vocab=2048,
                                      n_ctx=64, act_fn="gelu_new", normalization_type="LN", seed=seed)
        m = HookedTransformer(cfg)
        m.process_weights_(fold_ln=True, center_writing_weights=True, center_unembed=True)
        tokens = torch.randint(0, 2048, (32, 64), generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            _, cache = m.run_with_cache(tokens, names_filter=lambda n: n.endswith("mlp.hook_pre"))
        freq = np.concatenate([(cache[f"blocks.{l}.mlp.hook_pre"] > 0).double().mean((0, 1)).numpy()
                               for l in range(2)])
        cos = weight_stats.weight_stats(m)[0]["in_out_sim"].to_numpy()
        fits.append(chapter.frequency_fit(freq, cos, 5.0))
    fits = pd.DataFrame(fits)
    verdicts = [chapter.r_evidence(fits).verdict, chapter.opposite_evidence(fits, 5.0).verdict]
    assert "holds" not in verdicts, (verdicts, fits)
    assert abs(fits["mean cos, 5% most frequent"].mean()) < 0.2  # measured: near 0, far from -0.4


def test_holds_note_from_the_fits():
    f = _fits([-0.15, -0.11], [-0.2, -0.16], [-0.1, -0.06], [-0.05, -0.02], -0.1, 0.0)
    assert chapter.holds_note(f, 5.0) == (
        "Pearson's r runs from -0.150 to -0.110 over the 2 models; the 5% most frequent neurons have a mean cosine "
        "of -0.050 to -0.020 (the rest: 0.000 to 0.000), and the cosines span -0.90 to 0.50 (the paper: saturation "
        "near ±0.8).")


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
    assert g["mys_r_mean"] == pytest.approx(np.mean(rs), abs=1e-12)
    fits = ch.data["fits"]
    assert g["mys_r_hi"] == fits["r hi"].max() and g["mys_frequent_hi"] == fits["frequent hi"].max()
    # the verdicts from the numbers: no r in the paper, so at most direction only; the cosine half-way to -0.8
    assert g["mys_verdict_r"] == ("direction only" if g["mys_r_hi"] < 0 else "does not hold")
    assert g["mys_verdict_opposite"] == ("does not hold" if g["mys_frequent_hi"] >= 0 else
                                         "holds" if np.mean(frequent) <= -0.4 else "direction only")
    assert g["mys_rule_r"].startswith("holds if ") and g["mys_rule_opposite"].startswith("holds if ")
    assert isinstance(g["mys_holds_md"], Markdown)
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

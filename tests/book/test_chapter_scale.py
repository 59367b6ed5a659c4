"""The scale chapter: the trend fit against an independent OLS, each sentence where it holds and where it does not."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from universal_neurons.core import paper
from universal_neurons.book.chapters import scale

RESULTS = Path(__file__).resolve().parents[2] / "results"


@pytest.fixture(scope="module")
def final():
    res = pd.read_csv(RESULTS / "sweep.csv")
    return res[res["stage"] == "final"]


def ols(X, y):
    """Textbook OLS in float64: beta = (X^T X)^-1 X^T y, cov = s^2 (X^T X)^-1."""
    X, y = np.asarray(X, np.float64), np.asarray(y, np.float64)
    inv = np.linalg.inv(X.T @ X)
    beta = inv @ X.T @ y
    resid = y - X @ beta
    s2 = resid @ resid / (len(y) - X.shape[1])
    return beta, np.sqrt(np.diag(s2 * inv))


def single(final):
    return final[final["pairing"].isin([f"p{k}" for k in range(1, 10)])]


@pytest.mark.parametrize("y", ["excess_q99", "share_above_control_q999"])
def test_fit_matches_lstsq_and_textbook_ols(final, y):
    p = single(final)
    X = np.column_stack([np.ones(len(p)), np.log2(p["tokens"].astype(float)), np.log2(p["d_mlp"].astype(float)),
                         p["n_layer"].astype(float)])
    beta, se = ols(X, p[y])
    lst = np.linalg.lstsq(X, p[y].to_numpy(np.float64), rcond=None)[0]
    slopes, n = scale.fit_trend(final, y)
    assert n == len(p) == 24
    assert list(slopes) == ["tokens", "d_mlp", "n_layer"]
    for i, k in enumerate(slopes, start=1):
        assert slopes[k][0] == pytest.approx(beta[i], abs=1e-12)
        assert slopes[k][0] == pytest.approx(lst[i], abs=1e-12)
        assert slopes[k][1] == pytest.approx(se[i], rel=1e-9)


def test_readme_numbers_come_from_the_fit(final):
    """The README quotes 0.054 ± 0.007 per doubling of tokens, 0.065 ± 0.004 of width, -0.004 ± 0.004 per layer."""
    slopes, _ = scale.fit_trend(final, "excess_q99")
    assert [f"{b:+.3f} ± {se:.3f}" for b, se in slopes.values()] == ["+0.054 ± 0.007", "+0.065 ± 0.004",
                                                                    "-0.004 ± 0.004"]
    text = scale.trend_sentence(final)
    assert "rises per doubling of the training tokens (+0.054 ± 0.007)" in text
    assert "shows no clear change per added layer (-0.004 ± 0.004)" in text
    assert "falls per added layer (-4.004 ± 1.825 percentage points)" in text
    assert "24 single-partner pairings of 12 points" in text


def test_fit_with_one_varying_axis_matches_linregress():
    rng = np.random.default_rng(0)
    tokens = np.repeat([1e5, 2e5, 4e5, 8e5], 3)
    y = 0.03 * np.log2(tokens) + rng.normal(0, 0.01, len(tokens))
    rows = pd.DataFrame({"pairing": ["p1", "p2", "p3"] * 4, "tokens": tokens, "d_mlp": 256, "n_layer": 2,
                         "excess_q99": y})
    slopes, n = scale.fit_trend(pd.concat([rows, rows.iloc[:1].assign(pairing="all")]), "excess_q99")
    ref = stats.linregress(np.log2(tokens), y)
    assert n == 12 and list(slopes) == ["tokens"]
    assert slopes["tokens"][0] == pytest.approx(ref.slope, abs=1e-12)
    assert slopes["tokens"][1] == pytest.approx(ref.stderr, rel=1e-9)


def test_too_few_points_give_no_fit():
    rows = pd.DataFrame({"pairing": ["p1", "p2"], "tokens": [1e5, 2e5], "d_mlp": 256, "n_layer": 2,
                         "excess_q99": [0.1, 0.2], "share_above_control_q999": [0.0, 0.1], "point": ["a", "b"]})
    assert scale.fit_trend(rows, "excess_q99") == ({}, 2)
    assert "too few finished points with different settings for a fit (2 pairings)" in scale.trend_sentence(rows)
    assert scale.trend_sentence(rows.iloc[:0]) == "No point has been run yet, so no trend can be estimated."


@pytest.mark.parametrize("slope,se,verdict", [(0.054, 0.007, "rises"), (-0.1, 0.04, "falls"),
                                              (-0.004, 0.004, "shows no clear change"),
                                              (0.01, 0.0051, "shows no clear change")])
def test_trend_verdict_at_two_standard_errors(slope, se, verdict):
    assert scale.trend_verdict(slope, se) == verdict


def test_missing_sentence():
    assert scale.missing_sentence([], 12, "sweep") == "Every point of the grid has been run."
    one = scale.missing_sentence(["w32-l2-t600000"], 12, "sweep")
    assert one.startswith("**1 of the 12 points has not been run yet**: `w32-l2-t600000`.")
    assert "--profile sweep" in one
    assert scale.missing_sentence(["a", "b"], 12, "sweep-gpu").startswith("**2 of the 12 points have not been run")


def test_threshold_sentence(final):
    allp = final[final["pairing"] == "all"]
    text = scale.threshold_sentence(allp, 0.5)
    assert text.startswith(f"Over the finished points, {int(allp['n_universal'].sum())} reference neurons")
    q = allp["control_q999"].to_numpy(np.float64)
    share = allp["share_above_control_q999"].to_numpy(np.float64)
    assert f"between {q.min():.3f} and {q.max():.3f}" in text
    assert f"between {100 * share.min():.1f}% and {100 * share.max():.1f}%" in text
    assert scale.threshold_sentence(allp.iloc[:0], 0.5) == "No point of the sweep has been run yet: nothing to show."


def test_paper_table_and_sentence(final):
    tables = paper.universal_tables()
    table = scale.paper_table(tables)
    t = tables["GPT2-small-a"]
    row = table.set_index("model").loc["GPT2-small-a"]
    assert row["universal neurons"] == paper.SHARES["GPT2-small-a"][0]
    assert row["median mean_baseline"] == pytest.approx(float(np.median(t["mean_baseline"].to_numpy(np.float64))))
    text = scale.paper_sentence(table, final.iloc[:0])
    assert text.startswith(f"In the published tables the universal neurons' median baseline is "
                           f"{np.median(t['mean_baseline']):.2f} (GPT2-small-a)")
    assert "this sweep" not in text
    allp = final[final["pairing"] == "all"]
    assert scale.paper_sentence(table, allp).endswith(
        f"is {allp['mean_baseline_median'].min():.2f} to {allp['mean_baseline_median'].max():.2f}.")


def test_recipe_sentence_names_the_highest_tail():
    rec = pd.read_csv(RESULTS / "recipe.csv")
    r_all = scale.final_all(rec)
    best = r_all.iloc[int(np.argmax(r_all["excess_q99"].to_numpy(np.float64)))]
    text = scale.recipe_sentence(r_all, "a source")
    assert text.startswith(f"{len(r_all)} candidates (a source). The highest 99th percentile of the excess "
                           f"correlation, {best['excess_q99']:.3f}, is that of `{best['point']}`")
    assert scale.recipe_sentence(r_all.iloc[:0], "nowhere") == "The candidates' table is missing (nowhere)."


def test_zoos_sentence():
    assert scale.zoos_sentence({}, None, 0.5).startswith("Neither the default nor the small profile's")
    d = {"excess_q99": 0.31, "excess_max": 0.62, "share_universal": 0.0127, "share_above_control_q999": 0.469,
         "control_q999": 0.123}
    text = scale.zoos_sentence({"default": d}, {"point": "w128-l4", "excess_q99": 0.23, "excess_max": 0.4}, 0.5)
    assert text == ("The default zoo's 99th percentile of the excess correlation is 0.310 and its largest 0.620; "
                    "1.27% of its neurons pass the paper's 0.5 and 46.90% its own control's 99.9th percentile "
                    "(0.123). The sweep's widest, longest-trained point `w128-l4` reaches 0.230 and 0.400.")


def test_snapshot_sentence():
    assert scale.snapshot_sentence(pd.DataFrame(), None) == "This sweep saves no snapshots during training."
    assert "(point `w1`) has not been run yet" in scale.snapshot_sentence(pd.DataFrame(), "w1")
    s = pd.DataFrame({"tokens": [1000, 3000], "excess_q99": [0.1, 0.2], "mean_baseline_median": [0.8, 0.7],
                      "mean_corr_median": [0.85, 0.78]})
    assert scale.snapshot_sentence(s, "w1").startswith("From 1,000 to 3,000 tokens of point `w1`, the 99th "
                                                       "percentile of the excess correlation goes from 0.100 to 0.200")


def test_gpu_sentence():
    assert scale.gpu_sentence(None, 0, 0.5) == "This page shows that grid."
    assert scale.gpu_sentence(pd.DataFrame(), 8, 0.5).startswith("None of its points has been run")
    g = pd.DataFrame({"excess_max": [0.4, 0.7], "n_universal": [0, 1200]})
    assert scale.gpu_sentence(g, 8, 0.5).startswith("2 of its 8 points have been run")
    assert scale.gpu_sentence(g, 8, 0.5).endswith("largest excess correlation is 0.700, and 1,200 neurons pass 0.5.")


def test_page_table_and_spread(final):
    allp = final[final["pairing"] == "all"]
    table = scale.page_table(allp, ["point", "share_above_control_q999", "excess_q99"], 0.5)
    assert list(table.columns) == ["point", "% > control q99.9", "excess_q99"]
    assert table["% > control q99.9"].to_numpy() == pytest.approx(np.round(100 * allp["share_above_control_q999"], 3))
    lo_hi = scale.spread(final, "excess_q99")
    for point, g in single(final).groupby("point"):
        v = g["excess_q99"].to_numpy(np.float64)
        assert tuple(lo_hi.loc[point]) == (v.min(), v.max())


def test_compute_reads_the_shipped_sweep():
    ch = scale.compute("smoke")
    assert ch.glue["n_points"] == 12 and ch.glue["n_done"] == 12
    assert ch.glue["paper_share_small"] == pytest.approx(100 * 1533 / 36864)
    assert ch.glue["trend_md"].data == scale.trend_sentence(ch.data["final"])
    for name in scale.AXES:
        assert len(scale.axis_figure(ch, name).axes) == 3
    assert len(scale.snapshot_figure(ch).axes) == 3


def test_paper_glue_is_the_papers_numbers():
    g = scale.paper_glue()
    assert f"{g['paper_share_small']:.2f}" == "4.16" and f"{g['paper_share_medium']:.2f}" == "1.23"
    assert f"{g['paper_share_pythia']:.2f}" == "1.26" and g["paper_threshold"] == 0.5
    assert g["paper_tokens_gpt2_billions"] * 1e9 == 400_000 * 512 * 1024
    assert g["paper_tokens_pythia_billions"] == 300


def test_settings_in_words():
    assert scale.tokens_words(598_016) == "598K" and scale.tokens_words(1.2e6) == "1.2M"
    assert scale.tokens_words(2.097152e11) == "210B" and scale.tokens_words(512) == "512"
    assert scale.setting_words("budget_tokens", 1.2e6) == "1.2M training tokens"
    assert scale.setting_words("d_mlp", 1024) == "d_mlp 1,024"
    assert scale.setting_words("n_layer", 1) == "1 layer" and scale.setting_words("n_layer", 4) == "4 layers"
    assert scale.row_major([1, 2, 3, 4, 5], 2) == [1, 4, 2, 5, 3]  # columns filled top down read 1 2 3 / 4 5


def test_encoding_colour_to_the_setting_with_most_values_fill_to_a_pair():
    a = pd.DataFrame({"d_mlp": [128, 256, 512, 128, 256, 512], "budget_tokens": [6e5] * 3 + [1.2e6] * 3,
                      "n_layer": [2] * 6})
    assert scale.encoding(a, ["d_mlp", "budget_tokens"]) == ("d_mlp", "budget_tokens")
    assert scale.encoding(a, ["n_layer"]) == (None, None)


def test_axis_figures_legends_outside_the_data_readable_and_in_words():
    """Every legend lies outside every panel's data area, its text is at least 9 pt (the figure is scaled to the
    page's column), its labels name settings in words (no "budget_tokens=1.2e+06"), and the colours of the
    settings differ."""
    ch = scale.compute("smoke")
    for name in list(scale.AXES) + ["snapshots"]:
        fig = scale.snapshot_figure(ch) if name == "snapshots" else scale.axis_figure(ch, name)
        fig.canvas.draw()
        r = fig.canvas.get_renderer()
        legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]
        assert legends, name
        panels = [ax.get_window_extent(r) for ax in fig.axes]
        colours = []
        for leg in legends:
            box = leg.get_window_extent(r)
            assert not any(box.overlaps(p) for p in panels), (name, [t.get_text() for t in leg.get_texts()])
            for t in leg.get_texts():
                assert t.get_fontsize() >= 9 and "=" not in t.get_text() and "e+" not in t.get_text(), t.get_text()
            colours += [h.get_color() for h in leg.legend_handles if h.get_linewidth() > 2]  # the settings' colours
        assert len(colours) == len(set(colours)), (name, colours)
        assert fig.get_figwidth() <= scale.WIDTH

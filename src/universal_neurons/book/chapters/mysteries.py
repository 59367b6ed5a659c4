"""Mysteries (paper section 6, figures 9 and 10): activation frequency against cos(w_in, w_out) in every model (its
two claims judged against no relation, on each model's bootstrap interval: Pearson's r for the direction, the most
frequent neurons' mean cosine half-way to the paper's saturation for the size), and how unique a neuron's input and
output weights are, the compared group (universal neurons) against the rest."""

from __future__ import annotations

import numpy as np
import pandas as pd
from IPython.display import Markdown
from scipy import stats

from ...core import paper
from .. import plotting
from ...measures import verdicts
from ...runs import properties
from ...config.profile import load_profile
from ..publish import Chapter
from ...runs.selection import Group, compared_group
from ...runs.universality import ensure_results

UNIQUENESS = ["max_in_cos", "max_out_cos"]
N_BOOT = 1000  # bootstrap resamples of the neurons, per model
LEVEL = 0.95  # the bootstrap intervals' coverage
HALF_WAY = 0.5  # the most frequent neurons' mean cosine must reach this share of the paper's saturation near -0.8


def bootstrap_r(x: np.ndarray, y: np.ndarray, n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL):
    """Percentile bootstrap interval (lo, hi) of Pearson's r of (x, y), resampling the neurons with replacement."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(x), size=(n_boot, len(x)))
    xs, ys = x[idx], y[idx]
    xs = xs - xs.mean(1, keepdims=True)
    ys = ys - ys.mean(1, keepdims=True)
    r = (xs * ys).sum(1) / np.sqrt((xs * xs).sum(1) * (ys * ys).sum(1))
    a = (1 - level) / 2
    return float(np.nanquantile(r, a)), float(np.nanquantile(r, 1 - a))


def bootstrap_mean(y: np.ndarray, n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL):
    """Percentile bootstrap interval (lo, hi) of the mean of y."""
    rng = np.random.default_rng(seed)
    m = y[rng.integers(0, len(y), size=(n_boot, len(y)))].mean(1)
    a = (1 - level) / 2
    return float(np.quantile(m, a)), float(np.quantile(m, 1 - a))


def r_evidence(fits: pd.DataFrame) -> verdicts.Evidence:
    """More frequent neurons have more opposed weights: Pearson's r (mean over the models) below 0, the hull of the
    models' bootstrap intervals clear of it; the paper prints no r, so direction at most."""
    return verdicts.Evidence(
        f"Pearson's r of activation frequency and cos(w_in, w_out), mean over {len(fits)} models",
        float(fits["pearson r"].mean()), -1, None, "the paper prints no r, only figure 9: direction at most",
        0.0, "no relation, as in an untrained model, whose w_in and w_out are drawn independently; the interval is "
        f"the hull of each model's {100 * LEVEL:g}% bootstrap interval over its neurons",
        interval=(float(fits["r lo"].min()), float(fits["r hi"].max())))


def opposite_evidence(fits: pd.DataFrame, frequent_pct: float,
                      saturation: float = paper.IN_OUT_COS_SATURATION) -> verdicts.Evidence:
    """The most frequent neurons' w_in and w_out point in opposite directions: their mean cosine (mean over the
    models) below 0, the hull of the models' bootstrap intervals clear of it, and at least half-way to the paper's
    saturation (at most -0.4)."""
    col = f"mean cos, {frequent_pct:g}% most frequent"
    return verdicts.Evidence(
        f"mean cos(w_in, w_out) of the {frequent_pct:g}% most frequent neurons, mean over {len(fits)} models",
        float(fits[col].mean()), -1, -HALF_WAY * saturation,
        f"half-way to the paper's saturation near −{saturation:g}, figure 9",
        0.0, "no alignment, as for the independent w_in and w_out of an untrained model; the interval is the hull of "
        f"each model's {100 * LEVEL:g}% bootstrap interval over those neurons",
        interval=(float(fits["frequent lo"].min()), float(fits["frequent hi"].max())))


def holds_note(fits: pd.DataFrame, frequent_pct: float) -> str:
    """The closing section's sentence, from the fits."""
    col = f"mean cos, {frequent_pct:g}% most frequent"
    return (f"Pearson's r runs from {fits['pearson r'].min():.3f} to {fits['pearson r'].max():.3f} over the "
            f"{len(fits)} models; the {frequent_pct:g}% most frequent neurons have a mean cosine of "
            f"{fits[col].min():.3f} to {fits[col].max():.3f} (the rest: {fits['mean cos, rest'].min():.3f} to "
            f"{fits['mean cos, rest'].max():.3f}), and the cosines span {fits['min cos'].min():.2f} to "
            f"{fits['max cos'].max():.2f} (the paper: saturation near ±{paper.IN_OUT_COS_SATURATION:g}).")


def frequency_fit(x: np.ndarray, y: np.ndarray, frequent_pct: float) -> dict:
    """Activation frequency x against cos(w_in, w_out) y of one model's neurons: Pearson's r and p, the least-squares
    line, the mean cosine of the `frequent_pct` percent most frequent neurons and of the rest, the range, and the
    bootstrap intervals (resampling the neurons) of r and of the most frequent neurons' mean cosine."""
    r = stats.pearsonr(x, y)
    slope, icept = np.polyfit(x, y, 1)
    top = x >= np.quantile(x, 1 - frequent_pct / 100)
    r_lo, r_hi = bootstrap_r(x, y)
    f_lo, f_hi = bootstrap_mean(y[top])
    return {"pearson r": r.statistic, "r lo": r_lo, "r hi": r_hi, "p": r.pvalue, "slope": slope, "intercept": icept,
            f"mean cos, {frequent_pct:g}% most frequent": y[top].mean(), "frequent lo": f_lo, "frequent hi": f_hi,
            "mean cos, rest": y[~top].mean(), "min cos": y.min(), "max cos": y.max()}


def group_sentence(group: Group, top_pct: float) -> str:
    """Which neurons the uniqueness comparison sets against the rest."""
    if group.is_universal:
        return (f"its {int(group.mask.sum()):,} universal neurons (excess correlation above {group.threshold:.3g}) "
                "against the rest")
    return (f"its top {top_pct:g}% of neurons by excess correlation against the rest, since only {group.n_universal} "
            f"pass {group.threshold_name}")


def uniqueness_table(live: pd.DataFrame, group: Group) -> pd.DataFrame:
    """Median and mean of max_in_cos and max_out_cos in the group and in the rest, indexed (statistic, group)."""
    rows = [{"statistic": col, "group": name, "median": live.loc[sel, col].median(), "mean": live.loc[sel, col].mean()}
            for col in UNIQUENESS for sel, name in ((group.mask, group.label), (~group.mask, "rest"))]
    return pd.DataFrame(rows).set_index(["statistic", "group"])


def compute(profile="smoke", device="cpu", overrides="") -> Chapter:
    """The chapter's fits, verdicts and tables (universality tables and properties reused when cached)."""
    prof = load_profile(profile, overrides, device=device)  # bad parameters: one line, before any work
    b = prof.cfg["book"]
    frequent_pct = float(b["frequent_pct"])
    ensure_results(prof, device=device)  # the universality chapter's table, else computed with its defaults
    props = properties.compute_properties(prof, device=device, progress=False)
    table, reference = props.table, props.info["reference"]
    models = list(dict.fromkeys(table["model"]))
    with_acts = [m for m in models if table.loc[table["model"] == m, "sparsity"].notna().all()]
    fits = pd.DataFrame([{"model": m, **frequency_fit(table.loc[table["model"] == m, "sparsity"].to_numpy(),
                                                      table.loc[table["model"] == m, "in_out_sim"].to_numpy(),
                                                      frequent_pct)} for m in with_acts]).set_index("model")
    frequent = fits[f"mean cos, {frequent_pct:g}% most frequent"]
    glue = {"mys_r_ref": float(fits.loc[reference, "pearson r"]), "mys_r_min": float(fits["pearson r"].min()),
            "mys_r_max": float(fits["pearson r"].max()), "mys_n_models": len(fits),
            "mys_frequent_cos": float(frequent.mean()), "mys_rest_cos": float(fits["mean cos, rest"].mean()),
            "mys_cos_min": float(fits["min cos"].min()), "mys_cos_max": float(fits["max cos"].max()),
            "mys_frequent_pct": frequent_pct, "mys_paper_saturation": paper.IN_OUT_COS_SATURATION,
            "mys_r_mean": float(fits["pearson r"].mean()), "mys_r_lo": float(fits["r lo"].min()),
            "mys_r_hi": float(fits["r hi"].max()), "mys_frequent_lo": float(fits["frequent lo"].min()),
            "mys_frequent_hi": float(fits["frequent hi"].max()),
            "mys_half_way": -HALF_WAY * paper.IN_OUT_COS_SATURATION, "mys_boot_pct": 100 * LEVEL}
    r_ev, opposite_ev = r_evidence(fits), opposite_evidence(fits, frequent_pct)
    verdicts.glue_verdict(glue, "mys_verdict_r", r_ev)
    verdicts.glue_verdict(glue, "mys_verdict_opposite", opposite_ev)
    glue["mys_holds_md"] = Markdown(verdicts.holds_here(
        [("more frequent neurons have more opposed input and output weights", r_ev),
         ("the most frequent neurons have input and output weights pointing in opposite directions", opposite_ev)],
        [holds_note(fits, frequent_pct)]))

    frame = properties.neuron_frame(prof)
    live = frame[~frame["is_dead"]].reset_index(drop=True)
    group = compared_group(prof, live)
    uniq = uniqueness_table(live, group)
    glue["mys_group_md"] = Markdown(group_sentence(group, float(b["top_pct"])))
    for col in UNIQUENESS:
        glue[f"mys_{col}_group"] = float(uniq.loc[(col, group.label), "median"])
        glue[f"mys_{col}_rest"] = float(uniq.loc[(col, "rest"), "median"])
    glue["mys_label_md"] = Markdown(group.label)
    data = {"table": table, "models": models, "with_acts": with_acts, "fits": fits, "live": live, "group": group,
            "reference": reference, "bins": int(b["bins"])}
    return Chapter("mysteries", prof, glue=glue, tables={"fits": fits.round(4), "uniqueness": uniq.round(4)}, data=data)


def frequency_figure(ch: Chapter):
    """Figure 9: per model, a 2-D histogram of activation frequency against cos(w_in, w_out), with the fit."""
    table, fits, with_acts = ch.data["table"], ch.data["fits"], ch.data["with_acts"]
    cols = min(3, len(with_acts))
    n_rows = -(-len(with_acts) // cols)
    fig, axes = plotting.subplots(n_rows, cols, height=3.6, width=max(plotting.WIDE, 4.2 * cols), squeeze=False)
    for ax, m in zip(axes.flat, with_acts):
        t = table[table["model"] == m]
        x, y = t["sparsity"].to_numpy(), t["in_out_sim"].to_numpy()
        *_, image = ax.hist2d(x, y, bins=int(min(ch.data["bins"], max(10, np.sqrt(len(x)) / 2))), cmap="viridis",
                              norm="log")
        fig.colorbar(image, ax=ax, label="neurons (log scale)", pad=0.02)
        xs = np.linspace(x.min(), x.max(), 2)
        ax.plot(xs, fits.at[m, "slope"] * xs + fits.at[m, "intercept"], color="#d55e00", lw=2)
        ax.set(xlabel="activation frequency", ylabel="cos(w_in, w_out)",
               title=f"{m}: r = {fits.at[m, 'pearson r']:.2f}")
    for ax in axes.flat[len(with_acts):]:
        ax.axis("off")
    return fig


def uniqueness_figure(ch: Chapter):
    """Figure 10: the largest cosine of each neuron's w_in (w_out) with any other neuron's; top row the reference's
    group against the rest, bottom row every model."""
    table, live, group = ch.data["table"], ch.data["live"], ch.data["group"]
    fig, axes = plotting.subplots(2, 2, height=3.25, width=plotting.WIDE)
    edges = np.linspace(min(table["max_in_cos"].min(), table["max_out_cos"].min()), 1, 41)
    for j, col in enumerate(UNIQUENESS):
        for sel, name, color in ((group.mask, group.label, "C3"), (~group.mask, "rest", "0.5")):
            axes[0, j].hist(live.loc[sel, col], bins=edges, density=True, color=color, lw=2,
                            histtype="stepfilled" if name == "rest" else "step", alpha=0.5 if name == "rest" else 1,
                            label=f"{name} ({int(sel.sum())})")
        axes[0, j].set(xlabel=col, ylabel="density", title=f"{ch.data['reference']}: {col}")
        axes[0, j].legend(fontsize=8)
        for m in ch.data["models"]:
            axes[1, j].hist(table.loc[table["model"] == m, col], bins=edges, density=True, histtype="step", lw=1.5,
                            label=m)
        axes[1, j].set(xlabel=col, ylabel="density", title=f"all models: {col}")
        axes[1, j].legend(fontsize=7)
    return fig

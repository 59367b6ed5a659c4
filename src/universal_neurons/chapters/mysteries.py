"""Mysteries (paper section 6, figures 9 and 10): activation frequency against cos(w_in, w_out) in every model, and
how unique a neuron's input and output weights are, the compared group (universal neurons) against the rest."""

from __future__ import annotations

import numpy as np
import pandas as pd
from IPython.display import Markdown
from scipy import stats

from .. import paper, plotting
from .. import neuron_tables as T
from .. import properties as P
from ..config import load_profile
from ..publish import Chapter
from .properties import Group, compared_group

ALPHA = 0.05  # significance level of Pearson's r
UNIQUENESS = ["max_in_cos", "max_out_cos"]


def in_models(ok) -> str:
    """A verdict over the models from a boolean per model."""
    k, n = int(np.sum(ok)), len(ok)
    return "holds in every model" if k == n else f"holds in {k} of {n} models" if k else "does not hold"


def frequency_fit(x: np.ndarray, y: np.ndarray, frequent_pct: float) -> dict:
    """Activation frequency x against cos(w_in, w_out) y of one model's neurons: Pearson's r and p, the least-squares
    line, the mean cosine of the `frequent_pct` percent most frequent neurons and of the rest, and the range."""
    r = stats.pearsonr(x, y)
    slope, icept = np.polyfit(x, y, 1)
    top = x >= np.quantile(x, 1 - frequent_pct / 100)
    return {"pearson r": r.statistic, "p": r.pvalue, "slope": slope, "intercept": icept,
            f"mean cos, {frequent_pct:g}% most frequent": y[top].mean(), "mean cos, rest": y[~top].mean(),
            "min cos": y.min(), "max cos": y.max()}


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
    T.ensure_results(prof, device=device)  # the universality chapter's table, else computed with its defaults
    props = P.compute_properties(prof, device=device, progress=False)
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
            "mys_frequent_pct": frequent_pct, "mys_verdict_r": in_models((fits["pearson r"] < 0) & (fits["p"] < ALPHA)),
            "mys_verdict_opposite": in_models(frequent < 0), "mys_paper_saturation": paper.IN_OUT_COS_SATURATION}

    frame = P.neuron_frame(prof)
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
        ax.hist2d(x, y, bins=int(min(ch.data["bins"], max(10, np.sqrt(len(x)) / 2))), cmap="viridis", norm="log")
        xs = np.linspace(x.min(), x.max(), 2)
        ax.plot(xs, fits.at[m, "slope"] * xs + fits.at[m, "intercept"], color="r", lw=1.5)
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

"""Properties of universal neurons (paper section 4.2, figures 3 and 14): weight and activation statistics of
the compared group (universal neurons, or a stand-in) against the rest, and the paper's six claims checked."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import seaborn as sns
from IPython.display import Markdown
from scipy import stats

from .. import control as C
from .. import neuron_tables as T
from .. import paper, plotting
from .. import properties as P
from ..config import load_profile
from ..publish import Chapter

METRICS = ["sparsity", "mean", "skew", "kurt", "input_bias", "l2_penalty", "w_in_norm", "w_out_norm", "in_out_sim",
           "vocab_var", "vocab_skew", "vocab_kurt"]
# (statistic, claimed side of the layer's median: +1 above, -1 below, the claim in words): section 4.2.
CLAIMS = [("l2_penalty", +1, "large weight norm (L2 penalty)"), ("input_bias", -1, "large negative input bias"),
          ("mean", -1, "negative pre-activation mean"), ("sparsity", -1, "low activation frequency"),
          ("skew", +1, "high pre-activation skew"), ("kurt", +1, "high pre-activation kurtosis")]
MEAN_COLS = ["sparsity", "input_bias", "skew", "kurt", "l2_penalty"]
LAYER_COLS = ["sparsity", "mean", "skew", "kurt", "input_bias", "l2_penalty", "in_out_sim", "vocab_kurt"]
ALPHA = 0.05  # significance level of the one-sided Mann-Whitney tests


@dataclass
class Group:
    """The neurons compared with the rest: `mask` over the live neurons, its `label`, the threshold used (value
    and words) and how many live neurons pass it."""

    mask: pd.Series
    label: str
    threshold: float
    threshold_name: str
    n_universal: int

    @property
    def is_universal(self) -> bool:
        return self.label.startswith("universal")


def compared_group(prof, live: pd.DataFrame) -> Group:
    """The universal neurons of `live` (excess above book.threshold) if at least book.min_universal pass, else
    the top book.top_pct percent by excess correlation."""
    b = prof.cfg["book"]
    thr, thr_name = C.resolve_threshold(b["threshold"], prof)
    mask, label = P.universal_group(live, thr, float(b["top_pct"]), int(b["min_universal"]))
    return Group(mask, label, thr, thr_name, int((live["excess_corr"] > thr).sum()))


def claim_verdict(median_pct: float, sign: int, p: float, alpha: float = ALPHA) -> str:
    """A claim that the group's median within-layer percentile lies above (sign +1) or below (-1) 50: "holds"
    with p < alpha, "points the same way, not significantly" without, else "does not hold"."""
    right = (median_pct - 50) * sign > 0
    if right and p < alpha:
        return "holds"
    return "points the same way, not significantly" if right else "does not hold"


def claim_table(pct: pd.DataFrame, group: pd.Series, claims=CLAIMS) -> pd.DataFrame:
    """Per claim: the group's median percentile, the one-sided Mann-Whitney p of the group against the rest,
    and the verdict."""
    rows = []
    for col, sign, claim in claims:
        g, r = pct.loc[group, col].dropna(), pct.loc[~group, col].dropna()
        med = float(g.median())
        p = (stats.mannwhitneyu(g, r, alternative="greater" if sign > 0 else "less").pvalue
             if len(g) and len(r) else np.nan)
        rows.append({"claim": claim, "statistic": col, "median percentile": med, "p (Mann-Whitney)": p,
                     "verdict": claim_verdict(med, sign, p)})
    return pd.DataFrame(rows)


def group_sentence(group: Group, n_group: int, min_excess: float, min_universal: int, top_pct: float) -> str:
    """Which neurons the page compares: the universal ones, or (too few pass) the top percent standing in."""
    if group.is_universal:
        return (f"{group.n_universal:,} neurons pass {group.threshold_name}: they are the universal group compared "
                "below with the rest.")
    passing = "No neuron passes" if group.n_universal == 0 else f"Only {group.n_universal:,} neurons pass"
    return (f"**{passing} {group.threshold_name}**, fewer than the {min_universal} a comparison needs (small zoos "
            "are expected to have none: see the universality chapter). Instead, the **top "
            f"{top_pct:g}% of neurons by excess correlation** ({n_group:,} neurons, excess at least "
            f"{min_excess:.3f}) stand in for the universal neurons below. They are the most universal neurons of "
            "this model, not universal in the paper's sense.")


def means_table(live: pd.DataFrame, group: pd.Series, row_name: str) -> pd.DataFrame:
    """Our group / rest means of MEAN_COLS beside the paper's universal / non-universal means, as "U / non-U"."""
    ours = {f"{c}_{k}": float(live.loc[m, c].mean()) for c in MEAN_COLS for k, m in (("U", group), ("nonU", ~group))}
    table = pd.concat([pd.DataFrame([ours], index=[row_name]), paper.PROPERTY_MEANS])
    return pd.DataFrame({f"{c} U / non-U": [f"{u:.3f} / {n:.3f}" for u, n in zip(table[f"{c}_U"], table[f"{c}_nonU"])]
                         for c in MEAN_COLS}, index=table.index)


def compute(profile="smoke", device="cpu", overrides="") -> Chapter:
    """The chapter's numbers, verdicts and tables (universality tables and properties reused when cached)."""
    prof = load_profile(profile, overrides, device=device)  # bad parameters: one line, before any work
    b = prof.cfg["book"]
    T.ensure_results(prof, device=device)  # the universality chapter's table, else computed with its defaults
    props = P.compute_properties(prof, device=device, progress=False)
    frame = P.neuron_frame(prof)
    live = frame[~frame["is_dead"]].reset_index(drop=True)
    group = compared_group(prof, live)
    n_group = int(group.mask.sum())
    pct = P.layer_percentiles(live, METRICS)
    verdicts = claim_table(pct, group.mask)
    reference = props.info["reference"]
    glue = {"prop_n_neurons": len(live), "prop_n_universal": group.n_universal, "prop_n_group": n_group,
            "prop_n_tokens": props.info["n_tokens"],
            "prop_group_md": Markdown(group_sentence(group, n_group, float(live.loc[group.mask, "excess_corr"].min()),
                                                     int(b["min_universal"]), float(b["top_pct"]))),
            "prop_label_md": Markdown(group.label)}
    for col, med, verdict in zip(verdicts["statistic"], verdicts["median percentile"], verdicts["verdict"]):
        glue[f"prop_verdict_{col}"], glue[f"prop_pct_{col}"] = verdict, float(med)
    glue["prop_n_hold"] = int((verdicts["verdict"] == "holds").sum())
    glue["prop_n_claims"] = len(verdicts)
    published = pd.DataFrame({m: t[MEAN_COLS].mean() for m, t in paper.universal_tables().items()}).T.round(3)
    tables = {"verdicts": verdicts.round(4), "published_means": published,
              "means": means_table(live, group.mask, f"ours: {reference} ({group.label})")}
    data = {"live": live, "group": group, "percentiles": pct, "reference": reference,
            "hist": props.hists[reference], "d_mlp": int(frame["neuron"].max()) + 1}
    return Chapter("properties", prof, glue=glue, tables=tables, data=data)


def _hue(ch: Chapter) -> tuple[np.ndarray, list[str]]:
    g = ch.data["group"]
    return np.where(g.mask, g.label, "rest"), [g.label, "rest"]


def percentiles_figure(ch: Chapter):
    """Figures 3 and 14: each statistic as a percentile within its layer, the group against the rest."""
    hue, order = _hue(ch)
    long = ch.data["percentiles"].assign(group=hue).melt(id_vars="group", var_name="metric",
                                                         value_name="percentile within layer")
    fig, ax = plotting.subplots(height=4)
    sns.boxenplot(data=long, x="metric", y="percentile within layer", hue="group", hue_order=order,
                  palette=["C3", "0.75"], ax=ax)
    ax.axhline(50, color="k", lw=0.8, ls=":")
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1, 1), title=None, fontsize=8)
    ax.set(title=f"{ch.data['reference']}: {order[0]} neurons, each statistic as a percentile within its layer",
           xlabel="")
    ax.tick_params(axis="x", rotation=30)
    return fig


def layers_figure(ch: Chapter):
    """The raw statistics per layer, the group against the rest."""
    hue, order = _hue(ch)
    long = ch.data["live"].assign(group=hue).melt(id_vars=["layer", "group"], value_vars=LAYER_COLS)
    plotting.setup()
    grid = sns.catplot(data=long, x="layer", y="value", hue="group", hue_order=order, col="variable", col_wrap=4,
                       kind="box", sharey=False, palette=["C3", "0.75"], showfliers=False, height=2.6, aspect=1.2,
                       legend_out=True)
    grid.set_titles("{col_name}")
    sns.move_legend(grid, "lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, title=None)
    return grid.figure


def histogram_picks(live: pd.DataFrame) -> list[tuple[str, object]]:
    """("top", row) for the four neurons with the largest excess correlation, ("median", row) for the four at the
    middle of the excess distribution."""
    order = live.sort_values("excess_corr", ascending=False)
    mid = len(order) // 2
    return ([("top", r) for r in order.head(4).itertuples()]
            + [("median", r) for r in order.iloc[mid - 2:mid + 2].itertuples()])


def histograms_figure(ch: Chapter):
    """The stored pre-activation histograms of the most universal and of median neurons."""
    hist, d_mlp = ch.data["hist"], ch.data["d_mlp"]
    fig, axes = plotting.subplots(2, 4, height=2.5, width=12)
    for ax, (kind, r) in zip(axes.flat, histogram_picks(ch.data["live"])):
        i = r.layer * d_mlp + r.neuron
        counts = hist["counts"][i, 1:-1]
        edges = hist["lo"][i] + hist["width"][i] * np.arange(len(counts) + 1)
        ax.stairs(counts / counts.sum(), edges, fill=True, color="C3" if kind == "top" else "C0", alpha=0.7)
        ax.axvline(0, color="k", lw=0.8, ls=":")
        used = np.flatnonzero(counts)
        ax.set_xlim(edges[used[0]], edges[used[-1] + 1])
        ax.set_title(f"L{r.layer}.{r.neuron} excess {r.excess_corr:.2f}\nfreq {r.sparsity:.3f}, kurt {r.kurt:.1f}",
                     fontsize=9)
        ax.set(xlabel="pre-activation")
    return fig

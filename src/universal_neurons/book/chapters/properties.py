"""Properties of universal neurons (paper section 4.2, figures 3 and 14): weight and activation statistics of
the compared group (universal neurons, or a stand-in) against the rest, and the paper's six claims judged: a
one-sided Mann-Whitney test of the within-layer percentiles (Holm-adjusted over the six) for the noise, the
scale-free gap of the means against half the paper's smallest for the magnitude; not testable on a stand-in."""

from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns
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

METRICS = ["sparsity", "mean", "skew", "kurt", "input_bias", "l2_penalty", "w_in_norm", "w_out_norm", "in_out_sim",
           "vocab_var", "vocab_skew", "vocab_kurt"]
# (statistic, claimed side of the layer's median: +1 above, -1 below, the claim in words): section 4.2.
CLAIMS = [("l2_penalty", +1, "large weight norm (L2 penalty)"), ("input_bias", -1, "large negative input bias"),
          ("mean", -1, "negative pre-activation mean"), ("sparsity", -1, "low activation frequency"),
          ("skew", +1, "high pre-activation skew"), ("kurt", +1, "high pre-activation kurtosis")]
MEAN_COLS = ["sparsity", "input_bias", "skew", "kurt", "l2_penalty"]
LAYER_COLS = ["sparsity", "mean", "skew", "kurt", "input_bias", "l2_penalty", "in_out_sim", "vocab_kurt"]
ALPHA = verdicts.ALPHA  # the family-wise level of the six one-sided Mann-Whitney tests (Holm)
PAPER_SHARE = 0.5  # a claim holds at half the paper's smallest U / non-U gap over its three models (section 4.2)
# How a statistic's U / non-U gap of means is made scale-free: the relative gap (U - non-U) / |non-U| for the
# statistics with a scale of their own, the difference U - non-U for the dimensionless moments (a Gaussian has skew
# 0 and kurtosis 3) and for the mean pre-activation (the paper prints no mean of it: direction only).
GAP_KIND = {"l2_penalty": "relative", "input_bias": "relative", "mean": "difference", "sparsity": "relative",
            "skew": "difference", "kurt": "difference"}
WORDS = {"l2_penalty": "L2 penalty", "input_bias": "input bias", "mean": "pre-activation",
         "sparsity": "activation frequency", "skew": "pre-activation skew", "kurt": "pre-activation kurtosis"}
P_WORDS = ("one-sided Mann-Whitney test of the within-layer percentiles, group against the rest, Holm-adjusted over "
           "the six claims")


def gap(u: float, non_u: float, kind: str) -> float:
    """A group / rest gap of means, scale-free: u - non_u ("difference") or (u - non_u) / |non_u| ("relative"; NaN
    when non_u is 0)."""
    d = float(u) - float(non_u)
    if kind == "difference":
        return d
    return d / abs(float(non_u)) if non_u != 0 else float("nan")


def paper_gap(stat: str, sign: int, means: pd.DataFrame = paper.PROPERTY_MEANS):
    """The paper's smallest gap of `stat` in the claimed direction over its models (section 4.2's U / non-U means)
    as (gap, model, U mean, non-U mean); None where the paper prints no mean of the statistic."""
    if f"{stat}_U" not in means.columns:
        return None
    gaps = {m: gap(r[f"{stat}_U"], r[f"{stat}_nonU"], GAP_KIND[stat]) for m, r in means.iterrows()}
    model = min(gaps, key=lambda m: gaps[m] * sign)
    return gaps[model], model, float(means.at[model, f"{stat}_U"]), float(means.at[model, f"{stat}_nonU"])


def claim_table(pct: pd.DataFrame, live: pd.DataFrame, group: pd.Series, claims=CLAIMS) -> pd.DataFrame:
    """Per claim: the group's median within-layer percentile, the common-language effect size (the probability
    that a group neuron's percentile lies on the claimed side of a rest neuron's, ties counted half), the one-sided
    Mann-Whitney p of the group's percentiles against the rest's and its Holm adjustment over the claims, the group
    and rest means of the raw statistic and their scale-free gap beside the paper's smallest."""
    rows = []
    for col, sign, claim in claims:
        g, r = pct.loc[group, col].dropna(), pct.loc[~group, col].dropna()
        if len(g) and len(r):
            test = stats.mannwhitneyu(g, r, alternative="greater" if sign > 0 else "less")
            auc = test.statistic / (len(g) * len(r))
            p, effect = float(test.pvalue), float(auc if sign > 0 else 1 - auc)
        else:
            p = effect = np.nan
        u, non_u = float(live.loc[group, col].mean()), float(live.loc[~group, col].mean())
        pg, kind = paper_gap(col, sign), GAP_KIND.get(col, "difference")
        rows.append({"claim": claim, "statistic": col, "median percentile": float(g.median()) if len(g) else np.nan,
                     "effect size (P claimed side)": effect, "p (Mann-Whitney)": p, "U mean": u, "non-U mean": non_u,
                     "gap": gap(u, non_u, kind), "gap kind": kind,
                     "paper's smallest gap": np.nan if pg is None else pg[0],
                     "required": np.nan if pg is None else PAPER_SHARE * pg[0]})
    out = pd.DataFrame(rows)
    out.insert(5, "p (Holm)", verdicts.holm(out["p (Mann-Whitney)"].to_numpy()))
    return out


def untestable_words(group: Group, n_group: int, top_pct: float) -> str:
    """Why the property claims cannot be judged on a stand-in group ("" for a universal group)."""
    if group.is_universal:
        return ""
    return (f"only {group.n_universal:,} neurons pass {group.threshold_name}; the top {top_pct:g}% stand-ins "
            f"({n_group:,} neurons) are shown as the book's secondary view")


def claim_evidence(row, sign: int, untestable: str = "") -> verdicts.Evidence:
    """One claim's evidence from its row of `claim_table`: the scale-free gap of means in the claimed direction,
    beyond no gap with a Holm-adjusted p below ALPHA, at half the paper's smallest gap (direction at most for the
    mean pre-activation, of which the paper prints no number)."""
    stat = row["statistic"]
    kind = "relative gap (U − non-U) / |non-U|" if GAP_KIND[stat] == "relative" else "gap U − non-U"
    pg = paper_gap(stat, sign)
    if pg is None:
        magnitude, words = None, "the paper prints no mean of it, only figure 3: direction at most"
    else:
        magnitude = PAPER_SHARE * pg[0]
        words = f"half the paper's smallest, {pg[0]:.3g} in {pg[1]}: {pg[2]:g} / {pg[3]:g}"
    return verdicts.Evidence(f"{kind} of the mean {WORDS[stat]}", float(row["gap"]), sign, magnitude, words, noise=0.0,
                      noise_words="no gap", untestable=untestable, p=float(row["p (Holm)"]), p_words=P_WORDS)


def group_sentence(group: Group, n_group: int, min_excess: float, min_universal: int, top_pct: float) -> str:
    """Which neurons the page compares: the universal ones, or (too few pass) the top percent standing in."""
    if group.is_universal:
        return (f"{group.n_universal:,} neurons pass {group.threshold_name}: they are the universal group compared "
                "below with the rest.")
    passing = "No neuron passes" if group.n_universal == 0 else f"Only {group.n_universal:,} neurons pass"
    return (f"**{passing} {group.threshold_name}**, fewer than the {min_universal} a comparison needs (the "
            "universality chapter shows how far the neurons are from it). Instead, the **top "
            f"{top_pct:g}% of neurons by excess correlation** ({n_group:,} neurons, excess at least "
            f"{min_excess:.3f}) stand in for the universal neurons below, as the book's secondary view. They are the "
            "most universal neurons of this model, not universal in the paper's sense, so the paper's claims are not "
            "judged on them.")


def holds_note(table: pd.DataFrame, group: Group, n_group: int, top_pct: float) -> str:
    """The closing section's sentence, from the claim table: which group, how many Holm-adjusted p-values are
    below ALPHA, and the range of the effect sizes."""
    n_sig = int((table["p (Holm)"] < ALPHA).sum())
    eff = table.set_index("statistic")["effect size (P claimed side)"].dropna()
    span = (f" The effect sizes (the probability that a group neuron lies on the claimed side of a neuron of the "
            f"rest; 0.5 for none) run from {eff.min():.2f} ({eff.idxmin()}) to {eff.max():.2f} ({eff.idxmax()})."
            if len(eff) else "")
    if not group.is_universal:
        return (f"The compared group is the top {top_pct:g}% by excess correlation ({n_group:,} neurons), since only "
                f"{group.n_universal:,} pass {group.threshold_name}: on these stand-ins, {n_sig} of the "
                f"{len(table)} Holm-adjusted p-values are below {ALPHA:g}.{span} They judge none of the paper's "
                "claims, which are about universal neurons.")
    return (f"On the {n_group:,} universal neurons, {n_sig} of the {len(table)} Holm-adjusted p-values are below "
            f"{ALPHA:g}.{span}")


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
    ensure_results(prof, device=device)  # the universality chapter's table, else computed with its defaults
    props = properties.compute_properties(prof, device=device, progress=False)
    frame = properties.neuron_frame(prof)
    live = frame[~frame["is_dead"]].reset_index(drop=True)
    group = compared_group(prof, live)
    n_group = int(group.mask.sum())
    pct = properties.layer_percentiles(live, METRICS)
    table = claim_table(pct, live, group.mask)
    untestable = untestable_words(group, n_group, float(b["top_pct"]))
    evidence = {col: claim_evidence(row, sign, untestable)
                for (col, sign, _), (_, row) in zip(CLAIMS, table.iterrows())}
    table["verdict"] = [evidence[col].verdict for col in table["statistic"]]
    reference = props.info["reference"]
    glue = {"prop_n_neurons": len(live), "prop_n_universal": group.n_universal, "prop_n_group": n_group,
            "prop_n_tokens": props.info["n_tokens"],
            "prop_group_md": Markdown(group_sentence(group, n_group, float(live.loc[group.mask, "excess_corr"].min()),
                                                     int(b["min_universal"]), float(b["top_pct"]))),
            "prop_label_md": Markdown(group.label)}
    for (col, _, claim), (_, row) in zip(CLAIMS, table.iterrows()):
        verdicts.glue_verdict(glue, f"prop_verdict_{col}", evidence[col])
        glue[f"prop_pct_{col}"] = float(row["median percentile"])
        glue[f"prop_effect_{col}"] = float(row["effect size (P claimed side)"])
        glue[f"prop_p_holm_{col}"] = float(row["p (Holm)"])
        glue[f"prop_gap_{col}"] = float(row["gap"])
    glue["prop_n_hold"] = int((table["verdict"] == verdicts.HOLDS).sum())
    glue["prop_n_claims"] = len(table)
    glue["prop_summary"] = verdicts.summary(table["verdict"])
    glue["prop_paper_share"] = PAPER_SHARE
    glue["prop_holds_md"] = Markdown(verdicts.holds_here(
        [(f"universal neurons have {claim}", evidence[col]) for col, _, claim in CLAIMS],
        [holds_note(table, group, n_group, float(b["top_pct"]))]))
    published = pd.DataFrame({m: t[MEAN_COLS].mean() for m, t in paper.universal_tables().items()}).T.round(3)
    shown = table.drop(columns=["claim", "gap kind"]).set_index("statistic")
    tables = {"verdicts": shown.style.format({c: "{:.2g}" for c in ("p (Mann-Whitney)", "p (Holm)")}, precision=3),
              "published_means": published,
              "means": means_table(live, group.mask, f"ours: {reference} ({group.label})")}
    data = {"claims": table, "evidence": evidence, "live": live, "group": group, "percentiles": pct,
            "reference": reference,
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

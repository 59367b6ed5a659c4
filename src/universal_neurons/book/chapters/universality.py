"""Universal neurons (paper section 4.1, figures 2a, 2b, 2c and 11): for each neuron of a reference model, its best
match in models trained from other seeds against a random-mixture baseline, and the untrained control's noise floor."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import seaborn as sns
from IPython.display import Markdown

from scipy import stats

from ...runs.control import run_control, run_with_control
from ...config.profile import load_profile
from ...core import paper
from .. import plotting
from ...runs import neuron_tables
from ...runs import universality
from ...measures import verdicts
from ..words import counted
from ..publish import Chapter
from ...runs.selection import CONTROL_QUANTILE, control_threshold, resolve_threshold

LOWER_THRESHOLDS = (0.3, 0.4)  # shown beside the chapter's threshold: how far the neurons are from it
TOP_QUANTILE = 0.99  # "the top 1% by excess correlation": the comparison group when no neuron is universal
N_TOP = 15  # rows of the table of the most universal neurons
SUMMARY_GLUE = ("excess_q50", "excess_q90", "excess_q99", "excess_max", "mean_corr_median", "mean_baseline_median")


def compute(profile="smoke", device="cpu", overrides="") -> Chapter:
    """Run (or reuse) the universality pass and, for a zoo with analysis.control, the untrained control; derive the
    page's tables, glued numbers and sentences at book.threshold (a number, or "control")."""
    prof = load_profile(profile, overrides, device=device)  # bad parameters: one line, before any work
    ctrl = None
    if prof.cfg["analysis"]["control"] and prof.is_zoo:
        run_with_control(prof, device, progress=False)  # both passes at once where both are due
        ctrl = run_control(prof, device, progress=False)
    threshold, words = resolve_threshold(prof.cfg["book"]["threshold"], prof.tables_dir)  # "control" reads ctrl's table
    res = universality.run_universality(prof, device=device, progress=False, threshold=threshold)
    neurons, info, s = res.neurons, res.info, res.info["summary"]
    live = neurons[~neurons["is_dead"]]
    universal = live["is_universal"].astype(bool)
    top = live["excess_corr"] >= live["excess_corr"].quantile(TOP_QUANTILE)
    gap = neuron_tables.partner_gap(live)
    gap_universal = float(gap[universal].mean()) if s["n_universal"] else None
    same = res.layers[res.layers["ref_layer"] == res.layers["partner_layer"]]
    conv = res.convergence

    control_excess = q_ctrl = None
    if ctrl is not None:
        control_excess = ctrl.neurons.loc[~ctrl.neurons["is_dead"].astype(bool), "excess_corr"]
        q_ctrl = control_threshold(ctrl.neurons)
    n_ctrl = int((live["excess_corr"] > q_ctrl).sum()) if ctrl is not None else 0

    glue = {"n_neurons": s["n_neurons"], "n_partners": len(info["partners"]), "n_tokens": info["n_tokens"],
            "threshold": threshold, "n_universal": s["n_universal"], "share_universal_pct": 100 * s["share_universal"],
            "n_dead": s["n_dead"], "n_dead_md": Markdown(counted(s["n_dead"], "neuron", "is", "are")),
            "share_above_04_pct": 100 * s["share_above_0.4"],
            "share_above_03_pct": 100 * s["share_above_0.3"], **{k: s[k] for k in SUMMARY_GLUE},
            "verdict": Markdown(verdict(s, threshold, words)),
            "control_md": Markdown(control_paragraph(s, ctrl.info["summary"] if ctrl is not None else None, q_ctrl,
                                                     n_ctrl, len(live), threshold)),
            "gap_all": float(gap.mean()), "gap_top": float(gap[top].mean()),
            "gap_universal_md": Markdown(gap_universal_words(gap_universal)),
            "same_layer_pct": 100 * float(same["argmax_share"].mean()),
            "paper_md": Markdown(distributions_ours(s["n_universal"])),
            "conv_first_tokens": int(conv["n_tokens"].iloc[0]),
            "conv_q99_first": float(conv["excess_q99"].iloc[0]), "conv_q99_last": float(conv["excess_q99"].iloc[-1]),
            "paper_threshold": paper.THRESHOLD, "paper_gap_all": paper.GAP_ALL,
            "paper_gap_universal": paper.GAP_UNIVERSAL,
            "paper_shares_md": Markdown(paper_shares_words()),
            "paper_gpt2_tokens_billions": float(paper.MODELS.set_index("model").loc["GPT2-small-a", "tokens"]) / 1e9}

    thresholds = tuple(dict.fromkeys((*LOWER_THRESHOLDS, threshold)))
    per_layer = neuron_tables.per_layer(neurons, thresholds)
    layers = layers_evidence(per_layer, threshold, int(prof.cfg["book"]["min_universal"]))
    n0, d0 = int(per_layer[f"above_{threshold}"].iloc[0]), int(per_layer["neurons"].iloc[0])
    glue |= {"layer0_n": n0, "layer0_neurons": d0, "layer0_share_pct": 100 * n0 / d0, "layer0_ratio": layers.value}
    verdicts.glue_verdict(glue, "verdict_layers", layers)
    glue["trained_tokens_md"] = Markdown(trained_tokens_words(prof))
    glue["uni_holds_md"] = Markdown(verdicts.holds_here(
        [("universal neurons are most common in the first layers", layers)],
        [holds_note(s, threshold, words, ctrl.info["summary"] if ctrl is not None else None)]))
    cols = ["layer", "neuron", "mean_corr", "mean_baseline", "excess_corr", "min_corr", "max_corr"]
    cols += [c for c in neurons.columns if c.startswith("max_sim_layer_p")]
    ours = {"model": f"ours ({prof.name}, {info['names'][0]})", "universal": s["n_universal"],
            "neurons": s["n_neurons"], "share %": 100 * s["share_universal"], "mean gap, all": float(gap.mean()),
            "mean gap, universal": float(gap[universal].mean()),
            "mean excess of universal": float(live.loc[universal, "excess_corr"].mean())}
    tables = {"per_layer": per_layer,
              "top_neurons": live.sort_values("excess_corr", ascending=False)[cols].head(N_TOP).round(3).pipe(
                  lambda t: t.assign(id=[f"L{l}.{n}" for l, n in zip(t["layer"], t["neuron"])])),
              "paper_comparison": comparison_table(ours), "convergence": conv.round(4),
              "run": run_table(prof, info)}
    data = {"live": live, "top": top, "universal": universal, "threshold": threshold, "thresholds": thresholds,
            "control_excess": control_excess, "control_threshold": q_ctrl, "layers": res.layers, "convergence": conv,
            "per_layer": tables["per_layer"], "paper_tables": paper.universal_tables()}
    return Chapter("universality", prof, glue=glue, tables=tables, data=data)


# ---- sentences and tables --------------------------------------------------------------------------------
def paper_shares_words(shares=paper.SHARES) -> str:
    """The paper's shares of universal neurons, e.g. "4.16% in GPT2-small-a, 1.23% in GPT2-medium-a"."""
    return ", ".join(f"{100 * n / N:.2f}% in {m}" for m, (n, N) in shares.items())


def verdict(summary: dict, threshold: float, words: str) -> str:
    """The headline: how many neurons are universal, or why none is (the baseline takes back the correlation).
    `words` names the threshold (e.g. "the paper's threshold of 0.5")."""
    n = summary["n_universal"]
    share = f"{n:,} neurons ({100 * summary['share_universal']:.2f}%)"
    if n and threshold == paper.THRESHOLD:
        return f"**{share} are universal** by the paper's criterion (the paper finds {paper_shares_words()})."
    if n:
        return (f"**{share} pass {words}**; by its threshold of {paper.THRESHOLD:g}, the paper finds "
                f"{paper_shares_words()} universal.")
    return (f"**No neuron of this model passes {words}.** The median neuron's baseline is "
            f"{summary['mean_baseline_median']:.3f} against a median best-partner correlation of "
            f"{summary['mean_corr_median']:.3f}, so the baseline takes back "
            f"{_taken_back(summary)} of the correlation. The sections below show how far the neurons are from the "
            "threshold, the most universal ones, and how the picture changes with lower thresholds and more tokens.")


def layers_evidence(per_layer: pd.DataFrame, threshold: float, min_universal: int) -> verdicts.Evidence:
    """The claim that universal neurons are most common in the first layers, as evidence: layer 0's share of
    universal neurons over the whole model's, against the paper's (half its smaller excess over an even spread) and
    the 97.5th percentile of the same ratio when the universal neurons are placed at random (hypergeometric)."""
    col = f"above_{threshold}"
    if col not in per_layer:  # the table counts at the chapter's thresholds only
        per_layer = per_layer.assign(**{col: np.nan})
    n, total = int(per_layer[col].fillna(0).sum()), int(per_layer["neurons"].sum())
    n0, d0 = int(per_layer[col].fillna(0).iloc[0]), int(per_layer["neurons"].iloc[0])
    ratio = (n0 / d0) / (n / total) if n else float("nan")
    noise = (float(stats.hypergeom(total, d0, n).ppf(0.975)) / d0) / (n / total) if n else float("nan")
    enrich = paper.layer0_enrichment()
    weakest = min(enrich, key=enrich.get)
    untestable = ""
    if threshold != paper.THRESHOLD:
        untestable = f"the book's threshold here is {threshold:g}, not the paper's {paper.THRESHOLD:g}"
    elif n < min_universal:
        untestable = f"only {n} neurons pass the paper's threshold of {threshold:g}, fewer than the {min_universal} " \
                     "a comparison needs"
    elif len(per_layer) < 2:
        untestable = "the model has one layer"
    return verdicts.Evidence(
        "layer 0's share of universal neurons ÷ the model's", ratio, magnitude=1 + (enrich[weakest] - 1) / 2,
        magnitude_words=f"half the paper's smaller excess over an even spread, {enrich[weakest]:.2f}x in {weakest}",
        noise=noise, noise_words=f"the 97.5th percentile when the {n} universal neurons are placed at random",
        untestable=untestable, unit="x")


def trained_tokens_words(prof) -> str:
    """How many tokens each member of this profile was trained on, in words (a zoo's recipe), or that the
    members are checkpoints trained elsewhere."""
    if not prof.is_zoo:
        return "the members here are checkpoints trained elsewhere (their training is in their model cards)"
    tokens = float(prof.cfg["train"]["tokens"])
    if prof.untrained:
        return "the members here are untrained (the negative control)"
    return f"each zoo model here was trained on {tokens / 1e6:,.1f} million tokens"


def holds_note(summary: dict, threshold: float, words: str, control: dict | None) -> str:
    """What the chapter found, from its numbers: how many neurons pass the threshold, against the untrained control,
    and where the share of universal neurons is judged."""
    n = summary["n_universal"]
    text = (f"{n:,} neurons ({100 * summary['share_universal']:.2f}%) pass {words}" if n else
            f"No neuron passes {words}")
    if control is not None:
        text += (f"; against the untrained control, {control['n_universal']:,} "
                 f"({100 * control['share_universal']:.2f}%) pass it")
    return (text + ". Whether that share is the paper's is judged, with its bootstrap interval, in the robustness "
            "chapter, which also shows how the share moves with the null model and the matching rule.")


def _taken_back(summary: dict) -> str:
    """The median baseline as a share of the median best-partner correlation, in words."""
    corr, base = summary["mean_corr_median"], summary["mean_baseline_median"]
    return f"{100 * base / corr:.0f}%" if corr > 0 else "all"


def control_paragraph(summary: dict, control: dict | None, q_control: float | None, n_pass: int, n_live: int,
                      threshold: float) -> str:
    """The untrained control against the trained partners, and the scale-aware threshold it gives: its value and how
    many of the `n_live` neurons pass it (`n_pass`). `control`: the control run's summary, None if none was run."""
    if control is None:
        return "No untrained control was run for this profile (it is run for trained zoos only)."
    shares = [n / N for n, N in paper.SHARES.values()]
    ours = f"the paper's {threshold:g}" if threshold == paper.THRESHOLD else f"the threshold of {threshold:.3g}"
    return (
        f"Against the untrained control the excess correlation has median {control['excess_q50']:.3f}, 99th "
        f"percentile {control['excess_q99']:.3f} and maximum {control['excess_max']:.3f}, against "
        f"{summary['excess_q50']:.3f}, {summary['excess_q99']:.3f} and {summary['excess_max']:.3f} with the trained "
        "partners.\n\n"
        f"**A scale-aware threshold.** The paper's {paper.THRESHOLD:g} was set for GPT-2 models. Beside it, this "
        f"book reports the {100 * CONTROL_QUANTILE:g}th percentile of the excess correlation against the untrained "
        f"control, here {q_control:.3f}: a neuron above it correlates with its trained partners more than all but "
        f"one in a thousand neurons correlate with an untrained model. **{n_pass:,} neurons "
        f"({100 * n_pass / n_live:.2f}% of the live ones) pass it**, against {summary['n_universal']:,} above "
        f"{ours}. It asks whether a neuron's match is above noise, a weaker claim than the paper's threshold, which "
        f"selects {math.floor(100 * min(shares))}-{math.ceil(100 * max(shares))}% of GPT-2's neurons; the control "
        "is a single partner while the trained comparison averages over partners, so the noise it measures is, if "
        "anything, too wide. The next chapters compare groups by the paper's threshold unless the setting "
        "`book.threshold` is `control` (this threshold) or another number; the scale chapter shows how both change "
        "with the size of the models.")


def gap_universal_words(gap_universal: float | None) -> str:
    """The mean partner gap of the universal neurons, or why it is undefined (None: no universal neuron)."""
    return "undefined here (no universal neuron)" if gap_universal is None else f"{gap_universal:.3f}"


def distributions_ours(n_universal: int) -> str:
    """Which of our neurons are drawn beside the paper's universal ones: ours, or the top 1% if none is universal."""
    return "universal neurons." if n_universal else "top 1% of neurons by excess correlation, since none is universal."


def comparison_table(ours: dict) -> pd.DataFrame:
    """Our row (model, universal, neurons, share %, mean gaps, mean excess of universal) beside the paper's: its
    shares (section 4.1), the mean excess of its universal neurons and its partner gaps (text, figure 2b)."""
    rows = [ours]
    means = paper.excess_universal_means()
    rows += [{"model": f"paper {m}", "universal": n, "neurons": N, "share %": 100 * n / N,
              "mean excess of universal": means[m]} for m, (n, N) in paper.SHARES.items()]
    rows += [{"model": "paper (text, figure 2b)", "mean gap, all": paper.GAP_ALL,
              "mean gap, universal": paper.GAP_UNIVERSAL}]
    return pd.DataFrame(rows).round(4)


def run_table(prof, info: dict) -> pd.Series:
    """What was compared, on how many tokens, where and how long it took."""
    return pd.Series({"profile": prof.cfg.get("description", prof.name), "reference": info["names"][0],
                      "partners": ", ".join(info["names"][1:]), "held-out tokens": f"{info['n_tokens']:,}",
                      "baseline": f"{info['baseline']['kind']} (seed {info['baseline']['seed']})",
                      "device": f"{info['device']} ({info['world_size']} process(es), {info['n_tiles']} tile(s))",
                      "seconds": round(info["seconds"], 1)}, name="run")


# ---- figures -----------------------------------------------------------------------------------------------
def per_layer_figure(ch: Chapter):
    """The share of each layer's neurons above each threshold against relative depth, beside the paper's."""
    layers = ch.data["per_layer"]
    fig, ax = plotting.subplots(width=8)
    depth = layers["layer"] / max(1, layers["layer"].max())
    for t, mk in zip(ch.data["thresholds"], ("o", "s", "D")):
        ax.plot(depth, 100 * layers[f"above_{t}"] / layers["neurons"], marker=mk, label=f"ours, excess > {t:g}")
    for name, counts in paper.PER_LAYER.items():
        ax.plot(np.linspace(0, 1, len(counts)), 100 * np.array(counts) / paper.D_MLP[name], ls="--",
                label=f"paper {name}, > {paper.THRESHOLD:g}")
    ax.set(xlabel="relative depth (layer / last layer)", ylabel="% of the layer's neurons",
           title="Universal neurons per layer")
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return fig


def densities_figure(ch: Chapter):
    """Left: best-partner correlation and baseline; right: excess correlation, with the control's where run."""
    live, t, q = ch.data["live"], ch.data["threshold"], ch.data["control_threshold"]
    fig, axes = plotting.subplots(1, 2)
    bins = np.linspace(-0.1, 1, 56)
    axes[0].hist(live["mean_corr"], bins=bins, alpha=0.6, density=True, label="mean_corr")
    axes[0].hist(live["mean_baseline"], bins=bins, alpha=0.6, density=True, label="mean_baseline")
    axes[0].set(xlabel="correlation", ylabel="density", title="Best-partner correlation vs baseline")
    axes[0].legend(fontsize=8)
    axes[1].hist(live["excess_corr"], bins=56, alpha=0.7, density=True, label="trained partners")
    if ch.data["control_excess"] is not None:
        axes[1].hist(ch.data["control_excess"], bins=56, histtype="step", color="grey", density=True,
                     label="untrained partner")
        axes[1].axvline(q, color="grey", ls="--", label=f"control q{100 * CONTROL_QUANTILE:g} ({q:.3f})")
    axes[1].axvline(t, color="C3", ls=":", label=f"threshold {t:g}")
    axes[1].set(xlabel="excess_corr", title="Excess correlation")
    axes[1].legend(fontsize=8)
    return fig


def partner_agreement_figure(ch: Chapter):
    """Per neuron, the largest against the smallest over the partners of its best-match correlation."""
    live, top, uni = ch.data["live"], ch.data["top"], ch.data["universal"]
    fig, ax = plotting.subplots(width=6, height=5.5)
    ax.scatter(live["min_corr"], live["max_corr"], s=4, alpha=0.4, label="all neurons")
    ax.scatter(live.loc[top, "min_corr"], live.loc[top, "max_corr"], s=8, color="C3", label="top 1% by excess")
    if uni.any():
        ax.scatter(live.loc[uni, "min_corr"], live.loc[uni, "max_corr"], s=10, marker="x", color="k", label="universal")
    ax.plot([0, 1], [0, 1], color="grey", lw=1)
    ax.set(xlabel="min over partners of max_corr", ylabel="max over partners of max_corr", title="Partner agreement")
    ax.legend(fontsize=8)
    return fig


def layer_similarity_figure(ch: Chapter):
    """Heat maps over (reference layer, partner layer): mean best correlation, and the share of best matches."""
    fig, axes = plotting.subplots(1, 2, height=4.2)
    for ax, col, title in zip(axes, ("mean_max_corr", "argmax_share"), ("mean max correlation", "share of argmaxes")):
        m = ch.data["layers"].pivot(index="ref_layer", columns="partner_layer", values=col)
        sns.heatmap(m, ax=ax, cmap="viridis", annot=m.shape[1] <= 12, fmt=".2f", square=True)
        ax.set(xlabel="partner layer", ylabel="reference layer", title=title)
    return fig


def paper_distributions_figure(ch: Chapter):
    """Excess, best-partner correlation and baseline of the paper's universal neurons and of ours (the universal
    ones, or the top 1% if none is)."""
    live = ch.data["live"]
    ours = live[ch.data["universal"]] if ch.data["universal"].any() else live[ch.data["top"]]
    fig, axes = plotting.subplots(1, 3, height=3.4)
    for ax, col in zip(axes, ("excess_corr", "mean_corr", "mean_baseline")):
        for name, t in ch.data["paper_tables"].items():
            ax.hist(t[col], bins=30, range=(0, 1), density=True, histtype="step", label=f"paper {name}")
        ax.hist(ours[col], bins=30, range=(0, 1), density=True, alpha=0.4, color="k", label="ours")
        ax.set(xlabel=col, title=col)
    axes[0].legend(fontsize=8)
    return fig


def convergence_figure(ch: Chapter):
    """Shares above the thresholds and excess quantiles after 1/16, ..., all of the tokens of the same pass."""
    conv, t = ch.data["convergence"], ch.data["threshold"]
    fig, axes = plotting.subplots(1, 2)
    for col, lab in (("share_universal", f"> {t:g}"), ("share_above_0.4", "> 0.4"), ("share_above_0.3", "> 0.3")):
        axes[0].plot(conv["n_tokens"], 100 * conv[col], marker="o", label=f"excess {lab}")
    axes[0].set(xscale="log", xlabel="tokens", ylabel="% of neurons", title="Share above thresholds")
    for i, col in enumerate(("excess_q50", "excess_q90", "excess_q99", "excess_max")):
        axes[1].plot(conv["n_tokens"], conv[col], marker="o", color=plotting.series_colour(i),
                     label=col.replace("excess_", ""))
    axes[1].set(xscale="log", xlabel="tokens", ylabel="excess_corr", title="Excess correlation quantiles")
    for ax in axes:
        ax.legend(fontsize=8, loc="center right")
        ax.set_xticks(conv["n_tokens"], [f"{n:,}" for n in conv["n_tokens"]], rotation=30, fontsize=8)
        ax.minorticks_off()
    return fig

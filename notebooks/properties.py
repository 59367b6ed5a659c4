# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Properties of universal neurons
#
# The paper's section 4.2 (figures 3 and 14) asks what sets universal neurons apart from the others, using
# statistics that need no interpretation of the neuron. On the processed weights (LayerNorm folded,
# writing weights and unembedding centred, as TransformerLens loads them): the input and output weight
# norms `w_in_norm` and `w_out_norm`, the input bias `input_bias`, the cosine `in_out_sim` between $w_{in}$
# and $w_{out}$, and the weight decay penalty `l2_penalty` $= \|w_{in}\|^2 + \|w_{out}\|^2$. On the
# vocabulary: the moments of $c_v = \cos(w_{out}, W_U[:, v])$ over the tokens $v$. On held-out tokens: the
# mean, variance, skew and kurtosis of the pre-activation (`blocks.{l}.mlp.hook_pre`) and its activation
# frequency `sparsity`, the share of tokens with a positive pre-activation. Kurtosis is not excess
# kurtosis: a Gaussian has 3. The activation moments are exact (float64 power sums in one streaming pass
# over the same tokens as the correlations, beginning-of-text and newline tokens left out).
#
# The paper's claim: universal neurons have large weight norms, a large negative input bias, a negative
# pre-activation mean, a low activation frequency, and a high skew and kurtosis, the signature of sparse,
# monosemantic-looking neurons. Since layers differ, each statistic is shown as a percentile within the
# neuron's layer.

# %% tags=["parameters"]
profile = "smoke"     # a profiles/<name>.yaml
device = "cpu"        # cuda on a GPU
overrides = ""        # space-separated profile overrides, as in make book SET
threshold = 0.5       # excess correlation of a universal neuron (the paper: 0.5), or control: the scale-aware one
top_pct = 2.0         # with fewer than min_universal universal neurons, compare this top percent by excess
min_universal = 10    # the smallest universal group worth comparing
n_tokens = None       # held-out tokens for the activation moments; None: analysis.n_tokens of the profile

# %%
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from IPython.display import Markdown
from myst_nb import glue
from scipy import stats

import universal_neurons as un
from universal_neurons.plotting import show
from universal_neurons import properties as P
from universal_neurons import paper
from universal_neurons import universality as U



prof = un.load_profile(profile, overrides.split())
U.ensure_results(prof, device=device)  # the universality chapter's table, else computed with its defaults
props = P.compute_properties(prof, device=device, n_tokens=n_tokens, progress=False)
frame = P.neuron_frame(prof)
live = frame[~frame["is_dead"]].reset_index(drop=True)
thr, thr_name = U.resolve_threshold(threshold, prof)
group, label = P.universal_group(live, thr, top_pct, min_universal)
n_universal = int((live["excess_corr"] > thr).sum())
print(prof.cfg["description"])
print(f"reference {props.info['reference']}: {len(frame)} neurons, {n_universal} universal, "
      f"compared group: {label} ({int(group.sum())} neurons)")

# %%
glue("prop_n_neurons", len(live), display=False)
glue("prop_n_universal", n_universal, display=False)
glue("prop_n_group", int(group.sum()), display=False)
glue("prop_n_tokens", props.info["n_tokens"], display=False)
if label.startswith("universal"):
    group_md = (f"{n_universal:,} neurons pass {thr_name}: they are the universal "
                "group compared below with the rest.")
else:
    passing = "No neuron passes" if n_universal == 0 else f"Only {n_universal:,} neurons pass"
    group_md = (f"**{passing} {thr_name}**, fewer than the {min_universal} a comparison "
                "needs (small zoos are expected to have none: see the universality chapter). Instead, the "
                f"**top {top_pct:g}% of neurons by excess correlation** ({int(group.sum()):,} neurons, excess "
                f"at least {live.loc[group, 'excess_corr'].min():.3f}) stand in for the universal neurons below. "
                "They are the most universal neurons of this model, not universal in the paper's sense.")
glue("prop_group_md", Markdown(group_md), display=False)
glue("prop_label_md", Markdown(label), display=False)

# %% [markdown]
# The reference model has {glue:text}`prop_n_neurons:,` live neurons; the activation statistics use
# {glue:text}`prop_n_tokens:,` held-out tokens. {glue:md}`prop_group_md`
#
# ## Percentiles within the layer (paper figures 3 and 14)
#
# Each neuron's statistic as a percentile among the neurons of its layer: 50 is the layer's median. A
# group with nothing special would spread evenly from 0 to 100 (the rest, in grey, does by construction).

# %%
metrics = ["sparsity", "mean", "skew", "kurt", "input_bias", "l2_penalty", "w_in_norm", "w_out_norm",
           "in_out_sim", "vocab_var", "vocab_skew", "vocab_kurt"]
pct = P.layer_percentiles(live, metrics)
long = pct.assign(group=np.where(group, label, "rest")).melt(id_vars="group", var_name="metric",
                                                            value_name="percentile within layer")
fig, ax = plt.subplots(figsize=(11, 4))
sns.boxenplot(data=long, x="metric", y="percentile within layer", hue="group", hue_order=[label, "rest"],
              palette=["C3", "0.75"], ax=ax)
ax.axhline(50, color="k", lw=0.8, ls=":")
sns.move_legend(ax, "upper left", bbox_to_anchor=(1, 1), title=None, fontsize=8)
ax.set(title=f"{props.info['reference']}: {label} neurons, each statistic as a percentile within its layer", xlabel="")
ax.tick_params(axis="x", rotation=30)
show(fig)

# %% [markdown]
# ## The paper's claims, checked
#
# For each claim: the median within-layer percentile of the compared group, and a one-sided Mann-Whitney
# test of the group's percentiles against the rest's. A claim *holds* when the median lies on the claimed
# side of 50 and the test gives p < 0.05; it *points the same way* when only the median does.

# %%
claims = [("l2_penalty", +1, "large weight norm (L2 penalty)"), ("input_bias", -1, "large negative input bias"),
          ("mean", -1, "negative pre-activation mean"), ("sparsity", -1, "low activation frequency"),
          ("skew", +1, "high pre-activation skew"), ("kurt", +1, "high pre-activation kurtosis")]
rows = []
for col, sign, claim in claims:
    g, r = pct.loc[group, col].dropna(), pct.loc[~group, col].dropna()
    med = float(g.median())
    p = stats.mannwhitneyu(g, r, alternative="greater" if sign > 0 else "less").pvalue if len(g) and len(r) else np.nan
    right = (med - 50) * sign > 0
    verdict = "holds" if right and p < 0.05 else "points the same way, not significantly" if right else "does not hold"
    rows.append({"claim": claim, "statistic": col, "median percentile": med, "p (Mann-Whitney)": p, "verdict": verdict})
    glue(f"prop_verdict_{col}", verdict, display=False)
    glue(f"prop_pct_{col}", med, display=False)
verdicts = pd.DataFrame(rows)
display(verdicts.round(4))
glue("prop_n_hold", int((verdicts["verdict"] == "holds").sum()), display=False)
glue("prop_n_claims", len(verdicts), display=False)

# %% [markdown]
# In this run, comparing the compared group ({glue:md}`prop_label_md`, {glue:text}`prop_n_group:,` neurons)
# with the rest, {glue:text}`prop_n_hold` of the {glue:text}`prop_n_claims` claims hold:
#
# - large weight norm: {glue:text}`prop_verdict_l2_penalty` (median percentile {glue:text}`prop_pct_l2_penalty:.0f`);
# - large negative input bias: {glue:text}`prop_verdict_input_bias` (median percentile {glue:text}`prop_pct_input_bias:.0f`);
# - negative pre-activation mean: {glue:text}`prop_verdict_mean` (median percentile {glue:text}`prop_pct_mean:.0f`);
# - low activation frequency: {glue:text}`prop_verdict_sparsity` (median percentile {glue:text}`prop_pct_sparsity:.0f`);
# - high skew: {glue:text}`prop_verdict_skew` (median percentile {glue:text}`prop_pct_skew:.0f`);
# - high kurtosis: {glue:text}`prop_verdict_kurt` (median percentile {glue:text}`prop_pct_kurt:.0f`).
#
# ## Our means beside the paper's table
#
# Mean of each statistic over the compared group (U) and over the rest (non-U), beside the paper's
# values for its universal and non-universal neurons (its section 4.2). Absolute values depend on the
# model's width and training; the direction of each gap is what carries over.

# %%
cols = ["sparsity", "input_bias", "skew", "kurt", "l2_penalty"]
ours = {f"{c}_{k}": float(live.loc[m, c].mean()) for c in cols for k, m in (("U", group), ("nonU", ~group))}
table = pd.concat([pd.DataFrame([ours], index=[f"ours: {props.info['reference']} ({label})"]), paper.PROPERTY_MEANS])
display(pd.DataFrame({c: [f"{u:.3f} / {n:.3f}" for u, n in zip(table[f"{c}_U"], table[f"{c}_nonU"])]
                      for c in cols}, index=table.index).rename(columns=lambda c: f"{c} U / non-U"))
check = pd.DataFrame({m: t[cols].mean() for m, t in paper.universal_tables().items()}).T.round(3)
print("Means over the paper's published universal neurons (universal.csv), for comparison with its U column:")
display(check)

# %% [markdown]
# ## Per-layer distributions
#
# The raw statistics per layer, the compared group against the rest: the within-layer percentiles above
# hide how the layers themselves differ.

# %%
show_cols = ["sparsity", "mean", "skew", "kurt", "input_bias", "l2_penalty", "in_out_sim", "vocab_kurt"]
long = live.assign(group=np.where(group, label, "rest")).melt(id_vars=["layer", "group"], value_vars=show_cols)
grid = sns.catplot(data=long, x="layer", y="value", hue="group", hue_order=[label, "rest"], col="variable",
                   col_wrap=4, kind="box", sharey=False, palette=["C3", "0.75"], showfliers=False, height=2.6,
                   aspect=1.2, legend_out=True)
grid.set_titles("{col_name}")
sns.move_legend(grid, "lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, title=None)
show(grid.figure)

# %% [markdown]
# ## Pre-activation histograms
#
# The stored per-neuron histograms of the pre-activation (equal bins over the range of the first batch,
# widened by half that range on each side; the few tokens outside fall in under- and overflow bins, not
# drawn): the four neurons with the largest excess correlation, and four neurons from the middle of the
# excess distribution. Sparse, heavy-tailed neurons sit mostly below zero with a long right tail.

# %%
hist = props.hists[props.info["reference"]]
d_mlp = int(frame["neuron"].max()) + 1
order = live.sort_values("excess_corr", ascending=False)
picks = [("top", r) for r in order.head(4).itertuples()] + [("median", r) for r in order.iloc[
    len(order) // 2 - 2:len(order) // 2 + 2].itertuples()]
fig, axes = plt.subplots(2, 4, figsize=(12, 5))
for ax, (kind, r) in zip(axes.flat, picks):
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
show(fig)

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
# # Universal neurons: which neurons recur across seeds
#
# The paper's first question (its section 4.1): does a neuron of one model have a twin, firing on the
# same tokens, in models trained from other seeds? For every neuron $i$ of the reference model and
# every partner model $m$, we correlate $i$'s post-activation (`blocks.{l}.mlp.hook_post`) over
# held-out tokens with every neuron of $m$, in all layers, and keep the largest (signed) Pearson
# correlation, `max_corr`. As a baseline, the same maximum is taken against the partner's neurons
# after a fixed random "rotation" $u = R v$ of each layer ($R$ has $N(0,1)$ entries and unit-norm rows):
# a random mixture of a layer's neurons says how much correlation comes for free. Averaging over the
# partners,
#
# $$\mathrm{excess\_corr}(i) = \mathrm{mean}_m\, \mathrm{max\_corr}_m(i) - \mathrm{mean}_m\, \mathrm{baseline}_m(i),$$
#
# and a neuron is *universal* when its excess correlation exceeds 0.5. Beginning-of-text and newline
# tokens are left out, as in the paper. All correlations of all partners are accumulated in one pass over
# the tokens (float64 sufficient statistics). The baseline needs no rotated activations: since
# $\text{cov}(x, Rv) = \text{cov}(x, v)\,R^\top$ and $\text{var}(Rv)_j = R_j \Sigma_{vv} R_j^\top$, it follows
# exactly from the same co-moments plus each partner layer's own, for about half the work.

# %% tags=["parameters"]
profile = "smoke"       # a profiles/<name>.yaml
device = "cpu"          # "cuda" on a GPU
overrides = ""          # space-separated profile overrides, as in make book SET
reference_seed = None   # zoo seed (or model source) of the reference; None: from the profile
partners = None         # list of zoo seeds (or model sources); None: the other profile members
n_tokens = None         # held-out tokens to correlate over; None: analysis.n_tokens of the profile
baseline = "gaussian"   # "gaussian" (the paper's row-normalised Gaussian) or "orthogonal"
seed = 0                # seed of the baseline matrices
threshold = 0.5         # excess correlation above which a neuron counts as universal
control = True          # also correlate with an untrained model (zoo profiles only): the noise floor

# %%
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display
from myst_nb import glue

import universal_neurons as un
from universal_neurons.plotting import show
from universal_neurons import paper
from universal_neurons import universality as U




prof = un.load_profile(profile, overrides.split())
res = U.run_universality(prof, device=device, reference=reference_seed, partners=partners, n_tokens=n_tokens,
                         baseline=baseline, seed=seed, threshold=threshold, progress=False)
neurons, info, s = res.neurons, res.info, res.info["summary"]
live = neurons[~neurons["is_dead"]]
ctrl = None
if control and prof.is_zoo:
    ctrl = U.run_universality(prof, device=device, reference=reference_seed, partners=[str(U.untrained_control(prof))],
                              n_tokens=n_tokens, baseline=baseline, seed=seed, threshold=threshold,
                              out_dir=prof.tables_dir / "control", progress=False)
print(prof.cfg["description"])
print("reference:", info["names"][0], "| partners:", ", ".join(info["names"][1:]))
print(f"{info['n_tokens']:,} tokens, {info['seconds']:.0f} s on {info['device']} "
      f"({info['world_size']} process(es), {info['n_tiles']} tile(s))")

# %%
pct = 100 * s["share_universal"]
glue("n_neurons", s["n_neurons"], display=False)
glue("n_partners", len(info["partners"]), display=False)
glue("n_tokens", info["n_tokens"], display=False)
glue("threshold", threshold, display=False)
glue("n_universal", s["n_universal"], display=False)
glue("share_universal_pct", pct, display=False)
glue("n_dead", s["n_dead"], display=False)
glue("share_above_04_pct", 100 * s["share_above_0.4"], display=False)
glue("share_above_03_pct", 100 * s["share_above_0.3"], display=False)
for k in ("excess_q50", "excess_q90", "excess_q99", "excess_max", "mean_corr_median", "mean_baseline_median"):
    glue(k, s[k], display=False)
if s["n_universal"]:
    verdict = (f"**{s['n_universal']:,} neurons ({pct:.2f}%) are universal** by the paper's criterion "
               "(the paper finds " + ", ".join(f"{100 * n / N:.2f}% in {m}" for m, (n, N) in paper.SHARES.items())
               + ").")
else:
    verdict = (f"**No neuron of this model passes the paper's threshold of {threshold}.** That is expected at "
               "this scale: in small, briefly trained models a random mixture of a layer's neurons already "
               "correlates with a neuron almost as well as its best partner neuron does (here a median baseline "
               f"of {s['mean_baseline_median']:.3f} against a median best-partner correlation of "
               f"{s['mean_corr_median']:.3f}), so the baseline takes back most of the correlation. The sections "
               "below show how far the neurons are from the threshold, the most universal ones, and how the "
               "picture changes with lower thresholds and more tokens.")
glue("verdict", Markdown(verdict), display=False)

# %% [markdown]
# ## The headline number
#
# The reference has {glue:text}`n_neurons:,` neurons, compared with {glue:text}`n_partners` partner
# models over {glue:text}`n_tokens:,` held-out tokens. {glue:text}`n_universal:,` neurons
# ({glue:text}`share_universal_pct:.2f`%) have an excess correlation above {glue:text}`threshold`.
# {glue:md}`verdict`
#
# The median neuron has a mean best-partner correlation of {glue:text}`mean_corr_median:.3f` against a
# mean baseline of {glue:text}`mean_baseline_median:.3f`; its excess correlation is
# {glue:text}`excess_q50:.3f` (90th percentile {glue:text}`excess_q90:.3f`, 99th
# {glue:text}`excess_q99:.3f`, largest {glue:text}`excess_max:.3f`). Above lower thresholds:
# {glue:text}`share_above_04_pct:.2f`% of the neurons exceed 0.4 and {glue:text}`share_above_03_pct:.2f`%
# exceed 0.3. {glue:text}`n_dead` neurons are dead (zero variance on these tokens): their correlations
# are undefined, so they get no excess correlation and count as not universal, and dead partner neurons
# never count as anyone's best match.
#
# ## Universal neurons per layer
#
# Counts of neurons above each threshold, per layer of the reference, beside the paper's counts of
# universal neurons per layer (as a share of the layer, against relative depth).

# %%
layers = U.per_layer(neurons, (0.3, 0.4, threshold))
display(layers)
fig, ax = plt.subplots(figsize=(7, 3.5))
depth = layers["layer"] / max(1, layers["layer"].max())
for t, mk in zip((0.3, 0.4, threshold), ("o", "s", "D")):
    ax.plot(depth, 100 * layers[f"above_{t}"] / layers["neurons"], marker=mk, label=f"ours, excess > {t}")
for name, counts in paper.PER_LAYER.items():
    ax.plot(np.linspace(0, 1, len(counts)), 100 * np.array(counts) / paper.D_MLP[name], ls="--",
            label=f"paper {name}, > 0.5")
ax.set(xlabel="relative depth (layer / last layer)", ylabel="% of the layer's neurons",
       title="Universal neurons per layer")
ax.legend(fontsize=7)
show(fig)

# %% [markdown]
# ## Distributions of correlation, baseline and excess (paper figures 2a and 11)
#
# Densities over all live reference neurons. The baseline is what a random mixture of a partner layer's
# neurons achieves; the excess is the gap between the two. The grey line, where shown, is the excess
# correlation against an untrained model of the same configuration: the noise floor of the method on
# these tokens.

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
bins = np.linspace(-0.1, 1, 56)
axes[0].hist(live["mean_corr"], bins=bins, alpha=0.6, density=True, label="mean_corr")
axes[0].hist(live["mean_baseline"], bins=bins, alpha=0.6, density=True, label="mean_baseline")
axes[0].set(xlabel="correlation", ylabel="density", title="Best-partner correlation vs baseline")
axes[0].legend(fontsize=8)
axes[1].hist(live["excess_corr"], bins=56, alpha=0.7, density=True, label="trained partners")
if ctrl is not None:
    c = ctrl.neurons[~ctrl.neurons["is_dead"]]["excess_corr"]
    axes[1].hist(c, bins=56, histtype="step", color="grey", density=True, label="untrained partner")
axes[1].axvline(threshold, color="red", ls=":", label=f"threshold {threshold}")
if ctrl is not None:
    q_ctrl = U.control_threshold(ctrl.neurons)
    axes[1].axvline(q_ctrl, color="grey", ls="--", label=f"control q99.9 ({q_ctrl:.3f})")
axes[1].set(xlabel="excess_corr", title="Excess correlation")
axes[1].legend(fontsize=8)
show(fig)
cs = ctrl.info["summary"] if ctrl is not None else None
if cs:
    n_ctrl = int((live["excess_corr"] > q_ctrl).sum())
    control_md = (
        f"Against the untrained control the excess correlation has median {cs['excess_q50']:.3f}, 99th percentile "
        f"{cs['excess_q99']:.3f} and maximum {cs['excess_max']:.3f}, against {s['excess_q50']:.3f}, "
        f"{s['excess_q99']:.3f} and {s['excess_max']:.3f} with the trained partners.\n\n"
        f"**A scale-aware threshold.** The paper's 0.5 was set for GPT-2 models. Beside it, this book reports the "
        f"{100 * U.CONTROL_QUANTILE:g}th percentile of the excess correlation against the untrained control, "
        f"here {q_ctrl:.3f}: a neuron above it correlates with its trained partners more than all but one in a "
        f"thousand neurons correlate with an untrained model. **{n_ctrl:,} neurons "
        f"({100 * n_ctrl / len(live):.2f}% of the live ones) pass it**, against {s['n_universal']:,} above the "
        f"paper's {threshold:g}. It asks whether a neuron's match is above noise, a weaker claim than the "
        "paper's threshold, which selects 1-5% of GPT-2's neurons; the control is a single partner while the "
        "trained comparison averages over partners, so the noise it measures is, if anything, too wide. The "
        "next chapters compare groups by the paper's threshold unless their "
        "`threshold` parameter is set to `control` (this threshold) or another number; the scale chapter shows "
        "how both change with the size of the models.")
else:
    control_md = "No untrained control was run for this profile (it is run for trained zoos only)."
glue("control_md", Markdown(control_md), display=False)

# %% [markdown]
# {glue:md}`control_md`
#
# ## Do the partners agree? (paper figure 2b)
#
# For each neuron, the largest and the smallest over the partners of its best-match correlation. A
# neuron close to the diagonal has an equally good twin in every partner. The paper reports a mean gap
# (max − min) of 0.049 over all neurons and 0.105 over universal ones.

# %%
gap = U.partner_gap(live)
top = live["excess_corr"] >= live["excess_corr"].quantile(0.99)
fig, ax = plt.subplots(figsize=(4.5, 4.5))
ax.scatter(live["min_corr"], live["max_corr"], s=4, alpha=0.4, label="all neurons")
ax.scatter(live.loc[top, "min_corr"], live.loc[top, "max_corr"], s=8, color="C3", label="top 1% by excess")
if s["n_universal"]:
    u = live["is_universal"]
    ax.scatter(live.loc[u, "min_corr"], live.loc[u, "max_corr"], s=10, marker="x", color="k", label="universal")
ax.plot([0, 1], [0, 1], color="grey", lw=1)
ax.set(xlabel="min over partners of max_corr", ylabel="max over partners of max_corr", title="Partner agreement")
ax.legend(fontsize=8)
show(fig)
glue("gap_all", float(gap.mean()), display=False)
glue("gap_top", float(gap[top].mean()), display=False)
glue("gap_universal_md", Markdown(f"{gap[live['is_universal']].mean():.3f}" if s["n_universal"]
                                  else "undefined here (no universal neuron)"), display=False)

# %% [markdown]
# The mean gap is {glue:text}`gap_all:.3f` over all neurons, {glue:text}`gap_top:.3f` over the top 1% by
# excess correlation, and {glue:md}`gap_universal_md` over universal neurons.
#
# ## Where is the best match? (paper figure 2c)
#
# Left: for each reference layer and partner layer, the mean over reference neurons and partners of the
# best correlation found within that partner layer. Right: the share of best matches (`max_sim_layer`)
# that fall in each partner layer.

# %%
fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
for ax, col, title in zip(axes, ("mean_max_corr", "argmax_share"), ("mean max correlation", "share of argmaxes")):
    m = res.layers.pivot(index="ref_layer", columns="partner_layer", values=col)
    im = ax.imshow(m.to_numpy(), cmap="viridis")
    ax.set(xlabel="partner layer", ylabel="reference layer", title=title, xticks=range(m.shape[1]),
           yticks=range(m.shape[0]))
    if m.shape[1] <= 12:
        for (a, b), v in np.ndenumerate(m.to_numpy()):
            ax.text(b, a, f"{v:.2f}", ha="center", va="center", color="w", fontsize=8)
    fig.colorbar(im, ax=ax, shrink=0.8)
show(fig)
same = res.layers[res.layers["ref_layer"] == res.layers["partner_layer"]]
glue("same_layer_pct", 100 * float(same["argmax_share"].mean()), display=False)

# %% [markdown]
# On average {glue:text}`same_layer_pct:.1f`% of a reference layer's neurons find their best partner in
# the same layer of the partner model.
#
# ## The most universal neurons here
#
# The neurons with the largest excess correlation, with their best match in each partner.

# %%
cols = ["layer", "neuron", "mean_corr", "mean_baseline", "excess_corr", "min_corr", "max_corr"]
cols += [c for c in neurons.columns if c.startswith("max_sim_layer_p")]
display(live.sort_values("excess_corr", ascending=False)[cols].head(15).round(3))

# %% [markdown]
# ## Our numbers beside the paper's
#
# The paper's values come from its text and from the neuron tables its repository publishes
# (`universal.csv`, MIT licence). Note the difference in scale: GPT-2 was trained on about 10 billion
# tokens, while a zoo model here sees a few million at most.

# %%
uni = live["is_universal"]
rows = [{"model": f"ours ({prof.name}, {info['names'][0]})", "universal": s["n_universal"], "neurons": s["n_neurons"],
         "share %": pct, "mean gap, all": float(gap.mean()), "mean gap, universal": float(gap[uni].mean()),
         "mean excess of universal": float(live.loc[uni, "excess_corr"].mean())}]
rows += [{"model": f"paper {m}", "universal": n, "neurons": N, "share %": 100 * n / N,
          "mean excess of universal": paper.EXCESS_UNIVERSAL_MEAN} for m, (n, N) in paper.SHARES.items()]
rows += [{"model": "paper (text, figure 2b)", "mean gap, all": paper.GAP_ALL,
          "mean gap, universal": paper.GAP_UNIVERSAL}]
display(pd.DataFrame(rows).round(4))
paper_tabs = paper.universal_tables()
glue("paper_md", Markdown(
    "Below, the distributions of the paper's universal neurons (from its published tables) beside ours: our "
    + ("universal neurons." if s["n_universal"]
       else "top 1% of neurons by excess correlation, since none is universal.")), display=False)

# %% [markdown]
# {glue:md}`paper_md`

# %%
ours = live[live["is_universal"]] if s["n_universal"] else live[top]
fig, axes = plt.subplots(1, 3, figsize=(12, 3.3))
for ax, col in zip(axes, ("excess_corr", "mean_corr", "mean_baseline")):
    for name, t in paper_tabs.items():
        ax.hist(t[col], bins=30, range=(0, 1), density=True, histtype="step", label=f"paper {name}")
    ax.hist(ours[col], bins=30, range=(0, 1), density=True, alpha=0.4, color="k", label="ours")
    ax.set(xlabel=col, title=col)
axes[0].legend(fontsize=7)
show(fig)

# %% [markdown]
# ## How many tokens are enough?
#
# The same statistics computed from the accumulators after 1/16, 1/8, 1/4, 1/2 and all of the tokens,
# in the same pass.

# %%
conv = res.convergence
fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
for col, lab in (("share_universal", f"> {threshold}"), ("share_above_0.4", "> 0.4"), ("share_above_0.3", "> 0.3")):
    axes[0].plot(conv["n_tokens"], 100 * conv[col], marker="o", label=f"excess {lab}")
axes[0].set(xscale="log", xlabel="tokens", ylabel="% of neurons", title="Share above thresholds")
axes[0].legend(fontsize=8)
for col in ("excess_q50", "excess_q90", "excess_q99", "excess_max"):
    axes[1].plot(conv["n_tokens"], conv[col], marker="o", label=col.replace("excess_", ""))
axes[1].set(xscale="log", xlabel="tokens", ylabel="excess_corr", title="Excess correlation quantiles")
axes[1].legend(fontsize=8)
for ax in axes:
    ax.set_xticks(conv["n_tokens"], [f"{n:,}" for n in conv["n_tokens"]], rotation=30, fontsize=8)
    ax.minorticks_off()
show(fig)
display(conv.round(4))
glue("conv_first_tokens", int(conv["n_tokens"].iloc[0]), display=False)
glue("conv_q99_first", float(conv["excess_q99"].iloc[0]), display=False)
glue("conv_q99_last", float(conv["excess_q99"].iloc[-1]), display=False)

# %% [markdown]
# With {glue:text}`conv_first_tokens:,` tokens the 99th percentile of the excess correlation is
# {glue:text}`conv_q99_first:.3f`; with all {glue:text}`n_tokens:,` it is {glue:text}`conv_q99_last:.3f`.
# A small sample makes chance correlations larger, for the real partners and the baseline alike; where
# the curves have flattened, more tokens would not change the conclusion.

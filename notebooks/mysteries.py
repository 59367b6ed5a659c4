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
# # Mysteries
#
# The paper's section 6 ends with observations it could not explain. Figure 9: a neuron's activation
# frequency against the cosine between its input and output weights, $\cos(w_{in}, w_{out})$: very
# frequent neurons have $w_{in}$ and $w_{out}$ pointing in nearly opposite directions, and the cosines
# saturate near ±0.8. Figure 10: for each neuron, the largest cosine of its $w_{in}$ (and of its
# $w_{out}$) with any other neuron of the model, universal neurons against the rest. Figure 11, the
# densities of the correlation, baseline and excess correlation, is in the universality chapter.
#
# Weights are the processed ones (LayerNorm folded, writing weights centred); the activation frequency
# is the share of held-out tokens with a positive pre-activation. Both are shown for every model of the
# profile; the universal comparison needs the universality table, so it is the reference's.

# %% tags=["parameters"]
profile = "smoke"     # a profiles/<name>.yaml
device = "cpu"        # cuda on a GPU
overrides = ""        # space-separated profile overrides, as in make book SET
threshold = 0.5       # excess correlation of a universal neuron (the paper: 0.5), or control: the scale-aware one
top_pct = 2.0         # with fewer than min_universal universal neurons, compare this top percent by excess
min_universal = 10
frequent_pct = 5.0    # the most frequent neurons, in percent, for the opposite-direction check
bins = 50             # at most this many bins per axis of the 2-D histograms

# %%
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown
from myst_nb import glue
from scipy import stats

import universal_neurons as un
from universal_neurons.plotting import show
from universal_neurons import properties as P
from universal_neurons import universality as U



prof = un.load_profile(profile, overrides.split())
U.ensure_results(prof, device=device)  # the universality chapter's table, else computed with its defaults
props = P.compute_properties(prof, device=device, progress=False)
table = props.table
models = list(dict.fromkeys(table["model"]))
ref_name = props.info["reference"]
print(prof.cfg["description"])
print("models:", ", ".join(models))

# %% [markdown]
# ## Activation frequency and the input-output cosine (paper figure 9)
#
# Each panel is one model: a 2-D histogram of the neurons (colour: count, log scale), the least-squares
# line and Pearson's r.

# %%
with_acts = [m for m in models if table.loc[table["model"] == m, "sparsity"].notna().all()]
cols = min(3, len(with_acts))
fig, axes = plt.subplots(-(-len(with_acts) // cols), cols, figsize=(4.2 * cols, 3.6 * -(-len(with_acts) // cols)),
                         squeeze=False)
fits = []
for ax, m in zip(axes.flat, with_acts):
    t = table[table["model"] == m]
    x, y = t["sparsity"].to_numpy(), t["in_out_sim"].to_numpy()
    r = stats.pearsonr(x, y)
    slope, icept = np.polyfit(x, y, 1)
    top = x >= np.quantile(x, 1 - frequent_pct / 100)
    fits.append({"model": m, "pearson r": r.statistic, "p": r.pvalue, "slope": slope, "intercept": icept,
                 f"mean cos, {frequent_pct:g}% most frequent": y[top].mean(), "mean cos, rest": y[~top].mean(),
                 "min cos": y.min(), "max cos": y.max()})
    ax.hist2d(x, y, bins=int(min(bins, max(10, np.sqrt(len(x)) / 2))), cmap="viridis", norm="log")
    xs = np.linspace(x.min(), x.max(), 2)
    ax.plot(xs, slope * xs + icept, color="r", lw=1.5)
    ax.set(xlabel="activation frequency", ylabel="cos(w_in, w_out)", title=f"{m}: r = {r.statistic:.2f}")
for ax in axes.flat[len(with_acts):]:
    ax.axis("off")
show(fig)
fits = pd.DataFrame(fits).set_index("model")
display(fits.round(4))
ref_fit = fits.loc[ref_name]


def in_models(ok):
    """A verdict over the models from a boolean per model."""
    k = int(np.sum(ok))
    return "holds in every model" if k == len(ok) else f"holds in {k} of {len(ok)} models" if k else "does not hold"


glue("mys_r_ref", float(ref_fit["pearson r"]), display=False)
glue("mys_r_min", float(fits["pearson r"].min()), display=False)
glue("mys_r_max", float(fits["pearson r"].max()), display=False)
glue("mys_n_models", len(fits), display=False)
glue("mys_frequent_cos", float(fits[f"mean cos, {frequent_pct:g}% most frequent"].mean()), display=False)
glue("mys_rest_cos", float(fits["mean cos, rest"].mean()), display=False)
glue("mys_cos_min", float(fits["min cos"].min()), display=False)
glue("mys_cos_max", float(fits["max cos"].max()), display=False)
glue("mys_frequent_pct", frequent_pct, display=False)
glue("mys_verdict_r", in_models((fits["pearson r"] < 0) & (fits["p"] < 0.05)), display=False)
glue("mys_verdict_opposite", in_models(fits[f"mean cos, {frequent_pct:g}% most frequent"] < 0), display=False)

# %% [markdown]
# Pearson's r between activation frequency and $\cos(w_{in}, w_{out})$ is {glue:text}`mys_r_ref:.2f` in
# the reference and ranges from {glue:text}`mys_r_min:.2f` to {glue:text}`mys_r_max:.2f` over the
# {glue:text}`mys_n_models` models. The claim that more frequent neurons have more opposed input and
# output weights (a negative r, with p < 0.05) {glue:text}`mys_verdict_r`. The
# {glue:text}`mys_frequent_pct:g`% most frequent neurons have a mean cosine of
# {glue:text}`mys_frequent_cos:.3f` against {glue:text}`mys_rest_cos:.3f` for the rest, so the claim that
# very frequent neurons point $w_{in}$ and $w_{out}$ in opposite directions (a negative mean cosine)
# {glue:text}`mys_verdict_opposite`.
# The cosines span {glue:text}`mys_cos_min:.2f` to {glue:text}`mys_cos_max:.2f` (the paper: saturation near
# ±0.8).
#
# ## How unique are a neuron's weights? (paper figure 10)
#
# For each neuron, the largest cosine of its $w_{in}$ with the $w_{in}$ of any other neuron of the model
# (all layers), and the same for $w_{out}$. Top row: the reference, {glue:md}`mys_group_md`. Bottom
# row: every model of the profile, all neurons.

# %%
frame = P.neuron_frame(prof)
live = frame[~frame["is_dead"]].reset_index(drop=True)
thr, thr_name = U.resolve_threshold(threshold, prof)
group, label = P.universal_group(live, thr, top_pct, min_universal)
n_universal = int((live["excess_corr"] > thr).sum())
fig, axes = plt.subplots(2, 2, figsize=(10, 6.5))
edges = np.linspace(min(table["max_in_cos"].min(), table["max_out_cos"].min()), 1, 41)
rows = []
for j, col in enumerate(["max_in_cos", "max_out_cos"]):
    for sel, name, color in ((group, label, "C3"), (~group, "rest", "0.5")):
        axes[0, j].hist(live.loc[sel, col], bins=edges, density=True, histtype="stepfilled" if name == "rest" else "step",
                        color=color, lw=2, alpha=0.5 if name == "rest" else 1, label=f"{name} ({int(sel.sum())})")
        rows.append({"statistic": col, "group": name, "median": live.loc[sel, col].median(), "mean": live.loc[sel, col].mean()})
    axes[0, j].set(xlabel=col, ylabel="density", title=f"{ref_name}: {col}")
    axes[0, j].legend(fontsize=8)
    for m in models:
        axes[1, j].hist(table.loc[table["model"] == m, col], bins=edges, density=True, histtype="step", lw=1.5, label=m)
    axes[1, j].set(xlabel=col, ylabel="density", title=f"all models: {col}")
    axes[1, j].legend(fontsize=7)
show(fig)
uniq = pd.DataFrame(rows).set_index(["statistic", "group"])
display(uniq.round(4))
if label.startswith("universal"):
    group_md = f"its {int(group.sum()):,} universal neurons (excess correlation above {thr:.3g}) against the rest"
else:
    group_md = (f"its top {top_pct:g}% of neurons by excess correlation against the rest, since only {n_universal} "
                f"pass {thr_name}")
glue("mys_group_md", Markdown(group_md), display=False)
for col in ("max_in_cos", "max_out_cos"):
    glue(f"mys_{col}_group", float(uniq.loc[(col, label), "median"]), display=False)
    glue(f"mys_{col}_rest", float(uniq.loc[(col, "rest"), "median"]), display=False)
glue("mys_label_md", Markdown(label), display=False)

# %% [markdown]
# The median largest cosine of $w_{in}$ is {glue:text}`mys_max_in_cos_group:.3f` in the compared group
# ({glue:md}`mys_label_md`) and {glue:text}`mys_max_in_cos_rest:.3f` in the rest; of $w_{out}$,
# {glue:text}`mys_max_out_cos_group:.3f` against {glue:text}`mys_max_out_cos_rest:.3f`. A cosine near 1
# means the neuron nearly duplicates another neuron's weights. The paper lists this comparison among its
# unexplained observations; this chapter only reports it.

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
# Over the {glue:text}`mys_n_models` models of this profile, the claim that more frequent neurons have more
# opposed input and output weights: {glue:text}`mys_verdict_r` (Pearson's r from {glue:text}`mys_r_min:.2f` to
# {glue:text}`mys_r_max:.2f`, {numref}`fig-mysteries-frequency`); the claim that the most frequent neurons'
# input and output weights point in opposite directions: {glue:text}`mys_verdict_opposite`. The cosine
# between a neuron's input and output weights spans {glue:text}`mys_cos_min:.2f` to
# {glue:text}`mys_cos_max:.2f` (the paper: saturation near ±{glue:text}`mys_paper_saturation`).
#
# The paper's section 6 {cite:p}`gurnee2024universal` ends with observations it could not explain. Figure 9: a
# neuron's activation
# frequency against the cosine between its input and output weights, $\cos(w_{in}, w_{out})$: very
# frequent neurons have $w_{in}$ and $w_{out}$ pointing in nearly opposite directions, and the cosines
# saturate near ±{glue:text}`mys_paper_saturation`. Figure 10: for each neuron, the largest cosine of its
# $w_{in}$ (and of its $w_{out}$) with any other neuron of the model, universal neurons against the rest.
# Figure 11, the densities of the correlation, baseline and excess correlation, is in the universality
# chapter.
#
# Weights are the processed ones (LayerNorm folded, writing weights centred); the activation frequency
# is the share of held-out tokens with a positive pre-activation. Both are shown for every model of the
# profile; the universal comparison needs the universality table, so it is the reference's.

# %% tags=["parameters", "remove-cell"]
profile = "smoke"   # a profile name (universal_neurons/profiles/<name>.yaml)
device = "cpu"      # "cuda" on a GPU
overrides = ""      # space-separated settings, as in make book SET (book.*, analysis.*)

# %% tags=["remove-cell"]
from universal_neurons.book import publish
from universal_neurons.book.chapters import mysteries as chapter

# %% tags=["hide-input"]
ch = chapter.compute(profile, device=device, overrides=overrides)

# %% tags=["remove-cell"]
publish.glue_all(ch)
publish.figure(ch, "frequency", chapter.frequency_figure(ch))
publish.figure(ch, "uniqueness", chapter.uniqueness_figure(ch))

# %% [markdown]
# ## Activation frequency and the input-output cosine (paper figure 9)
#
# ```{glue:figure} fig-mysteries-frequency
# :name: fig-mysteries-frequency
#
# One panel per model: a 2-D histogram of the neurons (colour: how many neurons, on the log scale of the colour
# bar beside each panel) by activation frequency and $\cos(w_{in}, w_{out})$, with the least-squares line
# (orange) and Pearson's r. A falling line means that the more
# often a neuron fires, the more its output opposes its input direction.
# ```

# %% tags=["hide-input"]
ch.tables["fits"]

# %% [markdown]
# Pearson's r between activation frequency and $\cos(w_{in}, w_{out})$ is {glue:text}`mys_r_ref:.2f` in
# the reference and ranges from {glue:text}`mys_r_min:.2f` to {glue:text}`mys_r_max:.2f` over the
# {glue:text}`mys_n_models` models. The {glue:text}`mys_frequent_pct:g`% most frequent neurons have a mean
# cosine of {glue:text}`mys_frequent_cos:.3f` against {glue:text}`mys_rest_cos:.3f` for the rest. The cosines
# span {glue:text}`mys_cos_min:.2f` to {glue:text}`mys_cos_max:.2f` (the paper: saturation near
# ±{glue:text}`mys_paper_saturation`).
#
# How the two claims are judged. The noise band is *no relation*: in an untrained model $w_{in}$ and
# $w_{out}$ are drawn independently, so Pearson's r and the cosines centre on 0. Each model's r and the most
# frequent neurons' mean cosine get a {glue:text}`mys_boot_pct:g`% bootstrap interval (resampling the
# neurons), and a claim clears the noise only when the hull of the models' intervals lies below 0: r from
# {glue:text}`mys_r_lo:.3f` to {glue:text}`mys_r_hi:.3f`, the mean cosine from
# {glue:text}`mys_frequent_lo:.3f` to {glue:text}`mys_frequent_hi:.3f`. The paper prints no value of r,
# so the first claim can at most point the paper's *direction* ({glue:text}`mys_verdict_r` here). For the
# second, the magnitude is half-way to the paper's saturation: a mean cosine of at most
# {glue:text}`mys_half_way:.1f` ({glue:text}`mys_verdict_opposite` here).
#
# ## How unique are a neuron's weights? (paper figure 10)
#
# For each neuron, the largest cosine of its $w_{in}$ with the $w_{in}$ of any other neuron of the model
# (all layers), and the same for $w_{out}$. Top row: the reference, {glue:md}`mys_group_md`. Bottom
# row: every model of the profile, all neurons.
#
# ```{glue:figure} fig-mysteries-uniqueness
# :name: fig-mysteries-uniqueness
#
# Densities of each neuron's largest cosine with another neuron's $w_{in}$ (left) and $w_{out}$ (right): top,
# the reference's compared group (orange) against the rest (grey); bottom, every model. Mass near 1 means
# near-duplicate neurons.
# ```

# %% tags=["hide-input"]
ch.tables["uniqueness"]

# %% [markdown]
# The median largest cosine of $w_{in}$ is {glue:text}`mys_max_in_cos_group:.3f` in the compared group
# ({glue:md}`mys_label_md`) and {glue:text}`mys_max_in_cos_rest:.3f` in the rest; of $w_{out}$,
# {glue:text}`mys_max_out_cos_group:.3f` against {glue:text}`mys_max_out_cos_rest:.3f`. A cosine near 1
# means the neuron nearly duplicates another neuron's weights. The paper lists this comparison among its
# unexplained observations; this chapter only reports it.
#
# ## What holds here
#
# {glue:md}`mys_holds_md`

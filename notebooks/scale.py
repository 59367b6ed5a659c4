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
# # Scale: how universality changes with width, depth and training
#
# The paper finds {glue:text}`paper_share_small:.2f`% universal neurons in GPT2-small but
# {glue:text}`paper_share_medium:.2f`% in GPT2-medium, and names the dependence on model size as an open
# question: no larger seeds were available to its authors. Over the {glue:text}`n_done` finished points of
# this page's grid of small zoos: {glue:md}`trend_md`
#
# This chapter asks how the excess correlations of small zoos, far smaller than the paper's models, change
# with their width, depth and training, and where they stand against the paper's threshold of
# {glue:text}`paper_threshold`. A *sweep* trains one zoo per point of a grid of widths
# ($d_\mathrm{model}$, $d_\mathrm{mlp}$), depths and training budgets, all on the same corpus and tokenizer,
# and runs the universality analysis of the previous chapter on each: the reference seed against every other
# seed, and against an untrained model of the same shape (the noise floor). One zoo is also saved at several
# points during its training, to watch universality emerge.
#
# Every point is cached on its own (`python -m universal_neurons sweep --profile sweep`), so the sweep can
# grow point by point. This page shows whichever points have been run, and lists those that have not. It reads
# the sweep profile named by the setting `book.sweep` (the book's profile itself when that is a sweep).

# %% tags=["parameters", "remove-cell"]
profile = "smoke"  # a profile name (universal_neurons/profiles/<name>.yaml); the sweep is its book.sweep
device = "cpu"     # "cuda" on a GPU
overrides = ""     # settings, as in make book SET (e.g. book.run_missing, book.sweep_dir; space-separated)

# %% tags=["remove-cell"]
from universal_neurons.book import publish
from universal_neurons.book.chapters import scale as chapter

# %% tags=["hide-input"]
ch = chapter.compute(profile, device=device, overrides=overrides)

# %% tags=["remove-cell"]
publish.glue_all(ch)
for name in chapter.AXES:
    publish.figure(ch, name, chapter.axis_figure(ch, name))
publish.figure(ch, "snapshots", chapter.snapshot_figure(ch))

# %% [markdown]
# The grid has {glue:text}`n_points` points, of which {glue:text}`n_done` are finished.
# {glue:md}`missing_md` {glue:md}`res_source`

# %% tags=["hide-input"]
ch.tables["status"]

# %% [markdown]
# Each point's row `all` is the paper's statistic (the reference seed against all its partners: the
# partners' mean of the max correlation minus the mean baseline); the rows `p1`, `p2`, ... are the
# reference against one partner at a time, and give the seed-to-seed spread drawn as error bars below
# (from the lowest to the highest single-partner value). The row `control` is the reference against an
# untrained model of the same shape.
#
# ## A threshold that knows the scale
#
# The paper's threshold of {glue:text}`paper_threshold` was set for GPT-2 models, whose universal neurons have
# baselines near 0.2 (see below). In small dense models a random mixture of a layer's neurons already
# correlates strongly with a typical neuron (the median baselines below), which leaves little room above the
# baseline. Beside the paper's threshold we therefore report a *scale-aware* one: the 99.9th percentile of the
# excess correlation of the same reference neurons against the untrained control. A neuron above it
# correlates with a trained partner more than all but one in a thousand neurons correlate with an untrained one.
#
# {glue:md}`threshold_md`

# %% tags=["hide-input"]
ch.tables["finished"]

# %% [markdown]
# ## Against width, depth, training tokens and held-out loss
#
# Each figure below puts one axis on the horizontal: the MLP width $d_\mathrm{mlp}$, the number of layers,
# the training tokens per model, and the held-out loss (nats per token; lower is a better model). Panels: the
# share of neurons above the paper's threshold and above the control's 99.9th percentile; the 50th, 90th and
# 99th percentiles of the excess correlation; the median over neurons of the mean best-partner correlation
# and of the mean baseline. Points that differ only in the plotted axis are joined by lines; error bars run
# from the lowest to the highest single-partner value. The line style says which quantity a line is (the key
# under each panel); the colour and the marker fill (open or filled) say which fixed settings it has (the key
# under the figure). Large open black symbols mark the paper's three models where the axis applies (see the
# next section).
#
# ```{glue:figure} fig-scale-width
# :name: fig-scale-width
#
# Against the MLP width (log scale): shares above the thresholds, excess quantiles, and the median mean_corr
# and baseline; the other settings (depth, training tokens) by colour and marker fill.
# ```
#
# ```{glue:figure} fig-scale-depth
# :name: fig-scale-depth
#
# Against the number of layers; the other settings (width, training tokens) by colour and marker fill.
# ```
#
# ```{glue:figure} fig-scale-tokens
# :name: fig-scale-tokens
#
# Against the training tokens per model (log scale); the other settings (width, depth) by colour and marker
# fill. The paper's models sit far to the right.
# ```
#
# ```{glue:figure} fig-scale-loss
# :name: fig-scale-loss
#
# Against the held-out loss (nats per token, on this corpus), one colour per depth (lines join points of the
# same depth, whatever their width and training); the paper's models are left off, their losses being on
# another corpus and tokenizer.
# ```
#
# ## Where the paper's models sit
#
# The paper's shares of universal neurons (section 4.1 of {cite:t}`gurnee2024universal`) are
# {glue:text}`paper_share_small:.2f`% for
# GPT2-small-a, {glue:text}`paper_share_medium:.2f`% for GPT2-medium-a and {glue:text}`paper_share_pythia:.2f`%
# for Pythia-160m. Their widths and depths are exact; their training tokens are estimates that the paper does
# not state: the Stanford CRFM GPT-2 runs {cite:p}`stanfordcrfm2021mistral` took 400,000 steps of 512 sequences of
# 1,024 tokens (about
# {glue:text}`paper_tokens_gpt2_billions:.0f` billion tokens of OpenWebText {cite:p}`gokaslan2019openwebtext`), Pythia
# {cite:p}`biderman2023pythia` about
# {glue:text}`paper_tokens_pythia_billions:.0f` billion tokens of the Pile {cite:p}`gao2020pile`. Their held-out
# losses are on another
# corpus and tokenizer, so they are left off the loss axis. The paper publishes per-neuron tables only for its universal neurons, so its median
# mean_corr and baseline (open black and grey symbols in the right-hand panels) describe those neurons, not all neurons as ours do.
# {glue:md}`paper_md`

# %% tags=["hide-input"]
ch.tables["paper"]

# %% [markdown]
# ## The trend and its uncertainty
#
# A least-squares fit over the finished points' single-partner pairings of the 99th percentile of the
# excess correlation, and of the share of neurons above the control's 99.9th percentile, against
# $\log_2$ of the training tokens, of $d_\mathrm{mlp}$ and the number of layers (each only where the finished
# points have at least two values of it). The slopes are per doubling (per layer for depth), with
# standard errors from the fit's residuals; they are the ones stated at the top of this page. The pairings
# share a reference seed and so are not independent: read the standard errors as lower bounds.
#
# ## How the release zoo's recipe was chosen
#
# The default profile, which the other chapters analyse, is the release zoo: trained once and shipped in the
# repository (`zoo/release/`): `make book` checks its checksums and never trains it. Its recipe was chosen
# by measurement on 2-seed zoos of the same 2-layer, $d_\mathrm{model}$ = 128 model with a 4,096-entry BPE
# (`profiles/recipe.yaml`: reference seed 0 against seed 1 alone, so the tails are wider than a mean over
# several partners gives), one setting changed at a time. {glue:md}`recipe_md`

# %% tags=["hide-input"]
ch.tables["recipe"]

# %% [markdown]
# ## Where the book's zoos sit
#
# The default zoo (the shipped release zoo) and the small zoo (the former default, `PROFILE=small`) have
# more training tokens and more held-out tokens than the sweep's points, so they are shown beside them,
# not on their curves: their universality chapters use all their partners. {glue:md}`default_md`

# %% tags=["hide-input"]
ch.tables["zoos"]

# %% [markdown]
# ## During training
#
# One zoo of the sweep was also saved part of the way through its training (the same run, stopped at a
# checkpoint, exported and resumed, so the learning-rate schedule is the real one). The same statistics
# against the tokens seen so far, ending at the trained zoo; the held-out loss of a snapshot is the one
# logged during training, on a quarter of the held-out tokens of the final measurement.
# {glue:md}`snap_md`
#
# ```{glue:figure} fig-scale-snapshots
# :name: fig-scale-snapshots
#
# The snapshot zoo against the tokens seen so far (log scale): the same three panels as above, from the first
# saved snapshot to the trained zoo.
# ```

# %% tags=["hide-input"]
ch.tables["snapshots"]

# %% [markdown]
# ## A larger grid on a GPU
#
# `profiles/sweep-gpu.yaml` extends the grid to GPT2-small's width ($d_\mathrm{mlp}$ = 3,072), 12 layers
# and up to 26M training tokens, sized for one GPU (`python -m universal_neurons sweep --profile sweep-gpu
# --device cuda`, then rebuild the book). {glue:md}`gpu_md`

# %% tags=["hide-input"]
ch.tables["gpu"]

# %% [markdown]
# ## Reading the results
#
# The definitions are the paper's throughout: only the models differ. Held-out losses are on this
# corpus's held-out split, so they compare the sweep's points with each other, not with the paper's
# models. The error bars are the spread over single partners of one reference seed; swapping the
# reference would add another source of spread that this page does not measure.
#
# ## What holds here
#
# {glue:md}`scale_holds_md`

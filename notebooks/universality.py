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
# Of the reference model's {glue:text}`n_neurons:,` neurons, {glue:text}`n_universal:,`
# ({glue:text}`share_universal_pct:.2f`%) have an excess correlation above {glue:text}`threshold` with their
# best matches in {glue:text}`n_partners` models trained from other seeds. {glue:md}`verdict`
#
# The first question of {cite:t}`gurnee2024universal` (their section 4.1): does a neuron of one model have a twin,
# firing on the
# same tokens, in models trained from other seeds? For every neuron $i$ of the reference model and
# every partner model $m$, we correlate $i$'s post-activation (`blocks.{l}.mlp.hook_post`) over
# held-out tokens with every neuron of $m$, in all layers, and keep the largest (signed) Pearson
# correlation, `max_corr`, as {cite:t}`li2016convergent` did for vision networks and {cite:t}`bau2019identifying` for
# translation models. As a baseline, the same maximum is taken against the partner's neurons
# after a fixed random "rotation" $u = R v$ of each layer ($R$ has $N(0,1)$ entries and unit-norm rows):
# a random mixture of a layer's neurons says how much correlation comes for free. Averaging over the
# partners,
#
# $$\mathrm{excess\_corr}(i) = \mathrm{mean}_m\, \mathrm{max\_corr}_m(i) - \mathrm{mean}_m\, \mathrm{baseline}_m(i),$$
#
# and a neuron is *universal* when its excess correlation exceeds {glue:text}`paper_threshold` (the paper
# finds {glue:md}`paper_shares_md`). Beginning-of-text tokens and every whitespace-only token that holds a newline are
# left out; the paper's code leaves out only the newline token itself (the robustness chapter's errata measures what
# that changes). All
# correlations of all partners are accumulated in one pass over the tokens (float64 sufficient statistics).
# The baseline needs no rotated activations: since $\mathrm{cov}(x, Rv) = \mathrm{cov}(x, v)\,R^\top$ and
# $\mathrm{var}(Rv)_j = R_j \Sigma_{vv} R_j^\top$, it follows exactly from the same co-moments plus each
# partner layer's own, for about half the work.

# %% tags=["parameters", "remove-cell"]
profile = "smoke"  # a profile name (universal_neurons/profiles/<name>.yaml)
device = "cpu"  # "cuda" on a GPU
overrides = ""  # settings, as in make book SET: space-separated section.key assignments

# %% tags=["remove-cell"]
from universal_neurons.book import publish
from universal_neurons.book.chapters import universality as chapter

# %% tags=["hide-input"]
# The reference against every partner (and, for a zoo, against an untrained model of the same configuration),
# in one pass over the held-out tokens; a rerun with the same settings reuses the saved maxima.
ch = chapter.compute(profile, device=device, overrides=overrides)

# %% tags=["remove-cell"]
publish.glue_all(ch)
publish.figure(ch, "per-layer", chapter.per_layer_figure(ch))
publish.figure(ch, "densities", chapter.densities_figure(ch))
publish.figure(ch, "partner-agreement", chapter.partner_agreement_figure(ch))
publish.figure(ch, "layer-similarity", chapter.layer_similarity_figure(ch))
publish.figure(ch, "paper-distributions", chapter.paper_distributions_figure(ch))
publish.figure(ch, "convergence", chapter.convergence_figure(ch))

# %% [markdown]
# ## The headline number
#
# The reference has {glue:text}`n_neurons:,` neurons, compared with {glue:text}`n_partners` partner
# models over {glue:text}`n_tokens:,` held-out tokens. The median neuron has a mean best-partner
# correlation of {glue:text}`mean_corr_median:.3f` against a mean baseline of
# {glue:text}`mean_baseline_median:.3f`; its excess correlation is {glue:text}`excess_q50:.3f` (90th
# percentile {glue:text}`excess_q90:.3f`, 99th {glue:text}`excess_q99:.3f`, largest
# {glue:text}`excess_max:.3f`). Above lower thresholds:
# {glue:text}`share_above_04_pct:.2f`% of the neurons exceed 0.4 and {glue:text}`share_above_03_pct:.2f`%
# exceed 0.3. {glue:md}`n_dead_md` dead (zero variance on these tokens): their correlations
# are undefined, so they get no excess correlation and count as not universal, and dead partner neurons
# never count as anyone's best match.
#
# ## Universal neurons per layer
#
# ```{glue:figure} fig-universality-per-layer
# :name: fig-universality-per-layer
#
# The share of each reference layer's neurons whose excess correlation exceeds 0.3, 0.4 and the chapter's
# threshold, against relative depth, beside the paper's universal neurons per layer (dashed). The table
# below gives the counts.
# ```
#
# Layer 0 holds {glue:text}`layer0_n:,` of the universal neurons ({glue:text}`layer0_share_pct:.2f`% of its
# {glue:text}`layer0_neurons:,` neurons), {glue:text}`layer0_ratio:.2f` times the model's share. The paper's claim,
# judged: **{glue:text}`verdict_layers`** (rule: {glue:text}`rule_layers`).

# %% tags=["hide-input"]
ch.tables["per_layer"]

# %% [markdown]
# ## Distributions of correlation, baseline and excess (paper figures 2a and 11)
#
# ```{glue:figure} fig-universality-densities
# :name: fig-universality-densities
#
# Densities over all live reference neurons. Left: the best-partner correlation and what a random mixture
# of a partner layer's neurons achieves (the baseline); right: the gap between the two, the excess
# correlation, with the threshold (dotted). The grey curve, where shown, is the excess correlation against
# an untrained model of the same configuration: the noise floor of the method on these tokens.
# ```
#
# {glue:md}`control_md`
#
# ## Do the partners agree? (paper figure 2b)
#
# ```{glue:figure} fig-universality-partner-agreement
# :name: fig-universality-partner-agreement
#
# For each neuron, the largest against the smallest over the partners of its best-match correlation. A
# neuron close to the diagonal has an equally good twin in every partner.
# ```
#
# The paper reports a mean gap (max − min) of {glue:text}`paper_gap_all:.3f` over all neurons and
# {glue:text}`paper_gap_universal:.3f` over universal ones. Here the mean gap is {glue:text}`gap_all:.3f`
# over all neurons, {glue:text}`gap_top:.3f` over the top 1% by excess correlation, and
# {glue:md}`gap_universal_md` over universal neurons.
#
# ## Where is the best match? (paper figure 2c)
#
# ```{glue:figure} fig-universality-layer-similarity
# :name: fig-universality-layer-similarity
#
# Left: for each reference layer and partner layer, the mean over reference neurons and partners of the
# best correlation found within that partner layer. Right: the share of best matches (`max_sim_layer`)
# that fall in each partner layer.
# ```
#
# On average {glue:text}`same_layer_pct:.1f`% of a reference layer's neurons find their best partner in
# the same layer of the partner model.
#
# ## The most universal neurons here
#
# The neurons with the largest excess correlation, with their best match in each partner.

# %% tags=["hide-input"]
publish.table(ch, "top_neurons")

# %% [markdown]
# ## Our numbers beside the paper's
#
# The paper's values come from its text and from the neuron tables its repository publishes
# (`universal.csv`, MIT licence). Note the difference in scale: GPT-2 small was trained on about
# {glue:text}`paper_gpt2_tokens_billions:.0f` billion tokens (400,000 steps of 512 sequences of 1,024 tokens),
# while {glue:md}`trained_tokens_md`.

# %% tags=["hide-input"]
ch.tables["paper_comparison"]

# %% [markdown]
# Below, the distributions of the paper's universal neurons (from its published tables) beside ours: our
# {glue:md}`paper_md`
#
# ```{glue:figure} fig-universality-paper-distributions
# :name: fig-universality-paper-distributions
#
# Histograms (densities) of the excess correlation, the mean best-partner correlation and the mean
# baseline: the paper's universal neurons of each model (lines) and ours (grey).
# ```
#
# ## How many tokens are enough?
#
# ```{glue:figure} fig-universality-convergence
# :name: fig-universality-convergence
#
# The same statistics computed from the accumulators after 1/16, 1/8, 1/4, 1/2 and all of the tokens, in
# the same pass. Left: the share of neurons above each threshold; right: quantiles of the excess
# correlation.
# ```
#
# With {glue:text}`conv_first_tokens:,` tokens the 99th percentile of the excess correlation is
# {glue:text}`conv_q99_first:.3f`; with all {glue:text}`n_tokens:,` it is {glue:text}`conv_q99_last:.3f`.
# A small sample makes chance correlations larger, for the real partners and the baseline alike; where
# the curves have flattened, more tokens would not change the conclusion.

# %% tags=["hide-input"]
ch.tables["convergence"]

# %% [markdown]
# ## The run
#
# What was compared, on how many tokens, and where.

# %% tags=["hide-input"]
ch.tables["run"]

# %% [markdown]
# ## What holds here
#
# {glue:md}`uni_holds_md`

# %% [markdown] exercise="pearson" tags=["remove-cell"]
# ### Exercise: the streaming Pearson update
#
# The universality pass correlates every neuron of the reference with every neuron of each partner over hundreds of
# thousands of tokens, which never fit in memory at once. Write `streaming_pearson(batches)`: it receives an
# iterable of batches `(a, b)`, arrays of shape `[tokens, n_a]` and `[tokens, n_b]` (the same tokens of the two
# models), and returns the `[n_a, n_b]` Pearson correlation over all tokens, keeping only sums between batches.

# %% exercise="pearson" solution=true tags=["remove-cell"]
import numpy as np


def streaming_pearson(batches):
    """Pearson correlation [n_a, n_b] of a's neurons with b's over all batches (a [t, n_a], b [t, n_b])."""
    n = 0
    for a, b in batches:
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        if n == 0:
            sa, sb = np.zeros(a.shape[1]), np.zeros(b.shape[1])
            qa, qb, ab = np.zeros(a.shape[1]), np.zeros(b.shape[1]), np.zeros((a.shape[1], b.shape[1]))
        n += len(a)
        sa += a.sum(0)
        sb += b.sum(0)
        qa += (a * a).sum(0)
        qb += (b * b).sum(0)
        ab += a.T @ b
    cov = ab - np.outer(sa, sb) / n  # n times the covariance: Σab − Σa Σb / n
    return cov / np.sqrt(np.outer(qa - sa**2 / n, qb - sb**2 / n))


# %% exercise="pearson" tags=["remove-cell"]
from universal_neurons.teaching import exercises

exercises.check("pearson", streaming_pearson)

# %% [markdown] exercise="excess" tags=["remove-cell"]
# ### Exercise: the excess correlation over the baseline
#
# A neuron is universal when its best match in the other seeds correlates with it far more than a random direction
# of those seeds' activations would. Write `excess_correlation(corr, baseline)`: `corr` is a list, one per partner
# seed, of `[n_a, n_b]` correlation matrices with the partner's neurons, and `baseline` the same with the partner's
# rotated neurons. Return, per reference neuron, the mean over partners of its signed maximum correlation minus the
# mean over partners of the baseline's.

# %% exercise="excess" solution=true tags=["remove-cell"]
import numpy as np


def excess_correlation(corr, baseline):
    """[n_a] mean over partners of the signed max correlation, minus the same for the rotated baseline."""
    best = np.mean([np.max(c, axis=1) for c in corr], axis=0)
    base = np.mean([np.max(c, axis=1) for c in baseline], axis=0)
    return best - base


# %% exercise="excess" tags=["remove-cell"]
exercises.check("excess", excess_correlation)

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
# In this run, the compared group ({glue:md}`prop_label_md`, {glue:text}`prop_n_group:,` neurons) is set
# against the rest of the reference's {glue:text}`prop_n_neurons:,` live neurons. Of the paper's
# {glue:text}`prop_n_claims` claims about universal neurons: {glue:text}`prop_summary`
# ({numref}`fig-properties-percentiles` and the table below it). {glue:md}`prop_group_md`
#
# The paper's section 4.2 {cite:p}`gurnee2024universal` (figures 3 and 14) asks what sets universal neurons apart from
# the others, using
# statistics that need no interpretation of the neuron. On the processed weights (LayerNorm folded,
# writing weights and unembedding centred, as TransformerLens {cite:p}`nanda2022transformerlens` loads them): the
# input and output weight
# norms `w_in_norm` and `w_out_norm`, the input bias `input_bias`, the cosine `in_out_sim` between $w_{in}$
# and $w_{out}$, and the weight decay penalty `l2_penalty` $= \|w_{in}\|^2 + \|w_{out}\|^2$. On the
# vocabulary: the moments of $c_v = \cos(w_{out}, W_U[:, v])$ over the tokens $v$. On held-out tokens: the
# mean, variance, skew and kurtosis of the pre-activation (`blocks.{l}.mlp.hook_pre`) and its activation
# frequency `sparsity`, the share of tokens with a positive pre-activation. Kurtosis is not excess
# kurtosis: a Gaussian has 3. The activation moments are exact (float64 power sums in one streaming pass
# over the same tokens as the correlations, beginning-of-text and newline tokens left out); here they use
# {glue:text}`prop_n_tokens:,` held-out tokens.
#
# The paper's claim: universal neurons have large weight norms, a large negative input bias, a negative
# pre-activation mean, a low activation frequency, and a high skew and kurtosis, the signature of sparse,
# monosemantic-looking neurons. Since layers differ, each statistic is shown as a percentile within the
# neuron's layer.

# %% tags=["parameters", "remove-cell"]
profile = "smoke"   # a profile name (universal_neurons/profiles/<name>.yaml)
device = "cpu"      # "cuda" on a GPU
overrides = ""      # space-separated settings, as in make book SET (book.*, analysis.*)

# %% tags=["remove-cell"]
from universal_neurons.book import publish
from universal_neurons.book.chapters import properties as chapter

# %% tags=["hide-input"]
ch = chapter.compute(profile, device=device, overrides=overrides)

# %% tags=["remove-cell"]
publish.glue_all(ch)
publish.figure(ch, "percentiles", chapter.percentiles_figure(ch))
publish.figure(ch, "layers", chapter.layers_figure(ch))
publish.figure(ch, "histograms", chapter.histograms_figure(ch))

# %% [markdown]
# ## Percentiles within the layer (paper figures 3 and 14)
#
# Each neuron's statistic as a percentile among the neurons of its layer: 50 is the layer's median. A
# group with nothing special would spread evenly from 0 to 100 (so nearly does the rest, in grey, which is
# most of each layer).
#
# ```{glue:figure} fig-properties-percentiles
# :name: fig-properties-percentiles
#
# Each statistic of the reference's neurons as a percentile within its layer, the compared group (orange)
# against the rest (grey). A statistic the group does not single out would sit around the dotted 50.
# ```
#
# ## The paper's claims, judged
#
# The paper's claims are about universal neurons, so they are judged only when at least `book.min_universal`
# neurons pass the threshold; on the top-percent stand-ins each is *not testable here*, and the numbers below
# are the book's secondary view. Each claim is judged on two numbers:
#
# - **noise**: a one-sided Mann-Whitney test of the group's within-layer percentiles against the rest's, its
#   p-value Holm-adjusted over the six claims (they share one question: is the group different?), below 0.05;
#   beside it the effect size, the probability that a group neuron lies on the claimed side of a neuron of the
#   rest (0.5 when the group is not different), and the group's median percentile;
# - **magnitude**: the gap between the group's and the rest's means, made scale-free, at least
#   {glue:text}`prop_paper_share` times the paper's smallest gap over its three models (section 4.2's table of
#   means). For the statistics with a scale of their own (weight penalty, input bias, activation frequency) the
#   gap is relative, (U − non-U) / |non-U|; for the dimensionless skew and kurtosis it is the difference U − non-U.
#   The paper prints no mean pre-activation, so that claim can at most point the paper's *direction*.
#
# A claim *holds* when both are met, points the paper's *direction only* when the test clears the noise and the
# gap lies on the claimed side but short of the magnitude, and *does not hold* otherwise. The rule of each claim,
# with its numbers, is in the closing section.

# %% tags=["hide-input"]
ch.tables["verdicts"]

# %% [markdown]
# Claim by claim:
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
# model's width and training, which is why the rule above compares scale-free gaps.

# %% tags=["hide-input"]
ch.tables["means"]

# %% [markdown]
# For comparison with the paper's U column, the means over the neurons of its published tables of
# universal neurons (`universal.csv` of each model):

# %% tags=["hide-input"]
ch.tables["published_means"]

# %% [markdown]
# ## Per-layer distributions
#
# The raw statistics per layer, the compared group against the rest: the within-layer percentiles above
# hide how the layers themselves differ.
#
# ```{glue:figure} fig-properties-layers
# :name: fig-properties-layers
#
# Box plots per layer of the raw statistics (outliers not drawn), the compared group (orange) against the
# rest (grey). The panels have their own scales.
# ```
#
# ## Pre-activation histograms
#
# The stored per-neuron histograms of the pre-activation (equal bins over the range of the first batch,
# widened by half that range on each side; the few tokens outside fall in under- and overflow bins, not
# drawn): the four neurons with the largest excess correlation, and four neurons from the middle of the
# excess distribution. Sparse, heavy-tailed neurons sit mostly below zero with a long right tail.
#
# ```{glue:figure} fig-properties-histograms
# :name: fig-properties-histograms
#
# Pre-activation distributions on held-out tokens: top row, the four neurons with the largest excess
# correlation (orange); bottom row, four neurons from the middle of the excess distribution (blue). The
# dotted line is zero: the share of mass right of it is the activation frequency.
# ```
#
# ## What holds here
#
# {glue:md}`prop_holds_md`

# %% [markdown] exercise="ln_fold" tags=["remove-cell"]
# ### Exercise: a weight statistic with the LayerNorm folded in
#
# A neuron reads the residual stream through the LayerNorm before its MLP: `x̂ = (x − mean x) / σ · w + b`. Its
# input weights `W_in[:, i]` are only comparable between neurons, layers and seeds once the LayerNorm's scale `w` is
# folded into them (and the component along the all-ones direction removed, since `x̂ − b` has mean 0), as
# TransformerLens does when it loads a model with `fold_ln=True`. Write `folded_w_in_norm(ln_w, w_in)`: given the
# LayerNorm weight `ln_w` `[d_model]` and the layer's `w_in` `[d_model, d_mlp]` as stored, return each neuron's
# input weight norm `[d_mlp]` after folding.

# %% exercise="ln_fold" solution=true tags=["remove-cell"]
def folded_w_in_norm(ln_w, w_in):
    """[d_mlp] norm of each neuron's input weights with the LayerNorm weight folded in and centred."""
    folded = ln_w[:, None].double() * w_in.double()  # scale row d by w[d]
    folded = folded - folded.mean(dim=0, keepdim=True)  # remove the all-ones direction
    return folded.norm(dim=0)


# %% exercise="ln_fold" tags=["remove-cell"]
from universal_neurons.teaching import exercises

exercises.check("ln_fold", folded_w_in_norm)

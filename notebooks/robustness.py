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
# # How robust is "universal"?
#
# With the paper's rule and one draw of its baseline, {glue:text}`rob_share:.2f`% of the reference's neurons are
# universal (excess correlation above {glue:text}`rob_threshold`) over {glue:text}`rob_n_tokens:,` held-out tokens
# and {glue:text}`rob_n_partners` partner seeds. Over {glue:text}`rob_draws` draws of the random rotations the
# share ranges from {glue:text}`rob_draw_min:.2f`% to {glue:text}`rob_draw_max:.2f`%, and a block bootstrap over
# {glue:text}`rob_blocks` contiguous blocks of held-out rows ({glue:text}`rob_boot_draws` draws) puts it between
# {glue:text}`rob_boot_low:.2f`% and {glue:text}`rob_boot_high:.2f`% (95%). {glue:text}`rob_n_always` of the
# {glue:text}`rob_n_universal` universal neurons stay universal under every null model below. The paper's claim that
# a few percent of neurons are universal, judged: **{glue:text}`rob_verdict_share`** (rule: {glue:text}`rob_rule_share`).
#
# ```{glue:figure} fig-robustness-draws
# :name: fig-robustness-draws
#
# Left: the universal share under each draw of the paper's baseline (a fresh row-normalised Gaussian matrix per
# partner layer). Right: the share over bootstrap resamples of blocks of held-out rows (the real correlations
# recomputed from the resampled blocks, the baseline kept at its full-data value); dashed: the 95% interval.
# ```
#
# The paper decides universality once: one random draw of its baseline per partner layer, the signed maximum
# correlation as the matching rule, a mean over its partners, one token budget. This page varies each choice on the
# same activations, all computed from one pass that keeps the full co-moments of the reference with each partner
# (so every baseline and rule is exact, with no second pass): several draws of the paper's baseline, an exactly
# orthogonal rotation, and a permutation baseline (the partner's activations shifted by
# {glue:text}`rob_shift_rows` rows, which breaks the token alignment while keeping each neuron's distribution);
# the signed maximum, the maximum of $|r|$, the worst partner (MinCorr) and one-to-one Hungarian matching per layer
# pair; and, as a fourth null, the untrained control (the reference's best correlation with a randomly initialised
# model of the same shape), against which {glue:text}`rob_control_share:.2f`% pass. The last sections follow the
# universal neurons over training, and measure what the reference code's own choices and bugs change.

# %% tags=["parameters", "remove-cell"]
profile = "smoke"   # a profile name (universal_neurons/profiles/<name>.yaml)
device = "cpu"      # "cuda" on a GPU
overrides = ""      # space-separated settings, as in make book SET (book.*, analysis.*)

# %% tags=["remove-cell"]
from universal_neurons.book import publish
from universal_neurons.book.chapters import robustness as chapter

# %% tags=["hide-input"]
ch = chapter.compute(profile, device=device, overrides=overrides)

# %% tags=["remove-cell"]
publish.glue_all(ch)
publish.figure(ch, "draws", chapter.draws_figure(ch))
publish.figure(ch, "partners", chapter.partners_figure(ch))
publish.figure(ch, "similarity", chapter.similarity_figure(ch))
publish.figure(ch, "emergence", chapter.emergence_figure(ch))
publish.figure(ch, "emergence-neurons", chapter.emergence_neurons_figure(ch))

# %% [markdown]
# ## The share under each null model and matching rule
#
# The 95% interval is a block bootstrap over {glue:text}`rob_blocks` contiguous blocks of held-out rows: the
# matching statistic recomputed from the resampled blocks, the baseline kept at its full-data value
# ({glue:text}`rob_boot_draws` draws; {glue:text}`rob_boot_hungarian` for Hungarian matching, which solves one
# assignment per layer pair and draw). The last column is the share recomputed with each partner left out in turn.

# %% tags=["hide-input"]
ch.tables["shares"]

# %% [markdown]
# ## How many seeds and tokens are enough
#
# ```{glue:figure} fig-robustness-partners
# :name: fig-robustness-partners
#
# Left: the universal share using k of the partner seeds, for k = 1, 2, ...: the mean over every subset of k
# partners, with the band from the smallest to the largest. Right: the share from the first held-out tokens only
# (the first blocks of rows; the baseline kept at its value on all tokens).
# ```

# %% tags=["hide-input"]
ch.tables["partners"]

# %% tags=["hide-input"]
ch.tables["tokens"]

# %% [markdown]
# ## Layers can match while neurons do not
#
# ```{glue:figure} fig-robustness-similarity
# :name: fig-robustness-similarity
#
# Layer-level similarity of the reference's layers with each partner's: linear CKA (top) and SVCCA (bottom, the
# mean canonical correlation of the directions explaining 99% of each layer's variance). Both are unchanged by a
# rotation of a layer's neurons, unlike the neuron-level correlations behind the universal share: two layers can
# represent the same thing in different bases.
# ```

# %% [markdown]
# ## Emergence over training
#
# {glue:md}`rob_emerge_md`
#
# ```{glue:figure} fig-robustness-emergence
# :name: fig-robustness-emergence
#
# Against training tokens (a log scale; step 0, the initialisation, at the left): left, the universal
# share of the reference against its partners at the same step, with the reference's held-out loss; middle, the
# median, 99th percentile and largest excess correlation, with the threshold; right, the universal neurons of each
# layer.
# ```
#
# ```{glue:figure} fig-robustness-emergence-neurons
# :name: fig-robustness-emergence-neurons
#
# Left: the excess correlation over training of every neuron universal at the last step (blue), and the median
# neuron's (dashed). Right: how many of them were already universal at each step, and how many were among the top 5%
# of neurons by excess (the grey line is their number at the end).
# ```

# %% tags=["hide-input"]
ch.tables.get("emergence", "no emergence results for this profile")

# %% [markdown]
# ## Errata: what the reference code's choices change
#
# The reference implementation (wesg52/universal-neurons) stores activations in float16, sums each batch in float16
# and uses the one-pass formula for the correlation, which it rounds to float16; it sets NaN correlations to 0; it
# draws its baseline's matrices once, unseeded, as row-normalised Gaussians (not rotations) rounded to float16; and it
# drops only the newline token itself from the correlations, where this book drops every whitespace-only token that
# holds a newline (here {glue:text}`rob_newline_kept:,` more positions are kept the reference's way: tokens such as
# two newlines, or a newline and a tab). Each row applies one of these to the same rows of held-out tokens (the
# float16 arithmetic through a port of its accumulator, `universal_neurons.measures.reference_port`; the newline filter by
# adding the co-moments of the extra positions), and the last applies the three arithmetic choices together. The
# float16 arithmetic changes {glue:text}`rob_fp16_flips` verdicts here (the largest change of a neuron's excess is
# {glue:text}`rob_fp16_change:.4f`); the newline filter changes {glue:text}`rob_newline_flips` (a share of
# {glue:text}`rob_newline_share:.2f`%); the arithmetic choices together give {glue:text}`rob_port_share:.2f`%
# universal against our {glue:text}`rob_share:.2f`%. The draw's row gives the range over the {glue:text}`rob_draws`
# seeded draws.

# %% tags=["hide-input"]
ch.tables["errata"]

# %% [markdown]
# Where the book departs from the reference code outside the universal share, each choice is shown beside the
# reference's on the page where it matters:
#
# | what | the reference code | this book | where both are shown |
# |---|---|---|---|
# | tokens left out of every pass | BOS/pad and the newline token | BOS/pad and every whitespace-only token holding a newline | the table above (the newline row) |
# | the entropy neuron "by its weights" | weight-decay penalty in the top 10%, vocabulary kurtosis at most 10, then the smallest vocabulary variance | the output norm over the square root of the vocabulary variance | the entropy chapter, "The reference code's way" |
# | alphabet neurons | a token that is exactly one letter (with or without a leading space) | the same (the paper's rule uses it); the book's "starts with the letter" beside it | the families chapter, "Unigram and alphabet neurons" |
# | a dead neuron's excess | NaN correlations set to 0, NaN baselines kept | left out of both sides, and of the share | the table above |

# %% [markdown]
# ## What holds here
#
# {glue:md}`rob_holds_md`

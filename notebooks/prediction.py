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
# # Prediction, suppression and partition neurons
#
# In the reference model {glue:md}`pred_prediction_md`, {glue:md}`pred_suppression_md` and
# {glue:md}`pred_partition_md` by the paper's rules; the largest vocabulary kurtosis of any neuron is {glue:text}`pred_kurt_max:.1f` (a Gaussian
# has kurtosis 3). The paper's two claims about where these neurons sit, judged on the neurons that pass its
# rules in all {glue:text}`pred_n_models` models: *prediction neurons appear after mid-depth*,
# {glue:text}`pred_verdict_late`; *suppression neurons dominate the last layers*, {glue:text}`pred_verdict_supp`
# (the rules, with their numbers, are in the closing section).
#
# The paper's section 5.1 {cite:p}`gurnee2024universal` (figures 5, 6 and 22-24) reads a neuron's direct effect on the
# next-token
# logits from its weights alone: the composition of its output weight with the unembedding,
# $c_v = \cos(w_{out}, W_U[:, v])$ for every token $v$ (processed weights: LayerNorm folded, unembedding
# centred). A neuron whose $c_v$ has a heavy right tail (high kurtosis, positive skew) raises the logits of
# a few tokens: a *prediction* neuron. A heavy left tail (high kurtosis, negative skew) lowers them: a
# *suppression* neuron. A large variance splits the vocabulary into two halves, one raised and one
# lowered: a *partition* neuron. The paper's rules: prediction = `vocab_kurt` > {glue:text}`pred_paper_kurt`
# and `vocab_skew` > 0, suppression = `vocab_kurt` > {glue:text}`pred_paper_kurt` and `vocab_skew` < 0,
# partition = `vocab_var` > {glue:text}`pred_paper_var`. Its claims: prediction neurons appear after
# mid-depth, and suppression neurons dominate the last layers.

# %% tags=["parameters", "remove-cell"]
profile = "smoke"   # a profile name (universal_neurons/profiles/<name>.yaml)
device = "cpu"      # "cuda" on a GPU
overrides = ""      # space-separated settings, as in make book SET (book.*, analysis.*)

# %% tags=["remove-cell"]
from universal_neurons.book import publish
from universal_neurons.book.chapters import prediction as chapter

# %% tags=["hide-input"]
ch = chapter.compute(profile, device=device, overrides=overrides)

# %% tags=["remove-cell"]
publish.glue_all(ch)
publish.figure(ch, "examples", chapter.examples_figure(ch))
publish.figure(ch, "percentiles", chapter.percentiles_figure(ch))
publish.figure(ch, "skew", chapter.skew_figure(ch))
publish.figure(ch, "classes", chapter.classes_figure(ch))

# %% [markdown]
# Over all {glue:text}`pred_n_models` models of the profile, {glue:md}`pred_all_prediction_md`
# the prediction rule, {glue:text}`pred_all_suppression` the suppression rule and
# {glue:text}`pred_all_partition` the partition rule.
#
# Two cautions about scale. For a random direction in $d$ dimensions the cosines have variance about
# $1/d$: here $d_{model}$ = {glue:text}`pred_d_model`, so {glue:text}`pred_random_var:.4f`, while the
# paper's {glue:text}`pred_paper_var` was set for GPT2-medium ($d_{model}$ = {glue:text}`pred_paper_d_model`,
# $1/d_{model}$ = {glue:text}`pred_paper_random_var:.3f`). We therefore also count partition neurons above
# the same multiple of $1/d_{model}$, {glue:text}`pred_scaled_var:.4f` ({glue:text}`pred_n_partition_scaled`
# neurons in the reference). And the kurtosis of $c_v$ depends on how many tokens a neuron singles out
# compared with the vocabulary size, so the threshold of {glue:text}`pred_paper_kurt`, set on GPT-2's
# vocabulary, need not single out the same kind of neuron in a smaller one; the book keeps the paper's rule.
#
# ## The strongest examples (paper figure 5)
#
# The distribution of $c_v$ over the vocabulary for the reference's neuron with the largest kurtosis and
# positive skew (the strongest prediction candidate), the largest kurtosis and negative skew (suppression)
# and the largest variance (partition), with the tokens at both tails.
#
# ```{glue:figure} fig-prediction-examples
# :name: fig-prediction-examples
#
# The cosines $c_v$ of each example neuron's output weight with every token's unembedding (log counts). A
# prediction neuron has a long right tail, a suppression neuron a long left tail, a partition neuron a
# wide spread.
# ```

# %% tags=["hide-input"]
ch.tables["tails"]

# %% [markdown]
# {glue:md}`pred_examples_md` The paper's examples in GPT2-medium-a: {glue:md}`pred_paper_prediction_md`
# predicts years, {glue:md}`pred_paper_suppression_md` suppresses the open parenthesis,
# {glue:md}`pred_paper_partition_md` partitions tokens by whether they start with a space.
#
# ## Percentiles by layer (paper figure 6)
#
# Per layer, the 5th, 10th, 50th, 90th and 95th percentiles of `vocab_kurt` and `vocab_skew` over the
# layer's neurons: the line is the mean over the models of the profile, the band their minimum to maximum.
# This is the book's secondary view: a description of the layers' tails, which judges no claim.
#
# ```{glue:figure} fig-prediction-percentiles
# :name: fig-prediction-percentiles
#
# Per layer, percentiles of the vocabulary kurtosis (left, log scale, with the rule's threshold dotted) and
# skew (right): the mean over the models, with their range shaded. A Gaussian has kurtosis 3: upper
# percentiles far above 3 mark heavy tails; a lower skew curve further below zero than the upper one is above
# it marks more suppression-like than prediction-like tails.
# ```
#
# {glue:md}`pred_curves_md`
#
# ## The paper's claims, judged on its own rules
#
# The paper counts prediction neurons (`vocab_kurt` > {glue:text}`pred_paper_kurt`, `vocab_skew` > 0) and
# suppression neurons (`vocab_kurt` > {glue:text}`pred_paper_kurt`, `vocab_skew` < 0) and finds most of them
# in the last layers. The book judges the two claims on the neurons that pass these rules, over all models:
#
# - *prediction neurons appear after mid-depth*: the share of the prediction neurons in the second half of
#   the layers ({glue:text}`pred_n_pred_late` of {glue:text}`pred_n_pred`), against the share of all neurons
#   there ({glue:text}`pred_null_late:.2f`), the null;
# - *suppression neurons dominate the last layers*: the share of suppression among the last layer's neurons
#   with `vocab_kurt` > {glue:text}`pred_paper_kurt` ({glue:text}`pred_n_last_supp` of
#   {glue:text}`pred_n_last_high`), against one half.
#
# The noise band is the null's binomial spread: a share must lie above the 95th percentile of the share under
# the null. The magnitude comes from the paper's published tables of universal neurons (the paper prints no
# share): the lift of each share above its null, (share − null) / (1 − null), in each of its three models
# (the table below); a claim holds at half the smallest of the three. With fewer than
# {glue:text}`pred_min_role` neurons to count, a claim is *not testable here*.

# %% tags=["hide-input"]
ch.tables["paper_shares"]

# %% tags=["hide-input"]
ch.tables["roles"]

# %% [markdown]
# Here, *prediction neurons appear after mid-depth*: {glue:text}`pred_verdict_late`; *suppression neurons
# dominate the last layers*: {glue:text}`pred_verdict_supp`.
#
# ## Skew of the high-kurtosis neurons in the last layers (paper figures 22-24)
#
# ```{glue:figure} fig-prediction-skew
# :name: fig-prediction-skew
#
# The vocabulary skew of the high-kurtosis neurons of the second half of the layers, one line per model:
# mass left of zero is suppression-like, right of it prediction-like.
# ```
#
# {glue:md}`pred_high_md` Of these, {glue:text}`pred_high_neg_pct:.0f`% have negative skew
# (suppression-like).
#
# ## Counts by layer
#
# Neurons per layer passing each rule, as the mean over the models with the minimum and maximum in
# brackets; `partition_scaled` uses the width-adjusted variance threshold.

# %% tags=["hide-input"]
ch.tables["counts"]

# %% [markdown]
# {glue:md}`pred_count_md` {glue:md}`pred_uni_md`
#
# ## Token classes: the neurons that predict or suppress them
#
# For a few classes of tokens (numbers or years, tokens starting with a space, all-caps words, the open
# parenthesis, words ending in -ing: those the tokenizer has), each neuron of the reference gets a score,
# (mean $c_v$ over the class − mean over the other tokens) / standard deviation of $c_v$. The
# `book.n_ensemble` highest scores form the class's prediction ensemble, the lowest its suppression ensemble.
# Below, their post-activations on held-out tokens, split by whether the next token belongs to the class.

# %% tags=["hide-input"]
publish.table(ch, "classes")

# %% [markdown]
# ```{glue:figure} fig-prediction-classes
# :name: fig-prediction-classes
#
# Post-activations of each class's prediction and suppression ensembles on held-out tokens, when the next
# token is in the class (orange) and when it is not (grey); outliers not drawn.
# ```
#
# Classes found in this tokenizer: {glue:text}`pred_classes`. {glue:md}`pred_class_md` A neuron that
# writes a class's tokens up and fires before them acts as a next-token predictor; a suppression neuron
# that also fires before them may be tempering a prediction made elsewhere in the model.
#
# ## What holds here
#
# {glue:md}`pred_holds_md`

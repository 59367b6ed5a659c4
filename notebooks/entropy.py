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
# # Entropy neurons
#
# In {glue:text}`ent_reference`, the neuron that looks most like an entropy neuron by its weights,
# {glue:md}`ent_neuron_md`, changes the entropy of the next-token distribution by {glue:text}`ent_d_entropy:.3f`
# nats when its activation is fixed from the smallest to the largest value, while the final LayerNorm scale
# changes by {glue:text}`ent_d_scale:.3f` and the reciprocal rank of the true token by {glue:text}`ent_d_rr:.4f`. The largest change among {glue:text}`ent_n_random` random neurons of the last two
# layers is {glue:text}`ent_band_max:.3f` nats. With the LayerNorm scale frozen at its clean value, the change is
# {glue:text}`ent_d_direct:.3f` nats (the direct path), so {glue:text}`ent_d_via_scale:.3f` nats go through the
# scale. In {glue:text}`ent_n_twins` of the {glue:text}`ent_n_seeds` other
# seeds, its best-matching neuron is itself an entropy candidate (among that seed's top {glue:text}`ent_top` by
# either view).
#
# ```{glue:figure} fig-entropy-intervention
# :name: fig-entropy-intervention
#
# The paper's figures 7b-c and 25 on this zoo: the final LayerNorm scale, the reciprocal rank of the true next
# token, the entropy of the next-token distribution and the loss, each averaged over the held-out positions,
# against the value at which one neuron's post-activation is fixed at every position. Orange: the entropy neuron
# by the paper's view; green: by the null-space view; blue: its anti-entropy partner; pink (when it is another
# neuron): the top by the reference code's ranking; grey band: the range of the random neurons; dotted: the clean
# model.
# ```
#
# The paper {cite:p}`gurnee2024universal` (section 5.2) finds neurons in the last layer with a large output norm whose
# output direction is nearly
# orthogonal to every token's unembedding: they write almost nothing onto the logits directly. They act through
# the final LayerNorm: adding a large vector to the residual stream raises its norm, the LayerNorm scale divides
# every logit by it, and the next-token distribution flattens (higher entropy) while the order of the tokens,
# and so the rank of the true token, barely changes. An anti-entropy partner writes the opposite direction.
# {cite:t}`stolfo2024confidence` measure the same property directly: the share of the output weight inside the span of
# the
# bottom {glue:text}`ent_n_null` singular directions of the unembedding (its effective null space).
#
# The paper's claims, checked on the reference, each by a rule printed beside its verdict (the rule's size is tied
# to the paper, its noise band is the book's own: the random neurons):
#
# - the entropy neuron changes the entropy more than every random neuron: **{glue:text}`ent_verdict_band`**
#   ({glue:text}`ent_rule_band`);
# - its entropy and the LayerNorm scale move together: **{glue:text}`ent_verdict_together`**
#   ({glue:text}`ent_rule_together`);
# - its entropy change goes mostly through the LayerNorm scale (more than through the direct path):
#   **{glue:text}`ent_verdict_scale`** ({glue:text}`ent_rule_scale`);
# - its anti-entropy partner ({glue:text}`ent_anti_neuron`, cosine of the output weights
#   {glue:text}`ent_anti_cos:.3f`; the paper's pair: {glue:text}`ent_paper_anti_cos`) moves the entropy the other
#   way ({glue:text}`ent_anti_d_entropy:.3f` nats): **{glue:text}`ent_verdict_anti`** ({glue:text}`ent_rule_anti`).
#
# The last three are judged only when the first holds: without an entropy neuron whose effect stands out from the
# random neurons, there is no entropy neuron to study here, and they are not testable.
#
# Each fixed-activation run covers {glue:text}`ent_n_tokens:,` held-out positions at the paper's values
# {glue:md}`ent_values_md`.

# %% tags=["parameters", "remove-cell"]
profile = "smoke"   # a profile name (universal_neurons/profiles/<name>.yaml)
device = "cpu"      # "cuda" on a GPU
overrides = ""      # space-separated settings, as in make book SET (book.*, analysis.*)

# %% tags=["remove-cell"]
from universal_neurons.book import publish
from universal_neurons.book.chapters import entropy as chapter

# %% tags=["hide-input"]
ch = chapter.compute(profile, device=device, overrides=overrides)

# %% tags=["remove-cell"]
publish.glue_all(ch)
publish.glue_linked(ch, "ent_neuron", "ent_null_neuron")  # the neuron ids linked to the explorer
publish.figure(ch, "weights", chapter.weights_figure(ch))
publish.figure(ch, "intervention", chapter.intervention_figure(ch))
publish.figure(ch, "direct", chapter.direct_figure(ch))
publish.figure(ch, "seeds", chapter.seeds_figure(ch))

# %% [markdown]
# ## Finding them by their weights
#
# ```{glue:figure} fig-entropy-weights
# :name: fig-entropy-weights
#
# The paper's figure 7a: every neuron of the last two layers of the reference, the norm of its output weight
# against the variance of its cosines with the unembedding (left, log scale) and against the share of the
# output weight in the null space of the unembedding (right). Ringed: the top of each view.
# ```
#
# The paper's view, as the book reads it, ranks a neuron by a large norm over a small vocabulary variance; the
# null-space view by the share of its output weight in the null space. By the null-space view,
# {glue:md}`ent_neuron_md` ranks {glue:text}`ent_null_rank_of_paper`, and that view's top neuron is
# {glue:md}`ent_null_neuron_md`. The candidates among the top {glue:text}`ent_top` of either view:

# %% tags=["hide-input"]
publish.table(ch, "candidates")

# %% [markdown]
# ### The reference code's way
#
# The paper's reference code does not rank by a ratio: it keeps the neurons of the last layers with a large
# weight-decay penalty $|w_\text{in}|^2 + |w_\text{out}|^2$ and a vocabulary kurtosis of at most 10, and sorts
# them by the smallest vocabulary variance. Its penalty thresholds are set by hand for each model; here the cut is
# the 90th percentile of the penalty over the last two layers (the percentile the reference's own random baseline
# uses), and the activation-kurtosis filter it also applies is left out (it needs the activations; the weight
# statistics do not). {glue:md}`ent_reference_pass_md`. {glue:md}`ent_views_md` The chapter uses the book's
# view: the reference's thresholds were set by hand for each of its models (a penalty of at least 3, 1 and 2,
# vocab_kurt at most 10, 8 and 7) and do not carry over to a small model, while the ratio needs no threshold. The
# top of each ranking, side by side, with the entropy change of the neurons the chapter ran:

# %% tags=["hide-input"]
ch.tables["views"]

# %% [markdown]
# ## Total and direct effect
#
# ```{glue:figure} fig-entropy-direct
# :name: fig-entropy-direct
#
# The entropy and the loss against the fixed activation with the final LayerNorm scale free (solid: the total
# effect) or frozen at its clean value at every position (dashed: only the direct path through the unembedding).
# The gap between a solid and a dashed line is what goes through the LayerNorm scale.
# ```
#
# Each run's change from the smallest to the largest fixed activation:

# %% tags=["hide-input"]
ch.tables["effects"]

# %% [markdown]
# ## Is the role universal?
#
# ```{glue:figure} fig-entropy-seeds
# :name: fig-entropy-seeds
#
# Every seed's own top entropy candidate by the paper's view: the change of the entropy against its fixed
# activation.
# ```
#
# For each other seed: the neuron that best matches the reference's entropy neuron (by the universality
# chapter's correlations), its ranks there by both views, and that seed's own top candidate with its entropy
# change.

# %% tags=["hide-input"]
ch.tables["seeds"]

# %% [markdown]
# ## Token-frequency neurons
#
# Stolfo et al. also find neurons whose direct effect on the logits follows the unigram log-frequency of the
# tokens: they push the prediction towards (or away from) the corpus's frequency distribution. Here the neuron
# of the last two layers whose logit effect is most aligned with the training corpus's log-frequencies is
# {glue:text}`ent_freq_neuron` (cosine {glue:text}`ent_freq_cos:.3f`). The most aligned neurons:

# %% tags=["hide-input"]
publish.table(ch, "frequency")

# %% [markdown]
# ## The paper's neurons
#
# The entropy neurons the paper studied (its reference code's list), and where they stand in its published
# tables of universal neurons (absent: excess correlation at most 0.5).

# %% tags=["hide-input"]
ch.tables["paper"]

# %% [markdown]
# ## What holds here
#
# {glue:md}`ent_holds_md`

# %% [markdown] exercise="hook" tags=["remove-cell"]
# ### Exercise: the fixed-activation intervention
#
# The entropy neurons are found by setting one neuron's activation to a fixed value at every position and watching
# the next-token distribution. Write `run_with_fixed_activation(model, tokens, layer, neuron, value)`: run the
# HookedTransformer `model` on `tokens` with neuron `neuron` of layer `layer` (its post-activation,
# `blocks.{layer}.mlp.hook_post`) set to `value`, and return the logits. The model must be left as it was: a hook
# that stays on it would fix the neuron in every later run.

# %% exercise="hook" solution=true tags=["remove-cell"]
def run_with_fixed_activation(model, tokens, layer, neuron, value):
    """Logits of `model` on `tokens` with blocks.{layer}.mlp.hook_post[..., neuron] set to `value`."""
    def fix(activation, hook):
        activation[..., neuron] = value
        return activation

    with model.hooks(fwd_hooks=[(f"blocks.{layer}.mlp.hook_post", fix)]):  # removed when the block ends
        return model(tokens)


# %% exercise="hook" tags=["remove-cell"]
from universal_neurons.teaching import exercises

exercises.check("hook", run_with_fixed_activation)

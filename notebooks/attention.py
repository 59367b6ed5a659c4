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
# # Attention-deactivation neurons
#
# In {glue:text}`att_reference`, the neuron whose output most steers a later head's query towards the
# beginning-of-text token is the pair {glue:md}`att_pair_md` (heuristic score {glue:text}`att_score:.3f`;
# {glue:md}`att_random_md`). Removing its contribution from that head's query changes the head's attention to the beginning-of-text
# token with a correlation of {glue:text}`att_r_bos:.3f` against the neuron's activation, and the norm of the
# head's output with {glue:text}`att_r_norm:.3f` (a {glue:text}`att_r_lo:.3f` to {glue:text}`att_r_hi:.3f` bootstrap
# interval over the held-out rows for the weaker of the two). The paper's claim that a firing neuron turns the
# head towards that token and shrinks its output: **{glue:text}`att_verdict`** ({glue:text}`att_rule`). Of the
# {glue:md}`att_deactivating_md` both correlations with the paper's signs. In {glue:text}`att_n_twins` of the
# {glue:md}`att_seeds_md`, the best match of that neuron is among the seed's top
# {glue:text}`att_top` neurons by this score, and in {glue:text}`att_n_seeds_deactivating` the seed's own
# strongest pair deactivates its head.
#
# ```{glue:figure} fig-attention-ablation
# :name: fig-attention-ablation
#
# The paper's figures 8b-c and 26 on this zoo: for each of the strongest pairs, at every destination position in
# the second half of the held-out rows, the neuron's activation against the change in the head's attention to the
# beginning-of-text token (top) and in the norm of the head's output after its output matrix W_O (bottom) when
# the neuron's contribution is removed from the head's query only (keys and values from the clean run). A
# deactivating neuron gives a falling top panel (removing it lowers the attention to that token where it fires)
# and a rising bottom panel.
# ```
#
# The paper {cite:p}`gurnee2024universal` (section 5.3) finds neurons that turn later attention heads off. Many heads
# park their attention on
# the beginning-of-text token when they have nothing to do: its value vector is small, so attending to it writes
# almost nothing (an attention sink). A neuron whose output direction $\hat w_\text{out}$ points the head's query
# towards that token's key $k_\text{BOS}$ makes the head attend there, and so switches it off: the neuron
# composes with the head's query (Q-composition, in the terms of {cite:t}`elhage2021mathematical`). The heuristic score
# of a neuron for a head is $\hat w_\text{out}^\top W_Q^h k_\text{BOS} / \sqrt{d_\text{head}}$, computed from the
# weights for all {glue:text}`att_n_pairs:,` (neuron, later head) pairs at once; the path ablation then tests the
# strongest pairs causally on {glue:text}`att_n_tokens:,` held-out tokens. The paper's example:
# {glue:md}`att_paper_md`.

# %% tags=["parameters", "remove-cell"]
profile = "smoke"   # a profile name (universal_neurons/profiles/<name>.yaml)
device = "cpu"      # "cuda" on a GPU
overrides = ""      # space-separated settings, as in make book SET (book.*, analysis.*)

# %% tags=["remove-cell"]
from universal_neurons.book import publish
from universal_neurons.book.chapters import attention as chapter

# %% tags=["hide-input"]
ch = chapter.compute(profile, device=device, overrides=overrides)

# %% tags=["remove-cell"]
publish.glue_all(ch)
publish.glue_linked(ch, "att_pair")  # the neuron id linked to the explorer
publish.figure(ch, "scores", chapter.scores_figure(ch))
publish.figure(ch, "ablation", chapter.ablation_figure(ch))
publish.figure(ch, "ratio", chapter.ratio_figure(ch))
publish.figure(ch, "seeds", chapter.seeds_figure(ch))

# %% [markdown]
# ## The heuristic score
#
# ```{glue:figure} fig-attention-scores
# :name: fig-attention-scores
#
# The paper's figure 8a on this zoo: the distribution of the heuristic score over every (neuron, later head)
# pair of the reference (orange) and over random unit directions (grey), on a log scale; dotted: the pairs ablated.
# ```
#
# The 99.9th percentile of the random directions' scores is {glue:text}`att_random_q999:.3f`; a share
# {glue:text}`att_share_above:.4f` of the neuron pairs scores above the highest random direction. The strongest
# pairs and what their path ablation shows (correlations with the activation; mean changes where the neuron fires,
# activation above zero):

# %% tags=["hide-input"]
publish.table(ch, "pairs")

# %% [markdown]
# ## The beginning-of-text token's value
#
# ```{glue:figure} fig-attention-ratio
# :name: fig-attention-ratio
#
# For each head of the reference: the mean norm of the value output $W_O v$ of the other tokens divided by the
# beginning-of-text token's, on held-out rows (log scale); dashed: the paper's median head; dotted: half of it (the
# rule's size); dash-dotted: the noise band's edge (the same median ratio with another position in place of that
# token); solid: the median head here.
# ```
#
# Attending to the beginning-of-text token turns a head off only if that token's value is small. The paper's median
# head writes {glue:text}`att_paper_ratio` times less from it than from other tokens; here the median head's ratio
# is {glue:text}`att_median_ratio:.2f`. The same ratio with a later position in place of the beginning-of-text
# token (a position that is not special) has a median of {glue:text}`att_null_median:.2f` over the positions:
# that is the noise band. The claim that heads write little from that token: **{glue:text}`att_ratio_verdict`**
# ({glue:text}`att_ratio_rule`).

# %% tags=["hide-input"]
ch.tables["ratio"]

# %% [markdown]
# ## Is the role universal?
#
# ```{glue:figure} fig-attention-seeds
# :name: fig-attention-seeds
#
# Every seed's own strongest pair by the heuristic score, ablated as above: the activation against the change in
# the head's attention to the beginning-of-text token.
# ```
#
# For each other seed: the neuron that best matches the reference's strongest neuron (by the universality
# chapter's correlations), its best score over that seed's later heads and its rank among the seed's neurons, and
# the seed's own strongest pair.

# %% tags=["hide-input"]
ch.tables["seeds"]

# %% [markdown]
# ## What holds here
#
# {glue:md}`att_holds_md`

# %% [markdown] exercise="bos" tags=["remove-cell"]
# ### Exercise: the BOS heuristic score of a neuron and a head
#
# A neuron deactivates a later head when what it writes raises the head's attention to the first token (BOS). From
# the weights alone: the unit output direction $\hat w_{out}$ of the neuron, read by the head's query weights
# $W_Q^h$ and compared with BOS's key $k^h_{BOS}$, scaled as attention scores are:
# $s^h = \hat w_{out}^\top W_Q^h k^h_{BOS} / \sqrt{d_{head}}$. Write `bos_score(w_out, w_q, k_bos)`: `w_out`
# `[d_model]`, `w_q` `[n_heads, d_model, d_head]` (a later layer's query weights, with its LayerNorm folded in),
# `k_bos` `[n_heads, d_head]`; return the score of every head `[n_heads]`.

# %% exercise="bos" solution=true tags=["remove-cell"]
import math

import torch


def bos_score(w_out, w_q, k_bos):
    """[n_heads] ŵ_outᵀ W_Q^h k_BOS^h / sqrt(d_head), ŵ_out = w_out / |w_out|."""
    direction = w_out.double() / w_out.double().norm()
    query = torch.einsum("m,hmd->hd", direction, w_q.double())  # each head's query from that direction
    return (query * k_bos.double()).sum(-1) / math.sqrt(w_q.shape[-1])


# %% exercise="bos" tags=["remove-cell"]
from universal_neurons.teaching import exercises

exercises.check("bos", bos_score)

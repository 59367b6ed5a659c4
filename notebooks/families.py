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
# # Neuron families
#
# In this run, of the compared group ({glue:md}`fam_label_md`, {glue:text}`fam_n_group:,` neurons), the
# paper's family rules find {glue:text}`fam_n_unigram` unigram, {glue:text}`fam_n_alphabet` alphabet,
# {glue:text}`fam_n_previous` previous-token, {glue:text}`fam_n_syntax` syntax and {glue:text}`fam_n_position`
# position neurons (previous-token and syntax neurons counted when their VR also exceeds
# {glue:text}`fam_vr_min`). {glue:md}`fam_group_md`
#
# The paper's claim that universal neurons fall into families, each explained by one feature, is judged by the
# paper's own rules, those with a threshold (unigram, alphabet, position): {glue:md}`fam_paper_md` into such a
# family, against {glue:text}`fam_null_q:g` at the edge of the band given by
# {glue:text}`fam_n_null:,` random groups of as many live neurons. **{glue:text}`fam_explained_verdict`**
# ({glue:text}`fam_explained_rule`).
#
# ```{glue:md} fig-families-gallery-md
# :format: myst
# ```
#
# The paper's section 4.3 {cite:p}`gurnee2024universal` (figures 4 and 15-21) labels each neuron by the binary feature
# of the token that
# explains most of its activation. The variance reduction of the post-activation $v$
# (`blocks.{l}.mlp.hook_post`) by a feature $y$ is
# $\mathrm{VR}(v, y) = 1 - [(1-\beta)\,\mathrm{Var}(v \mid y=0) + \beta\,\mathrm{Var}(v \mid y=1)] / \mathrm{Var}(v)$,
# with $\beta$ the share of tokens where $y$ holds. The features: properties of the token (type, leading space,
# case, number, year, pronoun class, first letter, the letter itself, prefixes, suffixes, word groups),
# unigram features (a
# normalised string spelled by several token ids: the duplicate unigram neurons), the same features of the
# previous token, the source document (context) and the position bucket. One streamed pass of the
# reference model over {glue:text}`fam_n_tokens:,` held-out tokens (beginning-of-text and newline tokens left
# out) gives the exact VR of all {glue:text}`fam_n_features:,` features for every neuron.
# {glue:md}`fam_syntax_md`
#
# The paper's rules: a unigram family is a unigram feature with VR > {glue:text}`fam_paper_unigram_vr` on at
# least three neurons; an alphabet neuron is the best neuron of a letter feature, kept if its VR exceeds
# {glue:text}`fam_paper_alphabet_vr`; previous-token and syntax neurons are the top 25 by VR; position neurons
# (which {cite:t}`voita2024neurons` also find in OPT models) are universal neurons with kurtosis below
# {glue:text}`fam_paper_kurtosis`, ranked by the mutual information
# between their position and their firing (pre-activation above zero). Here they are applied to the compared
# group. The previous-token and syntax rules rank without a threshold (a top 25 exists in any set of neurons), so
# the verdict above counts only the three rules with one; a random group of the same size, put through the same
# three rules, gives the noise band.

# %% tags=["parameters", "remove-cell"]
profile = "smoke"   # a profile name (universal_neurons/profiles/<name>.yaml)
device = "cpu"      # "cuda" on a GPU
overrides = ""      # space-separated settings, as in make book SET (book.*, analysis.*)

# %% tags=["remove-cell"]
from universal_neurons.book import publish
from universal_neurons.book.chapters import families as chapter

# %% tags=["hide-input"]
ch = chapter.compute(profile, device=device, overrides=overrides)

# %% tags=["remove-cell"]
publish.glue_all(ch)
for family in chapter.FAMILIES[:4]:
    publish.figure(ch, family, chapter.family_figure(ch, family), chapter.CAPTIONS[family],
                   chapter.absent_sentence(ch, family))
publish.figure(ch, "position", chapter.position_figure(ch), chapter.CAPTIONS["position"],
               chapter.absent_sentence(ch, "position"))
publish.figure(ch, "gallery", chapter.gallery_figure(ch), chapter.CAPTIONS["gallery"],
               chapter.absent_sentence(ch, "gallery"))

# %% [markdown]
# ## The paper's statements beside ours
#
# {glue:md}`fam_dominant_md`
#
# Each family's rule, what the paper reports for it, and how many neurons of the compared group it picks here.
# The paper's text names the families but not their layers; its layers are GPT2-medium-a's, read in the outputs
# the reference repository committed with its notebooks (the neurons each notebook lists). Depth is the median
# layer divided by the last layer's index (0: the first layer, 1: the last), so that a 24-layer and a small model
# can be set side by side. {glue:md}`fam_alphabet_md`

# %% tags=["hide-input"]
ch.tables["paper"]

# %% [markdown]
# ## The book's secondary view: one feature above a VR threshold
#
# A looser reading of "each explained by one feature", the book's own and not the paper's: a neuron counts as
# explained when its best feature has VR above {glue:text}`fam_vr_min`. A share of
# {glue:text}`fam_share_group:.2f` of the compared group is explained so, against {glue:text}`fam_share_rest:.2f`
# of the other neurons: **{glue:text}`fam_vr_verdict`** ({glue:text}`fam_vr_rule`). The threshold is the book's,
# so this view can show a direction but not the paper's size.
#
# Which family the best feature of each explained compared neuron (VR above {glue:text}`fam_vr_min`) belongs
# to, and in which layers: "token" gathers the properties of the token's own string (type, case, number,
# pronoun, prefix, suffix, word group); "context" is the source the text came from.

# %% tags=["hide-input"]
ch.tables["kinds"]

# %% [markdown]
# ## Neurons that detect the source
#
# The book's corpus joins separate sources (each with its own vocabulary, names and spelling), and a row of
# held-out text comes from one of them. A neuron can then be explained by which source the text came from, a
# context feature: such a family belongs to this corpus, and the paper, on the Pile, does not report one.
# {glue:md}`fam_source_md` The explained neurons whose best feature is the source:

# %% tags=["hide-input"]
publish.table(ch, "sources", empty=chapter.EMPTY_TABLES["sources"])

# %% [markdown]
# ## Every compared neuron's best feature
#
# Each neuron of the compared group with the feature of highest VR among all features (syntax ones on the
# rows of the Brown corpus {cite:p}`francis1979brown`), its kind and the VR, highest first.

# %% tags=["hide-input"]
publish.table(ch, "best", empty=chapter.EMPTY_TABLES["best"])

# %% [markdown]
# ## Unigram and alphabet neurons
#
# ```{glue:md} fig-families-unigram-md
# :format: myst
# ```
#
# ```{glue:md} fig-families-alphabet-md
# :format: myst
# ```

# %% tags=["hide-input"]
publish.table(ch, "unigram", empty=chapter.EMPTY_TABLES["unigram"])

# %% tags=["hide-input"]
publish.table(ch, "alphabet", empty=chapter.EMPTY_TABLES["alphabet"])

# %% [markdown]
# The reference code's alphabet features are the letter tokens themselves: a token that, stripped of a leading
# space and lower-cased, is exactly one letter (its "a_unigram" columns); the paper's rule above uses them. The
# book also has first-letter features (a token that starts with the letter, as " apple" does for "a"), which fire
# on many more tokens. {glue:md}`fam_alphabet_views_md` Per letter, the compared neuron of highest VR by each:

# %% tags=["hide-input"]
ch.tables["alphabet_views"]

# %% [markdown]
# ## Previous-token and syntax neurons
#
# ```{glue:md} fig-families-previous-md
# :format: myst
# ```
#
# ```{glue:md} fig-families-syntax-md
# :format: myst
# ```

# %% tags=["hide-input"]
publish.table(ch, "previous", empty=chapter.EMPTY_TABLES["previous"])

# %% tags=["hide-input"]
publish.table(ch, "syntax", empty=chapter.EMPTY_TABLES["syntax"])

# %% [markdown]
# ## Position neurons
#
# ```{glue:md} fig-families-position-md
# :format: myst
# ```

# %% tags=["hide-input"]
publish.table(ch, "position", empty=chapter.EMPTY_TABLES["position"])

# %% [markdown]
# ## What holds here
#
# {glue:md}`fam_holds_md`

# %% [markdown] exercise="vr" tags=["remove-cell"]
# ### Exercise: the variance-reduction score of a feature
#
# The paper explains a neuron by the binary feature that most reduces the variance of its activation:
# $\mathrm{VR} = 1 - [(1-\beta)\,\mathrm{Var}(v \mid y=0) + \beta\,\mathrm{Var}(v \mid y=1)] / \mathrm{Var}(v)$ with
# $\beta$ the share of tokens where the feature holds. Write `variance_reduction(v, y)`: `v` the activations
# `[tokens]`, `y` the feature `[tokens]` (booleans); return the score (population variances).

# %% exercise="vr" solution=true tags=["remove-cell"]
import numpy as np


def variance_reduction(v, y):
    """1 − [(1 − β) Var(v | y=0) + β Var(v | y=1)] / Var(v), β = mean(y)."""
    v, y = np.asarray(v, dtype=np.float64), np.asarray(y, dtype=bool)
    beta = y.mean()
    within = (1 - beta) * v[~y].var() + beta * v[y].var()
    return 1 - within / v.var()


# %% exercise="vr" tags=["remove-cell"]
from universal_neurons.teaching import exercises

exercises.check("vr", variance_reduction)

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
# # The zoo: GPT-2 models that differ only in their seed
#
# The profile has {glue:text}`n_seeds` members of {glue:text}`n_params:,` parameters each. Their held-out
# loss averages {glue:text}`heldout_mean:.3f` nats per token (worst member {glue:text}`heldout_max:.3f`),
# against a unigram entropy of {glue:text}`unigram_entropy:.3f` nats: {glue:text}`context_verdict`.
#
# The paper {cite:p}`gurnee2024universal` compares five GPT-2 models {cite:p}`radford2019language` trained from
# different random seeds. This chapter shows the
# models the rest of the book studies: a zoo of small GPT-2 models trained on the registry prose corpus
# (here, or once and shipped in the repository, as the release zoo), one per seed; the seed sets both the
# initialisation and the order of the training data. Each member is saved with `save_pretrained`, the format of the Stanford
# checkpoints {cite:p}`stanfordcrfm2021mistral`, and loaded by the same `load_model` that loads the paper's models.

# %% tags=["parameters", "remove-cell"]
profile = "smoke"  # a profile name (universal_neurons/profiles/<name>.yaml)
device = "cpu"     # "cuda" on a GPU
overrides = ""     # settings, as in make book SET (e.g. book.n_sample_tokens, space-separated)

# %% tags=["remove-cell"]
from universal_neurons.book import publish
from universal_neurons.book.chapters import zoo as chapter

# %% tags=["hide-input"]
ch = chapter.compute(profile, device=device, overrides=overrides)

# %% tags=["remove-cell"]
publish.glue_all(ch)
publish.figure(ch, "training", chapter.training_figure(ch))

# %% [markdown]
# ## Training curves
#
# ```{glue:figure} fig-zoo-training
# :name: fig-zoo-training
#
# Training loss (solid) and the held-out loss measured during training (dashed, on the first quarter of the
# held-out evaluation tokens) per seed, in nats per token, against training tokens; the crosses are the
# book's held-out loss of the final weights, on all the evaluation tokens (the table below). The grey line is the
# unigram entropy of the training corpus: the loss of a model that ignores context altogether.
# ```
#
# {glue:md}`zoo_heldout_md`
#
# ## The members
#
# Held-out loss is measured on held-out documents never seen in training ({glue:text}`zoo_eval_tokens:,`
# tokens, the final weights); seconds and tokens/s are the training time on the machine that trained the zoo
# (this one, or for a shipped zoo the one its manifest names). {glue:md}`training_md`

# %% tags=["hide-input"]
ch.tables["members"]

# %% [markdown]
# ## The models and their corpus, beside GPT2-small
#
# {glue:md}`zoo_models_md`

# %% tags=["hide-input"]
ch.tables["architecture"]

# %% [markdown]
# The corpus, per source (for a zoo trained on it): where its text comes from, and its documents and tokens in the
# training and held-out splits (tokens counted in the token rows, each row starting with a BOS token).

# %% tags=["hide-input"]
ch.tables["corpus"].style.hide(axis="index")

# %% [markdown]
# ## Greedy samples
#
# A few greedy continuations per seed, to compare by eye.

# %% tags=["hide-input"]
ch.tables["samples"].style.hide(axis="index")

# %% [markdown]
# ## What holds here
#
# {glue:md}`zoo_holds_md`

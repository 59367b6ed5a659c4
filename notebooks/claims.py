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
# # What the paper claims, and what holds here
#
# {glue:md}`clm_summary_md`
#
# Each row below is one claim of the paper {cite:p}`gurnee2024universal`: the paper's own number, ours on this run
# ({glue:text}`clm_run`), the rule that judged it with its numbers, the verdict, the verdict of the same rule on
# untrained models (the negative control), and a link to the section of the chapter that shows it. Every value is read
# from the executed notebooks of the {glue:text}`clm_n_chapters` chapters of the same run (the numbers, rules and
# verdicts they glue into their pages), never computed again here; a chapter that did not run in this run folder
# gives rows that say so.
#
# One protocol judges every claim. A rule names the quantity, a magnitude tied to the paper (its own threshold, or a
# stated share of its effect) and this book's noise band for that quantity (random neurons, random directions, a
# bootstrap interval, a null distribution, the untrained control). A claim **holds** when the quantity lies beyond
# the noise band in the paper's direction and meets the magnitude; **direction only** when it lies beyond the noise
# band but falls short of the magnitude (or the paper gives none); **does not hold** when it lies inside the noise
# band or goes the other way; **not testable here** when the quantity does not exist at this scale (no neuron passes
# the paper's rule for that role, or too few to compare).
#
# {glue:md}`clm_control_md`

# %% tags=["parameters", "remove-cell"]
profile = "smoke"   # a profile name (universal_neurons/profiles/<name>.yaml)
device = "cpu"      # unused here: the claims are read from the other chapters' notebooks
overrides = ""      # space-separated settings, as in make book SET: they name the run folder that is read

# %% tags=["remove-cell"]
import pandas as pd

from universal_neurons.book import publish
from universal_neurons.book.chapters import claims as chapter

pd.set_option("display.max_colwidth", None)  # the values in full,
pd.set_option("display.max_rows", None)  # and every one of them

# %% tags=["hide-input"]
ch = chapter.compute(profile, device=device, overrides=overrides)

# %% tags=["remove-cell"]
publish.glue_all(ch)

# %% tags=["hide-input"]
chapter.show(ch)

# %% [markdown]
# Of the {glue:text}`clm_n_claims` claims: {glue:text}`clm_n_hold` hold, {glue:text}`clm_n_direction` hold in
# direction only, {glue:text}`clm_n_fail` do not hold and {glue:text}`clm_n_untestable` are not testable here. The
# paper's numbers come from GPT-2 small and medium and Pythia-160m, trained on hundreds of billions of tokens; this
# book's zoo is far smaller (see the zoo and scale chapters), so a claim that does not hold here says what a small
# model does, not that the paper is wrong.
#
# ## The book's own finding: how robust is "universal"?
#
# {glue:md}`clm_finding_md`
#
# (From the robustness chapter, {doc}`robustness`.)
#
# ## The values this page reads
#
# Every value behind the table, as the chapter's page shows it (its glued value).

# %% tags=["hide-input"]
publish.values_as_shown(ch.tables["values"])

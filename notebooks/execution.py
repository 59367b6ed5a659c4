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
# # How this book was built
#
# This book shows the run {glue:text}`exe_run` (profile {glue:text}`exe_profile`, overrides
# {glue:text}`exe_overrides`, device {glue:text}`exe_device`), executed on {glue:text}`exe_date` at
# {glue:text}`exe_time` UTC on {glue:text}`exe_cpu` ({glue:text}`exe_cores` cores; GPU: {glue:text}`exe_gpu`) with
# torch {glue:text}`exe_torch`. Its {glue:text}`exe_n_chapters` other notebooks took
# {glue:text}`exe_total_min:.1f` minutes of wall time added up as last executed, and
# {glue:text}`exe_span_min:.1f` minutes from the first start to the last end: after the universality pass, `make
# book` runs the other chapters side by side, each on its share of the cores (their start times, below, show it).
# The slowest was {glue:text}`exe_slowest`, {glue:text}`exe_slowest_s:.0f` s; {glue:text}`exe_n_failed` failed. A
# chapter whose inputs had not changed was not executed again: its time is that of its last execution, on the date
# it shows.

# %% tags=["parameters", "remove-cell"]
profile = "smoke"   # a profile name (universal_neurons/profiles/<name>.yaml)
device = "cpu"      # "cuda" on a GPU
overrides = ""      # space-separated settings, as in make book SET

# %% tags=["remove-cell"]
import pandas as pd

from universal_neurons.book import publish
from universal_neurons.book.chapters import execution as chapter

pd.set_option("display.max_colwidth", None)  # the tables' sentences and paths in full

# %% tags=["hide-input"]
ch = chapter.compute(profile, device=device, overrides=overrides)

# %% tags=["remove-cell"]
publish.glue_all(ch)

# %% [markdown]
# ## The run
#
# The profile, its overrides (`make book SET=...`) and the run folder that holds the executed notebooks, tables
# and figures; `config.yaml` in it is the resolved configuration.

# %% tags=["hide-input"]
ch.tables["run"]

# %% [markdown]
# ## Every chapter's wall time
#
# Papermill's record in each executed notebook: its wall time in seconds, when it started (UTC) and the parameters
# it ran with, in the order the notebooks ran.

# %% tags=["hide-input"]
ch.tables["chapters"].round({"seconds": 1})

# %% [markdown]
# ## Package versions

# %% tags=["hide-input"]
ch.tables["versions"]

# %% [markdown]
# ## The machine

# %% tags=["hide-input"]
ch.tables["machine"]

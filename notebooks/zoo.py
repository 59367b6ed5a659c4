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
# The paper compares five GPT-2 models trained from different random seeds. This chapter shows the
# models the rest of the book studies: a zoo of small GPT-2 models trained on the registry prose corpus
# (here, or once and shipped in the repository, as the release zoo), one per seed; the seed sets both the initialisation and the order
# of the training data. Each member is saved with `save_pretrained`, the format of the Stanford
# checkpoints, and loaded by the same `load_model` that loads the paper's models.

# %% tags=["parameters"]
profile = "smoke"     # a profiles/<name>.yaml
device = "cpu"        # "cuda" on a GPU
overrides = ""        # space-separated profile overrides, as in make book SET
n_sample_tokens = 24  # greedy continuation length per prompt

# %%
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown
from myst_nb import glue

import universal_neurons as un
from universal_neurons import shipped, zoo

prof = un.load_profile(profile, overrides.split())
print(prof.cfg["description"])

# %% [markdown]
# ## Training curves
#
# Training loss (solid) and held-out loss (dashed) per seed, in nats per token, against training
# tokens. The grey line is the unigram entropy of the training corpus: the loss of a model that
# ignores context altogether.

# %%
if prof.is_zoo:
    summary, curves = zoo.read_logs(prof)
    fig, ax = plt.subplots(figsize=(7, 4))
    for seed, c in curves.groupby("seed"):
        line, = ax.plot(c["tokens"], c["train_loss"], label=f"seed {seed}")
        ax.plot(c["tokens"], c["heldout_loss"], ls="--", color=line.get_color())
    ax.axhline(summary["unigram_entropy"].iloc[0], color="grey", lw=1, label="unigram entropy")
    ax.set(xlabel="training tokens", ylabel="loss (nats/token)", title=f"Zoo '{prof.name}'")
    ax.legend(fontsize=8)
    plt.show()
else:
    summary = zoo.evaluate_members(prof, device=device)
    print(f"Profile {prof.name!r} names real checkpoints, trained elsewhere: no training curves; "
          "their held-out loss is measured here.")

# %% [markdown]
# ## The members
#
# Held-out loss is measured on held-out documents never seen in training (up to 262,144 tokens for a
# zoo); seconds and tokens/s are the training time on the machine that trained the zoo (this one, or for
# a shipped zoo the one its manifest names).

# %%
display(summary.round(3))
glue("n_seeds", len(summary), display=False)
glue("heldout_mean", float(summary["heldout_loss"].mean()), display=False)
glue("heldout_max", float(summary["heldout_loss"].max()), display=False)
glue("unigram_entropy", float(summary["unigram_entropy"].iloc[0]), display=False)
glue("n_params", int(summary["parameters"].iloc[0]), display=False)
beats = bool((summary["heldout_loss"] < summary["unigram_entropy"]).all())
glue("context_verdict", "every member has learned to use context" if beats
     else "not every member does better than a model that ignores context", display=False)
if prof.is_zoo:
    threads = prof.cfg["train"]["threads"]
    training = (f"Each seed trained for about {summary['train_seconds'].mean() / 60:.1f} minutes at about "
                f"{summary['tokens_per_s'].mean():,.0f} tokens per second, on {threads} thread(s), seeds side by "
                "side when the cores allow.")
    if prof.uses_shipped:
        man = shipped.read_manifest(prof.shipped_dir)  # its files: checked by `make zoo` and by every load
        cpus = sorted({man["seeds"][str(s)]["cpu"] for s in prof.seeds})
        training += (f" This zoo was trained once (on {', '.join(cpus)}) and is shipped in the repository "
                     f"(`{prof.cfg['shipped']}`, {man['created']}): this book checked every file against the "
                     "sha256 in its manifest and trained nothing.")
else:
    training = "These checkpoints were trained elsewhere; this book only loads them."
glue("training_md", Markdown(training), display=False)

# %% [markdown]
# The profile has {glue:text}`n_seeds` members of {glue:text}`n_params:,` parameters each. Their held-out
# loss averages {glue:text}`heldout_mean:.3f` nats per token (worst member {glue:text}`heldout_max:.3f`),
# against a unigram entropy of {glue:text}`unigram_entropy:.3f` nats: {glue:text}`context_verdict`.
# {glue:md}`training_md`
#
# ## Greedy samples
#
# A few greedy continuations per seed: the seeds agree on the register of the corpus, not on the words.

# %%
prompts = ["The President said that", "And the LORD spake unto", "It is a truth universally"]
rows = []
for source in prof.members():
    try:
        model = un.load_model(source, device=device, revision=prof.revision)
    except un.UserError as e:
        print(f"cannot load {source}: {e}")
        continue
    name = os.path.basename(str(source))
    for p in prompts:
        out = model.generate(p, max_new_tokens=n_sample_tokens, do_sample=False, verbose=False)
        rows.append({"model": name, "prompt": p, "continuation": out[len(p):]})
samples = pd.DataFrame(rows)
with pd.option_context("display.max_colwidth", 200):
    display(samples)

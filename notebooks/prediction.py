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
# The paper's section 5.1 (figures 5, 6 and 22-24) reads a neuron's direct effect on the next-token
# logits from its weights alone: the composition of its output weight with the unembedding,
# $c_v = \cos(w_{out}, W_U[:, v])$ for every token $v$ (processed weights: LayerNorm folded, unembedding
# centred). A neuron whose $c_v$ has a heavy right tail (high kurtosis, positive skew) raises the logits of
# a few tokens: a *prediction* neuron. A heavy left tail (high kurtosis, negative skew) lowers them: a
# *suppression* neuron. A large variance splits the vocabulary into two halves, one raised and one
# lowered: a *partition* neuron. The paper's rules: prediction = `vocab_kurt` > 10 and `vocab_skew` > 0,
# suppression = `vocab_kurt` > 10 and `vocab_skew` < 0, partition = `vocab_var` > 0.005. Its claims:
# prediction neurons appear after mid-depth, and suppression neurons dominate the last layers.

# %% tags=["parameters"]
profile = "smoke"       # a profiles/<name>.yaml
device = "cpu"          # cuda on a GPU
overrides = ""          # space-separated profile overrides, as in make book SET
kurt_threshold = 10.0   # vocab_kurt above which a neuron predicts or suppresses (the paper: 10)
partition_var = 0.005   # vocab_var above which a neuron partitions the vocabulary (the paper: 0.005)
top_kurt_pct = 5.0      # with too few neurons above kurt_threshold, the top percent by vocab_kurt instead
n_tail = 12             # tokens listed at each tail
n_ensemble = 3          # neurons per token class and direction
n_class_tokens = 50000  # held-out tokens for the class activations, at most analysis.n_tokens
threshold = 0.5         # excess correlation of a universal neuron (or control), as in the properties chapter
top_pct = 2.0           # the stand-in group when fewer than min_universal neurons are universal
min_universal = 10

# %%
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from IPython.display import Markdown
from myst_nb import glue

import universal_neurons as un
from universal_neurons.plotting import show
from universal_neurons import properties as P
from universal_neurons import universality as U
from universal_neurons.data import analysis_rows



prof = un.load_profile(profile, overrides.split())
props = P.compute_properties(prof, device=device, progress=False)
table = props.table
ref_name = props.info["reference"]
model = un.load_model(props.info["models"][0], device=device, revision=prof.revision)
tok = model.tokenizer
n_layers, d_model = model.cfg.n_layers, model.cfg.d_model
scaled_var = partition_var * 1024 / d_model  # the paper set 0.005 for GPT2-medium (d_model 1024)
table = table.assign(prediction=(table["vocab_kurt"] > kurt_threshold) & (table["vocab_skew"] > 0),
                     suppression=(table["vocab_kurt"] > kurt_threshold) & (table["vocab_skew"] < 0),
                     partition=table["vocab_var"] > partition_var, partition_scaled=table["vocab_var"] > scaled_var)
ref = table[table["model"] == ref_name].reset_index(drop=True)
n_models = table["model"].nunique()
print(prof.cfg["description"])
print(f"{n_models} models, {n_layers} layers, d_model {d_model}, d_vocab {model.cfg.d_vocab}")

# %%
kinds = ["prediction", "suppression", "partition", "partition_scaled"]
glue("pred_n_models", n_models, display=False)
glue("pred_d_model", d_model, display=False)
glue("pred_scaled_var", scaled_var, display=False)
glue("pred_random_var", 1 / d_model, display=False)
glue("pred_kurt_max", float(table["vocab_kurt"].max()), display=False)
for k in kinds:
    glue(f"pred_n_{k}", int(ref[k].sum()), display=False)
    glue(f"pred_all_{k}", int(table[k].sum()), display=False)

# %% [markdown]
# In the reference model {glue:text}`pred_n_prediction` neurons are prediction neurons,
# {glue:text}`pred_n_suppression` suppression neurons and {glue:text}`pred_n_partition` partition
# neurons ({glue:text}`pred_all_prediction`, {glue:text}`pred_all_suppression` and
# {glue:text}`pred_all_partition` over all {glue:text}`pred_n_models` models of the profile). The largest
# vocabulary kurtosis of any neuron is {glue:text}`pred_kurt_max:.1f`.
#
# Two cautions about scale. For a random direction in $d$ dimensions the cosines have variance about
# $1/d$: here $d_{model}$ = {glue:text}`pred_d_model`, so {glue:text}`pred_random_var:.4f`, while the
# paper's 0.005 was set for GPT2-medium ($1/1024 \approx 0.001$). We therefore also count partition
# neurons above the same multiple of $1/d_{model}$, {glue:text}`pred_scaled_var:.4f`
# ({glue:text}`pred_n_partition_scaled` neurons in the reference). And the kurtosis of $c_v$ depends on
# how many tokens a neuron singles out compared with the vocabulary size: a small vocabulary and a short
# training leave few heavy tails.
#
# ## The strongest examples (paper figure 5)
#
# The distribution of $c_v$ over the vocabulary for the reference's neuron with the largest kurtosis and
# positive skew (the strongest prediction candidate), the largest kurtosis and negative skew (suppression)
# and the largest variance (partition), with the tokens at both tails.

# %%
examples = {"prediction": ref[ref["vocab_skew"] > 0].nlargest(1, "vocab_kurt"),
            "suppression": ref[ref["vocab_skew"] < 0].nlargest(1, "vocab_kurt"),
            "partition": ref.nlargest(1, "vocab_var")}


def token_text(i):
    return repr(tok.decode([int(i)])) if i < len(tok) else f"<unused id {i}>"


fig, axes = plt.subplots(1, 3, figsize=(13, 3.5))
tails, notes = [], []
for ax, (kind, r) in zip(axes, examples.items()):
    r = r.iloc[0]
    c = P.vocab_cosines(model, int(r["layer"]), [int(r["neuron"])])[0]
    order = np.argsort(c)
    ax.hist(c, bins=80, color={"prediction": "C2", "suppression": "C3", "partition": "C0"}[kind], log=True)
    ax.set(xlabel="cos(w_out, W_U[:, v])", ylabel="tokens",
           title=f"{kind}: L{int(r['layer'])}.{int(r['neuron'])}\nkurt {r['vocab_kurt']:.1f}, skew "
                 f"{r['vocab_skew']:.2f}, var {r['vocab_var']:.4f}")
    tails.append({"kind": kind, "neuron": f"L{int(r['layer'])}.{int(r['neuron'])}",
                  "highest c_v": " ".join(token_text(i) for i in order[::-1][:n_tail]),
                  "lowest c_v": " ".join(token_text(i) for i in order[:n_tail])})
    passes = bool(r[kind])
    notes.append(f"the {kind} example {'passes' if passes else 'does not pass'} the paper's rule")
show(fig)
with pd.option_context("display.max_colwidth", 400):
    display(pd.DataFrame(tails).set_index("kind"))
glue("pred_examples_md", Markdown("; ".join(notes).capitalize() + "."), display=False)

# %% [markdown]
# {glue:md}`pred_examples_md` The paper's examples in GPT2-medium-a: L19.1169 predicts years, L23.2042
# suppresses the open parenthesis, L18.3483 partitions tokens by whether they start with a space.
#
# ## Percentiles by layer (paper figure 6)
#
# Per layer, the 5th, 10th, 50th, 90th and 95th percentiles of `vocab_kurt` and `vocab_skew` over the
# layer's neurons: the line is the mean over the models of the profile, the band their minimum to maximum.

# %%
qs = [5, 10, 50, 90, 95]
per = (table.groupby(["model", "layer"])[["vocab_kurt", "vocab_skew"]].quantile([q / 100 for q in qs])
       .rename_axis(["model", "layer", "q"]).reset_index())
band = per.groupby(["layer", "q"])[["vocab_kurt", "vocab_skew"]].agg(["mean", "min", "max"])
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
for ax, col in zip(axes, ["vocab_kurt", "vocab_skew"]):
    for j, q in enumerate(qs):
        b = band.xs(q / 100, level="q")[col]
        ax.plot(b.index, b["mean"], marker="o", color=f"C{j}", label=f"{q}th")
        ax.fill_between(b.index, b["min"], b["max"], color=f"C{j}", alpha=0.2)
    ax.set(xlabel="layer", ylabel=col, title=f"{col} percentiles by layer ({n_models} models)",
           xticks=range(n_layers), yscale="log" if col == "vocab_kurt" else "linear")
    if col == "vocab_kurt":
        ax.axhline(kurt_threshold, color="k", ls=":", lw=1, label=f"threshold {kurt_threshold:g}")
    else:
        ax.axhline(0, color="k", lw=0.8)
ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1, 1))
show(fig)
mean_q = band.xs("mean", axis=1, level=1)  # [(layer, q), col]
half = n_layers // 2
p95 = mean_q["vocab_kurt"].xs(0.95, level="q")
late_up = bool(p95.iloc[half:].mean() > p95.iloc[:half].mean())
last = mean_q["vocab_skew"].xs(n_layers - 1, level="layer")
left_heavy = bool(-last[0.05] > last[0.95])
glue("pred_p95_early", float(p95.iloc[:half].mean()), display=False)
glue("pred_p95_late", float(p95.iloc[half:].mean()), display=False)
glue("pred_skew_p5_last", float(last[0.05]), display=False)
glue("pred_skew_p95_last", float(last[0.95]), display=False)
glue("pred_verdict_late", "holds" if late_up else "does not hold", display=False)
glue("pred_verdict_supp", "holds" if left_heavy else "does not hold", display=False)

# %% [markdown]
# Two readings of the paper's claims that need no threshold:
#
# - *Heavy-tailed (prediction-like) neurons appear after mid-depth*: the 95th percentile of `vocab_kurt`,
#   averaged over the models, is {glue:text}`pred_p95_early:.2f` in the first half of the layers and
#   {glue:text}`pred_p95_late:.2f` in the second half, so the claim {glue:text}`pred_verdict_late` here.
# - *Suppression dominates the last layer*: there the 5th percentile of `vocab_skew` is
#   {glue:text}`pred_skew_p5_last:.2f` and the 95th {glue:text}`pred_skew_p95_last:.2f`; a longer left
#   tail means more suppression than prediction, and the claim {glue:text}`pred_verdict_supp`.
#
# ## Skew of the high-kurtosis neurons in the last layers (paper figures 22-24)

# %%
late = table[table["layer"] >= half]
high = late["vocab_kurt"] > kurt_threshold
if high.sum() >= 10:
    high_md = (f"The {int(high.sum()):,} neurons of the second half of the layers (all models) with "
               f"`vocab_kurt` above {kurt_threshold:g}.")
else:
    cut = late.groupby("model")["vocab_kurt"].transform(lambda k: k.quantile(1 - top_kurt_pct / 100))
    high = late["vocab_kurt"] >= cut
    high_md = (f"Only {int((late['vocab_kurt'] > kurt_threshold).sum())} neurons of the second half of the layers "
               f"pass `vocab_kurt` > {kurt_threshold:g}, so this uses the top {top_kurt_pct:g}% by `vocab_kurt` of "
               f"each model's second-half layers instead ({int(high.sum()):,} neurons, all models).")
sel = late[high]
fig, ax = plt.subplots(figsize=(6.5, 3.5))
bins = np.linspace(sel["vocab_skew"].min(), sel["vocab_skew"].max(), 31)
for name, g in sel.groupby("model"):
    ax.hist(g["vocab_skew"], bins=bins, histtype="step", lw=1.5, label=name)
ax.axvline(0, color="k", lw=0.8)
ax.set(xlabel="vocab_skew", ylabel="neurons", title="Skew of high-kurtosis neurons, second half of the layers")
ax.legend(fontsize=7)
show(fig)
glue("pred_high_md", Markdown(high_md), display=False)
glue("pred_high_neg_pct", 100 * float((sel["vocab_skew"] < 0).mean()), display=False)

# %% [markdown]
# {glue:md}`pred_high_md` Of these, {glue:text}`pred_high_neg_pct:.0f`% have negative skew
# (suppression-like).
#
# ## Counts by layer
#
# Neurons per layer passing each rule, as the mean over the models with the minimum and maximum in
# brackets; `partition_scaled` uses the width-adjusted variance threshold.

# %%
counts = table.groupby(["model", "layer"])[kinds].sum()
agg = counts.groupby("layer").agg(["mean", "min", "max"])
display(pd.DataFrame({k: [f"{m:.1f} [{lo}-{hi}]" for m, lo, hi in agg[k].itertuples(index=False)] for k in kinds},
                     index=agg.index))
tot = counts.groupby("layer").sum()
if tot["prediction"].sum():
    late_share = tot["prediction"].iloc[half:].sum() / tot["prediction"].sum()
    count_md = (f"{100 * late_share:.0f}% of the prediction neurons sit in the second half of the layers, and the "
                f"last layer has {int(tot['suppression'].iloc[-1])} suppression against "
                f"{int(tot['prediction'].iloc[-1])} prediction neurons (all models).")
else:
    count_md = (f"No neuron passes the paper's prediction rule (`vocab_kurt` > {kurt_threshold:g}) in any model of "
                "this profile, so the counts cannot test the claims; the percentile curves above can.")
glue("pred_count_md", Markdown(count_md), display=False)
try:
    frame = P.neuron_frame(prof)
    if "excess_corr" in frame:
        live = frame[~frame["is_dead"]]
        group, label = P.universal_group(live, U.resolve_threshold(threshold, prof)[0], top_pct, min_universal)
        hk = int((live.loc[group, "vocab_kurt"] > kurt_threshold).sum())
        uni_md = (f"Among the {int(group.sum())} {label} neurons of the reference, {hk} have `vocab_kurt` above "
                  f"{kurt_threshold:g} (the paper: 289 of the 1,211 universal GPT2-medium neurons).")
    else:
        uni_md = "No universality table for this profile yet: run the universality chapter first."
except un.UserError as e:
    uni_md = f"No universality table: {e}"
glue("pred_uni_md", Markdown(uni_md), display=False)

# %% [markdown]
# {glue:md}`pred_count_md` {glue:md}`pred_uni_md`
#
# ## Token classes: the neurons that predict or suppress them
#
# For a few classes of tokens (numbers or years, tokens starting with a space, all-caps words, the open
# parenthesis, words ending in -ing: those the tokenizer has), each neuron of the reference gets a score,
# (mean $c_v$ over the class − mean over the other tokens) / standard deviation of $c_v$. The
# `n_ensemble` highest scores form the class's prediction ensemble, the lowest its suppression ensemble.
# Below, their post-activations on held-out tokens, split by whether the next token belongs to the class.

# %%
classes = P.token_classes(tok, model.cfg.d_vocab)
rows = analysis_rows(prof, progress=False)
n_tok = min(n_class_tokens, int(prof.cfg["analysis"]["n_tokens"]))
summary, long = [], []
if classes:
    scores = P.class_scores(model, classes)
    ens = [(name, role, int(scores.at[i, "layer"]), int(scores.at[i, "neuron"]), float(scores.at[i, name]))
           for name in classes for role, idx in (("prediction", scores[name].nlargest(n_ensemble).index),
                                                 ("suppression", scores[name].nsmallest(n_ensemble).index))
           for i in idx]
    pairs = sorted({(l, n) for _, _, l, n, _ in ens})
    acts, nxt = P.neuron_activations(model, rows.tokens, pairs, n_tok, prof.cfg["analysis"]["batch_size"], device)
    for name, role, l, n, score in ens:
        inside = classes[name][nxt]
        if inside.sum() < 20:  # too rare as a next token in this sample
            continue
        a = acts[:, pairs.index((l, n))]
        summary.append({"class": name, "role": role, "neuron": f"L{l}.{n}", "score": score,
                        "next in class": a[inside].mean(), "next not in class": a[~inside].mean(),
                        "class share of next tokens": inside.mean()})
        long.append(pd.DataFrame({"class": name, "neuron": f"L{l}.{n} ({role})", "activation": a,
                                  "next token": np.where(inside, "in class", "not in class")}))
summary = pd.DataFrame(summary)
if len(summary):
    summary["difference"] = summary["next in class"] - summary["next not in class"]
    display(summary.round(4))
    data = pd.concat(long, ignore_index=True)
    shown = list(summary["class"].unique())
    fig, axes = plt.subplots(len(shown), 1, figsize=(10, 2.6 * len(shown)), squeeze=False)
    for ax, name in zip(axes[:, 0], shown):
        sns.boxplot(data=data[data["class"] == name], x="neuron", y="activation", hue="next token",
                    hue_order=["in class", "not in class"], showfliers=False, ax=ax, palette=["C1", "0.7"])
        ax.set(title=f"class {name}", xlabel="")
        ax.legend(fontsize=7)
    show(fig)
    by_role = summary.groupby("role")["difference"].apply(lambda d: 100 * float((d > 0).mean()))
    class_md = (f"Over {len(shown)} classes and {n_tok:,} held-out tokens, "
                f"{by_role.get('prediction', float('nan')):.0f}% of the prediction-ensemble neurons and "
                f"{by_role.get('suppression', float('nan')):.0f}% of the suppression-ensemble neurons fire more "
                "(higher mean post-activation) when the next token is in the class.")
else:
    class_md = ("None of the token classes occurs often enough in this tokenizer and sample to build an "
                "ensemble.")
glue("pred_class_md", Markdown(class_md), display=False)
glue("pred_classes", ", ".join(classes) if classes else "none", display=False)

# %% [markdown]
# Classes found in this tokenizer: {glue:text}`pred_classes`. {glue:md}`pred_class_md` A neuron that
# writes a class's tokens up and fires before them is doing next-token prediction; a suppression neuron
# that also fires before them may be tempering a prediction made elsewhere in the model.

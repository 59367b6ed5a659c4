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
# # Scale: how universality changes with width, depth and training
#
# The paper finds 4.16% universal neurons in GPT2-small but 1.23% in GPT2-medium, and names the
# dependence on model size as an open question: no larger seeds were available to its authors. This
# chapter asks how the excess correlations of small zoos, far smaller than the paper's models, change
# with their width, depth and training, and where they stand against the paper's threshold of 0.5. A
# *sweep* trains one zoo per point of a grid of widths ($d_\text{model}$, $d_\text{mlp}$), depths and
# training budgets, all on the same corpus and tokenizer, and runs the universality analysis of the
# previous chapter on each: the reference seed against every other seed, and against an untrained model
# of the same shape (the noise floor). One zoo is also saved at several points during its training, to
# watch universality emerge.
#
# Every point is cached on its own (`python -m universal_neurons.sweep --profile sweep`), so the sweep can
# grow point by point. This page shows whichever points have been run, and lists those that have not.

# %% tags=["parameters"]
profile = "sweep"     # a sweep profile: profiles/sweep.yaml (CPU) or profiles/sweep-gpu.yaml
device = "cpu"        # cuda on a GPU
overrides = ""        # space-separated profile overrides, as in make book SET
sweep_dir = None      # folder of the sweep; None: artifacts/PROFILE
run_missing = False   # True: train and analyse the missing points first (hours on a CPU)
threshold = 0.5       # the paper's excess-correlation threshold

# %%
import math
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display
from myst_nb import glue

import universal_neurons as un
from universal_neurons.plotting import show
from universal_neurons import sweep as S
from universal_neurons import paper
from universal_neurons import universality as U



base = un.load_profile(profile, overrides.split())
if "grid" not in base.cfg:  # the book passes its PROFILE to every chapter; this one reads a sweep
    print(f"profile {profile!r} is not a sweep (no grid: section); this chapter shows the sweep profile")
    base = un.load_profile("sweep")
sw = S.expand(base, sweep_dir)
if run_missing:
    S.run_sweep(sw, device=device, threshold=threshold, progress=False)
res, res_source = S.results_for_book(sw)  # computed here, or the table shipped in results/
status = S.status(sw).assign(done=lambda t: t["point"].isin(set(res["point"]) if len(res) else set()))
print(base.cfg["description"])
print(f"results: {res_source}")
display(status)

missing = status.loc[~status["done"], "point"].tolist()
glue("n_points", len(status), display=False)
glue("n_done", int(status["done"].sum()), display=False)
glue("res_source", Markdown(f"The results on this page are {res_source}."), display=False)
if missing:
    missing_md = (f"**{len(missing)} of the {len(status)} points {'has' if len(missing) == 1 else 'have'} not been "
                  "run yet**: "
                  + ", ".join(f"`{m}`" for m in missing) + f". Run them with `python -m universal_neurons.sweep "
                  f"--profile {base.name}` (cached: finished points are kept); every number below is computed "
                  "from the finished points only.")
else:
    missing_md = "Every point of the grid has been run."
glue("missing_md", Markdown(missing_md), display=False)

# %% [markdown]
# The grid has {glue:text}`n_points` points, of which {glue:text}`n_done` are finished.
# {glue:md}`missing_md` {glue:md}`res_source`
#
# Each point's row `all` is the paper's statistic (the reference seed against all its partners: the
# partners' mean of the max correlation minus the mean baseline); the rows `p1`, `p2`, ... are the
# reference against one partner at a time, and give the seed-to-seed spread drawn as error bars below
# (from the lowest to the highest single-partner value). The row `control` is the reference against an
# untrained model of the same shape.
#
# ## A threshold that knows the scale
#
# The paper's threshold of 0.5 was set for GPT-2 models, whose universal neurons have baselines near 0.2
# (see below). In small dense models a random mixture of a layer's neurons already correlates strongly
# with a typical neuron (the median baselines below), which leaves little room above the baseline. Beside
# the paper's threshold we therefore report a *scale-aware* one: the
# 99.9th percentile of the excess correlation of the same reference neurons against the untrained control.
# A neuron above it correlates with a trained partner more than all but one in a thousand neurons
# correlate with an untrained one.

# %%
def show_rows(rows, cols):
    """Display results rows: shares in percent, the threshold columns named for the page."""
    table = rows[cols].copy()
    for c in ("share_universal", "share_above_control_q999", "share_above_0.4", "share_above_0.3"):
        if c in table:
            table[c] = 100 * table[c]
    display(table.rename(columns={"share_universal": f"% > {threshold}", "control_q999": "control q99.9",
                                  "share_above_control_q999": "% > control q99.9", "share_above_0.4": "% > 0.4",
                                  "share_above_0.3": "% > 0.3"}).round(3))


final = res[res["stage"] == "final"] if len(res) else res
have = len(final) > 0
if have:
    allp = final[final["pairing"] == "all"].copy()
    show_rows(allp, ["point", "d_model", "d_mlp", "n_layer", "parameters", "tokens", "heldout_loss", "share_universal",
                     "control_q999", "share_above_control_q999", "excess_q50", "excess_q99", "excess_max",
                     "mean_corr_median", "mean_baseline_median"])
    threshold_md = (
        f"Over the finished points, {int(allp['n_universal'].sum()):,} reference neurons in all exceed the paper's "
        f"threshold of {threshold:g} (at most {100 * allp['share_universal'].max():.2f}% of a zoo's neurons). The "
        f"untrained control's 99.9th percentile lies between {allp['control_q999'].min():.3f} and "
        f"{allp['control_q999'].max():.3f}, and between {100 * allp['share_above_control_q999'].min():.1f}% and "
        f"{100 * allp['share_above_control_q999'].max():.1f}% of the neurons exceed it.")
else:
    threshold_md = "No point of the sweep has been run yet: nothing to show."
    print(threshold_md)
glue("threshold_md", Markdown(threshold_md), display=False)

# %% [markdown]
# {glue:md}`threshold_md`
#
# ## Against width, depth, training tokens and held-out loss
#
# Each row of figures below puts one axis on the horizontal: the MLP width $d_\text{mlp}$, the number of
# layers, the training tokens per model, and the held-out loss (nats per token; lower is a better model).
# Panels: the share of neurons above the paper's 0.5 and above the control's 99.9th percentile; the 50th,
# 90th and 99th percentiles of the excess correlation; the median over neurons of the mean best-partner
# correlation and of the mean baseline. Points that differ only in the plotted axis are joined by lines.
# Open black symbols mark the paper's three models where the axis applies (see the next section).

# %%
PAPER = paper.MODELS.copy()  # widths, depths, shares, token estimates (see the text)
paper_tabs = paper.universal_tables()
for m, t in paper_tabs.items():
    PAPER.loc[PAPER["model"] == m, "univ_corr"] = float(t["mean_corr"].median())
    PAPER.loc[PAPER["model"] == m, "univ_base"] = float(t["mean_baseline"].median())

AXES = [("d_mlp", "MLP width d_mlp", 2), ("n_layer", "layers", None), ("tokens", "training tokens", 10),
        ("heldout_loss", "held-out loss (nats/token)", None)]  # (column, label, log base or None)
OTHERS = {"d_mlp": ["n_layer", "budget_tokens"], "n_layer": ["d_mlp", "budget_tokens"],
          "tokens": ["d_mlp", "n_layer"], "heldout_loss": ["n_layer"]}


def spread(rows, col):
    """Per point: (min, max) of `col` over the single-partner pairings."""
    p = rows[rows["pairing"].str.match(r"p\d+$")]
    return p.groupby("point")[col].agg(["min", "max"])


def errbar(ax, x, y, lo_hi, **kw):
    yerr = np.vstack([np.clip(y - lo_hi["min"].to_numpy(), 0, None), np.clip(lo_hi["max"].to_numpy() - y, 0, None)])
    ax.errorbar(x, y, yerr=yerr, capsize=2, **kw)


def plot_axis(rows, axis, label, log, with_paper=True):
    """One row of three panels for one axis; rows: results (final or snapshot stage)."""
    a = rows[rows["pairing"] == "all"].sort_values(axis)
    fig, axs = plt.subplots(1, 3, figsize=(12, 3.4))
    groups = a.groupby(OTHERS[axis]) if OTHERS[axis] else [((), a)]
    for i, (key, g) in enumerate(groups):
        tag = ", ".join(f"{k}={v:g}" for k, v in zip(OTHERS[axis], np.atleast_1d(key)))
        color = f"C{i % 10}"
        x = g[axis].to_numpy(float)
        for col, ls, mk, name in (("share_universal", "-", "o", f"> {threshold}"),
                                  ("share_above_control_q999", "--", "x", "> control q99.9")):
            errbar(axs[0], x, 100 * g[col].to_numpy(), 100 * spread(rows, col).loc[g["point"]], color=color, ls=ls,
                   marker=mk, label=f"{name} ({tag})" if tag else name)
        for col, ls, mk in (("excess_q50", ":", "v"), ("excess_q90", "--", "s"), ("excess_q99", "-", "o")):
            errbar(axs[1], x, g[col].to_numpy(), spread(rows, col).loc[g["point"]], color=color, ls=ls, marker=mk,
                   label=f"{col[-3:]} ({tag})" if tag else col[-3:])
        for col, ls, mk, name in (("mean_corr_median", "-", "o", "mean_corr"),
                                  ("mean_baseline_median", "--", "x", "baseline")):
            errbar(axs[2], x, g[col].to_numpy(), spread(rows, col).loc[g["point"]], color=color, ls=ls, marker=mk,
                   label=f"{name} ({tag})" if tag else name)
    if with_paper and axis in PAPER:
        for _, r in PAPER.iterrows():
            axs[0].plot(r[axis], 100 * r["share"], r["marker"], mfc="none", color="k", label=r["model"])
            if "univ_corr" in r and not math.isnan(r.get("univ_corr", float("nan"))):
                axs[2].plot(r[axis], r["univ_corr"], r["marker"], mfc="none", color="k",
                            label=f"{r['model']}, universal only")
                axs[2].plot(r[axis], r["univ_base"], r["marker"], mfc="none", color="grey")
    axs[0].axhline(0, color="grey", lw=0.5)
    axs[1].axhline(threshold, color="grey", lw=0.8, ls="-.")
    axs[0].set(xlabel=label, ylabel="% of live neurons", title="share above a threshold")
    axs[1].set(xlabel=label, ylabel="excess correlation", title="excess quantiles")
    axs[2].set(xlabel=label, ylabel="median over neurons", title="mean_corr and baseline")
    for ax in axs:
        if log:
            ax.set_xscale("log", base=log)
        ax.legend(fontsize=6)
    return fig


if have:
    for axis, label, log in AXES:
        if axis != "heldout_loss" and allp[axis].nunique() < 2 and not (axis in PAPER and len(paper_tabs)):
            print(f"{label}: only one value among the finished points ({allp[axis].iloc[0]:g})")
        show(plot_axis(final, axis, label, log, with_paper=axis != "heldout_loss"))
else:
    print("No finished point: no figures.")

# %% [markdown]
# ## Where the paper's models sit
#
# The paper's shares of universal neurons (its section 4.1) are 4.16% for GPT2-small-a, 1.23% for
# GPT2-medium-a and 1.26% for Pythia-160m. Their widths and depths are exact; their training tokens are
# estimates that the paper does not state: the Stanford CRFM GPT-2 runs took 400,000 steps of 512
# sequences of 1,024 tokens (about $2\times10^{11}$ tokens of OpenWebText), Pythia about $3\times10^{11}$
# tokens of the Pile. Their held-out losses are on another corpus and tokenizer, so they are left off the
# loss axis. The paper publishes per-neuron tables only for its universal neurons, so its median
# mean_corr and baseline (open black and grey symbols) describe those neurons, not all neurons as ours do.
# {glue:md}`paper_md`

# %%
rows = [{"model": m, "universal neurons": len(t), "median mean_corr": t["mean_corr"].median(),
         "median mean_baseline": t["mean_baseline"].median(), "median excess": t["excess_corr"].median()}
        for m, t in paper_tabs.items()]
display(pd.DataFrame(rows).round(3))
paper_md = (f"In the published tables the universal neurons' median baseline is "
            + ", ".join(f"{r['median mean_baseline']:.2f} ({r['model']})" for r in rows)
            + ", against a median mean_corr of "
            + ", ".join(f"{r['median mean_corr']:.2f}" for r in rows) + ".")
if have:
    paper_md += (f" In the finished points of this sweep the median baseline over all neurons is "
                 f"{allp['mean_baseline_median'].min():.2f} to {allp['mean_baseline_median'].max():.2f}.")
glue("paper_md", Markdown(paper_md), display=False)

# %% [markdown]
# ## The trend and its uncertainty
#
# A least-squares fit over the finished points' single-partner pairings of the 99th percentile of the
# excess correlation, and of the share of neurons above the control's 99.9th percentile, against
# $\log_2$ of the training tokens, of $d_\text{mlp}$ and the number of layers (each only where the finished
# points have at least two values of it). The slopes are per doubling (per layer for depth), with
# standard errors from the fit's residuals. The pairings share a reference seed and so are not
# independent: read the standard errors as lower bounds.
#
# {glue:md}`trend_md`


# %%
def fit(rows, y):
    """OLS of `y` on the axes that vary; returns {axis: (slope, se)} and the number of rows."""
    p = rows[rows["pairing"].str.match(r"p\d+$")].dropna(subset=[y])
    xs = {"tokens": np.log2(p["tokens"].to_numpy(float)), "d_mlp": np.log2(p["d_mlp"].to_numpy(float)),
          "n_layer": p["n_layer"].to_numpy(float)}
    xs = {k: v for k, v in xs.items() if len(np.unique(v)) > 1}
    if not xs or len(p) <= len(xs) + 1:
        return {}, len(p)
    X = np.column_stack([np.ones(len(p)), *xs.values()])
    yv = p[y].to_numpy(float)
    beta, *_ = np.linalg.lstsq(X, yv, rcond=None)
    resid = yv - X @ beta
    dof = len(p) - X.shape[1]
    cov = (resid @ resid / dof) * np.linalg.pinv(X.T @ X)
    return {k: (beta[i + 1], math.sqrt(max(cov[i + 1, i + 1], 0))) for i, k in enumerate(xs)}, len(p)


UNITS = {"tokens": "per doubling of the training tokens", "d_mlp": "per doubling of the width",
         "n_layer": "per added layer"}
lines = []
if have:
    for y, name, scale, unit in (("excess_q99", "The 99th percentile of the excess correlation", 1, ""),
                                 ("share_above_control_q999", "The share above the control's 99.9th percentile",
                                  100, " percentage points")):
        slopes, n = fit(final, y)
        if not slopes:
            lines.append(f"{name}: too few finished points with different settings for a fit ({n} pairings).")
            continue
        parts = []
        for k, (b, se) in slopes.items():
            verdict = "rises" if b - 2 * se > 0 else "falls" if b + 2 * se < 0 else "shows no clear change"
            parts.append(f"{verdict} {UNITS[k]} ({scale * b:+.3f} ± {scale * se:.3f}{unit})")
        lines.append(f"{name} " + "; ".join(parts) + f" — {n} single-partner pairings of "
                     f"{final['point'].nunique()} points.")
    lines.append("A change counts as clear when the slope is more than two standard errors from zero.")
else:
    lines.append("No point has been run yet, so no trend can be estimated.")
trend_md = " ".join(lines)
glue("trend_md", Markdown(trend_md), display=False)
print(trend_md)

# %% [markdown]
# ## How the release zoo's recipe was chosen
#
# The default profile, which the other chapters analyse, is the release zoo: trained once and shipped in the
# repository (`zoo/release/`): `make book` checks its checksums and never trains it. Its recipe was chosen
# by measurement on 2-seed zoos of the same 2-layer, $d_\text{model}$ = 128 model with a 4,096-entry BPE
# (`profiles/recipe.yaml`: reference seed 0 against seed 1 alone, so the tails are wider than a mean over
# several partners gives), one setting changed at a time. {glue:md}`recipe_md`

# %%
rsw = S.load_sweep("recipe")
rres, rsource = S.results_for_book(rsw)
if len(rres):
    r_all = rres[(rres["stage"] == "final") & (rres["pairing"] == "all")].copy()
    show_rows(r_all, ["point", "d_mlp", "schedule", "lr", "tokens", "heldout_loss", "n_universal", "share_universal",
                      "share_above_0.4", "share_above_0.3", "excess_q99", "excess_max", "mean_corr_median",
                      "mean_baseline_median", "control_q999"])
    best = r_all.sort_values("excess_q99").iloc[-1]
    recipe_md = (f"{len(r_all)} candidates ({rsource}). The highest 99th percentile of the excess correlation, "
                 f"{best['excess_q99']:.3f}, is that of `{best['point']}` (d_mlp {best['d_mlp']:g}, {best['schedule']} "
                 f"schedule; held-out loss {best['heldout_loss']:.2f}); the README's section on the default profile "
                 "gives the reasoning and the earlier probes.")
else:
    recipe_md = f"The candidates' table is missing ({rsource})."
glue("recipe_md", Markdown(recipe_md), display=False)

# %% [markdown]
# ## Where the book's zoos sit
#
# The default zoo (the shipped release zoo) and the small zoo (the former default, `PROFILE=small`) have
# more training tokens and more held-out tokens than the sweep's points, so they are shown beside them,
# not on their curves: their universality chapters use all their partners. {glue:md}`default_md`

# %%
SIDE = ["d_mlp", "n_layer", "tokens", "partners", "n_tokens", "share_universal", "control_q999",
        "share_above_control_q999", "excess_q99", "excess_max", "mean_corr_median", "mean_baseline_median"]
side = {}  # zoo -> its row, in results.csv's columns
for zoo_name in ("default", "small"):
    try:
        zprof = un.load_profile(zoo_name)
        zres = U.load_results(zprof.tables_dir)
    except un.UserError as e:
        print(f"{zoo_name} profile: {e}")
        continue
    zlive = zres.neurons.loc[~zres.neurons["is_dead"], "excess_corr"]
    try:
        zq = U.resolve_threshold("control", zprof)[0]
    except un.UserError:  # no control table: the scale-aware columns stay empty
        zq = float("nan")
    side[zoo_name] = {**zres.info["summary"], "d_mlp": zprof.cfg["model"]["d_mlp"],
                      "n_layer": zprof.cfg["model"]["n_layer"], "tokens": zprof.cfg["train"]["tokens"],
                      "partners": len(zres.info["partners"]), "n_tokens": zres.info["n_tokens"],
                      "control_q999": zq, "share_above_control_q999": float((zlive > zq).mean())}
zoo_rows = dict(side)
if have:
    top = allp.sort_values(["d_mlp", "tokens"]).iloc[-1]
    side[top["point"]] = {**top.to_dict(), "partners": len(str(top["partners"]).split())}
if zoo_rows:
    show_rows(pd.DataFrame.from_dict(side, orient="index"), SIDE)
    default_md = " ".join(
        f"The {name} zoo's 99th percentile of the excess correlation is {d['excess_q99']:.3f} and its largest "
        f"{d['excess_max']:.3f}; {100 * d['share_universal']:.2f}% of its neurons pass the paper's {threshold:g} "
        f"and {100 * d['share_above_control_q999']:.2f}% its own control's 99.9th percentile ({d['control_q999']:.3f})."
        for name, d in zoo_rows.items())
    if have:
        default_md += (f" The sweep's widest, longest-trained point `{top['point']}` reaches "
                       f"{top['excess_q99']:.3f} and {top['excess_max']:.3f}.")
else:
    default_md = ("Neither the default nor the small profile's universality tables are on this machine "
                  "(`make book PROFILE=...` computes them), so they are not shown here.")
glue("default_md", Markdown(default_md), display=False)

# %% [markdown]
# ## During training
#
# One zoo of the sweep was also saved part of the way through its training (the same run, stopped at a
# checkpoint, exported and resumed, so the learning-rate schedule is the real one). The same statistics
# against the tokens seen so far, ending at the trained zoo; the held-out loss of a snapshot is the one
# logged during training, on a quarter of the held-out tokens of the final measurement.
# {glue:md}`snap_md`

# %%
snap_pid = sw.snapshot_point
stages = res[(res["point"] == snap_pid)] if len(res) and snap_pid else pd.DataFrame()
if len(stages):
    s_all = stages[stages["pairing"] == "all"].sort_values("tokens")
    display(s_all[["fraction", "tokens", "heldout_loss", "share_universal", "share_above_control_q999",
                   "excess_q50", "excess_q99", "mean_corr_median", "mean_baseline_median", "control_q999"]].round(3))
    fig = plot_axis(stages.assign(point=stages["point"] + "@" + stages["tokens"].astype(str),
                                  n_layer=stages["n_layer"]), "tokens", "tokens seen so far", 10, with_paper=False)
    show(fig)
    first, last = s_all.iloc[0], s_all.iloc[-1]
    snap_md = (f"From {first['tokens']:,.0f} to {last['tokens']:,.0f} tokens of point `{snap_pid}`, the 99th "
               f"percentile of the excess correlation goes from {first['excess_q99']:.3f} to "
               f"{last['excess_q99']:.3f}, the median baseline from {first['mean_baseline_median']:.3f} to "
               f"{last['mean_baseline_median']:.3f} and the median mean_corr from {first['mean_corr_median']:.3f} "
               f"to {last['mean_corr_median']:.3f}.")
else:
    snap_md = (f"The snapshot zoo (point `{snap_pid}`) has not been run yet." if snap_pid
               else "This sweep saves no snapshots during training.")
    print(snap_md)
glue("snap_md", Markdown(snap_md), display=False)

# %% [markdown]
# ## A larger grid on a GPU
#
# `profiles/sweep-gpu.yaml` extends the grid to GPT2-small's width ($d_\text{mlp}$ = 3,072), 12 layers
# and up to 26M training tokens, sized for one GPU (`python -m universal_neurons.sweep --profile sweep-gpu
# --device cuda`, then rebuild the book). {glue:md}`gpu_md`

# %%
gpu_md = "This page shows that grid."
if base.name != "sweep-gpu":
    gsw = S.expand(un.load_profile("sweep-gpu"))
    gres = S.read_results(gsw)
    if len(gres):
        g = gres[(gres["stage"] == "final") & (gres["pairing"] == "all")]
        display(g[["point", "d_mlp", "n_layer", "tokens", "heldout_loss", "share_universal", "share_above_control_q999",
                   "excess_q99", "excess_max", "mean_corr_median", "mean_baseline_median"]].round(3))
        gpu_md = (f"{len(g)} of its {len(gsw.points)} points have been run (the device of each is recorded in its "
                  "`tables/universality.json`); their largest excess correlation is "
                  f"{g['excess_max'].max():.3f}, and {int(g['n_universal'].sum()):,} neurons pass {threshold:g}.")
    else:
        gpu_md = ("None of its points has been run on the machine that built this book (it had no GPU), so this "
                  "page makes no claim about models wider than d_mlp = 512.")
glue("gpu_md", Markdown(gpu_md), display=False)

# %% [markdown]
# ## Reading the results
#
# The definitions are the paper's throughout: only the models differ. Held-out losses are on this
# corpus's held-out split, so they compare the sweep's points with each other, not with the paper's
# models. The error bars are the spread over single partners of one reference seed; swapping the
# reference would add another source of spread that this page does not measure.

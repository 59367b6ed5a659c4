"""Scale (the paper's open question on model size, section 4.1's shares): universality against width, depth and
training tokens, from a sweep of small zoos; the trend per doubling, the paper's models, the recipe and the zoos."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from IPython.display import Markdown

from ...core.errors import UserError
from ...config.profile import load_profile
from ...core import paper
from .. import plotting
from ...runs import neuron_tables
from ...runs import sweep
from ...runs import sweep_results
from ...measures import verdicts
from .. import words
from ..publish import Chapter
from ...runs.selection import resolve_threshold

# Each axis figure: (column, label, log base or None); the columns that stay fixed along a drawn line.
AXES = {"width": ("d_mlp", "MLP width d_mlp", 2), "depth": ("n_layer", "layers", None),
        "tokens": ("tokens", "training tokens", 10), "loss": ("heldout_loss", "held-out loss (nats/token)", None)}
OTHERS = {"d_mlp": ["n_layer", "budget_tokens"], "n_layer": ["d_mlp", "budget_tokens"],
          "tokens": ["d_mlp", "n_layer"], "heldout_loss": ["n_layer"]}
UNITS = {"tokens": "per doubling of the training tokens", "d_mlp": "per doubling of the width",
         "n_layer": "per added layer"}
TRENDS = (("excess_q99", "The 99th percentile of the excess correlation", 1, ""),
          ("share_above_control_q999", "The share above the control's 99.9th percentile", 100, " percentage points"))
CLEAR = 2.0  # a slope is a clear change when it lies more than CLEAR standard errors from zero

FINISHED = ["point", "d_model", "d_mlp", "n_layer", "parameters", "tokens", "heldout_loss", "share_universal",
            "control_q999", "share_above_control_q999", "excess_q50", "excess_q99", "excess_max", "mean_corr_median",
            "mean_baseline_median"]
RECIPE = ["point", "d_mlp", "schedule", "lr", "tokens", "heldout_loss", "n_universal", "share_universal",
          "share_above_0.4", "share_above_0.3", "excess_q99", "excess_max", "mean_corr_median", "mean_baseline_median",
          "control_q999"]
ZOOS = ["d_mlp", "n_layer", "tokens", "partners", "n_tokens", "share_universal", "control_q999",
        "share_above_control_q999", "excess_q99", "excess_max", "mean_corr_median", "mean_baseline_median"]
SNAPSHOTS = ["fraction", "tokens", "heldout_loss", "share_universal", "share_above_control_q999", "excess_q50",
             "excess_q99", "mean_corr_median", "mean_baseline_median", "control_q999"]
GPU = ["point", "d_mlp", "n_layer", "tokens", "heldout_loss", "share_universal", "share_above_control_q999",
       "excess_q99", "excess_max", "mean_corr_median", "mean_baseline_median"]
PAPER_MODELS = {"small": "GPT2-small-a", "medium": "GPT2-medium-a", "pythia": "Pythia-160m"}  # glue suffixes
SHARES = ("share_universal", "share_above_control_q999", "share_above_0.4", "share_above_0.3")


# ---- the trend --------------------------------------------------------------------------------------------
def single_partner(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows `p1`, `p2`, ...: the reference seed against one partner at a time."""
    return rows[rows["pairing"].str.match(r"p\d+$")]


def fit_trend(rows: pd.DataFrame, y: str) -> tuple[dict[str, tuple[float, float]], int]:
    """OLS of `y` over the single-partner pairings on log2 tokens, log2 d_mlp and n_layer (those that vary):
    {axis: (slope, standard error)} from s^2 (X^T X)^-1, and the number of pairings."""
    p = single_partner(rows).dropna(subset=[y])
    xs = {"tokens": np.log2(p["tokens"].to_numpy(float)), "d_mlp": np.log2(p["d_mlp"].to_numpy(float)),
          "n_layer": p["n_layer"].to_numpy(float)}
    xs = {k: v for k, v in xs.items() if len(np.unique(v)) > 1}
    if not xs or len(p) <= len(xs) + 1:
        return {}, len(p)
    X = np.column_stack([np.ones(len(p)), *xs.values()])
    yv = p[y].to_numpy(float)
    beta, *_ = np.linalg.lstsq(X, yv, rcond=None)
    resid = yv - X @ beta
    cov = (resid @ resid / (len(p) - X.shape[1])) * np.linalg.pinv(X.T @ X)
    return {k: (float(beta[i + 1]), math.sqrt(max(cov[i + 1, i + 1], 0))) for i, k in enumerate(xs)}, len(p)


def trend_verdict(slope: float, se: float) -> str:
    """'rises' / 'falls' when the slope is more than two standard errors from zero, else no clear change."""
    return "rises" if slope - CLEAR * se > 0 else "falls" if slope + CLEAR * se < 0 else "shows no clear change"


def trend_sentence(final: pd.DataFrame) -> str:
    """The fitted slopes of the excess correlation's 99th percentile and of the share above the control."""
    if not len(final):
        return "No point has been run yet, so no trend can be estimated."
    lines = []
    for y, name, scale, unit in TRENDS:
        slopes, n = fit_trend(final, y)
        if not slopes:
            lines.append(f"{name}: too few finished points with different settings for a fit ({n} pairings).")
            continue
        parts = [f"{trend_verdict(b, se)} {UNITS[k]} ({scale * b:+.3f} ± {scale * se:.3f}{unit})"
                 for k, (b, se) in slopes.items()]
        lines.append(f"{name} " + "; ".join(parts) + f" — {n} single-partner pairings of "
                     f"{final['point'].nunique()} points.")
    lines.append("A change counts as clear when the slope is more than two standard errors from zero.")
    return " ".join(lines)


# ---- sentences --------------------------------------------------------------------------------------------
def missing_sentence(missing: list[str], n_points: int, sweep_name: str) -> str:
    """Which points of the grid have not been run, and how to run them."""
    if not missing:
        return "Every point of the grid has been run."
    return (f"**{len(missing)} of the {n_points} points {'has' if len(missing) == 1 else 'have'} not been run yet**: "
            + ", ".join(f"`{m}`" for m in missing) + f". Run them with `python -m universal_neurons sweep "
            f"--profile {sweep_name}` (cached: finished points are kept); every number below is computed "
            "from the finished points only.")


def threshold_sentence(allp: pd.DataFrame, threshold: float) -> str:
    """How many neurons pass the paper's threshold, and where the control's 99.9th percentile lies."""
    if not len(allp):
        return "No point of the sweep has been run yet: nothing to show."
    return (f"Over the finished points, {int(allp['n_universal'].sum()):,} reference neurons in all exceed the "
            f"paper's threshold of {threshold:g} (at most {100 * allp['share_universal'].max():.2f}% of a zoo's "
            f"neurons). The untrained control's 99.9th percentile lies between {allp['control_q999'].min():.3f} and "
            f"{allp['control_q999'].max():.3f}, and between {100 * allp['share_above_control_q999'].min():.1f}% and "
            f"{100 * allp['share_above_control_q999'].max():.1f}% of the neurons exceed it.")


def paper_table(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per published model: its universal neurons and their median mean_corr, baseline and excess."""
    return pd.DataFrame([{"model": m, "universal neurons": len(t), "median mean_corr": t["mean_corr"].median(),
                          "median mean_baseline": t["mean_baseline"].median(),
                          "median excess": t["excess_corr"].median()} for m, t in tables.items()])


def paper_sentence(published: pd.DataFrame, allp: pd.DataFrame) -> str:
    """The published universal neurons' median baseline and mean_corr, against this sweep's baselines."""
    rows = published.to_dict("records")
    text = ("In the published tables the universal neurons' median baseline is "
            + ", ".join(f"{r['median mean_baseline']:.2f} ({r['model']})" for r in rows)
            + ", against a median mean_corr of " + ", ".join(f"{r['median mean_corr']:.2f}" for r in rows) + ".")
    if len(allp):
        text += (f" In the finished points of this sweep the median baseline over all neurons is "
                 f"{allp['mean_baseline_median'].min():.2f} to {allp['mean_baseline_median'].max():.2f}.")
    return text


def recipe_sentence(r_all: pd.DataFrame, source: str) -> str:
    """The release recipe's candidates and the one with the highest 99th percentile of the excess."""
    if not len(r_all):
        return f"The candidates' table is missing ({source})."
    best = r_all.sort_values("excess_q99").iloc[-1]
    return (f"{len(r_all)} candidates ({source}). The highest 99th percentile of the excess correlation, "
            f"{best['excess_q99']:.3f}, is that of `{best['point']}` (d_mlp {best['d_mlp']:g}, {best['schedule']} "
            f"schedule; held-out loss {best['heldout_loss']:.2f}); the README's section on the default profile "
            "gives the reasoning and the earlier probes.")


def zoos_sentence(zoos: dict[str, dict], top: dict | None, threshold: float) -> str:
    """The default and small zoos' tails and shares (those whose tables exist), beside the sweep's top point."""
    if not zoos:
        return ("Neither the default nor the small profile's universality tables are on this machine "
                "(`make book PROFILE=...` computes them), so they are not shown here.")
    text = " ".join(
        f"The {name} zoo's 99th percentile of the excess correlation is {d['excess_q99']:.3f} and its largest "
        f"{d['excess_max']:.3f}; {100 * d['share_universal']:.2f}% of its neurons pass the paper's {threshold:g} "
        f"and {100 * d['share_above_control_q999']:.2f}% its own control's 99.9th percentile ({d['control_q999']:.3f})."
        for name, d in zoos.items())
    if top is not None:
        text += (f" The sweep's widest, longest-trained point `{top['point']}` reaches "
                 f"{top['excess_q99']:.3f} and {top['excess_max']:.3f}.")
    return text


def snapshot_sentence(s_all: pd.DataFrame, point: str | None) -> str:
    """How the tail, the baseline and mean_corr move between the first snapshot and the trained zoo."""
    if not len(s_all):
        return (f"The snapshot zoo (point `{point}`) has not been run yet." if point
                else "This sweep saves no snapshots during training.")
    first, last = s_all.iloc[0], s_all.iloc[-1]
    return (f"From {first['tokens']:,.0f} to {last['tokens']:,.0f} tokens of point `{point}`, the 99th "
            f"percentile of the excess correlation goes from {first['excess_q99']:.3f} to "
            f"{last['excess_q99']:.3f}, the median baseline from {first['mean_baseline_median']:.3f} to "
            f"{last['mean_baseline_median']:.3f} and the median mean_corr from {first['mean_corr_median']:.3f} "
            f"to {last['mean_corr_median']:.3f}.")


def gpu_sentence(g: pd.DataFrame | None, n_points: int, threshold: float) -> str:
    """The GPU grid's finished points; `g` None when this page shows that grid itself."""
    if g is None:
        return "This page shows that grid."
    if not len(g):
        return ("None of its points has been run on the machine that built this book (it had no GPU), so this "
                "page makes no claim about models wider than d_mlp = 512.")
    return (f"{len(g)} of its {n_points} points have been run (the device of each is recorded in its "
            "`tables/universality.json`); their largest excess correlation is "
            f"{g['excess_max'].max():.3f}, and {int(g['n_universal'].sum()):,} neurons pass {threshold:g}.")


# ---- the chapter ------------------------------------------------------------------------------------------
def page_table(rows: pd.DataFrame, cols: list[str], threshold: float) -> pd.DataFrame:
    """Rows for the page: shares in percent, the threshold columns named as the prose names them."""
    table = rows[[c for c in cols if c in rows]].copy()
    for c in SHARES:
        if c in table:
            table[c] = 100 * table[c]
    return table.rename(columns={"share_universal": f"% > {threshold}", "control_q999": "control q99.9",
                                 "share_above_control_q999": "% > control q99.9", "share_above_0.4": "% > 0.4",
                                 "share_above_0.3": "% > 0.3"}).round(3)


def final_all(res: pd.DataFrame) -> pd.DataFrame:
    """The trained zoos' (stage `final`) rows of pairing `all`: one per point."""
    return res[(res["stage"] == "final") & (res["pairing"] == "all")].copy() if len(res) else res


def zoo_row(name: str) -> dict | None:
    """A book zoo's summary in results.csv's columns (None when its universality tables are not here)."""
    try:
        prof = load_profile(name)
        res = neuron_tables.load_results(prof.tables_dir, paper.THRESHOLD)
    except UserError:
        return None
    live = res.neurons.loc[~res.neurons["is_dead"], "excess_corr"]
    try:
        q = resolve_threshold("control", prof.tables_dir)[0]
    except UserError:  # no control table: the scale-aware columns stay empty
        q = float("nan")
    return {**res.info["summary"], "d_mlp": prof.cfg["model"]["d_mlp"], "n_layer": prof.cfg["model"]["n_layer"],
            "tokens": prof.cfg["train"]["tokens"], "partners": len(res.info["partners"]),
            "n_tokens": res.info["n_tokens"], "control_q999": q, "share_above_control_q999": float((live > q).mean())}


def paper_models(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """paper.MODELS with the published universal neurons' median mean_corr and baseline (for the figures)."""
    models = paper.MODELS.copy()
    for m, t in tables.items():
        models.loc[models["model"] == m, "univ_corr"] = float(t["mean_corr"].median())
        models.loc[models["model"] == m, "univ_base"] = float(t["mean_baseline"].median())
    return models


def paper_glue() -> dict[str, float]:
    """The paper's numbers the prose quotes: its threshold, its shares of universal neurons (in percent) and
    its models' training tokens (estimates)."""
    tokens = paper.MODELS.set_index("model")["tokens"]
    return {"paper_threshold": paper.THRESHOLD,
            **{f"paper_share_{k}": 100 * paper.SHARES[m][0] / paper.SHARES[m][1] for k, m in PAPER_MODELS.items()},
            "paper_tokens_gpt2_billions": float(tokens["GPT2-small-a"]) / 1e9,
            "paper_tokens_pythia_billions": float(tokens["Pythia-160m"]) / 1e9}


def compute(profile: str = "smoke", device: str = "cpu", overrides: str = "") -> Chapter:
    """Read (or, with book.run_missing, run) the sweep named by book.sweep (the profile itself if it is a
    sweep), the recipe's candidates, the default and small zoos' tables and the GPU grid."""
    prof = load_profile(profile, overrides, device=device)  # bad parameters: one line, before any work
    b = prof.cfg["book"]
    base = prof if "grid" in prof.cfg else load_profile(b["sweep"])
    sw = sweep.expand(base, b["sweep_dir"])
    threshold = sweep_results.sweep_threshold(sw)  # the sweep profile's book.threshold: the one its rows count
    if b["run_missing"]:
        sweep_results.run_sweep(sw, device=device, progress=False)
    res, source = sweep_results.results_for_book(sw)  # computed here, or the table shipped in results/
    status = sweep_results.status(sw).assign(done=lambda t: t["point"].isin(set(res["point"]) if len(res) else set()))
    missing = status.loc[~status["done"], "point"].tolist()
    final = res[res["stage"] == "final"] if len(res) else res
    allp = final_all(res)
    published = paper.universal_tables()
    ptable = paper_table(published)

    rres, rsource = sweep_results.results_for_book(sweep.load_sweep("recipe"))
    r_all = final_all(rres)
    zoos = {n: r for n in ("default", "small") if (r := zoo_row(n)) is not None}
    top = allp.sort_values(["d_mlp", "tokens"]).iloc[-1].to_dict() if len(allp) else None
    side = dict(zoos)
    if top is not None:
        side[top["point"]] = {**top, "partners": len(str(top["partners"]).split())}
    stages = res[res["point"] == sw.snapshot_point] if len(res) and sw.snapshot_point else pd.DataFrame()
    s_all = stages[stages["pairing"] == "all"].sort_values("tokens") if len(stages) else stages
    g, n_gpu, g_threshold = None, 0, threshold
    if base.name != "sweep-gpu":
        gsw = sweep.expand(load_profile("sweep-gpu"))
        g, n_gpu, g_threshold = final_all(sweep_results.read_results(gsw)), len(gsw.points), sweep_results.sweep_threshold(gsw)

    glue = {
        "n_points": len(status), "n_done": int(status["done"].sum()),
        "res_source": Markdown(f"The results on this page are {source}."),
        "missing_md": Markdown(missing_sentence(missing, len(status), base.name)),
        "threshold_md": Markdown(threshold_sentence(allp, threshold)),
        "paper_md": Markdown(paper_sentence(ptable, allp)),
        "trend_md": Markdown(trend_sentence(final)),
        "recipe_md": Markdown(recipe_sentence(r_all, rsource)),
        "default_md": Markdown(zoos_sentence(zoos, top, paper.THRESHOLD)),
        "snap_md": Markdown(snapshot_sentence(s_all, sw.snapshot_point)),
        "gpu_md": Markdown(gpu_sentence(g, n_gpu, g_threshold)),
        **paper_glue(),
    }
    glue["scale_holds_md"] = Markdown(verdicts.holds_here([], [
        "The scale study judges none of the paper's claims: it asks how this book's quantities move with the size "
        "and training of the models, the question the paper leaves open.", threshold_sentence(allp, threshold),
        trend_sentence(final)]))
    tables = {"status": status, "finished": page_table(allp, FINISHED, threshold), "paper": ptable.round(3),
              "recipe": page_table(r_all, RECIPE, threshold),
              "zoos": page_table(pd.DataFrame.from_dict(side, orient="index"), ZOOS, threshold) if zoos else None,
              "snapshots": s_all[[c for c in SNAPSHOTS if c in s_all]].round(3) if len(s_all) else None,
              "gpu": g[[c for c in GPU if c in g]].round(3) if g is not None and len(g) else None}
    data = {"final": final, "stages": stages, "paper_models": paper_models(published), "threshold": threshold,
            "base": base.name}
    return Chapter("scale", prof, glue=glue, tables=tables, data=data)


# ---- figures ----------------------------------------------------------------------------------------------
def spread(rows: pd.DataFrame, col: str) -> pd.DataFrame:
    """Per point: (min, max) of `col` over the single-partner pairings: the error bars."""
    return single_partner(rows).groupby("point")[col].agg(["min", "max"])


def _errbar(ax, x, y, lo_hi, **kw):
    yerr = np.vstack([np.clip(y - lo_hi["min"].to_numpy(), 0, None), np.clip(lo_hi["max"].to_numpy() - y, 0, None)])
    ax.errorbar(x, y, yerr=yerr, capsize=2, **kw)


def tokens_words(n: float) -> str:
    """A token count as a reader says it: 600K, 1.2M, 25M, 210B."""
    for div, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= div:
            return f"{n / div:.3g}{unit}"
    return f"{n:.0f}"


def setting_words(col: str, value: float) -> str:
    """One setting of a sweep point in words: "d_mlp 1,024", "2 layers", "1.2M training tokens"."""
    if col == "d_mlp":
        return f"d_mlp {value:,.0f}"
    if col == "n_layer":
        return words.plural(value, "layer")
    if col in ("budget_tokens", "tokens"):
        return f"{tokens_words(value)} training tokens"
    return f"{col} {value:g}"


# Per panel: (column, line style, marker, what it is); markers that can be drawn open or filled.
PANELS = ((("share_universal", "-", "o", "> {threshold}"), ("share_above_control_q999", "--", "s", "> control q99.9")),
          (("excess_q50", ":", "v", "q50"), ("excess_q90", "--", "s", "q90"), ("excess_q99", "-", "o", "q99")),
          (("mean_corr_median", "-", "o", "mean_corr"), ("mean_baseline_median", "--", "s", "baseline")))
PANEL_SCALE = (100, 1, 1)
LEGEND_SIZE = 9.5  # points: about 11 px on the page (the figure is scaled to the ~800 px column)
WIDTH = 9.5  # inches: three panels; narrower than plotting.WIDE so the text is scaled down less


def encoding(a: pd.DataFrame, others: list[str]) -> tuple[str | None, str | None]:
    """Which of the fixed settings (`others`) get the colour and which the marker fill: the colour goes to the one
    with most values, the fill (open: the smaller value, filled: the larger) to a second one with exactly two;
    every further varying setting would join the colour (None when nothing varies)."""
    varying = sorted((c for c in others if a[c].nunique() > 1), key=lambda c: -a[c].nunique())
    colour = varying[0] if varying else None
    fill = next((c for c in varying[1:] if a[c].nunique() == 2), None)
    return colour, fill


def _axis_panels(rows, axis, label, log, threshold, models=None):
    """Three panels along one axis (shares, excess quantiles, mean_corr and baseline); rows: one stage's. The
    colour is one fixed setting, the marker fill (open or filled) another, the line style the quantity (a legend
    under each panel); the settings' legend and the paper's models go under the figure, outside the data."""
    from matplotlib.lines import Line2D

    a = rows[rows["pairing"] == "all"].sort_values(axis)
    fig, axs = plotting.subplots(1, 3, height=3.3, width=WIDTH, layout="constrained")
    colour_by, fill_by = encoding(a, OTHERS[axis])
    colour_cols = [c for c in OTHERS[axis] if c != fill_by and a[c].nunique() > 1]
    colour_keys = list(dict.fromkeys(tuple(r) for r in a[colour_cols].itertuples(index=False))) if colour_cols else [()]
    colours = {k: plotting.series_colour(i) for i, k in enumerate(sorted(colour_keys))}
    fills = sorted(a[fill_by].unique()) if fill_by else []
    for _, g in a.groupby(OTHERS[axis]):
        first = g.iloc[0]
        colour = colours[tuple(first[c] for c in colour_cols)] if colour_cols else plotting.series_colour(0)
        filled = not fill_by or first[fill_by] == fills[-1]
        x = g[axis].to_numpy(float)
        for ax, cols, scale in zip(axs, PANELS, PANEL_SCALE):
            for col, ls, mk, _ in cols:
                _errbar(ax, x, scale * g[col].to_numpy(), scale * spread(rows, col).loc[g["point"]], ls=ls,
                        marker=mk, color=colour, mfc=colour if filled else "white", mec=colour, ms=5)
    paper_handles = []
    for _, r in (models.iterrows() if models is not None else ()):
        kw = {"marker": r["marker"], "mfc": "none", "mec": "k", "ms": 8, "mew": 1.4, "ls": "none"}
        axs[0].plot(r[axis], 100 * r["share"], **kw)
        if not math.isnan(r.get("univ_corr", float("nan"))):
            axs[2].plot(r[axis], r["univ_corr"], **kw)
            axs[2].plot(r[axis], r["univ_base"], **(kw | {"mec": "0.55"}))
        paper_handles.append(Line2D([], [], label=f"{r['model']} (paper)", **kw))
    axs[0].axhline(0, color="grey", lw=0.5)
    axs[1].axhline(threshold, color="grey", lw=0.8, ls="-.")
    axs[0].set(xlabel=label, ylabel="% of live neurons", title="share above a threshold")
    axs[1].set(xlabel=label, ylabel="excess correlation", title="excess quantiles")
    axs[2].set(xlabel=label, ylabel="median over neurons", title="mean_corr and baseline")
    for ax, cols in zip(axs, PANELS):
        if log:
            ax.set_xscale("log", base=log)
            plotting.plain_log(ax, "x")
            lo, hi = ax.get_xlim()
            xs = np.unique(a[axis].to_numpy(float))
            if hi / lo < 30 and len(xs) <= 8:  # a short range: its own values as ticks, not one decade mark
                from matplotlib.ticker import NullFormatter

                ax.set_xticks(xs, [plotting.plain_number(x) for x in xs])
                ax.xaxis.set_minor_formatter(NullFormatter())
        ax.legend(handles=[Line2D([], [], color="0.25", ls=ls, marker=mk, ms=5, label=name.format(threshold=threshold))
                           for _, ls, mk, name in cols],
                  loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=len(cols), fontsize=LEGEND_SIZE,
                  handlelength=2.2, columnspacing=1.0, borderaxespad=0)
    handles = [Line2D([], [], color=colours[k], lw=2.5, label=", ".join(setting_words(c, v) for c, v in zip(colour_cols, k)))
               for k in sorted(colour_keys) if colour_cols]
    handles += [Line2D([], [], color="0.35", marker="o", ls="none", ms=6, mfc="white" if v == fills[0] else "0.35",
                       label=f"{'open' if v == fills[0] else 'filled'}: {setting_words(fill_by, v)}") for v in fills]
    handles += paper_handles
    if handles:
        fig.legend(handles=row_major(handles, 2), loc="outside lower center", ncol=-(-len(handles) // 2),
                   fontsize=LEGEND_SIZE, handlelength=1.6, columnspacing=1.4)
    return fig


def row_major(items: list, n_rows: int) -> list:
    """`items` reordered so that a legend, which fills its columns top to bottom, reads them row by row."""
    n_cols = -(-len(items) // n_rows)
    return [items[r * n_cols + c] for c in range(n_cols) for r in range(n_rows) if r * n_cols + c < len(items)]


def _empty(text: str):
    fig, ax = plotting.subplots(1, 1, height=1.5)
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center")
    return fig


def axis_figure(ch: Chapter, name: str):
    """One row of three panels against one axis of AXES (`width`, `depth`, `tokens`, `loss`), with the paper's
    models (open black symbols) except on the loss axis."""
    final = ch.data["final"]
    if not len(final):
        return _empty("No finished point of the sweep: no figure.")
    axis, label, log = AXES[name]
    models = ch.data["paper_models"] if axis in ch.data["paper_models"] and name != "loss" else None
    return _axis_panels(final, axis, label, log, ch.data["threshold"], models)


def snapshot_figure(ch: Chapter):
    """The same three panels against the tokens seen so far by the snapshot zoo."""
    st = ch.data["stages"]
    if not len(st):
        return _empty("The snapshot zoo has not been run: no figure.")
    st = st.assign(point=st["point"] + "@" + st["tokens"].astype(str))
    return _axis_panels(st, "tokens", "tokens seen so far", 10, ch.data["threshold"])

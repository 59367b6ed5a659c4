"""Entropy neurons (paper section 5.2, figures 7 and 25; Stolfo et al. 2024): candidates ranked by the paper's
weight view and by the null-space view in every seed, the fixed-activation intervention with the final LayerNorm
scale free (total effect) or frozen (direct effect), a random band, the anti-entropy partner, token-frequency
neurons, and whether the role itself is universal (does the reference's entropy neuron's twin in each other seed
rank as one too?)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from IPython.display import Markdown

from ...core import cache, paper
from ... import data
from .. import plotting
from ...models.loading import load_model, members_signature
from ...measures import entropy
from .. import words
from ...core.atomic import write_text
from ...config.profile import load_profile, name_of
from ...runs.neuron_tables import twin
from ..publish import Chapter
from ...measures.verdicts import HOLDS, Evidence, glue_verdict, holds_here, prediction_bound
from ...runs.universality import ensure_results

VERSION = 1
METRICS = {"ln_scale": "final LayerNorm scale", "recip_rank": "reciprocal rank of the true token",
           "entropy": "entropy of the next-token distribution (nats)", "loss": "loss (nats)"}
ROLE_COLORS = {"entropy (paper's view)": "C3", "entropy (null-space view)": "C2", "anti-entropy": "C0",
               "entropy (reference's view)": "C4"}  # C3 (vermilion) and C1 (orange) look alike: C4 is pink


def role_rows(cands: pd.DataFrame, top: int) -> pd.DataFrame:
    """The candidates that rank among the `top` of either view, best paper rank first."""
    keep = (cands["rank_paper"] <= top) | (cands["rank_null"] <= top)
    return cands[keep].sort_values(["rank_paper", "rank_null"], ignore_index=True)


def views_table(cands: pd.DataFrame, eff: pd.DataFrame, top: int) -> pd.DataFrame:
    """The book's view beside the reference code's: the top `top` of each ranking (the union, the book's rank
    first), with both ranks, the reference's filter and the quantities each ranks by, and the entropy change
    (scale free) of the neurons the chapter ran."""
    keep = (cands["rank_paper"] <= top) | (cands["rank_reference"] <= top)
    t = cands[keep].sort_values(["rank_paper", "rank_reference"], ignore_index=True)
    free = eff[eff["scale"] == "free"].drop_duplicates(["layer", "neuron"]).set_index(["layer", "neuron"])
    d = [free["d_entropy"].get((l, n), np.nan) for l, n in zip(t["layer"], t["neuron"])]
    cols = ["layer", "neuron", "rank_paper", "rank_reference", "passes_reference", "w_out_norm", "l2_penalty",
            "vocab_var", "vocab_kurt"]
    return t[cols].assign(d_entropy=d).rename(columns={
        "rank_paper": "rank (book: norm / √vocab_var)", "rank_reference": "rank (reference: vocab_var, filtered)",
        "passes_reference": "passes the reference's filter", "d_entropy": "Δ entropy (nats), if run"}).round(5)


def slope(values, y) -> float:
    """Least-squares slope of y against the fixed activation."""
    values, y = np.asarray(values, float), np.asarray(y, float)
    return float(np.polyfit(values, y, 1)[0]) if len(values) > 1 else float("nan")


def effects(runs: pd.DataFrame) -> pd.DataFrame:
    """Per run (model, role, layer, neuron, scale): the change of each metric from the smallest to the largest
    fixed activation, and the entropy's slope per unit of activation."""
    out = []
    keys = ["model", "role", "layer", "neuron", "scale"]
    for key, g in runs[runs["condition"] == "fixed"].groupby(keys, sort=False):
        g = g.sort_values("value")
        row = dict(zip(keys, key))
        for m in METRICS:
            row[f"d_{m}"] = float(g[m].iloc[-1] - g[m].iloc[0])
        row["entropy_slope"] = slope(g["value"], g["entropy"])
        out.append(row)
    return pd.DataFrame(out)


def total_and_direct(eff: pd.DataFrame, role: str) -> tuple[float, float]:
    """A role's entropy change with the final LayerNorm scale free (total) and frozen (direct, through the
    unembedding only); their difference goes through the scale. NaN when a run is missing."""
    sel = eff[eff["role"] == role].set_index("scale")["d_entropy"]
    return tuple(float(sel[k]) if k in sel.index else float("nan") for k in ("free", "frozen"))


BAND_TIMES = 2.0  # the entropy neuron's change: at least twice the random band's largest (figure 7: far beyond them)
FLOOR_SHARE = 0.01  # and at least this share of the clean entropy (an untrained model's entropy hardly moves)
ANTI_SHARE = 0.5  # the anti-entropy partner: at least half the entropy neuron's change, the other way
SCALE_SHARE = 0.5  # "most of it" through the LayerNorm scale (the paper: through the scale "rather than directly")
ENT = "entropy (paper's view)"
REF_VIEW = "entropy (reference's view)"
FROZEN_ROLES = (ENT, "entropy (null-space view)", "anti-entropy")  # run with the scale frozen too


def clean_entropy(runs: pd.DataFrame, role: str = ENT) -> float:
    """The clean model's mean next-token entropy, from a role's free run (NaN when missing)."""
    sel = runs[(runs["role"] == role) & (runs["scale"] == "free") & (runs["condition"] == "clean")]
    return float(sel["entropy"].iloc[0]) if len(sel) else float("nan")


def evidence(eff: pd.DataFrame, clean: float) -> dict[str, Evidence]:
    """The paper's four claims on the reference (`eff`: its `effects`; `clean`: the clean entropy), judged by the
    book's protocol against the random band:

    - band: |Δ entropy| of the entropy neuron beyond the random band's largest, at least `BAND_TIMES` that largest
      and `FLOOR_SHARE` of the clean entropy;
    - together, scale and anti are judged only when the band row holds (an entropy neuron exists here); else not
      testable here, with the numbers. together: Δ LayerNorm scale in the direction of Δ entropy, beyond the random
      neurons' largest |Δ scale| and `BAND_TIMES` it; scale: the share (total − direct) / total of the change that
      goes through the scale, above the random band's largest change as a share of the total, magnitude
      `SCALE_SHARE`; anti: the partner's Δ entropy against the entropy neuron's direction, beyond the random band,
      at least `ANTI_SHARE` of the entropy neuron's |Δ entropy|.
    """
    free = eff[eff["scale"] == "free"].set_index("role", drop=False)
    rnd = free[free["role"] == "random"]
    n = len(rnd)
    ent = free.loc[ENT]
    name = f"L{int(ent['layer'])}.{int(ent['neuron'])}"
    d_ent, d_scale = float(ent["d_entropy"]), float(ent["d_ln_scale"])
    band = float(rnd["d_entropy"].abs().max()) if n else float("nan")
    scale_band = float(rnd["d_ln_scale"].abs().max()) if n else float("nan")
    edge = prediction_bound(rnd["d_entropy"].abs()) if n > 1 else band
    scale_edge = prediction_bound(rnd["d_ln_scale"].abs()) if n > 1 else scale_band
    floor = FLOOR_SHARE * clean
    size = max(BAND_TIMES * band, floor) if n else float("nan")
    band_words = (f"the 97.5% prediction bound of the |Δ entropy| of {n} random neurons of the last two layers (log "
                  f"scale; their largest is {band:.3g}): the entropy neuron is picked among many, so beating the "
                  "largest of a few is not enough")
    ev = {"band": Evidence(
        f"|Δ entropy| of {name}", abs(d_ent), +1, magnitude=size,
        magnitude_words=(f"the larger of {BAND_TIMES:g}x the random band's largest, the paper's figure 7 showing its "
                         f"entropy neuron far beyond every random neuron, and {FLOOR_SHARE:.0%} of the clean entropy "
                         f"{clean:.3g} nats, a change a model without learned weights cannot make"),
        noise=edge if n else None, noise_words=band_words, unit=" nats",
        untestable="" if n else "no random neuron to compare with")}
    if ev["band"].verdict == HOLDS:
        why = ""
    elif not n:
        why = "no random neuron to compare with"
    else:
        where = "inside" if abs(d_ent) <= edge else "beyond"
        why = (f"no entropy neuron here: {name} moves the entropy by {d_ent:+.3f} nats, {where} the noise band of "
               f"{n} random neurons (up to {edge:.3g}) and short of the {size:.3g} nats the band row asks")
    ev["together"] = Evidence(
        f"Δ LayerNorm scale of {name} in the direction of its Δ entropy", float(np.sign(d_ent) * d_scale), +1,
        magnitude=BAND_TIMES * scale_band if n else None,
        magnitude_words=f"{BAND_TIMES:g}x the random neurons' largest |Δ scale|, as figure 7 shows the scale far "
                        "beyond them", noise=scale_edge if n else None,
        noise_words=f"the 97.5% prediction bound of the |Δ scale| of {n} random neurons (log scale)", untestable=why)
    total, direct = total_and_direct(eff, ENT)
    share = (total - direct) / total if total else float("nan")
    ev["scale"] = Evidence(
        f"share of {name}'s entropy change through the LayerNorm scale, (total − direct) / total", share, +1,
        magnitude=SCALE_SHARE, magnitude_words="most of it: the paper's \"through the scale rather than directly\"",
        noise=band / abs(total) if n and total else None,
        noise_words=f"the random band's largest change ({band:.3g} nats) as a share of the total {total:+.3g}",
        untestable=why)
    anti = free[free["role"] == "anti-entropy"]
    if len(anti):
        a = anti.iloc[0]
        ev["anti"] = Evidence(
            f"Δ entropy of the partner L{int(a['layer'])}.{int(a['neuron'])} against {name}'s direction",
            float(-np.sign(d_ent) * a["d_entropy"]), +1, magnitude=ANTI_SHARE * abs(d_ent),
            magnitude_words=f"{ANTI_SHARE:g}x the entropy neuron's |Δ entropy| {abs(d_ent):.3g}",
            noise=edge if n else None, noise_words=band_words, unit=" nats", untestable=why)
    else:
        ev["anti"] = Evidence("Δ entropy of the anti-entropy partner", float("nan"),
                              untestable=why or "no anti-entropy partner was run")
    return ev


def verdicts(eff: pd.DataFrame, clean: float) -> dict[str, str]:
    """The verdict of each claim of `evidence`."""
    return {k: e.verdict for k, e in evidence(eff, clean).items()}


def partner_note(eff: pd.DataFrame, clean: float) -> str:
    """A sentence when the anti-entropy partner itself passes the band row's rule (it is then the entropy
    neuron of this model in the paper's sense), else empty."""
    free = eff[eff["scale"] == "free"].set_index("role", drop=False)
    anti, rnd = free[free["role"] == "anti-entropy"], free[free["role"] == "random"]
    if not len(anti) or not len(rnd):
        return ""
    a = anti.iloc[0]
    band = float(rnd["d_entropy"].abs().max())
    size = max(BAND_TIMES * band, FLOOR_SHARE * clean)
    if abs(a["d_entropy"]) < size:
        return ""
    return (f"The anti-entropy partner L{int(a['layer'])}.{int(a['neuron'])} moves the entropy by "
            f"{a['d_entropy']:+.3f} nats, beyond the band's rule itself (at least {size:.3f}): by its effect, it is "
            "the neuron that does here what the paper's entropy neuron does, though the weight view did not rank "
            "it first.")


def views_sentence(cands: pd.DataFrame) -> str:
    """Which neuron each ranking puts first and where the others rank it (the chapter uses the book's view)."""
    c = cands.set_index(["layer", "neuron"])
    nm = lambda k: f"L{k[0]}.{k[1]}"  # noqa: E731
    book = c["rank_paper"].idxmin()
    n_pass = int(c["passes_reference"].sum())
    if not n_pass:
        ref_txt = ("no neuron passes the reference code's filter (weight-decay penalty in the top "
                   f"{1 - entropy.REFERENCE_PENALTY_QUANTILE:.0%} and vocab_kurt at most {entropy.REFERENCE_VOCAB_KURT:g})")
    else:
        ref = c["rank_reference"].idxmin()
        same = "the same neuron" if ref == book else f"{nm(ref)} (rank {int(c.loc[ref, 'rank_paper'])} by the book's view)"
        ref_txt = (f"of the {n_pass} neurons that pass the reference code's filter (weight-decay penalty in the top "
                   f"{1 - entropy.REFERENCE_PENALTY_QUANTILE:.0%}, vocab_kurt at most {entropy.REFERENCE_VOCAB_KURT:g}), the one "
                   f"of smallest vocabulary variance is {same}")
    return f"The book's view puts {nm(book)} first; {ref_txt}."


def paper_table(published: dict) -> pd.DataFrame:
    """The paper's entropy neurons with the published universal table's row where they are in it."""
    rows = []
    for model, neurons in paper.ENTROPY_NEURONS.items():
        t = published[model]
        for k, (l, n) in enumerate(neurons):
            r = t[(t["layer"] == l) & (t["neuron"] == n)]
            rows.append({"model": model, "neuron": f"L{l}.{n}", "role": "entropy" if k == 0 else "anti-entropy",
                         "in the published universal table": bool(len(r)),
                         "excess_corr": float(r["excess_corr"].iloc[0]) if len(r) else np.nan,
                         "w_out_norm": float(r["w_out_norm"].iloc[0]) if len(r) else np.nan,
                         "vocab_var": float(r["vocab_var"].iloc[0]) if len(r) else np.nan})
    return pd.DataFrame(rows)


def _log_freq(prof, d_vocab: int) -> np.ndarray:
    """The unigram log-frequency of every token id over the training rows (add-one smoothed)."""
    toks = np.asarray(data.token_rows(prof, "train", progress=False).tokens)
    counts = np.bincount(toks[:, 1:].ravel().astype(np.int64), minlength=d_vocab)[:d_vocab].astype(np.float64)
    return np.log((counts + 1) / (counts.sum() + d_vocab))


def _runs(prof, models: dict, chosen: dict, tokens: np.ndarray, device) -> pd.DataFrame:
    """Every fixed-activation run of the chapter (cached in the run folder's tables): per model its chosen
    neurons (role -> (layer, neuron)), free and, for the entropy roles, frozen."""
    b = prof.cfg["book"]
    folder, path = Path(prof.tables_dir), Path(prof.tables_dir) / "entropy_runs.csv"
    batch = int(prof.cfg["analysis"].get("batch_size", 64))
    key = cache.make_key("entropy", version=VERSION, chosen={m: {r: list(v) for r, v in c.items()}
                                                             for m, c in chosen.items()},
                         weights=members_signature(prof),
                         tokens=int(tokens.size), values=list(paper.ENTROPY_VALUES), n_null=int(b["null_dims"]),
                         data=data.analysis_rows(prof, progress=False).header["provenance"], batch=batch)
    if cache.is_current(folder, key) and path.is_file():
        return pd.read_csv(path)
    from tqdm.auto import tqdm

    jobs = [(m, role, ln, scale) for m, c in chosen.items() for role, ln in c.items()
            for scale in (("free", "frozen") if role in FROZEN_ROLES else ("free",))]
    parts, clean = [], {m: {} for m in models}  # each model's clean runs, once per batch
    with cache.updating(folder, key):
        for m, role, (l, n), scale in tqdm(jobs, desc="entropy interventions", unit="run"):
            df = entropy.fixed_activation(models[m], tokens, l, n, paper.ENTROPY_VALUES, freeze_scale=scale == "frozen",
                                          batch_rows=batch, device=device, clean=clean[m])
            parts.append(df.assign(model=m, role=role, layer=l, neuron=n, scale=scale))
        write_text(path, pd.concat(parts, ignore_index=True).to_csv(index=False))
    return pd.read_csv(path)


def compute(profile="smoke", device="cpu", overrides="") -> Chapter:
    """Candidates in every seed, the reference's interventions (cached), effects, verdicts and the role's
    universality across seeds."""
    prof = load_profile(profile, overrides, device=device)  # bad parameters: one line, before any work
    b = prof.cfg["book"]
    top, n_null = int(b["role_top"]), int(b["null_dims"])
    res = ensure_results(prof, device=device)
    sources = prof.members()
    names = [name_of(s) for s in sources]
    models = {m: load_model(s, device=device, revision=prof.revision) for m, s in zip(names, sources)}
    ref = names[0]
    cands = {m: entropy.candidates(model, n_null=min(n_null, model.cfg.d_model)) for m, model in models.items()}
    rc = cands[ref]
    pick = lambda c, col: tuple(int(x) for x in c.sort_values(col).iloc[0][["layer", "neuron"]])  # noqa: E731
    ent, null_top = pick(rc, "rank_paper"), pick(rc, "rank_null")
    al, an, anti_cos = entropy.anti_partner(models[ref], *ent)
    randoms = entropy.random_neurons(models[ref], min(int(b["entropy_random"]), len(rc) - 2), seed=0,
                               exclude=[ent, (al, an)])
    chosen = {ref: {ENT: ent, "entropy (null-space view)": null_top, "anti-entropy": (al, an),
                    **{f"random {i}": ln for i, ln in enumerate(randoms)}}}
    ref_pass = rc[rc["passes_reference"]]
    ref_top = pick(ref_pass, "rank_reference") if len(ref_pass) else None
    if ref_top is not None and ref_top not in (ent, null_top, (al, an)):
        chosen[ref][REF_VIEW] = ref_top
    for m in names[1:]:
        chosen[m] = {"entropy (paper's view)": pick(cands[m], "rank_paper")}
    rows = data.analysis_rows(prof, progress=False)
    n_rows = max(1, min(len(rows.tokens), -(-int(b["entropy_tokens"]) // rows.n_ctx)))
    tokens = np.asarray(rows.tokens[:n_rows]).astype(np.int64)
    runs = _runs(prof, models, chosen, tokens, device)
    runs["role"] = runs["role"].str.replace(r"^random \d+$", "random", regex=True)
    eff = effects(runs)
    ref_eff = eff[eff["model"] == ref]
    clean = clean_entropy(runs[runs["model"] == ref])
    ev = evidence(ref_eff, clean)

    # the role across seeds: the reference's entropy neuron's twin in each other seed, ranked there
    seeds = []
    for k, m in enumerate(names[1:], 1):
        tl, tn, r = twin(res.neurons, *ent, k)
        c = cands[m].set_index(["layer", "neuron"])
        rank = c.loc[(tl, tn)] if (tl, tn) in c.index else None
        own = eff[(eff["model"] == m) & (eff["scale"] == "free")].iloc[0]
        seeds.append({"seed": m, "twin": f"L{tl}.{tn}", "correlation": r,
                      "twin rank (paper's view)": int(rank["rank_paper"]) if rank is not None else np.nan,
                      "twin rank (null-space view)": int(rank["rank_null"]) if rank is not None else np.nan,
                      "twin is a candidate": bool(rank is not None and min(rank["rank_paper"], rank["rank_null"]) <= top),
                      "own top neuron": f"L{own['layer']}.{own['neuron']}", "own top: entropy change": own["d_entropy"]})
    seeds = pd.DataFrame(seeds)
    n_twins = int(seeds["twin is a candidate"].sum()) if len(seeds) else 0
    freq = entropy.frequency_projection(models[ref], _log_freq(prof, models[ref].cfg.d_vocab))
    freq = freq.assign(abs_cos=freq["freq_cos"].abs()).sort_values("abs_cos", ascending=False).drop(columns="abs_cos")
    free = ref_eff[ref_eff["scale"] == "free"].set_index("role")
    glue = {"ent_reference": ref, "ent_neuron": f"L{ent[0]}.{ent[1]}", "ent_null_neuron": f"L{null_top[0]}.{null_top[1]}",
            "ent_anti_neuron": f"L{al}.{an}", "ent_anti_cos": anti_cos, "ent_paper_anti_cos": paper.ENTROPY_ANTI_COS,
            "ent_d_entropy": float(free.loc["entropy (paper's view)", "d_entropy"]),
            "ent_d_scale": float(free.loc["entropy (paper's view)", "d_ln_scale"]),
            "ent_d_rr": float(free.loc["entropy (paper's view)", "d_recip_rank"]),
            "ent_anti_d_entropy": float(free.loc["anti-entropy", "d_entropy"]),
            "ent_band_max": float(free.loc[["random"], "d_entropy"].abs().max()) if "random" in free.index else np.nan,
            "ent_n_random": len(randoms),
            "ent_n_tokens": int(tokens.shape[0] * (tokens.shape[1] - 1)), "ent_n_null": n_null, "ent_top": top,
            "ent_n_seeds": len(names) - 1, "ent_n_twins": n_twins, "ent_freq_neuron":
                f"L{int(freq['layer'].iloc[0])}.{int(freq['neuron'].iloc[0])}",
            "ent_freq_cos": float(freq["freq_cos"].iloc[0]),
            "ent_values_md": Markdown(", ".join(f"{x:g}" for x in paper.ENTROPY_VALUES)),
            "ent_null_rank_of_paper": int(rc.set_index(["layer", "neuron"]).loc[ent, "rank_null"])}
    for k, e in ev.items():
        glue_verdict(glue, f"ent_verdict_{k}", e)
    total, direct = total_and_direct(ref_eff, ENT)
    glue |= {"ent_d_direct": direct, "ent_d_via_scale": total - direct, "ent_clean_entropy": clean,
             "ent_share_via_scale": ev["scale"].value, "ent_band_size": ev["band"].magnitude,
             "ent_band_times": BAND_TIMES, "ent_floor_share": FLOOR_SHARE * 100,
             "ent_views_md": Markdown(views_sentence(rc)),
             "ent_n_reference_pass": int(rc["passes_reference"].sum()),
             "ent_reference_pass_md": Markdown(words.counted(int(rc["passes_reference"].sum()), "neuron", "passes",
                                                         "pass").capitalize()),
             "ent_reference_neuron": f"L{ref_top[0]}.{ref_top[1]}" if ref_top is not None else "none"}
    claims = [("the entropy neuron changes the entropy more than random neurons", ev["band"]),
              ("its entropy and the final LayerNorm scale rise together", ev["together"]),
              ("its entropy change goes mostly through the LayerNorm scale", ev["scale"]),
              ("its anti-entropy partner moves the entropy the other way", ev["anti"])]
    glue["ent_holds_md"] = Markdown(holds_here(claims, [x for x in (partner_note(ref_eff, clean),) if x]))
    label = lambda t: t.assign(neuron=[f"L{l}.{n}" for l, n in zip(t["layer"], t["neuron"])]).drop(columns="layer")  # noqa: E731
    tables = {"paper": paper_table(paper.universal_tables()),
              "candidates": label(role_rows(rc, top)).round(5), "views": label(views_table(rc, ref_eff, top)),
              "effects": label(ref_eff.drop(columns="model")).round(4), "seeds": seeds.round(4),
              "frequency": label(freq.head(top)).round(4)}
    return Chapter("entropy", prof, glue=glue, tables=tables,
                   data={"reference": ref, "cands": rc, "runs": runs, "ent": ent, "null": null_top, "anti": (al, an),
                         "top": top, "names": names})


def _mark(ax, c: pd.DataFrame, col: str, top: int, y: str, color: str, label: str) -> None:
    sel = c[c[col] <= top]
    ax.scatter(sel["w_out_norm"], sel[y], s=40, facecolors="none", edgecolors=color, linewidths=1.4, label=label)


def weights_figure(ch: Chapter):
    """Figure 7a: the reference's candidates, norm against vocabulary variance and against the null-space
    fraction, the top of each view ringed and the chosen neurons named."""
    c, top = ch.data["cands"], ch.data["top"]
    fig, axes = plotting.subplots(1, 2, height=3.8, width=12)
    for ax, y, ylab in ((axes[0], "vocab_var", "variance of cos(w_out, W_U) (log)"),
                        (axes[1], "null_fraction", "share of |w_out|² in the null space of W_U")):
        for l, g in c.groupby("layer"):
            ax.scatter(g["w_out_norm"], g[y], s=6, alpha=0.5, color=plotting.series_colour(4 + l), label=f"layer {l}")
        _mark(ax, c, "rank_paper", top, y, "C3", f"top {top}, paper's view")
        _mark(ax, c, "rank_null", top, y, "C2", f"top {top}, null-space view")
        for key, txt in (("ent", "entropy"), ("null", "null-space top"), ("anti", "anti-entropy")):
            l, n = ch.data[key]
            r = c[(c["layer"] == l) & (c["neuron"] == n)].iloc[0]
            ax.annotate(f"L{l}.{n} ({txt})", (r["w_out_norm"], r[y]), fontsize=8, xytext=(4, 4),
                        textcoords="offset points")
        ax.set(xlabel="|w_out|", ylabel=ylab)
    axes[0].set_yscale("log")
    plotting.plain_log(axes[0], "y")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{ch.data['reference']}: entropy-neuron candidates of the last two layers")
    return fig


def _band(ax, runs: pd.DataFrame, metric: str) -> None:
    rnd = runs[(runs["role"] == "random") & (runs["condition"] == "fixed")]
    if len(rnd):
        q = rnd.groupby("value")[metric].agg(["min", "median", "max"])
        ax.fill_between(q.index, q["min"], q["max"], color="0.8", label="random neurons (range)")
        ax.plot(q.index, q["median"], color="0.5", lw=1)


def intervention_figure(ch: Chapter):
    """Figures 7b-c and 25: each metric against the fixed activation for the entropy neurons, the anti-entropy
    partner and the random band (scale free); dotted: the clean model."""
    ref, runs = ch.data["reference"], ch.data["runs"]
    runs = runs[(runs["model"] == ref) & (runs["scale"] == "free")]
    fig, axes = plotting.subplots(1, 4, height=3.4, width=14)
    for ax, (metric, title) in zip(axes, METRICS.items()):
        _band(ax, runs, metric)
        for role, color in ROLE_COLORS.items():
            g = runs[(runs["role"] == role) & (runs["condition"] == "fixed")].sort_values("value")
            if len(g):
                ax.plot(g["value"], g[metric], "o-", color=color, ms=3,
                        label=f"{role} L{int(g['layer'].iloc[0])}.{int(g['neuron'].iloc[0])}")
        ax.axhline(runs.loc[runs["condition"] == "clean", metric].iloc[0], color="k", ls=":", lw=1)
        ax.set(xlabel="fixed post-activation", title=title)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{ref}: a neuron's activation fixed at every position")
    return fig


def direct_figure(ch: Chapter):
    """Total against direct effect: the entropy and the loss against the fixed activation with the final
    LayerNorm scale free (solid) or frozen at its clean value (dashed)."""
    ref, runs = ch.data["reference"], ch.data["runs"]
    runs = runs[(runs["model"] == ref) & (runs["condition"] == "fixed")]
    fig, axes = plotting.subplots(1, 2, height=3.4, width=10)
    for ax, metric in zip(axes, ("entropy", "loss")):
        for role, color in ROLE_COLORS.items():
            for scale, ls in (("free", "-"), ("frozen", "--")):
                g = runs[(runs["role"] == role) & (runs["scale"] == scale)].sort_values("value")
                if len(g):
                    ax.plot(g["value"], g[metric], ls, color=color, label=f"{role}, scale {scale}")
        ax.set(xlabel="fixed post-activation", ylabel=METRICS[metric])
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{ref}: total (scale free) against direct (scale frozen) effect")
    return fig


def seeds_figure(ch: Chapter):
    """Every seed's own top entropy candidate (paper's view): the entropy against its fixed activation."""
    runs = ch.data["runs"]
    runs = runs[(runs["role"] == "entropy (paper's view)") & (runs["scale"] == "free") & (runs["condition"] == "fixed")]
    fig, ax = plotting.subplots(height=3.6)
    for k, m in enumerate(ch.data["names"]):
        g = runs[runs["model"] == m].sort_values("value")
        if len(g):
            base = g["entropy"].iloc[int(np.argmin(np.abs(g["value"].to_numpy())))]
            ax.plot(g["value"], g["entropy"] - base, "o-", ms=3, color=f"C{k}",
                    label=f"{m}: L{int(g['layer'].iloc[0])}.{int(g['neuron'].iloc[0])}")
    ax.axhline(0, color="k", lw=0.8)
    ax.legend(fontsize=8)
    ax.set(xlabel="fixed post-activation", ylabel="entropy change from activation 0 (nats)",
           title="each seed's top entropy candidate (paper's view)")
    return fig

"""Attention (de)activation neurons (paper section 5.3, figures 8 and 26): the BOS heuristic score of every
(neuron, later head) pair in every seed against random directions, the path ablation of the strongest pairs
(over all batches), the heads' BOS value norms, and whether the role itself is universal (does the reference's
strongest neuron's twin in each other seed score among that seed's strongest?)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from IPython.display import Markdown

from ...measures import attention
from ...models.loading import load_model, members_signature
from ...core import cache, paper
from ... import data
from .. import plotting
from ...core.atomic import write_text
from ...config.profile import load_profile, name_of
from .. import words
from ..publish import Chapter
from ...measures.verdicts import Evidence, glue_verdict, holds_here
from ...runs.neuron_tables import twin
from ...runs.universality import ensure_results

VERSION = 1
N_SCATTER = 4000  # points drawn per scatter panel


def pair_name(r) -> str:
    """"L<l>.<n> → L<l>.H<h>" of a score row."""
    return f"L{int(r['neuron_layer'])}.{int(r['neuron'])} → L{int(r['head_layer'])}.H{int(r['head'])}"


def random_tail(scores: pd.DataFrame, rnd: np.ndarray) -> pd.Series:
    """Per pair: the share of random unit directions scoring at least as high for the same head (the score's
    p-value against the random baseline)."""
    out = np.empty(len(scores))
    for (lh, h), idx in scores.groupby(["head_layer", "head"]).groups.items():
        ref = np.sort(rnd[:, lh, h])
        out[scores.index.get_indexer(idx)] = 1 - np.searchsorted(ref, scores.loc[idx, "score"].to_numpy()) / len(ref)
    return pd.Series(out, index=scores.index)


def random_sentence(p: float, n: int) -> str:
    """How many of the n random directions score as high as the pair, in words."""
    if p == 0:
        return f"none of {n:,} random unit directions scores as high for that head"
    return f"a share {p:.4f} of {n:,} random unit directions scores as high for that head"


def ablation_summary(abl: pd.DataFrame) -> dict:
    """What a path ablation shows: the correlations of the activation with the change (ablated − clean) of the
    head's attention to BOS and of its output norm after W_O, and the mean changes where the neuron fires
    (activation > 0) and where it does not."""
    fire = abl["activation"] > 0
    corr = lambda col: float(np.corrcoef(abl["activation"], abl[col])[0, 1]) if abl[col].std() > 0 else 0.0  # noqa: E731
    return {"r(act, Δ BOS attention)": corr("bos_attn_change"), "r(act, Δ output norm)": corr("out_norm_change"),
            "Δ BOS attention, firing": float(abl.loc[fire, "bos_attn_change"].mean()) if fire.any() else np.nan,
            "Δ BOS attention, not firing": float(abl.loc[~fire, "bos_attn_change"].mean()) if (~fire).any() else np.nan,
            "Δ output norm, firing": float(abl.loc[fire, "out_norm_change"].mean()) if fire.any() else np.nan,
            "share firing": float(fire.mean())}


def deactivates(summary: dict) -> bool:
    """The paper's claim for a pair: a positive activation raises the head's BOS attention and shrinks its
    output, so removing the neuron's contribution to the query lowers BOS attention and raises the output norm
    where it fires."""
    return summary["r(act, Δ BOS attention)"] < 0 and summary["r(act, Δ output norm)"] > 0


RATIO_SHARE = 0.5  # the BOS value ratio must reach half the paper's median head (paper.BOS_VALUE_RATIO)
NULL_QUANTILE = 0.95  # the noise edge of the ratio: this quantile of the same ratio at non-BOS positions
N_BOOT = 1000  # bootstrap resamples of the ablation's rows
BOOT_LEVEL = 0.95  # the bootstrap interval's coverage


def row_bootstrap_r(abl: pd.DataFrame, cols=("bos_attn_change", "out_norm_change"), n: int = N_BOOT,
                    seed: int = 0) -> np.ndarray:
    """Pearson r of the activation with each of `cols`, with the ablation's rows (the held-out sequences, whose
    positions are not independent) resampled with replacement `n` times: float64 [n, len(cols)]."""
    g = abl.assign(xx=abl["activation"] ** 2).groupby("row")
    x = abl["activation"].to_numpy(float)
    parts = {"n": g.size().to_numpy(float), "sx": g["activation"].sum().to_numpy(float),
             "sxx": g["xx"].sum().to_numpy(float)}
    for c in cols:
        y = abl[c].to_numpy(float)
        t = pd.DataFrame({"row": abl["row"].to_numpy(), "y": y, "yy": y * y, "xy": x * y}).groupby("row").sum()
        parts |= {f"sy{c}": t["y"].to_numpy(), f"syy{c}": t["yy"].to_numpy(), f"sxy{c}": t["xy"].to_numpy()}
    rows = len(parts["n"])
    counts = np.random.default_rng(seed).multinomial(rows, np.full(rows, 1 / rows), size=n).astype(float)
    tot = {k: counts @ v for k, v in parts.items()}
    vx = tot["sxx"] - tot["sx"] ** 2 / tot["n"]
    out = np.empty((n, len(cols)))
    for j, c in enumerate(cols):
        vy = tot[f"syy{c}"] - tot[f"sy{c}"] ** 2 / tot["n"]
        cov = tot[f"sxy{c}"] - tot["sx"] * tot[f"sy{c}"] / tot["n"]
        with np.errstate(invalid="ignore", divide="ignore"):
            out[:, j] = np.where((vx > 0) & (vy > 0), cov / np.sqrt(np.maximum(vx * vy, 1e-300)), 0.0)
    return out


def weaker_r(abl: pd.DataFrame, n: int = N_BOOT) -> tuple[float, float, float]:
    """The weaker of −r(act, Δ BOS attention) and r(act, Δ output norm) of one pair's path ablation, and its
    `BOOT_LEVEL` bootstrap interval over rows: (value, lo, hi)."""
    s = ablation_summary(abl)
    boot = row_bootstrap_r(abl, n=n)
    weaker = np.minimum(-boot[:, 0], boot[:, 1])
    lo, hi = np.quantile(weaker, [(1 - BOOT_LEVEL) / 2, (1 + BOOT_LEVEL) / 2])
    return float(min(-s["r(act, Δ BOS attention)"], s["r(act, Δ output norm)"])), float(lo), float(hi)


def best_of_random_p(score: float, random_scores: np.ndarray, n_candidates: int) -> float:
    """The chance that the best of `n_candidates` random output directions scores at least `score` for a head:
    1 − Φ(z)^n with z the score in units of the random directions' spread for that head (a score is linear in a
    random unit direction, so close to normal); the heuristic score of figure 8a, judged against chance selection."""
    from scipy import stats

    r = np.asarray(random_scores, float)
    z = (score - r.mean()) / r.std(ddof=1)
    return float(-np.expm1(n_candidates * stats.norm.logcdf(z)))


def deactivation_evidence(abl: pd.DataFrame, pair: str, n: int = N_BOOT, p_best: float | None = None,
                          n_candidates: int = 0) -> Evidence:
    """The claim on one pair's path ablation: a firing neuron raises the head's attention to BOS and shrinks its
    output, so r(act, Δ BOS attention) < 0 and r(act, Δ output norm) > 0 (Δ = ablated − clean). The quantity is
    the weaker of −r_bos and r_norm; its bootstrap interval over rows must clear 0 (no correlation), and the pair's
    heuristic score must be beyond what the best of its `n_candidates` neurons would reach by chance (`p_best`,
    from `best_of_random_p`): an untrained model's strongest pair responds mechanically too. The paper prints no
    correlation, so the best verdict is "direction only"."""
    value, lo, hi = weaker_r(abl, n)
    return Evidence(f"the weaker of −r(act, Δ BOS attention) and r(act, Δ output norm) for {pair}", value, +1,
                    magnitude=None, magnitude_words="the paper shows the relation (figure 8) but prints no "
                    "correlation: direction only at most", noise=0.0,
                    noise_words=f"no correlation, judged by the {BOOT_LEVEL:.0%} bootstrap interval over "
                                f"{abl['row'].nunique():,} held-out rows ({n:,} resamples)",
                    interval=(lo, hi), p=p_best,
                    p_words=f"the chance that the best of its {n_candidates:,} candidate neurons scores as high for "
                            "that head with random output directions: the pair must be selected by more than chance, "
                            "since an untrained model's strongest pair also responds, mechanically")


def ratio_evidence(median_ratio: float, null: np.ndarray, n_heads: int) -> Evidence:
    """The paper's median head writes 19.4x less from BOS than from other tokens: the median head's ratio here
    must reach `RATIO_SHARE` of it and lie above the `NULL_QUANTILE` quantile of the same median ratio measured
    with another position in place of BOS."""
    null = np.asarray(null, float)
    return Evidence(f"the median head's mean |W_O v| of other tokens over BOS's ({n_heads} heads)",
                    float(median_ratio), +1, magnitude=RATIO_SHARE * paper.BOS_VALUE_RATIO,
                    magnitude_words=f"{RATIO_SHARE:g}x the paper's {paper.BOS_VALUE_RATIO}x", unit="x",
                    noise=float(np.quantile(null, NULL_QUANTILE)) if len(null) else None,
                    noise_words=f"the {NULL_QUANTILE:.0%} quantile of the same ratio with one of the "
                                f"{len(null)} later positions in place of BOS",
                    untestable="" if len(null) else "rows of one position: no other position to compare with")


def pairs_note(best: pd.DataFrame, n_seeds_deact: int, n_seeds: int) -> str:
    """The ablated pairs and the other seeds, in words: how many have both correlations of the paper's signs."""
    k = int(best["deactivates"].sum())
    return (f"Of the {len(best)} strongest pairs of the reference, {k} {'has' if k == 1 else 'have'} both "
            f"correlations with the paper's signs (a sign, not a rule with a size); so does the strongest pair of "
            f"{n_seeds_deact} of the {n_seeds} other seeds.")


def _ablations(prof, models: dict, pairs: dict, tokens: np.ndarray, device) -> pd.DataFrame:
    """Every path ablation of the chapter (cached in the run folder's tables): per model its pairs."""
    folder, path = Path(prof.tables_dir), Path(prof.tables_dir) / "attention_ablations.csv"
    batch = int(prof.cfg["analysis"].get("batch_size", 64))
    key = cache.make_key("attention", version=VERSION, pairs={m: [list(p) for p in ps] for m, ps in pairs.items()},
                         weights=members_signature(prof),
                         tokens=int(tokens.size), data=data.analysis_rows(prof, progress=False).header["provenance"],
                         batch=batch)
    if cache.is_current(folder, key) and path.is_file():
        return pd.read_csv(path)
    from tqdm.auto import tqdm

    jobs = [(m, p) for m, ps in pairs.items() for p in ps]
    parts = []
    with cache.updating(folder, key):
        for m, (l, n, lh, h) in tqdm(jobs, desc="path ablations", unit="pair"):
            abl = attention.path_ablation(models[m], tokens, l, n, lh, h, batch_rows=batch, device=device)
            parts.append(abl.assign(model=m, pair=f"L{l}.{n} → L{lh}.H{h}"))
        write_text(path, pd.concat(parts, ignore_index=True).to_csv(index=False))
    return pd.read_csv(path)


def compute(profile="smoke", device="cpu", overrides="") -> Chapter:
    """Scores in every seed, ablations of the reference's strongest pairs and each seed's own (cached), BOS value
    norms, verdicts and the role's universality across seeds."""
    prof = load_profile(profile, overrides, device=device)  # bad parameters: one line, before any work
    b = prof.cfg["book"]
    top, n_pairs = int(b["role_top"]), int(b["attention_pairs"])
    res = ensure_results(prof, device=device)
    sources = prof.members()
    names = [name_of(s) for s in sources]
    models = {m: load_model(s, device=device, revision=prof.revision) for m, s in zip(names, sources)}
    ref = names[0]
    rows = data.analysis_rows(prof, progress=False)
    bos = int(rows.header["bos_id"])
    scores = {m: attention.bos_scores(model, bos) for m, model in models.items()}
    rnd = attention.random_scores(models[ref], bos, n=int(b["attention_random"]), seed=0)
    s_ref = scores[ref].assign(p_random=lambda t: random_tail(t, rnd))
    best = attention.top_pairs(s_ref, n_pairs)
    key = lambda r: (int(r["neuron_layer"]), int(r["neuron"]), int(r["head_layer"]), int(r["head"]))  # noqa: E731
    pairs = {ref: [key(r) for _, r in best.iterrows()]}
    for m in names[1:]:
        pairs[m] = [key(attention.top_pairs(scores[m], 1).iloc[0])]
    n_rows = max(1, min(len(rows.tokens), -(-int(b["attention_tokens"]) // rows.n_ctx)))
    tokens = np.asarray(rows.tokens[:n_rows]).astype(np.int64)
    abl = _ablations(prof, models, pairs, tokens, device)
    summaries = {(m, p): ablation_summary(g) for (m, p), g in abl.groupby(["model", "pair"], sort=False)}
    best = best.assign(pair=[pair_name(r) for _, r in best.iterrows()])
    best = best.join(pd.DataFrame([summaries[(ref, p)] for p in best["pair"]], index=best.index))
    best["deactivates"] = [deactivates(summaries[(ref, p)]) for p in best["pair"]]

    # the role across seeds: the reference's strongest neuron's twin in each other seed, ranked there by its best
    # score over later heads among all that seed's neurons
    l0, n0 = pairs[ref][0][:2]
    seeds = []
    for k, m in enumerate(names[1:], 1):
        tl, tn, r = twin(res.neurons, l0, n0, k)
        per_neuron = scores[m].groupby(["neuron_layer", "neuron"])["score"].max()
        rank = per_neuron.rank(ascending=False, method="min")
        own = pairs[m][0]
        own_name = f"L{own[0]}.{own[1]} → L{own[2]}.H{own[3]}"
        seeds.append({"seed": m, "twin": f"L{tl}.{tn}", "correlation": r,
                      "twin's best score": float(per_neuron.get((tl, tn), np.nan)),
                      "twin's rank": float(rank.get((tl, tn), np.nan)),
                      "twin is a candidate": bool(rank.get((tl, tn), np.inf) <= top), "own top pair": own_name,
                      "own top score": float(scores[m]["score"].max()),
                      "own top deactivates": deactivates(summaries[(m, own_name)])})
    seeds = pd.DataFrame(seeds)
    norms = attention.position_out_norms(models[ref], tokens, batch_rows=int(prof.cfg["analysis"].get("batch_size", 64)),
                                  device=device)
    ratio, null = attention.ratio_frame(norms), attention.position_null(norms)
    rnd_later = np.concatenate([rnd[:, lh].ravel() for lh in range(1, rnd.shape[1])]) if rnd.shape[1] > 1 else rnd.ravel()
    top_row = best.iloc[0]
    glue = {"att_reference": ref, "att_pair": top_row["pair"], "att_score": float(top_row["score"]),
            "att_p_random": float(top_row["p_random"]), "att_n_pairs": len(s_ref), "att_n_random": int(rnd.shape[0]),
            "att_random_q999": float(np.quantile(rnd_later, 0.999)),
            "att_share_above": float((s_ref["score"] > rnd_later.max()).mean()),
            "att_r_bos": float(top_row["r(act, Δ BOS attention)"]), "att_r_norm": float(top_row["r(act, Δ output norm)"]),
            "att_d_bos_firing": float(top_row["Δ BOS attention, firing"]),
            "att_n_deactivating": int(best["deactivates"].sum()), "att_n_ablated": len(best),
            "att_n_tokens": int(tokens.size), "att_median_ratio": float(ratio["ratio"].median()),
            "att_paper_ratio": paper.BOS_VALUE_RATIO, "att_top": top, "att_n_seeds": len(names) - 1,
            "att_n_twins": int(seeds["twin is a candidate"].sum()) if len(seeds) else 0,
            "att_n_seeds_deactivating": int(seeds["own top deactivates"].sum()) if len(seeds) else 0,
            "att_paper_md": Markdown(f"{paper.ATTENTION_EXAMPLE[0]} L{paper.ATTENTION_EXAMPLE[1][0]}."
                                     f"{paper.ATTENTION_EXAMPLE[1][1]} → L{paper.ATTENTION_EXAMPLE[2][0]}."
                                     f"H{paper.ATTENTION_EXAMPLE[2][1]}")}
    glue["att_random_md"] = Markdown(random_sentence(glue["att_p_random"], glue["att_n_random"]))
    glue["att_deactivating_md"] = Markdown(  # "Of the 3 strongest pairs, 1 has ...": the count and its verb agree
        f"{words.plural(glue['att_n_ablated'], 'strongest pair')}, {glue['att_n_deactivating']} "
        f"{words.verb(glue['att_n_deactivating'], 'has', 'have')}")
    glue["att_seeds_md"] = Markdown(words.plural(glue["att_n_seeds"], "other seed"))
    top_abl = abl[(abl["model"] == ref) & (abl["pair"] == top_row["pair"])]
    lh, h = int(top_row["head_layer"]), int(top_row["head"])
    n_candidates = lh * models[ref].cfg.d_mlp  # the neurons of the layers before the head
    p_best = best_of_random_p(float(top_row["score"]), rnd[:, lh, h], n_candidates)
    ev = deactivation_evidence(top_abl, top_row["pair"], p_best=p_best, n_candidates=n_candidates)
    glue["att_p_best"] = p_best
    ev_ratio = ratio_evidence(glue["att_median_ratio"], null, len(ratio))
    glue_verdict(glue, "att_verdict", ev)
    glue_verdict(glue, "att_ratio_verdict", ev_ratio)
    glue |= {"att_r_lo": ev.interval[0], "att_r_hi": ev.interval[1], "att_ratio_size": ev_ratio.magnitude,
             "att_ratio_null": ev_ratio.noise if ev_ratio.noise is not None else np.nan,
             "att_null_median": float(np.median(null)) if len(null) else np.nan}
    glue["att_holds_md"] = Markdown(holds_here(
        [("attention-deactivation neurons turn a later head towards BOS and shrink its output", ev),
         ("heads write little from BOS (a small value vector)", ev_ratio)],
        [pairs_note(best, glue["att_n_seeds_deactivating"], glue["att_n_seeds"])]))
    shown = ["pair", "score", "p_random", *summaries[(ref, best["pair"].iloc[0])], "deactivates"]
    tables = {"pairs": best[shown].round(4), "seeds": seeds.round(4), "ratio": ratio.round(3)}
    return Chapter("attention", prof, glue=glue, tables=tables,
                   data={"reference": ref, "scores": s_ref, "random": rnd_later, "best": best, "null": null,
                         "ablations": abl, "ratio": ratio, "names": names, "pairs": pairs})


def scores_figure(ch: Chapter):
    """Figure 8a: the heuristic score of every (neuron, later head) pair against random unit directions."""
    s, rnd = ch.data["scores"], ch.data["random"]
    fig, ax = plotting.subplots(height=3.6)
    bins = np.linspace(min(s["score"].min(), rnd.min()), max(s["score"].max(), rnd.max()), 80)
    ax.hist(rnd, bins=bins, density=True, color="0.7", label="random unit directions")
    ax.hist(s["score"], bins=bins, density=True, histtype="step", color="C3", lw=1.5, label="neurons (w_out)")
    for _, r in ch.data["best"].iterrows():
        ax.axvline(r["score"], color="C3", ls=":", lw=1)
        ax.annotate(r["pair"], (r["score"], ax.get_ylim()[1] * 0.9), fontsize=7, rotation=90, ha="right", va="top")
    ax.set_yscale("log")
    plotting.plain_log(ax, "y")
    ax.legend(fontsize=8)
    ax.set(xlabel="ŵ_outᵀ W_Q k_BOS / √d_head", ylabel="density (log)",
           title=f"{ch.data['reference']}: how much each neuron's output steers a later head's query to BOS")
    return fig


def ablation_figure(ch: Chapter):
    """Figures 8b-c and 26: per ablated pair, the activation against the change (ablated − clean) of the head's
    attention to BOS and of its output norm after W_O, at the destination positions."""
    ref, abl = ch.data["reference"], ch.data["ablations"]
    pairs = list(ch.data["best"]["pair"])
    fig, axes = plotting.subplots(2, len(pairs), height=6.4, width=max(plotting.WIDE, 4 * len(pairs)),
                                  squeeze=False)
    rng = np.random.default_rng(0)
    for j, p in enumerate(pairs):
        g = abl[(abl["model"] == ref) & (abl["pair"] == p)]
        g = g.iloc[rng.permutation(len(g))[:N_SCATTER]]
        for i, (col, lab) in enumerate((("bos_attn_change", "Δ attention to BOS"),
                                        ("out_norm_change", "Δ |head output| (after W_O)"))):
            ax = axes[i, j]
            ax.scatter(g["activation"], g[col], s=3, alpha=0.3, color=f"C{i}")
            ax.axhline(0, color="k", lw=0.8)
            ax.set(xlabel="neuron post-activation", ylabel=lab if j == 0 else "")
        axes[0, j].set_title(p, fontsize=9)
    fig.suptitle(f"{ref}: the neuron's contribution removed from the head's query (ablated − clean)")
    return fig


def ratio_figure(ch: Chapter):
    """Per head: how many times smaller the BOS token's value output |W_O v_BOS| is than other tokens'."""
    r = ch.data["ratio"]
    fig, ax = plotting.subplots(height=3.2)
    labels = [f"L{l}.H{h}" for l, h in zip(r["layer"], r["head"])]
    ax.bar(labels, r["ratio"], color="C0")
    ax.axhline(paper.BOS_VALUE_RATIO, color="C3", ls="--", label=f"the paper's median head ({paper.BOS_VALUE_RATIO}x)")
    ax.axhline(RATIO_SHARE * paper.BOS_VALUE_RATIO, color="C3", ls=":", label=f"{RATIO_SHARE:g}x the paper's (the rule)")
    null = ch.data.get("null")
    if null is not None and len(null):
        ax.axhline(float(np.quantile(null, NULL_QUANTILE)), color="0.4", ls="-.",
                   label=f"median head, another position in place of BOS ({NULL_QUANTILE:.0%} quantile)")
    ax.axhline(float(r["ratio"].median()), color="C0", ls="-", lw=1, label="median head here")
    ax.axhline(1, color="k", lw=0.8)
    ax.set_yscale("log")
    plotting.plain_log(ax, "y")
    ax.legend(fontsize=8)
    ax.set(ylabel="mean |W_O v| other tokens / BOS (log)", title=f"{ch.data['reference']}: the BOS value per head")
    ax.tick_params(axis="x", rotation=90, labelsize=7)
    return fig


def seeds_figure(ch: Chapter):
    """Every seed's own strongest pair: the activation against the change of the head's attention to BOS."""
    abl, names, pairs = ch.data["ablations"], ch.data["names"], ch.data["pairs"]
    fig, axes = plotting.subplots(1, len(names), height=3.2, width=max(plotting.WIDE, 3.6 * len(names)), squeeze=False)
    rng = np.random.default_rng(0)
    for ax, m in zip(axes[0], names):
        l, n, lh, h = pairs[m][0]
        p = f"L{l}.{n} → L{lh}.H{h}"
        g = abl[(abl["model"] == m) & (abl["pair"] == p)]
        g = g.iloc[rng.permutation(len(g))[:N_SCATTER]]
        ax.scatter(g["activation"], g["bos_attn_change"], s=3, alpha=0.3)
        ax.axhline(0, color="k", lw=0.8)
        ax.set(title=f"{m}: {p}", xlabel="neuron post-activation")
        ax.title.set_fontsize(9)
    axes[0, 0].set_ylabel("Δ attention to BOS")
    fig.suptitle("each seed's strongest pair, its contribution removed from the head's query")
    return fig

"""How robust is "universal"? The universal share of the reference under several null models (many draws of the
paper's baseline, an orthogonal rotation, a permutation baseline) and matching rules (signed max, |r| max, the
worst partner, one-to-one Hungarian matching), with its uncertainty (a block bootstrap over held-out rows, leave
one partner out, the share against the number of partners) and layer-level similarity (CKA, SVCCA) beside the
neuron-level one. Everything comes from the co-moments (`comoments`) of tiles of whole layers that fit
`analysis.max_accumulator_gb` (`tiled_moments`; one tile per partner for small models, reference layers x
partner layers at the paper's sizes, each pass rerunning the models), each tile's statistics derived as it is
finished and combined by the max over partner layers, cached in the run folder. The Hungarian matching and its
bootstrap are skipped above a stated amount of work (`hungarian_plan`), with a line on the page saying so."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ...core import cache
from ... import data
from .. import plotting
from ...models.loading import load_model, members_signature
from ...measures import activations, tiled_moments
from ...measures import matching
from ...measures.nulls import permutation_max, rotated_corr, rotated_max
from ...measures.reference_port import fp16_rotations, max_nan_to_zero
from ...runs import emergence
from ...runs.control import run_control, untrained_control
from ...measures import similarity
from ...core import paper
from ...measures import uncertainty
from ...measures import verdicts
from ...core.atomic import write_npz, write_text
from ...config.profile import _warn_once, load_profile, name_of
from ..publish import Chapter
from ...runs.selection import resolve_threshold

VERSION = 5  # 2: the maxima on the first k blocks of tokens; 3: the untrained control, the errata, every rule's
# bootstrap; 4: the reference code's newline filter; 5: float32 products (as the universality pass), first-batch
# shift, within-layer own moments
DRAWS = 10  # draws of the paper's baseline
BLOCKS = 10  # contiguous row blocks of the bootstrap
BOOT = 200  # bootstrap draws
BOOT_HUNGARIAN = 30  # of which Hungarian matching is recomputed (about 1 s per partner and draw at d_mlp 1024)
REF_BATCH_ROWS = 32  # the reference's batch (its --batch_size), in rows of the context
SHIFT_ROWS = 4  # the permutation baseline's circular shift, in rows of the held-out split
HUNGARIAN_WORK = 2e13  # d_a·d_b·min(d_a, d_b) steps of assignments at most (about 10 minutes on one core: scipy's
# linear_sum_assignment does about 3e10 such steps a second at d = 1024-3072); see hungarian_plan
NOT_COMPUTED = "not computed at this size"
FAR_PASSES = 64  # a robustness pass split into more passes than this is worth a warning line


def shift_tokens(n_tokens: int, n_ctx: int) -> int:
    """The permutation baseline's circular shift: SHIFT_ROWS rows of the context, or half the tokens where there
    are not more than twice that many (a small dry run), so that the shifted pairs always exist."""
    return SHIFT_ROWS * n_ctx if n_tokens > 2 * SHIFT_ROWS * n_ctx else max(1, n_tokens // 2)


def _models(prof, device):
    """The reference, its partners and the untrained control (last), with their names."""
    sources = prof.members()
    models = [load_model(s, device=device, revision=prof.revision) for s in sources]
    models.append(load_model(untrained_control(prof), device=device, tokenizer=models[0].tokenizer))
    return models, [name_of(s) for s in sources] + ["untrained"]


def hungarian_note(info: dict) -> str:
    """One line for the page where the Hungarian matching or its bootstrap was skipped at this size ("" else)."""
    h = info.get("hungarian")
    if not h or (h["computed"] and h["boot_draws"] == BOOT_HUNGARIAN):
        return ""
    what = "its bootstrap interval was" if h["computed"] else "the Hungarian matching and its bootstrap were"
    return (f"At this size {what} not computed: one matching of every layer pair of every partner takes about "
            f"{h['work']:.2g} assignment steps (d_a·d_b·min(d_a, d_b) per layer pair), above the "
            f"{HUNGARIAN_WORK:.0e} the chapter allows (about 10 minutes on one core).")


def hungarian_plan(sizes_a, partner_sizes) -> tuple[bool, int, float]:
    """(compute the Hungarian matching, its bootstrap draws, the work of one matching of every partner) under the
    HUNGARIAN_WORK rule: an assignment of a d_a x d_b layer pair costs about d_a·d_b·min(d_a, d_b) steps, so one
    matching of all partners costs W = Σ_partners Σ_layer pairs d_a·d_b·min(d_a, d_b); the full-data matching
    is computed when W <= HUNGARIAN_WORK, its BOOT_HUNGARIAN bootstrap draws when (1 + BOOT_HUNGARIAN)·W <=
    HUNGARIAN_WORK (else none)."""
    work = float(sum(da * db * min(da, db) for sizes_b in partner_sizes for da in sizes_a for db in sizes_b))
    full = work <= HUNGARIAN_WORK
    return full, BOOT_HUNGARIAN if full and (1 + BOOT_HUNGARIAN) * work <= HUNGARIAN_WORK else 0, work


def statistics(models, names, tokens: np.ndarray, n_tokens: int, batch_rows: int, budget_bytes: float,
               device="cpu", progress: bool = True) -> tuple[dict, dict]:
    """The chapter's arrays and facts from `models` (the reference, its partners, the untrained control last) over
    `n_tokens` held-out tokens of `tokens` [rows, n_ctx]: the co-moments in tiles of whole layers within
    `budget_bytes` (`tiled_moments`: with the permutation shift, the bootstrap's blocks, the reference
    implementation's float16 accumulators and the newline filter's extra positions; each batch's products in
    float32 added into float64 sums, as the universality pass does; each model's own moments within layers, all
    that the rotations and the layer similarities read), each tile's statistics derived as it is finished
    (`_tile_stats`) and combined; no tile is kept."""
    n_ctx = tokens.shape[1]
    sizes = [[m.cfg.d_mlp] * m.cfg.n_layers for m in models]
    plan = activations.plan_pass(models, names, tokens, n_tokens)
    block_rows = -(-n_tokens // BLOCKS)
    n_blocks = -(-n_tokens // block_rows)
    extra_ids = activations.reference_kept_ids(models[0].tokenizer)
    extra = activations.extra_plan(plan, extra_ids)
    shift = shift_tokens(n_tokens, n_ctx)
    passes = tiled_moments.plan_passes(sizes[0], sizes[1:], budget_bytes, shift, n_blocks,
                                       full=[True] * (len(models) - 2) + [False])
    if len(passes) > FAR_PASSES:
        _warn_once(f"analysis.max_accumulator_gb={budget_bytes / 1e9:g} splits the robustness co-moments into "
                   f"{len(passes):,} passes over the held-out tokens (each reruns the models); raise it unless "
                   "memory is that short")
    ctx = _setup(sizes, n_blocks, extra is not None, {})
    out = ctx.pop("arrays")
    tiled_moments.run_passes(models, names, plan, passes, batch_rows, device,
                             lambda tile, cm, port, e: _tile_stats(tile, cm, port, e, ctx, out),
                             shift=shift, block_rows=block_rows, port_batch=REF_BATCH_ROWS * n_ctx,
                             extra=extra, act_bytes=min(budget_bytes / 4, 1e9), products="float32",
                             within_layers=True, progress=progress)
    info = {"names": names[:-1], "n_tokens": n_tokens, "sizes": sizes[:-1],
            "block_tokens": [int(x) for x in ctx["block_n"]], "newline_kept_ids": extra_ids.tolist(),
            "newline_kept": int(extra.snap_tokens[-1]) if extra is not None else 0, "passes": len(passes),
            "tiles": sum(map(len, passes)), "shift_tokens": shift, "hungarian": {"computed": ctx["hungarian"],
                                                          "boot_draws": ctx["boot_hungarian"],
                                                          "work": ctx["hungarian_work"]}}
    return out, info


def _shift_rows(info: dict, n_ctx: int):
    """The permutation's shift in rows of the context (a whole number unless a small run shortened it)."""
    rows = info.get("shift_tokens", SHIFT_ROWS * n_ctx) / n_ctx
    return int(rows) if rows == int(rows) else round(rows, 2)


def shares(real: np.ndarray, base: np.ndarray, threshold: float) -> float:
    """The universal share from per-partner maxima and baselines [P, n] (the paper's excess)."""
    return float(uncertainty.universal_share(uncertainty.excess_from(real, base), threshold))


def results(prof, device="cpu") -> tuple[dict, dict]:
    """Per-partner maxima under every rule and null, the bootstrap's maxima and the layer similarities (arrays,
    cached as robustness.npz with robustness.json in the run folder's tables), derived tile by tile
    (`_tile_stats`) and combined over the partner layers (the max; NaN where no partner neuron is defined)."""
    folder = Path(prof.tables_dir)
    npz, js = folder / "robustness.npz", folder / "robustness.json"
    rows = data.analysis_rows(prof, progress=False)
    key = cache.make_key("robustness", version=VERSION, tokens=int(prof.cfg["book"]["robust_tokens"]),
                         n_tokens=int(prof.cfg["analysis"]["n_tokens"]), data=rows.header["provenance"],
                         weights=members_signature(prof))
    if cache.is_current(folder, key) and npz.is_file() and js.is_file():
        with np.load(npz, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}, json.loads(js.read_text())
    with cache.updating(folder, key):
        n_tokens = min(int(prof.cfg["book"]["robust_tokens"]), int(prof.cfg["analysis"]["n_tokens"]))
        models, names = _models(prof, device)
        out, info = statistics(models, names, np.asarray(rows.tokens), n_tokens,
                               int(prof.cfg["analysis"].get("batch_size", 64)),
                               float(prof.cfg["analysis"]["max_accumulator_gb"]) * 1e9, device)
        write_npz(npz, out)
        write_text(js, json.dumps(info))
    return out, info


def _setup(sizes, n_blocks: int, newline: bool, out: dict) -> dict:
    """What every tile needs: the output arrays ("arrays", NaN until a tile fills them), the layer sizes (of the
    reference, each partner and the control, last), the bootstrap's weights over the blocks, the Hungarian rule's
    decision."""
    sizes_a, partner_sizes = sizes[0], sizes[1:-1]
    n_a, P, L_a = sum(sizes_a), len(partner_sizes), len(sizes_a)
    hung, boot_hung, work = hungarian_plan(sizes_a, partner_sizes)
    weights = np.random.default_rng(0).multinomial(n_blocks, np.full(n_blocks, 1 / n_blocks), size=BOOT)
    nan = lambda *shape: np.full(shape, np.nan)  # noqa: E731
    out |= {"real": nan(P, n_a), "abs": nan(P, n_a), "draws": nan(DRAWS, P, n_a), "ortho": nan(P, n_a),
            "perm": nan(P, n_a), "control": nan(n_a), "ref16": nan(P, n_a), "base16": nan(P, n_a),
            "boot": nan(BOOT, P, n_a), "boot_abs": nan(BOOT, P, n_a), "by_tokens": nan(n_blocks, P, n_a),
            "cka": nan(P, L_a, len(partner_sizes[0])), "svcca": nan(P, L_a, len(partner_sizes[0]))}
    if hung:
        out |= {"hungarian": nan(P, n_a), "boot_hungarian": nan(boot_hung, P, n_a)}
    if newline:
        out |= {"real_nl": nan(P, n_a), "base_nl": nan(P, n_a)}
    return {"arrays": out, "sizes": sizes, "edges": [np.cumsum([0, *s]) for s in sizes], "weights": weights,
            "hungarian": hung, "boot_hungarian": boot_hung, "hungarian_work": work, "n_partners": P, "block_n": None,
            "norms": {}, "preps": {}}


def _tile_stats(tile, cm, port, extra, ctx, out) -> None:
    """Every statistic of one tile (reference layers [a0, a1) x partner layers [b0, b1)), combined into `out` by
    the max over partner layers (np.fmax: NaN only where no tile has a value), the layer-pair blocks placed."""
    ea = ctx["edges"][0]
    rows = slice(int(ea[tile.a0]), int(ea[tile.a1]))
    sa = ctx["sizes"][0][tile.a0:tile.a1]
    sb = ctx["sizes"][tile.partner + 1][tile.b0:tile.b1]
    corr = cm.corr_ab()
    if tile.partner == ctx["n_partners"]:  # the untrained control: its signed max only
        out["control"][rows] = np.fmax(out["control"][rows], matching.signed_max(corr)[0])
        return
    p, l0 = tile.partner, tile.b0

    def put(k, v, *lead):
        idx = (*lead, p, rows)
        out[k][idx] = np.fmax(out[k][idx], v)

    put("real", matching.signed_max(corr)[0])
    put("abs", matching.abs_max(corr)[0])
    if ctx["hungarian"]:
        put("hungarian", matching.hungarian(corr, sa, sb)[0])
    del corr
    put("perm", permutation_max(cm))
    norms = ctx["norms"].setdefault(p, {})  # the rotated partner neurons' deviations, shared by the reference tiles
    for k, v in enumerate(rotated_max(cm, sb, draws=DRAWS, kind="gaussian-rows", seed=0, layer0=l0, norms=norms)):
        put("draws", v, k)
    put("ortho", rotated_max(cm, sb, draws=1, kind="orthogonal", seed=0, layer0=l0, norms=norms)[0])
    put("ref16", max_nan_to_zero(port.correlation()))
    put("base16", np.fmax.reduce(rotated_corr(cm, sb, fp16_rotations(sb, seed=0, draw=0, layer0=l0), norms=norms,
                                              tag="fp16", layer0=l0), axis=1))
    if extra is not None:
        both = cm.plus(extra)
        put("real_nl", matching.signed_max(both.corr_ab())[0])
        put("base_nl", rotated_max(both, sb, draws=1, kind="gaussian-rows", seed=0, layer0=l0,
                                   norms=ctx["norms"].setdefault(("newline", p), {}))[0])
        del both
    ctx["block_n"] = cm.block_n.copy()
    n_blocks = len(cm.block_n)
    growing = np.tril(np.ones((n_blocks, n_blocks)))  # the first k blocks, k = 1..n_blocks
    signed, absolute = cm.corr_blocks_max(np.concatenate([ctx["weights"], growing]))
    boot = len(ctx["weights"])
    for k in range(boot):
        put("boot", signed[k], k)
        put("boot_abs", absolute[k], k)
    for k in range(n_blocks):
        put("by_tokens", signed[boot + k], k)
    # the bootstrap's assignments on the machine's threads (scipy's solver releases the GIL; the same result)
    with ThreadPoolExecutor(max(1, min(torch.get_num_threads(), ctx["boot_hungarian"]))) as pool:
        drawn = pool.map(lambda k: matching.hungarian(cm.corr_blocks(ctx["weights"][k]), sa, sb)[0],
                         range(ctx["boot_hungarian"]))
        for k, v in enumerate(drawn):
            put("boot_hungarian", v, k)
    cov_aa, cov_bb, cov_ab = cm.cov_aa(), cm.cov_bb(), cm.cov_ab()
    if ctx["preps"].get("layers") != (p, tile.b0, tile.b1):  # the partner layers' decompositions, kept while the
        ctx["preps"] = {"layers": (p, tile.b0, tile.b1), "kept": {}}  # tiles of other reference layers use them
    kept = ({}, ctx["preps"]["kept"])
    for key, fn in (("cka", similarity.linear_cka), ("svcca", similarity.svcca)):
        out[key][p, tile.a0:tile.a1, tile.b0:tile.b1] = similarity.layer_matrix(
            cov_aa, cov_bb, cov_ab, sa, sb, fn, kept=kept, layer0=(tile.a0, tile.b0))


def compute(profile="smoke", device="cpu", overrides="") -> Chapter:
    """The share under every null and rule, its intervals, the draws, the partner curve and the layer similarity."""
    from IPython.display import Markdown


    prof = load_profile(profile, overrides, device=device)
    thr = resolve_threshold(prof.cfg["book"]["threshold"], prof.tables_dir)[0]
    r, info = results(prof, device)
    real, draws, ortho, perm = r["real"], r["draws"], r["ortho"], r["perm"]
    base = draws[0]
    control = np.broadcast_to(r["control"], real.shape)
    per_draw = np.array([shares(real, d, thr) for d in draws])
    nulls = {"the paper's draw": base, "orthogonal rotation": ortho, "permutation (rows shifted)": perm,
             "untrained control (its max correlation)": control}
    always = np.all([uncertainty.excess_from(real, b) > thr for b in (*draws, *list(nulls.values())[1:])], axis=0)
    rows = [_share_row(null, rule, full, boot, reduce, bl, thr)
            for null, bl in nulls.items() for rule, full, boot, reduce in _rules(r)]
    boot_shares = np.array([shares(b, base, thr) for b in r["boot"]])
    low, high = uncertainty.interval(boot_shares)
    curve = uncertainty.share_by_partners(real, base, thr)
    glue = {"rob_share": 100 * shares(real, base, thr), "rob_draw_min": 100 * per_draw.min(),
            "rob_draw_max": 100 * per_draw.max(), "rob_draws": DRAWS, "rob_boot_low": 100 * low,
            "rob_boot_high": 100 * high, "rob_blocks": BLOCKS, "rob_boot_draws": BOOT,
            "rob_n_tokens": int(info["n_tokens"]), "rob_n_always": int(always.sum()),
            "rob_n_universal": int((uncertainty.excess_from(real, base) > thr).sum()), "rob_threshold": thr,
            "rob_n_partners": len(real), "rob_shift_rows": _shift_rows(info, int(prof.cfg["model"]["n_ctx"]))}
    glue = {k: float(v) if isinstance(v, np.floating) else v for k, v in glue.items()}  # plain numbers for the page
    block_n = np.asarray(info["block_tokens"])
    tokens = pd.DataFrame({"held-out tokens": np.cumsum(block_n),
                           "share %": [100 * shares(m, base, thr) for m in r["by_tokens"]]}).set_index("held-out tokens")
    partners = (100 * curve[["share_mean", "share_min", "share_max"]]).round(3).assign(subsets=curve["subsets"])
    err = errata(r, thr, info)
    glue |= {"rob_control_share": 100 * shares(real, control, thr), "rob_port_share": float(err["share % (the reference's way)"].iloc[-1]),
             "rob_fp16_flips": int(err["verdicts changed"].iloc[0]),
             "rob_newline_kept": int(info.get("newline_kept", 0)),
             "rob_newline_share": float(err["share % (the reference's way)"].iloc[-2]),
             "rob_newline_flips": int(err["verdicts changed"].iloc[-2]),
             "rob_fp16_change": float(err["largest change of an excess"].iloc[0]),
             "rob_boot_hungarian": int(len(r["boot_hungarian"])) if "boot_hungarian" in r else 0}
    tables = {"shares": pd.DataFrame(rows).round(3), "partners": partners, "tokens": tokens.round(3),
              "errata": err}
    data_ = {"per_draw": per_draw, "boot": boot_shares, "boot_interval": (low, high), "cka": r["cka"],
             "svcca": r["svcca"], "names": info["names"], "curve": curve, "tokens": tokens, "threshold": thr}
    em_glue, em_table, em_data = emergence_view(prof, thr)
    sibling = em_glue.pop("rob_sibling", None)
    glue |= em_glue
    if sibling:
        glue |= {"rob_sibling_both": sibling["both"], "rob_sibling_final": sibling["final"]}
    ctrl = run_control(prof, device, progress=False, threshold=thr)
    share_ev = share_evidence(glue["rob_share"], (glue["rob_boot_low"], glue["rob_boot_high"]), len(real),
                              100 * float(ctrl.info["summary"]["share_universal"]), thr)
    verdicts.glue_verdict(glue, "rob_verdict_share", share_ev)
    ex = uncertainty.excess_from(real, base)
    in_draws = np.all([uncertainty.excess_from(real, d) > thr for d in draws], axis=0)
    boot_freq = np.mean([uncertainty.excess_from(b, base) > thr for b in r["boot"]], axis=0)
    stable = {"universal": int((ex > thr).sum()), "every_draw": int(in_draws.sum()),
              "boot95": int((boot_freq >= 0.95).sum()), "every_null": int(always.sum()),
              "core": int((always & in_draws & (boot_freq >= 0.95)).sum())}
    glue |= {f"rob_stable_{k}": v for k, v in stable.items()}
    table = tables["shares"]
    conclusion = conclusion_md(table, stable, glue, sibling, hungarian_note(info))
    glue["rob_conclusion_md"] = Markdown(conclusion)
    glue["rob_holds_md"] = Markdown(verdicts.holds_here([(SHARE_CLAIM, share_ev)], [conclusion]))
    if em_table is not None:
        tables["emergence"] = em_table
    data_["emergence"] = em_data
    return Chapter("robustness", prof, glue=glue, tables=tables, data=data_)


SHARE_CLAIM = "1-5% of the neurons are universal (excess correlation above 0.5)"


def share_evidence(share_pct: float, interval: tuple[float, float], n_partners: int, control_pct: float,
                   threshold: float) -> verdicts.Evidence:
    """The paper's share of universal neurons, as evidence: ours (%) with its block-bootstrap interval, against the
    paper's smallest share and the share that passes against the untrained control."""
    low = min(paper.SHARES, key=lambda m: paper.SHARES[m][0] / paper.SHARES[m][1])
    n, total = paper.SHARES[low]
    shares_words = ", ".join(f"{100 * a / b:.2f}% {m}" for m, (a, b) in paper.SHARES.items())
    untestable = "" if threshold == paper.THRESHOLD else \
        f"the book's threshold here is {threshold:g}, not the paper's {paper.THRESHOLD:g}"
    return verdicts.Evidence(
        f"the universal share against {n_partners} partner{'s' if n_partners != 1 else ''} (the paper: 4 for GPT-2, "
        "3 for Pythia-160m)", share_pct, magnitude=100 * n / total,
        magnitude_words=f"the paper's smallest share; it reports {shares_words}", noise=control_pct,
        noise_words="the share that passes against an untrained partner", interval=tuple(interval),
        untestable=untestable, unit="%")


def conclusion_md(shares_table: pd.DataFrame, stable: dict, glue: dict, sibling: dict | None, note: str = "") -> str:
    """The chapter's conclusion, from its numbers: the null and rule the book adopts and why, how far the others
    move the share, and how stable the set of universal neurons is (baseline draws, bootstrap, null models, the
    sibling rerun where there is one)."""
    t = shares_table.dropna(subset=["share %"]).sort_values("share %")
    lo, hi = t.iloc[0], t.iloc[-1]
    paper_row = t[(t["null"] == "the paper's draw") & (t["matching"] == "signed max (the paper)")].iloc[0]
    text = [f"**The book's reading.** The book adopts the paper's null (one seeded draw of its row-normalised "
            "Gaussian baseline) and its matching rule (the signed maximum), because only that pair makes the share "
            f"comparable with the paper's; it gives {paper_row['share %']:.2f}% (95% interval "
            f"{paper_row['95% interval %']}%). The other rows are sensitivity checks: across nulls and rules the share "
            f"runs from {lo['share %']:.2f}% ({lo['null']}, {lo['matching']}) to {hi['share %']:.2f}% "
            f"({hi['null']}, {hi['matching']})"]
    if lo["share %"] > 0 and hi["share %"] / lo["share %"] > 2:
        text[-1] += (f", a factor of {hi['share %'] / lo['share %']:.1f}, far wider than the bootstrap interval: "
                     "how many neurons count as universal depends on the definition more than on the sample of "
                     "tokens.")
    else:
        text[-1] += "."
    n = stable["universal"]
    if n:
        text.append(f"Of the {n} universal neurons, {stable['every_draw']} are universal under all "
                    f"{glue['rob_draws']} draws of the baseline, {stable['boot95']} in at least 95% of the "
                    f"{glue['rob_boot_draws']} bootstrap resamples and {stable['every_null']} under every null "
                    f"model; {stable['core']} pass all three, the stable core.")
    else:
        text.append("No neuron is universal by the paper's rule here, so there is no set whose stability to measure.")
    if note:  # a rule not computed at this size
        text.append(note)
    if sibling:
        text.append(f"A sibling run of the same recipe, seeds and data order ({sibling['why']}) keeps "
                    f"{sibling['both']} of its {sibling['final']} universal neurons universal in the shipped zoo: "
                    "which neurons are universal is less stable than how many.")
    return " ".join(text)


def emergence_view(prof, thr: float):
    """The glue, table and figure data of the emergence section, from `emergence.load` (None when this profile
    has no emergence results: the glue then says how to compute them)."""
    from IPython.display import Markdown

    res = None if prof.untrained else emergence.load(prof)  # the negative control has no training to follow
    if res is None:
        return ({"rob_emerge_md": Markdown(
            f"Emergence over training was not computed for this profile ({prof.name}): it needs the zoo retrained "
            f"with snapshots of the weights, `make emergence PROFILE={prof.name}` (for the default zoo about two "
            "hours on 2 CPU cores; its results are shipped in `results/`).")}, None, None)
    info, d_mlp = res.info, int(prof.cfg["model"]["d_mlp"])
    table = emergence.summary(res, thr, d_mlp)
    n_final = int(table["universal"].iloc[-1])
    tokens = table["tokens"].to_numpy()
    early = int(np.argmin(np.abs(tokens - 0.1 * tokens[-1])))
    half = table.index[table["final universal, universal here"] >= max(1, n_final / 2)]
    first = next((k for k, u in enumerate(table["universal"]) if u > 0), None)
    ex = emergence.excess(res)
    parts = [f"The zoo's recipe was retrained here with snapshots of the weights at {len(tokens)} steps (step 0 and "
             f"{len(tokens) - 1} log-spaced ones; seeds {info['reference_seed']} against "
             f"{', '.join(map(str, info['partner_seeds']))}, {info['n_tokens']:,} held-out tokens per step, "
             f"`{info['command']}`, {info['date']} on {info['cpu']}). At the end of training "
             f"{n_final} neurons ({table['share %'].iloc[-1]:.2f}%) are universal; at step 0 (initialisation) "
             f"{int(table['universal'].iloc[0])}" + (f"; the first appears after {tokens[first]:,} tokens."
                                                      if first is not None else ".")]
    n_partners, n_retrained = len(prof.members()) - 1, len(info["partner_seeds"])
    if n_retrained < n_partners:
        parts.append(f"Only {n_retrained} of the {n_partners} partners {'was' if n_retrained == 1 else 'were'} "
                     "retrained, and the share against fewer partners runs higher (the partner curve above), so "
                     "compare these numbers with each other, not with the share against all partners.")
    if n_final:
        parts.append(f"Of the {n_final} universal at the end, {int(table['final universal, universal here'].iloc[early])} "
                     f"were already universal after {tokens[early]:,} tokens (about a tenth of training) and "
                     f"{int(table['final universal, top 5% here'].iloc[early])} were in the top 5% by excess then; "
                     + (f"half of them were universal from {tokens[half[0]]:,} tokens on." if len(half) else ""))
    if "same_index_corr" in res:
        same = res["same_index_corr"]
        shipped = uncertainty.excess_from(res["shipped_real"], res["shipped_base"])
        both = int(((shipped > thr) & (ex[-1] > thr)).sum())
        ident = all(m.get("identical_to_shipped") for m in info["members"].values())
        parts.append(("The retrained members are byte-identical to the shipped ones. " if ident else
                      "The retrained members are not byte-identical to the shipped ones (another CPU: "
                      f"{info['cpu']} here, {', '.join(sorted({m['cpu'] for m in info['shipped'].values() if m['cpu']}))} "
                      "for the shipped zoo), so this is the trajectory of a sibling run of the same recipe, seeds "
                      "and data order: ")
                     + f"its reference's neurons correlate with the shipped reference's neuron of the same index at "
                     f"a median r = {np.nanmedian(same):.3f} ({100 * np.nanmean(same > 0.9):.0f}% above 0.9), and "
                     f"{both} of its {n_final} final universal neurons are universal in the shipped zoo against the "
                     f"same partner seeds ({int((shipped > thr).sum())} there).")
    glue = {"rob_emerge_md": Markdown(" ".join(parts))}
    if "same_index_corr" in res and not ident:
        glue["rob_sibling"] = {"both": both, "final": n_final,
                               "why": f"retrained on {info['cpu']}, not byte-identical to the shipped members"}
    data_ = {"table": table, "excess": ex, "tokens": tokens, "threshold": thr, "d_mlp": d_mlp}
    return glue, table.round(4).set_index("step"), data_


def _worst(m: np.ndarray) -> np.ndarray:
    """MinCorr: the worst partner's value [P, n] -> repeated for every partner, so that their mean is the minimum."""
    return np.broadcast_to(matching.min_corr(m), m.shape)


def _rules(r: dict):
    """(name, per-partner values [P, n], their bootstrap draws [D, P, n], the rule's reduction over partners); the
    Hungarian's values or draws None where they were not computed at this size (`hungarian_plan`)."""
    same = lambda m: m  # noqa: E731
    boot_h = r.get("boot_hungarian")
    return [("signed max (the paper)", r["real"], r["boot"], same), ("max of |r|", r["abs"], r["boot_abs"], same),
            ("Hungarian (one-to-one per layer pair)", r.get("hungarian"),
             boot_h if boot_h is not None and len(boot_h) else None, same),
            ("MinCorr (the worst partner)", r["real"], r["boot"], _worst)]


def _share_row(null: str, rule: str, values, boot, reduce, base, thr: float) -> dict:
    """One row of the table: the share, its bootstrap interval over row blocks (the baseline at its full-data
    value) and its range with each partner left out; "not computed at this size" where the values (or their
    bootstrap) were not computed."""
    if values is None:
        return {"null": null, "matching": rule, "share %": np.nan, "95% interval %": NOT_COMPUTED,
                "bootstrap draws": 0, "leave one partner out %": NOT_COMPUTED}
    if boot is None:
        low = high = np.nan
    else:
        low, high = uncertainty.interval([shares(reduce(b), base, thr) for b in boot])
    lo = uncertainty.leave_one_out((values, base), lambda m_, b_: shares(reduce(m_), b_, thr)) if len(values) > 1 else None
    return {"null": null, "matching": rule, "share %": 100 * shares(reduce(values), base, thr),
            "95% interval %": NOT_COMPUTED if boot is None else f"{100 * low:.2f}-{100 * high:.2f}",
            "bootstrap draws": 0 if boot is None else len(boot),
            "leave one partner out %": f"{100 * lo.low:.2f}-{100 * lo.high:.2f}" if lo else "-"}


def errata(r: dict, thr: float, info: dict | None = None) -> pd.DataFrame:
    """The reference code's choices, one at a time and together, against ours on the same activations: the
    universal share each way, the neurons whose verdict changes and the largest change of an excess."""
    real, base = r["real"], r["draws"][0]
    ours = uncertainty.excess_from(real, base)
    n_all = ours.size

    def row(choice, ours_way, theirs, share_theirs=None):
        live = ~np.isnan(ours) & ~np.isnan(theirs)
        flips = int(((ours[live] > thr) != (theirs[live] > thr)).sum())
        return {"the reference's choice": choice, "ours": ours_way, "share % (ours)": 100 * shares(real, base, thr),
                "share % (the reference's way)": 100 * (share_theirs if share_theirs is not None else
                                                        uncertainty.universal_share(theirs, thr)),
                "verdicts changed": flips, "largest change of an excess": float(np.nanmax(np.abs(theirs - ours)))}

    draws = [uncertainty.excess_from(real, d) for d in r["draws"]]
    spread = [uncertainty.universal_share(d, thr) for d in draws]
    nan0 = np.nan_to_num(ours, nan=0.0)
    port = np.nan_to_num(uncertainty.excess_from(r["ref16"], np.nan_to_num(r["base16"], nan=0.0)), nan=0.0)
    out = [row("float16 activations, float16 batch sums, one-pass formula, float16 correlations",
               "float32 activations, float64 shifted sums", uncertainty.excess_from(r["ref16"], base)),
           row("NaN correlations set to 0, dead neurons counted", "dead neurons left out of the share", nan0,
               float((nan0 > thr).sum() / n_all)),
           row(f"one unseeded draw of the baseline (range over {len(draws)} seeded draws)",
               "the same draw, seeded (draw 0)", draws[int(np.argmax(np.abs(np.array(spread) - spread[0])))]),
           row("row-normalised Gaussian matrix (not a rotation)", "an exactly orthogonal rotation",
               uncertainty.excess_from(real, r["ortho"])),
           row("baseline matrices rounded to float16", "float64 matrices", uncertainty.excess_from(real, r["base16"])),
           row(f"only the newline token itself dropped ({(info or {}).get('newline_kept', 0):,} other whitespace-only "
               "newline tokens kept)", "every whitespace-only token with a newline dropped",
               uncertainty.excess_from(r["real_nl"], r["base_nl"]) if "real_nl" in r else ours),
           row("the float16 arithmetic, NaN correlations as 0 and the float16 baseline, together", "ours", port,
               float((port > thr).sum() / n_all))]
    table = pd.DataFrame(out).round(4)
    table["share % (the reference's way)"] = table["share % (the reference's way)"].astype(object)
    table.loc[2, "share % (the reference's way)"] = f"{100 * min(spread):.2f}-{100 * max(spread):.2f}"
    return table


def _token_x(tokens) -> np.ndarray:
    """Training tokens as x positions on a log axis: step 0 drawn a factor 4 left of the first snapshot."""
    t = np.asarray(tokens, dtype=float)
    return np.where(t > 0, t, t[t > 0].min() / 4 if (t > 0).any() else 1.0)


def _token_axis(ax, tokens) -> None:
    """A log axis of training tokens whose leftmost tick, at step 0, reads 0."""
    x = _token_x(tokens)
    ax.set_xscale("log")
    decades = [10.0 ** k for k in range(int(np.ceil(np.log10(x.min() * 1.5))), int(np.floor(np.log10(x.max()))) + 1)]
    ax.set_xticks([x.min(), *decades], ["0", *(f"$10^{{{int(np.log10(d))}}}$" for d in decades)])
    ax.minorticks_off()
    ax.set_xlabel("training tokens")


def _no_emergence(ch: Chapter):
    return plotting.absent(f"emergence over training was not computed for profile {ch.profile.name}: "
                           f"make emergence PROFILE={ch.profile.name}")


def emergence_figure(ch: Chapter):
    """The universal share and loss, the excess quantiles, and the per-layer counts against training tokens."""
    em = ch.data["emergence"]
    if em is None:
        return _no_emergence(ch)
    t, tab, thr = _token_x(em["tokens"]), em["table"], em["threshold"]
    fig, axes = plotting.subplots(1, 3, height=3.4, width=14)
    axes[0].plot(t, tab["share %"], "o-", label="universal share")
    axes[0].set(ylabel="universal share (%)", title="universal share and held-out loss")
    twin = axes[0].twinx()
    twin.plot(t, tab["held-out loss"], "s--", color="C3", label="held-out loss (reference)")
    twin.set_ylabel("held-out loss (nats)", color="C3")
    for q, style in (("excess max", "k-"), ("excess q99", "C1o-"), ("excess q50", "C0o-")):
        axes[1].plot(t, tab[q], style, label=q.removeprefix("excess "))
    axes[1].axhline(thr, color="grey", ls="--", lw=1, label=f"threshold {thr:g}")
    axes[1].set(ylabel="excess correlation", title="excess distribution")
    axes[1].legend(fontsize=8)
    for c in [c for c in tab.columns if c.startswith("layer ")]:
        axes[2].plot(t, tab[c], "o-", label=c)
    axes[2].set(ylabel="universal neurons", title="universal neurons per layer")
    axes[2].legend(fontsize=8)
    for ax in axes:
        _token_axis(ax, em["tokens"])
    return fig


def emergence_neurons_figure(ch: Chapter):
    """Each finally universal neuron's excess over training, and how many of them were universal (or in the top
    5%) at each step."""
    em = ch.data["emergence"]
    if em is None:
        return _no_emergence(ch)
    t, ex, tab, thr = _token_x(em["tokens"]), em["excess"], em["table"], em["threshold"]
    final = ex[-1] > thr
    fig, axes = plotting.subplots(1, 2, height=3.4, width=11)
    for i in np.flatnonzero(final):
        axes[0].plot(t, ex[:, i], color="C0", alpha=0.5, lw=1)
    axes[0].plot(t, np.nanmedian(ex, 1), "k--", lw=2, label="median over all neurons")
    axes[0].axhline(thr, color="grey", ls=":", lw=1)
    axes[0].set(ylabel="excess correlation", title=f"the {int(final.sum())} neurons universal at the end")
    axes[0].legend(fontsize=8)
    axes[1].plot(t, tab["final universal, universal here"], "o-", label="universal at this step")
    axes[1].plot(t, tab["final universal, top 5% here"], "s-", label="in the top 5% by excess")
    axes[1].axhline(final.sum(), color="grey", ls="--", lw=1)
    axes[1].set(ylabel="of the finally universal neurons", title="when the final universal neurons emerge")
    axes[1].legend(fontsize=8)
    for ax in axes:
        _token_axis(ax, em["tokens"])
    return fig


def draws_figure(ch: Chapter):
    """The share under each draw of the paper's baseline, and the bootstrap distribution over row blocks."""
    fig, axes = plotting.subplots(1, 2, height=3.4, width=11)
    d = 100 * ch.data["per_draw"]
    axes[0].plot(np.arange(1, len(d) + 1), d, "o-")
    axes[0].set(xlabel="draw of the random rotations", ylabel="universal share (%)",
                title=f"{len(d)} draws of the paper's baseline")
    axes[1].hist(100 * ch.data["boot"], bins=30, color="C1")
    for x in ch.data["boot_interval"]:
        axes[1].axvline(100 * x, color="k", ls="--", lw=1)
    axes[1].set(xlabel="universal share (%)", ylabel="bootstrap draws",
                title="block bootstrap over held-out rows (95% interval dashed)")
    return fig


def partners_figure(ch: Chapter):
    """The universal share against the number of partners (mean and range over partner subsets) and against the
    number of held-out tokens (the first blocks; the baseline at its full-data value)."""
    c, t = ch.data["curve"], ch.data["tokens"]
    fig, axes = plotting.subplots(1, 2, height=3.2, width=11)
    axes[0].plot(c.index, 100 * c["share_mean"], "o-")
    axes[0].fill_between(c.index, 100 * c["share_min"], 100 * c["share_max"], alpha=0.25)
    axes[0].set(xlabel="partners", ylabel="universal share (%)", xticks=list(c.index),
                title="against the number of partner seeds")
    axes[1].plot(t.index, t["share %"], "o-", color="C1")
    axes[1].set(xlabel="held-out tokens", ylabel="universal share (%)", title="against the held-out tokens")
    return fig


def similarity_figure(ch: Chapter):
    """Layer-level similarity (linear CKA, SVCCA) of the reference's layers with each partner's."""
    names = ch.data["names"]
    P = len(ch.data["cka"])
    fig, axes = plotting.subplots(2, P, height=3.0, width=max(plotting.WIDE, 3.4 * P), squeeze=False,
                                  layout="constrained")
    for j in range(P):
        for i, (key, lab) in enumerate((("cka", "linear CKA"), ("svcca", "SVCCA (mean canonical corr.)"))):
            ax = axes[i, j]
            m = ch.data[key][j]
            im = ax.imshow(m, vmin=0, vmax=1, cmap="viridis")
            for (r, c), v in np.ndenumerate(m):
                ax.text(c, r, f"{v:.2f}", ha="center", va="center", color="w" if v < 0.6 else "k", fontsize=8)
            ax.set(xlabel=f"{names[j + 1]} layer", ylabel=f"{names[0]} layer", title=f"{lab}")
            ax.set_xticks(range(m.shape[1]))
            ax.set_yticks(range(m.shape[0]))
    fig.colorbar(im, ax=axes.ravel().tolist(), fraction=0.03, label="similarity")
    return fig

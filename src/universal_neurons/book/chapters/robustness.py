"""How robust is "universal"? The universal share of the reference under several null models (many draws of the
paper's baseline, an orthogonal rotation, a permutation baseline) and matching rules (signed max, |r| max, the
worst partner, one-to-one Hungarian matching), with its uncertainty (a block bootstrap over held-out rows, leave
one partner out, the share against the number of partners) and layer-level similarity (CKA, SVCCA) beside the
neuron-level one. Everything comes from one pass of co-moments (`comoments`), cached in the run folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ...core import cache
from ... import data
from .. import plotting
from ...models.loading import load_model, members_signature
from ...measures import activations
from ...measures import matching
from ...measures.nulls import permutation_max, rotated_corr, rotated_max
from ...measures.reference_port import ReferencePearson, fp16_rotations, max_nan_to_zero
from ...runs import emergence
from ...runs.control import run_control, untrained_control
from ...measures import similarity
from ...core import paper
from ...measures import uncertainty
from ...measures import verdicts
from ...core.atomic import write_npz, write_text
from ...config.profile import load_profile, name_of
from ..publish import Chapter
from ...runs.selection import resolve_threshold

VERSION = 4  # 2: the maxima on the first k blocks of tokens; 3: the untrained control, the errata, every rule's
# bootstrap; 4: the reference code's newline filter
DRAWS = 10  # draws of the paper's baseline
BLOCKS = 10  # contiguous row blocks of the bootstrap
BOOT = 200  # bootstrap draws
BOOT_HUNGARIAN = 30  # of which Hungarian matching is recomputed (about 1 s per partner and draw at d_mlp 1024)
REF_BATCH_ROWS = 32  # the reference's batch (its --batch_size), in rows of the context
SHIFT_ROWS = 4  # the permutation baseline's circular shift, in rows of the held-out split


def _pass(prof, device):
    """The co-moments of the reference with each partner and with the untrained control (last) over
    book.robust_tokens held-out tokens, and the reference implementation's float16 accumulators of the same
    tokens for each partner (`reference_port`). Not kept: only what the chapter derives from them is cached."""
    sources = prof.members()
    rows = data.analysis_rows(prof, progress=False)
    n_tokens = min(int(prof.cfg["book"]["robust_tokens"]), int(prof.cfg["analysis"]["n_tokens"]))
    models = [load_model(s, device=device, revision=prof.revision) for s in sources]
    models.append(load_model(untrained_control(prof), device=device, tokenizer=models[0].tokenizer))
    names = [name_of(s) for s in sources] + ["untrained"]
    width = [m.cfg.n_layers * m.cfg.d_mlp for m in models]
    ports = [ReferencePearson(width[0], w, REF_BATCH_ROWS * rows.n_ctx) for w in width[1:-1]]

    def port(acts):
        for p, b in zip(ports, acts[1:-1]):
            p.update(acts[0], b)

    cms = activations.co_moments(models, names, np.asarray(rows.tokens), n_tokens, int(prof.cfg["analysis"].get("batch_size", 64)),
                       device, on_chunk=port, shift=SHIFT_ROWS * rows.n_ctx, block_rows=-(-n_tokens // BLOCKS))
    sizes = [[m.cfg.d_mlp] * m.cfg.n_layers for m in models[:-1]]
    extra_ids = activations.reference_kept_ids(models[0].tokenizer)
    extra = activations.extra_co_moments(models[:-1], names[:-1], np.asarray(rows.tokens), n_tokens,
                               int(prof.cfg["analysis"].get("batch_size", 64)), device, extra_ids)
    return cms, ports, extra, {"names": names[:-1], "n_tokens": n_tokens, "sizes": sizes,
                               "block_tokens": [int(x) for x in cms[0].block_n],
                               "newline_kept_ids": extra_ids.tolist(), "newline_kept": int(extra[0].n) if extra else 0}


def shares(real: np.ndarray, base: np.ndarray, threshold: float) -> float:
    """The universal share from per-partner maxima and baselines [P, n] (the paper's excess)."""
    return float(uncertainty.universal_share(uncertainty.excess_from(real, base), threshold))


def results(prof, device="cpu") -> tuple[dict, dict]:
    """Per-partner maxima under every rule and null, the bootstrap's maxima and the layer similarities (arrays,
    cached as robustness.npz with robustness.json in the run folder's tables)."""
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
        cms, ports, extra, info = _pass(prof, device)
        control = cms.pop()
        sizes_a, sizes_b = info["sizes"][0], info["sizes"][1:]
        corr = [cm.corr_ab() for cm in cms]
        rng = np.random.default_rng(0)
        n_blocks = len(cms[0].block_n)
        weights = rng.multinomial(n_blocks, np.full(n_blocks, 1 / n_blocks), size=BOOT)
        boot = {"boot": [], "boot_abs": [], "boot_hungarian": []}
        for k, w in enumerate(weights):
            c_w = [cm.corr_blocks(w) for cm in cms]
            boot["boot"].append(np.stack([matching.signed_max(c)[0] for c in c_w]))
            boot["boot_abs"].append(np.stack([matching.abs_max(c)[0] for c in c_w]))
            if k < BOOT_HUNGARIAN:
                boot["boot_hungarian"].append(np.stack([matching.hungarian(c, sizes_a, sb)[0] for c, sb in zip(c_w, sizes_b)]))
        out = {"real": np.stack([matching.signed_max(c)[0] for c in corr]),
               "abs": np.stack([matching.abs_max(c)[0] for c in corr]),
               "hungarian": np.stack([matching.hungarian(c, sizes_a, sb)[0] for c, sb in zip(corr, sizes_b)]),
               "draws": np.stack([rotated_max(cm, sb, draws=DRAWS, kind="gaussian-rows", seed=0)
                                  for cm, sb in zip(cms, sizes_b)], axis=1),
               "ortho": np.stack([rotated_max(cm, sb, draws=1, kind="orthogonal", seed=0)[0]
                                  for cm, sb in zip(cms, sizes_b)]),
               "perm": np.stack([permutation_max(cm) for cm in cms]),
               "control": matching.signed_max(control.corr_ab())[0],
               **newline_maxima(cms, extra, sizes_b),
               "ref16": np.stack([max_nan_to_zero(p.correlation()) for p in ports]),
               "base16": np.stack([np.fmax.reduce(rotated_corr(cm, sb, fp16_rotations(sb, seed=0, draw=0)), axis=1)
                                   for cm, sb in zip(cms, sizes_b)]),
               **{k: np.stack(v) for k, v in boot.items()},
               "by_tokens": np.stack([np.stack([matching.signed_max(cm.corr_blocks((np.arange(n_blocks) < k).astype(float)))[0]
                                                for cm in cms]) for k in range(1, n_blocks + 1)]),
               "cka": np.stack([similarity.layer_matrix(cm.cov_aa(), cm.cov_bb(), cm.cov_ab(), sizes_a, sb)
                                for cm, sb in zip(cms, sizes_b)]),
               "svcca": np.stack([similarity.layer_matrix(cm.cov_aa(), cm.cov_bb(), cm.cov_ab(), sizes_a, sb, similarity.svcca)
                                  for cm, sb in zip(cms, sizes_b)])}
        write_npz(npz, out)
        write_text(js, json.dumps(info))
    return out, info


def newline_maxima(cms, extra, sizes_b) -> dict:
    """The signed maxima and the paper's baseline (draw 0) with the reference code's newline filter: the same rows,
    with the whitespace-only newline tokens other than "\\n" kept (`extra`: their co-moments); ours when none occurs."""
    if not extra:
        return {}
    both = [cm.plus(e) for cm, e in zip(cms, extra)]
    return {"real_nl": np.stack([matching.signed_max(c.corr_ab())[0] for c in both]),
            "base_nl": np.stack([rotated_max(c, sb, draws=1, kind="gaussian-rows", seed=0)[0]
                                 for c, sb in zip(both, sizes_b)])}


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
            "rob_n_partners": len(real), "rob_shift_rows": SHIFT_ROWS}
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
             "rob_boot_hungarian": BOOT_HUNGARIAN}
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
    conclusion = conclusion_md(table, stable, glue, sibling)
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


def conclusion_md(shares_table: pd.DataFrame, stable: dict, glue: dict, sibling: dict | None) -> str:
    """The chapter's conclusion, from its numbers: the null and rule the book adopts and why, how far the others
    move the share, and how stable the set of universal neurons is (baseline draws, bootstrap, null models, the
    sibling rerun where there is one)."""
    t = shares_table.sort_values("share %")
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
    """(name, per-partner values [P, n], their bootstrap draws [D, P, n], the rule's reduction over partners)."""
    same = lambda m: m  # noqa: E731
    return [("signed max (the paper)", r["real"], r["boot"], same), ("max of |r|", r["abs"], r["boot_abs"], same),
            ("Hungarian (one-to-one per layer pair)", r["hungarian"], r["boot_hungarian"], same),
            ("MinCorr (the worst partner)", r["real"], r["boot"], _worst)]


def _share_row(null: str, rule: str, values, boot, reduce, base, thr: float) -> dict:
    """One row of the table: the share, its bootstrap interval over row blocks (the baseline at its full-data
    value) and its range with each partner left out."""
    low, high = uncertainty.interval([shares(reduce(b), base, thr) for b in boot])
    lo = uncertainty.leave_one_out((values, base), lambda m_, b_: shares(reduce(m_), b_, thr)) if len(values) > 1 else None
    return {"null": null, "matching": rule, "share %": 100 * shares(reduce(values), base, thr),
            "95% interval %": f"{100 * low:.2f}-{100 * high:.2f}", "bootstrap draws": len(boot),
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

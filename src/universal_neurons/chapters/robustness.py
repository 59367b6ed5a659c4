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

from .. import cache, data, plotting
from .. import activations as A
from .. import matching as M
from .. import nulls as N
from .. import similarity as S
from .. import uncertainty as U
from ..atomic import write_text
from ..comoments import CoMoments
from ..config import load_profile
from ..publish import Chapter
from .entropy import name_of

VERSION = 2  # 2: the maxima on the first k blocks of tokens
DRAWS = 10  # draws of the paper's baseline
BLOCKS = 10  # contiguous row blocks of the bootstrap
BOOT = 200  # bootstrap draws
SHIFT_ROWS = 4  # the permutation baseline's circular shift, in rows of the held-out split


def _pass(prof, device):
    """The co-moments of the reference with each partner over book.robust_tokens held-out tokens (not kept: only
    what the chapter derives from them is cached, see `results`)."""
    from ..loading import load_model

    sources = prof.members()
    rows = data.analysis_rows(prof, progress=False)
    n_tokens = min(int(prof.cfg["book"]["robust_tokens"]), int(prof.cfg["analysis"]["n_tokens"]))
    models = [load_model(s, device=device, revision=prof.revision) for s in sources]
    names = [name_of(s) for s in sources]
    plan = A.plan_pass(models, names, np.asarray(rows.tokens), n_tokens)
    n_a = models[0].cfg.n_layers * models[0].cfg.d_mlp
    cms = [CoMoments(n_a, m.cfg.n_layers * m.cfg.d_mlp, shift=SHIFT_ROWS * rows.n_ctx,
                     block_rows=-(-n_tokens // BLOCKS)) for m in models[1:]]
    from tqdm.auto import tqdm

    for c in tqdm(range(len(plan.chunks)), desc="co-moments", unit="chunk"):
        acts = A.chunk_activations(models, names, plan, c, int(prof.cfg["analysis"].get("batch_size", 64)), device)
        for cm, b_acts in zip(cms, acts[1:]):
            cm.update(acts[0], b_acts)
    sizes = [[m.cfg.d_mlp] * m.cfg.n_layers for m in models]
    return cms, {"names": names, "n_tokens": n_tokens, "sizes": sizes,
                 "block_tokens": [int(x) for x in cms[0].block_n]}


def shares(real: np.ndarray, base: np.ndarray, threshold: float) -> float:
    """The universal share from per-partner maxima and baselines [P, n] (the paper's excess)."""
    return float(U.universal_share(U.excess_from(real, base), threshold))


def results(prof, device="cpu") -> tuple[dict, dict]:
    """Per-partner maxima under every rule and null, the bootstrap's maxima and the layer similarities (arrays,
    cached as robustness.npz with robustness.json in the run folder's tables)."""
    from ..loading import resolve_checkpoint

    folder = Path(prof.tables_dir)
    npz, js = folder / "robustness.npz", folder / "robustness.json"
    rows = data.analysis_rows(prof, progress=False)
    key = cache.make_key("robustness", version=VERSION, tokens=int(prof.cfg["book"]["robust_tokens"]),
                         n_tokens=int(prof.cfg["analysis"]["n_tokens"]), data=rows.header["provenance"],
                         weights=[cache.weights_signature(resolve_checkpoint(s, prof.revision)) for s in prof.members()])
    if cache.is_current(folder, key) and npz.is_file() and js.is_file():
        with np.load(npz, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}, json.loads(js.read_text())
    with cache.updating(folder, key):
        cms, info = _pass(prof, device)
        sizes_a, sizes_b = info["sizes"][0], info["sizes"][1:]
        corr = [cm.corr_ab() for cm in cms]
        rng = np.random.default_rng(0)
        n_blocks = len(cms[0].block_n)
        weights = rng.multinomial(n_blocks, np.full(n_blocks, 1 / n_blocks), size=BOOT)
        out = {"real": np.stack([M.signed_max(c)[0] for c in corr]),
               "abs": np.stack([M.abs_max(c)[0] for c in corr]),
               "hungarian": np.stack([M.hungarian(c, sizes_a, sb)[0] for c, sb in zip(corr, sizes_b)]),
               "draws": np.stack([N.rotated_max(cm, sb, draws=DRAWS, kind="gaussian-rows", seed=0)
                                  for cm, sb in zip(cms, sizes_b)], axis=1),
               "ortho": np.stack([N.rotated_max(cm, sb, draws=1, kind="orthogonal", seed=0)[0]
                                  for cm, sb in zip(cms, sizes_b)]),
               "perm": np.stack([N.permutation_max(cm) for cm in cms]),
               "boot": np.stack([np.stack([M.signed_max(cm.corr_blocks(w))[0] for cm in cms]) for w in weights]),
               "by_tokens": np.stack([np.stack([M.signed_max(cm.corr_blocks((np.arange(n_blocks) < k).astype(float)))[0]
                                                for cm in cms]) for k in range(1, n_blocks + 1)]),
               "cka": np.stack([S.layer_matrix(cm.cov_aa(), cm.cov_bb(), cm.cov_ab(), sizes_a, sb)
                                for cm, sb in zip(cms, sizes_b)]),
               "svcca": np.stack([S.layer_matrix(cm.cov_aa(), cm.cov_bb(), cm.cov_ab(), sizes_a, sb, S.svcca)
                                  for cm, sb in zip(cms, sizes_b)])}
        from ..atomic import atomic_path

        with atomic_path(npz) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **out)
        write_text(js, json.dumps(info))
    return out, info


def compute(profile="smoke", device="cpu", overrides="") -> Chapter:
    """The share under every null and rule, its intervals, the draws, the partner curve and the layer similarity."""
    from .. import control as C

    prof = load_profile(profile, overrides, device=device)
    thr = C.resolve_threshold(prof.cfg["book"]["threshold"], prof)[0]
    r, info = results(prof, device)
    real, draws, ortho, perm = r["real"], r["draws"], r["ortho"], r["perm"]
    base = draws[0]
    per_draw = np.array([shares(real, d, thr) for d in draws])
    always = np.all([U.excess_from(real, d) > thr for d in (*draws, ortho, perm)], axis=0)
    rules = {"signed max (the paper)": real, "max of |r|": r["abs"], "Hungarian (one-to-one per layer pair)": r["hungarian"]}
    rows = []
    for null, bl in (("the paper's draw", base), ("orthogonal rotation", ortho), ("permutation (rows shifted)", perm)):
        for rule, m in rules.items():
            lo = U.leave_one_out((m, bl), lambda m_, b_: shares(m_, b_, thr)) if len(m) > 1 else None
            rows.append({"null": null, "matching": rule, "share %": 100 * shares(m, bl, thr),
                         "leave one partner out %": f"{100 * lo.low:.2f}-{100 * lo.high:.2f}" if lo else "-"})
    worst = M.min_corr(real) - base.mean(0)
    live = ~np.isnan(worst)
    rows.append({"null": "the paper's draw", "matching": "MinCorr (the worst partner)",
                 "share %": 100 * float((worst[live] > thr).mean()), "leave one partner out %": "-"})
    boot_shares = np.array([shares(b, base, thr) for b in r["boot"]])
    low, high = U.interval(boot_shares)
    curve = U.share_by_partners(real, base, thr)
    glue = {"rob_share": 100 * shares(real, base, thr), "rob_draw_min": 100 * per_draw.min(),
            "rob_draw_max": 100 * per_draw.max(), "rob_draws": DRAWS, "rob_boot_low": 100 * low,
            "rob_boot_high": 100 * high, "rob_blocks": BLOCKS, "rob_boot_draws": BOOT,
            "rob_n_tokens": int(info["n_tokens"]), "rob_n_always": int(always.sum()),
            "rob_n_universal": int((U.excess_from(real, base) > thr).sum()), "rob_threshold": thr,
            "rob_n_partners": len(real), "rob_shift_rows": SHIFT_ROWS}
    glue = {k: float(v) if isinstance(v, np.floating) else v for k, v in glue.items()}  # plain numbers for the page
    block_n = np.asarray(info["block_tokens"])
    tokens = pd.DataFrame({"held-out tokens": np.cumsum(block_n),
                           "share %": [100 * shares(m, base, thr) for m in r["by_tokens"]]}).set_index("held-out tokens")
    partners = (100 * curve[["share_mean", "share_min", "share_max"]]).round(3).assign(subsets=curve["subsets"])
    return Chapter("robustness", prof, glue=glue, tables={"shares": pd.DataFrame(rows).round(3), "partners": partners,
                                                          "tokens": tokens.round(3)},
                   data={"per_draw": per_draw, "boot": boot_shares, "boot_interval": (low, high), "cka": r["cka"],
                         "svcca": r["svcca"], "names": info["names"], "curve": curve, "tokens": tokens})


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

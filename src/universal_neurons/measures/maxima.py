"""Universal neurons (paper section 2), the pass: correlate every reference neuron with every neuron of each
partner, and with the partner's randomly rotated neurons as a baseline, in one streaming pass that keeps,
per reference neuron, only the maxima. The tables derived from them live in `neuron_tables`.

For reference neuron i and partner m: max_corr_m(i) is the signed max Pearson correlation over all partner
neurons (all layers), baseline_m(i) the same over the partner's rotated neurons u = R_l v (one fixed
d_mlp x d_mlp matrix R_l per partner layer: N(0,1) entries with unit-norm rows, or orthogonal);
excess_corr = mean_m max_corr_m − mean_m baseline_m; universal iff excess_corr > threshold.

Dead neurons (zero variance over the kept tokens) have undefined correlations, handled the same way on
both sides: a dead partner neuron (real or rotated) never wins a max; a dead reference neuron gets NaN
max_corr, baseline and excess_corr (never universal), layer -1 and `is_dead` True.

The baseline needs no rotated activations: the pass accumulates the reference-by-partner co-moments and
each partner layer's own co-moments Σ_vv, and at every token snapshot cov(x, R v) = cov(x, v) Rᵀ and
var(R v)_j = R_j Σ_vv R_jᵀ give the rotated correlations exactly. Per token that is one product of the
reference against the real partner neurons plus a d_mlp x d_mlp product per partner layer, instead of a
second full product against rotated neurons (about half the work).

Memory is bounded by `max_accumulator_gb`, not by the model: the partner layers (all partners side by
side) are grouped into tiles, one pass over the tokens per tile, keeping per reference neuron only
running maxima; when even one partner layer is too wide, the reference neurons are split into row blocks
as well. Accumulators are checkpointed every few chunks (a killed run resumes), and under torchrun
(`universality.torchrun_session`) the chunks are shared out over the processes and the accumulators all-reduced.

`Correlations.save` writes every snapshot's per-partner maxima, argmax indices and baselines and the per-layer
maxima (`maxima.npz`, with `pass.json`); `universality.run_universality` runs the pass for a profile, cached.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..core.atomic import atomic_path, write_json
from ..core.checksum import file_sha256
from ..core.errors import UserError
from .activations import chunk_activations, plan_pass
from .correlation import RunningMax, StreamingPearson
from .pass_checkpoints import _resume, _save_state

FRACTIONS = (1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0)  # token snapshots for the convergence curve
BYTES_PER_PAIR = 32  # per (reference, partner column): float64 accumulator, float32 product, float64 copy at a
# snapshot, with room for one layer's masked maxima; `max_accumulator_gb` bounds these plus the chunk's columns
VERSION = 3  # 2: the rotated baseline computed from the partner layers' co-moments; 3: the raw pass saved
MAXIMA, PASS_INFO, PASS_KIND = "maxima.npz", "pass.json", "universality-pass"  # the saved pass, its cache kind


class DamagedPass(UserError):
    """A saved pass that could not be read (it has been removed, so the next run recomputes it)."""


def rotation(d: int, seed: int, partner: int, layer: int, kind: str = "gaussian") -> torch.Tensor:
    """The baseline matrix R [d, d] (float32) of one partner layer; rotated neurons are u = R v."""
    r = np.random.default_rng([seed, partner, layer]).standard_normal((d, d))
    if kind == "gaussian":
        r /= np.linalg.norm(r, axis=1, keepdims=True)
    elif kind == "orthogonal":
        q, t = np.linalg.qr(r)
        r = q * np.sign(np.diag(t))
    else:
        raise UserError(f"unknown baseline {kind!r}; choose gaussian (the paper's) or orthogonal")
    return torch.from_numpy(r).float()


CHUNK_SHARE = 0.25  # a chunk's activations (every model, float32) take at most this share of the budget


def chunk_cap(models, n_ctx: int, chunk_tokens: int, max_accumulator_gb: float) -> int:
    """`chunk_tokens`, lowered where a chunk's activations of every model (float32, all MLP neurons) would take more
    than CHUNK_SHARE of the accumulator budget (at least 256 MiB, and one row of the context; a batch is cut at a
    chunk's end): at the paper's sizes a chunk of 16,384 tokens of five GPT2-medium models is 32 GB."""
    width = sum(m.cfg.n_layers * m.cfg.d_mlp for m in models)
    room = max(CHUNK_SHARE * max_accumulator_gb * 1e9, 2.0 ** 28)
    return int(min(chunk_tokens, max(n_ctx, room // (4 * width))))


@dataclass
class Correlations:
    """Raw result of `correlate`. Per snapshot k and partner p: max over the partner's real neurons
    (`real[k][p]` [n_a]) with its argmax (`real_idx`: flat index layer * d_mlp + neuron, -1 if none) and max
    over its rotated neurons (`base[k][p]`); `layer_max[p]` [n_a, L_p]: max within each partner layer (final)."""

    names: list[str]
    shapes: list[tuple[int, int]]  # (n_layers, d_mlp) per model, reference first
    snap_tokens: list[int]
    real: list[np.ndarray]  # [snapshots] of [P, n_a]
    real_idx: list[np.ndarray]
    base: list[np.ndarray]
    layer_max: list[np.ndarray]
    dead_partner_neurons: list[int]
    n_tiles: int

    def save(self, folder, info: dict) -> None:
        """Write the pass into `folder`: its arrays in maxima.npz, the rest (with `info`) in pass.json."""
        arrays = {"real": np.stack(self.real), "real_idx": np.stack(self.real_idx), "base": np.stack(self.base),
                  **{f"layer_max_p{p + 1}": m for p, m in enumerate(self.layer_max)}}  # [snapshots, P, n_a]

        with atomic_path(Path(folder) / MAXIMA) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)
            digest = file_sha256(tmp)
        write_json(Path(folder) / PASS_INFO, {**info, "maxima_sha256": digest, "names": self.names, "shapes": self.shapes,
                                              "snap_tokens": self.snap_tokens, "n_tiles": self.n_tiles,
                                              "dead_partner_neurons": self.dead_partner_neurons})

    def subset(self, partners) -> Correlations:
        """The pass restricted to some partners (indices into the partners, in that order): what a pass of the
        reference with only them gives, as each partner's maxima are its own."""
        p = list(partners)
        return Correlations([self.names[0], *[self.names[i + 1] for i in p]], [self.shapes[0], *[self.shapes[i + 1] for i in p]],
                            self.snap_tokens, [r[p] for r in self.real], [r[p] for r in self.real_idx],
                            [r[p] for r in self.base], [self.layer_max[i] for i in p],
                            [self.dead_partner_neurons[i] for i in p], self.n_tiles)

    @classmethod
    def load(cls, folder) -> tuple[Correlations, dict]:
        """The pass `save` wrote into `folder`, and its pass.json. A damaged pass (unreadable, truncated, or not
        matching the maxima.npz sha256 in pass.json) counts as missing: its files and its cache key are removed,
        so the next `universality` run recomputes it, and a one-line UserError says so."""
        folder = Path(folder)
        try:
            info = json.loads((folder / PASS_INFO).read_text())
            recorded = info.get("maxima_sha256")
            if recorded is not None:
                if file_sha256(folder / MAXIMA) != recorded:
                    raise ValueError(f"{MAXIMA} does not match its sha256 in {PASS_INFO}")
            with np.load(folder / MAXIMA) as z:
                res = cls(info["names"], [tuple(s) for s in info["shapes"]], info["snap_tokens"], list(z["real"]),
                          list(z["real_idx"]), list(z["base"]),
                          [z[f"layer_max_p{p}"] for p in range(1, len(info["shapes"]))],
                          info["dead_partner_neurons"], info["n_tiles"])
            if len(res.real) != len(res.snap_tokens) or any(r.shape[0] != len(res.shapes) - 1 for r in res.real):
                raise ValueError("its arrays do not match pass.json")
        except Exception as e:  # a damaged zip / JSON raises many classes; all mean the same here
            for name in (MAXIMA, PASS_INFO, f"{PASS_KIND}.key.json"):
                (folder / name).unlink(missing_ok=True)
            raise DamagedPass(f"the saved pass in {folder} ({MAXIMA}, {PASS_INFO}) was damaged "
                            f"({type(e).__name__}: {(str(e).splitlines() or [''])[0][:100]}) and has been removed; "
                            "rerun `python -m universal_neurons universality --profile <name>` to recompute it") from None
        return res, info


def _units(shapes) -> list[tuple[int, int, int]]:
    """The partner side, one unit per partner layer: (partner, layer, d_mlp), in column order."""
    return [(p, l, d) for p, (n_layers, d) in enumerate(shapes[1:]) for l in range(n_layers)]


def _tiles(n_a: int, units, budget_bytes: float, chunk_tokens: int):
    """Passes over the tokens: (first row, end row, units). Whole partner layers side by side with every
    reference row when one layer fits the budget; else one layer per tile against blocks of rows."""
    max_d = max(d for *_, d in units)
    width = int(budget_bytes // (BYTES_PER_PAIR * n_a + 8 * chunk_tokens))  # + the chunk's columns, shifted copy
    if width >= max_d:
        groups = [[]]
        for u in units:
            if groups[-1] and sum(d for *_, d in groups[-1]) + u[2] > width:
                groups.append([])
            groups[-1].append(u)
        return [(0, n_a, g) for g in groups]
    rows = max(1, int((budget_bytes - 8 * chunk_tokens * max_d) // (BYTES_PER_PAIR * max_d + 8 * chunk_tokens)))
    return [(i0, min(i0 + rows, n_a), [u]) for u in units for i0 in range(0, n_a, rows)]


def _baseline(cm: torch.Tensor, norm_a: torch.Tensor, gram: StreamingPearson, rot: torch.Tensor) -> torch.Tensor:
    """Correlations [rows, d] of reference rows with one partner layer's rotated neurons u = R v, from the
    co-moments cm [rows, d] with that layer (norm_a [rows]: the rows' centred norms) and the layer's own
    (`gram`), exactly: cov(x, Rv) = cov(x, v) Rᵀ and var(Rv)_j = R_j Σ_vv R_jᵀ. float64; NaN for zero variance."""
    r = rot.to(torch.float64)  # [d, d]
    s = gram.comoment()  # [d, d] = N Σ_vv
    var = ((r @ s) * r).sum(1)  # [d]
    scale = (r * r) @ s.diagonal().clamp(min=0)  # the variance if the mixed neurons were uncorrelated
    norm_u = torch.where(var > 1e-12 * scale, var, torch.nan).sqrt()
    return (cm @ r.T).div_(norm_a[:, None]).div_(norm_u).clamp_(-1.0, 1.0)


class _Maxima:
    """Running maxima of correlation tiles per (snapshot, partner, real/rotated), and per (partner, layer)
    plus dead partner neurons at the last snapshot; checkpointable (RunningMax holds two tensors)."""

    def __init__(self, n_a: int, shapes, n_snap: int, device):
        P = len(shapes) - 1
        self.shapes, self.n_snap = shapes, n_snap
        self.rms = {(k, p, kind): RunningMax(n_a, device) for k in range(n_snap) for p in range(P) for kind in (0, 1)}
        self.rms |= {("layer", p, l): RunningMax(n_a, device) for p in range(P) for l in range(shapes[p + 1][0])}
        self.dead = [0] * P

    def fold(self, acc: StreamingPearson, grams, rots, units, i0: int, k: int) -> None:
        """Fold snapshot k of a tile: `acc` holds its reference rows (from i0) against `units` side by side,
        `grams` and `rots` each unit's own co-moments and baseline matrix. Holds one float64 copy of the tile."""
        cm = acc.comoment()  # [rows, Σd]
        norm_a, norm_b = acc.norms()
        c = 0
        for (p, l, d), gram, rot in zip(units, grams, rots):  # the baseline needs cm before it is normalised
            self.rms[k, p, 1].update(_baseline(cm[:, c:c + d], norm_a, gram, rot), l * d, i0)
            c += d
        real = cm.div_(norm_a[:, None]).div_(norm_b).clamp_(-1.0, 1.0)  # = acc.correlation(), in place
        c = 0
        for p, l, d in units:
            block = real[:, c:c + d]
            self.rms[k, p, 0].update(block, l * d, i0)
            if k == self.n_snap - 1:
                self.rms["layer", p, l].update(block, 0, i0)
                if i0 == 0:
                    self.dead[p] += int(norm_b[c:c + d].isnan().sum())
            c += d

    def state_dict(self) -> dict:
        return {"dead": self.dead, **{"/".join(map(str, k)): dict(vars(rm)) for k, rm in self.rms.items()}}

    def load_state_dict(self, d: dict) -> None:
        self.dead = d["dead"]
        for k, rm in self.rms.items():
            rm.__dict__.update(d["/".join(map(str, k))])

    def stack(self, kind: int, attr: str) -> list[np.ndarray]:  # [snapshots] of [P, n_a]
        P = len(self.dead)
        return [torch.stack([getattr(self.rms[k, p, kind], attr) for p in range(P)]).cpu().numpy()
                for k in range(self.n_snap)]

    def layer_max(self) -> list[np.ndarray]:  # [P] of [n_a, L_p]
        return [torch.stack([self.rms["layer", p, l].values for l in range(self.shapes[p + 1][0])], 1).cpu().numpy()
                for p in range(len(self.dead))]


@torch.inference_mode()
def correlate(models, tokens: np.ndarray, n_tokens: int, *, names=None, baseline: str = "gaussian", seed: int = 0,
              device="cpu", batch_rows: int = 64, chunk_tokens: int = 16384, max_accumulator_gb: float = 4.0,
              fractions=FRACTIONS, checkpoint=None, checkpoint_every: int = 8, stop_after: int | None = None,
              progress: bool = False, taps=None, rotation_ids=None) -> Correlations | None:
    """Correlate models[0] (reference) with models[1:] on the first `n_tokens` kept tokens of `tokens`
    [rows, n_ctx]. `checkpoint`: a file prefix for resumable state (one file per rank); `stop_after`:
    return None after that many chunk updates (simulates a killed run). Under torch.distributed the
    chunks are shared out over the ranks; every rank returns the same result. `taps[k]`: more hook points of
    models[k] read in the first tile's forward passes (`activations.rows_activations`), so that another
    consumer of the same tokens needs no pass of its own; only a pass from its start on one process feeds them
    (a resumed or shared-out one does not: the consumer checks how many tokens it saw). `rotation_ids[p]`: the
    partner index partner p's baseline matrices are drawn with (default p; a pass that adds a partner to
    another pass's gives it the index of its own pass, so that its baseline is the same)."""
    from tqdm import tqdm

    names = names or [str(getattr(m, "checkpoint_dir", i)) for i, m in enumerate(models)]
    if len(models) < 2:
        raise UserError("universality needs a reference and at least one partner model")
    chunk_tokens = chunk_cap(models, tokens.shape[1], chunk_tokens, max_accumulator_gb)
    plan = plan_pass(models, names, tokens, n_tokens, chunk_tokens, fractions)
    rank, world = _dist()
    device = torch.device(device)
    shapes = [(m.cfg.n_layers, m.cfg.d_mlp) for m in models]
    n_a = shapes[0][0] * shapes[0][1]
    # a chunk holds at most the pass's tokens: a small run's columns take less memory than a full chunk's
    tiles = _tiles(n_a, _units(shapes), max_accumulator_gb * 1e9, min(chunk_tokens, n_tokens))
    n_chunks = len(plan.chunks)
    maxima = _Maxima(n_a, shapes, len(plan.snap_chunks), device)
    ids = list(range(len(models) - 1)) if rotation_ids is None else [int(i) for i in rotation_ids]
    key = json.dumps([VERSION, names, shapes, n_tokens, baseline, seed, ids, chunk_tokens,
                      [(i0, i1, units) for i0, i1, units in tiles], list(fractions), world])
    ckpt = Path(f"{checkpoint}.rank{rank}-of{world}.pt") if checkpoint else None
    state = _resume(ckpt, key, device, world)
    step = state["step"] if state else 0
    if state:
        maxima.load_state_dict(state["maxima"])
    bar = tqdm(total=len(tiles) * n_chunks, initial=step, desc="correlations", unit="chunk",
               disable=not progress or rank != 0)
    done = 0
    for t, (i0, i1, units) in enumerate(tiles):
        if step >= (t + 1) * n_chunks:
            continue
        # the reference rows against the tile's partner layers, and each partner layer's own co-moments
        # (the rotated baseline follows from both at every snapshot: no rotated activations, no second product)
        acc = StreamingPearson(i1 - i0, sum(d for *_, d in units), device)
        grams = [StreamingPearson(d, d, device) for *_, d in units]
        if state and step > t * n_chunks:
            acc.load_state_dict(state["acc"])
            for g, sd in zip(grams, state["grams"]):
                g.load_state_dict(sd)
        rots = [rotation(d, seed, ids[p], l, baseline).to(device) for p, l, d in units]  # float32 [d, d] each
        need = sorted({p for p, *_ in units})
        for c in range(step - t * n_chunks, n_chunks):
            if c % world == rank:
                fed = [taps[0], *[taps[p + 1] for p in need]] if taps and t == 0 and not state and world == 1 else None
                acts = chunk_activations([models[0], *[models[p + 1] for p in need]],
                                         [names[0], *[names[p + 1] for p in need]], plan, c, batch_rows, device, fed)
                ys = [acts[1 + need.index(p)][:, l * d:(l + 1) * d] for p, l, d in units]  # [kept, d] each
                acc.update(acts[0][:, i0:i1], ys)  # side by side, without a concatenated copy
                for g, y in zip(grams, ys):
                    g.update(y, y)
                del acts, ys
            if c in plan.snap_chunks:
                if world > 1:
                    for a in (acc, *grams):
                        a.all_reduce_()
                maxima.fold(acc, grams, rots, units, i0, plan.snap_chunks.index(c))
                if world > 1 and rank != 0:  # rank 0 now holds the sums; the others start afresh
                    acc = StreamingPearson(i1 - i0, acc.n_b, device)
                    grams = [StreamingPearson(g.n_a, g.n_b, device) for g in grams]
            step, done = step + 1, done + 1
            bar.update(1)
            if ckpt and step % checkpoint_every == 0 and step < len(tiles) * n_chunks:
                _save_state(ckpt, {"key": key, "step": step, "acc": acc.state_dict(),
                                   "grams": [g.state_dict() for g in grams], "maxima": maxima.state_dict()})
            if stop_after is not None and done >= stop_after:
                bar.close()
                return None
    bar.close()
    if ckpt:
        ckpt.unlink(missing_ok=True)
    res = Correlations(names, shapes, plan.snap_tokens, maxima.stack(0, "values"), maxima.stack(0, "indices"),
                       maxima.stack(1, "values"), maxima.layer_max(), maxima.dead, len(tiles))
    for p in range(len(models) - 1):
        live = res.real[-1][p][~np.isnan(res.real[-1][p])]
        if len(live) and (live > 1 - 1e-6).all():
            warnings.warn(f"partner {names[p + 1]} correlates 1.0 with every live reference neuron: it is the "
                          "reference itself (or a permutation of its neurons); its excess correlation says nothing "
                          "about universality", stacklevel=3)
    return res


def _dist():
    import torch.distributed as dist

    return (dist.get_rank(), dist.get_world_size()) if dist.is_available() and dist.is_initialized() else (0, 1)



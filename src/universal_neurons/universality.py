"""Universal neurons (paper section 2): correlate every reference neuron with every neuron of each partner,
and with the partner's randomly rotated neurons as a baseline, in one streaming pass.

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
as well. Accumulators are checkpointed every few chunks (a killed run resumes), and under torchrun the
chunks are shared out over the processes and the accumulators all-reduced.

CLI: `python -m universal_neurons.universality --profile smoke` (or `torchrun --nproc_per_node=K -m ...`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .activations import check_tokenizers, chunk_activations, dropped_ids, plan_tokens
from .atomic import atomic_dir, atomic_path, write_json
from .correlation import RunningMax, StreamingPearson
from .cli import one_line_errors, profile_parser
from . import paper
from .errors import UserError

FRACTIONS = (1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0)  # token snapshots for the convergence curve
BYTES_PER_PAIR = 32  # per (reference, partner column): float64 accumulator, float32 product, float64 copy at a
# snapshot, with room for one layer's masked maxima; `max_accumulator_gb` bounds these plus the chunk's columns
VERSION = 2  # 2: the rotated baseline computed from the partner layers' co-moments
CONTROL_QUANTILE = 0.999  # the scale-aware threshold: this quantile of the excess against an untrained partner


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


def _save_state(path, state: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _dist():
    import torch.distributed as dist

    return (dist.get_rank(), dist.get_world_size()) if dist.is_available() and dist.is_initialized() else (0, 1)


def _resume(ckpt, key: str, device, world: int):
    """The checkpoint's state if it matches `key` (and, under torch.distributed, every rank's position)."""
    state = torch.load(ckpt, map_location=device, weights_only=True) if ckpt and ckpt.is_file() else None
    state = state if state is not None and state["key"] == key else None
    if world > 1:
        import torch.distributed as dist

        pos = torch.tensor([state["step"] if state else 0], dtype=torch.int64, device=device)
        lo, hi = pos.clone(), pos.clone()
        dist.all_reduce(lo, op=dist.ReduceOp.MIN)
        dist.all_reduce(hi, op=dist.ReduceOp.MAX)
        state = state if int(lo) == int(hi) else None
    return state


@torch.inference_mode()
def correlate(models, tokens: np.ndarray, n_tokens: int, *, names=None, baseline: str = "gaussian", seed: int = 0,
              device="cpu", batch_rows: int = 64, chunk_tokens: int = 16384, max_accumulator_gb: float = 4.0,
              fractions=FRACTIONS, checkpoint=None, checkpoint_every: int = 8, stop_after: int | None = None,
              progress: bool = False) -> Correlations | None:
    """Correlate models[0] (reference) with models[1:] on the first `n_tokens` kept tokens of `tokens`
    [rows, n_ctx]. `checkpoint`: a file prefix for resumable state (one file per rank); `stop_after`:
    return None after that many chunk updates (simulates a killed run). Under torch.distributed the
    chunks are shared out over the ranks; every rank returns the same result."""
    from tqdm import tqdm

    names = names or [str(getattr(m, "checkpoint_dir", i)) for i, m in enumerate(models)]
    if len(models) < 2:
        raise UserError("universality needs a reference and at least one partner model")
    check_tokenizers(models, names)
    plan = plan_tokens(tokens, dropped_ids(models[0].tokenizer), n_tokens, chunk_tokens, fractions)
    top = int(tokens[:plan.n_rows].max())
    if tokens.shape[1] > min(m.cfg.n_ctx for m in models) or top >= min(m.cfg.d_vocab for m in models):
        raise UserError(f"the token rows (n_ctx {tokens.shape[1]}, max id {top}) do not fit the models (n_ctx "
                        f"{models[0].cfg.n_ctx}); build the rows with the models' tokenizer and context")
    rank, world = _dist()
    device = torch.device(device)
    shapes = [(m.cfg.n_layers, m.cfg.d_mlp) for m in models]
    n_a = shapes[0][0] * shapes[0][1]
    tiles = _tiles(n_a, _units(shapes), max_accumulator_gb * 1e9, chunk_tokens)
    n_chunks = len(plan.chunks)
    maxima = _Maxima(n_a, shapes, len(plan.snap_chunks), device)
    key = json.dumps([VERSION, names, shapes, n_tokens, baseline, seed, chunk_tokens,
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
        rots = [rotation(d, seed, p, l, baseline).to(device) for p, l, d in units]  # float32 [d, d] each
        need = sorted({p for p, *_ in units})
        for c in range(step - t * n_chunks, n_chunks):
            if c % world == rank:
                acts = chunk_activations([models[0], *[models[p + 1] for p in need]],
                                         [names[0], *[names[p + 1] for p in need]], plan, c, batch_rows, device)
                ys = [acts[1 + need.index(p)][:, l * d:(l + 1) * d] for p, l, d in units]  # [kept, d] each
                acc.update(acts[0][:, i0:i1], torch.cat(ys, 1) if len(ys) > 1 else ys[0])
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


# ---- tables ---------------------------------------------------------------------------------------------
def neuron_table(res: Correlations, threshold: float = 0.5, snapshot: int = -1) -> pd.DataFrame:
    """One row per reference neuron: per-partner max correlation, baseline and argmax layer/neuron, then
    max/mean/min over partners of both, excess_corr and is_universal (see the module docstring)."""
    n_layers, d = res.shapes[0]
    real, base, idx = res.real[snapshot], res.base[snapshot], res.real_idx[snapshot]  # [P, n_a]
    cols = {"layer": np.repeat(np.arange(n_layers), d), "neuron": np.tile(np.arange(d), n_layers),
            "is_dead": np.isnan(real).all(0)}
    for p in range(len(real)):
        dp = res.shapes[p + 1][1]
        cols[f"max_corr_p{p + 1}"] = real[p]
        cols[f"baseline_p{p + 1}"] = base[p]
        cols[f"max_sim_layer_p{p + 1}"] = np.where(idx[p] >= 0, idx[p] // dp, -1)
        cols[f"max_sim_neuron_p{p + 1}"] = np.where(idx[p] >= 0, idx[p] % dp, -1)
    for name, a in (("corr", real), ("baseline", base)):  # NaN propagates: dead reference neurons
        cols[f"max_{name}"], cols[f"mean_{name}"], cols[f"min_{name}"] = a.max(0), a.mean(0), a.min(0)
    cols["excess_corr"] = cols["mean_corr"] - cols["mean_baseline"]
    cols["is_universal"] = cols["excess_corr"] > threshold
    return pd.DataFrame(cols)


def layer_similarity(res: Correlations, table: pd.DataFrame) -> pd.DataFrame:
    """Per (reference layer, partner layer): mean over live reference neurons and partners of the max
    correlation within that partner layer, and the share of argmaxes (max_sim_layer) landing there."""
    rows = []
    live = ~table["is_dead"].to_numpy()
    for p, lm in enumerate(res.layer_max):  # lm [n_a, L_p]
        arg = table[f"max_sim_layer_p{p + 1}"].to_numpy()
        for a in range(res.shapes[0][0]):
            sel = live & (table["layer"].to_numpy() == a)
            for b in range(lm.shape[1]):
                rows.append({"partner": p + 1, "ref_layer": a, "partner_layer": b,
                             "mean_max_corr": np.nanmean(lm[sel, b]) if sel.any() else np.nan,
                             "argmax_share": (arg[sel] == b).mean() if sel.any() else np.nan})
    per = pd.DataFrame(rows)
    return per.groupby(["ref_layer", "partner_layer"], as_index=False)[["mean_max_corr", "argmax_share"]].mean()


def summary(table: pd.DataFrame, threshold: float = 0.5) -> dict:
    """Headline numbers of a neuron table: shares above thresholds and excess quantiles (live neurons)."""
    live = table[~table["is_dead"]]
    ex = live["excess_corr"]
    out = {"n_neurons": len(table), "n_dead": int(table["is_dead"].sum()),
           "n_universal": int((ex > threshold).sum()), "share_universal": float((ex > threshold).mean())}
    for t in (0.3, 0.4):
        out[f"share_above_{t}"] = float((ex > t).mean())
    for q in (0.5, 0.9, 0.99):
        out[f"excess_q{round(q * 100)}"] = float(ex.quantile(q))
    out.update(excess_max=float(ex.max()), mean_corr_median=float(live["mean_corr"].median()),
               mean_baseline_median=float(live["mean_baseline"].median()))
    return out


def convergence(res: Correlations, threshold: float = 0.5) -> pd.DataFrame:
    """`summary` of the neuron table at every token snapshot of the pass."""
    return pd.DataFrame([{"n_tokens": n, **summary(neuron_table(res, threshold, k), threshold)}
                         for k, n in enumerate(res.snap_tokens)])


def per_layer(table: pd.DataFrame, thresholds=(0.3, 0.4, 0.5)) -> pd.DataFrame:
    """Per reference layer: live neurons and how many have excess_corr above each threshold."""
    live = table[~table["is_dead"]]
    out = live.groupby("layer").agg(neurons=("neuron", "size"))
    for t in thresholds:
        out[f"above_{t}"] = live.groupby("layer")["excess_corr"].apply(lambda e: int((e > t).sum()))
    return out.reset_index()


def control_threshold(control: pd.DataFrame, quantile: float = CONTROL_QUANTILE) -> float:
    """The scale-aware threshold: the `quantile` of the live reference neurons' excess correlation against an
    untrained partner (`control`: that run's neuron table). Above it, a neuron correlates with its trained
    partners more than all but a (1 - quantile) share of neurons correlate with an untrained one."""
    ex = control.loc[~control["is_dead"].astype(bool), "excess_corr"].dropna()
    if ex.empty:
        raise UserError("the control table has no live neuron; rerun the universality chapter with control=True")
    return float(ex.quantile(quantile))


def resolve_threshold(threshold, profile) -> tuple[float, str]:
    """A chapter's `threshold` parameter as (value, words for the page): a number (the paper's is 0.5), or
    "control": the scale-aware threshold of this profile's untrained control (tables/control/neurons.csv,
    written by the universality chapter)."""
    if isinstance(threshold, str) and threshold.strip().lower() == "control":
        path = Path(profile.tables_dir) / "control" / "neurons.csv"
        if not path.is_file():
            raise UserError(f"threshold 'control' needs the untrained control's table {path}; run the universality "
                            "chapter (control=True) for this profile first, or pass a number")
        q = control_threshold(pd.read_csv(path))
        return q, f"the scale-aware threshold of {q:.3f} (the untrained control's {100 * CONTROL_QUANTILE:g}th percentile)"
    try:
        value = float(threshold)
    except (TypeError, ValueError):
        value = float("nan")
    if not 0 < value <= 1 or isinstance(threshold, bool):  # an excess correlation lies in [-2, 2]; NaN fails too
        raise UserError(f"threshold must be a number in (0, 1] (the paper's is {paper.THRESHOLD}) or 'control', "
                        f"got {threshold!r}")
    return value, f"the paper's threshold of {value:g}" if value == paper.THRESHOLD else f"the threshold of {value:g}"


def partner_gap(table: pd.DataFrame) -> pd.Series:
    """Per neuron: max minus min over partners of the max correlation (paper: 0.049 all, 0.105 universal)."""
    return table["max_corr"] - table["min_corr"]


# ---- a profile's run, cached ---------------------------------------------------------------------------
@dataclass
class Results:
    """The files of one run: neurons.csv, layer_similarity.csv, convergence.csv, universality.json."""

    neurons: pd.DataFrame
    layers: pd.DataFrame
    convergence: pd.DataFrame
    info: dict


def members(profile, reference=None, partners=None) -> list[str]:
    """Model sources, reference first: a zoo seed (int) or any source `load_model` takes; None = the profile's."""
    def src(x):
        return str(profile.seed_dir(x)) if profile.is_zoo and isinstance(x, int) else str(x)

    default = profile.members()
    ref = default[0] if reference is None else src(reference)
    parts = [src(p) for p in partners] if partners is not None else [m for m in default if m != ref]
    return [ref, *parts]


def _weights_signature(folder: Path) -> list:
    return sorted([f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in Path(folder).glob("*.safetensors"))


def load_results(out_dir) -> Results:
    """Read the tables `run_universality` wrote into `out_dir`."""
    out_dir = Path(out_dir)
    if not (out_dir / "universality.json").is_file():
        raise UserError(f"no universality results in {out_dir}; run "
                        "`python -m universal_neurons.universality --profile <name>`")
    return Results(pd.read_csv(out_dir / "neurons.csv"), pd.read_csv(out_dir / "layer_similarity.csv"),
                   pd.read_csv(out_dir / "convergence.csv"), json.loads((out_dir / "universality.json").read_text()))


def run_universality(profile, device="cpu", reference=None, partners=None, n_tokens: int | None = None,
                     baseline: str = "gaussian", seed: int = 0, threshold: float = 0.5, out_dir=None,
                     max_accumulator_gb: float | None = None, progress: bool = True,
                     stop_after: int | None = None) -> Results | None:
    """Correlate a profile's reference with its partners on its held-out rows and write, into `out_dir`
    (default the profile's tables folder): neurons.csv, layer_similarity.csv, convergence.csv and
    universality.json (provenance). A rerun with the same parameters and checkpoints reuses them."""
    from .data import analysis_rows
    from .loading import load_model, resolve_checkpoint

    analysis = profile.cfg.get("analysis", {})
    n_tokens = int(n_tokens or analysis["n_tokens"])
    gb = max_accumulator_gb or analysis.get("max_accumulator_gb", 4.0)
    out_dir = Path(out_dir or profile.tables_dir)
    sources = members(profile, reference, partners)
    dirs = [resolve_checkpoint(s, profile.revision) for s in sources]
    rows = analysis_rows(profile, progress=progress)
    key = {"version": VERSION, "models": sources, "checkpoint_dirs": [str(d) for d in dirs],
           "weights": [_weights_signature(d) for d in dirs], "data": rows.header["provenance"],
           "n_tokens": n_tokens, "baseline": baseline, "seed": seed, "threshold": threshold,
           "fractions": list(FRACTIONS)}
    info_path = out_dir / "universality.json"
    if info_path.is_file() and json.loads(info_path.read_text()).get("key") == key:
        return load_results(out_dir)
    t0 = time.time()
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]  # checkpoints of this run only
    models = [load_model(s, device=device, revision=profile.revision) for s in sources]
    names = [Path(s).name if Path(s).exists() else s for s in sources]
    res = correlate(models, rows.tokens, n_tokens, names=names, baseline=baseline, seed=seed, device=device,
                    batch_rows=analysis.get("batch_size", 64), chunk_tokens=analysis.get("chunk_tokens", 16384),
                    max_accumulator_gb=gb, checkpoint=out_dir / ".partial" / f"universality-{digest}",
                    progress=progress, stop_after=stop_after)
    rank, world = _dist()
    if res is None or rank != 0:
        return None
    with contextlib.suppress(OSError):
        (out_dir / ".partial").rmdir()
    table = neuron_table(res, threshold)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, df in (("neurons", table), ("layer_similarity", layer_similarity(res, table)),
                     ("convergence", convergence(res, threshold))):
        with atomic_path(out_dir / f"{name}.csv") as tmp:
            df.to_csv(tmp, index=False)
    info = {"key": key, "models": sources, "names": names, "checkpoint_dirs": key["checkpoint_dirs"],
            "reference": sources[0], "partners": sources[1:], "n_tokens": n_tokens,
            "baseline": {"kind": baseline, "seed": seed, "generator": "numpy default_rng([seed, partner, layer])"},
            "threshold": threshold, "n_tiles": res.n_tiles, "max_accumulator_gb": gb, "world_size": world,
            "device": str(device), "seconds": time.time() - t0, "dead_partner_neurons": res.dead_partner_neurons,
            "summary": summary(table, threshold), "dropped": "BOS/EOS/pad and newline tokens"}
    write_json(info_path, info)
    return load_results(out_dir)


def ensure_results(profile, device="cpu") -> Results:
    """The profile's universality tables if they exist (any parameters), else computed with the defaults."""
    try:
        return load_results(profile.tables_dir)
    except UserError:
        return run_universality(profile, device=device, progress=False)


def untrained_control(profile, seed: int = 12345) -> Path:
    """An untrained model with the reference's config (fixed init seed), saved once as a control partner."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from .loading import resolve_checkpoint
    from .tokenizer import load_tokenizer

    out = profile.root / "control" / f"untrained-seed-{seed}"
    if (out / "config.json").is_file():
        return out
    ref = resolve_checkpoint(profile.members()[0], profile.revision)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(str(ref), local_files_only=True))
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp)
        load_tokenizer(ref).save_pretrained(tmp)
    return out


@one_line_errors
def main(argv=None) -> int:
    """CLI (also under torchrun): compute and print where the neuron table is."""
    ap = profile_parser("python -m universal_neurons.universality")
    ap.add_argument("--reference", help="zoo seed or model source (default: the profile's)")
    ap.add_argument("--partners", nargs="+", help="zoo seeds or model sources (default: the profile's)")
    ap.add_argument("--n-tokens", type=int)
    ap.add_argument("--baseline", default="gaussian", choices=["gaussian", "orthogonal"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threshold", type=float, default=0.5)
    ap.add_argument("--max-accumulator-gb", type=float)
    args = ap.parse_args(argv)

    def seed_or_source(x):
        return int(x) if x is not None and x.isdigit() else x

    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = args.device
    import torch.distributed as dist

    from .data import token_rows
    from .profiles import load_profile

    profile = load_profile(args.profile, args.overrides)
    if world > 1:
        if device.startswith("cuda"):
            device = f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
        if dist.get_rank() == 0:
            token_rows(profile, "heldout", progress=not args.quiet)  # built once, before the others read it
        dist.barrier()
    res = run_universality(profile, device=device, reference=seed_or_source(args.reference),
                           partners=[seed_or_source(p) for p in args.partners] if args.partners else None,
                           n_tokens=args.n_tokens, baseline=args.baseline, seed=args.seed,
                           threshold=args.threshold, max_accumulator_gb=args.max_accumulator_gb,
                           progress=not args.quiet)
    if res is not None:
        s = res.info["summary"]
        print(f"{profile.tables_dir / 'neurons.csv'}: {s['n_universal']} / {s['n_neurons']} universal "
              f"({100 * s['share_universal']:.2f}%), excess median {s['excess_q50']:.3f}, "
              f"q99 {s['excess_q99']:.3f}, max {s['excess_max']:.3f}; {res.info['n_tokens']:,} tokens")
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Neuron properties (paper sections 4.2, 5.1 and 6; figures 3, 5, 6, 9, 10, 14): weight statistics on the
processed weights and exact moments of the pre-activations, for every model of a profile.

Weights (LayerNorm folded, writing weights and unembedding centred, as `loading.load_model` gives them):
w_in_norm = |W_in[:, i]|, input_bias = b_in[i], w_out_norm = |W_out[i]|, in_out_sim = cos(w_in, w_out),
l2_penalty = |w_in|^2 + |w_out|^2, max_in_cos / max_out_cos = the largest cosine of w_in / w_out with any
other neuron (all layers), and the moments of the vocabulary composition c_v = cos(w_out, W_U[:, v]) over all
d_vocab columns of W_U: vocab_mean, vocab_var, vocab_skew, vocab_kurt.

Activations (`blocks.{l}.mlp.hook_pre`, the tokens `activations.plan_tokens` keeps: no BOS/EOS/pad, no
newline): mean, var, skew, kurt and sparsity (the share of tokens with pre-activation > 0), from power
sums of (x - K) accumulated in float64, K = the neuron's mean over the first batch: exact, no histogram
involved. Variances and moments are population ones (ddof 0, scipy's `bias=True`); kurtosis is not excess
(a Gaussian has 3). Per-neuron histograms for plots: `N_BINS` equal bins over the first batch's range
widened by half its width on each side, plus an underflow and an overflow bin, so every token is counted.

A gated MLP has no single w_in per neuron and `hook_pre` is its gate: w_in_norm, input_bias, in_out_sim,
l2_penalty and max_in_cos are then NaN (with a warning); an MLP without b_in leaves input_bias NaN.

CLI: `python -m universal_neurons.properties --profile smoke`.
"""

from __future__ import annotations

import json
import re
import sys
import time
import warnings
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .activations import check_tokenizers, dropped_ids, plan_tokens
from .atomic import atomic_path, write_json
from .cli import one_line_errors, profile_parser
from .errors import UserError

N_BINS = 100
VERSION = 1
WEIGHT_COLS = ["w_in_norm", "input_bias", "w_out_norm", "in_out_sim", "l2_penalty", "max_in_cos", "max_out_cos",
               "vocab_mean", "vocab_var", "vocab_skew", "vocab_kurt"]
ACT_COLS = ["mean", "var", "skew", "kurt", "sparsity"]

# ---- weights -------------------------------------------------------------------------------------------
def _unit(w: torch.Tensor, dim: int) -> torch.Tensor:
    return w / w.norm(dim=dim, keepdim=True).clamp_min(1e-30)


def max_cosines(w: torch.Tensor, block: int = 1024) -> np.ndarray:
    """Per row of w [N, d]: the largest cosine with any other row, float64 [N]."""
    u = _unit(w.float(), 1)
    out = torch.empty(len(u), dtype=torch.float64)
    for i in range(0, len(u), block):
        c = u[i:i + block] @ u.T  # [b, N]
        c[torch.arange(len(c)), torch.arange(i, i + len(c))] = -torch.inf
        out[i:i + len(c)] = c.max(1).values.double().cpu()
    return out.numpy()


def _vocab_blocks(model, layers=None, max_elems: int = 2 ** 24):
    """(layer, first neuron, c [b, d_vocab] float64 cosines of w_out with the columns of W_U), block by block."""
    u = _unit(model.W_U.detach().float(), 0)  # [d_model, d_vocab]
    rows = max(1, max_elems // u.shape[1])
    for l in range(model.cfg.n_layers) if layers is None else layers:
        w = _unit(model.W_out[l].detach().float(), 1)  # [d_mlp, d_model]
        for n0 in range(0, len(w), rows):
            yield l, n0, (w[n0:n0 + rows] @ u).double()


def vocab_cosines(model, layer: int, neurons) -> np.ndarray:
    """c_v = cos(w_out, W_U[:, v]) of some neurons of one layer: float32 [len(neurons), d_vocab]."""
    w = _unit(model.W_out[layer, list(neurons)].detach().float(), 1)
    return (w @ _unit(model.W_U.detach().float(), 0)).cpu().numpy()


def _central(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """mean, var, skew, kurt along dim 1 of x [n, m] (float64, population moments)."""
    mean = x.mean(1, keepdim=True)
    d = x - mean
    d2 = d * d
    var = d2.mean(1)
    return mean[:, 0], var, (d2 * d).mean(1) / var ** 1.5, (d2 * d2).mean(1) / var ** 2


def _frame(n_layers: int, d_mlp: int) -> dict:
    return {"layer": np.repeat(np.arange(n_layers), d_mlp), "neuron": np.tile(np.arange(d_mlp), n_layers)}


@torch.inference_mode()
def weight_stats(model, name: str = "model") -> tuple[pd.DataFrame, list[str]]:
    """One row per neuron (layer-major): layer, neuron and WEIGHT_COLS; also the warnings issued (one line
    each) for statistics the architecture does not define (left NaN)."""
    n_layers, d_mlp = model.cfg.n_layers, model.W_out.shape[1]
    cols = _frame(n_layers, d_mlp)
    w_out = model.W_out.detach().double()  # [L, d_mlp, d_model]
    nan = np.full(n_layers * d_mlp, np.nan)
    gated = bool(getattr(model.cfg, "gated_mlp", False))
    no_bias = not gated and getattr(model.blocks[0].mlp, "b_in", None) is None
    problems = [f"{name}: gated MLP (a gate and a linear input per neuron, no single w_in): w_in_norm, input_bias, "
                "in_out_sim, l2_penalty and max_in_cos are undefined and left NaN; the activation statistics are "
                "those of the gate's pre-activation"] if gated else []
    problems += [f"{name}: the MLP has no input bias (b_in): input_bias is undefined and left NaN"] if no_bias else []
    out_norm = w_out.norm(dim=-1)  # [L, d_mlp]
    cols["w_out_norm"] = out_norm.flatten().cpu().numpy()
    if gated:
        for k in ("w_in_norm", "input_bias", "in_out_sim", "l2_penalty", "max_in_cos"):
            cols[k] = nan
    else:
        w_in = model.W_in.detach().double().transpose(1, 2)  # [L, d_mlp, d_model]
        in_norm = w_in.norm(dim=-1)
        cols["w_in_norm"] = in_norm.flatten().cpu().numpy()
        cols["input_bias"] = nan if no_bias else model.b_in.detach().double().flatten().cpu().numpy()
        cols["in_out_sim"] = ((w_in * w_out).sum(-1) / (in_norm * out_norm)).flatten().cpu().numpy()
        cols["l2_penalty"] = (in_norm ** 2 + out_norm ** 2).flatten().cpu().numpy()
        cols["max_in_cos"] = max_cosines(w_in.reshape(-1, w_in.shape[-1]))
    cols["max_out_cos"] = max_cosines(w_out.reshape(-1, w_out.shape[-1]))
    moments = np.empty((4, n_layers * d_mlp))
    for l, n0, c in _vocab_blocks(model):
        i = l * d_mlp + n0
        moments[:, i:i + len(c)] = torch.stack(_central(c)).cpu().numpy()
    cols.update(zip(("vocab_mean", "vocab_var", "vocab_skew", "vocab_kurt"), moments))
    for p in problems:
        warnings.warn(p, stacklevel=2)
    return pd.DataFrame(cols)[["layer", "neuron", *WEIGHT_COLS]], problems


# ---- activations ---------------------------------------------------------------------------------------
class MomentAccumulator:
    """Exact streaming mean, var, skew, kurt and sparsity of n values per update row, with histograms."""

    def __init__(self, n: int, device="cpu", n_bins: int = N_BINS):
        self.n_bins, self.count = n_bins, 0
        self.sums = torch.zeros(4, n, dtype=torch.float64, device=device)  # sum of (x - shift)^k, k = 1..4
        self.positive = torch.zeros(n, dtype=torch.int64, device=device)
        self.hist = torch.zeros(n, n_bins + 2, dtype=torch.int64, device=device)  # [under, bins..., over]
        self.shift = self.lo = self.width = None

    def update(self, x: torch.Tensor) -> None:
        """x [tokens, n]: one value per token and neuron."""
        if not len(x):
            return
        if self.shift is None:
            xd = x.double()
            self.shift = xd.mean(0)
            lo, hi = xd.min(0).values, xd.max(0).values
            span = (hi - lo).clamp_min(1e-6)
            self.lo, self.width = lo - span / 2, 2 * span / self.n_bins
        d = x.double() - self.shift  # [T, n]
        d2 = d * d
        self.sums += torch.stack([d.sum(0), d2.sum(0), (d2 * d).sum(0), (d2 * d2).sum(0)])
        self.positive += (x > 0).sum(0)
        self.count += len(x)
        b = ((x.double() - self.lo) / self.width).floor().clamp(-1, self.n_bins).long() + 1  # [T, n] in [0, nb+1]
        flat = (b + torch.arange(x.shape[1], device=x.device) * (self.n_bins + 2)).flatten()
        self.hist += torch.bincount(flat, minlength=self.hist.numel()).view_as(self.hist)

    def result(self) -> dict[str, np.ndarray]:
        """mean, var, skew, kurt, sparsity [n] (NaN skew/kurt for constant neurons)."""
        m1, m2, m3, m4 = (self.sums / self.count).cpu().numpy()
        mu2 = m2 - m1 ** 2
        mu3 = m3 - 3 * m1 * m2 + 2 * m1 ** 3
        mu4 = m4 - 4 * m1 * m3 + 6 * m1 ** 2 * m2 - 3 * m1 ** 4
        with np.errstate(divide="ignore", invalid="ignore"):
            live = mu2 > 1e-12 * np.maximum(1.0, m2)
            return {"mean": self.shift.cpu().numpy() + m1, "var": np.maximum(mu2, 0.0),
                    "skew": np.where(live, mu3 / mu2 ** 1.5, np.nan), "kurt": np.where(live, mu4 / mu2 ** 2, np.nan),
                    "sparsity": self.positive.cpu().numpy() / self.count}


def _batches(plan, batch_rows: int, device, next_token: bool = False):
    """(tokens [b, n_ctx] int64, kept mask [b, n_ctx] bool) over the planned rows; `next_token`: also keep
    only positions that have a next token (not the last one)."""
    for r0, r1 in plan.chunks:
        mask = plan.mask(r0, r1)
        if next_token:
            mask[:, -1] = False
        for b0 in range(0, r1 - r0, batch_rows):
            b1 = min(b0 + batch_rows, r1 - r0)
            yield (torch.from_numpy(plan.tokens[r0 + b0:r0 + b1].astype(np.int64)).to(device),
                   torch.from_numpy(mask[b0:b1]).to(device))


def _run_mlp(model, name: str, toks, mask, hook: str, fn) -> None:
    """Forward toks through the blocks, calling fn(layer, act[mask] [kept, d_mlp]) at blocks.{l}.mlp.hook_{hook}."""
    def at(act, hook, layer):  # act [b, n_ctx, d_mlp]
        a = act[mask]
        if not torch.isfinite(a).all():
            raise UserError(f"{name}: NaN or inf MLP activation in layer {layer}; check the checkpoint's weights")
        fn(layer, a)

    n_layers = model.cfg.n_layers
    model.run_with_hooks(toks, stop_at_layer=n_layers,
                         fwd_hooks=[(f"blocks.{l}.mlp.hook_{hook}", partial(at, layer=l)) for l in range(n_layers)])


def _plan(models, names, tokens: np.ndarray, n_tokens: int):
    check_tokenizers(models, names)
    plan = plan_tokens(tokens, dropped_ids(models[0].tokenizer), n_tokens, 1 << 16)
    if tokens.shape[1] > min(m.cfg.n_ctx for m in models) or int(tokens[:plan.n_rows].max()) >= min(
            m.cfg.d_vocab for m in models):
        raise UserError("the token rows do not fit the models (context or vocabulary); build the rows with the "
                        "models' tokenizer and context")
    return plan


@torch.inference_mode()
def activation_stats(models, names, tokens: np.ndarray, n_tokens: int, batch_rows: int = 64, device="cpu",
                     n_bins: int = N_BINS) -> list[tuple[pd.DataFrame, dict]]:
    """Per model, on the same first `n_tokens` kept tokens of `tokens` [rows, n_ctx]: a frame (layer, neuron,
    ACT_COLS) and its histograms {counts [N, n_bins + 2], lo [N], width [N]} (bin k covers lo + (k-1) width)."""
    plan = _plan(models, names, tokens, n_tokens)
    accs = [[MomentAccumulator(m.W_out.shape[1], device, n_bins) for _ in range(m.cfg.n_layers)] for m in models]
    for toks, mask in _batches(plan, batch_rows, device):
        for model, name, acc in zip(models, names, accs):
            _run_mlp(model, name, toks, mask, "pre", lambda l, a, acc=acc: acc[l].update(a))
    out = []
    for model, acc in zip(models, accs):
        res = [a.result() for a in acc]
        frame = pd.DataFrame({**_frame(model.cfg.n_layers, model.W_out.shape[1]),
                              **{k: np.concatenate([r[k] for r in res]) for k in ACT_COLS}})
        hist = {"counts": torch.cat([a.hist for a in acc]).cpu().numpy(),
                "lo": torch.cat([a.lo for a in acc]).float().cpu().numpy(),
                "width": torch.cat([a.width for a in acc]).float().cpu().numpy()}
        out.append((frame, hist))
    return out


# ---- a profile's run, cached ---------------------------------------------------------------------------
@dataclass
class Properties:
    table: pd.DataFrame  # one row per (model, layer, neuron): WEIGHT_COLS + ACT_COLS (NaN where not computed)
    hists: dict[str, dict]  # model name -> {counts, lo, width}
    info: dict


def _files(out_dir: Path):
    return out_dir / "properties.csv", out_dir / "properties-hist.npz", out_dir / "properties.json"


def load_properties(profile, out_dir=None) -> Properties:
    """Read what `compute_properties` wrote into `out_dir` (default the profile's tables folder)."""
    csv, npz, js = _files(Path(out_dir or profile.tables_dir))
    if not js.is_file():
        raise UserError(f"no neuron properties in {js.parent}; run `python -m universal_neurons.properties "
                        f"--profile {profile.name}`")
    info = json.loads(js.read_text())
    with np.load(npz) as z:
        hists = {n: {k: z[f"{k}_{i}"] for k in ("counts", "lo", "width")} for i, n in enumerate(info["act_models"])}
    return Properties(pd.read_csv(csv), hists, info)


def compute_properties(profile, device="cpu", n_tokens: int | None = None, all_members: bool = True,
                       out_dir=None, progress: bool = True) -> Properties:
    """Weight statistics of every member of the profile and activation statistics of every member (or the
    reference only), written into `out_dir` (default the profile's tables folder) as properties.csv,
    properties-hist.npz and properties.json, then joined into neurons.csv (`neuron_frame`). Cached: a rerun
    with the same models, data and parameters reads the files."""
    from .data import analysis_rows
    from .loading import load_model, resolve_checkpoint
    from .universality import members

    analysis = profile.cfg.get("analysis", {})
    n_tokens = int(n_tokens or analysis["n_tokens"])
    out_dir = Path(out_dir or profile.tables_dir)
    sources = members(profile)
    names = [Path(s).name if Path(s).exists() else s for s in sources]
    dirs = [resolve_checkpoint(s, profile.revision) for s in sources]
    rows = analysis_rows(profile, progress=progress)
    key = {"version": VERSION, "models": sources, "checkpoint_dirs": [str(d) for d in dirs],
           "weights": [sorted([f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in d.glob("*.safetensors"))
                       for d in dirs],
           "data": rows.header["provenance"], "n_tokens": n_tokens, "all_members": all_members, "n_bins": N_BINS}
    js = _files(out_dir)[2]
    if js.is_file() and json.loads(js.read_text()).get("key") == key:
        neuron_frame(profile, out_dir)
        return load_properties(profile, out_dir)
    t0 = time.time()
    models = [load_model(s, device=device, revision=profile.revision) for s in sources]
    stats = [weight_stats(model, name) for model, name in zip(models, names)]
    n_act = len(models) if all_members else 1
    acts = activation_stats(models[:n_act], names[:n_act], rows.tokens, n_tokens,
                            analysis.get("batch_size", 64), device)
    table = pd.concat([(f.merge(acts[i][0], on=["layer", "neuron"]) if i < n_act
                        else f.assign(**dict.fromkeys(ACT_COLS, np.nan))).assign(model=name)
                       for i, ((f, _), name) in enumerate(zip(stats, names))], ignore_index=True)
    table = table[["model", "layer", "neuron", *WEIGHT_COLS, *ACT_COLS]]
    csv, npz, _ = _files(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(csv) as tmp:
        table.to_csv(tmp, index=False)
    with atomic_path(npz) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **{f"{k}_{i}": h[k] for i, (_, h) in enumerate(acts) for k in h})
    write_json(js, {"key": key, "models": sources, "names": names, "reference": names[0],
                    "act_models": names[:n_act], "n_tokens": n_tokens, "device": str(device),
                    "seconds": time.time() - t0, "warnings": [w for _, p in stats for w in p],
                    "dropped": "BOS/EOS/pad and newline tokens", "n_bins": N_BINS})
    neuron_frame(profile, out_dir)
    return load_properties(profile, out_dir)


def neuron_frame(profile, tables_dir=None) -> pd.DataFrame:
    """The universality table (neurons.csv) of the profile's reference joined with its properties by (layer,
    neuron), the joined columns also written into neurons.csv; without neurons.csv, the properties alone."""
    tables_dir = Path(tables_dir or profile.tables_dir)
    props = load_properties(profile, tables_dir)
    uni_json, neurons_csv = tables_dir / "universality.json", tables_dir / "neurons.csv"
    ref = props.info["reference"]
    if uni_json.is_file():
        ref = json.loads(uni_json.read_text())["names"][0]
        if ref not in set(props.table["model"]):
            raise UserError(f"neurons.csv is about {ref}, which is not a member of profile {profile.name}; rerun "
                            f"`python -m universal_neurons.universality --profile {profile.name}`")
    own = props.table[props.table["model"] == ref].drop(columns="model")
    if not neurons_csv.is_file():
        return own.reset_index(drop=True)
    neurons = pd.read_csv(neurons_csv)
    cols = [c for c in own.columns if c not in ("layer", "neuron")]
    joined = neurons.drop(columns=[c for c in cols if c in neurons.columns]).merge(own, on=["layer", "neuron"],
                                                                                    how="left")
    if not set(cols) <= set(neurons.columns) or not np.allclose(neurons[cols], joined[cols], rtol=1e-9, atol=0,
                                                                 equal_nan=True):
        with atomic_path(neurons_csv) as tmp:
            joined.to_csv(tmp, index=False)
    return joined


# ---- analysis helpers for the chapters -------------------------------------------------------------------
def layer_percentiles(frame: pd.DataFrame, cols) -> pd.DataFrame:
    """Each column of `cols` as a percentile (0-100) within its layer (ties averaged)."""
    return frame.groupby("layer")[list(cols)].rank(pct=True) * 100


def universal_group(frame: pd.DataFrame, threshold: float = 0.5, top_pct: float = 2.0,
                    min_count: int = 10) -> tuple[pd.Series, str]:
    """The neurons compared with the rest: excess_corr > threshold if at least `min_count` pass, else the top
    `top_pct`% of live neurons by excess_corr. Returns (bool Series over frame, a label for plots)."""
    live = ~frame["is_dead"].astype(bool) & frame["excess_corr"].notna()
    universal = live & (frame["excess_corr"] > threshold)
    if universal.sum() >= min_count:
        return universal, f"universal (excess > {threshold:g})"
    cut = frame.loc[live, "excess_corr"].quantile(1 - top_pct / 100)
    return live & (frame["excess_corr"] >= cut), f"top {top_pct:g}% by excess"


def token_classes(tokenizer, d_vocab: int, min_tokens: int = 3) -> dict[str, np.ndarray]:
    """Boolean masks [d_vocab] of token classes that have at least `min_tokens` members in the tokenizer:
    year (1491-2199, as in the reference code), number, space-start, all-caps, open parenthesis, -ing."""
    texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
    tests = {"year": lambda s: s.strip().isdigit() and len(s.strip()) == 4 and 1491 <= int(s.strip()) <= 2199,
             "number": lambda s: bool(re.fullmatch(r"\s?\d+", s)),
             "space-start": lambda s: len(s) > 1 and s[0] == " " and not s[1].isspace(),
             "all-caps": lambda s: len(s.strip()) > 1 and s.strip().isalpha() and s.strip().isupper(),
             "open-paren": lambda s: "(" in s,
             "-ing": lambda s: s.strip().isalpha() and s.strip().lower().endswith("ing") and len(s.strip()) > 4}
    out = {}
    for name, test in tests.items():
        mask = np.zeros(d_vocab, dtype=bool)
        mask[:len(texts)] = [test(t) for t in texts]
        if min_tokens <= mask.sum() < len(texts):
            out[name] = mask
    return out


@torch.inference_mode()
def class_scores(model, classes: dict[str, np.ndarray]) -> pd.DataFrame:
    """Per neuron (layer-major) and class: (mean c_v over the class - mean over the rest) / std of c_v: how
    much the neuron's output direction favours (> 0) or disfavours (< 0) the class on the unembedding."""
    names = list(classes)
    y = torch.from_numpy(np.stack([classes[n] for n in names], 1).astype(np.float64))  # [d_vocab, K]
    n_in = y.sum(0)
    n_layers, d_mlp = model.cfg.n_layers, model.W_out.shape[1]
    scores = np.empty((n_layers * d_mlp, len(names)))
    for l, n0, c in _vocab_blocks(model):
        yc = y.to(c.device)
        inside = c @ yc / n_in.to(c.device)  # [b, K]
        rest = (c.sum(1, keepdim=True) - c @ yc) / (c.shape[1] - n_in.to(c.device))
        scores[l * d_mlp + n0:l * d_mlp + n0 + len(c)] = ((inside - rest) / c.std(1, correction=0, keepdim=True)).cpu().numpy()
    return pd.DataFrame({**_frame(n_layers, d_mlp), **dict(zip(names, scores.T))})


@torch.inference_mode()
def neuron_activations(model, tokens: np.ndarray, neurons, n_tokens: int, batch_rows: int = 64,
                       device="cpu") -> tuple[np.ndarray, np.ndarray]:
    """Post-activations (`hook_post`) of some (layer, neuron) pairs at those of the first `n_tokens` kept
    positions that have a next token (not the row's last), and that next token: (float32 [T, k], int64 [T])."""
    name = str(getattr(model, "checkpoint_dir", "model"))
    plan = _plan([model], [name], tokens, n_tokens)
    by_layer = {}
    for j, (l, n) in enumerate(neurons):
        by_layer.setdefault(l, []).append((j, n))
    acts, nxt = [], []
    for toks, mask in _batches(plan, batch_rows, device, next_token=True):
        out = torch.empty(int(mask.sum()), len(neurons), device=device)

        def keep(l, a, out=out):
            for j, n in by_layer.get(l, []):
                out[:, j] = a[:, n]

        _run_mlp(model, name, toks, mask, "post", keep)
        acts.append(out.cpu())
        nxt.append(toks[:, 1:][mask[:, :-1]].cpu())
    return torch.cat(acts).numpy(), torch.cat(nxt).numpy()


@one_line_errors
def main(argv=None) -> int:
    """CLI: compute (or reuse) a profile's neuron properties and say where they are."""
    ap = profile_parser("python -m universal_neurons.properties")
    ap.add_argument("--n-tokens", type=int)
    ap.add_argument("--reference-only", action="store_true", help="activation statistics of the reference only")
    args = ap.parse_args(argv)
    from .profiles import load_profile

    profile = load_profile(args.profile, args.overrides)
    res = compute_properties(profile, device=args.device, n_tokens=args.n_tokens,
                             all_members=not args.reference_only, progress=not args.quiet)
    print(f"{profile.tables_dir / 'properties.csv'}: {len(res.info['names'])} models, "
          f"{res.info['n_tokens']:,} tokens, {res.info['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The data of a neuron explorer's pages (like Neuroscope / Neuronpedia) for selected MLP neurons.

One streaming pass over held-out token rows [rows, n_ctx] reads the post-activations
`blocks.{l}.mlp.hook_post` of the selected neurons, batch by batch, and keeps only small summaries:

- `TopK`: the k highest activations per neuron with their positions (ties: the earliest position wins);
- a seeded uniform random sample of kept positions (`sample_ordinals`) whose activations give, after the
  pass, example positions from `n_bins` equal-width activation ranges between 0 and the neuron's maximum
  (`quantile_examples`);
- `Histogram`: exact counts on fixed edges (`histogram_edges`, no first pass needed), the number of kept
  positions and how many are > 0.

A second forward pass over just the rows of the chosen examples gives each example's text window
(`window`); `vocab_effect` is the neuron's direct effect on the logits. `neuron_records` is the entry point.
A position is "kept" where `mask` is True; left-out positions never enter any statistic and show as None in
windows. Flat position index = row * n_ctx + pos.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from ..core.errors import UserError
from ..measures.activations import mlp_points, run_hooks


def histogram_edges() -> np.ndarray:
    """The fixed histogram edges, float64 [72] (71 bins): 10 linear bins on [-0.2, 0) (edges -0.2, -0.18,
    ..., 0), one bin [0, 1e-3), then 60 log-spaced bins (10 a decade) from 1e-3 to 1e3. Bins are
    [lo, hi) except the last, [lo, 1e3]. Values below -0.2 are counted in the first bin and values above 1e3
    in the last (a record's `below` and `above` say how many)."""
    return np.concatenate([np.linspace(-0.2, 0.0, 11), np.logspace(-3, 3, 61)])


class TopK:
    """Streaming top-k activations of n neurons with their flat positions. `values` / `index`
    [n, <= k] are sorted highest first; equal values keep the earliest position, provided the positions of
    each `update` come in increasing order and after those of earlier updates (a pass in row order)."""

    def __init__(self, n_neurons: int, k: int, device="cpu"):
        self.k = k
        self.values = torch.empty(n_neurons, 0, device=device)
        self.index = torch.empty(n_neurons, 0, dtype=torch.long, device=device)

    def update(self, values: torch.Tensor, index: torch.Tensor) -> None:
        """Merge a batch: `values` [m, n] float at flat positions `index` [m] (increasing)."""
        v = torch.cat([self.values, values.T.float()], 1)
        i = torch.cat([self.index, index.to(self.index.device).expand(len(self.index), -1)], 1)
        # A stable descending sort keeps the concatenation's order among equal values: earlier positions first.
        order = torch.sort(v, dim=1, descending=True, stable=True).indices[:, :self.k]
        self.values, self.index = v.gather(1, order), i.gather(1, order)


class Histogram:
    """Exact streaming counts of n neurons' activations on fixed `edges` (see `histogram_edges`; values out
    of range in the end bins, also counted in `below` / `above`), the number of positions `n` and of
    activations > 0 (`positive`)."""

    def __init__(self, n_neurons: int, edges: np.ndarray, device="cpu"):
        self.edges = torch.as_tensor(edges, dtype=torch.float64, device=device)
        nb = len(edges) - 1
        self.counts = torch.zeros(n_neurons, nb, dtype=torch.long, device=device)
        self.below = torch.zeros(n_neurons, dtype=torch.long, device=device)
        self.above = torch.zeros(n_neurons, dtype=torch.long, device=device)
        self.positive = torch.zeros(n_neurons, dtype=torch.long, device=device)
        self.n = 0

    def update(self, values: torch.Tensor) -> None:
        """Count a batch of activations `values` [m, n_neurons] (compared with the edges in float64)."""
        a = values.double()
        n, nb = self.counts.shape
        bins = (torch.bucketize(a, self.edges, right=True) - 1).clamp(0, nb - 1)  # [m, n]
        flat = bins + torch.arange(n, device=a.device) * nb
        self.counts += torch.bincount(flat.flatten(), minlength=n * nb).view(n, nb)
        self.below += (a < self.edges[0]).sum(0)
        self.above += (a > self.edges[-1]).sum(0)
        self.positive += (a > 0).sum(0)
        self.n += len(a)


def sample_ordinals(n_kept: int, n_sample: int, seed: int) -> np.ndarray:
    """Sorted ordinals (in [0, n_kept), kept positions in row-major order) of a seeded uniform random
    subset of min(n_sample, n_kept) kept positions; independent of how the pass is batched."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_kept, size=min(n_sample, n_kept), replace=False))


def quantile_examples(values: np.ndarray, top: float, n_bins: int, per_bin: int,
                      rng: np.random.Generator) -> list[tuple[float, float, np.ndarray]]:
    """(lo, hi, indices into `values`) for the `n_bins` equal-width ranges between 0 and `top` (the
    neuron's maximum), highest range first, skipping empty ones: up to `per_bin` sampled activations in
    [lo, hi) ([lo, top] for the highest range), drawn with `rng`, highest value first. Empty when top <= 0."""
    if not top > 0:
        return []
    edges = np.linspace(0.0, top, n_bins + 1)
    out = []
    for b in reversed(range(n_bins)):
        lo, hi = edges[b], edges[b + 1]
        inside = np.flatnonzero((values >= lo) & ((values <= hi) if b == n_bins - 1 else (values < hi)))
        if len(inside) == 0:
            continue
        pick = rng.choice(inside, size=min(per_bin, len(inside)), replace=False)
        out.append((float(lo), float(hi), pick[np.argsort(-values[pick], kind="stable")]))
    return out


def window(tokens: np.ndarray, mask: np.ndarray, acts: np.ndarray, pos: int, value: float, *, before: int,
           after: int, decode: Callable[[int], str], doc: int, source: str) -> dict:
    """The text window of one example at `pos` of a row (`tokens`, `mask`, the neuron's `acts`, all [n_ctx]):
    `before` tokens before and `after` after, clipped to the row. `value` is the example's activation from
    the pass (the one that was ranked or binned): it is `max_value` and is written at `max_index`; the
    other values are the recomputed `acts`, None where the mask is False."""
    start, end = max(0, pos - before), min(len(tokens), pos + after + 1)
    values = [float(a) if m else None for a, m in zip(acts[start:end], mask[start:end])]
    values[pos - start] = float(value)
    return {"tokens": [decode(int(t)) for t in tokens[start:end]], "values": values, "max_value": float(value),
            "max_index": pos - start, "doc_index": int(doc), "source": source}


@torch.inference_mode()
def vocab_effect(model, layer: int, neuron: int, decode: Callable[[int], str], k: int = 10) -> dict:
    """The neuron's direct effect on the logits, W_out[layer, neuron] @ W_U [d_vocab]: its k highest
    tokens (highest first) and k lowest (lowest first) as {"top": [[token, value], ...], "bottom": [...]}."""
    _check_neurons(model, [(layer, neuron)])
    if k < 1:
        raise UserError(f"vocab_effect k={k} must be at least 1; pass e.g. k=10")
    effect = (model.W_out[layer, neuron].float() @ model.W_U.float()).cpu().numpy()
    order = np.argsort(-effect, kind="stable")
    k = min(k, len(effect))
    return {"top": [[decode(int(i)), float(effect[i])] for i in order[:k]],
            "bottom": [[decode(int(i)), float(effect[i])] for i in order[::-1][:k]]}


def _check_neurons(model, neurons) -> None:
    """UserError unless every (layer, neuron) is inside the model."""
    n_layers, d_mlp = model.cfg.n_layers, model.cfg.d_mlp
    for item in neurons:
        try:
            layer, neuron = (int(x) for x in item)
        except (TypeError, ValueError):
            raise UserError(f"neuron {item!r} is not a (layer, neuron) pair of integers; pass e.g. [(0, 12)]") \
                from None
        if not (0 <= layer < n_layers and 0 <= neuron < d_mlp):
            raise UserError(f"neuron ({layer}, {neuron}) is outside the model ({n_layers} layers of {d_mlp} "
                            f"neurons); pass layers 0-{n_layers - 1} and neurons 0-{d_mlp - 1}")


def _numpy(x) -> np.ndarray:
    """A numpy array from a numpy array, list or (any device) torch tensor."""
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _check_inputs(model, tokens, mask, sources, source_names, neurons, ints: dict) -> None:
    """UserError, naming the problem and the fix, for inputs `neuron_records` cannot use."""
    if tokens.ndim != 2 or tokens.size == 0 or not np.issubdtype(tokens.dtype, np.integer):
        raise UserError(f"tokens must be a non-empty integer array [rows, n_ctx], got {tokens.dtype} "
                        f"{tokens.shape}; pass the held-out token rows")
    if tokens.shape[1] > model.cfg.n_ctx or tokens.min() < 0 or tokens.max() >= model.cfg.d_vocab:
        raise UserError(f"the token rows (n_ctx {tokens.shape[1]}, ids {tokens.min()}-{tokens.max()}) do not fit "
                        f"the model (n_ctx {model.cfg.n_ctx}, vocabulary {model.cfg.d_vocab}); build the rows "
                        "with the model's tokenizer and context")
    if mask.shape != tokens.shape or mask.dtype != np.bool_:
        raise UserError(f"mask must be a bool array of the tokens' shape {tokens.shape}, got {mask.dtype} "
                        f"{mask.shape}; pass True at every kept position")
    if not mask.any():
        raise UserError("mask keeps no position; pass True at the positions to analyse")
    if sources is not None and sources.shape != tokens.shape:
        raise UserError(f"sources must have the tokens' shape {tokens.shape}, got {sources.shape}; pass one "
                        "source index per position (or none)")
    if sources is not None and source_names is not None and (sources.min() < 0
                                                             or sources.max() >= len(source_names)):
        raise UserError(f"sources holds indices {sources.min()}-{sources.max()} but there are "
                        f"{len(source_names)} source_names; pass one name per source index")
    if len(neurons) == 0:
        raise UserError("neurons is empty; pass at least one (layer, neuron) pair")
    _check_neurons(model, neurons)
    for name, (value, low) in ints.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise UserError(f"{name}={value!r} must be an integer >= {low}; pass e.g. {name}={max(low, 1)}")


def _selected(model, toks: torch.Tensor, mask: torch.Tensor | None, cols: list[tuple[int, int]],
              rows: str) -> torch.Tensor:
    """Float32 post-activations of the neurons `cols` (sorted by layer) for one batch `toks` [b, n_ctx]:
    [kept, len(cols)] at the kept positions of `mask`, or [b, n_ctx, len(cols)] when mask is None. The
    forward stops after the last layer needed."""
    layers = sorted({l for l, _ in cols})
    index = {l: torch.tensor([n for ll, n in cols if ll == l], device=toks.device) for l in layers}
    got = {}

    def keep(layer, act):
        got[layer] = act[..., index[layer]].float()

    run_hooks(model, toks, mask, mlp_points(model, layers=layers), keep, name="model", rows=rows)
    return torch.cat([got[l] for l in layers], -1)


def _stream(model, tokens, mask, cols, *, k, n_sample, seed, batch_rows, device, progress):
    """The streaming pass: (TopK, Histogram, sampled flat positions [s], their activations [s, n])."""
    from tqdm import tqdm

    n_ctx = tokens.shape[1]
    top, hist = TopK(len(cols), k, device), Histogram(len(cols), histogram_edges(), device)
    ordinals = sample_ordinals(int(mask.sum()), n_sample, seed)
    s_index, s_values, seen = [], [], 0
    for r0 in tqdm(range(0, len(tokens), batch_rows), desc="neuron explorer", unit="batch", disable=not progress):
        r1 = min(r0 + batch_rows, len(tokens))
        m = torch.from_numpy(mask[r0:r1]).to(device)
        if not m.any():
            continue
        toks = torch.from_numpy(tokens[r0:r1].astype(np.int64)).to(device)
        acts = _selected(model, toks, m, cols, rows=f"held-out rows {r0}-{r1 - 1}")  # [kept, n]
        flat = (torch.arange(r0 * n_ctx, r1 * n_ctx, device=device).view(r1 - r0, n_ctx))[m]
        top.update(acts, flat)
        hist.update(acts)
        lo, hi = np.searchsorted(ordinals, [seen, seen + len(acts)])
        local = torch.from_numpy(ordinals[lo:hi] - seen).to(device)
        s_index.append(flat[local].cpu().numpy())
        s_values.append(acts[local].cpu().numpy())
        seen += len(acts)
    return top, hist, np.concatenate(s_index), np.concatenate(s_values)


def _row_activations(model, tokens, cols, needed: dict[int, set[int]], *, batch_rows, device,
                     progress) -> dict[tuple[int, int], np.ndarray]:
    """{(column, row): the column's activations [n_ctx] over the whole row} for the rows each column needs
    (`needed` {column: rows}), from one forward pass over the union of those rows, in batches."""
    from tqdm import tqdm

    rows = sorted(set().union(*needed.values()))
    out = {}
    for b in tqdm(range(0, len(rows), batch_rows), desc="explorer windows", unit="batch", disable=not progress):
        batch = rows[b:b + batch_rows]
        toks = torch.from_numpy(tokens[batch].astype(np.int64)).to(device)
        acts = _selected(model, toks, None, cols, rows=f"held-out rows {batch[0]}-{batch[-1]}").cpu().numpy()
        for j, want in needed.items():
            for i, r in enumerate(batch):
                if r in want:
                    out[j, r] = acts[i, :, j]
    return out


@torch.inference_mode()
def neuron_records(model, tokens, mask, neurons: Sequence[tuple[int, int]], decode: Callable[[int], str], *,
                   sources=None, source_names: Sequence[str] | None = None, k: int = 20, before: int = 40,
                   after: int = 10, n_sample: int = 20000, n_bins: int = 5, per_bin: int = 3, seed: int = 0,
                   batch_rows: int = 64, device="cpu", progress: bool = False) -> dict[tuple[int, int], dict]:
    """The neuron-page data of each (layer, neuron) of `neurons` (duplicates once, in the given order) over the
    kept positions (`mask` True) of `tokens` [rows, n_ctx], from one streaming pass in batches of
    `batch_rows` rows on `device` plus one pass over the rows of the examples. Each record (plain Python
    types, JSON-serialisable):

    {"layer", "neuron", "n_tokens" (kept positions), "frequency" (share of them with activation > 0),
     "histogram": {"edges": histogram_edges(), "counts", "below", "above"} (see `histogram_edges`),
     "top": [window, ...] (the k highest activations, highest first, earliest position on ties),
     "quantiles": [{"range": [lo, hi], "examples": [window, ...]}, ...] (n_bins equal-width ranges of [0, max],
       highest first, empty ones skipped; up to per_bin examples from a seeded uniform sample of
       min(n_sample, n_tokens) kept positions, the same however the rows are batched),
     "vocab": vocab_effect(model, layer, neuron, decode)}

    A window (see `window`) is {"tokens", "values", "max_value", "max_index", "doc_index", "source"}; source is
    source_names[sources[row, pos]] ("" without `sources`, the index as text without `source_names`)."""
    tokens, mask = _numpy(tokens), _numpy(mask)
    sources = None if sources is None else _numpy(sources)
    _check_inputs(model, tokens, mask, sources, source_names, neurons,
                  {"k": (k, 1), "before": (before, 0), "after": (after, 0), "n_sample": (n_sample, 0),
                   "n_bins": (n_bins, 1), "per_bin": (per_bin, 0), "batch_rows": (batch_rows, 1), "seed": (seed, 0)})
    order = list(dict.fromkeys((int(l), int(n)) for l, n in neurons))
    cols = sorted(order)
    top, hist, s_index, s_values = _stream(model, tokens, mask, cols, k=k, n_sample=n_sample, seed=seed,
                                           batch_rows=batch_rows, device=device, progress=progress)
    top_v, top_i = top.values.cpu().numpy(), top.index.cpu().numpy()
    # Examples per column: (flat position, activation) for the top list, then per range.
    examples = {}
    for j, (l, n) in enumerate(cols):
        bins = quantile_examples(s_values[:, j], float(top_v[j, 0]), n_bins, per_bin,
                                 np.random.default_rng([seed, 1, l, n]))
        examples[j] = ([(int(i), float(v)) for i, v in zip(top_i[j], top_v[j])],
                       [(lo, hi, [(int(s_index[p]), float(s_values[p, j])) for p in pick]) for lo, hi, pick in bins])
    n_ctx = tokens.shape[1]
    needed = {j: {i // n_ctx for i, _ in t} | {i // n_ctx for *_, ex in q for i, _ in ex}
              for j, (t, q) in examples.items()}
    acts = _row_activations(model, tokens, cols, needed, batch_rows=batch_rows, device=device, progress=progress)
    cache: dict[int, str] = {}

    def dec(i: int) -> str:
        if i not in cache:
            cache[i] = decode(i)
        return cache[i]

    def source(r: int, p: int) -> str:
        if sources is None:
            return ""
        s = int(sources[r, p])
        return str(s) if source_names is None else str(source_names[s])

    def win(j: int, flat: int, value: float) -> dict:
        r, p = divmod(flat, n_ctx)
        return window(tokens[r], mask[r], acts[j, r], p, value, before=before, after=after, decode=dec, doc=r,
                      source=source(r, p))

    edges = histogram_edges().tolist()
    counts, below, above = hist.counts.tolist(), hist.below.tolist(), hist.above.tolist()
    records = {}
    for j, (l, n) in enumerate(cols):
        t, q = examples[j]
        records[l, n] = {
            "layer": l, "neuron": n, "n_tokens": int(hist.n), "frequency": int(hist.positive[j]) / hist.n,
            "histogram": {"edges": edges, "counts": counts[j], "below": below[j], "above": above[j]},
            "top": [win(j, i, v) for i, v in t],
            "quantiles": [{"range": [lo, hi], "examples": [win(j, i, v) for i, v in ex]} for lo, hi, ex in q],
            "vocab": vocab_effect(model, l, n, dec)}
    return {key: records[key] for key in order}

"""Passes over the held-out tokens: which tokens are kept, in which batches, and the one hook runner that
every pass (correlations, neuron properties, the chapters' activations) reads activations with (paper section 2).

Kept tokens: every position whose token is neither a special token (BOS/EOS/pad: one id in GPT-2 and
Pythia) nor a newline token (decoded text made only of whitespace and containing a newline).
A pass reads rows in order until exactly `n_tokens` tokens are kept (the last row is cut), in chunks of
about `chunk_tokens` kept tokens (one correlation-engine update each) that end at every snapshot, each
chunk in batches of `batch_rows` rows (`held_out_batches`); `run_hooks` runs one batch through a model and
hands each hooked activation, at the kept positions, to a callback.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch

from ..core.errors import UserError
from .comoments import CoMoments


def dropped_ids(tokenizer) -> np.ndarray:
    """Sorted ids left out of correlations: special tokens and whitespace-only tokens with a newline."""
    texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
    newline = [i for i, t in enumerate(texts) if "\n" in t and not t.strip()]
    return np.unique(np.asarray([*tokenizer.all_special_ids, *newline], dtype=np.int64))


def reference_kept_ids(tokenizer) -> np.ndarray:
    """Sorted ids this book drops that the reference code keeps: it drops the special tokens and the token
    that is exactly a newline, not the other whitespace-only tokens with a newline (e.g. "\\n\\n", "\\n\\t")."""
    texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
    return np.asarray(sorted(i for i in dropped_ids(tokenizer).tolist()
                             if texts[i] != "\n" and i not in set(tokenizer.all_special_ids)), dtype=np.int64)


def check_tokenizers(models, names) -> None:
    """UserError unless every model carries the reference's tokenizer (same vocabulary, same ids)."""
    vocabs = [m.tokenizer.get_vocab() if m.tokenizer is not None else None for m in models]
    for name, v in zip(names[1:], vocabs[1:]):
        if v is None or vocabs[0] is None or v != vocabs[0]:
            sizes = [len(x) if x is not None else 0 for x in (vocabs[0], v)]
            raise UserError(f"{name} does not use the tokenizer of the reference {names[0]} ({sizes[1]} vs {sizes[0]} "
                            "entries, or different ids): their tokens would not align; compare models trained "
                            "with the same tokenizer")


@dataclass
class Plan:
    """The held-out tokens of one pass: rows [0, n_rows) (the last cut to `last_keep` kept tokens), in
    `chunks` (row ranges); snapshot k covers chunks [0, snap_chunks[k]] and `snap_tokens[k]` kept tokens."""

    tokens: np.ndarray  # [rows, n_ctx]
    drop: np.ndarray  # [n_drop] sorted ids
    n_rows: int
    last_keep: int
    chunks: list[tuple[int, int]]
    snap_chunks: list[int]
    snap_tokens: list[int]

    def mask(self, r0: int, r1: int) -> np.ndarray:
        """bool [r1 - r0, n_ctx]: which positions of rows [r0, r1) are kept."""
        m = ~np.isin(self.tokens[r0:r1], self.drop)
        if r1 == self.n_rows:
            m[-1, np.flatnonzero(m[-1])[self.last_keep:]] = False
        return m


def plan_tokens(tokens: np.ndarray, drop: np.ndarray, n_tokens: int, chunk_tokens: int,
                fractions=(1.0,)) -> Plan:
    """Plan a pass over the first rows of `tokens` [rows, n_ctx] that keeps exactly `n_tokens` tokens."""
    counts, total, r = [], 0, 0
    while total < n_tokens and r < len(tokens):
        c = (~np.isin(tokens[r:r + 4096], drop)).sum(1)
        counts.append(c)
        total, r = total + int(c.sum()), r + len(c)
    if total < n_tokens:
        raise UserError(f"the held-out split keeps only {total:,} tokens ({len(tokens):,} rows, BOS and newline "
                        f"tokens dropped) but {n_tokens:,} were requested; lower analysis.n_tokens (--set analysis.n_tokens=N) "
                        "or use a larger corpus")
    cum = np.cumsum(np.concatenate(counts))  # [rows read] kept tokens up to each row
    n_rows = int(np.searchsorted(cum, n_tokens)) + 1
    cum = cum[:n_rows].copy()
    last_keep = n_tokens - (int(cum[-2]) if n_rows > 1 else 0)
    cum[-1] = n_tokens
    ends = sorted({int(np.searchsorted(cum, max(1, round(f * n_tokens)))) + 1 for f in fractions} | {n_rows})
    chunks, snap_chunks, start = [], [], 0
    for end in ends:
        while start < end:
            base = int(cum[start - 1]) if start else 0
            stop = min(end, max(start + 1, int(np.searchsorted(cum, base + chunk_tokens, side="right"))))
            chunks.append((start, stop))
            start = stop
        snap_chunks.append(len(chunks) - 1)
    return Plan(tokens, drop, n_rows, last_keep, chunks, snap_chunks, [int(cum[e - 1]) for e in ends])


def plan_pass(models, names, tokens: np.ndarray, n_tokens: int, chunk_tokens: int = 1 << 16,
              fractions=(1.0,)) -> Plan:
    """`plan_tokens` for a pass of `models` over `tokens` [rows, n_ctx], after checking that they share the
    reference's tokenizer and that the rows fit every model (context and vocabulary): else a UserError."""
    check_tokenizers(models, names)
    plan = plan_tokens(tokens, dropped_ids(models[0].tokenizer), n_tokens, chunk_tokens, fractions)
    top = int(tokens[:plan.n_rows].max())
    if tokens.shape[1] > min(m.cfg.n_ctx for m in models) or top >= min(m.cfg.d_vocab for m in models):
        raise UserError(f"the token rows (n_ctx {tokens.shape[1]}, max id {top}) do not fit the models (n_ctx "
                        f"{min(m.cfg.n_ctx for m in models)}, vocabulary {min(m.cfg.d_vocab for m in models)}); "
                        "build the rows with the models' tokenizer and context")
    return plan


def held_out_batches(plan: Plan, batch_rows: int, device, chunks=None,
                     next_token: bool = False) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """(first row, tokens [b, n_ctx] int64, kept mask [b, n_ctx] bool) for every batch of the planned chunks
    (all, or the indices in `chunks`); a batch never crosses a chunk's end. `next_token`: keep only the
    positions that have a next token in their row (not the last)."""
    for c in range(len(plan.chunks)) if chunks is None else chunks:
        r0, r1 = plan.chunks[c]
        mask = plan.mask(r0, r1)
        if next_token:
            mask[:, -1] = False
        for b0 in range(r0, r1, batch_rows):
            b1 = min(b0 + batch_rows, r1)
            yield (b0, torch.from_numpy(plan.tokens[b0:b1].astype(np.int64)).to(device),
                   torch.from_numpy(mask[b0 - r0:b1 - r0]).to(device))


def mlp_points(model, hook: str = "hook_post", layers=None) -> dict[str, int]:
    """{"blocks.{l}.mlp.<hook>": l} for the given layers (default all): hook_post (the activation) or
    hook_pre (the pre-activation; a gated MLP's gate)."""
    return {f"blocks.{l}.mlp.{hook}": l for l in (range(model.cfg.n_layers) if layers is None else layers)}


@torch.inference_mode()
def run_hooks(model, tokens: torch.Tensor, mask: torch.Tensor | None, points: dict[str, object],
              fn: Callable[[object, torch.Tensor], None], *, name: str = "model", rows: str = "") -> None:
    """One forward pass of `tokens` [b, n_ctx] calling fn(key, act) at every hook point of `points`
    ({hook name: key}): act is the hook's activation at the kept positions, act[mask] [kept, ...], or the
    whole tensor when `mask` is None (e.g. attention patterns [b, heads, q, k]). The pass stops after the last
    block hooked when every point is inside a block (`blocks.{l}.`), else it runs to the logits
    (`ln_final.hook_scale`). A NaN or inf activation is a UserError naming the model, the point and `rows`."""
    def at(act, hook, key):
        a = act if mask is None else act[mask]
        # a NaN or inf makes the sum non-finite (one pass, no mask); the full check confirms (an overflowing sum)
        if not torch.isfinite(a.sum(dtype=torch.float32)) and not torch.isfinite(a).all():
            where = f"layer {key}" if isinstance(key, int) else hook.name
            raise UserError(f"{name}: NaN or inf activation in {where}{', ' + rows if rows else ''}; check the "
                            "checkpoint's weights (or run in float32)")
        fn(key, a)

    blocks = [re.match(r"blocks\.(\d+)\.", p) for p in points]
    stop = max(int(m[1]) for m in blocks) + 1 if blocks and all(blocks) else None
    model.run_with_hooks(tokens, stop_at_layer=stop, fwd_hooks=[(p, partial(at, key=k)) for p, k in points.items()])


@torch.inference_mode()
def chunk_activations(models, names, plan: Plan, chunk: int, batch_rows: int, device, taps=None) -> list[torch.Tensor]:
    """Post-activations `blocks.{l}.mlp.hook_post` of every model on the kept tokens of one chunk:
    per model float32 [kept, n_layers * d_mlp], layer-major. The forward stops after the last block."""
    return rows_activations(models, names, plan, *plan.chunks[chunk], batch_rows, device, taps=taps)


@torch.inference_mode()
def rows_activations(models, names, plan: Plan, r0: int, r1: int, batch_rows: int, device,
                     layers=None, taps=None) -> list[torch.Tensor]:
    """Post-activations of every model on the kept tokens of rows [r0, r1) of the plan, in batches of `batch_rows`
    rows from r0: per model float32 [kept, Σ d_mlp of its layers], layer-major over `layers[k]` (sorted layer
    indices of model k; None: all). The forward stops after the last layer asked for. `taps[k]`: None or
    (points, fn), more hook points of model k ({hook: tuple key}, inside the layers read) handed to fn(key, act)
    at the kept positions of each batch, in the same forward (e.g. `activation_stats.StatsTaps`)."""
    mask_all = plan.mask(r0, r1)
    layers = [list(range(m.cfg.n_layers)) if layers is None or layers[k] is None else sorted(layers[k])
              for k, m in enumerate(models)]
    outs = [torch.empty(int(mask_all.sum()), len(ls) * m.cfg.d_mlp, device=device) for m, ls in zip(models, layers)]
    k0 = 0
    for b0 in range(r0, r1, batch_rows):
        b1 = min(b0 + batch_rows, r1)
        toks = torch.from_numpy(plan.tokens[b0:b1].astype(np.int64)).to(device)
        mask = torch.from_numpy(mask_all[b0 - r0:b1 - r0]).to(device)
        k1 = k0 + int(mask.sum())
        for k, (model, out, name, ls) in enumerate(zip(models, outs, names, layers)):
            if not ls:
                continue
            d, slot = model.cfg.d_mlp, {l: i for i, l in enumerate(ls)}

            def keep(layer, a, out=out, d=d, k0=k0, k1=k1, slot=slot):  # a [kept in batch, d_mlp]
                out[k0:k1, slot[layer] * d:(slot[layer] + 1) * d] = a

            points, fn = mlp_points(model, layers=ls), keep
            tap = taps[k] if taps is not None else None
            if tap is not None:
                points = points | tap[0]
                fn = (lambda key, a, keep=keep, extra=tap[1]: extra(key, a) if isinstance(key, tuple) else keep(key, a))
            run_hooks(model, toks, mask, points, fn, name=name, rows=f"batch of held-out rows {b0}-{b1 - 1}")
        k0 = k1
    return outs


def co_moments(models, names, tokens: np.ndarray, n_tokens: int, batch_rows: int, device, progress: bool = True,
               on_chunk=None, **kwargs) -> list:
    """One pass of the reference `models[0]` with each other model over `n_tokens` held-out tokens of `tokens`:
    a `comoments.CoMoments(n_a, n_b, **kwargs)` per partner (all layers' neurons, layer-major). `on_chunk(acts)`
    sees each chunk's activations (one tensor per model) too."""
    from tqdm.auto import tqdm

    plan = plan_pass(models, names, tokens, n_tokens)
    n_a = models[0].cfg.n_layers * models[0].cfg.d_mlp
    cms = [CoMoments(n_a, m.cfg.n_layers * m.cfg.d_mlp, **kwargs) for m in models[1:]]
    for c in tqdm(range(len(plan.chunks)), desc="co-moments", unit="chunk", disable=not progress):
        acts = chunk_activations(models, names, plan, c, batch_rows, device)
        for cm, b_acts in zip(cms, acts[1:]):
            cm.update(acts[0], b_acts)
        if on_chunk is not None:
            on_chunk(acts)
    return cms


def extra_plan(plan: Plan, extra_ids) -> Plan | None:
    """A plan over only the positions holding one of `extra_ids` (tokens `plan` drops) in the rows `plan` reads
    (None when no such position occurs)."""
    tokens, rows = plan.tokens, plan.tokens[:plan.n_rows]
    if not len(extra_ids) or not np.isin(rows, extra_ids).any():
        return None
    keep_only = np.setdiff1d(np.arange(max(int(tokens.max()) + 1, int(np.max(extra_ids)) + 1)), extra_ids)
    return plan_tokens(rows, keep_only, int(np.isin(rows, extra_ids).sum()), 1 << 16)


def extra_co_moments(models, names, tokens: np.ndarray, n_tokens: int, batch_rows: int, device, extra_ids) -> list:
    """The co-moments (as `co_moments`) of only the positions holding one of `extra_ids` (tokens a pass drops) in
    the rows a pass over `n_tokens` kept tokens reads: `cms[k].plus(extra[k])` are then the moments of the same
    rows with those tokens kept too. An empty list when no such position occurs."""
    sub = extra_plan(plan_pass(models, names, tokens, n_tokens), extra_ids)
    if sub is None:
        return []
    n_a = models[0].cfg.n_layers * models[0].cfg.d_mlp
    cms = [CoMoments(n_a, m.cfg.n_layers * m.cfg.d_mlp) for m in models[1:]]
    for c in range(len(sub.chunks)):
        acts = chunk_activations(models, names, sub, c, batch_rows, device)
        for cm, b_acts in zip(cms, acts[1:]):
            cm.update(acts[0], b_acts)
    return cms

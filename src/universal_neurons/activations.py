"""MLP activations of several models on the same held-out tokens, each batch read once (paper section 2).

Kept tokens: every position whose token is neither a special token (BOS/EOS/pad: one id in GPT-2 and
Pythia) nor a newline token (decoded text made only of whitespace and containing a newline).
A pass reads rows in order until exactly `n_tokens` tokens are kept (the last row is cut), in chunks of
about `chunk_tokens` kept tokens (one correlation-engine update each) that end at every snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np
import torch

from .errors import UserError


def dropped_ids(tokenizer) -> np.ndarray:
    """Sorted ids left out of correlations: special tokens and whitespace-only tokens with a newline."""
    texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
    newline = [i for i, t in enumerate(texts) if "\n" in t and not t.strip()]
    return np.unique(np.asarray([*tokenizer.all_special_ids, *newline], dtype=np.int64))


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
                        f"tokens dropped) but {n_tokens:,} were requested; lower analysis.n_tokens (--n-tokens) "
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


@torch.inference_mode()
def chunk_activations(models, names, plan: Plan, chunk: int, batch_rows: int, device) -> list[torch.Tensor]:
    """Post-activations `blocks.{l}.mlp.hook_post` of every model on the kept tokens of one chunk:
    per model float32 [kept, n_layers * d_mlp], layer-major. The forward stops after the last block."""
    r0, r1 = plan.chunks[chunk]
    mask = torch.from_numpy(plan.mask(r0, r1)).to(device)  # [rows, n_ctx]
    toks = torch.from_numpy(plan.tokens[r0:r1].astype(np.int64)).to(device)  # [rows, n_ctx]
    kept = torch.cat([torch.zeros(1, dtype=torch.int64, device=device), mask.sum(1).cumsum(0)]).tolist()
    outs = [torch.empty(kept[-1], m.cfg.n_layers * m.cfg.d_mlp, device=device) for m in models]

    def hook(act, hook, out, layer, d, b0, b1, name):  # act [batch, n_ctx, d_mlp]
        a = act[mask[b0:b1]]  # [kept in batch, d_mlp]
        if not torch.isfinite(a).all():
            raise UserError(f"{name}: NaN or inf activation in layer {layer}, batch of held-out rows "
                            f"{r0 + b0}-{r0 + b1 - 1}; check the checkpoint's weights (or run in float32)")
        out[kept[b0]:kept[b1], layer * d:(layer + 1) * d] = a

    for b0 in range(0, r1 - r0, batch_rows):
        b1 = min(b0 + batch_rows, r1 - r0)
        for model, out, name in zip(models, outs, names):
            n_layers, d = model.cfg.n_layers, model.cfg.d_mlp
            hooks = [(f"blocks.{l}.mlp.hook_post", partial(hook, out=out, layer=l, d=d, b0=b0, b1=b1, name=name))
                     for l in range(n_layers)]
            model.run_with_hooks(toks[b0:b1], stop_at_layer=n_layers, fwd_hooks=hooks)
    return outs

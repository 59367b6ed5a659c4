"""Co-moments of a reference against its partners in tiles that fit a memory budget, at any model size.

A `Tile` is a block of whole layers: reference layers [a0, a1) against partner k's layers [b0, b1). Its
`comoments.CoMoments` holds the moments of only those neurons (with the permutation shift and the bootstrap's
blocks where asked), so every statistic that works per partner layer (the maxima over its columns, the rotation
baselines, which need only each partner layer's own covariance, the layer-pair similarities and assignments) is
exact on a tile, and the whole is the combination of its tiles. Each neuron's shift (`CoMoments` centre) is
computed once over the first batch of the pass, as an untiled pass fixes it at its first batch, so a tile's
moments are the rows and columns of the untiled ones, up to the order of the float sums; the tiles of one pass
that share reference layers share each batch's product Σ u uᵀ of them (`CoMoments.update`'s gram_a).

`plan_passes` packs the tiles into passes over the held-out tokens: the tiles of one pass accumulate side by side
(each model runs once per batch of a pass), their bytes (`tile_bytes`: the moments, the float16 port of the
reference code and the newline filter's moments, plus the largest tile's working memory when its statistics are
derived) within the budget. It picks the tile shape (reference layers x partner layers per tile) that needs the
fewest passes; small models fit in one pass of one tile per partner (the untiled pass). One layer pair above the
budget is a UserError before any work.

`run_passes` feeds the tiles, one pass after the other, and hands each finished tile to a callback (and frees it).
The activations of a pass are read in row groups of whole batches (`rows_activations`), at most about
`act_bytes` of float32 activations at a time, so memory does not grow with the chunk of the plan.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch

from ..core.errors import UserError
from .activations import Plan, rows_activations
from .comoments import CoMoments, first_batch_shift
from .reference_port import ReferencePearson

WORK_FACTOR = (3, 5)  # derivation working memory, in float64 copies of (a within-model block, a tile's cross block)


@dataclass(frozen=True)
class Tile:
    """Reference layers [a0, a1) against partner `partner`'s layers [b0, b1); `full`: with the permutation shift,
    the bootstrap blocks, the float16 port and the newline filter's moments (else the plain moments)."""

    partner: int
    a0: int
    a1: int
    b0: int
    b1: int
    full: bool = True


def _edges(sizes) -> np.ndarray:
    return np.cumsum([0, *[int(s) for s in sizes]])


def tile_bytes(n_a: int, n_b: int, full: bool, shift: int, n_blocks: int) -> tuple[int, int]:
    """(bytes kept while the tile accumulates, working bytes while its statistics are derived) for a tile of
    n_a reference and n_b partner neurons."""
    kept = CoMoments.nbytes_needed(n_a, n_b, shift if full else None)
    if full:
        kept += n_blocks * CoMoments.block_nbytes(n_a, n_b)  # the bootstrap's blocks
        kept += 8 * n_a * n_b + 32 * (n_a + n_b)  # the float16 port's float64 cross sums
        kept += CoMoments.nbytes_needed(n_a, n_b)  # the newline filter's extra positions
    work = 8 * (WORK_FACTOR[0] * (n_a * n_a + n_b * n_b) + WORK_FACTOR[1] * n_a * n_b)
    return int(kept), int(work)


def _tiles(sizes_a, partner_sizes, full, g_a: int, g_b: int) -> list[Tile]:
    """Tiles of g_a reference layers x g_b partner layers (the last of each fewer), partner by partner, partner
    layers outermost (the order in which the maxima over partner layers are combined)."""
    out = []
    for k, sizes_b in enumerate(partner_sizes):
        for b0 in range(0, len(sizes_b), g_b):
            for a0 in range(0, len(sizes_a), g_a):
                out.append(Tile(k, a0, min(a0 + g_a, len(sizes_a)), b0, min(b0 + g_b, len(sizes_b)), full[k]))
    return out


def _pack(tiles, sizes_a, partner_sizes, budget, shift, n_blocks) -> list[list[Tile]] | None:
    """Tiles packed greedily in order into passes whose kept bytes plus the largest working bytes fit."""
    ea = _edges(sizes_a)
    cost = []
    for t in tiles:
        eb = _edges(partner_sizes[t.partner])
        cost.append(tile_bytes(int(ea[t.a1] - ea[t.a0]), int(eb[t.b1] - eb[t.b0]), t.full, shift, n_blocks))
    passes, kept, work = [], 0, 0
    for t, (k, w) in zip(tiles, cost):
        if k + w > budget:
            return None
        if passes and kept + k + max(work, w) <= budget:
            passes[-1].append(t)
            kept, work = kept + k, max(work, w)
        else:
            passes.append([t])
            kept, work = k, w
    return passes


def _round_up(x: float) -> float:
    """x rounded up to two significant digits (0.0213 -> 0.022, 33.1 -> 34)."""
    step = 10.0 ** (np.floor(np.log10(x)) - 1)
    return float(np.ceil(x / step - 1e-9) * step)


def plan_passes(sizes_a, partner_sizes, budget_bytes: float, shift: int, n_blocks: int,
                full=None) -> list[list[Tile]]:
    """The passes (lists of tiles) over the held-out tokens for a reference of layers `sizes_a` (neurons per
    layer) against partners of layers `partner_sizes[k]`, within `budget_bytes`: the tile shape with the fewest
    passes (then the fewest tiles). `full[k]`: partner k's tiles carry the blocks etc. (default all)."""
    full = [True] * len(partner_sizes) if full is None else list(full)
    best = None
    n_layers_b = max(len(s) for s in partner_sizes)
    for g_a, g_b in itertools.product(range(1, len(sizes_a) + 1), range(1, n_layers_b + 1)):
        tiles = _tiles(sizes_a, partner_sizes, full, g_a, g_b)
        passes = _pack(tiles, sizes_a, partner_sizes, budget_bytes, shift, n_blocks)
        if passes is not None and (best is None or (len(passes), len(tiles)) < (len(best), sum(map(len, best)))):
            best = passes
    if best is None:
        need = max(sum(tile_bytes(da, db, f, shift, n_blocks)) for da in sizes_a
                   for sizes_b, f in zip(partner_sizes, full) for db in sizes_b)
        raise UserError(f"one layer pair's co-moments need {need / 1e9:.3g} GB, above the budget of "
                        f"{budget_bytes / 1e9:.3g} GB; raise analysis.max_accumulator_gb to at least "
                        f"{_round_up(need / 1e9):g}")
    return best


class _State:
    """One tile's accumulators during its pass."""

    def __init__(self, tile, ea, eb, centers_a, centers_b, shift, block_rows, port_batch, extra, products, within):
        self.tile = tile
        self.cols_a = (int(ea[tile.a0]), int(ea[tile.a1]))
        self.cols_b = (int(eb[tile.b0]), int(eb[tile.b1]))
        sa, sb = slice(*self.cols_a), slice(*self.cols_b)
        n_a, n_b = self.cols_a[1] - self.cols_a[0], self.cols_b[1] - self.cols_b[0]
        kw = {"max_bytes": float("inf"), "products": products}
        if within:  # the within-model moments within layers only
            kw |= {"layers_a": np.diff(ea[tile.a0:tile.a1 + 1]).tolist(), "layers_b": np.diff(eb[tile.b0:tile.b1 + 1]).tolist()}
        self.cm = CoMoments(n_a, n_b, center_a=centers_a[0][sa], center_b=centers_b[0][sb],
                            **(kw | ({"shift": shift, "block_rows": block_rows} if tile.full else {})))
        self.port = ReferencePearson(n_a, n_b, port_batch) if tile.full and port_batch else None
        self.extra = (CoMoments(n_a, n_b, center_a=centers_a[1][sa], center_b=centers_b[1][sb], **kw)
                      if tile.full and extra else None)


def centers(models, names, plan: Plan, batch_rows: int, device) -> list[np.ndarray]:
    """Per model float64 [n_layers * d_mlp]: each neuron's shift over the first batch of `plan` (its mean, or its
    value where it is constant there), as `CoMoments` fixes it at its first batch. Any shift gives the same
    moments up to rounding; the first batch is one forward pass of each model."""
    r0 = plan.chunks[0][0]
    r1 = min(r0 + batch_rows, plan.chunks[0][1])
    out = []
    for model, name in zip(models, names):
        a = rows_activations([model], [name], plan, r0, r1, batch_rows, device)[0].detach().to("cpu", torch.float64)
        a = a.numpy()
        out.append(first_batch_shift(a.min(0), a.max(0), a.mean(0)))
    return out


def rows_per_group(plan: Plan, widths: int, batch_rows: int, act_bytes: float) -> int:
    """Rows read at once: whole batches, at most about `act_bytes` of float32 activations of `widths` neurons
    plus their float64 copies (at least one batch)."""
    per_row = plan.tokens.shape[1] * widths * (4 + 16)
    return max(1, int(act_bytes // max(per_row * batch_rows, 1))) * batch_rows


def run_passes(models, names, plan: Plan, passes, batch_rows: int, device, on_tile, *, shift: int | None = None,
               block_rows: int | None = None, port_batch: int | None = None, extra: Plan | None = None,
               act_bytes: float = 1e9, products: str = "float64", within_layers: bool = False,
               progress: bool = True) -> None:
    """Accumulate every tile of every pass over the kept tokens of `plan` (and of `extra`: the positions of the
    newline filter), then call on_tile(tile, cm, port, extra_cm) for each, freeing it afterwards. models[0] is
    the reference, tile.partner indexes models[1:]; `products`: the `CoMoments` products' precision;
    `within_layers`: each side's own moments kept within layers only (`CoMoments` layers_a, layers_b)."""
    from tqdm.auto import tqdm

    sizes = [[m.cfg.d_mlp] * m.cfg.n_layers for m in models]
    edges = [_edges(s) for s in sizes]
    ctr = [centers(models, names, plan, batch_rows, device)]
    ctr.append(centers(models, names, extra, batch_rows, device) if extra is not None else ctr[0])
    ctr = list(zip(*ctr))  # per model (main, extra)
    bar = tqdm(total=len(passes) * len(plan.chunks), desc="co-moment tiles", unit="chunk", disable=not progress)
    for tiles in passes:
        states = [_State(t, edges[0], edges[t.partner + 1], ctr[0], ctr[t.partner + 1], shift, block_rows,
                         port_batch, extra is not None, products, within_layers) for t in tiles]
        used = sorted({t.partner + 1 for t in tiles})
        layers = [sorted({l for t in tiles for l in range(t.a0, t.a1)})]
        layers += [sorted({l for t in tiles if t.partner + 1 == m for l in range(t.b0, t.b1)}) for m in used]
        d = [models[0].cfg.d_mlp] + [models[m].cfg.d_mlp for m in used]
        slot = [{l: i for i, l in enumerate(ls)} for ls in layers]
        width = sum(len(ls) * dm for ls, dm in zip(layers, d))
        group = rows_per_group(plan, width, batch_rows, act_bytes)

        def cols(k, l0, l1):  # the columns of layers [l0, l1) in model k's activations of this pass
            return slice(slot[k][l0] * d[k], (slot[k][l1 - 1] + 1) * d[k])

        for which, p in ((0, plan), (1, extra)):
            if p is None:
                continue
            for c, (r0, r1) in enumerate(p.chunks):
                for s0 in range(r0, r1, group):
                    s1 = min(s0 + group, r1)
                    acts = rows_activations([models[0]] + [models[m] for m in used], [names[0]] + [names[m] for m in used],
                                            p, s0, s1, batch_rows, device, layers)
                    grams = {}  # the reference columns' Σ u uᵀ of this batch, computed once for the tiles sharing them
                    for st in states:
                        k = used.index(st.tile.partner + 1) + 1
                        a = acts[0][:, cols(0, st.tile.a0, st.tile.a1)]
                        b = acts[k][:, cols(k, st.tile.b0, st.tile.b1)]
                        if which == 0:
                            rows = (st.tile.a0, st.tile.a1)
                            grams[rows] = st.cm.update(a, b, grams.get(rows))
                            if st.port is not None:
                                st.port.update(a, b, final=s1 == r1)
                        elif st.extra is not None:
                            st.extra.update(a, b)
                    del acts
                if which == 0:
                    bar.update(1)
        while states:  # each tile derived, then freed
            st = states.pop(0)
            on_tile(st.tile, st.cm, st.port, st.extra if st.extra is not None and st.extra.n else None)
            del st
    bar.close()

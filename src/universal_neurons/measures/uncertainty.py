"""Uncertainty of the universality numbers (paper section 2): over tokens, over partners, over their number.

One definition of the paper's quantities, shared by every function here:
- `excess_from(max [P, n], base [P, n])` = mean_m max_m − mean_m base_m  [n]  (max_m: a reference neuron's signed
  max correlation with partner m's neurons, base_m the same against partner m's rotated neurons);
- `universal_share(excess, threshold=0.5)` = share of live neurons with excess > threshold; a dead neuron
  (NaN excess, see `universality`) is left out of numerator and denominator, as `neuron_tables.summary` does.

Then:
- `block_bootstrap(per_block, stat, draws, seed)`: contiguous blocks of tokens resampled with replacement. The
  caller gives per-block sufficient statistics (arrays [B, ...] whose sum over blocks is the full statistic,
  e.g. Σx, Σx², Σxyᵀ of each block's tokens) and `stat`, a function from the summed statistics to the
  quantity; each draw sums the blocks with multinomial counts. `interval(draws, level)`: percentile interval.
- `leave_one_out(per_partner_values, fn)`: the quantity recomputed with each partner left out, and the spread.
- `share_by_partners(max, base, threshold)`: the universal share with k = 1..P partners, over every subset of
  size k (or a seeded sample of them, or the first k of given orders): mean, min, max.
"""

from __future__ import annotations

from itertools import combinations
from math import comb
from typing import Callable, NamedTuple

import numpy as np
import pandas as pd

from ..core.errors import UserError
from ..core.paper import THRESHOLD


def excess_from(per_partner_max, per_partner_base) -> np.ndarray:
    """The paper's excess correlation [n] = mean over partners of max [P, n] − mean over partners of
    baseline [P, n] (both axis 0). NaN (dead reference neuron) propagates."""
    mx, base = np.asarray(per_partner_max, float), np.asarray(per_partner_base, float)
    if mx.shape != base.shape or mx.ndim < 1 or mx.shape[0] < 1:
        raise UserError(f"max {mx.shape} and baseline {base.shape} must have one shape [partners, ...]")
    return mx.mean(axis=0) - base.mean(axis=0)


def universal_share(excess, threshold: float = THRESHOLD) -> float:
    """Share of live neurons (non-NaN excess) with excess > threshold along the last axis ([..., n] -> [...]);
    NaN when no neuron is live."""
    ex = np.asarray(excess, float)
    live = ~np.isnan(ex)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (np.sum(ex > threshold, axis=-1) / np.sum(live, axis=-1))[()]


# ---- block bootstrap over tokens -------------------------------------------------------------------------


class Bootstrap(NamedTuple):
    estimate: object  # stat on the full data (all blocks once)
    draws: np.ndarray  # [draws, ...] stat on each resample
    low: object  # percentile interval of the draws (`interval`)
    high: object


def interval(draws, level: float = 0.95):
    """Percentile interval (low, high) of bootstrap draws [draws, ...] along axis 0: the (1−level)/2 and
    (1+level)/2 quantiles (linear interpolation; NaN draws propagate)."""
    if not 0 < level < 1:
        raise UserError(f"level must be in (0, 1), not {level}")
    lo, hi = np.quantile(np.asarray(draws, float), [(1 - level) / 2, (1 + level) / 2], axis=0)
    return lo[()], hi[()]


def _merge(a: np.ndarray, n_blocks: int) -> np.ndarray:
    """Sum consecutive rows of a [B, ...] into n_blocks contiguous groups (np.array_split boundaries)."""
    edges = np.array([len(s) for s in np.array_split(np.arange(a.shape[0]), n_blocks)]).cumsum()[:-1]
    return np.add.reduceat(a, np.concatenate([[0], edges]), axis=0)


def block_bootstrap(per_block, stat: Callable, draws: int = 1000, seed: int = 0, *, n_blocks: int | None = None,
                    level: float = 0.95, vectorized: bool = False, batch: int = 64) -> Bootstrap:
    """Bootstrap of stat over contiguous token blocks, resampled with replacement.

    per_block: an array [B, ...] or a tuple / list / dict of arrays, each with leading axis B (blocks in token
    order), whose sum over axis 0 is the full sufficient statistic. stat: summed statistics (same structure,
    without the B axis) -> quantity (number or array); with vectorized=True it instead takes them with a
    leading draws axis and returns [draws, ...] (much faster for cheap stats). n_blocks: first merge the B
    blocks into this many contiguous blocks (longer blocks keep more of the tokens' dependence). Each draw
    sums the blocks weighted by multinomial(n_blocks, uniform) counts; `batch` draws are summed at once
    (memory: batch x the statistic's size). Returns Bootstrap(estimate, draws, low, high)."""
    kind = tuple if isinstance(per_block, tuple) else list if isinstance(per_block, list) else None
    keys = list(per_block) if isinstance(per_block, dict) else None
    parts = [per_block[k] for k in keys] if keys is not None else (
        list(per_block) if isinstance(per_block, (tuple, list)) else [per_block])
    parts = [np.asarray(p, float) for p in parts]
    b = parts[0].shape[0]
    if b < 1 or any(p.ndim < 1 or p.shape[0] != b for p in parts):
        raise UserError(f"every statistic needs the same leading block axis: {[p.shape for p in parts]}")
    if n_blocks is not None:
        if not 1 <= n_blocks <= b:
            raise UserError(f"n_blocks must be in [1, {b}], not {n_blocks}")
        parts, b = [_merge(p, n_blocks) for p in parts], n_blocks

    def pack(xs):
        if keys is not None:
            return dict(zip(keys, xs))
        return kind(xs) if kind is not None else xs[0]

    if vectorized:
        estimate = np.asarray(stat(pack([p.sum(axis=0)[None] for p in parts])))[0][()]
    else:
        estimate = stat(pack([p.sum(axis=0) for p in parts]))
    counts = np.random.default_rng(seed).multinomial(b, np.full(b, 1 / b), size=draws).astype(float)
    flat = [p.reshape(b, -1) for p in parts]
    out = []
    for i in range(0, draws, batch):
        sums = [(counts[i:i + batch] @ f).reshape((-1,) + p.shape[1:]) for f, p in zip(flat, parts)]
        if vectorized:
            out.append(np.asarray(stat(pack(sums)), float))
        else:
            out.append(np.array([stat(pack([s[j] for s in sums])) for j in range(len(sums[0]))], float))
    values = np.concatenate(out, axis=0)
    return Bootstrap(estimate, values, *interval(values, level))


# ---- partners ---------------------------------------------------------------------------------------------


class LeaveOneOut(NamedTuple):
    full: object  # fn on all partners
    values: np.ndarray  # [P, ...] fn with partner k left out
    low: object  # min over k of values
    high: object  # max over k of values
    jackknife_se: object  # sqrt((P−1)/P · Σ_k (values_k − mean)²)


def _stack_partners(per_partner_values):
    """One array [P, ...] or a tuple / list of them (same P) -> list of float arrays."""
    parts = list(per_partner_values) if isinstance(per_partner_values, (tuple, list)) else [per_partner_values]
    parts = [np.asarray(p, float) for p in parts]
    if any(p.ndim < 1 or p.shape[0] != parts[0].shape[0] for p in parts):
        raise UserError(f"every array needs the same leading partner axis: {[p.shape for p in parts]}")
    return parts


def leave_one_out(per_partner_values, fn: Callable) -> LeaveOneOut:
    """fn recomputed with each partner left out. per_partner_values: an array [P, n] (fn takes [P−1, n]) or a
    tuple of such arrays (fn takes them as separate arguments, e.g. (max, base) with
    fn = lambda m, b: universal_share(excess_from(m, b))). Needs P >= 2."""
    parts = _stack_partners(per_partner_values)
    p = parts[0].shape[0]
    if p < 2:
        raise UserError(f"leave-one-out needs at least 2 partners, not {p}")
    full = fn(*parts)
    values = np.array([fn(*[np.delete(a, k, axis=0) for a in parts]) for k in range(p)], float)
    se = np.sqrt((p - 1) / p * np.sum((values - values.mean(axis=0)) ** 2, axis=0))
    return LeaveOneOut(full, values, values.min(axis=0)[()], values.max(axis=0)[()], se[()])


def partner_subsets(n_partners: int, k: int, orders=None, max_subsets: int = 200, seed: int = 0) -> np.ndarray:
    """Subsets of k partners [S, k] (indices): the first k of each given order (orders [R, P], permutations),
    else every subset of size k when there are at most max_subsets of them, else max_subsets random subsets
    (the first k of seeded random permutations; repeats possible)."""
    if not 1 <= k <= n_partners:
        raise UserError(f"k must be in [1, {n_partners}], not {k}")
    if orders is None:
        if comb(n_partners, k) <= max_subsets:
            return np.array(list(combinations(range(n_partners), k)), dtype=int)
        rng = np.random.default_rng(seed)
        orders = np.argsort(rng.random((max_subsets, n_partners)), axis=1)
    orders = np.atleast_2d(np.asarray(orders, dtype=int))
    if orders.shape[1] != n_partners or any(sorted(o) != list(range(n_partners)) for o in orders.tolist()):
        raise UserError(f"orders must be permutations of range({n_partners}), one per row")
    return orders[:, :k]


def share_by_partners(per_partner_max, per_partner_base, threshold: float = THRESHOLD, orders=None,
                      max_subsets: int = 200, seed: int = 0) -> pd.DataFrame:
    """Universal share with k = 1..P partners: for each k, `universal_share(excess_from(max[S], base[S]))` over
    the subsets S of `partner_subsets(P, k, orders, max_subsets, seed)`. per_partner_max / _base [P, n].
    Returns a DataFrame indexed by k ("partners") with share_mean, share_min, share_max and subsets (count).
    With k = P the share is the paper's (all partners)."""
    mx, base = _stack_partners((per_partner_max, per_partner_base))
    if mx.shape != base.shape:
        raise UserError(f"max {mx.shape} and baseline {base.shape} must have one shape [partners, n]")
    p = mx.shape[0]
    rows = []
    for k in range(1, p + 1):
        sub = partner_subsets(p, k, orders, max_subsets, seed)  # [S, k]
        ex = excess_from(mx[sub.T], base[sub.T])  # [k, S, n] -> [S, n]: every subset at once
        shares = universal_share(ex, threshold)
        rows.append({"partners": k, "share_mean": float(np.mean(shares)), "share_min": float(np.min(shares)),
                     "share_max": float(np.max(shares)), "subsets": len(sub)})
    return pd.DataFrame(rows).set_index("partners")

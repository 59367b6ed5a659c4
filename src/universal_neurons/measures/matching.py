"""Matching rules: from a correlation matrix to one score per reference neuron.

`corr` is float64 [n_a, n_b]: reference neurons (rows) against one partner's neurons (columns, all partner
layers side by side, layer l holding columns [Σ_{k<l} d_k, Σ_{k<=l} d_k)). NaN entries (dead neurons)
never win a max; a row with no finite entry gives value NaN and index -1.

- `signed_max`: max_j r_ij (the paper's: anti-correlation does not count), with the argmax column.
- `abs_max`: max_j |r_ij|, with the argmax column (anti-correlation counts as a match).
- `min_corr`: Bau et al.'s MinCorr: from per-partner maxima [partners, n_a], the worst partner's value.
- `hungarian`: one-to-one matching (Li et al. 2016's "bipartite" rule) for each (reference layer, partner
  layer) pair, maximising the summed correlation (scipy.optimize.linear_sum_assignment; NaN costs 0 there,
  i.e. a dead neuron counts as uncorrelated), then per reference neuron the best correlation of its
  assigned partner over the partner layers (NaN pairs never win). In a pair with fewer partner than
  reference neurons, the unassigned reference neurons get nothing from that layer.
"""

from __future__ import annotations

import numpy as np

from ..core.errors import UserError


def _matrix(corr) -> np.ndarray:
    c = np.asarray(corr, dtype=np.float64)
    if c.ndim != 2:
        raise UserError(f"expected a correlation matrix [n_a, n_b], got shape {list(c.shape)}")
    return c


def _edges(sizes, n: int, name: str) -> np.ndarray:
    sizes = [int(s) for s in sizes]
    if any(s < 1 for s in sizes) or sum(sizes) != n:
        raise UserError(f"{name} {sizes} must be positive and sum to the matrix's {n} neurons on that side")
    return np.cumsum([0, *sizes])


def _argmax(score: np.ndarray, value: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the entry of `value` where `score` (NaN ignored) is largest; (values [n], indices [n])."""
    filled = np.where(np.isnan(score), -np.inf, score)
    if filled.shape[1] == 0:
        return np.full(len(filled), np.nan), np.full(len(filled), -1, dtype=np.int64)
    idx = filled.argmax(1)
    rows = np.arange(len(filled))
    none = filled[rows, idx] == -np.inf
    return np.where(none, np.nan, value[rows, idx]), np.where(none, -1, idx).astype(np.int64)


def signed_max(corr) -> tuple[np.ndarray, np.ndarray]:
    """(values [n_a] = max_j r_ij, indices [n_a] = argmax column); NaN and -1 for rows with no finite entry."""
    c = _matrix(corr)
    return _argmax(c, c)


def abs_max(corr) -> tuple[np.ndarray, np.ndarray]:
    """(values [n_a] = max_j |r_ij| (>= 0), indices [n_a] = argmax column); the sign is corr[i, index]."""
    a = np.abs(_matrix(corr))
    return _argmax(a, a)


def min_corr(per_partner_max) -> np.ndarray:
    """[n_a] = min over partners of per_partner_max [partners, n_a] (each a partner's max, e.g. signed_max);
    NaN if any partner's value is NaN (no match in the worst partner is defined)."""
    m = np.asarray(per_partner_max, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] < 1:
        raise UserError(f"min_corr(): expected per-partner maxima [partners, n_a], got shape {list(m.shape)}")
    return m.min(0)


def hungarian(corr, layer_sizes_a, layer_sizes_b) -> tuple[np.ndarray, np.ndarray]:
    """(values [n_a], indices [n_a]): per (reference layer, partner layer) pair a one-to-one assignment that
    maximises Σ r over assigned pairs (NaN as 0); per reference neuron the largest r of its assigned partners
    over the partner layers, and that partner's column (NaN and -1 if none is finite). Cost: one assignment per
    layer pair, O(d³) each (seconds for d = 3072)."""
    from scipy.optimize import linear_sum_assignment

    c = _matrix(corr)
    ea = _edges(layer_sizes_a, c.shape[0], "layer_sizes_a")
    eb = _edges(layer_sizes_b, c.shape[1], "layer_sizes_b")
    best = np.full(c.shape[0], -np.inf)
    index = np.full(c.shape[0], -1, dtype=np.int64)
    for a0, a1 in zip(ea[:-1], ea[1:]):
        for b0, b1 in zip(eb[:-1], eb[1:]):
            block = c[a0:a1, b0:b1]
            rows, cols = linear_sum_assignment(np.nan_to_num(block, nan=0.0), maximize=True)
            r = block[rows, cols]
            r = np.where(np.isnan(r), -np.inf, r)
            win = r > best[a0 + rows]
            best[a0 + rows[win]] = r[win]
            index[a0 + rows[win]] = b0 + cols[win]
    return np.where(index < 0, np.nan, best), index

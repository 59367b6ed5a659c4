"""Baselines for the max correlation, from `comoments.CoMoments` without another pass over the tokens.

Rotation (paper section 2): partner layer l's neurons v_l [d_l] are replaced by u = R_l v_l with a random
R_l [d_l, d_l]; for reference neuron i the baseline is the signed max over all partner layers' rotated
neurons of corr(a_i, u_j), exactly from the co-moments:

    cov(a_i, (R_l v_l)_j) = (C_ab[:, l] R_lᵀ)_ij,    var((R_l v_l)_j) = (R_l C_bb[l, l] R_lᵀ)_jj

with C_ab = cm.cov_ab() [n_a, n_b] (columns of layer l), C_bb = cm.cov_bb() [n_b, n_b]. Each draw uses
fresh matrices R_l from numpy default_rng([seed, draw, layer]); kind "gaussian-rows" (the paper's: N(0,1)
entries, each row scaled to unit norm, not orthogonal) or "orthogonal" (QR of a Gaussian, columns' signs
fixed so that R is Haar-distributed). With draw = partner index, a "gaussian-rows" R_l is the matrix
`maxima.rotation(d, seed, partner, l, "gaussian")` of the streaming pass (there in float32).

A rotated neuron of zero variance (R_j C_bb R_jᵀ <= 1e-12 of its value for uncorrelated inputs) or a
dead reference neuron gives NaN, which never wins a max; a row with no finite value gives NaN.

Permutation: `permutation_max(cm)` is the signed max over partner neurons of the correlation of a with the
partner's activations rolled by cm.shift tokens (`CoMoments.corr_shifted`): marginals kept, alignment broken.

Cost per draw: Σ_l (2·n_a·d_l² + 2·d_l³) flops, i.e. 2·n_a·n_b·d + 2·n_b·d² for equal layers of width d (the
d³ term, the rotated neurons' variances, once per partner layer when a `norms` dict is passed on from tile to
tile); memory one [n_a, d_l] float64 block plus copies of the [n_a, n_b] and [n_b, n_b] covariances.
"""

from __future__ import annotations

import numpy as np

from ..core.errors import UserError

KINDS = ("gaussian-rows", "orthogonal")
_ALIASES = {"gaussian": "gaussian-rows"}  # the streaming pass's name for the paper's matrix


def _kind(kind: str) -> str:
    k = _ALIASES.get(kind, kind)
    if k not in KINDS:
        raise UserError(f"unknown rotation kind {kind!r}; choose gaussian-rows (the paper's) or orthogonal")
    return k


def rotation_matrix(d: int, kind: str = "gaussian-rows", rng: np.random.Generator | None = None) -> np.ndarray:
    """float64 [d, d] random matrix R (rotated neurons u = R v) from `rng` (default: a fresh unseeded one).
    "gaussian-rows": G / ||G_row|| with G ~ N(0,1)^{d x d} (unit-norm rows, not orthogonal);
    "orthogonal": Q·diag(sign(diag(T))) with G = Q T (QR), so R Rᵀ = I."""
    kind = _kind(kind)
    rng = np.random.default_rng() if rng is None else rng
    r = rng.standard_normal((d, d))
    if kind == "gaussian-rows":
        return r / np.linalg.norm(r, axis=1, keepdims=True)
    q, t = np.linalg.qr(r)
    return q * np.sign(np.diag(t))


def draw_rng(seed: int, draw: int, layer: int) -> np.random.Generator:
    """The generator of partner layer `layer`'s matrix in draw `draw`: default_rng([seed, draw, layer])."""
    return np.random.default_rng([seed, draw, layer])


def _bounds(layer_sizes_b, n_b: int) -> np.ndarray:
    sizes = [int(s) for s in layer_sizes_b]
    if any(s < 1 for s in sizes) or sum(sizes) != n_b:
        raise UserError(f"layer sizes {sizes} must be positive and sum to the partner's {n_b} neurons")
    return np.cumsum([0, *sizes])


def _rotated_norm(cov_bb_l: np.ndarray, r: np.ndarray) -> np.ndarray:
    """[d] standard deviations of one layer's rotated neurons u = R v (NaN at zero variance): 2·d³ flops."""
    var_u = ((r @ cov_bb_l) * r).sum(1)  # [d] = diag(R C_bb Rᵀ)
    scale = (r * r) @ np.clip(np.diag(cov_bb_l), 0, None)  # the variance if the mixed neurons were uncorrelated
    return np.sqrt(np.where(var_u > 1e-12 * scale, var_u, np.nan))


def _rotated_layer(cov_ab_l: np.ndarray, cov_bb_l: np.ndarray, norm_a: np.ndarray, r: np.ndarray,
                   norm_u: np.ndarray | None = None) -> np.ndarray:
    """float64 [n_a, d] correlations with one layer's rotated neurons u = R v: cov_ab_l [n_a, d], cov_bb_l [d, d],
    norm_a [n_a] (sqrt of the reference variances, NaN if dead), r [d, d]; norm_u: `_rotated_norm(cov_bb_l, r)`
    when known (it depends on the partner layer only, not on the reference rows)."""
    norm_u = _rotated_norm(cov_bb_l, r) if norm_u is None else norm_u
    out = cov_ab_l @ r.T
    out /= norm_a[:, None]
    out /= norm_u
    return np.clip(out, -1.0, 1.0, out=out)


def _norm_a(cm) -> np.ndarray:
    """[n_a] reference standard deviations (ddof = 1), NaN where the variance is zero up to rounding
    (the rule of CoMoments.corr_ab)."""
    if cm.n < 2:
        cm.cov_aa()  # its UserError
    var_a = (np.diag(cm.aa) - cm.sum_a * cm.sum_a / cm.n) / (cm.n - 1)  # diag(cov_aa()), without the matrix
    var_a[var_a <= 1e-12 * np.diag(cm.aa) / max(cm.n - 1, 1)] = np.nan
    return np.sqrt(var_a)


def _norm_u(norms: dict | None, key, cov_bb_l: np.ndarray, r: np.ndarray) -> np.ndarray:
    """`_rotated_norm`, kept in `norms` under `key` (computed once per partner layer and matrix across the tiles
    of reference rows that share them; no dict: computed each time)."""
    if norms is None:
        return _rotated_norm(cov_bb_l, r)
    if key not in norms:
        norms[key] = _rotated_norm(cov_bb_l, r)
    return norms[key]


def rotated_corr(cm, layer_sizes_b, rotations: list[np.ndarray], norms: dict | None = None,
                 tag=None, layer0: int = 0) -> np.ndarray:
    """float64 [n_a, n_b] correlations of the reference neurons with the rotated partner neurons, the columns of
    partner layer l rotated by rotations[l] [d_l, d_l]. NaN for zero-variance neurons. `norms` (a dict), `tag`
    (what names the matrices) and `layer0` (cm's first partner layer): the rotated neurons' deviations kept
    across calls on the same partner layers (tiles of other reference rows)."""
    edges = _bounds(layer_sizes_b, cm.n_b)
    if len(rotations) != len(edges) - 1:
        raise UserError(f"rotated_corr(): {len(rotations)} matrices for {len(edges) - 1} partner layers")
    cov_ab, cov_bb, norm_a = cm.cov_ab(), cm.cov_bb(), _norm_a(cm)
    return np.concatenate([_rotated_layer(cov_ab[:, e0:e1], cov_bb[e0:e1, e0:e1], norm_a, r,
                                          _norm_u(norms, (tag, layer0 + l), cov_bb[e0:e1, e0:e1], r)
                                          if norms is not None else None)
                           for l, (e0, e1, r) in enumerate(zip(edges[:-1], edges[1:], rotations))], axis=1)


def _signed_max(corr: np.ndarray) -> np.ndarray:
    """[n_a] max over columns ignoring NaN (NaN where a whole row is NaN)."""
    return np.fmax.reduce(corr, axis=1) if corr.shape[1] else np.full(corr.shape[0], np.nan)


def rotated_max(cm, layer_sizes_b, draws: int = 1, kind: str = "gaussian-rows", seed: int = 0,
                layer0: int = 0, norms: dict | None = None) -> np.ndarray:
    """float64 [draws, n_a]: per draw k, fresh R_l = rotation_matrix(d_l, kind, draw_rng(seed, k, l)) for every
    partner layer l, and per reference neuron the signed max over all partner layers' rotated neurons of
    corr(a_i, (R_l b_l)_j), computed exactly from cm.cov_ab() and cm.cov_bb(). `layer0`: the partner's index of
    cm's first layer, when cm holds only some of its layers (a tile): the matrices are then those of the whole.
    `norms`: a dict that keeps the rotated neurons' deviations (2·d³ flops per layer and draw) for the next call
    on the same partner layers of the same partner (a tile of other reference rows); one dict per partner."""
    kind = _kind(kind)
    if isinstance(draws, bool) or not isinstance(draws, (int, np.integer)) or draws < 1:
        raise UserError(f"rotated_max(): draws must be a positive int, got {draws!r}")
    edges = _bounds(layer_sizes_b, cm.n_b)
    cov_ab, cov_bb, norm_a = cm.cov_ab(), cm.cov_bb(), _norm_a(cm)
    out = np.full((draws, cm.n_a), np.nan)
    for k in range(draws):
        for l, (e0, e1) in enumerate(zip(edges[:-1], edges[1:])):
            r = rotation_matrix(int(e1 - e0), kind, draw_rng(seed, k, layer0 + l))
            c_bb = cov_bb[e0:e1, e0:e1]
            norm_u = _norm_u(norms, (kind, seed, k, layer0 + l), c_bb, r) if norms is not None else None
            out[k] = np.fmax(out[k], _signed_max(_rotated_layer(cov_ab[:, e0:e1], c_bb, norm_a, r, norm_u)))
    return out


def permutation_max(cm) -> np.ndarray:
    """float64 [n_a]: per reference neuron the signed max over partner neurons of cm.corr_shifted() (the
    partner rolled by cm.shift tokens); NaN where no partner correlation is defined."""
    return _signed_max(cm.corr_shifted())

"""Layer-level representation similarity from covariance matrices (no activations held).

All functions take centred covariances of two sets of neurons x [n_x] and y [n_y] over the same tokens:
c_xx [n_x, n_x], c_yy [n_y, n_y], c_xy [n_x, n_y], with one common normaliser (1/N, 1/(N-1) or none, i.e.
sums of centred products: every measure here is invariant to it). A `CoMoments` accumulator, or
Xcᵀ Xc, Ycᵀ Yc, Xcᵀ Yc of centred activation matrices, gives them.

- `linear_cka` (Kornblith et al. 2019): ‖C_xy‖_F² / (‖C_xx‖_F ‖C_yy‖_F); in [0, 1], invariant to
  orthogonal transforms and isotropic scaling of either side.
- `svcca` (Raghu et al. 2017): each side reduced to the top eigen-directions of its covariance that
  explain `keep` of its variance (the SVD of the centred activations, done on the covariance), then CCA
  between the reduced sides: with whitening bases W_x = V_x Λ_x^{-1/2} (W_xᵀ C_xx W_x = I), the canonical
  correlations are the singular values of W_xᵀ C_xy W_y; min(k_x, k_y) of them, their mean is the score.
  Like any CCA it is biased upward when k is not small against the number of tokens N (independent
  layers score of order sqrt(k/N): 0.36 for k = 512, N = 3000), so compare layers at equal k and N.
- `layer_matrix`: a measure on every (layer of a, layer of b) pair of diagonal / cross blocks.

Rank deficiency (dead neurons, duplicated or collinear neurons): eigenvalues ≤ `rtol` · λ_max of a side
are treated as exactly zero and their directions dropped before whitening (a pseudo-inverse square root),
so a zero-variance neuron contributes nothing; default rtol = 1e-10, well above float64 round-off of an
eigen-decomposition (~n · 1e-16) but far below any direction that carries variance. Covariances
accumulated from float32 products carry ~1e-7 relative noise: pass rtol ≈ 1e-6 when keeping all
directions (keep=1.0) of such data, or spurious near-null directions can reach high canonical
correlations. A side with no variance at all (every neuron dead) gives NaN for both measures.
"""

from __future__ import annotations

import numpy as np

from ..core.errors import UserError

RTOL = 1e-10  # eigenvalues <= RTOL * largest eigenvalue count as zero (see the module docstring)


def _f64(*mats):
    return [np.asarray(m, dtype=np.float64) for m in mats]


def linear_cka(c_xx, c_yy, c_xy) -> float:
    """Linear CKA = ‖C_xy‖_F² / (‖C_xx‖_F · ‖C_yy‖_F), from centred covariances c_xx [n_x, n_x],
    c_yy [n_y, n_y], c_xy [n_x, n_y]. NaN when either side has no variance."""
    c_xx, c_yy, c_xy = _f64(c_xx, c_yy, c_xy)
    return _cka_pair(_cka_prep(c_xx), _cka_prep(c_yy), c_xy)


def _cka_prep(c):
    return float(np.linalg.norm(c))


def _cka_pair(nx, ny, c_xy):
    den = nx * ny
    return float(np.sum(c_xy * c_xy) / den) if den > 0 else float("nan")


def reduce_basis(c, keep=0.99, rtol: float = RTOL) -> np.ndarray:
    """Whitening basis W [n, k] of the top-k eigen-directions of covariance c [n, n]: W = V_k Λ_k^{-1/2},
    so Wᵀ c W = I_k. keep: a float in (0, 1], the share of variance (Σ of eigenvalues) to explain (k the
    fewest directions reaching it), or an int >= 1, the number of directions. Directions with eigenvalue
    <= rtol·λ_max are never kept (pseudo-inverse), so k <= numerical rank; k = 0 for a zero matrix."""
    c = np.asarray(c, dtype=np.float64)
    w, v = np.linalg.eigh((c + c.T) / 2)
    w, v = w[::-1], v[:, ::-1]  # descending
    top = w[0] if w.size else 0.0
    rank = int(np.sum(w > rtol * top)) if top > 0 else 0
    if isinstance(keep, (bool, np.bool_)):
        raise UserError(f"keep must be a share in (0, 1] or a count >= 1, not {keep!r}")
    if isinstance(keep, (int, np.integer)):
        if keep < 1:
            raise UserError(f"keep as a count must be >= 1, not {keep}")
        k = min(int(keep), rank)
    else:
        if not 0 < keep <= 1:
            raise UserError(f"keep as a share of variance must be in (0, 1], not {keep}")
        frac = np.cumsum(w[:rank]) / np.sum(w[:rank]) if rank else np.zeros(0)
        # fewest directions explaining `keep` (a tiny tolerance so keep=1.0 is not lost to round-off)
        k = min(int(np.searchsorted(frac, keep - 1e-12)) + 1, rank)
    return v[:, :k] / np.sqrt(w[:k])


def svcca(c_xx, c_yy, c_xy, keep=0.99, rtol: float = RTOL) -> tuple[float, np.ndarray]:
    """SVCCA from centred covariances [n_x,n_x], [n_y,n_y], [n_x,n_y]: each side reduced by `reduce_basis`
    (keep: share of variance in (0, 1], or a count), then CCA. Returns (mean canonical correlation,
    canonical correlations [min(k_x, k_y)] in descending order, clipped to [0, 1]); (NaN, []) when a side
    keeps no direction."""
    c_xx, c_yy, c_xy = _f64(c_xx, c_yy, c_xy)
    return _svcca_pair(reduce_basis(c_xx, keep, rtol), reduce_basis(c_yy, keep, rtol), c_xy)


def _svcca_prep(c, keep=0.99, rtol: float = RTOL):
    return reduce_basis(c, keep, rtol)


def _svcca_pair(wx, wy, c_xy):
    if wx.shape[1] == 0 or wy.shape[1] == 0:
        return float("nan"), np.zeros(0)
    rho = np.clip(np.linalg.svd(wx.T @ c_xy @ wy, compute_uv=False), 0.0, 1.0)
    return float(rho.mean()), rho


# measures whose per-side work (norm, eigen-decomposition) layer_matrix does once per layer, not per pair
_STAGES = {linear_cka: (_cka_prep, _cka_pair), svcca: (_svcca_prep, _svcca_pair)}


def _bounds(sizes, n, name):
    sizes = [int(s) for s in sizes]
    if any(s < 1 for s in sizes) or sum(sizes) != n:
        raise UserError(f"{name} {sizes} must be positive and sum to the covariance's size {n}")
    edges = np.concatenate([[0], np.cumsum(sizes)])
    return [slice(a, b) for a, b in zip(edges[:-1], edges[1:])]


def layer_matrix(cov_aa, cov_bb, cov_ab, sizes_a, sizes_b, fn=linear_cka, *, kept: tuple[dict, dict] | None = None,
                 layer0: tuple[int, int] = (0, 0), **kwargs) -> np.ndarray:
    """[len(sizes_a), len(sizes_b)] matrix of fn(c_xx, c_yy, c_xy, **kwargs) on every layer pair's blocks.

    cov_aa [n_a, n_a], cov_bb [n_b, n_b], cov_ab [n_a, n_b]; sizes_a / sizes_b: neurons per layer, in order
    (summing to n_a / n_b). fn returns a number, or a tuple whose first item is the number (as `svcca`).
    For `linear_cka` and `svcca` each layer's norm / eigen-decomposition is computed once, not per pair
    (same result as calling fn per pair); `kept` (a dict per side) keeps them across calls on tiles of the same
    layers, `layer0` (per side) numbering the first layer of these covariances."""
    cov_aa, cov_bb, cov_ab = _f64(cov_aa, cov_bb, cov_ab)
    ra = _bounds(sizes_a, cov_aa.shape[0], "sizes_a")
    rb = _bounds(sizes_b, cov_bb.shape[0], "sizes_b")
    if cov_ab.shape != (cov_aa.shape[0], cov_bb.shape[0]):
        raise UserError(f"cov_ab has shape {cov_ab.shape}, expected {(cov_aa.shape[0], cov_bb.shape[0])}")
    out = np.empty((len(ra), len(rb)))
    if fn in _STAGES:
        prep, pair = _STAGES[fn]
        kept = kept or ({}, {})

        def prepared(side, cov, sl, i):
            key = (fn.__name__, tuple(sorted(kwargs.items())), layer0[side] + i)
            if key not in kept[side]:
                kept[side][key] = prep(cov[sl, sl], **kwargs)
            return kept[side][key]

        pa = [prepared(0, cov_aa, sl, i) for i, sl in enumerate(ra)]
        pb = [prepared(1, cov_bb, sl, j) for j, sl in enumerate(rb)]
        call = lambda i, j: pair(pa[i], pb[j], cov_ab[ra[i], rb[j]])  # noqa: E731
    else:
        call = lambda i, j: fn(cov_aa[ra[i], ra[i]], cov_bb[rb[j], rb[j]], cov_ab[ra[i], rb[j]], **kwargs)  # noqa: E731
    for i in range(len(ra)):
        for j in range(len(rb)):
            v = call(i, j)
            out[i, j] = v[0] if isinstance(v, tuple) else v
    return out

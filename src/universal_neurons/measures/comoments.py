"""Full streaming co-moments of a reference activation matrix against one partner (small models only).

`CoMoments` accumulates, over token batches a [tokens, n_a] (reference neurons) and b [tokens, n_b] (a
partner's neurons, all layers side by side), in float64 numpy:

    n, sum_a = Σu [n_a], sum_b = Σv [n_b], aa = Σ u uᵀ [n_a, n_a], bb = Σ v vᵀ [n_b, n_b], ab = Σ u vᵀ [n_a, n_b]

of the shifted data u = a − shift_a, v = b − shift_b, where the per-neuron shift is fixed at the first
batch (its mean, or its exact value where the neuron is constant there), as in `correlation.StreamingPearson`:
centring before the products avoids the Σx² − N·x̄² cancellation. Every result (covariances,
correlations) is shift-invariant; the raw sums are sum_a + n·shift_a etc. Unlike StreamingPearson it keeps
the full within-model second moments aa and bb, which the rotation baseline (`nulls.rotated_max`) needs for
any number of fresh rotations without another pass.

Memory: 8·(n_a² + n_b² + n_a·n_b) bytes of moments (GPT2-small against one partner: n_a = n_b = 36,864,
about 33 GB — too much; a few thousand neurons per side is the intended size). A `shift` adds
8·n_a·n_b + 8·shift·(n_a + n_b) bytes, `block_rows` adds 4·(n_a·n_b + 2·n_a + 2·n_b) + 8 bytes per block.
Above `max_bytes` the constructor (or the block that would cross it) raises a one-line `UserError`.

Permutation baseline (`shift` = s > 0): `ab_shifted` = Σ_t u_t v_{(t − s) mod N}ᵀ, i.e. the partner's
activations rolled circularly by s tokens over the whole stream (`np.roll(b, s, axis=0)`): a_t is paired
with b_{t−s}, and the first s tokens of a with the last s tokens of b. Every b row is used exactly once,
so each neuron's marginal (sum, sum of squares) is unchanged and only the alignment is broken. The
stream keeps the first s rows of u and a rolling buffer of the last s rows of v; the wrap-around term
is added when `corr_shifted()` is asked for, so N (the stream length) need not be known in advance
(it must exceed s). For tokens from documents, choose s of several context lengths, so that shifted
pairs come from different documents.

Blocks (`block_rows` = k > 0): the stream's rows (tokens) are cut into contiguous blocks
[j·k, (j+1)·k) of input rows, independent of how they arrive in batches (the last block may be short).
Per block j it keeps, in float32 and of the shifted data: `block_ab` [n_blocks, n_a, n_b] = Σ u vᵀ,
`block_sum_a` [n_blocks, n_a], `block_sum_b` [n_blocks, n_b], `block_sq_a` [n_blocks, n_a] = Σ u²,
`block_sq_b` [n_blocks, n_b] and `block_n` [n_blocks] (int64 row counts), for a block bootstrap:
`corr_blocks(w)` gives the Pearson matrix of the blocks weighted by w [n_blocks] (w = ones: all data).
Choose k a multiple of the context length so that blocks hold whole sequences.

Zero-variance neurons (centred Σ(x − x̄)² <= 1e-12·Σu², i.e. rounding) get NaN correlations in their
row/column; covariances are plain numbers (0). Covariances use ddof = 1 like `np.cov`.
"""

from __future__ import annotations

import numpy as np

from ..core.atomic import write_npz
from ..core.errors import UserError

FORMAT = 1  # version of the saved file
_MOMENTS = ("shift_a", "shift_b", "sum_a", "sum_b", "aa", "bb", "ab")
_SHIFTED = ("ab_shift", "head_a", "tail_b")
_BLOCKS = ("block_ab", "block_sum_a", "block_sum_b", "block_sq_a", "block_sq_b", "block_n")


def _pearson(n, sum_a, sum_b, sq_a, sq_b, cross) -> np.ndarray:
    """float64 [n_a, n_b] Pearson from shifted sums: (P − S_a S_bᵀ/n) / sqrt((Q_a − S_a²/n)(Q_b − S_b²/n));
    NaN rows/columns for zero-variance neurons; clamped to [−1, 1]."""
    if n < 2:
        raise UserError(f"correlations need at least 2 tokens, got {n}; call update() with more data first")

    def norm(s, q):
        c = q - s * s / n
        return np.sqrt(np.where(c > 1e-12 * q, c, np.nan))

    r = cross - np.outer(sum_a, sum_b) / n
    r /= norm(sum_a, sq_a)[:, None]
    r /= norm(sum_b, sq_b)
    return np.clip(r, -1.0, 1.0, out=r)


def _within(m: np.ndarray, layers) -> np.ndarray:
    """m [n, n] with its entries between different layers (sizes `layers`) set to zero, in place; m if None."""
    if layers is not None:
        layer = np.repeat(np.arange(len(layers)), layers)
        m[layer[:, None] != layer[None, :]] = 0.0
    return m


def _own_plus(x: np.ndarray, y: np.ndarray, d: np.ndarray, s: np.ndarray, m: int, layers) -> np.ndarray:
    """x + y + d sᵀ + s dᵀ + m d dᵀ: one side's own moments of two streams, the second (its sums s over m tokens)
    moved by d to the first's shift; within the layers of sizes `layers` only when given, as they are
    accumulated (x and y are zero between layers)."""
    out = x + y
    edges = np.cumsum([0, *(layers if layers is not None else [len(d)])])
    for i0, i1 in zip(edges[:-1], edges[1:]):
        dd, ss = d[i0:i1], s[i0:i1]
        out[i0:i1, i0:i1] += np.outer(dd, ss) + np.outer(ss, dd) + m * np.outer(dd, dd)
    return out


def _as_float64(x, name: str, width: int) -> np.ndarray:
    """x (torch tensor or numpy array, floating) [tokens, width] -> float64 numpy array."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency of the project
        torch = None
    if torch is not None and isinstance(x, torch.Tensor):
        if not x.is_floating_point():
            raise UserError(f"update(): {name} has dtype {x.dtype}; pass floating-point activations")
        x = x.detach().to("cpu", torch.float64).numpy()
    else:
        x = np.asarray(x)
        if not np.issubdtype(x.dtype, np.floating):
            raise UserError(f"update(): {name} has dtype {x.dtype}; pass floating-point activations")
        x = x.astype(np.float64, copy=False)
    if x.ndim != 2 or x.shape[1] != width:
        raise UserError(f"update(): {name} must have shape [tokens, {width}], got {list(x.shape)}; "
                        "concatenate layers along the last dimension")
    return x


def first_batch_shift(lo, hi, mean) -> np.ndarray:
    """The per-neuron shift from the first rows' minimum, maximum and mean: the mean, or the exact value of a
    neuron constant there."""
    return np.where(lo == hi, lo, mean)


class CoMoments:
    """Full float64 co-moments of a [tokens, n_a] against b [tokens, n_b], accumulated over batches.

    CoMoments(n_a, n_b, shift=None, block_rows=None, max_bytes=2e9, center_a=None, center_b=None,
    products="float64", layers_a=None, layers_b=None) (centers: the per-neuron shifts, given instead of taken from
    the first batch; products: "float32" computes each batch's products of the shifted data in float32, as
    `StreamingPearson` does, and adds them into the float64 sums: about twice as fast on a CPU, correlations to
    about 1e-6; layers: the layer sizes of a side, whose within-model moments are then kept within layers only,
    zero between layers (not accumulated: what per-layer statistics need, at a fraction of the products));
    `update(a, b)`; results `cov_aa()` [n_a, n_a], `cov_bb()` [n_b, n_b], `cov_ab()` [n_a, n_b], `corr_ab()`
    [n_a, n_b], `corr_shifted()` [n_a, n_b], `corr_blocks(w)` [n_a, n_b]; `save(path)` / `CoMoments.load(path)`.
    See the module docstring.
    """

    def __init__(self, n_a: int, n_b: int, *, shift: int | None = None, block_rows: int | None = None,
                 max_bytes: float = 2e9, center_a=None, center_b=None, products: str = "float64",
                 layers_a=None, layers_b=None):
        for name, v in (("n_a", n_a), ("n_b", n_b)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise UserError(f"CoMoments: {name} must be a positive int, got {v!r}; pass the neuron count")
        for name, v in (("shift", shift), ("block_rows", block_rows)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1):
                raise UserError(f"CoMoments: {name} must be a positive int or None, got {v!r}")
        self.n_a, self.n_b = int(n_a), int(n_b)
        self.shift = None if shift is None else int(shift)
        self.block_rows = None if block_rows is None else int(block_rows)
        self.max_bytes = float(max_bytes)
        if products not in ("float64", "float32"):
            raise UserError(f"CoMoments: products={products!r}; choose float64 (exact) or float32 (faster)")
        self.products = products
        self.layers_a, self.layers_b = (None if x is None else [int(d) for d in x] for x in (layers_a, layers_b))
        for name, x, n in (("layers_a", self.layers_a, self.n_a), ("layers_b", self.layers_b, self.n_b)):
            if x is not None and (sum(x) != n or min(x) < 1):
                raise UserError(f"CoMoments: {name}={x} must be positive layer sizes adding up to {n}")
        need = self.nbytes_needed(self.n_a, self.n_b, self.shift)
        if need > self.max_bytes:
            raise UserError(f"CoMoments: {self.n_a} x {self.n_b} neurons need {need / 1e9:.3g} GB of float64 "
                            f"moments (8*(n_a^2+n_b^2+n_a*n_b) bytes, plus the shift buffers), above max_bytes = "
                            f"{self.max_bytes / 1e9:.3g} GB; use fewer neurons (correlation.StreamingPearson "
                            "scales to large models) or raise max_bytes")
        self.n = 0
        z = np.zeros
        self.shift_a, self.shift_b = z(self.n_a), z(self.n_b)  # per-neuron shift fixed at the first batch
        self.centred = center_a is not None  # the shift given (e.g. computed beforehand over the same first rows)
        if self.centred:
            self.shift_a = np.asarray(center_a, dtype=np.float64).reshape(self.n_a).copy()
            self.shift_b = np.asarray(center_b, dtype=np.float64).reshape(self.n_b).copy()
        self.sum_a, self.sum_b = z(self.n_a), z(self.n_b)  # Σu [n_a], Σv [n_b]
        self.aa, self.bb = z((self.n_a, self.n_a)), z((self.n_b, self.n_b))  # Σ u uᵀ, Σ v vᵀ
        self.ab = z((self.n_a, self.n_b))  # Σ u vᵀ
        if self.shift:
            self.ab_shift = z((self.n_a, self.n_b))  # Σ_{t>=s} u_t v_{t-s}ᵀ (the wrap-around term added on demand)
            self.head_a = z((0, self.n_a))  # the first min(n, s) rows of u
            self.tail_b = z((0, self.n_b))  # the last min(n, s) rows of v
        self.n_blocks = 0
        if self.block_rows:
            self._block_arrays(0)

    @staticmethod
    def nbytes_needed(n_a: int, n_b: int, shift: int | None = None) -> int:
        """Bytes of the float64 moments: 8·(n_a² + n_b² + n_a·n_b), plus 8·n_a·n_b + 8·shift·(n_a + n_b)
        with a shift (blocks not included: 4·(n_a·n_b + 2·n_a + 2·n_b) + 8 bytes each)."""
        need = 8 * (n_a * n_a + n_b * n_b + n_a * n_b)
        if shift:
            need += 8 * n_a * n_b + 8 * shift * (n_a + n_b)
        return need

    @staticmethod
    def block_nbytes(n_a: int, n_b: int) -> int:
        """Bytes of one block of the bootstrap: 4·(n_a·n_b + 2·n_a + 2·n_b) + 8."""
        return 4 * (n_a * n_b + 2 * n_a + 2 * n_b) + 8

    def _block_bytes(self) -> int:
        return self.block_nbytes(self.n_a, self.n_b)

    def _block_arrays(self, cap: int) -> None:
        """(Re)allocate the block arrays with capacity `cap`, keeping the first n_blocks."""
        old = {k: getattr(self, "_" + k, None) for k in _BLOCKS}
        shapes = {"block_ab": (self.n_a, self.n_b), "block_sum_a": (self.n_a,), "block_sum_b": (self.n_b,),
                  "block_sq_a": (self.n_a,), "block_sq_b": (self.n_b,), "block_n": ()}
        for k, shape in shapes.items():
            arr = np.zeros((cap, *shape), dtype=np.int64 if k == "block_n" else np.float32)
            if old[k] is not None:
                arr[: self.n_blocks] = old[k][: self.n_blocks]
            setattr(self, "_" + k, arr)

    def _open_block(self, j: int) -> None:
        """Make block j exist (blocks are opened in order)."""
        cap = self._block_ab.shape[0]
        if j >= cap:
            base, per = self.nbytes_needed(self.n_a, self.n_b, self.shift), self._block_bytes()
            if base + (j + 1) * per > self.max_bytes:
                raise UserError(f"CoMoments: block {j} of {self.block_rows} rows would bring the memory to "
                                f"{(base + (j + 1) * per) / 1e9:.3g} GB, above max_bytes = {self.max_bytes / 1e9:.3g} "
                                "GB; use larger blocks, fewer tokens or raise max_bytes")
            room = self.max_bytes - base  # capacity doubles, but never past the budget (none: max_bytes = inf)
            fits = int(room // per) if np.isfinite(room) else 1 << 40
            self._block_arrays(max(j + 1, min(max(2 * cap, j + 1, 4), fits)))
        self.n_blocks = max(self.n_blocks, j + 1)

    # ---- accumulation -------------------------------------------------------------------------------
    def update(self, a, b, gram_a: np.ndarray | None = None) -> np.ndarray | None:
        """Add a batch: a [tokens, n_a], b [tokens, n_b] (torch tensors or numpy arrays, floating point).
        Returns the batch's Σ u uᵀ, which another CoMoments of the same reference columns and the same shift
        (the same `center_a`) takes as `gram_a` instead of computing it again (None for an empty batch)."""
        a = _as_float64(a, "a", self.n_a)
        b = _as_float64(b, "b", self.n_b)
        if a.shape[0] != b.shape[0]:
            raise UserError(f"update(): a has {a.shape[0]} tokens but b has {b.shape[0]}; pass the same tokens to both")
        t = a.shape[0]
        if t == 0:
            return None
        if not (np.isfinite(a).all() and np.isfinite(b).all()):
            raise UserError("update(): the batch contained non-finite activations (NaN or inf); "
                            "drop those tokens or fix the activations")
        if self.n == 0 and not self.centred:
            for x, name in ((a, "shift_a"), (b, "shift_b")):
                setattr(self, name, first_batch_shift(x.min(0), x.max(0), x.mean(0)))
        u, v = a - self.shift_a, b - self.shift_b
        self.sum_a += u.sum(0)
        self.sum_b += v.sum(0)
        # the products' operands, converted once: float64 as they are, or float32 copies
        pu, pv = (u, v) if self.products == "float64" else (u.astype(np.float32), v.astype(np.float32))
        if gram_a is None:
            gram_a = self._gram(pu, self.layers_a)
        elif gram_a.shape != (self.n_a, self.n_a):
            raise UserError(f"update(): gram_a must have shape [{self.n_a}, {self.n_a}], got {list(gram_a.shape)}; "
                            "pass what update() of the same reference columns returned")
        self.aa += gram_a
        self.bb += self._gram(pv, self.layers_b)
        if self.shift:
            self._update_shifted(u, v, pu, pv)
        if self.block_rows:
            self._update_blocks(u, v, pu, pv)  # adds to ab too: each block's product is computed once
        else:
            self.ab += self._mm(pu, pv)
        self.n += t
        return gram_a

    def _mm(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """xᵀ y [p, q] of rows x [t, p], y [t, q] (the products' dtype: float64 numpy, or float32 with torch)."""
        if self.products == "float64":
            return x.T @ y
        import torch

        from .correlation import gram

        x32 = torch.from_numpy(x)
        return (gram(x32) if y is x else torch.mm(x32.T, torch.from_numpy(y))).numpy()

    def _gram(self, x: np.ndarray, layers) -> np.ndarray:
        """xᵀ x, or only its within-layer blocks (zero between layers) when `layers` (sizes) is given."""
        if layers is None:
            return self._mm(x, x)
        out = np.zeros((x.shape[1], x.shape[1]), dtype=x.dtype)
        for e0, e1 in zip(np.cumsum([0, *layers[:-1]]), np.cumsum(layers)):
            part = np.ascontiguousarray(x[:, e0:e1])
            out[e0:e1, e0:e1] = self._mm(part, part)
        return out

    def _update_shifted(self, u: np.ndarray, v: np.ndarray, pu: np.ndarray, pv: np.ndarray) -> None:
        """Pair u rows (global index g = n + i) with v rows g − s, for g >= s; keep the head of u and the
        tail of v for the wrap-around term (pu, pv: u and v in the products' dtype)."""
        s, n, t = self.shift, self.n, u.shape[0]
        m = self.tail_b.shape[0]  # = min(n, s); tail_b[k] is global row n − m + k
        g0 = max(s - n, 0)  # first local row of u whose partner row exists
        # local row i pairs with global row n + i − s: in the kept tail for i < s, else v[i − s] (no copy of v)
        if g0 < min(s, t):
            tail = self.tail_b[g0 - s + m: min(s, t) - s + m]
            self.ab_shift += self._mm(pu[g0:min(s, t)], tail if pv is v else tail.astype(pv.dtype))
        if s < t:
            self.ab_shift += self._mm(pu[s:], pv[:t - s])
        if n < s:
            self.head_a = np.concatenate([self.head_a, u[: s - n]])
        self.tail_b = v[t - s:].copy() if t >= s else np.concatenate([self.tail_b, v])[-s:]

    def _update_blocks(self, u: np.ndarray, v: np.ndarray, pu: np.ndarray, pv: np.ndarray) -> None:
        """Add each contiguous slice of the batch into its block (global rows [j·k, (j+1)·k)) and into ab."""
        k, n, t = self.block_rows, self.n, u.shape[0]
        i = 0
        while i < t:
            j = (n + i) // k
            e = min(t, (j + 1) * k - n)
            self._open_block(j)
            uu, vv = u[i:e], v[i:e]
            prod = self._mm(pu[i:e], pv[i:e])
            self.ab += prod
            self._block_ab[j] += prod
            self._block_sum_a[j] += uu.sum(0)
            self._block_sum_b[j] += vv.sum(0)
            self._block_sq_a[j] += (uu * uu).sum(0)
            self._block_sq_b[j] += (vv * vv).sum(0)
            self._block_n[j] += e - i
            i = e

    # ---- blocks (views of the first n_blocks) -------------------------------------------------------
    @property
    def block_ab(self) -> np.ndarray:  # float32 [n_blocks, n_a, n_b], Σ u vᵀ per block
        return self._blocks("block_ab")

    @property
    def block_sum_a(self) -> np.ndarray:  # float32 [n_blocks, n_a], Σ u
        return self._blocks("block_sum_a")

    @property
    def block_sum_b(self) -> np.ndarray:  # float32 [n_blocks, n_b], Σ v
        return self._blocks("block_sum_b")

    @property
    def block_sq_a(self) -> np.ndarray:  # float32 [n_blocks, n_a], Σ u²
        return self._blocks("block_sq_a")

    @property
    def block_sq_b(self) -> np.ndarray:  # float32 [n_blocks, n_b], Σ v²
        return self._blocks("block_sq_b")

    @property
    def block_n(self) -> np.ndarray:  # int64 [n_blocks], rows per block
        return self._blocks("block_n")

    def _blocks(self, k: str) -> np.ndarray:
        if not self.block_rows:
            raise UserError(f"{k}: this CoMoments keeps no blocks; build it with block_rows=<rows per block>")
        return getattr(self, "_" + k)[: self.n_blocks]

    def corr_blocks(self, weights) -> np.ndarray:
        """float64 [n_a, n_b] Pearson matrix of the blocks weighted by `weights` [n_blocks] (e.g. bootstrap
        counts; ones reproduce corr_ab() to float32 precision): every per-block sum is multiplied by its weight."""
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (self.n_blocks,):
            raise UserError(f"corr_blocks(): weights must have shape [{self.n_blocks}] (one per block), "
                            f"got {list(w.shape)}")
        cross = np.zeros((self.n_a, self.n_b))
        for j in np.flatnonzero(w):  # float64 sums, one block at a time (no float64 copy of all blocks)
            cross += np.multiply(self.block_ab[j], w[j], dtype=np.float64)
        sums = [w @ getattr(self, k).astype(np.float64)
                for k in ("block_sum_a", "block_sum_b", "block_sq_a", "block_sq_b")]
        return _pearson(float(w @ self.block_n), sums[0], sums[1], sums[2], sums[3], cross)

    def corr_blocks_max(self, weights, max_bytes: float = 2.5e8) -> tuple[np.ndarray, np.ndarray]:
        """(signed [D, n_a], absolute [D, n_a]): per row d of `weights` [D, n_blocks], the max over the partner
        neurons of corr_blocks(weights[d]) and of its absolute value (NaN where a row has no finite entry), for
        all D weightings at once. The blocks are read once, in slabs of reference rows whose D weighted
        matrices take about `max_bytes`: D·n_blocks·n_a·n_b multiply-adds and no [D, n_a, n_b] array."""
        import torch

        w = np.asarray(weights, dtype=np.float64)
        if w.ndim != 2 or w.shape[1] != self.n_blocks:
            raise UserError(f"corr_blocks_max(): weights must have shape [draws, {self.n_blocks}] (one per block), "
                            f"got {list(w.shape)}")
        n = w @ self.block_n
        if (n < 2).any():
            raise UserError(f"correlations need at least 2 tokens, a weighting gives {n.min():g}; "
                            "give every weighting some blocks")
        sum_a, sum_b, sq_a, sq_b = (w @ getattr(self, k).astype(np.float64)
                                    for k in ("block_sum_a", "block_sum_b", "block_sq_a", "block_sq_b"))

        def inv_norm(s, q):  # 1 / the deviation, by the rule of _pearson (NaN at zero variance)
            c = q - s * s / n[:, None]
            return 1.0 / np.sqrt(np.where(c > 1e-12 * q, c, np.nan))

        inv_a, inv_b = inv_norm(sum_a, sq_a), inv_norm(sum_b, sq_b)
        dead_b = np.isnan(inv_b)
        draws = len(w)
        # max_j r_ij = inv_a_i · max_j (c_ij · inv_b_j) with c the centred cross sums: the row scale and the
        # clip to [-1, 1] come after the max, |r| from the max and the min; torch runs it on every core
        tw, tb = torch.from_numpy(w), torch.from_numpy(np.nan_to_num(inv_b))[:, None, :]
        mean_b = torch.from_numpy(sum_b / n[:, None])[:, None, :]
        mask = torch.from_numpy(dead_b)[:, None, :] if dead_b.any() else None
        hi, lo = np.empty((draws, self.n_a)), np.empty((draws, self.n_a))
        step = max(1, int(max_bytes // (8 * (draws + self.n_blocks) * self.n_b)))
        for i0 in range(0, self.n_a, step):
            i1 = min(i0 + step, self.n_a)
            x = torch.from_numpy(self.block_ab[:, i0:i1]).to(torch.float64).reshape(self.n_blocks, -1)
            r = (tw @ x).reshape(draws, i1 - i0, self.n_b)
            del x
            r.baddbmm_(torch.from_numpy(sum_a[:, i0:i1, None].copy()), mean_b, alpha=-1.0)
            r.mul_(tb)
            if mask is not None:
                r.masked_fill_(mask, -np.inf)
                hi[:, i0:i1] = r.amax(2).numpy()
                r.masked_fill_(mask, np.inf)
                lo[:, i0:i1] = r.amin(2).numpy()
            else:
                mn, mx = torch.aminmax(r, dim=2)
                hi[:, i0:i1], lo[:, i0:i1] = mx.numpy(), mn.numpy()
        none = dead_b.all(1)[:, None] | np.isnan(inv_a)  # no finite entry in the row
        signed = np.where(none, np.nan, np.clip(hi * inv_a, -1.0, 1.0))
        absolute = np.where(none, np.nan, np.maximum(signed, np.clip(-lo * inv_a, -1.0, 1.0)))
        return signed, absolute

    # ---- results ------------------------------------------------------------------------------------
    def _cov(self, sx, sy, p) -> np.ndarray:
        if self.n < 2:
            raise UserError(f"covariances need at least 2 tokens, got {self.n}; call update() with more data first")
        return (p - np.outer(sx, sy) / self.n) / (self.n - 1)

    def plus(self, other: CoMoments) -> CoMoments:
        """The moments of both streams' tokens together (this one's shift kept; no permutation or blocks): the
        other's shifted sums moved to this shift, u = u' + d with d = other.shift_a − shift_a (likewise v)."""
        if (other.n_a, other.n_b) != (self.n_a, self.n_b):
            raise UserError(f"plus(): shapes differ ({other.n_a}x{other.n_b} vs {self.n_a}x{self.n_b}); add the "
                            "co-moments of the same neurons")
        out = CoMoments(self.n_a, self.n_b, max_bytes=float("inf"), layers_a=self.layers_a, layers_b=self.layers_b)
        if not self.n or not other.n:
            src = self if self.n else other
            for k in _MOMENTS:
                setattr(out, k, getattr(src, k).copy())
            out.n = src.n
            return out
        da, db, m = other.shift_a - self.shift_a, other.shift_b - self.shift_b, other.n
        sa, sb = other.sum_a, other.sum_b
        out.shift_a, out.shift_b = self.shift_a.copy(), self.shift_b.copy()
        out.sum_a, out.sum_b = self.sum_a + sa + m * da, self.sum_b + sb + m * db
        out.aa = _own_plus(self.aa, other.aa, da, sa, m, self.layers_a)
        out.bb = _own_plus(self.bb, other.bb, db, sb, m, self.layers_b)
        out.ab = self.ab + other.ab + np.outer(da, sb) + np.outer(sa, db) + m * np.outer(da, db)
        out.n = self.n + m
        return out

    def cov_aa(self) -> np.ndarray:
        """float64 [n_a, n_a] covariance of the reference neurons (ddof = 1, as np.cov; zero between layers when
        `layers_a` is given)."""
        return _within(self._cov(self.sum_a, self.sum_a, self.aa), self.layers_a)

    def cov_bb(self) -> np.ndarray:
        """float64 [n_b, n_b] covariance of the partner neurons (ddof = 1; zero between layers with `layers_b`)."""
        return _within(self._cov(self.sum_b, self.sum_b, self.bb), self.layers_b)

    def cov_ab(self) -> np.ndarray:
        """float64 [n_a, n_b] cross-covariance cov(a_i, b_j) (ddof = 1)."""
        return self._cov(self.sum_a, self.sum_b, self.ab)

    def corr_ab(self) -> np.ndarray:
        """float64 [n_a, n_b] Pearson correlation; NaN in the rows/columns of zero-variance neurons."""
        return _pearson(self.n, self.sum_a, self.sum_b, np.diag(self.aa), np.diag(self.bb), self.ab.copy())

    def corr_shifted(self) -> np.ndarray:
        """float64 [n_a, n_b] Pearson correlation of a with b rolled by `shift` tokens (np.roll(b, shift, 0));
        the marginals are those of a and b, so only the alignment differs from corr_ab()."""
        if not self.shift:
            raise UserError("corr_shifted(): this CoMoments has no permutation baseline; build it with shift=<tokens>")
        if self.n <= self.shift:
            raise UserError(f"corr_shifted(): {self.n} tokens seen, the shift is {self.shift}; "
                            "feed more tokens than the shift")
        cross = self.ab_shift + self.head_a.T @ self.tail_b  # wrap: a_t (t < s) with b_{N-s+t}
        return _pearson(self.n, self.sum_a, self.sum_b, np.diag(self.aa), np.diag(self.bb), cross)

    # ---- files --------------------------------------------------------------------------------------
    def save(self, path) -> None:
        """Write the state to `path` (numpy .npz, no pickles), atomically (temporary file, then rename)."""
        meta = [FORMAT, self.n_a, self.n_b, self.n, self.shift or 0, self.block_rows or 0, self.n_blocks]
        arrays = {"meta": np.array(meta, dtype=np.int64), **{k: getattr(self, k) for k in _MOMENTS}}
        if self.shift:
            arrays |= {k: getattr(self, k) for k in _SHIFTED}
        if self.block_rows:
            arrays |= {k: getattr(self, k) for k in _BLOCKS}
        write_npz(path, arrays)

    @classmethod
    def load(cls, path, max_bytes: float = 2e9) -> CoMoments:
        """Read a state written by `save` (allow_pickle=False); updates can continue where they stopped."""
        try:
            with np.load(path, allow_pickle=False) as z:
                d = {k: z[k] for k in z.files}
        except (OSError, ValueError) as e:
            raise UserError(f"CoMoments.load(): cannot read {path}: {e}; pass a file written by CoMoments.save") from e
        if "meta" not in d or d["meta"].shape != (7,) or int(d["meta"][0]) != FORMAT:
            raise UserError(f"CoMoments.load(): {path} is not a CoMoments file of format {FORMAT}; save it again")
        _, n_a, n_b, n, shift, block_rows, n_blocks = (int(x) for x in d["meta"])
        cm = cls(n_a, n_b, shift=shift or None, block_rows=block_rows or None, max_bytes=max_bytes)
        keys = list(_MOMENTS) + (list(_SHIFTED) if shift else [])
        for k in keys:
            ref = getattr(cm, k)
            growing = k in ("head_a", "tail_b")  # [min(n, shift), width]
            if k not in d or d[k].shape[1:] != ref.shape[1:] or (not growing and d[k].shape != ref.shape):
                raise UserError(f"CoMoments.load(): {path} has a missing or misshapen '{k}'; the file is corrupt")
            setattr(cm, k, d[k].astype(np.float64))
        if block_rows:
            if n_blocks:
                cm._open_block(n_blocks - 1)
            for k in _BLOCKS:
                ref = getattr(cm, k)
                if k not in d or d[k].shape != ref.shape:
                    raise UserError(f"CoMoments.load(): {path} has a missing or misshapen '{k}'; the file is corrupt")
                ref[...] = d[k]
        cm.n = n
        return cm

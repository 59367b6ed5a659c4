"""Streaming Pearson correlation between two sets of neurons (paper section 2).

`StreamingPearson` accumulates, over batches of tokens, the float64 sufficient statistics of
u = x - c_a and v = y - c_b, where c is a per-neuron shift fixed at the first batch (its mean, or its
exact value where the neuron is constant there):

    sum_a = Σu, sum_sq_a = Σu², sum_b = Σv, sum_sq_b = Σv², cross = Σu vᵀ   (float64)

Each batch costs one float32 matmul [n_a x T] @ [T x n_b] (true fp32: TF32 is switched off on GPU),
whose result is added into the float64 `cross` at once. Because the data are centred before the
product, the classic Σx² − N·x̄² cancellation does not occur: the result matches a float64
computation to ~1e-7 even when a neuron's mean is 1,000 times its standard deviation. This assumes
the first batch is a fair sample of the data (shuffled tokens, a few thousand of them).

Recommended batch: T >= 4096 tokens (8192-16384 is better). Per batch the product costs
2·n_a·n_b·T flops; the rest is memory-bound: a few passes over the T·(n_a + n_b) inputs (shift, sums)
and one float64 accumulate of n_a·n_b, which small batches cannot amortise. Measured on 2 CPU cores
with T = 8192 (scripts/bench_correlation.py): ~80% of a bare matmul's GFLOP/s at 2048 x 2048 neurons,
more for larger n (the per-token work shrinks as 1/n). Memory: 8·n_a·n_b bytes of statistics plus
4·(T·(n_a + n_b) + n_a·n_b) bytes of float32 work buffers, kept between batches.

`RunningMax` reduces correlation tiles (a block of rows by a block of columns) to a per-row max and
global argmax, so a caller that splits the matrix into tiles never holds all of it.
"""

from __future__ import annotations

import contextlib

import torch

from ..core.errors import UserError

_STATS = ("shift_a", "shift_b", "sum_a", "sum_sq_a", "sum_b", "sum_sq_b", "cross")


@contextlib.contextmanager
def _ieee_fp32(device: torch.device):
    """Run CUDA float32 matmuls in real fp32 (no TF32) inside the block; restore the setting after."""
    if device.type != "cuda":
        yield
        return
    m = torch.backends.cuda.matmul
    name, value = ("fp32_precision", "ieee") if hasattr(m, "fp32_precision") else ("allow_tf32", False)
    old = getattr(m, name)
    setattr(m, name, value)
    try:
        yield
    finally:
        setattr(m, name, old)


def gram(u: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """uᵀu [n, n] of u [t, n]: on a CPU in float32 by BLAS's symmetric rank-k update (half the products of a
    matrix product), else a matrix product; into `out` when given."""
    if u.device.type != "cpu" or u.dtype != torch.float32:
        return torch.mm(u.T, u, out=out)
    from scipy.linalg.blas import ssyrk

    upper = torch.from_numpy(ssyrk(1.0, u.numpy().T, trans=0))  # [n, n], zero below the diagonal
    full = torch.add(upper, upper.T, out=out)
    full.diagonal().mul_(0.5)
    return full


def _add_fp32_(dst: torch.Tensor, src: torch.Tensor) -> None:
    """dst (float64) += src (float32). On CPU in row blocks of <= 2^15 elements: a whole-matrix mixed
    add first builds a full float64 copy (page faults, ~4x slower), and blocks this small stay on one
    thread (no OpenMP barrier per block)."""
    if dst.device.type != "cpu":
        dst += src
        return
    step = max(1, 2**15 // dst.shape[1])
    for i in range(0, dst.shape[0], step):
        dst[i:i + step] += src[i:i + step]


class StreamingPearson:
    """Pearson correlation of n_a neurons against n_b neurons, accumulated over token batches.

    `update(x, y)` with x [tokens, n_a], y [tokens, n_b]; `correlation()` -> float64 [n_a, n_b];
    `merge`, `all_reduce_` combine shards exactly; `state_dict`/`load_state_dict` checkpoint.
    """

    def __init__(self, n_a: int, n_b: int, device: str | torch.device = "cpu"):
        for name, v in (("n_a", n_a), ("n_b", n_b)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise UserError(f"StreamingPearson: {name} must be a positive int, got {v!r}; pass the neuron count")
        self.n_a, self.n_b, self.device = n_a, n_b, torch.device(device)
        self.n = 0  # tokens seen
        f32, f64 = dict(dtype=torch.float32, device=self.device), dict(dtype=torch.float64, device=self.device)
        self.shift_a, self.shift_b = torch.zeros(n_a, **f32), torch.zeros(n_b, **f32)  # [n_a], [n_b]
        self.sum_a, self.sum_sq_a = torch.zeros(n_a, **f64), torch.zeros(n_a, **f64)  # [n_a]
        self.sum_b, self.sum_sq_b = torch.zeros(n_b, **f64), torch.zeros(n_b, **f64)  # [n_b]
        self.cross = torch.zeros(n_a, n_b, **f64)  # [n_a, n_b]
        self._work: dict[str, torch.Tensor] = {}  # reusable fp32 buffers (fresh allocations page-fault)

    # ---- accumulation -------------------------------------------------------------------------
    @torch.no_grad()
    def update(self, x: torch.Tensor, y) -> None:
        """Add a batch: x [tokens, n_a], y [tokens, n_b] (or a list of tensors [tokens, n_k] side by side, read
        into the work buffer without a concatenated copy), float16/bfloat16/float32, any device."""
        self._check(x, "x", self.n_a)
        if isinstance(y, (list, tuple)):
            for piece in y:
                self._check(piece, "y", piece.shape[1] if isinstance(piece, torch.Tensor) and piece.dim() == 2 else -1)
            if sum(piece.shape[1] for piece in y) != self.n_b or len({piece.shape[0] for piece in y}) != 1:
                raise UserError(f"update(): the pieces of y have shapes {[list(p.shape) for p in y]}; pass pieces "
                                f"with the same tokens and {self.n_b} columns in all")
            y = y[0] if len(y) == 1 else y
        else:
            self._check(y, "y", self.n_b)
        t_y = (y[0] if isinstance(y, (list, tuple)) else y).shape[0]
        if x.shape[0] != t_y:
            raise UserError(f"update(): x has {x.shape[0]} tokens but y has {t_y}; pass the same tokens to both")
        t = x.shape[0]
        if t == 0:
            return
        same = y is x  # one neuron group against itself (a gram): one shifted copy, a symmetric product
        u, shift_a = self._shifted("a", x, self.shift_a)  # [t, n_a]
        v, shift_b = (u, shift_a) if same else self._shifted("b", y, self.shift_b)  # [t, n_b]
        s_a, s_b = u.sum(0), v.sum(0)
        p = self._buffer("p", self.n_a * self.n_b).view(self.n_a, self.n_b)
        with _ieee_fp32(self.device):
            if same:
                gram(u, out=p)
            else:
                torch.mm(u.T, v, out=p)  # [n_a, n_b] = Σ u vᵀ, one fp32 product
        q_a = u.square_().sum(0)  # work buffers are free after the product
        q_b = q_a if same else v.square_().sum(0)
        if not torch.isfinite(torch.cat([s_a, s_b, q_a, q_b])).all():
            raise UserError("update(): the batch contained non-finite activations (NaN or inf); "
                            "drop those tokens or fix the activations")
        self.shift_a, self.shift_b = shift_a, shift_b
        _add_fp32_(self.cross, p)
        self.sum_a += s_a
        self.sum_sq_a += q_a
        self.sum_b += s_b
        self.sum_sq_b += q_b
        self.n += t

    def _check(self, x, name: str, n: int) -> None:
        if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[1] != n:
            got = list(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise UserError(f"update(): {name} must be a tensor of shape [tokens, {n}], got {got}; "
                            "concatenate layers along the last dimension")
        if not x.is_floating_point():
            raise UserError(f"update(): {name} has dtype {x.dtype}; pass float16, bfloat16 or float32 activations")

    def _buffer(self, key: str, numel: int) -> torch.Tensor:
        buf = self._work.get(key)
        if buf is None or buf.numel() < numel:
            buf = self._work[key] = torch.empty(numel, dtype=torch.float32, device=self.device)
        return buf[:numel]

    def _shifted(self, key: str, x, shift: torch.Tensor):
        """Return (x - shift as fp32 [t, n] in a work buffer, shift); the first batch sets the shift. x: a tensor,
        or a list of tensors side by side."""
        pieces = list(x) if isinstance(x, (list, tuple)) else [x]
        t, n = pieces[0].shape[0], sum(p.shape[1] for p in pieces)
        u = self._buffer(key, t * n).view(t, n)
        c = 0
        for p in pieces:
            cols = slice(c, c + p.shape[1])
            if self.n == 0:
                u[:, cols].copy_(p)
            elif p.dtype == torch.float32 and p.device == u.device:
                torch.sub(p, shift[cols], out=u[:, cols])
            else:
                u[:, cols].copy_(p).sub_(shift[cols])  # copy_ casts fast; a mixed-dtype sub does not
            c += p.shape[1]
        if self.n == 0:
            lo, hi = torch.aminmax(u, dim=0)
            shift = torch.where(lo == hi, lo, u.mean(0))  # exact value for constant neurons -> zero variance
            u.sub_(shift)
        return u, shift

    # ---- combination --------------------------------------------------------------------------
    def _recentre(self, shift_a: torch.Tensor, shift_b: torch.Tensor) -> None:
        """Re-express the statistics around new shifts (exact: u' = u + d with d = old - new)."""
        d_a = self.shift_a.double() - shift_a.to(self.device, torch.float64)
        d_b = self.shift_b.double() - shift_b.to(self.device, torch.float64)
        n = self.n
        new_sum_b = self.sum_b + n * d_b
        self.cross.addr_(d_a, new_sum_b).addr_(self.sum_a, d_b)  # Σ(u+d_a)(v+d_b)ᵀ
        self.sum_sq_a += d_a * (2 * self.sum_a + n * d_a)
        self.sum_sq_b += d_b * (2 * self.sum_b + n * d_b)
        self.sum_a += n * d_a
        self.sum_b = new_sum_b
        self.shift_a = shift_a.to(self.device, torch.float32).clone()
        self.shift_b = shift_b.to(self.device, torch.float32).clone()

    @torch.no_grad()
    def merge(self, other: StreamingPearson) -> StreamingPearson:
        """Add another accumulator's statistics (another shard of tokens) into this one; returns self."""
        if not isinstance(other, StreamingPearson) or (other.n_a, other.n_b) != (self.n_a, self.n_b):
            got = (other.n_a, other.n_b) if isinstance(other, StreamingPearson) else type(other).__name__
            raise UserError(f"merge(): expected a StreamingPearson of shape ({self.n_a}, {self.n_b}), got {got}; "
                            "merge accumulators over the same neurons")
        if other.n == 0:
            return self
        self._recentre(other.shift_a, other.shift_b)
        for k in _STATS[2:]:
            getattr(self, k).add_(getattr(other, k).to(self.device))
        self.n += other.n
        return self

    @torch.no_grad()
    def all_reduce_(self, group=None) -> StreamingPearson:
        """Sum the statistics over the processes of `group` (gloo or nccl); every rank ends merged."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            raise UserError("all_reduce_(): torch.distributed is not initialised; call init_process_group first")
        world = dist.get_world_size()
        src = torch.tensor([dist.get_rank() if self.n else world], device=self.device)
        dist.all_reduce(src, op=dist.ReduceOp.MIN, group=group)  # lowest rank holding data
        if int(src) == world:
            return self
        shifts = torch.cat([self.shift_a, self.shift_b])
        dist.broadcast(shifts, src=int(src), group=group)
        self._recentre(shifts[: self.n_a], shifts[self.n_a:])  # common shift on every rank
        small = torch.cat([self.sum_a, self.sum_sq_a, self.sum_b, self.sum_sq_b,
                           torch.tensor([float(self.n)], dtype=torch.float64, device=self.device)])
        dist.all_reduce(small, group=group)
        dist.all_reduce(self.cross, group=group)
        parts = small.split([self.n_a] * 2 + [self.n_b] * 2 + [1])
        self.sum_a, self.sum_sq_a, self.sum_b, self.sum_sq_b = (t.clone() for t in parts[:4])
        self.n = int(parts[4].item())
        return self

    # ---- results ------------------------------------------------------------------------------
    def _centred_norm(self, s: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """sqrt(Σ(u - ū)²) per neuron; NaN where the variance is zero (<= 1e-12 of Σu², i.e. rounding)."""
        c = q - s * s / self.n
        return torch.where(c > 1e-12 * q, c, torch.nan).sqrt()

    @torch.no_grad()
    def comoment(self) -> torch.Tensor:
        """float64 [n_a, n_b] centred co-moment Σ(x - x̄)(y - ȳ)ᵀ (N times the covariance)."""
        if self.n == 0:
            raise UserError("no tokens seen; call update() with at least one batch first")
        return torch.addr(self.cross, self.sum_a, self.sum_b, alpha=-1.0 / self.n)

    @torch.no_grad()
    def norms(self) -> tuple[torch.Tensor, torch.Tensor]:
        """float64 sqrt(Σ(x - x̄)²) [n_a] and the same for y [n_b]; NaN for zero-variance neurons."""
        return self._centred_norm(self.sum_a, self.sum_sq_a), self._centred_norm(self.sum_b, self.sum_sq_b)

    @torch.no_grad()
    def correlation(self) -> torch.Tensor:
        """float64 [n_a, n_b] Pearson matrix, NaN in the rows/columns of zero-variance neurons."""
        r = self.comoment()
        norm_a, norm_b = self.norms()
        r /= norm_a[:, None]
        r /= norm_b
        return r.clamp_(-1.0, 1.0)

    # ---- checkpoints --------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Plain tensors and ints (loadable with torch.load(weights_only=True)). Like nn.Module's, the
        tensors are the live statistics (no copy of a large `cross`): save them before the next update."""
        return {"n_a": self.n_a, "n_b": self.n_b, "n": self.n, **{k: getattr(self, k) for k in _STATS}}

    def load_state_dict(self, d: dict) -> None:
        missing = [k for k in ("n_a", "n_b", "n", *_STATS) if k not in d]
        if missing:
            raise UserError(f"load_state_dict(): checkpoint lacks {missing}; pass a StreamingPearson.state_dict()")
        if (d["n_a"], d["n_b"]) != (self.n_a, self.n_b):
            raise UserError(f"load_state_dict(): checkpoint is for ({d['n_a']}, {d['n_b']}) neurons, this accumulator "
                            f"for ({self.n_a}, {self.n_b}); build StreamingPearson with the checkpoint's sizes")
        for k in _STATS:
            ref = getattr(self, k)
            if not isinstance(d[k], torch.Tensor) or d[k].shape != ref.shape:
                got = list(d[k].shape) if isinstance(d[k], torch.Tensor) else type(d[k]).__name__
                raise UserError(f"load_state_dict(): '{k}' is {got}, expected a tensor of shape {list(ref.shape)}; "
                                "the checkpoint is corrupt or from another accumulator")
        for k in _STATS:
            setattr(self, k, d[k].to(self.device, getattr(self, k).dtype, copy=True))
        self.n = int(d["n"])


class RunningMax:
    """Per-row running max and argmax (global column) over column tiles of a matrix, ignoring NaN.

    Rows whose entries were all NaN end with value NaN and index -1.
    """

    def __init__(self, n_rows: int, device: str | torch.device = "cpu"):
        self._values = torch.full((n_rows,), -torch.inf, dtype=torch.float64, device=device)  # [n_rows]
        self.indices = torch.full((n_rows,), -1, dtype=torch.int64, device=device)  # [n_rows]

    @torch.no_grad()
    def update(self, block: torch.Tensor, j0: int, i0: int = 0) -> None:
        """Fold in block [rows, j1 - j0] holding columns [j0, j1) of rows [i0, i0 + rows) of the matrix."""
        n = self._values.shape[0]
        if block.dim() != 2 or not 0 <= i0 <= n - block.shape[0]:
            raise UserError(f"RunningMax.update(): block must be [rows, columns] within the {n} rows, got "
                            f"{list(block.shape)} at row {i0}; pass a tile of the correlation matrix")
        if block.shape[1] == 0 or block.shape[0] == 0:
            return
        block = block.to(self._values.device)
        v, i = block.masked_fill(block.isnan(), -torch.inf).max(dim=1)
        rows = slice(i0, i0 + block.shape[0])
        better = v.double() > self._values[rows]  # strict: ties keep the earlier column
        self._values[rows] = torch.where(better, v.double(), self._values[rows])
        self.indices[rows] = torch.where(better, i + j0, self.indices[rows])

    @property
    def values(self) -> torch.Tensor:
        """float64 [n_rows] running max; NaN where no non-NaN entry was seen."""
        return torch.where(self.indices >= 0, self._values, torch.nan)

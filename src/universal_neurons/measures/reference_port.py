"""The reference implementation's correlation arithmetic, ported for the robustness chapter's errata.

wesg52/universal-neurons (`correlations_fast.py`, `analysis/correlations.py`): the activations are stored in float16;
each batch (32 rows of the context) adds its float16 sums and float16 sums of squares to float64 accumulators and
its float32 cross products to a float64 one; the correlation is the one-pass formula
(Σab − Σa Σb / n) / sqrt((Σa² − (Σa)²/n)(Σb² − (Σb)²/n)), rounded to float16; NaN correlations are set to 0
before the maxima are taken. Its baseline's matrices are row-normalised Gaussians rounded to float16, drawn
unseeded (`fp16_rotations` reproduces the rounding from a seeded draw)."""

from __future__ import annotations

import numpy as np
import torch

from .nulls import draw_rng, rotation_matrix


class ReferencePearson:
    """The reference's streaming correlation of n_a reference neurons with n_b partner neurons (flat layout)."""

    def __init__(self, n_a: int, n_b: int, batch_tokens: int):
        self.n, self.batch_tokens = 0, int(batch_tokens)
        self._rest = None  # rows held back by update(final=False) for the next call
        self.sa, self.qa = torch.zeros(n_a, dtype=torch.float64), torch.zeros(n_a, dtype=torch.float64)
        self.sb, self.qb = torch.zeros(n_b, dtype=torch.float64), torch.zeros(n_b, dtype=torch.float64)
        self.ab = torch.zeros(n_a, n_b, dtype=torch.float64)

    def update(self, a: torch.Tensor, b: torch.Tensor, final: bool = True) -> None:
        """Add tokens a [t, n_a], b [t, n_b] (any float dtype), in batches of `batch_tokens` as the reference; the
        batches restart at each call, unless the previous call had final=False: its last partial batch is then held
        back and continued here (the same batches as one call with all the rows)."""
        if self._rest is not None:
            a, b = torch.cat([self._rest[0], a.detach().cpu()]), torch.cat([self._rest[1], b.detach().cpu()])
            self._rest = None
        end = a.shape[0] if final else a.shape[0] - a.shape[0] % self.batch_tokens
        if end < a.shape[0]:
            self._rest = (a[end:].detach().cpu().clone(), b[end:].detach().cpu().clone())
        for t0 in range(0, end, self.batch_tokens):
            a16 = a[t0:min(t0 + self.batch_tokens, end)].detach().cpu().to(torch.float16)
            b16 = b[t0:min(t0 + self.batch_tokens, end)].detach().cpu().to(torch.float16)
            self.ab += (a16.float().T @ b16.float()).double()
            self.sa += a16.sum(0).double()  # float16 sums, as the reference's stored dtype gives them
            self.qa += (a16**2).sum(0).double()
            self.sb += b16.sum(0).double()
            self.qb += (b16**2).sum(0).double()
            self.n += a16.shape[0]

    def correlation(self) -> np.ndarray:
        """float16 [n_a, n_b] (NaN where a neuron is constant, as the reference leaves it)."""
        num = self.ab - torch.outer(self.sa, self.sb) / self.n
        norm_a = (self.qa - self.sa**2 / self.n) ** 0.5
        norm_b = (self.qb - self.sb**2 / self.n) ** 0.5
        return (num / torch.outer(norm_a, norm_b)).to(torch.float16).numpy()


def max_nan_to_zero(corr: np.ndarray) -> np.ndarray:
    """The reference's summary: NaN set to 0 (and, as np.nan_to_num does, ±inf to the largest finite floats: a
    constant neuron can give ±inf through its float16 sums), then the max over partner neurons (float64 [n_a])."""
    return np.nan_to_num(np.asarray(corr, dtype=np.float64), nan=0.0).max(axis=1)


def fp16_rotations(layer_sizes, seed: int = 0, draw: int = 0, layer0: int = 0) -> list[np.ndarray]:
    """The paper's row-normalised Gaussian matrices of one seeded draw (`nulls.draw_rng`), rounded to float16
    as the reference stores them (`layer0`: the partner's index of the first layer given)."""
    return [rotation_matrix(int(d), "gaussian-rows", draw_rng(seed, draw, layer0 + l)).astype(np.float16).astype(np.float64)
            for l, d in enumerate(layer_sizes)]

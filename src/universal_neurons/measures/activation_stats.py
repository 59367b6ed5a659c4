"""Activation statistics of every neuron on the held-out tokens (paper sections 4.2 and 6; figures 3, 10, 14).

Pre-activations (`blocks.{l}.mlp.hook_pre`, the tokens `activations.plan_tokens` keeps: no BOS/EOS/pad, no
newline): mean, var, skew, kurt and sparsity (the share of tokens with pre-activation > 0), from power
sums of (x - K) accumulated in float64, K = the neuron's mean over the first batch: exact, no histogram
involved. Variances and moments are population ones (ddof 0, scipy's `bias=True`); kurtosis is not excess
(a Gaussian has 3). Per-neuron histograms for plots: `N_BINS` equal bins over the first batch's range
widened by half its width on each side, plus an underflow and an overflow bin, so every token is counted.
A gated MLP's `hook_pre` is its gate.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from .activations import held_out_batches, mlp_points, plan_pass, run_hooks
from .weight_stats import neuron_index

N_BINS = 100
ACT_COLS = ["mean", "var", "skew", "kurt", "sparsity"]
ROW_BLOCK_VALUES = 1 << 18  # float64 values per block of rows in `MomentAccumulator.update` (2 MiB: in the cache)
PLAN_CHUNK_TOKENS = 1 << 16  # the batches of a properties pass never cross a multiple of this many kept tokens


class MomentAccumulator:
    """Exact streaming mean, var, skew, kurt and sparsity of n values per update row, with histograms."""

    def __init__(self, n: int, device="cpu", n_bins: int = N_BINS):
        self.n_bins, self.count = n_bins, 0
        self.sums = torch.zeros(4, n, dtype=torch.float64, device=device)  # sum of (x - shift)^k, k = 1..4
        self.positive = torch.zeros(n, dtype=torch.int64, device=device)
        self.hist = torch.zeros(n, n_bins + 2, dtype=torch.int64, device=device)  # [under, bins..., over]
        self.shift = self.lo = self.width = None

    def update(self, x: torch.Tensor) -> None:
        """x [tokens, n]: one value per token and neuron."""
        if not len(x):
            return
        if self.shift is None:
            xd = x.double()
            self.shift = xd.mean(0)
            lo, hi = xd.min(0).values, xd.max(0).values
            span = (hi - lo).clamp_min(1e-6)
            self.lo, self.width = lo - span / 2, 2 * span / self.n_bins
        bins = torch.empty(x.shape, dtype=torch.long, device=x.device)
        step = max(1, ROW_BLOCK_VALUES // x.shape[1])
        for r0 in range(0, len(x), step):  # blocks of rows that stay in the cache (the same values, 2-5x faster)
            xd = x[r0:r0 + step].double()
            # the power sums of d = x - shift, computed in place (the same products and sums, fewer buffers)
            d = xd - self.shift
            d2 = d * d
            s1, s2 = d.sum(0), d2.sum(0)
            s3 = d.mul_(d2).sum(0)  # d now holds d^3
            s4 = d2.mul_(d2).sum(0)  # d2 now holds d^4
            self.sums += torch.stack([s1, s2, s3, s4])
            bins[r0:r0 + step] = xd.sub_(self.lo).div_(self.width).floor_().clamp_(-1, self.n_bins)  # in [-1, nb]
        above = x > 0  # counted as float sums of 0/1 (faster; exact below 2^24 tokens)
        self.positive += above.float().sum(0).long() if len(x) < 1 << 24 else above.sum(0)
        self.count += len(x)
        bins += torch.arange(1, x.shape[1] * (self.n_bins + 2) + 1, self.n_bins + 2, device=x.device)
        self.hist += torch.bincount(bins.flatten(), minlength=self.hist.numel()).view_as(self.hist)

    def result(self) -> dict[str, np.ndarray]:
        """mean, var, skew, kurt, sparsity [n] (NaN skew/kurt for constant neurons)."""
        m1, m2, m3, m4 = (self.sums / self.count).cpu().numpy()
        mu2 = m2 - m1 ** 2
        mu3 = m3 - 3 * m1 * m2 + 2 * m1 ** 3
        mu4 = m4 - 4 * m1 * m3 + 6 * m1 ** 2 * m2 - 3 * m1 ** 4
        with np.errstate(divide="ignore", invalid="ignore"):
            live = mu2 > 1e-12 * np.maximum(1.0, m2)
            return {"mean": self.shift.cpu().numpy() + m1, "var": np.maximum(mu2, 0.0),
                    "skew": np.where(live, mu3 / mu2 ** 1.5, np.nan), "kurt": np.where(live, mu4 / mu2 ** 2, np.nan),
                    "sparsity": self.positive.cpu().numpy() / self.count}


def _rows(b0: int, toks: torch.Tensor) -> str:
    return f"batch of held-out rows {b0}-{b0 + len(toks) - 1}"


class StatsTaps:
    """The activation statistics of `models` fed by a pass that runs them anyway: `points(k)` are the hook points
    of model k ({hook: ("pre", layer)}), `fn(k)` its callback (key, act at the kept positions), `result()` the
    per-model frames and histograms of `activation_stats`. `tokens[k]`: the tokens model k has been fed."""

    def __init__(self, models, device="cpu", n_bins: int = N_BINS):
        self.models = models
        self.accs = [[MomentAccumulator(m.W_out.shape[1], device, n_bins) for _ in range(m.cfg.n_layers)]
                     for m in models]
        self.first = [None] * len(models)  # the kept tokens of each model's first batch (it fixes shift and bins)

    def points(self, k: int) -> dict[str, tuple[str, int]]:
        return {hook: ("pre", layer) for hook, layer in mlp_points(self.models[k], "hook_pre").items()}

    def fn(self, k: int):
        def update(key, a):
            self.first[k] = len(a) if self.first[k] is None else self.first[k]
            self.accs[k][key[1]].update(a)
        return update

    def same_as_own_pass(self, names, tokens: np.ndarray, n_tokens: int, batch_rows: int) -> bool:
        """Whether every model saw `n_tokens` tokens and the same first batch as `activation_stats` would (that
        batch fixes each neuron's shift and histogram range): then the results are the same."""
        plan = plan_pass(self.models, names, tokens, n_tokens, PLAN_CHUNK_TOKENS)
        first = int(plan.mask(0, min(batch_rows, plan.chunks[0][1])).sum())
        return self.first == [first] * len(self.models) and self.tokens == [n_tokens] * len(self.models)

    @property
    def tokens(self) -> list[int]:
        return [min(a.count for a in acc) for acc in self.accs]

    def result(self) -> list[tuple[pd.DataFrame, dict]]:
        out = []
        for model, acc in zip(self.models, self.accs):
            res = [a.result() for a in acc]
            frame = pd.DataFrame({**neuron_index(model.cfg.n_layers, model.W_out.shape[1]),
                                  **{k: np.concatenate([r[k] for r in res]) for k in ACT_COLS}})
            hist = {"counts": torch.cat([a.hist for a in acc]).cpu().numpy(),
                    "lo": torch.cat([a.lo for a in acc]).float().cpu().numpy(),
                    "width": torch.cat([a.width for a in acc]).float().cpu().numpy()}
            out.append((frame, hist))
        return out


@torch.inference_mode()
def activation_stats(models, names, tokens: np.ndarray, n_tokens: int, batch_rows: int = 64, device="cpu",
                     n_bins: int = N_BINS) -> list[tuple[pd.DataFrame, dict]]:
    """Per model, on the same first `n_tokens` kept tokens of `tokens` [rows, n_ctx]: a frame (layer, neuron,
    ACT_COLS) and its histograms {counts [N, n_bins + 2], lo [N], width [N]} (bin k covers lo + (k-1) width).
    Batches of `batch_rows` rows, the first of which fixes each neuron's shift and histogram range (a pass that
    feeds `StatsTaps` in batches from the same first row gives the same statistics, up to the float sums' order)."""
    plan = plan_pass(models, names, tokens, n_tokens, PLAN_CHUNK_TOKENS)  # as same_as_own_pass
    taps = StatsTaps(models, device, n_bins)
    for b0, toks, mask in held_out_batches(plan, batch_rows, device):
        for k, (model, name) in enumerate(zip(models, names)):
            run_hooks(model, toks, mask, taps.points(k), taps.fn(k), name=name, rows=_rows(b0, toks))
    return taps.result()


@torch.inference_mode()
def neuron_activations(model, tokens: np.ndarray, neurons, n_tokens: int, batch_rows: int = 64,
                       device="cpu") -> tuple[np.ndarray, np.ndarray]:
    """Post-activations (`hook_post`) of some (layer, neuron) pairs at those of the first `n_tokens` kept
    positions that have a next token (not the row's last), and that next token: (float32 [T, k], int64 [T])."""
    name = str(getattr(model, "checkpoint_dir", "model"))
    plan = plan_pass([model], [name], tokens, n_tokens, PLAN_CHUNK_TOKENS)
    by_layer: dict[int, list[tuple[int, int]]] = {}
    for j, (l, n) in enumerate(neurons):
        by_layer.setdefault(l, []).append((j, n))
    acts, nxt = [], []
    for b0, toks, mask in held_out_batches(plan, batch_rows, device, next_token=True):
        out = torch.empty(int(mask.sum()), len(neurons), device=device)

        def keep(l, a, out=out):
            for j, n in by_layer[l]:
                out[:, j] = a[:, n]

        run_hooks(model, toks, mask, mlp_points(model, "hook_post", sorted(by_layer)), keep, name=name,
                  rows=_rows(b0, toks))
        acts.append(out.cpu())
        nxt.append(toks[:, 1:][mask[:, :-1]].cpu())
    return torch.cat(acts).numpy(), torch.cat(nxt).numpy()

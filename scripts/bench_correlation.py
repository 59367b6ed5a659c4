"""Benchmark the StreamingPearson engine: speed against a bare matmul and against a port of the reference
algorithm (wesg52/universal-neurons, correlations_fast.py), accuracy against numpy float64, peak memory.

    .venv/bin/python scripts/bench_correlation.py [--quick] [--device cpu|cuda] [--json out.json]

Activations are synthetic but shaped like MLP post-activations: GELU of a Gaussian with per-neuron
offsets and scales, partner neurons correlated with random reference neurons (strength U(0, 1)),
stored in float16 as the reference pipeline stores them. Each update is timed separately, engines
interleaved (so machine load hits all alike); the table gives medians. A second table times what the
universality pass accumulates per batch, the correlation and the rotated baseline together: ours is one
product plus each partner layer's own co-moments (the baseline follows from both exactly), the reference's
is its algorithm run twice, on the partner's activations and on their rotation.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

try:
    from universal_neurons.measures.correlation import StreamingPearson
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from universal_neurons.measures.correlation import StreamingPearson

D_LAYER = 512  # neurons per layer in the reference's per-layer-pair loops (a 512-wide zoo model)


class ReferencePearson:
    """Port of StreamingPearsonComputer: per-layer-pair fp32 products added into float64 host
    accumulators, float16 batch sums, naive formula. Inputs in its layout: [layers, d_mlp, tokens]."""

    def __init__(self, layers_a: int, layers_b: int, d: int = D_LAYER):
        f64 = dict(dtype=torch.float64, device="cpu")  # the reference's default correlation_device
        self.m1_sum, self.m1_sum_sq = torch.zeros(layers_a, d, **f64), torch.zeros(layers_a, d, **f64)
        self.m2_sum, self.m2_sum_sq = torch.zeros(layers_b, d, **f64), torch.zeros(layers_b, d, **f64)
        self.m1_m2_sum = torch.zeros(layers_a, d, layers_b, d, **f64)
        self.n = 0

    def update(self, a: torch.Tensor, b: torch.Tensor) -> None:
        for l1 in range(a.shape[0]):
            a_l1 = a[l1].to(torch.float32)
            for l2 in range(b.shape[0]):
                self.m1_m2_sum[l1, :, l2, :] += torch.einsum("it,jt->ij", a_l1, b[l2].to(torch.float32)).cpu()
        self.m1_sum += a.sum(dim=-1).cpu()  # summed in the stored dtype (float16 in the reference)
        self.m1_sum_sq += (a**2).sum(dim=-1).cpu()
        self.m2_sum += b.sum(dim=-1).cpu()
        self.m2_sum_sq += (b**2).sum(dim=-1).cpu()
        self.n += a.shape[-1]

    def correlation(self) -> torch.Tensor:
        """[n_a, n_b] float64 (the reference then rounds to float16; not charged here)."""
        num = self.m1_m2_sum - torch.einsum("li,mj->limj", self.m1_sum, self.m2_sum) / self.n
        norm_a = (self.m1_sum_sq - self.m1_sum**2 / self.n).sqrt()
        norm_b = (self.m2_sum_sq - self.m2_sum**2 / self.n).sqrt()
        r = num / torch.einsum("li,mj->limj", norm_a, norm_b)
        return r.reshape(norm_a.numel(), norm_b.numel())


def make_batches(n_a, n_b, tokens, batches, offset_sd=0.0, dtype=torch.float16, seed=0):
    """List of (x [tokens, n_a], y [tokens, n_b]): GELU(Gaussian) with per-neuron offsets; y[:, j]
    correlated with x[:, perm(j)]; plus offset_sd x std added to every neuron (cancellation test)."""
    g = torch.Generator().manual_seed(seed)
    mu_a, mu_b = torch.rand(n_a, generator=g) * 2.5 - 2, torch.rand(n_b, generator=g) * 2.5 - 2
    sd_a, sd_b = torch.rand(n_a, generator=g) * 1.5 + 0.5, torch.rand(n_b, generator=g) * 1.5 + 0.5
    partner = torch.randint(n_a, (n_b,), generator=g)
    rho = torch.rand(n_b, generator=g)
    out, shift = [], None
    for _ in range(batches):
        za = torch.randn(tokens, n_a, generator=g)
        zb = rho * za[:, partner] + (1 - rho**2).sqrt() * torch.randn(tokens, n_b, generator=g)
        x = torch.nn.functional.gelu(za * sd_a + mu_a)
        y = torch.nn.functional.gelu(zb * sd_b + mu_b)
        if offset_sd:
            shift = shift or (offset_sd * x.double().std(0), offset_sd * y.double().std(0))  # fixed per neuron
            x, y = x.double() + shift[0], y.double() + shift[1]
        out.append((x.to(dtype), y.to(dtype)))
    return out


def to_reference_layout(x: torch.Tensor) -> torch.Tensor:
    """[tokens, layers*d] -> [layers, d, tokens] contiguous, as the reference's get_activations returns."""
    return x.T.reshape(-1, D_LAYER, x.shape[0]).contiguous()


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


class Peak:
    """Peak memory above the level at entry: host RSS (Linux: /proc/self/clear_refs resets the peak)
    and, on CUDA, allocated GPU memory. MiB; None where it cannot be measured."""

    def __init__(self, device):
        self.device = device

    def __enter__(self):
        sync(self.device)
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.rss0 = self._rss_kib()
        except OSError:
            self.rss0 = None
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
            self.gpu0 = torch.cuda.memory_allocated()
        return self

    def __exit__(self, *exc):
        sync(self.device)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        self.host_mib = None if self.rss0 is None else round((peak - self.rss0) / 1024, 1)
        self.gpu_mib = (round((torch.cuda.max_memory_allocated() - self.gpu0) / 2**20, 1)
                        if self.device.type == "cuda" else None)

    @staticmethod
    def _rss_kib():
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))


def numpy_corr(data, rows, cols):
    """np.corrcoef in float64 on the chosen neurons over all tokens."""
    x = np.concatenate([b[0][:, rows].double().cpu().numpy() for b in data])
    y = np.concatenate([b[1][:, cols].double().cpu().numpy() for b in data])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.corrcoef(x.T, y.T)[: len(rows), len(rows):]


def max_abs_diff(r, ref):
    d = np.abs(r - ref)
    return float(np.nanmax(d)) if not np.isnan(d).all() else math.nan


def engines(n_a, n_b, device):
    """name -> (make accumulator, update(acc, batch), correlation(acc)); batch = (x, y, x_ref, y_ref)."""
    def ours_update(acc, b):
        acc.update(b[0], b[1])

    def ref_update(acc, b):
        acc.update(b[2], b[3])

    return {
        "ours": (lambda: StreamingPearson(n_a, n_b, device=device), ours_update, lambda acc: acc.correlation()),
        "reference": (lambda: ReferencePearson(n_a // D_LAYER, n_b // D_LAYER), ref_update,
                      lambda acc: acc.correlation()),
    }


def bench_shape(n_a, n_b, tokens, batches, repeats, device, sample=256):
    data = [(x.to(device), y.to(device)) for x, y in make_batches(n_a, n_b, tokens, batches)]
    full = [(x, y, to_reference_layout(x), to_reference_layout(y)) for x, y in data]
    rows, cols = torch.linspace(0, n_a - 1, sample).long(), torch.linspace(0, n_b - 1, sample).long()
    truth = numpy_corr(data, rows, cols)
    flop = 2 * n_a * n_b * tokens
    eng = engines(n_a, n_b, device)
    out = {"shape": f"{n_a}x{n_b}", "tokens": tokens, "batches": batches}

    # accuracy and peak memory: one full pass per engine, alone
    for name, (make, update, corr) in eng.items():
        with Peak(device) as peak:
            acc = make()
            for b in full:
                update(acc, b)
            r = corr(acc)[rows][:, cols].cpu().numpy()
        out[name] = {"max_abs_diff": max_abs_diff(r, truth), "host_mib": peak.host_mib, "gpu_mib": peak.gpu_mib}
        del acc, r

    # speed: interleaved repeats, each timing one batch per engine
    accs = {name: make() for name, (make, _, _) in eng.items()}
    xf, yf = data[0][0].float(), data[0][1].float()
    p_out = torch.empty(n_a, n_b, device=device)
    timers = {"matmul": lambda b: torch.matmul(xf.T, yf), "matmul(out=)": lambda b: torch.matmul(xf.T, yf, out=p_out)}
    timers.update({name: (lambda b, u=update, acc=accs[name]: u(acc, b)) for name, (_, update, _) in eng.items()})
    times = {k: [] for k in timers}
    for rep in range(repeats + 1):  # the first round is the warm-up
        for name, f in timers.items():
            b = full[rep % batches]
            sync(device)
            t0 = time.perf_counter()
            f(b)
            sync(device)
            if rep:
                times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    for name in timers:
        out.setdefault(name, {}).update(ms=round(med[name] * 1e3, 1), gflops=round(flop / med[name] / 1e9, 1),
                                        vs_matmul=round(med["matmul"] / med[name], 3))
    out["speedup_vs_reference"] = round(med["reference"] / med["ours"], 2)
    return out


class OursWithBaseline:
    """The universality pass's accumulation per batch: reference x partner in one product, plus each partner
    layer's own co-moments, from which the rotated baseline follows exactly (maxima._baseline)."""

    def __init__(self, n_a, n_b, device):
        self.acc = StreamingPearson(n_a, n_b, device=device)
        self.grams = [StreamingPearson(D_LAYER, D_LAYER, device=device) for _ in range(n_b // D_LAYER)]

    def update(self, x, y):
        self.acc.update(x, y)
        for l, g in enumerate(self.grams):
            g.update(y[:, l * D_LAYER:(l + 1) * D_LAYER], y[:, l * D_LAYER:(l + 1) * D_LAYER])


class ReferenceWithBaseline:
    """The reference's way to the same two matrices: the correlation pass, and a second pass of the same
    algorithm on the partner's activations rotated layer by layer (its `rotation` baseline)."""

    def __init__(self, n_a, n_b, device):
        self.real = ReferencePearson(n_a // D_LAYER, n_b // D_LAYER)
        self.base = ReferencePearson(n_a // D_LAYER, n_b // D_LAYER)
        g = torch.Generator().manual_seed(0)
        r = torch.randn(n_b // D_LAYER, D_LAYER, D_LAYER, generator=g)
        self.rot = (r / r.norm(dim=-1, keepdim=True)).to(device)  # [layers, d, d], unit-norm rows

    def update(self, a, b):  # reference layout [layers, d, tokens]
        self.real.update(a, b)
        rotated = torch.einsum("lij,ljt->lit", self.rot, b.to(torch.float32)).to(b.dtype)
        self.base.update(a, rotated)


def bench_with_baseline(n_a, n_b, tokens, repeats, device):
    """Time per batch of correlation + rotated baseline, ours against the reference's two passes."""
    x, y = [t.to(device) for t in make_batches(n_a, n_b, tokens, 1)[0]]
    xr, yr = to_reference_layout(x), to_reference_layout(y)
    ours, ref = OursWithBaseline(n_a, n_b, device), ReferenceWithBaseline(n_a, n_b, device)
    times = {"ours": [], "reference": []}
    for rep in range(repeats + 1):
        for name, f in (("ours", lambda: ours.update(x, y)), ("reference", lambda: ref.update(xr, yr))):
            sync(device)
            t0 = time.perf_counter()
            f()
            sync(device)
            if rep:
                times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"shape": f"{n_a}x{n_b}", "tokens": tokens, "ours_ms": round(med["ours"] * 1e3, 1),
            "reference_ms": round(med["reference"] * 1e3, 1), "speedup": round(med["reference"] / med["ours"], 2)}


def bench_offset(n, tokens, batches, offset_sd, device):
    """Accuracy with means = offset_sd x std: float32 input to both engines (isolates the formula)."""
    data = [(x.to(device), y.to(device)) for x, y in
            make_batches(n, n, tokens, batches, offset_sd=offset_sd, dtype=torch.float32, seed=1)]
    truth = numpy_corr(data, torch.arange(n), torch.arange(n))
    res = {"shape": f"{n}x{n}", "tokens": tokens * batches, "offset_sd": offset_sd, "dtype": "float32"}
    for name, (make, update, corr) in engines(n, n, device).items():
        acc = make()
        for x, y in data:
            update(acc, (x, y, to_reference_layout(x), to_reference_layout(y)))
        res[name] = max_abs_diff(corr(acc).cpu().numpy(), truth)
    return res


def fmt(v, sci=False):
    return "-" if v is None else f"{v:.1e}" if sci else str(v)


def report(meta, results, with_baseline, offsets) -> str:
    lines = [f"StreamingPearson benchmark on {meta['device']}, torch {meta['torch']}, "
             f"{meta['tokens_per_batch']} tokens per batch, load average {meta['loadavg_start_end']}",
             f"{'shape':>10} {'engine':>12} {'ms/batch':>9} {'GFLOP/s':>8} {'vs matmul':>9} {'host MiB':>9} "
             f"{'GPU MiB':>8} {'max|Δ| vs numpy':>16}"]
    for r in results:
        for name in ("matmul", "matmul(out=)", "ours", "reference"):
            e = r[name]
            lines.append(f"{r['shape']:>10} {name:>12} {e['ms']:>9} {e['gflops']:>8} {e['vs_matmul']:>9} "
                         f"{fmt(e.get('host_mib')):>9} {fmt(e.get('gpu_mib')):>8} "
                         f"{fmt(e.get('max_abs_diff'), sci=True):>16}")
        lines.append(f"{r['shape']:>10} ours: {r['ours']['vs_matmul']:.0%} of a bare matmul, "
                     f"{r['matmul(out=)']['ms'] / r['ours']['ms']:.0%} of one into a preallocated output; "
                     f"{r['speedup_vs_reference']}x the reference port's speed")
    lines.append("correlation + rotated baseline per batch (the universality pass; reference: two passes):")
    for r in with_baseline:
        lines.append(f"{r['shape']:>10} ours {r['ours_ms']} ms, reference {r['reference_ms']} ms: "
                     f"{r['speedup']}x the reference port's speed")
    lines.append("accuracy, max|Δ| vs numpy float64 corrcoef (float32 input, 512x512 neurons):")
    for o in offsets:
        lines.append(f"  mean offset {o['offset_sd']:g} x std on top of GELU: ours {fmt(o['ours'], True)}, "
                     f"reference {fmt(o['reference'], True)}")
    lines.append(f"({meta['seconds']} s)")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="one small shape, few repeats (< 1 minute)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--tokens", type=int, default=8192, help="tokens per batch")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            sys.exit("bench_correlation: --device cuda but torch sees no CUDA device; use --device cpu")
        torch.backends.cuda.matmul.fp32_precision = "ieee"  # bare matmul in real fp32, like the engine
    torch.manual_seed(0)
    shapes = [(2048, 2048)] if args.quick else [(2048, 2048), (4096, 8192)]
    batches, repeats = (2, 3) if args.quick else (3, 5)
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    results = [bench_shape(a, b, args.tokens, batches, repeats, device) for a, b in shapes]
    with_baseline = [bench_with_baseline(a, b, args.tokens, repeats, device) for a, b in shapes]
    offsets = [bench_offset(512, args.tokens, 2, off, device) for off in (0.0, 1000.0)]
    dev_name = torch.cuda.get_device_name() if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    meta = {"device": dev_name, "torch": torch.__version__, "tokens_per_batch": args.tokens,
            "loadavg_start_end": [round(load0, 2), round(os.getloadavg()[0], 2)],
            "seconds": round(time.perf_counter() - t0, 1)}
    print(report(meta, results, with_baseline, offsets))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"meta": meta, "shapes": results, "with_baseline": with_baseline,
                                               "offsets": offsets}, indent=2) + "\n")


if __name__ == "__main__":
    main()

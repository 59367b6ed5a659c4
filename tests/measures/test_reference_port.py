"""The port of the reference's correlation arithmetic: against numpy float64 (up to its float16 rounding) and
against the benchmark's independent per-layer-pair port of the same code."""

import importlib.util
from pathlib import Path

import numpy as np
import torch

from universal_neurons.measures.reference_port import ReferencePearson, fp16_rotations, max_nan_to_zero


def _bench():
    spec = importlib.util.spec_from_file_location("bench", Path(__file__).parents[2] / "scripts" / "bench_correlation.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_port_matches_numpy_and_the_benchmarks_port():
    rng = np.random.default_rng(0)
    a = rng.gamma(2.0, 0.3, (3000, 2 * 16)).astype(np.float32)  # 2 layers of 16 neurons, positive means
    b = (0.6 * a[:, ::-1] + rng.normal(0, 0.3, a.shape)).astype(np.float32)
    b[:, 5] = 0.25  # a dead partner neuron: NaN in the reference, 0 after its summary
    port = ReferencePearson(a.shape[1], b.shape[1], batch_tokens=512)
    port.update(torch.from_numpy(a), torch.from_numpy(b))
    got = port.correlation()
    # a constant neuron: its float16 sums leave a rounding residue in the one-pass variance, so the reference gives
    # NaN or ±inf there rather than a clean NaN
    assert got.dtype == np.float16 and not np.isfinite(got[:, 5]).any()
    with np.errstate(invalid="ignore"):  # the dead neuron's column divides by a zero deviation: NaN, as intended
        want = np.corrcoef(a.astype(np.float64).T, b.astype(np.float64).T)[:32, 32:]
    live = np.arange(32) != 5
    np.testing.assert_allclose(got[:, live].astype(np.float64), want[:, live], atol=3e-3)
    bench = _bench()
    other = bench.ReferencePearson(2, 2, d=16)
    for t0 in range(0, 3000, 512):  # the benchmark's layout: [layers, d, tokens]
        other.update(*(torch.from_numpy(x[t0:t0 + 512].T.reshape(2, 16, -1)).to(torch.float16) for x in (a, b)))
    np.testing.assert_allclose(got.astype(np.float64), other.correlation().to(torch.float16).numpy().astype(np.float64),
                               atol=1e-3, equal_nan=True)
    m = max_nan_to_zero(got[:, live])
    assert np.isfinite(m).all() and np.allclose(m, np.nanmax(got[:, live].astype(np.float64), 1), atol=0)
    nan = got[:, live].astype(np.float64)
    nan[0, 0] = np.nan
    assert max_nan_to_zero(nan)[0] == max(0.0, np.nanmax(nan[0]))  # NaN counts as 0 in the max


def test_fp16_rotations_round_the_seeded_draw():
    from universal_neurons.measures.nulls import draw_rng, rotation_matrix

    r = fp16_rotations([8, 4], seed=3, draw=1)
    exact = [rotation_matrix(d, "gaussian-rows", draw_rng(3, 1, l)) for l, d in enumerate([8, 4])]
    for x, e in zip(r, exact):
        assert x.shape == e.shape and 0 < np.abs(x - e).max() < 1e-3
        np.testing.assert_array_equal(x, e.astype(np.float16).astype(np.float64))

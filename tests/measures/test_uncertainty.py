"""Uncertainty of the universality numbers (uncertainty.py): block bootstrap coverage on synthetic data with a
known share, and leave-one-out / share-by-partners against brute-force loops over partner subsets."""

from itertools import combinations

import numpy as np
import pytest

from universal_neurons.core.errors import UserError
from universal_neurons.measures.uncertainty import (block_bootstrap,
                                                    excess_from,
                                                    interval,
                                                    leave_one_out,
                                                    partner_subsets,
                                                    share_by_partners,
                                                    universal_share)


def share_loop(mx, base, rows, threshold=0.5):
    """Brute force: excess of each neuron over partner rows, share among non-NaN neurons."""
    n_univ = n_live = 0
    for i in range(mx.shape[1]):
        e = sum(mx[r, i] for r in rows) / len(rows) - sum(base[r, i] for r in rows) / len(rows)
        if not np.isnan(e):
            n_live += 1
            n_univ += e > threshold
    return n_univ / n_live


@pytest.fixture
def maxima():
    """4 partners x 60 neurons: max correlations and baselines, one dead neuron (NaN everywhere)."""
    rng = np.random.default_rng(0)
    mx = np.clip(rng.uniform(0.3, 1.0, size=60) + 0.1 * rng.normal(size=(4, 60)), -1, 1)
    base = rng.uniform(0.1, 0.4, size=(4, 60))
    mx[:, 7] = base[:, 7] = np.nan
    return mx, base


def test_excess_and_share(maxima):
    mx, base = maxima
    ex = excess_from(mx, base)
    assert np.isnan(ex[7]) and np.allclose(np.delete(ex, 7), np.delete(mx.mean(0) - base.mean(0), 7))
    assert universal_share(ex) == pytest.approx(share_loop(mx, base, range(4)))
    assert universal_share(np.stack([ex, ex - 1])).shape == (2,)
    with pytest.raises(UserError):
        excess_from(mx, base[:3])


def test_bootstrap_coverage():
    """200 datasets of 100 token blocks; each block holds ~60 neuron observations, each universal with a block's
    own probability p_b ~ Beta (mean 0.3, so observations in a block are dependent). Per-block sufficient
    statistics (universal, total); the share is their ratio. The 95% interval covers 0.3 at about 95%."""
    rng, p, hits = np.random.default_rng(1), 0.3, 0
    for d in range(200):
        m = rng.poisson(60, size=100) + 1
        u = rng.binomial(m, rng.beta(3 * p / (1 - p), 3, size=100))
        bs = block_bootstrap(np.stack([u, m], 1), lambda s: s[..., 0] / s[..., 1], draws=500, seed=d,
                             vectorized=True)
        assert bs.estimate == pytest.approx(u.sum() / m.sum()) and bs.draws.shape == (500,)
        hits += bs.low <= p <= bs.high
    assert 0.88 <= hits / 200 <= 0.99


def test_bootstrap_constant_and_paths():
    rng = np.random.default_rng(2)
    blocks = rng.normal(size=(30, 3, 2))
    bs = block_bootstrap(blocks, lambda s: 4.0, draws=100)
    assert bs.low == bs.high == bs.estimate == 4.0
    ratio = np.ones((30, 2)) * [2.0, 8.0] * rng.integers(1, 9, size=(30, 1))  # every block has ratio 1/4
    bs = block_bootstrap(ratio, lambda s: s[0] / s[1], draws=100)
    assert bs.high - bs.low == pytest.approx(0, abs=1e-15) and bs.estimate == pytest.approx(0.25)
    # per-draw and vectorised paths, tuple and dict structures give the same draws
    f = lambda s: s.sum(axis=(-2, -1))  # noqa: E731
    a = block_bootstrap(blocks, f, draws=77, seed=5, batch=10)
    b = block_bootstrap(blocks, f, draws=77, seed=5, vectorized=True)
    c = block_bootstrap((blocks, blocks[:, 0]), lambda s: f(s[0]), draws=77, seed=5)
    d = block_bootstrap({"x": blocks}, lambda s: f(s["x"]), draws=77, seed=5)
    assert np.allclose(a.draws, b.draws) and np.allclose(a.draws, c.draws) and np.allclose(a.draws, d.draws)
    assert a.estimate == pytest.approx(blocks.sum())
    # independent: one draw = the blocks picked uniformly with replacement, summed
    counts = np.random.default_rng(5).multinomial(30, np.full(30, 1 / 30), size=77)
    assert np.allclose(a.draws, counts @ blocks.sum(axis=(1, 2)))
    lo, hi = interval(a.draws, 0.9)
    assert lo == pytest.approx(np.quantile(a.draws, 0.05)) and hi == pytest.approx(np.quantile(a.draws, 0.95))
    # merging into contiguous blocks = bootstrapping the pre-merged blocks
    merged = blocks.reshape(10, 3, 3, 2).sum(axis=1)
    e = block_bootstrap(blocks, f, draws=50, seed=3, n_blocks=10)
    assert np.allclose(e.draws, block_bootstrap(merged, f, draws=50, seed=3).draws)
    # array-valued stat: intervals per element
    g = block_bootstrap(blocks, lambda s: s.sum(axis=1), draws=40)
    assert g.draws.shape == (40, 3) and g.low.shape == g.high.shape == (3,) and np.all(g.low <= g.high)


def test_leave_one_out(maxima):
    mx, base = maxima
    res = leave_one_out((mx, base), lambda m, b: universal_share(excess_from(m, b)))
    want = [share_loop(mx, base, [r for r in range(4) if r != k]) for k in range(4)]
    assert np.allclose(res.values, want) and res.full == pytest.approx(share_loop(mx, base, range(4)))
    assert res.low == min(want) and res.high == max(want)
    assert res.jackknife_se == pytest.approx(np.sqrt(3 / 4 * np.sum((np.array(want) - np.mean(want)) ** 2)))
    one = leave_one_out(mx[:, :5], lambda m: m.mean(axis=0))  # one array, array-valued quantity
    assert one.values.shape == (4, 5) and np.allclose(one.values[2], mx[[0, 1, 3], :5].mean(axis=0))
    with pytest.raises(UserError):
        leave_one_out(mx[:1], np.mean)


def test_share_by_partners(maxima):
    mx, base = maxima
    df = share_by_partners(mx, base, threshold=0.4)
    assert list(df.index) == [1, 2, 3, 4] and list(df["subsets"]) == [4, 6, 4, 1]
    for k in range(1, 5):
        shares = [share_loop(mx, base, s, 0.4) for s in combinations(range(4), k)]
        assert df.loc[k, "share_mean"] == pytest.approx(np.mean(shares))
        assert df.loc[k, "share_min"] == pytest.approx(min(shares))
        assert df.loc[k, "share_max"] == pytest.approx(max(shares))
    # given orders: the first k partners of each
    orders = [[2, 0, 3, 1], [1, 3, 0, 2]]
    od = share_by_partners(mx, base, threshold=0.4, orders=orders)
    for k in range(1, 5):
        shares = [share_loop(mx, base, o[:k], 0.4) for o in orders]
        assert od.loc[k, "share_mean"] == pytest.approx(np.mean(shares)) and od.loc[k, "subsets"] == 2
    # a seeded sample when there are more subsets than max_subsets; exhaustive where there are few
    sd = share_by_partners(mx, base, threshold=0.4, max_subsets=3, seed=1)
    assert list(sd["subsets"]) == [3, 3, 3, 1]
    assert sd.equals(share_by_partners(mx, base, threshold=0.4, max_subsets=3, seed=1))
    assert np.all(sd["share_min"] >= df["share_min"] - 1e-12) and np.all(sd["share_max"] <= df["share_max"] + 1e-12)
    sub = partner_subsets(4, 2, max_subsets=3, seed=1)
    assert sub.shape == (3, 2) and all(len(set(s)) == 2 for s in sub.tolist())
    with pytest.raises(UserError):
        partner_subsets(4, 2, orders=[[0, 1, 1, 2]])

"""Matching rules against brute force and hand-made cases."""

import itertools

import numpy as np
import pytest

from universal_neurons.core.errors import UserError
from universal_neurons.measures.matching import abs_max, hungarian, min_corr, signed_max


def brute_force(block):
    """Maximum-sum one-to-one assignment of a [m, n] block by enumeration -> {row: col}."""
    m, n = block.shape
    if m <= n:
        perms = itertools.permutations(range(n), m)
        best = max(perms, key=lambda p: sum(block[i, p[i]] for i in range(m)))
        return {i: best[i] for i in range(m)}
    perms = itertools.permutations(range(m), n)
    best = max(perms, key=lambda p: sum(block[p[j], j] for j in range(n)))
    return {best[j]: j for j in range(n)}


def test_hungarian_6x6_equals_brute_force():
    corr = np.random.default_rng(0).uniform(-1, 1, (6, 6))
    values, idx = hungarian(corr, [6], [6])
    match = brute_force(corr)
    np.testing.assert_array_equal(idx, [match[i] for i in range(6)])
    np.testing.assert_array_equal(values, corr[np.arange(6), idx])
    assert sorted(idx) == list(range(6))  # one-to-one


def test_hungarian_two_layers_equals_brute_force():
    sizes_a, sizes_b = [3, 4], [4, 2]  # includes a pair with fewer partner than reference neurons
    corr = np.random.default_rng(1).uniform(-1, 1, (7, 6))
    ea, eb = np.cumsum([0, *sizes_a]), np.cumsum([0, *sizes_b])
    best, where = np.full(7, -np.inf), np.full(7, -1)
    for a0, a1 in zip(ea[:-1], ea[1:]):
        for b0, b1 in zip(eb[:-1], eb[1:]):
            for i, j in brute_force(corr[a0:a1, b0:b1]).items():
                if corr[a0 + i, b0 + j] > best[a0 + i]:
                    best[a0 + i], where[a0 + i] = corr[a0 + i, b0 + j], b0 + j
    values, idx = hungarian(corr, sizes_a, sizes_b)
    np.testing.assert_array_equal(idx, where)
    np.testing.assert_array_equal(values, best)
    assert (values <= signed_max(corr)[0]).all()  # a constrained match never beats the free max


def test_hungarian_nan_counts_as_zero_and_never_wins():
    corr = np.array([[np.nan, 0.2], [0.9, 0.1]])
    # with NaN as 0 the assignment is (0->1, 1->0) [0.2 + 0.9]; the NaN pair is never reported
    values, idx = hungarian(corr, [2], [2])
    np.testing.assert_array_equal(idx, [1, 0])
    np.testing.assert_array_equal(values, [0.2, 0.9])
    values, idx = hungarian(np.array([[np.nan], [0.5]]), [2], [1])
    assert np.isnan(values[0]) and idx[0] == -1 and values[1] == 0.5
    with pytest.raises(UserError, match="sum to"):
        hungarian(corr, [3], [2])


def test_signed_and_abs_max_differ_on_anti_correlation():
    corr = np.array([[-0.9, 0.3, np.nan], [0.2, -0.1, 0.8], [np.nan, np.nan, np.nan]])
    v, i = signed_max(corr)
    np.testing.assert_array_equal(v[:2], [0.3, 0.8])
    np.testing.assert_array_equal(i, [1, 2, -1])
    assert np.isnan(v[2])
    v, i = abs_max(corr)
    np.testing.assert_array_equal(v[:2], [0.9, 0.8])
    np.testing.assert_array_equal(i, [0, 2, -1])
    assert np.isnan(v[2])


def test_min_corr_is_the_worst_partner():
    per_partner = np.random.default_rng(2).uniform(-1, 1, (4, 10))
    np.testing.assert_array_equal(min_corr(per_partner), per_partner.min(0))
    per_partner[2, 3] = np.nan
    assert np.isnan(min_corr(per_partner)[3])
    with pytest.raises(UserError, match="partners"):
        min_corr(np.zeros(5))

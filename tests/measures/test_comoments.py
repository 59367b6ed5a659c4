"""CoMoments against numpy float64 np.cov / np.corrcoef on the concatenated data."""

import warnings

import numpy as np
import pytest
import torch

from universal_neurons.measures.comoments import CoMoments
from universal_neurons.core.errors import UserError

N_A, N_B, T = 7, 5, 900
CUTS = [0, 13, 14, 400, 401, 777, T]  # uneven batches, one of a single row


def make_data(seed=0):
    """a [T, N_A], b [T, N_B] float64: large offsets, a correlated and an anti-correlated pair, a constant
    neuron on each side (a2, b4)."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((T, N_A))
    a = (z + 500.0) * rng.uniform(0.5, 2.0, N_A)
    b = rng.standard_normal((T, N_B)) - 300.0
    b[:, 0] = 0.7 * z[:, 0] + 0.3 * b[:, 0]
    b[:, 1] = -2.0 * a[:, 1] + 5.0
    a[:, 2] = 3.25
    b[:, 4] = -1.5
    return a, b


def feed(cm, a, b, cuts=CUTS, torch_every_other=True):
    for k, (i, j) in enumerate(zip(cuts[:-1], cuts[1:])):
        x, y = a[i:j], b[i:j]
        if torch_every_other and k % 2:
            x, y = torch.from_numpy(x), torch.from_numpy(y)  # float64 tensors
        cm.update(x, y)
    return cm


def ref_corr(a, b):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.corrcoef(a.T, b.T)[: a.shape[1], a.shape[1]:]


def test_moments_match_numpy():
    a, b = make_data()
    cm = feed(CoMoments(N_A, N_B), a, b)
    assert cm.n == T
    full = np.cov(a.T, b.T)
    np.testing.assert_allclose(cm.cov_aa(), full[:N_A, :N_A], rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(cm.cov_bb(), full[N_A:, N_A:], rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(cm.cov_ab(), full[:N_A, N_A:], rtol=1e-9, atol=1e-10)
    r, ref = cm.corr_ab(), ref_corr(a, b)
    np.testing.assert_array_equal(np.isnan(r), np.isnan(ref))  # constant a2 row, b4 column
    np.testing.assert_allclose(r, ref, atol=1e-10, equal_nan=True)
    assert r[1, 1] == pytest.approx(-1.0, abs=1e-12)
    np.testing.assert_allclose(cm.sum_a + cm.n * cm.shift_a, a.sum(0), rtol=1e-12)  # raw sums from shifted


def test_float32_torch_input():
    a, b = make_data(1)
    cm = CoMoments(N_A, N_B)
    cm.update(torch.from_numpy(a[:500]).float(), b[:500].astype(np.float32))
    cm.update(a[500:].astype(np.float32), torch.from_numpy(b[500:]).float())
    a32, b32 = a.astype(np.float32).astype(np.float64), b.astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(cm.corr_ab(), ref_corr(a32, b32), atol=1e-9, equal_nan=True)


def test_save_load_round_trip(tmp_path):
    a, b = make_data(2)
    cm = feed(CoMoments(N_A, N_B, shift=30, block_rows=100), a[:450], b[:450], cuts=[0, 13, 250, 450])
    path = tmp_path / "sub" / "cm.npz"
    cm.save(path)
    assert path.exists() and [p.name for p in path.parent.iterdir()] == ["cm.npz"]  # no temporary left
    back = CoMoments.load(path)
    for k in ("n", "n_a", "n_b", "shift", "block_rows", "n_blocks"):
        assert getattr(back, k) == getattr(cm, k)
    for k in ("sum_a", "sum_b", "aa", "bb", "ab", "ab_shift", "head_a", "tail_b", "block_ab", "block_n"):
        np.testing.assert_array_equal(getattr(back, k), getattr(cm, k))
    # continuing after a reload gives the same result as one uninterrupted stream
    back.update(a[450:], b[450:])  # block 4 was half full
    whole = feed(CoMoments(N_A, N_B, shift=30, block_rows=100), a, b, cuts=[0, 13, 250, 450, T],
                 torch_every_other=False)
    np.testing.assert_allclose(back.corr_ab(), whole.corr_ab(), atol=1e-12, equal_nan=True)
    np.testing.assert_allclose(back.corr_shifted(), whole.corr_shifted(), atol=1e-12, equal_nan=True)
    np.testing.assert_allclose(back.block_ab, whole.block_ab, rtol=1e-6, atol=1e-3)


def test_load_rejects_other_files(tmp_path):
    p = tmp_path / "x.npz"
    np.savez(p, meta=np.array([99]))
    with pytest.raises(UserError, match="not a CoMoments file"):
        CoMoments.load(p)


def test_memory_budget_is_one_line():
    assert CoMoments.nbytes_needed(1000, 2000) == 8 * (1000**2 + 2000**2 + 1000 * 2000)
    with pytest.raises(UserError) as e:
        CoMoments(1000, 2000, max_bytes=1e6)
    msg = str(e.value)
    assert "\n" not in msg and "max_bytes" in msg and "0.056 GB" in msg
    cm = CoMoments(3, 3, block_rows=10, max_bytes=8 * 27 + 3 * (4 * (9 + 12) + 8))  # room for 3 blocks
    cm.update(np.zeros((30, 3)) + np.arange(30)[:, None], np.ones((30, 3)))
    with pytest.raises(UserError) as e:
        cm.update(np.zeros((1, 3)), np.ones((1, 3)))
    assert "\n" not in str(e.value) and "block 3" in str(e.value)


def test_bad_input():
    cm = CoMoments(N_A, N_B)
    with pytest.raises(UserError, match="shape"):
        cm.update(np.zeros((4, N_A + 1)), np.zeros((4, N_B)))
    with pytest.raises(UserError, match="tokens"):
        cm.update(np.zeros((4, N_A)), np.zeros((3, N_B)))
    with pytest.raises(UserError, match="dtype"):
        cm.update(np.zeros((4, N_A), dtype=np.int64), np.zeros((4, N_B)))
    x = np.zeros((4, N_A))
    x[1, 1] = np.nan
    with pytest.raises(UserError, match="non-finite"):
        cm.update(x, np.zeros((4, N_B)))
    assert cm.n == 0
    with pytest.raises(UserError, match="no permutation"):
        cm.corr_shifted()


def test_blocks_match_numpy_per_block():
    a, b = make_data(3)
    k = 128
    cm = feed(CoMoments(N_A, N_B, block_rows=k), a, b)
    n_blocks = -(-T // k)
    assert cm.n_blocks == n_blocks and cm.block_ab.shape == (n_blocks, N_A, N_B)
    np.testing.assert_array_equal(cm.block_n, [min(k, T - j * k) for j in range(n_blocks)])
    u, v = a - cm.shift_a, b - cm.shift_b
    for j in range(n_blocks):
        s = slice(j * k, (j + 1) * k)
        np.testing.assert_allclose(cm.block_ab[j], u[s].T @ v[s], rtol=1e-5, atol=1e-3)
        np.testing.assert_allclose(cm.block_sq_b[j], (v[s] ** 2).sum(0), rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(cm.corr_blocks(np.ones(n_blocks)), cm.corr_ab(), atol=1e-5, equal_nan=True)
    w = np.zeros(n_blocks)
    w[[1, 3]] = [2, 1]  # a bootstrap draw: block 1 twice, block 3 once
    idx = np.r_[np.arange(k, 2 * k), np.arange(k, 2 * k), np.arange(3 * k, 4 * k)]
    np.testing.assert_allclose(cm.corr_blocks(w), ref_corr(a[idx], b[idx]), atol=1e-5, equal_nan=True)


@pytest.mark.parametrize("shift", [1, 37, 250])
def test_shift_is_a_circular_roll(shift):
    """corr_shifted equals np.corrcoef(a, np.roll(b, shift, 0)), whatever the batch cuts; the roll keeps
    every partner neuron's marginal (sum, sum of squares)."""
    a, b = make_data(4)
    cm = feed(CoMoments(N_A, N_B, shift=shift), a, b)
    rolled = np.roll(b, shift, axis=0)
    np.testing.assert_allclose((rolled**2).sum(0), (b**2).sum(0), rtol=1e-12)
    np.testing.assert_allclose(cm.corr_shifted(), ref_corr(a, rolled), atol=1e-10, equal_nan=True)
    np.testing.assert_allclose(cm.corr_ab(), ref_corr(a, b), atol=1e-10, equal_nan=True)  # unaffected


def test_shift_needs_more_tokens_than_the_shift():
    cm = CoMoments(2, 2, shift=10)
    cm.update(np.random.default_rng(0).standard_normal((10, 2)), np.ones((10, 2)))
    with pytest.raises(UserError, match="more tokens than the shift"):
        cm.corr_shifted()


def test_plus_is_the_moments_of_both_streams():
    """Two streams with different shifts (fixed at each one's first batch), added: the covariances and correlations
    of the concatenated data (numpy float64)."""
    a, b = make_data(1)
    a2, b2 = make_data(2)
    a2, b2 = a2[:300] * 1.5 + 40.0, b2[:300] - 20.0  # other offsets: the second stream's shift differs
    first = feed(CoMoments(N_A, N_B), a, b)
    second = feed(CoMoments(N_A, N_B), a2, b2, cuts=[0, 1, 120, 300])
    both = first.plus(second)
    aa, bb = np.vstack([a, a2]), np.vstack([b, b2])
    assert both.n == len(aa)
    np.testing.assert_allclose(both.cov_aa(), np.cov(aa.T), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(both.cov_bb(), np.cov(bb.T), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(both.cov_ab(), np.cov(aa.T, bb.T)[:N_A, N_A:], rtol=1e-9, atol=1e-9)
    got, want = both.corr_ab(), ref_corr(aa, bb)
    np.testing.assert_allclose(got[~np.isnan(want)], want[~np.isnan(want)], atol=1e-10)
    # an empty stream adds nothing
    np.testing.assert_allclose(first.plus(CoMoments(N_A, N_B)).cov_ab(), first.cov_ab())
    with pytest.raises(UserError, match="shapes differ"):
        first.plus(CoMoments(N_A + 1, N_B))


def test_corr_blocks_max_matches_the_resampled_data():
    """Every weighting's signed and absolute max against np.corrcoef of the rows the weights repeat (float64),
    with a neuron dead in some blocks only and a constant one; all weightings at once, in small slabs."""
    a, b = make_data(5)
    b[: T // 2, 3] = 7.0  # dead over the first half: alive in some resamples, dead in others
    k = 100
    cm = feed(CoMoments(N_A, N_B, block_rows=k), a, b)
    n_blocks = cm.n_blocks
    rng = np.random.default_rng(1)
    weights = np.concatenate([rng.multinomial(n_blocks, np.full(n_blocks, 1 / n_blocks), size=12),
                              np.tril(np.ones((n_blocks, n_blocks)))[2:]])
    signed, absolute = cm.corr_blocks_max(weights, max_bytes=3000)  # a slab of a few rows
    for d, w in enumerate(weights):
        idx = np.concatenate([np.tile(np.arange(j * k, min((j + 1) * k, T)), int(c)) for j, c in enumerate(w)])
        ref = ref_corr(a[idx], b[idx])
        ref[:, np.nanstd(b[idx], 0) == 0] = np.nan
        finite = np.isfinite(ref).any(1)
        want = np.where(finite, np.nanmax(np.where(np.isfinite(ref), ref, -np.inf), 1), np.nan)
        want_abs = np.where(finite, np.nanmax(np.where(np.isfinite(ref), np.abs(ref), -np.inf), 1), np.nan)
        np.testing.assert_allclose(signed[d], want, atol=1e-5, equal_nan=True)
        np.testing.assert_allclose(absolute[d], want_abs, atol=1e-5, equal_nan=True)
    assert np.isnan(signed[:, 2]).all()  # the constant reference neuron
    with pytest.raises(UserError, match="weights must have shape"):
        cm.corr_blocks_max(np.ones(n_blocks))


def test_shared_gram_gives_the_same_moments():
    """A second CoMoments of the same reference columns and shift fed the first's Σ u uᵀ has the same aa."""
    a, b = make_data(6)
    shift = a[:50].mean(0)
    one = CoMoments(N_A, N_B, center_a=shift, center_b=b[:50].mean(0), block_rows=64, shift=9)
    two = CoMoments(N_A, N_B - 1, center_a=shift, center_b=b[:50, 1:].mean(0))
    for i, j in zip(CUTS[:-1], CUTS[1:]):
        gram = one.update(a[i:j], b[i:j])
        two.update(a[i:j], b[i:j, 1:], gram)
    u = a - shift
    np.testing.assert_allclose(two.aa, u.T @ u, rtol=1e-12)
    np.testing.assert_allclose(one.corr_ab(), ref_corr(a, b), atol=1e-9, equal_nan=True)
    with pytest.raises(UserError, match="gram_a must have shape"):
        two.update(a[:5], b[:5, 1:], np.ones((2, 2)))


def test_float32_products_agree_with_numpy_float64_to_float32_precision():
    """products="float32" (the robustness pass's): every product of the shifted data in float32, the sums in
    float64; the correlations, shifted correlations and blocks against numpy float64 on the same rows."""
    a, b = make_data(5)
    cm = feed(CoMoments(N_A, N_B, shift=37, block_rows=150, products="float32"), a, b)
    np.testing.assert_allclose(cm.corr_ab(), ref_corr(a, b), atol=1e-5, equal_nan=True)
    np.testing.assert_allclose(cm.corr_shifted(), ref_corr(a, np.roll(b, 37, axis=0)), atol=1e-5, equal_nan=True)
    np.testing.assert_allclose(cm.corr_blocks(np.ones(cm.n_blocks)), ref_corr(a, b), atol=1e-5, equal_nan=True)
    np.testing.assert_allclose(cm.cov_aa(), np.cov(a.T), rtol=1e-5, atol=1e-6)
    with pytest.raises(UserError, match="choose float64"):
        CoMoments(N_A, N_B, products="float16")


@pytest.mark.parametrize("products", ["float64", "float32"])
def test_within_layer_moments_are_the_blocks_of_numpy_covariances(products):
    """layers_a/layers_b: each side's own moments within its layers equal np.cov's diagonal blocks, zero between
    layers (also after plus()); the cross moments and correlations are those of the full pass."""
    a, b = make_data(6)
    la, lb = [3, 4], [2, 3]
    cm = feed(CoMoments(N_A, N_B, products=products, layers_a=la, layers_b=lb), a, b)
    tol = 1e-9 if products == "float64" else 1e-5
    for got, x, sizes in ((cm.cov_aa(), a, la), (cm.cov_bb(), b, lb)):
        want, e = np.cov(x.T), np.cumsum([0, *sizes])
        for i in range(len(sizes)):
            for j in range(len(sizes)):
                block = got[e[i]:e[i + 1], e[j]:e[j + 1]]
                if i == j:
                    np.testing.assert_allclose(block, want[e[i]:e[i + 1], e[j]:e[j + 1]], rtol=tol, atol=tol)
                else:
                    assert not block.any()
    np.testing.assert_allclose(cm.corr_ab(), ref_corr(a, b), atol=tol * 10, equal_nan=True)
    both = cm.plus(feed(CoMoments(N_A, N_B, products=products, layers_a=la, layers_b=lb), a[:300] + 1, b[:300]))
    assert not both.cov_aa()[:3, 3:].any() and not both.cov_bb()[:2, 2:].any()
    np.testing.assert_allclose(both.cov_aa()[3:, 3:], np.cov(np.vstack([a, a[:300] + 1])[:, 3:].T), rtol=tol, atol=tol)
    with pytest.raises(UserError, match="adding up to"):
        CoMoments(N_A, N_B, layers_a=[3, 3])

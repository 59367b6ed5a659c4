"""Rotation and permutation baselines against explicit computations on the activations."""

import warnings

import numpy as np
import pytest

from universal_neurons.measures.comoments import CoMoments
from universal_neurons.core.errors import UserError
from universal_neurons.measures.nulls import draw_rng, permutation_max, rotated_corr, rotated_max, rotation_matrix

SIZES = [4, 6, 5]  # partner layers
N_A, T = 6, 2000


def ref_corr(a, b):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.corrcoef(a.T, b.T)[: a.shape[1], a.shape[1]:]


def nan_signed_max(r):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmax(r, axis=1)


def make_data(seed=0):
    """a [T, N_A], b [T, Σ SIZES] with shared factors, offsets, a dead reference neuron (a5) and a dead
    partner neuron (b2)."""
    rng = np.random.default_rng(seed)
    f = rng.standard_normal((T, 3))
    a = f @ rng.standard_normal((3, N_A)) + 0.5 * rng.standard_normal((T, N_A)) + 40.0
    b = f @ rng.standard_normal((3, sum(SIZES))) + rng.standard_normal((T, sum(SIZES))) - 7.0
    a[:, 5] = 1.0
    b[:, 2] = 0.0
    return a, b


def accumulate(a, b, **kw):
    cm = CoMoments(a.shape[1], b.shape[1], **kw)
    for i, j in [(0, 300), (300, 301), (301, 1700), (1700, len(a))]:
        cm.update(a[i:j], b[i:j])
    return cm


@pytest.mark.parametrize("kind", ["gaussian-rows", "orthogonal"])
def test_rotated_max_equals_explicit_rotation(kind):
    a, b = make_data()
    cm = accumulate(a, b)
    seed = 11
    got = rotated_max(cm, SIZES, draws=2, kind=kind, seed=seed)
    assert got.shape == (2, N_A)
    for k in range(2):
        edges = np.cumsum([0, *SIZES])
        rots = [rotation_matrix(d, kind, np.random.default_rng([seed, k, l])) for l, d in enumerate(SIZES)]
        u = np.concatenate([b[:, e0:e1] @ r.T for e0, e1, r in zip(edges[:-1], edges[1:], rots)], axis=1)
        ref = ref_corr(a, u)  # rotated activations, Pearson directly
        np.testing.assert_allclose(got[k], nan_signed_max(ref), atol=1e-10, equal_nan=True)
        np.testing.assert_allclose(rotated_corr(cm, SIZES, rots), ref, atol=1e-10, equal_nan=True)
    assert np.isnan(got[:, 5]).all() and np.isfinite(got[:, :5]).all()  # dead reference neuron
    assert not np.allclose(got[0], got[1])  # fresh matrices per draw


def test_norms_kept_across_tiles_of_reference_rows():
    """Tiles of other reference rows (here: the reference's columns split in two) reuse the rotated neurons'
    deviations kept in `norms`, and give the untiled rows; the explicit rotation is the independent check."""
    a, b = make_data()
    whole = rotated_max(accumulate(a, b), SIZES, draws=2, kind="orthogonal", seed=4)
    norms = {}
    parts = [rotated_max(accumulate(a[:, cols], b), SIZES, draws=2, kind="orthogonal", seed=4, norms=norms)
             for cols in (slice(0, 3), slice(3, N_A))]
    assert len(norms) == 2 * len(SIZES)  # one entry per draw and partner layer, computed by the first tile
    np.testing.assert_allclose(np.concatenate(parts, axis=1), whole, atol=1e-12, equal_nan=True)
    rots = [rotation_matrix(d, "orthogonal", np.random.default_rng([4, 1, l])) for l, d in enumerate(SIZES)]
    edges = np.cumsum([0, *SIZES])
    u = np.concatenate([b[:, e0:e1] @ r.T for e0, e1, r in zip(edges[:-1], edges[1:], rots)], axis=1)
    np.testing.assert_allclose(parts[1][1], nan_signed_max(ref_corr(a[:, 3:], u)), atol=1e-10, equal_nan=True)


def test_rotation_matrices():
    rng = np.random.default_rng(0)
    q = rotation_matrix(50, "orthogonal", rng)
    np.testing.assert_allclose(q @ q.T, np.eye(50), atol=1e-12)
    g = rotation_matrix(50, "gaussian-rows", rng)
    np.testing.assert_allclose(np.linalg.norm(g, axis=1), 1.0, atol=1e-12)
    assert np.abs(g @ g.T - np.eye(50)).max() > 0.1  # not orthogonal
    np.testing.assert_array_equal(rotation_matrix(8, "gaussian", draw_rng(3, 1, 2)),
                                  rotation_matrix(8, "gaussian-rows", np.random.default_rng([3, 1, 2])))
    with pytest.raises(UserError, match="unknown rotation kind"):
        rotation_matrix(3, "haar")


def test_draw_reproduces_the_streaming_pass_matrix():
    """rotated_max's draw k uses the matrix maxima.rotation gives partner k (float32 there)."""
    from universal_neurons.measures.maxima import rotation

    ours = rotation_matrix(16, "gaussian-rows", draw_rng(5, 2, 3))
    np.testing.assert_allclose(ours, rotation(16, 5, 2, 3, "gaussian").numpy(), atol=1e-7)


def test_rotated_max_checks_layer_sizes():
    a, b = make_data()
    cm = accumulate(a, b)
    with pytest.raises(UserError, match="sum to"):
        rotated_max(cm, [4, 6], draws=1)


def test_permutation_independent_data_is_near_zero():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((T, 5)), rng.standard_normal((T, 8))
    cm = accumulate(a, b, shift=97)
    bound = 5 / np.sqrt(T)
    assert np.abs(cm.corr_shifted()).max() < bound
    pm = permutation_max(cm)
    assert pm.shape == (5,) and (np.abs(pm) < bound).all()
    np.testing.assert_allclose(pm, ref_corr(a, np.roll(b, 97, 0)).max(1), atol=1e-12)


def test_permutation_breaks_a_copy():
    """b = a (i.i.d. tokens): unshifted the diagonal is 1, shifted every correlation is near zero; the
    shifted partner keeps every neuron's marginal."""
    rng = np.random.default_rng(2)
    a = rng.standard_normal((T, 6)) * rng.uniform(0.5, 3, 6) + 2.0
    cm = accumulate(a, a.copy(), shift=333)
    np.testing.assert_allclose(np.diag(cm.corr_ab()), 1.0, atol=1e-12)
    assert np.abs(cm.corr_shifted()).max() < 5 / np.sqrt(T)
    assert (permutation_max(cm) < 5 / np.sqrt(T)).all()
    rolled = np.roll(a, 333, 0)
    np.testing.assert_allclose((rolled**2).sum(0), (a**2).sum(0), rtol=1e-12)
    np.testing.assert_allclose(cm.corr_shifted(), ref_corr(a, rolled), atol=1e-12)


def test_dead_partner_layer_never_wins():
    a, b = make_data(3)
    b[:, :4] = 2.0  # the whole first partner layer is dead, so are its rotated neurons
    cm = accumulate(a, b)
    rots = [rotation_matrix(d, "orthogonal", draw_rng(0, 0, l)) for l, d in enumerate(SIZES)]
    r = rotated_corr(cm, SIZES, rots)
    assert np.isnan(r[:, :4]).all()
    np.testing.assert_allclose(rotated_max(cm, SIZES, 1, "orthogonal", 0)[0], nan_signed_max(r[:, 4:]),
                               atol=1e-12, equal_nan=True)

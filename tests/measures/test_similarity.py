"""Layer similarity from covariances (similarity.py) against direct computations on activation matrices."""

import numpy as np
import pytest

from universal_neurons.core.errors import UserError
from universal_neurons.measures.similarity import layer_matrix, linear_cka, reduce_basis, svcca


def covs(x, y, norm=None):
    """Centred covariances (c_xx, c_yy, c_xy) of activations x [N, n_x], y [N, n_y]; norm: divisor (N−1)."""
    xc, yc = x - x.mean(0), y - y.mean(0)
    d = len(x) - 1 if norm is None else norm
    return xc.T @ xc / d, yc.T @ yc / d, xc.T @ yc / d


def direct_cka(x, y):
    xc, yc = x - x.mean(0), y - y.mean(0)
    return np.linalg.norm(yc.T @ xc) ** 2 / (np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc))


def direct_svcca(x, y, keep):
    """SVD of each centred side, top directions by share of variance (s²) or count, QR, SVD of Q_xᵀ Q_y."""
    qs = []
    for a in (x, y):
        ac = a - a.mean(0)
        _, s, vt = np.linalg.svd(ac, full_matrices=False)
        share = np.cumsum(s**2) / np.sum(s**2)  # its last value can round to just below 1.0 (CPU-dependent)
        k = keep if isinstance(keep, int) else int(np.argmax(share >= keep - 1e-12)) + 1
        qs.append(np.linalg.qr(ac @ vt[:k].T)[0])
    return np.linalg.svd(qs[0].T @ qs[1], compute_uv=False)


@pytest.fixture
def xy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 15)) * np.geomspace(3, 0.05, 15) + 2.0  # anisotropic, not centred
    y = np.tanh(x @ rng.normal(size=(15, 11))) + 0.3 * rng.normal(size=(600, 11))
    return x, y


def test_cka_matches_direct(xy):
    x, y = xy
    assert linear_cka(*covs(x, y)) == pytest.approx(direct_cka(x, y), rel=1e-12)
    assert linear_cka(*covs(x, y, norm=1)) == pytest.approx(direct_cka(x, y), rel=1e-12)  # raw centred sums


def test_cka_invariances_and_independence(xy):
    x, _ = xy
    q = np.linalg.qr(np.random.default_rng(1).normal(size=(15, 15)))[0]
    assert abs(linear_cka(*covs(x, x @ q)) - 1) < 1e-10
    assert abs(linear_cka(*covs(x, -3.7 * x + 5)) - 1) < 1e-10
    rng = np.random.default_rng(2)
    assert linear_cka(*covs(rng.normal(size=(4000, 10)), rng.normal(size=(4000, 10)))) < 0.02


def test_svcca_invertible_map_keeps_everything(xy):
    x, _ = xy
    a = np.eye(15) + 0.3 * np.random.default_rng(3).normal(size=(15, 15))
    mean, rho = svcca(*covs(x, x @ a), keep=1.0)
    assert rho.shape == (15,) and mean == pytest.approx(1, abs=1e-8) and np.allclose(rho, 1, atol=1e-8)


def test_svcca_rank_deficient_and_dead():
    """Low rank (5 of 12) plus a dead neuron: only the 5 live directions are kept, all perfectly correlated."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=(500, 5)) @ rng.normal(size=(5, 12))
    x[:, 3] = 7.0  # dead: zero variance
    y = x @ (np.eye(12) + 0.3 * rng.normal(size=(12, 12)))
    assert reduce_basis(covs(x, x)[0], keep=1.0).shape == (12, 5)
    assert reduce_basis(covs(x, x)[0], keep=50).shape == (12, 5)
    mean, rho = svcca(*covs(x, y), keep=1.0)
    assert rho.shape == (5,) and np.allclose(rho, 1, atol=1e-8) and mean == pytest.approx(1, abs=1e-8)
    assert np.isfinite(linear_cka(*covs(x, y)))
    zero = np.zeros((4, 4))
    assert np.isnan(linear_cka(zero, np.eye(4), zero))
    m, r = svcca(zero, np.eye(4), zero)
    assert np.isnan(m) and r.size == 0


@pytest.mark.parametrize("keep", [0.99, 0.9, 4, 1.0])
def test_svcca_matches_direct_cca(xy, keep):
    x, y = xy
    mean, rho = svcca(*covs(x, y), keep=keep)
    want = direct_svcca(x, y, keep)
    assert rho.shape == want.shape and np.allclose(rho, want, atol=1e-9)
    assert mean == pytest.approx(want.mean(), abs=1e-9)
    if keep in (0.9, 4):
        assert len(rho) < 11  # the reduction really dropped directions


def test_svcca_rejects_bad_keep():
    for keep in (0.0, 1.5, 0, True):
        with pytest.raises(UserError):
            svcca(np.eye(3), np.eye(3), np.eye(3), keep=keep)


def test_layer_matrix(xy):
    x, y = xy
    sa, sb = [4, 5, 6], [6, 5]
    ca, cb, cab = covs(x, y)
    ea, eb = np.cumsum([0] + sa), np.cumsum([0] + sb)
    blocks = lambda i, j: covs(x[:, ea[i]:ea[i + 1]], y[:, eb[j]:eb[j + 1]])  # noqa: E731
    cka = layer_matrix(ca, cb, cab, sa, sb, linear_cka)
    sv = layer_matrix(ca, cb, cab, sa, sb, svcca, keep=0.95)
    gen = layer_matrix(ca, cb, cab, sa, sb, lambda cxx, cyy, cxy: np.abs(cxy).max())
    assert cka.shape == sv.shape == gen.shape == (3, 2)
    for i in range(3):
        for j in range(2):
            xi, yj = x[:, ea[i]:ea[i + 1]], y[:, eb[j]:eb[j + 1]]
            assert cka[i, j] == pytest.approx(direct_cka(xi, yj), rel=1e-12)
            assert sv[i, j] == pytest.approx(direct_svcca(xi, yj, 0.95).mean(), abs=1e-9)
            assert gen[i, j] == pytest.approx(np.abs(blocks(i, j)[2]).max(), rel=1e-12)
    self_cka = layer_matrix(ca, ca, ca, sa, sa)
    assert np.allclose(np.diag(self_cka), 1, atol=1e-12)
    with pytest.raises(UserError):
        layer_matrix(ca, cb, cab, [4, 5], sb)


def test_layer_matrix_keeps_decompositions_across_tiles(xy):
    """Tiles of reference layers against the same partner layers reuse the partner side's decompositions in `kept`
    and give the blocks of the whole matrix (each checked against the direct SVCCA)."""
    x, y = xy
    sa, sb = [4, 5, 6], [6, 5]
    ca, cb, cab = covs(x, y)
    kept_b = {}
    ea = np.cumsum([0] + sa)
    rows = [layer_matrix(ca[ea[i]:ea[i + 1], ea[i]:ea[i + 1]], cb, cab[ea[i]:ea[i + 1]], [sa[i]], sb, svcca,
                         kept=({}, kept_b), layer0=(i, 0), keep=0.95) for i in range(3)]
    assert len(kept_b) == 2  # one decomposition per partner layer, made by the first tile
    eb = np.cumsum([0] + sb)
    for i, row in enumerate(rows):
        for j in range(2):
            want = direct_svcca(x[:, ea[i]:ea[i + 1]], y[:, eb[j]:eb[j + 1]], 0.95).mean()
            assert row[0, j] == pytest.approx(want, abs=1e-9)

"""StreamingPearson and RunningMax against an independent numpy float64 computation."""

import socket
import warnings

import numpy as np
import pytest
import torch

from universal_neurons.measures.correlation import RunningMax, StreamingPearson, _ieee_fp32
from universal_neurons.core.errors import UserError

N_A, N_B, T = 40, 30, 12_000
BATCHES = [(0, 3000), (3000, 3007), (3007, 8000), (8000, T)]  # uneven sizes, one tiny


def make_data(seed=0, offset=1000.0):
    """x [T, N_A], y [T, N_B] float64: mean = ±offset x std per neuron, correlated and anti-correlated
    pairs, constant neurons (x5, y7), and a neuron constant in the first batch only (x9)."""
    g = torch.Generator().manual_seed(seed)
    std_a = torch.rand(N_A, generator=g, dtype=torch.float64) * 2 + 0.1
    std_b = torch.rand(N_B, generator=g, dtype=torch.float64) * 2 + 0.1
    sign_a = torch.randn(N_A, generator=g, dtype=torch.float64).sign()
    z = torch.randn(T, N_A, generator=g, dtype=torch.float64)
    w = torch.randn(T, N_B, generator=g, dtype=torch.float64)
    x = (z + offset * sign_a) * std_a
    y = (0.8 * z[:, :N_B] + 0.6 * w + offset) * std_b
    y[:, 3] = -0.5 * x[:, 3] + 7.0  # exact anti-correlation
    y[:, 4] = -(0.9 * z[:, 10] + 0.4 * w[:, 4] - offset) * std_b[4]
    x[:, 5] = 123.456
    y[:, 7] = -2.5
    x[:3000, 9] = x[0, 9]
    return x, y


def numpy_corr(x, y):
    """Independent reference: np.corrcoef on float64 copies, NaN for constant neurons."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.corrcoef(x.double().numpy().T, y.double().numpy().T)[: x.shape[1], x.shape[1]:]


def accumulate(x, y, batches=BATCHES, sp=None):
    sp = sp or StreamingPearson(x.shape[1], y.shape[1])
    for a, b in batches:
        sp.update(x[a:b], y[a:b])
    return sp


def max_err(r, ref):
    r = r.numpy() if isinstance(r, torch.Tensor) else r
    assert np.array_equal(np.isnan(r), np.isnan(ref)), "NaN pattern differs"
    return np.nanmax(np.abs(r - ref))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_matches_numpy_with_large_offsets(dtype):
    x, y = make_data()
    if dtype == torch.bfloat16:  # 8 bits of mantissa cannot hold mean 1000 x std: use a modest offset
        x, y = make_data(offset=3.0)
    x, y = x.to(dtype), y.to(dtype)
    sp = accumulate(x, y)
    r = sp.correlation()
    assert r.dtype == torch.float64 and r.shape == (N_A, N_B) and sp.n == T
    ref = numpy_corr(x, y)
    assert max_err(r, ref) < 1e-5
    assert np.isnan(ref[5]).all() and np.isnan(ref[:, 7]).all()
    assert ref[3, 3] < -0.999 and ref[10, 4] < -0.8  # the data exercise anti-correlation


def test_accuracy_float32_large_offset_is_fp64_level():
    x, y = make_data()
    x, y = x.float(), y.float()
    assert max_err(accumulate(x, y).correlation(), numpy_corr(x, y)) < 1e-6


def test_pieces_side_by_side_equal_the_concatenated_partner():
    """y as a list of column pieces (the universality pass's partner layers) gives the correlations of the
    concatenated y, against numpy float64; mismatched pieces are a one-line error."""
    x, y = make_data()
    x, y = x.float(), y.float()
    sp = StreamingPearson(N_A, N_B)
    for a, b in BATCHES:
        sp.update(x[a:b], [y[a:b, :10], y[a:b, 10:11], y[a:b, 11:]])
    assert max_err(sp.correlation(), numpy_corr(x, y)) < 1e-6
    with pytest.raises(UserError, match="pieces of y"):
        sp.update(x[:5], [y[:5, :10], y[:5, :10]])


def test_merge_of_halves_is_exact():
    x, y = make_data()
    x, y = x.float(), y.float()
    a = accumulate(x, y, BATCHES[:2])
    b = accumulate(x, y, BATCHES[2:])
    # independent combination of the two halves' statistics: Chan's formula on centred co-moments
    def centred(sp):
        n, sa, sb = sp.n, sp.sum_a, sp.sum_b
        return (n, sp.shift_a.double() + sa / n, sp.shift_b.double() + sb / n, sp.cross - torch.outer(sa, sb) / n,
                sp.sum_sq_a - sa * sa / n, sp.sum_sq_b - sb * sb / n)
    (na, ma_a, ma_b, ca, va_a, va_b), (nb, mb_a, mb_b, cb, vb_a, vb_b) = centred(a), centred(b)
    n, k = na + nb, na * nb / (na + nb)
    da, db = ma_a - mb_a, ma_b - mb_b
    cov = ca + cb + k * torch.outer(da, db)
    var_a, var_b = va_a + vb_a + k * da * da, va_b + vb_b + k * db * db
    expected = (cov / torch.outer(var_a, var_b).sqrt()).clamp(-1, 1).numpy()  # NaN for x5, y7: 0 / 0
    merged = a.merge(b)
    assert merged.n == T
    r = merged.correlation()
    assert max_err(r, expected) < 1e-12
    assert max_err(r, accumulate(x, y).correlation().numpy()) < 1e-6  # fp32 rounding of the products only
    assert max_err(r, numpy_corr(x, y)) < 1e-5


def test_merge_into_empty_and_of_empty():
    x, y = make_data()
    x, y = x.float(), y.float()
    full = accumulate(x, y)
    r = StreamingPearson(N_A, N_B).merge(full).merge(StreamingPearson(N_A, N_B)).correlation()
    torch.testing.assert_close(r, full.correlation(), rtol=0, atol=1e-15, equal_nan=True)


def test_state_dict_round_trip_then_continue(tmp_path):
    x, y = make_data()
    x, y = x.float(), y.float()
    first = accumulate(x, y, BATCHES[:2])
    torch.save(first.state_dict(), tmp_path / "ckpt.pt")
    resumed = StreamingPearson(N_A, N_B)
    resumed.load_state_dict(torch.load(tmp_path / "ckpt.pt", weights_only=True))
    assert resumed.n == first.n
    accumulate(x, y, BATCHES[2:], sp=resumed)
    torch.testing.assert_close(resumed.correlation(), accumulate(x, y).correlation(),
                               rtol=0, atol=1e-12, equal_nan=True)


def test_running_max_over_tiles_equals_full_matrix():
    g = torch.Generator().manual_seed(1)
    m = torch.rand(20, 53, generator=g, dtype=torch.float64) * 2 - 1
    m[3] = torch.nan  # a dead reference neuron: no valid column
    m[:, 10] = torch.nan  # a dead partner neuron
    m[7, 40] = 5.0  # the max sits in a late tile
    rm = RunningMax(20)
    for j0 in range(0, 53, 16):
        for i0 in (0, 8):  # tiles of 8 and 12 rows
            rm.update(m[i0:i0 + 8 if i0 == 0 else 20, j0:j0 + 16], j0, i0)
    ref = m.numpy()
    valid = ~np.isnan(ref).all(axis=1)
    np.testing.assert_array_equal(rm.values.numpy()[valid], np.nanmax(ref[valid], axis=1))
    np.testing.assert_array_equal(rm.indices.numpy()[valid], np.nanargmax(ref[valid], axis=1))
    assert np.isnan(rm.values[3]) and rm.indices[3] == -1 and rm.indices[7] == 40
    with pytest.raises(UserError, match="block must be"):
        rm.update(m[:5], 0, i0=18)  # rows 18-22 of 20
    with pytest.raises(UserError, match="block must be"):
        rm.update(m[0], 0)


def test_bad_input_raises_user_error_and_leaves_state():
    x, y = make_data()
    x, y = x.float(), y.float()
    sp = accumulate(x, y, BATCHES[:1])
    before = sp.correlation()
    for bad_x, bad_y, msg in [
        (x[:10, :5], y[:10], "shape \\[tokens, 40\\]"),
        (x[:10, 0], y[:10], "shape \\[tokens, 40\\]"),
        (x[:10], y[:11], "same tokens"),
        (x[:10].long(), y[:10], "dtype"),
        (x[:10], y[:10].numpy(), "shape \\[tokens, 30\\]"),
    ]:
        with pytest.raises(UserError, match=msg):
            sp.update(bad_x, bad_y)
    for value in (float("nan"), float("inf"), -float("inf")):
        bad = x[:10].clone()
        bad[4, 2] = value
        with pytest.raises(UserError, match="non-finite"):
            sp.update(bad, y[:10])
    assert sp.n == 3000
    torch.testing.assert_close(sp.correlation(), before, rtol=0, atol=0, equal_nan=True)
    sp.update(x[:0], y[:0])  # an empty batch is a no-op
    assert sp.n == 3000


def test_nan_first_batch_does_not_set_shift():
    x, y = make_data()
    x, y = x.float(), y.float()
    sp = StreamingPearson(N_A, N_B)
    bad = x[:100].clone()
    bad[0, 0] = torch.nan
    with pytest.raises(UserError, match="non-finite"):
        sp.update(bad, y[:100])
    assert max_err(accumulate(x, y, sp=sp).correlation(), numpy_corr(x, y)) < 1e-6


def test_other_errors():
    with pytest.raises(UserError, match="positive int"):
        StreamingPearson(0, 3)
    with pytest.raises(UserError, match="no tokens"):
        StreamingPearson(2, 3).correlation()
    with pytest.raises(UserError, match="shape \\(2, 3\\)"):
        StreamingPearson(2, 3).merge(StreamingPearson(3, 2))
    with pytest.raises(UserError, match="checkpoint's sizes"):
        StreamingPearson(2, 3).load_state_dict(StreamingPearson(3, 2).state_dict())
    bad = StreamingPearson(2, 3).state_dict()
    bad["cross"] = [[0.0] * 3] * 2
    with pytest.raises(UserError, match="expected a tensor of shape \\[2, 3\\]"):
        StreamingPearson(2, 3).load_state_dict(bad)
    with pytest.raises(UserError, match="lacks"):
        StreamingPearson(2, 3).load_state_dict({"n": 0})
    with pytest.raises(UserError, match="not initialised"):
        StreamingPearson(2, 3).all_reduce_()


def test_ieee_fp32_context_restores_setting():
    m = torch.backends.cuda.matmul
    before = m.fp32_precision
    with _ieee_fp32(torch.device("cuda")):
        assert m.fp32_precision == "ieee"
    assert m.fp32_precision == before


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_numpy():
    x, y = make_data()
    x, y = x.float(), y.float()
    sp = accumulate(x.cuda(), y.half().cuda(), sp=StreamingPearson(N_A, N_B, device="cuda"))
    assert max_err(sp.correlation().cpu(), numpy_corr(x, y.half())) < 1e-5


def _dist_worker(rank, port, out, threads):
    torch.set_num_threads(threads)  # same float32 summation order as the parent's single-process run
    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        x, y = make_data()
        x, y = x.float(), y.float()
        half = [BATCHES[:2], BATCHES[2:]][rank]  # rank 0: tokens [0, 3007), rank 1: the rest
        sp = accumulate(x, y, half).all_reduce_()
        only1 = accumulate(x, y, BATCHES[2:] if rank else []).all_reduce_()  # rank 0 holds no data
        torch.save({"full": sp.correlation(), "n": sp.n, "only1": only1.correlation(), "n1": only1.n},
                   f"{out}/rank{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


def test_all_reduce_gloo_two_ranks(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(_dist_worker, args=(port, str(tmp_path), torch.get_num_threads()), nprocs=2)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    x, y = make_data()
    x, y = x.float(), y.float()
    assert r0["n"] == r1["n"] == T and r0["n1"] == r1["n1"] == T - 3007
    for key in ("full", "only1"):
        torch.testing.assert_close(r0[key], r1[key], rtol=0, atol=0, equal_nan=True)  # every rank holds the same
    assert max_err(r0["full"], accumulate(x, y).correlation().numpy()) < 1e-6
    assert max_err(r0["full"], numpy_corr(x, y)) < 1e-5
    assert max_err(r0["only1"], accumulate(x, y, BATCHES[2:]).correlation().numpy()) < 1e-12


def test_gram_is_the_symmetric_product_and_a_group_against_itself_is_its_own_partner():
    """correlation.gram (BLAS's symmetric update on a CPU) equals numpy's float64 uᵀu to float32 precision; a
    StreamingPearson fed the same tensor as both sides gives np.corrcoef of the group with itself."""
    from universal_neurons.measures.correlation import gram

    x, _ = make_data()
    u = (x - x.mean(0)).float()
    want = u.double().numpy().T @ u.double().numpy()
    got = gram(u).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-3 * np.abs(want).max() * 1e-3)
    assert np.array_equal(got, got.T)
    sp = StreamingPearson(N_A, N_A)
    for a, b in BATCHES:
        batch = x[a:b].float()
        sp.update(batch, batch)
    assert max_err(sp.correlation(), numpy_corr(x.float(), x.float())) < 1e-6

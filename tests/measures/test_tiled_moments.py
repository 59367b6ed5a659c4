"""The tiled co-moment plan: every layer pair in exactly one tile, every pass within the budget, at the paper's
shapes; a tile's moments equal the untiled ones' rows and columns (numpy float64 on the same activations)."""

import numpy as np
import pytest

from universal_neurons.core.errors import UserError
from universal_neurons.measures.comoments import CoMoments
from universal_neurons.measures.tiled_moments import plan_passes, tile_bytes


def _covered(passes, sizes_a, partner_sizes):
    seen = {}
    for tiles in passes:
        for t in tiles:
            for la in range(t.a0, t.a1):
                for lb in range(t.b0, t.b1):
                    seen[(t.partner, la, lb)] = seen.get((t.partner, la, lb), 0) + 1
    want = {(k, la, lb) for k, sb in enumerate(partner_sizes) for la in range(len(sizes_a)) for lb in range(len(sb))}
    return set(seen) == want and set(seen.values()) == {1}


@pytest.mark.parametrize("d, layers, partners, gb", [(3072, 12, 2, 4.0), (4096, 24, 1, 4.0), (1024, 2, 4, 4.0),
                                                     (3072, 12, 2, 2.0)])
def test_every_pass_fits_the_budget_and_every_layer_pair_is_in_one_tile(d, layers, partners, gb):
    sizes_a, partner_sizes = [d] * layers, [[d] * layers] * partners
    full = [True] * (partners - 1) + [False]  # the last one plays the untrained control (plain moments)
    passes = plan_passes(sizes_a, partner_sizes, gb * 1e9, 512, 10, full=full)
    assert _covered(passes, sizes_a, partner_sizes)
    for tiles in passes:
        costs = [tile_bytes(d * (t.a1 - t.a0), d * (t.b1 - t.b0), t.full, 512, 10) for t in tiles]
        assert sum(k for k, _ in costs) + max(w for _, w in costs) <= gb * 1e9
    if d * layers <= 2048:  # a small model: one tile per partner, one pass (the untiled pass)
        assert len(passes) == 1 and len(passes[0]) == partners
    else:  # the untiled accumulator would refuse this budget
        with pytest.raises(UserError):
            CoMoments(d * layers, d * layers, shift=512, max_bytes=gb * 1e9)


def test_a_budget_below_one_layer_pair_is_a_user_error_naming_the_fix():
    need = sum(tile_bytes(3072, 3072, True, 512, 10))
    with pytest.raises(UserError, match="raise analysis.max_accumulator_gb to at least"):
        plan_passes([3072] * 12, [[3072] * 12], need - 1, 512, 10)
    assert len(plan_passes([3072] * 12, [[3072] * 12], need, 512, 10)) == 144


def test_given_centres_give_the_untiled_moments_rows_and_columns():
    """A tile's CoMoments (centred with the whole pass's first-batch shift) against numpy float64 on the slice."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((600, 9)) * 3 + 40, rng.standard_normal((600, 7)) - 20
    b[:, 2] = 0.8 * a[:, 4] + 0.2 * b[:, 2]
    whole = CoMoments(9, 7, shift=50, block_rows=100)
    tile = CoMoments(4, 3, shift=50, block_rows=100, center_a=a[:250, 3:7].mean(0), center_b=b[:250, 1:4].mean(0))
    for i in range(0, 600, 250):  # the first batch of the whole is the rows the centres were taken over
        whole.update(a[i:i + 250], b[i:i + 250])
        for j in range(i, min(i + 250, 600), 70):  # the tile fed in other batches
            tile.update(a[j:min(j + 70, i + 250), 3:7], b[j:min(j + 70, i + 250), 1:4])
    np.testing.assert_allclose(tile.shift_a, whole.shift_a[3:7], rtol=1e-14)
    want = np.corrcoef(a[:, 3:7].T, b[:, 1:4].T)[:4, 4:]
    np.testing.assert_allclose(tile.corr_ab(), want, atol=1e-12)
    np.testing.assert_allclose(tile.corr_ab(), whole.corr_ab()[3:7, 1:4], atol=1e-12)
    np.testing.assert_allclose(tile.corr_shifted(), whole.corr_shifted()[3:7, 1:4], atol=1e-12)
    w = np.array([2, 0, 1, 1, 0, 2])
    np.testing.assert_allclose(tile.corr_blocks(w), whole.corr_blocks(w)[3:7, 1:4], atol=1e-6)

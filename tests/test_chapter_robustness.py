"""The robustness chapter on the smoke zoo: its co-moment pass gives the same maximum correlations as the
universality pass (a second engine), and every share in its table follows from its cached arrays."""

import numpy as np
import pytest

pytestmark = pytest.mark.slow


def test_robustness_on_the_smoke_zoo(smoke, smoke_zoo, one_thread):
    from universal_neurons import neuron_tables as T
    from universal_neurons import uncertainty as U
    from universal_neurons.chapters import robustness as chapter

    table = T.ensure_results(smoke).neurons
    ch = chapter.compute("smoke")
    r, info = chapter.results(smoke)
    assert info["n_tokens"] == smoke.cfg["analysis"]["n_tokens"]  # the universality pass's tokens, so:
    for k in range(1, len(smoke.seeds)):  # the same maxima from two engines (streaming Pearson, full co-moments)
        np.testing.assert_allclose(r["real"][k - 1], table[f"max_corr_p{k}"].to_numpy(), atol=2e-5, equal_nan=True)
    thr = ch.glue["rob_threshold"]
    shares = ch.tables["shares"].set_index(["null", "matching"])["share %"]
    base = r["draws"][0]
    for null, b in (("the paper's draw", base), ("orthogonal rotation", r["ortho"]), ("permutation (rows shifted)",
                                                                                      r["perm"])):
        ex = r["real"].mean(0) - b.mean(0)
        live = ~np.isnan(ex)
        assert shares[(null, "signed max (the paper)")] == pytest.approx(100 * (ex[live] > thr).mean(), abs=1e-3)
    assert ch.glue["rob_share"] == pytest.approx(shares[("the paper's draw", "signed max (the paper)")], abs=1e-3)
    assert (np.abs(r["abs"]) >= r["real"] - 1e-12).all()  # |r| max is never below the signed max
    assert r["cka"].shape == (len(smoke.seeds) - 1, 2, 2) and np.nanmax(r["cka"]) <= 1 + 1e-9
    assert len(ch.tables["partners"]) == len(smoke.seeds) - 1
    np.testing.assert_allclose(r["by_tokens"][-1], r["real"], atol=2e-5, equal_nan=True)  # all blocks = all tokens
    assert ch.tables["tokens"].index[-1] == info["n_tokens"]
    assert U.universal_share(U.excess_from(r["real"], base), thr) * 100 == pytest.approx(ch.glue["rob_share"])

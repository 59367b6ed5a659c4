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


def test_robustness_control_and_errata(smoke, smoke_zoo, one_thread):
    """The untrained control's maxima equal the streaming engine's control pass; the errata's float16 port stays
    close to the exact correlations; the table has every null and rule with an interval."""
    from universal_neurons import control as C
    from universal_neurons.chapters import robustness as chapter

    r, info = chapter.results(smoke)
    ctrl = C.run_control(smoke, progress=False, threshold=0.5).neurons
    np.testing.assert_allclose(r["control"], ctrl["max_corr_p1"].to_numpy(), atol=2e-5, equal_nan=True)
    live = np.isfinite(r["real"]) & np.isfinite(r["ref16"])
    assert np.abs(r["ref16"][live] - r["real"][live]).max() < 0.02  # float16 rounding, not a different number
    assert np.abs(r["base16"] - r["draws"][0]).max() < 0.02
    assert r["boot_hungarian"].shape[0] == chapter.BOOT_HUNGARIAN and r["boot_abs"].shape == r["boot"].shape
    ch = chapter.compute("smoke")
    t = ch.tables["shares"]
    assert len(t) == 16 and set(t["null"]) >= {"untrained control (its max correlation)"}
    for cell in t["95% interval %"]:
        low, high = map(float, cell.split("-"))
        assert 0 <= low <= high <= 100
    err = ch.tables["errata"]
    assert len(err) == 6 and (err["share % (ours)"] == err["share % (ours)"].iloc[0]).all()
    assert ch.glue["rob_emerge_md"].data.startswith("Emergence over training was not computed")

"""The robustness chapter on the smoke zoo: its co-moment pass gives the same maximum correlations as the
universality pass (a second engine), and every share in its table follows from its cached arrays."""

import numpy as np
import pytest

pytestmark = pytest.mark.slow


def test_robustness_on_the_smoke_zoo(smoke, smoke_zoo, one_thread):
    from universal_neurons.measures import uncertainty
    from universal_neurons.book.chapters import robustness as chapter
    from universal_neurons.runs.universality import ensure_results

    table = ensure_results(smoke).neurons
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
    assert uncertainty.universal_share(uncertainty.excess_from(r["real"], base), thr) * 100 == pytest.approx(ch.glue["rob_share"])


def test_robustness_control_and_errata(smoke, smoke_zoo, one_thread):
    """The untrained control's maxima equal the streaming engine's control pass; the errata's float16 port stays
    close to the exact correlations; the table has every null and rule with an interval."""
    from universal_neurons.runs import control
    from universal_neurons.book.chapters import robustness as chapter

    r, info = chapter.results(smoke)
    ctrl = control.run_control(smoke, progress=False, threshold=0.5).neurons
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
    assert len(err) == 7 and (err["share % (ours)"] == err["share % (ours)"].iloc[0]).all()
    assert ch.glue["rob_emerge_md"].data.startswith("Emergence over training was not computed")
    # the reference code's newline filter: the row's share from the maxima with the extra positions added
    from universal_neurons.measures import uncertainty

    thr = ch.glue["rob_threshold"]
    nl = err[err["the reference's choice"].str.startswith("only the newline token")].iloc[0]
    if "real_nl" in r:
        want = 100 * uncertainty.universal_share(uncertainty.excess_from(r["real_nl"], r["base_nl"]), thr)
        assert info["newline_kept"] > 0 and ch.glue["rob_newline_kept"] == info["newline_kept"]
    else:  # no such token in these rows: the reference's way is ours
        want = ch.glue["rob_share"]
    assert float(nl["share % (the reference's way)"]) == pytest.approx(want, abs=1e-3)
    assert ch.glue["rob_newline_share"] == pytest.approx(want, abs=1e-3)


def test_the_share_verdict_and_the_conclusion_follow_from_the_arrays(smoke, smoke_zoo, one_thread):
    """The share's verdict by its rule, written out: the paper's smallest share (GPT2-medium-a, 1,211 of 98,304) as
    the magnitude, the share against the untrained partner as the noise, the bootstrap interval's low end; and the
    stability counts of the conclusion from the cached maxima."""
    from universal_neurons.runs import control
    from universal_neurons.measures import uncertainty
    from universal_neurons.book.chapters import robustness as chapter

    ch = chapter.compute("smoke")
    g = ch.glue
    r, _ = chapter.results(smoke)
    thr = g["rob_threshold"]
    noise = 100 * control.run_control(smoke, progress=False, threshold=thr).info["summary"]["share_universal"]
    if thr != 0.5:
        want = "not testable here"
    elif g["rob_boot_low"] > noise:
        want = "holds" if g["rob_share"] >= 100 * 1211 / 98304 else "direction only"
    else:
        want = "does not hold"
    assert g["rob_verdict_share"] == want and f"{100 * 1211 / 98304:.3g}%" in g["rob_rule_share"]
    base = r["draws"][0]
    ex = uncertainty.excess_from(r["real"], base)
    every_draw = np.all([uncertainty.excess_from(r["real"], d) > thr for d in r["draws"]], axis=0)
    boot = np.mean([uncertainty.excess_from(b, base) > thr for b in r["boot"]], axis=0)
    assert g["rob_stable_universal"] == int((ex > thr).sum()) and g["rob_stable_every_draw"] == int(every_draw.sum())
    assert g["rob_stable_boot95"] == int((boot >= 0.95).sum())
    text = g["rob_conclusion_md"].data
    assert text.startswith("**The book's reading.** The book adopts the paper's null")
    shares = ch.tables["shares"]["share %"]
    assert f"from {shares.min():.2f}%" in text and f"to {shares.max():.2f}%" in text
    assert g["rob_holds_md"].data.endswith(text)

"""The robustness chapter on the smoke zoo: its co-moment pass gives the same maximum correlations as the
universality pass (a second engine), and every share in its table follows from its cached arrays."""

import numpy as np
import pytest
from tiny_zoo import models, tiny  # noqa: F401 (fixtures)

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


def _tiny_statistics(tiny, models, budget):
    from tiny_zoo import N_TOKENS

    from universal_neurons.book.chapters import robustness as chapter

    ms = [models("dead_ref"), models("seed1"), models("dead_partner"), models("perm")]  # the last: the control
    names = ["ref", "p1", "p2", "control"]
    return chapter.statistics(ms, names, np.asarray(tiny["rows"].tokens), N_TOKENS, 16, budget, progress=False), ms


def test_tiles_within_a_small_budget_give_the_untiled_arrays(tiny, models, one_thread):
    """Layer-pair tiles (row blocks of the reference and partner layer groups, many passes) within a budget that
    the untiled co-moments refuse give the one-tile arrays; the maxima and the paper's baseline (draw 0) against
    numpy float64 on activations read row by row (to 2e-5: the pass's products are float32, as the universality
    pass's)."""
    import torch

    from universal_neurons.core.errors import UserError
    from universal_neurons.measures import activations
    from universal_neurons.measures.comoments import CoMoments
    from universal_neurons.measures.nulls import draw_rng, rotation_matrix
    from universal_neurons.measures.tiled_moments import tile_bytes
    from tiny_zoo import MODEL, N_TOKENS

    d, L = MODEL["d_mlp"], MODEL["n_layer"]
    shift = 4 * MODEL["n_ctx"]
    budget = sum(tile_bytes(d, d, True, shift, 10)) + 1000  # one layer pair at a time
    untiled = CoMoments(d * L, d * L, shift=shift, block_rows=N_TOKENS // 10, max_bytes=budget)
    with pytest.raises(UserError, match="above max_bytes"):  # the untiled pass refuses this budget
        untiled.update(*np.random.default_rng(0).standard_normal((2, N_TOKENS, d * L)))
    (whole, info_whole), _ = _tiny_statistics(tiny, models, 1e12)
    (tiled, info), ms = _tiny_statistics(tiny, models, budget)
    assert info_whole["passes"] == 1 and info_whole["tiles"] == 3
    assert info["tiles"] == 3 * L * L and info["passes"] >= 2 * L * L
    assert set(tiled) == set(whole) and "real_nl" in tiled and info["newline_kept"] > 0
    for k in whole:
        np.testing.assert_allclose(tiled[k], whole[k], rtol=1e-6, atol=1e-6, equal_nan=True, err_msg=k)
    assert np.isnan(whole["real"][:, 5]).all() and np.isfinite(whole["real"][:, 6]).all()  # the dead neuron

    # independent: activations at the kept positions, row by row, and numpy float64 correlations
    plan = activations.plan_pass(ms, ["ref", "p1", "p2", "control"], np.asarray(tiny["rows"].tokens), N_TOKENS)
    acts = [[] for _ in ms]
    for r0 in range(plan.n_rows):
        toks, m = torch.from_numpy(plan.tokens[r0:r0 + 1].astype(np.int64)), torch.from_numpy(plan.mask(r0, r0 + 1))
        for k, model in enumerate(ms):
            per = {}
            activations.run_hooks(model, toks, m, activations.mlp_points(model), lambda l, a: per.__setitem__(l, a.double().numpy()))
            acts[k].append(np.hstack([per[l] for l in range(L)]))
    a, bs = np.vstack(acts[0]), [np.vstack(x) for x in acts[1:3]]
    assert len(a) == N_TOKENS
    with np.errstate(invalid="ignore", divide="ignore"):
        for p, b in enumerate(bs):
            r = np.corrcoef(a.T, b.T)[:d * L, d * L:]
            want = np.where(np.isnan(r).all(1), np.nan, np.nanmax(np.where(np.isnan(r), -np.inf, r), axis=1))
            np.testing.assert_allclose(tiled["real"][p], want, atol=2e-5, equal_nan=True)
            rotated = np.hstack([b[:, l * d:(l + 1) * d] @ rotation_matrix(d, "gaussian-rows", draw_rng(0, 0, l)).T
                                 for l in range(L)])
            r = np.corrcoef(a.T, rotated.T)[:d * L, d * L:]
            want = np.where(np.isnan(r).all(1), np.nan, np.nanmax(np.where(np.isnan(r), -np.inf, r), axis=1))
            np.testing.assert_allclose(tiled["draws"][0, p], want, atol=2e-5, equal_nan=True)


def test_the_hungarian_rule_and_its_row_at_a_size_too_large():
    """Exact (with its 30 bootstrap draws) at the default zoo's size; the full-data matching but no bootstrap at
    GPT2-small's against one partner; neither at GPT2-medium's, where the table's row says so."""
    from universal_neurons.book.chapters import robustness as chapter

    assert chapter.hungarian_plan([1024] * 2, [[1024] * 2] * 3)[:2] == (True, chapter.BOOT_HUNGARIAN)
    assert chapter.hungarian_plan([3072] * 12, [[3072] * 12])[:2] == (True, 0)
    full, boot, work = chapter.hungarian_plan([4096] * 24, [[4096] * 24])
    assert (full, boot) == (False, 0) and work == 24 * 24 * 4096 ** 3 > chapter.HUNGARIAN_WORK
    row = chapter._share_row("null", "Hungarian", None, None, None, np.zeros((1, 3)), 0.5)
    assert row["95% interval %"] == chapter.NOT_COMPUTED and np.isnan(row["share %"])
    note = chapter.hungarian_note({"hungarian": {"computed": False, "boot_draws": 0, "work": work}})
    assert "not computed" in note and f"{work:.2g}" in note

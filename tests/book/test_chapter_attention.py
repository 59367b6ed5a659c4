"""The attention chapter: the random-baseline tail, the ablation summary and the claim on hand-made data (where it
holds and where it does not), and its numbers on the smoke zoo against numpy recomputations of its cached
ablations and of the scores."""

import numpy as np
import pandas as pd
import pytest

from universal_neurons.book.chapters import attention as chapter


def test_random_tail_is_the_share_of_random_directions_as_high():
    rnd = np.zeros((4, 2, 2))
    rnd[:, 1, 0] = [0.1, 0.2, 0.3, 0.4]
    rnd[:, 1, 1] = [1.0, 2.0, 3.0, 4.0]
    scores = pd.DataFrame({"neuron_layer": [0, 0, 0], "neuron": [1, 2, 3], "head_layer": [1, 1, 1],
                           "head": [0, 0, 1], "score": [0.25, 0.5, 2.0]})
    tail = chapter.random_tail(scores, rnd)
    brute = [np.mean(rnd[:, 1, h] >= s) for h, s in zip(scores["head"], scores["score"])]
    np.testing.assert_allclose(tail.to_numpy(), brute)


def test_random_sentence():
    assert chapter.random_sentence(0.0, 10000) == "none of 10,000 random unit directions scores as high for that head"
    assert chapter.random_sentence(0.0012, 500).startswith("a share 0.0012 of 500 random")


def _ablation(sign):
    rng = np.random.default_rng(0)
    act = rng.normal(size=500)
    return pd.DataFrame({"row": np.arange(500) // 10, "activation": act, "bos_attn_change": -sign * 0.1 * np.maximum(act, 0) + 1e-3 * rng.normal(size=500),
                         "out_norm_change": sign * 0.5 * np.maximum(act, 0) + 1e-3 * rng.normal(size=500)})


def test_ablation_summary_and_claim():
    abl = _ablation(+1)
    s = chapter.ablation_summary(abl)
    assert s["r(act, Δ BOS attention)"] == pytest.approx(np.corrcoef(abl["activation"], abl["bos_attn_change"])[0, 1])
    fire = abl["activation"] > 0
    assert s["Δ BOS attention, firing"] == pytest.approx(abl.loc[fire, "bos_attn_change"].mean())
    assert s["share firing"] == pytest.approx(fire.mean())
    assert chapter.deactivates(s) and not chapter.deactivates(chapter.ablation_summary(_ablation(-1)))
    flat = abl.assign(out_norm_change=0.0)
    assert chapter.ablation_summary(flat)["r(act, Δ output norm)"] == 0.0 and not chapter.deactivates(
        chapter.ablation_summary(flat))


def test_row_bootstrap_is_the_correlation_of_resampled_rows():
    abl = _ablation(+1)
    boot = chapter.row_bootstrap_r(abl, n=3, seed=4)
    counts = np.random.default_rng(4).multinomial(50, np.full(50, 1 / 50), size=3)
    for k in range(3):  # the rows repeated as often as drawn, the correlation recomputed from scratch
        idx = np.concatenate([np.flatnonzero(abl["row"].to_numpy() == r).repeat(c) for r, c in enumerate(counts[k])])
        t = abl.iloc[np.sort(idx)]
        for j, col in enumerate(("bos_attn_change", "out_norm_change")):
            assert boot[k, j] == pytest.approx(np.corrcoef(t["activation"], t[col])[0, 1], rel=1e-9)


def test_the_deactivation_claim_is_direction_only_at_best():
    assert chapter.deactivation_evidence(_ablation(+1), "p").verdict == "direction only"  # the paper prints no r
    assert chapter.deactivation_evidence(_ablation(-1), "p").verdict == "does not hold"
    rng = np.random.default_rng(1)
    noise = _ablation(+1).assign(bos_attn_change=rng.normal(size=500), out_norm_change=rng.normal(size=500))
    ev = chapter.deactivation_evidence(noise, "p")
    assert ev.interval[0] < 0 < ev.interval[1] and ev.verdict == "does not hold"


def test_the_deactivation_claim_needs_a_pair_selected_by_more_than_chance():
    """An untrained model's strongest pair responds to its neuron mechanically: the pair's score must also be beyond
    the best of its candidates under random output directions."""
    from scipy import stats

    rnd = np.random.default_rng(3).normal(0.0, 0.2, size=20000)  # random directions' scores for the head
    p = chapter.best_of_random_p(0.9, rnd, 1024)
    z = (0.9 - rnd.mean()) / rnd.std(ddof=1)
    assert p == pytest.approx(1 - stats.norm.cdf(z) ** 1024, rel=1e-6)
    # by simulation: the best of 1024 draws from the same normal reaches 0.9 about that often
    best = np.random.default_rng(4).normal(0.0, 0.2, size=(4000, 1024)).max(axis=1)
    assert abs(np.mean(best >= 0.9) - p) < 0.02
    clean = _ablation(+1)
    assert chapter.deactivation_evidence(clean, "p", p_best=1e-6, n_candidates=1024).verdict == "direction only"
    ev = chapter.deactivation_evidence(clean, "p", p_best=0.4, n_candidates=1024)  # as for an untrained model
    assert ev.verdict == "does not hold" and "best of its 1,024 candidate neurons" in ev.rule


def test_the_bos_ratio_rule():
    null = np.linspace(0.9, 1.2, 101)  # the same ratio at non-BOS positions; its 95% quantile is 1.185
    assert chapter.ratio_evidence(19.4, null, 8).verdict == "holds"
    assert chapter.ratio_evidence(3.49, null, 8).verdict == "direction only"  # short of half the paper's 19.4x
    assert chapter.ratio_evidence(1.07, null, 8).verdict == "does not hold"  # as an untrained model: inside noise
    ev = chapter.ratio_evidence(9.7, null, 8)
    assert ev.magnitude == pytest.approx(19.4 / 2) and ev.noise == pytest.approx(np.quantile(null, 0.95))
    assert ev.verdict == "holds" and "9.7x" in ev.rule
    assert chapter.ratio_evidence(30.0, np.array([]), 8).verdict == "not testable here"


def test_pairs_note():
    best = pd.DataFrame({"deactivates": [True, False, False]})
    assert chapter.pairs_note(best, 1, 2).startswith("Of the 3 strongest pairs of the reference, 1 has both")
    assert "2 have both" in chapter.pairs_note(best.assign(deactivates=True).head(2), 0, 2)


def test_an_untrained_model_gives_no_holds(one_thread, tmp_path):
    """An untrained model of the release zoo's shape: its strongest pair's ablation and its BOS ratio."""
    from universal_neurons.measures import attention
    from universal_neurons.runs.control import save_untrained
    from universal_neurons.models.loading import load_model
    from universal_neurons.data.tokenizer import load_tokenizer

    m = load_model(str(save_untrained("zoo/release/seed-0", tmp_path / "m", seed=3)))
    bos = load_tokenizer("zoo/release/tokenizer").bos_token_id
    rng = np.random.default_rng(0)
    tokens = np.concatenate([np.full((8, 1), bos), rng.integers(0, m.cfg.d_vocab, size=(8, 63))], axis=1)
    top = attention.top_pairs(attention.bos_scores(m, bos), 1).iloc[0]
    abl = attention.path_ablation(m, tokens, int(top["neuron_layer"]), int(top["neuron"]), int(top["head_layer"]),
                           int(top["head"]), batch_rows=8)
    norms = attention.position_out_norms(m, tokens, batch_rows=8)
    ratio = attention.ratio_frame(norms)
    verdicts = {chapter.deactivation_evidence(abl, "top").verdict,
                chapter.ratio_evidence(float(ratio["ratio"].median()), attention.position_null(norms), len(ratio)).verdict}
    assert "holds" not in verdicts


@pytest.mark.slow
def test_chapter_on_the_smoke_zoo(smoke, smoke_zoo, one_thread):
    ch = chapter.compute("smoke")
    g, abl, best = ch.glue, ch.data["ablations"], ch.data["best"]
    ref = ch.data["reference"]
    top = abl[(abl["model"] == ref) & (abl["pair"] == g["att_pair"])]
    assert len(top) == 4096 // 64 * 32  # book.attention_tokens=4096 in rows of 64; destinations: the second half
    assert g["att_r_bos"] == pytest.approx(np.corrcoef(top["activation"], top["bos_attn_change"])[0, 1])
    assert g["att_score"] == pytest.approx(ch.data["scores"]["score"].max())
    assert list(best["score"]) == sorted(best["score"], reverse=True) and len(best) == g["att_n_ablated"] == 3
    assert g["att_median_ratio"] == pytest.approx(ch.tables["ratio"]["ratio"].median(), abs=1e-3)
    assert len(ch.tables["seeds"]) == g["att_n_seeds"] == len(smoke.seeds) - 1

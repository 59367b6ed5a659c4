"""The attention chapter: the random-baseline tail, the ablation summary and the claim on hand-made data (where it
holds and where it does not), and its numbers on the smoke zoo against numpy recomputations of its cached
ablations and of the scores."""

import numpy as np
import pandas as pd
import pytest

from universal_neurons.chapters import attention as chapter


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
    return pd.DataFrame({"activation": act, "bos_attn_change": -sign * 0.1 * np.maximum(act, 0) + 1e-3 * rng.normal(size=500),
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

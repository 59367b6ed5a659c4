"""The entropy chapter: effects, the share through the LayerNorm scale and the verdicts on hand-made runs (each
where the claim holds and where it does not), twins and candidates from small tables, and its numbers on the smoke
zoo against the cached runs recomputed with numpy."""

import numpy as np
import pandas as pd
import pytest

from universal_neurons import paper
from universal_neurons.chapters import entropy as chapter


def _runs(d_free=0.4, d_frozen=0.1, d_scale=0.2, d_anti=-0.3, band=(0.05, -0.02)):
    """Fixed-activation runs whose entropy rises linearly from 2.0 by d over the values."""
    vals = np.array(paper.ENTROPY_VALUES)
    span = (vals - vals[0]) / (vals[-1] - vals[0])
    rows = []

    def add(role, layer, neuron, scale, d_ent, d_sc):
        rows.append({"model": "m", "role": role, "layer": layer, "neuron": neuron, "scale": scale,
                     "condition": "clean", "value": np.nan, "loss": 3.0, "entropy": 2.0, "recip_rank": 0.3,
                     "ln_scale": 1.0, "activation": 0.1})
        for v, s in zip(vals, span):
            rows.append({"model": "m", "role": role, "layer": layer, "neuron": neuron, "scale": scale,
                         "condition": "fixed", "value": v, "loss": 3.0 + 0.1 * s, "entropy": 2.0 + d_ent * s,
                         "recip_rank": 0.3 - 0.01 * s, "ln_scale": 1.0 + d_sc * s, "activation": v})

    add("entropy (paper's view)", 1, 5, "free", d_free, d_scale)
    add("entropy (paper's view)", 1, 5, "frozen", d_frozen, 0.0)
    add("anti-entropy", 1, 7, "free", d_anti, -d_scale)
    add("anti-entropy", 1, 7, "frozen", d_anti / 2, 0.0)
    for k, d in enumerate(band):
        add("random", 0, 10 + k, "free", d, 0.0)
    return pd.DataFrame(rows)


def test_effects_and_share_through_the_scale():
    eff = chapter.effects(_runs())
    row = eff[(eff["role"] == "entropy (paper's view)") & (eff["scale"] == "free")].iloc[0]
    assert row["d_entropy"] == pytest.approx(0.4) and row["d_ln_scale"] == pytest.approx(0.2)
    assert row["d_loss"] == pytest.approx(0.1) and row["d_recip_rank"] == pytest.approx(-0.01)
    vals = np.array(paper.ENTROPY_VALUES)
    assert row["entropy_slope"] == pytest.approx(0.4 / (vals[-1] - vals[0]))  # a line: its slope exactly
    assert chapter.total_and_direct(eff, "entropy (paper's view)") == pytest.approx((0.4, 0.1))
    assert np.isnan(chapter.total_and_direct(eff, "no such role")).all()


def test_verdicts_hold_and_fail():
    assert chapter.verdicts(chapter.effects(_runs())) == {"band": "holds", "together": "holds", "scale": "holds",
                                                            "anti": "holds"}
    v = chapter.verdicts(chapter.effects(_runs(d_free=0.04, d_frozen=0.035, d_scale=-0.1, d_anti=0.2)))
    assert v == {"band": "does not hold", "together": "does not hold", "scale": "does not hold",
                 "anti": "does not hold"}


def test_twin_and_role_rows():
    neurons = pd.DataFrame({"layer": [0, 1], "neuron": [3, 4], "max_sim_layer_p1": [1, 0],
                            "max_sim_neuron_p1": [9, 2], "max_corr_p1": [0.8, 0.3],
                            "max_sim_layer_p2": [0, 0], "max_sim_neuron_p2": [1, 1], "max_corr_p2": [0.5, 0.6]})
    assert chapter.twin(neurons, 0, 3, 1) == (1, 9, 0.8) and chapter.twin(neurons, 1, 4, 2) == (0, 1, 0.6)
    cands = pd.DataFrame({"layer": [0, 0, 1, 1], "neuron": [0, 1, 0, 1], "rank_paper": [4, 1, 2, 3],
                          "rank_null": [1, 4, 3, 2]})
    assert list(chapter.role_rows(cands, 1)["neuron"]) == [1, 0]  # top by either view, paper rank first
    assert len(chapter.role_rows(cands, 4)) == 4


def test_paper_table_reads_the_published_rows():
    t = chapter.paper_table(paper.universal_tables())
    assert len(t) == sum(len(v) for v in paper.ENTROPY_NEURONS.values())
    small = t[(t["model"] == "GPT2-small-a") & (t["neuron"] == "L11.3030")].iloc[0]
    published = paper.universal_tables()["GPT2-small-a"]
    row = published[(published["layer"] == 11) & (published["neuron"] == 3030)].iloc[0]
    assert small["in the published universal table"] and small["excess_corr"] == row["excess_corr"]
    assert not t[t["neuron"] == "L23.945"]["in the published universal table"].iloc[0]


@pytest.mark.slow
def test_chapter_on_the_smoke_zoo(smoke, smoke_zoo, one_thread):
    ch = chapter.compute("smoke")
    g, runs = ch.glue, ch.data["runs"]
    ref = ch.data["reference"]
    ent = runs[(runs["model"] == ref) & (runs["role"] == "entropy (paper's view)") & (runs["scale"] == "free")
               & (runs["condition"] == "fixed")].sort_values("value")
    assert g["ent_d_entropy"] == pytest.approx(ent["entropy"].iloc[-1] - ent["entropy"].iloc[0])
    assert g["ent_neuron"] == f"L{ch.data['ent'][0]}.{ch.data['ent'][1]}"
    c = ch.data["cands"]
    assert c.sort_values("rank_paper").iloc[0][["layer", "neuron"]].tolist() == list(ch.data["ent"])
    # the random band: book.entropy_random (5 in the smoke profile) neurons, free scale only
    rnd = runs[(runs["model"] == ref) & (runs["role"] == "random")]
    assert rnd.groupby(["layer", "neuron"]).ngroups == g["ent_n_random"] == 5 and set(rnd["scale"]) == {"free"}
    assert len(ch.tables["seeds"]) == g["ent_n_seeds"] == len(smoke.seeds) - 1
    assert g["ent_n_tokens"] == 2048 // 64 * 63  # book.entropy_tokens=2048 in rows of 64: 32 rows, 63 predictions
    again = chapter.compute("smoke")  # cached: the same runs
    pd.testing.assert_frame_equal(again.data["runs"], runs)

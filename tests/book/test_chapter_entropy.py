"""The entropy chapter: effects, the share through the LayerNorm scale and the verdicts on hand-made runs (each
where the claim holds and where it does not), twins and candidates from small tables, and its numbers on the smoke
zoo against the cached runs recomputed with numpy."""

import numpy as np
import pandas as pd
import pytest

from universal_neurons.core import paper
from universal_neurons.book.chapters import entropy as chapter


BAND = (0.05, -0.02, 0.03, -0.04, 0.045, -0.035, 0.04, -0.03)  # eight random neurons' entropy changes


def bound(x):
    """The noise edge, written out: the 97.5% Student-t prediction bound of log|x|, at least max|x|."""
    from scipy import stats

    logs = np.log(np.abs(np.asarray(x, float)))
    n = len(logs)
    return max(np.abs(x).max(), np.exp(logs.mean() + stats.t.ppf(0.975, n - 1) * logs.std(ddof=1) * np.sqrt(1 + 1 / n)))


def _runs(d_free=0.4, d_frozen=0.1, d_scale=0.2, d_anti=-0.3, band=BAND, band_scale=(0.0,) * 8):
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
    for k, (d, ds) in enumerate(zip(band, band_scale)):
        add("random", 0, 10 + k, "free", d, ds)
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


def _verdicts(clean=2.0, **kw):
    return chapter.verdicts(chapter.effects(_runs(**kw)), clean)


def test_verdicts_hold_and_fail():
    edge = bound(BAND)
    assert 0.05 < edge < 0.1  # beyond the band's largest: the entropy neuron is picked among many
    # the entropy neuron at 8x the random band, 75% through the scale, its partner at 0.3 the other way: all hold
    assert _verdicts(band_scale=(0.01, -0.02, 0.015, -0.01, 0.02, -0.012, 0.018, -0.011)) == \
        {"band": "holds", "together": "holds", "scale": "holds", "anti": "holds"}
    assert chapter.clean_entropy(_runs()) == 2.0
    # inside the band: no entropy neuron here, so the other three are not testable
    v = _verdicts(d_free=0.04, d_frozen=0.035, d_scale=-0.1, d_anti=0.2)
    assert v == {"band": "does not hold", "together": "not testable here", "scale": "not testable here",
                 "anti": "not testable here"}
    # beyond the band's largest (0.05) but inside its prediction bound: does not hold
    assert _verdicts(d_free=(0.05 + edge) / 2)["band"] == "does not hold"
    # beyond the bound but short of twice the largest (0.1): direction only, the rest still not testable
    assert _verdicts(d_free=(edge + 0.1) / 2)["band"] == "direction only"
    assert _verdicts(d_free=(edge + 0.1) / 2)["anti"] == "not testable here"


def test_the_magnitudes_and_the_noise_of_each_claim():
    scale_band = (0.05, -0.03, 0.04, -0.035, 0.045, -0.025, 0.03, -0.04)
    ev = chapter.evidence(chapter.effects(_runs(band_scale=scale_band)), 2.0)
    assert ev["band"].magnitude == pytest.approx(2 * 0.05) and ev["band"].noise == pytest.approx(bound(BAND))
    assert ev["together"].noise == pytest.approx(bound(scale_band)) and ev["together"].magnitude == pytest.approx(0.1)
    assert ev["scale"].value == pytest.approx((0.4 - 0.1) / 0.4) and ev["scale"].noise == pytest.approx(0.05 / 0.4)
    assert ev["anti"].value == pytest.approx(0.3) and ev["anti"].magnitude == pytest.approx(0.5 * 0.4)
    # the scale moving against the entropy: together does not hold; a move beyond the bound, short of 0.1: direction
    assert _verdicts(d_scale=-0.2, band_scale=scale_band)["together"] == "does not hold"
    assert bound(scale_band) < 0.08
    assert _verdicts(d_scale=0.08, band_scale=scale_band)["together"] == "direction only"
    # most of the change direct: scale share 0.25 < 0.5 but beyond 0.05 / 0.4: direction only; reversed: fails
    assert _verdicts(d_frozen=0.3)["scale"] == "direction only"
    assert _verdicts(d_frozen=0.5)["scale"] == "does not hold"
    # the partner: beyond the bound but short of half the entropy neuron's change (0.2): direction only
    assert _verdicts(d_anti=-0.15)["anti"] == "direction only"
    assert _verdicts(d_anti=0.3)["anti"] == "does not hold"
    assert _verdicts(d_anti=-0.04)["anti"] == "does not hold"  # inside the band


def test_a_tiny_absolute_effect_never_holds():
    """As on an untrained model: 0.001 nats beyond a band of 0.0004 is far below 1% of an 8.3-nat entropy."""
    tiny = tuple(x / 100 for x in BAND)  # up to 0.0005
    v = _verdicts(clean=8.3, d_free=0.002, d_frozen=0.0, d_scale=0.001, d_anti=-0.001, band=tiny)
    assert v["band"] == "direction only" and {v[k] for k in ("together", "scale", "anti")} == {"not testable here"}
    ev = chapter.evidence(chapter.effects(_runs(d_free=0.002, band=tiny)), 8.3)
    assert ev["band"].magnitude == pytest.approx(0.083) and "not testable here" in ev["anti"].rule
    assert "inside" not in ev["anti"].untestable and "0.002" in ev["anti"].untestable
    # picked among many, a neuron just above the largest of a few random ones is noise
    assert _verdicts(clean=8.3, d_free=0.00055, band=tiny)["band"] == "does not hold"


def test_partner_note_only_when_the_partner_passes_the_band_rule():
    eff = chapter.effects(_runs(d_free=0.04, d_anti=0.9))
    note = chapter.partner_note(eff, 2.0)
    assert "L1.7" in note and "+0.900" in note
    assert chapter.partner_note(chapter.effects(_runs(d_anti=-0.06)), 2.0) == ""


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


@pytest.fixture(scope="module")
def untrained(tmp_path_factory):
    """A fresh, untrained model of the release zoo's shape and tokenizer (the negative control's kind)."""
    from universal_neurons.runs.control import save_untrained
    from universal_neurons.models.loading import load_model

    path = save_untrained("zoo/release/seed-0", tmp_path_factory.mktemp("untrained") / "m", seed=7)
    return load_model(str(path))


def test_an_untrained_model_gives_no_holds(untrained, one_thread):
    """The chapter's own choices (the book's top neuron, its partner, 10 random neurons) on an untrained model,
    fixed-activation runs on random tokens: no claim holds."""
    from universal_neurons.measures import entropy

    m = untrained
    tokens = np.random.default_rng(0).integers(0, m.cfg.d_vocab, size=(4, 64))
    c = entropy.candidates(m)
    ent = tuple(int(x) for x in c.sort_values("rank_paper").iloc[0][["layer", "neuron"]])
    al, an, _ = entropy.anti_partner(m, *ent)
    chosen = {"entropy (paper's view)": ent, "anti-entropy": (al, an),
              **{f"random {i}": x for i, x in enumerate(entropy.random_neurons(m, 10, exclude=[ent, (al, an)]))}}
    parts = []
    for role, (l, n) in chosen.items():
        for scale in (("free", "frozen") if not role.startswith("random") else ("free",)):
            df = entropy.fixed_activation(m, tokens, l, n, freeze_scale=scale == "frozen", batch_rows=4)
            parts.append(df.assign(model="u", role=role.split(" ")[0] if role.startswith("random") else role,
                                   layer=l, neuron=n, scale=scale))
    runs = pd.concat(parts, ignore_index=True)
    ev = chapter.evidence(chapter.effects(runs), chapter.clean_entropy(runs))
    assert "holds" not in {e.verdict for e in ev.values()}, {k: e.rule for k, e in ev.items()}
    assert ev["band"].value < 0.01 * chapter.clean_entropy(runs)  # the floor an untrained model cannot reach

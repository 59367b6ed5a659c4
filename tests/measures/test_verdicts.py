"""The verdict protocol on synthetic evidence whose answer is known, and Holm's adjustment against a direct
computation (statsmodels' definition, written out)."""

import itertools

import numpy as np
import pytest

from universal_neurons.measures import verdicts


def _effect(value, interval=None, sign=+1, untestable=""):
    """A claim whose paper effect is 10 (magnitude: half of it, 5) against a noise band whose edge is 1."""
    return verdicts.Evidence("effect", value, sign=sign, magnitude=5.0 * sign, magnitude_words="half the paper's 10",
                      noise=1.0 * sign, noise_words="the largest random neuron", interval=interval,
                      untestable=untestable)


def test_paper_size_outside_noise_holds():
    assert _effect(10.0).verdict == verdicts.HOLDS
    assert _effect(10.0, interval=(8.0, 12.0)).verdict == verdicts.HOLDS


def test_a_fifth_of_the_paper_is_direction_only():
    assert _effect(2.0).verdict == verdicts.DIRECTION
    assert _effect(2.0, interval=(1.5, 2.5)).verdict == verdicts.DIRECTION


def test_reversed_or_inside_noise_does_not_hold():
    assert _effect(-10.0).verdict == verdicts.FAILS
    assert _effect(0.5).verdict == verdicts.FAILS
    # the point is past the magnitude but its interval reaches into the noise band: not outside noise
    assert _effect(6.0, interval=(0.5, 11.0)).verdict == verdicts.FAILS


def test_no_qualifying_neuron_is_not_testable():
    e = _effect(10.0, untestable="no neuron passes the paper's rule")
    assert e.verdict == verdicts.UNTESTABLE
    assert "not testable here: no neuron passes" in e.rule


def test_negative_claims_mirror_positive_ones():
    assert _effect(-10.0, sign=-1).verdict == verdicts.HOLDS
    assert _effect(-2.0, sign=-1).verdict == verdicts.DIRECTION
    assert _effect(10.0, sign=-1).verdict == verdicts.FAILS


def test_without_a_paper_magnitude_the_best_is_direction_only():
    e = verdicts.Evidence("r", -0.9, sign=-1, noise=0.0, noise_words="zero")
    assert e.verdict == verdicts.DIRECTION
    assert "the paper gives none" in e.rule


def test_p_value_must_clear_alpha():
    base = dict(quantity="median percentile", value=90.0, magnitude=75.0, magnitude_words="outer quarter")
    assert verdicts.Evidence(**base, p=0.001, p_words="Holm").verdict == verdicts.HOLDS
    assert verdicts.Evidence(**base, p=0.2, p_words="Holm").verdict == verdicts.FAILS
    assert verdicts.Evidence(**base, p=float("nan"), p_words="Holm").verdict == verdicts.FAILS


def test_nan_value_does_not_hold():
    assert _effect(float("nan")).verdict == verdicts.FAILS


def test_rule_prints_the_numbers():
    rule = _effect(2.0).rule
    assert "≥ 5" in rule and "half the paper's 10" in rule and "above 1" in rule and "ours 2" in rule


def _holm_direct(p):
    """Holm by its definition: p_(i) adjusted = max_{j <= i} min(1, (m - j + 1) p_(j)) over the sorted p-values."""
    order = sorted(range(len(p)), key=lambda i: p[i])
    out = [0.0] * len(p)
    for rank, i in enumerate(order):
        out[i] = max(min(1.0, (len(p) - j) * p[order[j]]) for j in range(rank + 1))
    return out


@pytest.mark.parametrize("seed", range(5))
def test_holm_matches_its_definition(seed):
    p = np.random.default_rng(seed).uniform(0, 0.2, size=6)
    np.testing.assert_allclose(verdicts.holm(p), _holm_direct(list(p)))


def test_holm_keeps_nan_and_rejects_what_bonferroni_rejects():
    p = [0.04, np.nan, 0.001, 0.03]
    adj = verdicts.holm(p)
    assert np.isnan(adj[1])
    np.testing.assert_allclose(adj[[0, 2, 3]], _holm_direct([0.04, 0.001, 0.03]))
    # the paper-era uncorrected p = 0.040 no longer passes once six tests share the question
    assert verdicts.holm([0.040, 0.5, 0.5, 0.5, 0.5, 0.5])[0] > verdicts.ALPHA


def test_counts_and_summary():
    vs = [verdicts.HOLDS, verdicts.FAILS, verdicts.FAILS, verdicts.UNTESTABLE]
    assert verdicts.count(vs) == {verdicts.HOLDS: 1, verdicts.DIRECTION: 0, verdicts.FAILS: 2, verdicts.UNTESTABLE: 1}
    assert verdicts.summary(vs) == "1 holds, 0 direction only, 2 do not hold, 1 not testable here"


def test_glue_verdict_and_holds_here():
    glue = {}
    assert verdicts.glue_verdict(glue, "prop_verdict_kurt", _effect(10.0)) == verdicts.HOLDS
    assert glue["prop_rule_kurt"] == _effect(10.0).rule
    text = verdicts.holds_here([("claim a", _effect(10.0)), ("claim b", _effect(-3.0))], ["A note."])
    assert "1 holds, 0 direction only, 1 does not hold" in text and text.endswith("A note.")
    with pytest.raises(ValueError):
        verdicts.rule_key("prop_kurt")


def test_every_verdict_reachable():
    seen = {_effect(v, untestable=u).verdict for v, u in itertools.product((10.0, 2.0, -1.0), ("", "x"))}
    assert seen == set(verdicts.VERDICTS)


def test_a_missing_number_prints_as_n_a_without_its_unit():
    e = verdicts.Evidence("ratio", float("nan"), magnitude=1.5, magnitude_words="half the paper's", noise=float("nan"),
                   noise_words="no universal neuron", untestable="none pass", unit="x")
    assert "above n/a (no universal neuron)" in e.rule and "≥ 1.5x" in e.rule and "n/ax" not in e.rule


def test_prediction_bound_against_a_direct_computation():
    from scipy import stats

    x = np.array([0.1, 0.2, 0.15, 0.3, 0.12])
    logs = np.log(x)
    want = np.exp(logs.mean() + stats.t.ppf(0.975, 4) * logs.std(ddof=1) * np.sqrt(1.2))
    assert verdicts.prediction_bound(x) == pytest.approx(want) and want > x.max()
    assert verdicts.prediction_bound([0.3, 0.3, 0.3]) == pytest.approx(0.3)  # no spread: the largest
    assert np.isnan(verdicts.prediction_bound([0.1]))
    # calibration: a new draw from the same log-normal null exceeds the bound about 2.5% of the time
    rng = np.random.default_rng(0)
    hits = [rng.lognormal(size=1)[0] > verdicts.prediction_bound(rng.lognormal(size=5)) for _ in range(4000)]
    assert 0.01 < np.mean(hits) < 0.04

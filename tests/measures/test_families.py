"""Neuron families: VR against pandas groupby and a per-pair loop, the MI against numpy, each family rule."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from universal_neurons import UserError
from universal_neurons.core import paper
from universal_neurons.measures.families import (PositionFiring,
                                                 VarianceReduction,
                                                 alphabet_neurons,
                                                 best_features,
                                                 family_rules,
                                                 position_mutual_information,
                                                 position_neurons,
                                                 top_neurons,
                                                 unigram_families,
                                                 variance_reduction)


def _random_case(seed=0, t=600, f=6, n=5):
    """Y [t, f] 0/1 (feature 2 never occurs, feature 5 always does), V [t, n] (neuron 3 constant, 4 offset)."""
    rng = np.random.default_rng(seed)
    y = (rng.random((t, f)) < rng.uniform(0.05, 0.5, f)).astype(np.int8)
    y[:, 2], y[:, 5] = 0, 1
    v = rng.normal(size=(t, n)) + 2.0 * y[:, [0, 1, 3, 4, 0]]
    v[:, 3] = 0.7
    v[:, 4] += 1000.0  # a mean far above the spread: no cancellation allowed
    return y, v.astype(np.float32)


def _vr_loop(y, v):
    """VR by a per-pair loop in float64 (population variances), NaN where a side is empty or Var(v) = 0."""
    v = v.astype(np.float64)
    out = np.full((y.shape[1], v.shape[1]), np.nan)
    for i in range(y.shape[1]):
        mask = y[:, i] == 1
        b = mask.mean()
        for j in range(v.shape[1]):
            var = v[:, j].var()
            if 0 < mask.sum() < len(mask) and var > 1e-12:
                out[i, j] = 1 - ((1 - b) * v[~mask, j].var() + b * v[mask, j].var()) / var
    return out


def test_vr_matches_pandas_groupby():
    y, v = _random_case()
    vr, skipped = variance_reduction(sp.csr_matrix(y), v, [f"f{i}" for i in range(6)], [f"n{j}" for j in range(5)])
    for i, j in [(0, 0), (1, 1), (3, 2), (4, 4), (0, 4)]:
        df = pd.DataFrame({"v": v[:, j].astype(np.float64), "y": y[:, i]})
        g = df.groupby("y")["v"]
        within = (g.var(ddof=0) * g.size()).sum() / len(df)
        assert vr.loc[f"f{i}", f"n{j}"] == pytest.approx(1 - within / df["v"].var(ddof=0), abs=1e-9)
    assert skipped == ["f2"]
    dense, _ = variance_reduction(y.astype(bool), v, [f"f{i}" for i in range(6)], [f"n{j}" for j in range(5)])
    pd.testing.assert_frame_equal(dense, vr)


def test_vr_without_cancellation():
    """A float64 mean 1e8 times the spread, streamed: the shift keeps VR exact to ~1e-9."""
    rng = np.random.default_rng(3)
    y = rng.random((4000, 1)) < 0.3
    v = rng.normal(size=(4000, 1)) + y + 1e8
    acc = VarianceReduction(["a"])
    for lo in range(0, 4000, 1000):
        acc.update(y[lo:lo + 1000], v[lo:lo + 1000])
    assert acc.result().iloc[0, 0] == pytest.approx(_vr_loop(y.astype(int), v - 1e8)[0, 0], abs=1e-9)


def test_streamed_vr_equals_per_pair_loop():
    y, v = _random_case(seed=1)
    acc = VarianceReduction([f"f{i}" for i in range(6)])
    for lo, hi in [(0, 100), (100, 100), (100, 350), (350, 600)]:  # an empty chunk too
        acc.update(sp.csr_matrix(y[lo:hi]), v[lo:hi])
    vr = acc.result()
    expected = np.delete(_vr_loop(y, v), 2, axis=0)
    assert list(vr.index) == ["f0", "f1", "f3", "f4", "f5"] and acc.skipped == ["f2"]
    np.testing.assert_allclose(vr.to_numpy(), expected, atol=1e-9, equal_nan=True)
    assert vr[3].isna().all() and vr.loc["f5"].isna().all()  # constant neuron, always-true feature
    assert vr.loc["f0", 0] > 0.3 and vr.loc["f0", 4] > 0.3 and abs(vr.loc["f3", 0]) < 0.05  # planted, not


def test_vr_bad_input():
    acc = VarianceReduction(["a", "b"])
    with pytest.raises(UserError, match="no tokens"):
        acc.result()
    with pytest.raises(UserError, match="0 and 1"):
        acc.update(sp.csr_matrix(np.array([[2, 0]])), np.ones((1, 3)))
    with pytest.raises(UserError, match="features of shape"):
        acc.update(sp.csr_matrix(np.ones((2, 3))), np.ones((2, 3)))
    with pytest.raises(UserError, match="unique"):
        VarianceReduction(["a", "a"])


def test_mi_matches_numpy():
    rng = np.random.default_rng(2)
    pos = np.tile(np.arange(16), 40)
    pre = rng.normal(size=(len(pos), 4))
    pre[:, 0] += np.where(pos < 4, 3.0, -3.0)  # a position neuron
    pre[:, 2] = -1.0  # never fires
    acc = PositionFiring()
    for lo, hi in [(0, 200), (200, 640)]:
        acc.update(pre[lo:hi], pos[lo:hi])
    mi = acc.mutual_information()
    fire = (pre > 0).astype(np.float64)
    p = fire.mean(axis=0)
    expected = np.zeros(4)
    for j in range(4):
        terms = []
        for k in range(16):
            q = fire[pos == k, j].mean()
            t1 = q * np.log(q / p[j]) if q > 0 else 0.0
            t2 = (1 - q) * np.log((1 - q) / (1 - p[j])) if q < 1 else 0.0
            terms.append(t1 + t2)
        expected[j] = np.mean(terms)
    np.testing.assert_allclose(mi, expected, atol=1e-12)
    np.testing.assert_allclose(position_mutual_information(pre, pos), expected, atol=1e-12)
    assert mi[0] > 0.3 and mi[2] == 0 and mi[1] < 0.05
    with pytest.raises(UserError, match="non-negative"):
        position_mutual_information(pre[:2], np.array([-1, 0]))


def _vr_table():
    data = {"n0": [0.9, 0.1, 0.0, 0.30], "n1": [0.6, 0.5, 0.0, 0.20], "n2": [0.55, 0.2, 0.4, np.nan],
            "n3": [0.1, 0.45, 0.1, np.nan]}
    return pd.DataFrame(data, index=["u:the", "a", "prev:is_year", "syn:NOUN"])


def test_best_features():
    best = best_features(_vr_table())
    assert list(best["feature"]) == ["u:the", "u:the", "u:the", "a"]
    assert list(best["vr"]) == [0.9, 0.6, 0.55, 0.45]
    only = best_features(_vr_table(), ["syn:NOUN", "missing"])
    assert only.loc["n0", "feature"] == "syn:NOUN" and only["vr"].isna().sum() == 2


def test_unigram_rule():
    vr = _vr_table()
    fam = unigram_families(vr, ["u:the", "missing"])
    assert list(fam["feature"]) == ["u:the"] and fam.loc[0, "neurons"] == ["n0", "n1", "n2"]
    assert unigram_families(vr, ["u:the"], min_neurons=4).empty
    assert unigram_families(vr, ["u:the"], vr_min=0.7).empty


def test_alphabet_rule():
    vr = _vr_table()
    kept = alphabet_neurons(vr, ["a", "b"])
    assert kept.to_dict("records") == [{"feature": "a", "neuron": "n1", "vr": 0.5}]
    assert alphabet_neurons(vr, ["a"], vr_min=0.5).empty
    assert paper.ALPHABET_VR == 0.37


def test_top_neurons_rule():
    vr = _vr_table()
    top = top_neurons(vr, ["prev:is_year"], n=1)
    assert top.to_dict("records") == [{"neuron": "n2", "feature": "prev:is_year", "vr": 0.4}]
    assert len(top_neurons(vr, ["prev:is_year"], n=25)) == 4
    assert top_neurons(vr, ["never-occurred"]).empty


def test_position_rule():
    kurt = pd.Series({"n0": 1.5, "n1": 1.8, "n2": 6.0})
    mi = pd.Series({"n0": 0.1, "n1": 0.4, "n2": 0.9, "n3": 1.0})
    pos = position_neurons(kurt, mi)
    assert list(pos["neuron"]) == ["n1", "n0"]
    assert position_neurons(kurt, mi, kurt_max=1.0).empty
    with pytest.raises(UserError, match="mutual information"):
        position_neurons(pd.Series({"x": 1.0}), mi)


def test_family_rules_bundle():
    vr = _vr_table()
    out = family_rules(vr, unigram=["u:the"], letters=["a"], previous=["prev:is_year"], syntax=["syn:NOUN"],
                       kurtosis=pd.Series({"n0": 1.0}), mi=pd.Series({"n0": 0.2}), top_syntax=1)
    assert set(out) == {"unigram", "alphabet", "previous", "syntax", "position"}
    assert list(out["syntax"]["neuron"]) == ["n0"] and len(out["position"]) == 1
    assert set(family_rules(vr)) == {"unigram", "alphabet", "previous", "syntax"}
    with pytest.raises(UserError, match="both"):
        family_rules(vr, kurtosis=pd.Series({"n0": 1.0}))

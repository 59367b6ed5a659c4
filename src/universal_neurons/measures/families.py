"""Neuron families (paper section 4.3): what explains each neuron.

`VarianceReduction` streams, chunk by chunk, the float64 sums that the variance reduction

    VR(v, y) = 1 - [(1 - b) Var(v | y=0) + b Var(v | y=1)] / Var(v),   b = mean(y)   (population variances)

needs for every (feature, neuron) pair at once: per neuron n, Σv, Σv² over all tokens, and per pair n1, Σv, Σv²
over the tokens where the feature is true, as Yᵀ V and Yᵀ (V∘V) with Y a sparse [tokens, features] 0/1 matrix.
Values are shifted per neuron by a constant fixed at the first chunk (its mean, or its exact value where the neuron
is constant there), which leaves VR unchanged and avoids the Σv² - n·mean² cancellation. Since
(1-b)Var0 + bVar1 = [Σv² - (Σv - Σ1 v)²/n0 - (Σ1 v)²/n1] / n, no loop over pairs is needed.

`position_mutual_information` (and its streaming form `PositionFiring`) scores position neurons; `best_features`
labels each neuron; `unigram_families`, `alphabet_neurons`, `top_neurons`, `position_neurons` and `family_rules`
apply the paper's rules, with their thresholds (from `paper`) as parameters.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..core import paper
from ..core.errors import UserError


def _labels(labels, n: int, what: str) -> list:
    if labels is None:
        return list(range(n))
    labels = list(labels)
    if len(labels) != n:
        raise UserError(f"{len(labels)} {what} names for {n} {what}s: give one name per {what}")
    return labels


class VarianceReduction:
    """Streaming VR of every (feature, neuron) pair: `update(y, v)` per chunk of tokens, then `result()`."""

    def __init__(self, features: Sequence[str], neurons: Sequence | None = None):
        self.features = list(features)
        if len(set(self.features)) != len(self.features):
            raise UserError("feature names repeat: give each feature a unique name")
        self.neurons = None if neurons is None else list(neurons)
        self.n = 0
        self.shift = self.s1 = self.s2 = self.n1 = self.c1 = self.c2 = None

    def update(self, y, v) -> None:
        """Add one chunk: y [T, features] sparse (or dense) 0/1, v [T, neurons] activations."""
        v = np.asarray(v, dtype=np.float64)
        if v.ndim != 2:
            raise UserError(f"activations of shape {v.shape}: give a [tokens, neurons] matrix")
        y = sp.csr_matrix(y, dtype=np.float64)
        if y.shape != (v.shape[0], len(self.features)):
            raise UserError(f"features of shape {y.shape} for {v.shape[0]} tokens and {len(self.features)} "
                            "features: give a [tokens, features] matrix")
        y.sum_duplicates()
        if y.nnz and not np.all(y.data == 1.0):
            raise UserError("feature matrix with values other than 0 and 1: give a binary [tokens, features] matrix")
        if self.shift is None:
            n_neurons = v.shape[1]
            self.neurons = _labels(self.neurons, n_neurons, "neuron")
            if v.shape[0] == 0:
                return
            const = np.all(v == v[:1], axis=0)
            self.shift = np.where(const, v[0], v.mean(axis=0))
            self.s1, self.s2 = np.zeros(n_neurons), np.zeros(n_neurons)
            self.n1 = np.zeros(len(self.features), dtype=np.int64)
            self.c1, self.c2 = (np.zeros((len(self.features), n_neurons)) for _ in range(2))
        if v.shape[1] != len(self.shift):
            raise UserError(f"chunk with {v.shape[1]} neurons after chunks with {len(self.shift)}: "
                            "give the same neurons in every chunk")
        u = v - self.shift
        u2 = u * u
        yt = y.T.tocsr()
        self.n += v.shape[0]
        self.s1 += u.sum(axis=0)
        self.s2 += u2.sum(axis=0)
        self.n1 += np.asarray(y.sum(axis=0), dtype=np.int64).ravel()
        self.c1 += yt @ u
        self.c2 += yt @ u2

    @property
    def skipped(self) -> list[str]:
        """Features that never occurred: left out of `result()`."""
        if self.n1 is None:
            return list(self.features)
        return [f for f, k in zip(self.features, self.n1) if k == 0]

    def result(self) -> pd.DataFrame:
        """VR [features that occurred, neurons]; NaN where a side is empty (feature always true) or Var(v) = 0."""
        if self.n == 0:
            raise UserError("no tokens were added: call update() with at least one chunk of tokens")
        keep = self.n1 > 0
        n1 = self.n1[keep].astype(np.float64)[:, None]
        n0 = self.n - n1
        c1, c2 = self.c1[keep], self.c2[keep]
        total = self.s2 - self.s1 ** 2 / self.n  # n Var(v)
        with np.errstate(divide="ignore", invalid="ignore"):
            within = (self.s2 - c2) - (self.s1 - c1) ** 2 / n0 + c2 - c1 ** 2 / n1  # n [(1-b)Var0 + b Var1]
            vr = 1.0 - within / total
        vr[:, ~(total > 0)] = np.nan
        vr[(n0 == 0).ravel()] = np.nan
        return pd.DataFrame(vr, index=pd.Index([f for f, k in zip(self.features, keep) if k], name="feature"),
                            columns=pd.Index(self.neurons, name="neuron"))


def variance_reduction(y, v, features: Sequence[str], neurons: Sequence | None = None) -> tuple[pd.DataFrame, list]:
    """VR of every (feature, neuron) pair in one chunk, and the features skipped because they never occur."""
    acc = VarianceReduction(features, neurons)
    acc.update(y, v)
    return acc.result(), acc.skipped


def best_features(vr: pd.DataFrame, names: Sequence[str] | None = None) -> pd.DataFrame:
    """Per neuron its best feature (highest VR) and that VR, among `names` (default: all rows of `vr`)."""
    sub = vr if names is None else vr.loc[[f for f in names if f in vr.index]]
    values = sub.to_numpy(dtype=np.float64)
    out = pd.DataFrame({"feature": pd.Series([None] * values.shape[1], dtype=object), "vr": np.nan},
                       index=vr.columns.copy())
    if values.shape[0]:
        live = ~np.all(np.isnan(values), axis=0)
        best = np.nanargmax(np.where(np.isnan(values), -np.inf, values), axis=0)
        out.loc[live, "feature"] = np.asarray(sub.index, dtype=object)[best[live]]
        out.loc[live, "vr"] = values[best[live], np.flatnonzero(live)]
    return out


def unigram_families(vr: pd.DataFrame, names: Sequence[str], vr_min: float = paper.UNIGRAM_VR,
                     min_neurons: int = paper.UNIGRAM_MIN_NEURONS) -> pd.DataFrame:
    """Unigram features with VR > vr_min on at least min_neurons neurons: feature, n_neurons, neurons (best first)."""
    rows = []
    for f in (f for f in names if f in vr.index):
        hits = vr.loc[f][vr.loc[f] > vr_min].sort_values(ascending=False)
        if len(hits) >= min_neurons:
            rows.append({"feature": f, "n_neurons": len(hits), "neurons": list(hits.index)})
    out = pd.DataFrame(rows, columns=["feature", "n_neurons", "neurons"])
    return out.sort_values(["n_neurons", "feature"], ascending=[False, True], ignore_index=True)


def alphabet_neurons(vr: pd.DataFrame, letters: Sequence[str], vr_min: float = paper.ALPHABET_VR) -> pd.DataFrame:
    """The best neuron of each letter feature, kept if its VR > vr_min: feature, neuron, vr."""
    rows = []
    for f in (f for f in letters if f in vr.index):
        row = vr.loc[f].dropna()
        if len(row) and row.max() > vr_min:
            rows.append({"feature": f, "neuron": row.idxmax(), "vr": float(row.max())})
    return pd.DataFrame(rows, columns=["feature", "neuron", "vr"])


def top_neurons(vr: pd.DataFrame, names: Sequence[str], n: int = paper.TOP_PREVIOUS) -> pd.DataFrame:
    """The n neurons of highest best VR among the features `names` (previous-token, syntax): neuron, feature, vr."""
    best = best_features(vr, names).dropna(subset=["vr"])
    best = best.sort_values("vr", ascending=False, kind="stable").head(n)
    return best.rename_axis("neuron").reset_index()[["neuron", "feature", "vr"]]


def position_neurons(kurtosis: pd.Series, mi: pd.Series, kurt_max: float = paper.POSITION_KURTOSIS) -> pd.DataFrame:
    """Neurons of `kurtosis` (the universal ones, not excess) below kurt_max, ranked by MI: neuron, kurtosis, mi."""
    missing = kurtosis.index.difference(mi.index)
    if len(missing):
        raise UserError(f"{len(missing)} neurons have a kurtosis but no mutual information (e.g. {missing[0]}): "
                        "give the MI of every neuron")
    keep = kurtosis[kurtosis < kurt_max]
    out = pd.DataFrame({"kurtosis": keep, "mi": mi.loc[keep.index]})
    return out.sort_values("mi", ascending=False, kind="stable").rename_axis("neuron").reset_index()


def family_rules(vr: pd.DataFrame, *, unigram: Sequence[str] = (), letters: Sequence[str] = (),
                 previous: Sequence[str] = (), syntax: Sequence[str] = (), kurtosis: pd.Series | None = None,
                 mi: pd.Series | None = None, unigram_vr: float = paper.UNIGRAM_VR,
                 unigram_min_neurons: int = paper.UNIGRAM_MIN_NEURONS, alphabet_vr: float = paper.ALPHABET_VR,
                 top_previous: int = paper.TOP_PREVIOUS, top_syntax: int = paper.TOP_SYNTAX,
                 kurt_max: float = paper.POSITION_KURTOSIS) -> dict[str, pd.DataFrame]:
    """The paper's family rules, one table per family (position only when kurtosis and mi are given)."""
    out = {"unigram": unigram_families(vr, unigram, unigram_vr, unigram_min_neurons),
           "alphabet": alphabet_neurons(vr, letters, alphabet_vr),
           "previous": top_neurons(vr, previous, top_previous),
           "syntax": top_neurons(vr, syntax, top_syntax)}
    if (kurtosis is None) != (mi is None):
        raise UserError("position neurons need both kurtosis and mi: give both or neither")
    if kurtosis is not None:
        out["position"] = position_neurons(kurtosis, mi, kurt_max)
    return out


class PositionFiring:
    """Streaming counts of firing (pre > 0) per position and neuron, for `mutual_information()`."""

    def __init__(self):
        self.tokens = np.zeros(0, dtype=np.int64)  # [positions]
        self.fires = None  # [positions, neurons]

    def update(self, pre, positions) -> None:
        """Add one chunk: pre [T, neurons] pre-activations, positions [T] non-negative integers."""
        pre, positions = np.asarray(pre), np.asarray(positions)
        if pre.ndim != 2 or positions.shape != (pre.shape[0],):
            raise UserError(f"pre-activations {pre.shape} and positions {positions.shape}: give [T, neurons] and [T]")
        if positions.size and (not np.issubdtype(positions.dtype, np.integer) or positions.min() < 0):
            raise UserError("positions must be non-negative integers (the index of each token in its row)")
        n_pos = max(len(self.tokens), int(positions.max()) + 1 if positions.size else 0)
        if self.fires is None:
            self.fires = np.zeros((0, pre.shape[1]), dtype=np.int64)
        if pre.shape[1] != self.fires.shape[1]:
            raise UserError(f"chunk with {pre.shape[1]} neurons after chunks with {self.fires.shape[1]}: "
                            "give the same neurons in every chunk")
        if n_pos > len(self.tokens):
            self.tokens = np.pad(self.tokens, (0, n_pos - len(self.tokens)))
            self.fires = np.pad(self.fires, ((0, n_pos - len(self.fires)), (0, 0)))
        self.tokens += np.bincount(positions, minlength=n_pos)
        np.add.at(self.fires, positions, (pre > 0).astype(np.int64))

    def mutual_information(self) -> np.ndarray:
        """MI [neurons] = mean over seen positions of p_pos log(p_pos/p) + (1-p_pos) log((1-p_pos)/(1-p)) (nats).

        p_pos is a neuron's firing rate at that position, p its rate over all tokens; 0 log 0 = 0.
        """
        if self.fires is None or self.tokens.sum() == 0:
            raise UserError("no tokens were added: call update() with at least one chunk of tokens")
        seen = self.tokens > 0
        p_pos = self.fires[seen] / self.tokens[seen][:, None]
        p = self.fires.sum(axis=0) / self.tokens.sum()
        return (_xlogy_ratio(p_pos, p) + _xlogy_ratio(1 - p_pos, 1 - p)).mean(axis=0)


def _xlogy_ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a log(a/b) with 0 log 0 = 0 (a > 0 implies b > 0 here)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(a > 0, a * np.log(a / b), 0.0)


def position_mutual_information(pre, positions) -> np.ndarray:
    """MI between position and firing (pre > 0) per neuron, in nats (paper.md section 4); see `PositionFiring`."""
    acc = PositionFiring()
    acc.update(pre, positions)
    return acc.mutual_information()

"""Neuron explorer records against independent computations: a brute-force top-k, numpy histograms and
direct slices of one `run_with_cache` over all rows of a tiny random model, numpy W_out @ W_U, and the
one-line UserErrors."""

import json

import numpy as np
import pytest
import torch

from universal_neurons import UserError
from universal_neurons.explorer.records import Histogram, TopK, histogram_edges, neuron_records, vocab_effect
from random_models import random_model

torch.set_num_threads(1)

NEURONS = [(0, 3), (0, 40), (1, 7), (1, 63)]
BEFORE, AFTER = 3, 2


def decode(i):
    return f"t{i}"


@pytest.fixture(scope="module")
def model():
    return random_model(n_layers=2, processed=False)


@pytest.fixture(scope="module")
def data():
    """Tokens [12, 16], a mask without position 0 and a few random positions, two sources."""
    rng = np.random.default_rng(1)
    tokens = rng.integers(0, 50, size=(12, 16))
    mask = np.ones_like(tokens, dtype=bool)
    mask[:, 0] = False
    mask[rng.integers(0, 12, 10), rng.integers(0, 16, 10)] = False
    sources = np.zeros_like(tokens)
    sources[6:] = 1
    return tokens, mask, sources


@pytest.fixture(scope="module")
def acts(model, data):
    """Independent: {(layer, neuron): activations [12, 16]} from one run_with_cache over all rows."""
    _, cache = model.run_with_cache(torch.tensor(data[0]))
    return {(l, n): cache[f"blocks.{l}.mlp.hook_post"][:, :, n].numpy() for l, n in NEURONS}


@pytest.fixture(scope="module")
def records(model, data):
    tokens, mask, sources = data
    return neuron_records(model, tokens, mask, NEURONS, decode, sources=sources, source_names=["a", "b"],
                            k=20, before=BEFORE, after=AFTER, n_sample=60, batch_rows=5)


def brute_top(a, mask, k):
    """(values, (row, pos) pairs) of the k highest kept activations, earliest position first on ties."""
    rows, pos = np.nonzero(mask)
    v = a[rows, pos]
    order = np.lexsort((rows * a.shape[1] + pos, -v))[:k]
    return v[order], list(zip(rows[order], pos[order]))


def test_top_k_equals_brute_force(records, acts, data):
    _, mask, _ = data
    for key, rec in records.items():
        values, where = brute_top(acts[key], mask, 20)
        assert [w["max_value"] for w in rec["top"]] == pytest.approx(values.tolist(), abs=1e-5)
        for w, (r, p) in zip(rec["top"], where):
            assert w["doc_index"] == r
            # the example's position: the window starts at max(0, p - BEFORE), so max_index = min(p, BEFORE)
            assert w["max_index"] == min(p, BEFORE)
        assert len(rec["top"]) == 20


def test_windows_are_slices_of_tokens_and_activations(records, acts, data):
    tokens, mask, sources = data
    clipped = {"start": 0, "end": 0}
    for key, rec in records.items():
        values, where = brute_top(acts[key], mask, 20)
        for w, (r, p) in zip(rec["top"], where):
            start, end = max(0, p - BEFORE), min(16, p + AFTER + 1)
            clipped["start"] += start == 0 and p < BEFORE
            clipped["end"] += end == 16 and p + AFTER >= 16
            assert w["tokens"] == [f"t{t}" for t in tokens[r, start:end]]
            expect = [float(a) if m else None for a, m in zip(acts[key][r, start:end], mask[r, start:end])]
            assert [v is None for v in w["values"]] == [v is None for v in expect]
            assert [v for v in w["values"] if v is not None] == pytest.approx(
                [v for v in expect if v is not None], abs=1e-5)
            assert w["values"][w["max_index"]] == w["max_value"]
            assert mask[r, p], "a left-out position is never an example"
            assert w["source"] == ["a", "b"][sources[r, p]]
    assert clipped["start"] and clipped["end"], "the fixture should exercise clipping at both row edges"


def test_quantile_windows_are_slices(records, acts, data):
    tokens, mask, _ = data
    for key, rec in records.items():
        for q in rec["quantiles"]:
            for w in q["examples"]:
                r = w["doc_index"]
                # find the example's position: the only p whose clipped window matches length and max_index
                cands = [p for p in range(16) if min(p, BEFORE) == w["max_index"]
                         and min(16, p + AFTER + 1) - max(0, p - BEFORE) == len(w["tokens"])
                         and mask[r, p] and abs(acts[key][r, p] - w["max_value"]) < 1e-5]
                assert len(cands) == 1
                p = cands[0]
                start = max(0, p - BEFORE)
                assert w["tokens"] == [f"t{t}" for t in tokens[r, start:start + len(w["tokens"])]]


def test_histogram_and_frequency(records, acts, data):
    _, mask, _ = data
    edges = histogram_edges()
    assert len(edges) == 72 and np.all(np.diff(edges) > 0) and edges[0] == -0.2 and edges[-1] == 1e3
    for key, rec in records.items():
        a = acts[key][mask].astype(np.float64)
        h = rec["histogram"]
        assert h["edges"] == edges.tolist()
        counts, _ = np.histogram(np.clip(a, edges[0], edges[-1]), edges)
        assert h["counts"] == counts.tolist()
        assert sum(h["counts"]) == rec["n_tokens"] == mask.sum()
        assert h["below"] == (a < edges[0]).sum() and h["above"] == (a > edges[-1]).sum()
        assert rec["frequency"] == pytest.approx((a > 0).mean())


def test_histogram_end_bins():
    h = Histogram(1, histogram_edges())
    h.update(torch.tensor([[-5.0], [-0.2], [0.0], [5e-4], [1e3], [2e3]], dtype=torch.float64))
    counts = h.counts[0].tolist()
    assert counts[0] == 2 and counts[10] == 2 and counts[-1] == 2 and sum(counts) == 6
    assert (h.below.item(), h.above.item(), h.positive.item(), h.n) == (1, 1, 3, 6)


def test_quantiles_inside_ranges_and_reproducible(model, data, records, acts):
    tokens, mask, sources = data
    for key, rec in records.items():
        top = rec["top"][0]["max_value"]
        for q in rec["quantiles"]:
            lo, hi = q["range"]
            assert 0 <= lo < hi <= top * (1 + 1e-6)
            assert 1 <= len(q["examples"]) <= 3
            for w in q["examples"]:
                assert lo <= w["max_value"] <= hi
        assert [q["range"][0] for q in rec["quantiles"]] == sorted((q["range"][0] for q in rec["quantiles"]),
                                                                 reverse=True)
    kw = dict(sources=sources, source_names=["a", "b"], k=20, before=BEFORE, after=AFTER, n_sample=60)
    again = neuron_records(model, tokens, mask, NEURONS, decode, batch_rows=64, **kw)
    assert json.dumps(list(again.values())) == json.dumps(list(records.values()))  # batching does not matter
    other = neuron_records(model, tokens, mask, NEURONS, decode, batch_rows=64, seed=1, **kw)
    assert [r["quantiles"] for r in other.values()] != [r["quantiles"] for r in records.values()]


def test_quantile_bins_with_every_position_sampled(model, data, acts):
    """With n_sample >= kept positions, the non-empty ranges are those of the brute-force activations."""
    tokens, mask, _ = data
    recs = neuron_records(model, tokens, mask, NEURONS, decode, n_sample=10_000, n_bins=4, per_bin=2)
    for key, rec in recs.items():
        a = acts[key][mask]
        edges = np.linspace(0, a.max(), 5)
        counts, _ = np.histogram(a[a >= 0], edges)
        want = [[edges[b], edges[b + 1]] for b in reversed(range(4)) if counts[b]]
        got = [q["range"] for q in rec["quantiles"]]
        assert np.allclose(got, want, rtol=1e-5, atol=1e-7) and len(got) == len(want)
        assert [len(q["examples"]) for q in rec["quantiles"]] == [min(2, counts[b]) for b in reversed(range(4))
                                                                  if counts[b]]


def test_topk_ties_keep_earliest_positions():
    top = TopK(2, 3)
    top.update(torch.tensor([[1.0, 0.0], [2.0, 0.0]]), torch.tensor([0, 1]))
    top.update(torch.tensor([[2.0, 0.0], [1.0, 0.0], [3.0, 0.0]]), torch.tensor([5, 6, 7]))
    assert top.values.tolist() == [[3.0, 2.0, 2.0], [0.0, 0.0, 0.0]]
    assert top.index.tolist() == [[7, 1, 5], [0, 1, 5]]


def test_vocab_effect(model):
    w = model.W_out.detach().double().numpy()
    w_u = model.W_U.detach().double().numpy()
    for l, n in NEURONS:
        effect = w[l, n] @ w_u
        order = np.argsort(-effect)
        got = vocab_effect(model, l, n, decode, k=5)
        assert [t for t, _ in got["top"]] == [f"t{i}" for i in order[:5]]
        assert [t for t, _ in got["bottom"]] == [f"t{i}" for i in order[::-1][:5]]
        assert [v for _, v in got["top"]] == pytest.approx(effect[order[:5]].tolist(), abs=1e-5)
        assert [v for _, v in got["bottom"]] == pytest.approx(effect[order[::-1][:5]].tolist(), abs=1e-5)


def test_records_are_json_with_plain_types(records):
    rec = records[1, 7]
    text = json.dumps(rec, allow_nan=False)
    assert json.loads(text) == rec
    assert set(rec) == {"layer", "neuron", "n_tokens", "frequency", "histogram", "top", "quantiles", "vocab"}
    assert set(rec["top"][0]) == {"tokens", "values", "max_value", "max_index", "doc_index", "source"}
    assert list(records) == NEURONS


@pytest.mark.parametrize("change, needle", [
    (dict(neurons=[(2, 0)]), "outside the model"),
    (dict(neurons=[(0, 64)]), "outside the model"),
    (dict(neurons=[(0, -1)]), "outside the model"),
    (dict(mask=np.ones((12, 15), dtype=bool)), "mask"),
    (dict(k=0), "k=0"),
    (dict(before=-1), "before=-1"),
    (dict(after=-2), "after=-2"),
])
def test_bad_input_is_one_line_user_error(model, data, change, needle):
    tokens, mask, _ = data
    args = dict(model=model, tokens=tokens, mask=mask, neurons=NEURONS, decode=decode) | change
    with pytest.raises(UserError) as err:
        neuron_records(**args)
    assert needle in str(err.value) and "\n" not in str(err.value) and "; " in str(err.value)

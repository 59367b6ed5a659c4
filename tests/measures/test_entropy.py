"""Entropy neurons (`universal_neurons.measures.entropy`) on a tiny random model, checked against direct numpy float64
computations written here (never against the module itself)."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.special import logsumexp
from scipy.stats import kurtosis, rankdata

from universal_neurons.measures import entropy
from universal_neurons.core.errors import UserError
from random_models import random_model

LAYER, NEURON = 1, 3
POST = f"blocks.{LAYER}.mlp.hook_post"
SCALE = "ln_final.hook_scale"


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread):
    """Tiny models: one thread (conftest's fixture, restored afterwards)."""


@pytest.fixture(scope="module")
def model():
    return random_model(n_layers=2)


@pytest.fixture(scope="module")
def tokens():
    return torch.randint(0, 50, (4, 16), generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def clean(model, tokens):
    """Clean logits, hook_post of LAYER and the final LayerNorm scale."""
    with torch.no_grad():
        logits, cache = model.run_with_cache(tokens, names_filter=[POST, SCALE])
    return logits.clone(), cache[POST].clone(), cache[SCALE].clone()


def assert_no_hooks(model, tokens, clean_logits):
    assert all(not hp.fwd_hooks and not hp.bwd_hooks for hp in model.hook_dict.values())
    assert model.context_level == 0
    with torch.no_grad():
        assert torch.equal(model(tokens), clean_logits)


def spy(model, monkeypatch):
    """Wrap `model.hooks` so that every forward pass run under it also records hook_post of LAYER and the
    final LayerNorm scale, after the module's own hooks."""
    calls, orig = [], model.hooks

    def hooks(fwd_hooks=(), *args, **kwargs):
        rec = {}
        calls.append(rec)
        extra = [(POST, lambda a, hook: rec.__setitem__("post", a.clone())),
                 (SCALE, lambda a, hook: rec.__setitem__("scale", a.clone()))]
        return orig(list(fwd_hooks) + extra, *args, **kwargs)

    monkeypatch.setattr(model, "hooks", hooks)
    return calls


@pytest.mark.parametrize("freeze", [False, True])
def test_intervention_sets_only_the_neuron_and_scale(model, tokens, clean, monkeypatch, freeze):
    logits0, post0, scale0 = clean
    values = [-0.17, 2.0, 5.0]
    calls = spy(model, monkeypatch)
    df = entropy.fixed_activation(model, tokens, LAYER, NEURON, values, freeze_scale=freeze, batch_rows=4)
    monkeypatch.undo()
    assert len(calls) == 1 + len(values)  # one batch: a clean pass, then one per value
    assert torch.equal(calls[0]["post"], post0) and torch.equal(calls[0]["scale"], scale0)
    others = torch.arange(post0.shape[-1]) != NEURON
    for rec, v in zip(calls[1:], values):
        post = rec["post"]
        assert torch.all(post[..., NEURON] == torch.tensor(v, dtype=post.dtype))
        assert torch.equal(post[..., others], post0[..., others])
        if freeze:
            assert torch.equal(rec["scale"], scale0)
        else:  # v is far from the clean activation: the scale moves
            assert not torch.allclose(rec["scale"], scale0, atol=1e-4)
    if freeze:
        np.testing.assert_allclose(df["ln_scale"], df["ln_scale"].iloc[0], rtol=1e-12)
    assert_no_hooks(model, tokens, logits0)


def test_no_hook_left_after_an_exception(model, tokens, clean, monkeypatch):
    logits0 = clean[0]
    n = {"calls": 0}
    forward = model.unembed.forward

    def failing(*args, **kwargs):  # fails in the first intervened pass, with the hooks attached
        n["calls"] += 1
        if n["calls"] == 2:
            raise RuntimeError("boom")
        return forward(*args, **kwargs)

    monkeypatch.setattr(model.unembed, "forward", failing)
    with pytest.raises(RuntimeError, match="boom"):
        entropy.fixed_activation(model, tokens, LAYER, NEURON, [1.0, 2.0], freeze_scale=True)
    monkeypatch.undo()
    assert n["calls"] == 2
    assert_no_hooks(model, tokens, logits0)
    bad = tokens.clone()
    bad[1, 5] = 50
    with pytest.raises(UserError, match="token id 50 is outside the vocabulary"):
        entropy.fixed_activation(model, bad, LAYER, NEURON)
    with pytest.raises(UserError, match="finite numbers"):
        entropy.fixed_activation(model, tokens, LAYER, NEURON, [1.0, float("nan")])
    assert_no_hooks(model, tokens, logits0)


def numpy_metrics(logits, tokens):
    """loss, entropy, reciprocal rank (means over all positions but the last) and, float64."""
    x = logits[:, :-1].double().numpy()
    t = tokens[:, 1:].numpy()
    logp = x - logsumexp(x, axis=-1, keepdims=True)
    loss = -np.take_along_axis(logp, t[..., None], -1)[..., 0]
    ent = -(np.exp(logp) * logp).sum(-1)
    order = np.argsort(-x, axis=-1, kind="stable")
    rank = np.argmax(order == t[..., None], axis=-1)  # position of the true token, 0 = top
    return loss.mean(), ent.mean(), (1.0 / (rank + 1)).mean()


@pytest.mark.parametrize("freeze", [False, True])
def test_metrics_match_numpy(model, tokens, clean, freeze):
    logits0, post0, scale0 = clean
    values = [-0.17, 0.0, 3.0]
    df = entropy.fixed_activation(model, tokens, LAYER, NEURON, values, freeze_scale=freeze, batch_rows=3)
    assert list(df["condition"]) == ["clean", "fixed", "fixed", "fixed"]
    assert df.attrs["n_positions"] == 4 * 15
    expected = [(*numpy_metrics(logits0, tokens), scale0[:, :-1].double().mean().item(),
                 post0[:, :-1, NEURON].double().mean().item())]
    for v in values:
        seen = {}

        def set_neuron(act, hook, v=v):
            act[:, :, NEURON] = v
            return act

        def scale(act, hook):
            out = scale0 if freeze else act
            seen["scale"] = out[:, :-1].double().mean().item()
            return out

        with torch.no_grad():
            logits = model.run_with_hooks(tokens, fwd_hooks=[(POST, set_neuron), (SCALE, scale)])
        expected.append((*numpy_metrics(logits, tokens), seen["scale"], v))
    got = df[["loss", "entropy", "recip_rank", "ln_scale", "activation"]].to_numpy()
    np.testing.assert_allclose(got, np.array(expected), rtol=2e-5, atol=1e-6)
    assert np.isnan(df["value"].iloc[0]) and list(df["value"].iloc[1:]) == values


def test_candidates_match_numpy(model):
    w_out = model.W_out.detach().double().numpy()
    w_u = model.W_U.detach().double().numpy()
    u, s, _ = np.linalg.svd(w_u)
    df = entropy.candidates(model)
    assert len(df) == 2 * 64 and list(df["layer"].unique()) == [0, 1]
    df5 = entropy.candidates(model, layers=[1], n_null=5)
    for n_null, table in [(entropy.N_NULL, df), (5, df5)]:
        bottom = u[:, np.argsort(s)[:n_null]]
        for l, n in [(1, 0), (1, 17), (1, 63)]:
            w = w_out[l, n]
            row = table[(table["layer"] == l) & (table["neuron"] == n)].iloc[0]
            assert row["null_fraction"] == pytest.approx(np.sum((bottom.T @ w) ** 2) / (w @ w), rel=1e-9)
            cos = np.array([w @ w_u[:, v] / np.linalg.norm(w) / np.linalg.norm(w_u[:, v])
                            for v in range(w_u.shape[1])])
            assert row["vocab_var"] == pytest.approx(np.var(cos), rel=1e-9)
            assert row["vocab_kurt"] == pytest.approx(kurtosis(cos, fisher=False), rel=1e-9)
            w_in = model.W_in.detach().double().numpy()[l, :, n]
            assert row["l2_penalty"] == pytest.approx(w_in @ w_in + w @ w, rel=1e-12)
            assert row["w_out_norm"] == pytest.approx(np.linalg.norm(w), rel=1e-12)
    score = df["w_out_norm"] / np.sqrt(df["vocab_var"])
    np.testing.assert_array_equal(df["rank_paper"], rankdata(-score, method="min"))
    np.testing.assert_array_equal(df["rank_null"], rankdata(-df["null_fraction"], method="min"))
    # the reference code's way: penalty in the top 10% and vocab_kurt <= 10, then the smallest vocab_var first
    cut = np.quantile(df["l2_penalty"], 0.9)
    ok = (df["l2_penalty"] >= cut) & (df["vocab_kurt"] <= 10)
    assert ok.sum() >= 1 and (df["passes_reference"] == ok).all()
    np.testing.assert_array_equal(df.loc[ok, "rank_reference"], rankdata(df.loc[ok, "vocab_var"], method="min"))
    assert df.loc[~ok, "rank_reference"].isna().all()


def test_anti_partner_brute_force(model):
    w_out = model.W_out.detach().double().numpy()
    for layers, pool in [(None, [0, 1]), ([1], [1])]:
        best = (None, None, np.inf)
        w0 = w_out[LAYER, NEURON]
        for l in pool:
            for n in range(w_out.shape[1]):
                if (l, n) != (LAYER, NEURON):
                    c = w0 @ w_out[l, n] / np.linalg.norm(w0) / np.linalg.norm(w_out[l, n])
                    if c < best[2]:
                        best = (l, n, c)
        l, n, c = entropy.anti_partner(model, LAYER, NEURON, layers=layers)
        assert (l, n) == best[:2] and c == pytest.approx(best[2], rel=1e-9) and c < 0


def test_random_neurons(model):
    exclude = [(1, i) for i in range(60)] + [(0, 5)]
    a = entropy.random_neurons(model, n=30, seed=3, exclude=exclude)
    assert len(set(a)) == 30 and all(l in (0, 1) and 0 <= n < 64 for l, n in a)
    assert not set(a) & set(exclude)
    assert a == entropy.random_neurons(model, n=30, seed=3, exclude=exclude)
    assert a != entropy.random_neurons(model, n=30, seed=4, exclude=exclude)
    assert all(l == 1 for l, _ in entropy.random_neurons(model, n=4, layers=[1], exclude=exclude))
    deep = SimpleNamespace(cfg=SimpleNamespace(n_layers=5))
    assert entropy.default_layers(deep) == [3, 4]
    assert entropy.default_layers(SimpleNamespace(cfg=SimpleNamespace(n_layers=1))) == [0]


@pytest.mark.parametrize("centred", [True, False])
def test_frequency_projection_matches_numpy(model, centred):
    counts = np.random.default_rng(0).integers(0, 1000, 50)
    log_freq = np.log((counts + 1) / counts.sum())
    if not centred:  # raw weights: neither W_out's rows nor W_U's rows centred
        g = torch.Generator().manual_seed(1)
        model = SimpleNamespace(cfg=SimpleNamespace(n_layers=2), W_out=torch.randn(2, 64, 32, generator=g) + 0.3,
                                W_U=torch.randn(32, 50, generator=g) + 0.5)
    df = entropy.frequency_projection(model, log_freq)
    w_out = model.W_out.detach().double().numpy()
    w_u = model.W_U.detach().double().numpy()
    f = log_freq - log_freq.mean()
    for l, n in [(0, 9), (1, 40)]:
        d = w_out[l, n] @ w_u
        d = d - d.mean()
        row = df[(df["layer"] == l) & (df["neuron"] == n)].iloc[0]
        assert row["freq_cos"] == pytest.approx(d @ f / np.linalg.norm(d) / np.linalg.norm(f), rel=1e-9)


@pytest.mark.parametrize("call, match", [
    (lambda m: entropy.candidates(m, layers=[2]), r"layer 2 is out of range for a 2-layer model"),
    (lambda m: entropy.candidates(m, n_null=0), r"n_null=0 is outside 1\.\.d_model=32"),
    (lambda m: entropy.candidates(m, n_null=33), r"n_null=33 is outside"),
    (lambda m: entropy.anti_partner(m, 1, 64), r"neuron 64 is out of range for d_mlp=64"),
    (lambda m: entropy.random_neurons(m, n=129), r"cannot draw n=129 distinct neurons from 128"),
    (lambda m: entropy.frequency_projection(m, np.zeros(49)), r"log_freq has shape \(49,\), the model has d_vocab=50"),
    (lambda m: entropy.frequency_projection(m, np.r_[np.zeros(49), -np.inf]), r"log_freq has NaN or inf"),
    (lambda m: entropy.fixed_activation(m, torch.zeros(4, 17, dtype=torch.long), 1, 0), r"pass at least one row of 2 to 16"),
    (lambda m: entropy.fixed_activation(m, torch.zeros(4, 8), 1, 0), r"tokens must be an integer array"),
    (lambda m: entropy.fixed_activation(m, torch.zeros(4, 8, dtype=torch.long), 1, 0, values=[]), r"non-empty list"),
])
def test_user_errors_are_one_line(model, call, match):
    with pytest.raises(UserError, match=match) as err:
        call(model)
    assert "\n" not in str(err.value) and "; pass" in str(err.value)


def test_a_shared_clean_run_gives_the_same_tables_with_one_clean_pass(model, tokens, monkeypatch):
    """Calls sharing `clean` (other neurons, other layers, frozen scale) run each batch's clean pass once and give
    the tables of independent calls."""
    jobs = [(LAYER, NEURON, False), (LAYER, NEURON, True), (0, 3, False)]
    alone = [entropy.fixed_activation(model, tokens, l, n, [0.5, 3.0], freeze_scale=f, batch_rows=2)
             for l, n, f in jobs]
    calls = spy(model, monkeypatch)
    shared = {}
    together = [entropy.fixed_activation(model, tokens, l, n, [0.5, 3.0], freeze_scale=f, batch_rows=2, clean=shared)
                for l, n, f in jobs]
    monkeypatch.undo()
    n_batches = -(-len(tokens) // 2)
    assert len(calls) == n_batches * (1 + 2 * len(jobs))  # one clean pass per batch, two fixed ones per job
    for a, b in zip(alone, together):
        pd.testing.assert_frame_equal(a, b, rtol=1e-12, atol=1e-12)

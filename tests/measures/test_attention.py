"""Attention-deactivation neurons (`universal_neurons.measures.attention`) on a tiny random model: every number is
checked against an independent numpy recomputation from cached activations and the weights."""

import copy

import numpy as np
import pandas as pd
import pytest
import torch

from universal_neurons import UserError
from universal_neurons.measures import attention
from random_models import random_model

BOS = 0
PAIR = dict(layer=1, neuron=41, head_layer=2, head=3)  # a high-scoring pair of the seed-0 model


@pytest.fixture(scope="module")
def model(one_thread):
    return random_model(n_layers=3)


@pytest.fixture(scope="module")
def tokens():
    t = torch.randint(1, 50, (4, 16), generator=torch.Generator().manual_seed(0))
    t[:, 0] = BOS
    return t


def np64(x):
    return x.detach().double().cpu().numpy()


def no_hooks(m):
    return all(not hp.fwd_hooks and not hp.bwd_hooks for hp in m.hook_dict.values())


def clean_cache(m, tokens):
    with torch.inference_mode():
        return m.run_with_cache(tokens)[1]


# ------------------------------------------------------------------------------------------ heuristic score
def test_bos_score_matches_direct_computation(model):
    _, cache = model.run_with_cache(torch.tensor([[BOS]]))
    scores = attention.bos_scores(model, BOS)
    assert list(scores.columns) == attention.SCORE_COLS
    n_pairs = sum(model.W_out.shape[1] * model.cfg.n_heads * (model.cfg.n_layers - 1 - l) for l in range(3))
    assert len(scores) == n_pairs and (scores.head_layer > scores.neuron_layer).all()
    for ln, n, lh, h in [(0, 7, 1, 2), (1, 41, 2, 3), (0, 63, 2, 0)]:
        k = np64(cache[f"blocks.{lh}.attn.hook_k"])[0, 0, h]  # [d_head]
        w = np64(model.W_out)[ln, n]
        want = (w / np.linalg.norm(w)) @ np64(model.W_Q)[lh, h] @ k / np.sqrt(model.cfg.d_head)
        got = scores.query("neuron_layer == @ln and neuron == @n and head_layer == @lh and head == @h").score
        assert len(got) == 1 and got.iloc[0] == pytest.approx(want, rel=1e-5, abs=1e-7)
    arr = attention.bos_score_array(model, BOS)
    assert arr.shape == (3, 64, 3, 4) and np.isnan(arr[1, :, :2]).all() and not np.isnan(arr[0, :, 1:]).any()
    np.testing.assert_allclose(attention.bos_keys(model, BOS).numpy(),
                               np.stack([np64(cache[f"blocks.{l}.attn.hook_k"])[0, 0] for l in range(3)]), rtol=1e-6)


def test_random_scores_shape_seed_and_values(model):
    r = attention.random_scores(model, BOS, n=50, seed=3)
    assert r.shape == (50, 3, 4) and r.dtype == np.float64
    np.testing.assert_array_equal(r, attention.random_scores(model, BOS, n=50, seed=3))
    assert not np.allclose(r, attention.random_scores(model, BOS, n=50, seed=4))
    u = np.random.default_rng(3).standard_normal((50, 32))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    k = attention.bos_keys(model, BOS).double().numpy()[2, 1]
    np.testing.assert_allclose(r[:, 2, 1], u @ np64(model.W_Q)[2, 1] @ k / np.sqrt(8), rtol=1e-6, atol=1e-9)


def test_top_pairs(model):
    s = pd.DataFrame({"neuron_layer": [0, 0, 1], "neuron": [1, 2, 3], "head_layer": [1, 2, 2], "head": [0, 1, 2],
                      "score": [0.1, 0.5, 0.3]})
    assert attention.top_pairs(s, 2)[["neuron", "score"]].values.tolist() == [[2, 0.5], [3, 0.3]]
    top = attention.top_pairs(attention.bos_scores(model, BOS), 5)
    assert len(top) == 5 and top.score.is_monotonic_decreasing


# ------------------------------------------------------------------------------------------- path ablation
def test_zero_w_out_changes_nothing(model, tokens):
    m = copy.deepcopy(model)
    with torch.no_grad():
        m.blocks[PAIR["layer"]].mlp.W_out[PAIR["neuron"]] = 0.0
    df = attention.path_ablation(m, tokens, **PAIR)
    assert (df.activation.abs() > 0).any()
    assert (df[[c for c in df.columns if c.endswith("_change")]] == 0).all().all()
    assert (df.bos_attn_clean == df.bos_attn_ablated).all()


def test_ablated_attention_matches_manual_forward(model, tokens):
    lh, h, start = PAIR["head_layer"], PAIR["head"], 10
    df = attention.path_ablation(model, tokens, **PAIR, start=start)
    assert list(df.columns) == attention.ABLATION_COLS
    cache = clean_cache(model, tokens)
    resid = np64(cache[f"blocks.{lh}.hook_resid_pre"])
    act = np64(cache[f"blocks.{PAIR['layer']}.mlp.hook_post"])[..., PAIR["neuron"]]
    k, v = np64(cache[f"blocks.{lh}.attn.hook_k"])[:, :, h], np64(cache[f"blocks.{lh}.attn.hook_v"])[:, :, h]
    w_out, w_q, b_q = np64(model.W_out)[PAIR["layer"], PAIR["neuron"]], np64(model.W_Q)[lh, h], np64(model.b_Q)[lh, h]
    w_o = np64(model.W_O)[lh, h]
    assert np.abs(df.bos_attn_change).max() > 1e-4  # a non-trivial case
    for r, p in [(0, 10), (1, 13), (3, 15), (2, 11)]:
        x = resid[r, p] - act[r, p] * w_out  # the query input is pre-LN: LNPre (folded) on the ablated vector
        x = x - x.mean()
        x = x / np.sqrt((x ** 2).mean() + model.cfg.eps)
        scores = k[r, :p + 1] @ (x @ w_q + b_q) / np.sqrt(model.cfg.d_head)  # causal: keys 0..p
        pattern = np.exp(scores - scores.max())
        pattern /= pattern.sum()
        z = pattern @ v[r, :p + 1]
        row = df[(df.row == r) & (df.pos == p)].iloc[0]
        assert row.activation == pytest.approx(act[r, p], rel=1e-5, abs=1e-6)
        assert row.bos_attn_ablated == pytest.approx(pattern[0], abs=1e-6)
        assert row.bos_attn_clean == pytest.approx(np64(cache[f"blocks.{lh}.attn.hook_pattern"])[r, h, p, 0],
                                                   abs=1e-7)
        assert row.bos_attn_change == pytest.approx(pattern[0] - row.bos_attn_clean, abs=1e-6)
        assert row.z_norm_ablated == pytest.approx(np.linalg.norm(z), rel=1e-5)
        assert row.out_norm_ablated == pytest.approx(np.linalg.norm(z @ w_o), rel=1e-5)
        z0 = np64(cache[f"blocks.{lh}.attn.hook_z"])[r, p, h]
        assert row.z_norm_clean == pytest.approx(np.linalg.norm(z0), rel=1e-5)
        assert row.out_norm_clean == pytest.approx(np.linalg.norm(z0 @ w_o), rel=1e-5)


def test_only_the_query_changes(model, tokens):
    lh, h, start = PAIR["head_layer"], PAIR["head"], 9
    seen = {}

    def keep(a, hook):
        seen.setdefault(hook.name, []).append(a.detach().clone())

    names = [f"blocks.{lh}.attn.hook_{x}" for x in ("k", "v", "q", "pattern", "z")]
    flag = model.cfg.use_split_qkv_input
    with model.hooks(fwd_hooks=[(n, keep) for n in names]):
        attention.path_ablation(model, tokens, **PAIR, start=start, batch_rows=4)
    assert no_hooks(model) and model.cfg.use_split_qkv_input == flag
    get = lambda x: seen[f"blocks.{lh}.attn.hook_{x}"]  # noqa: E731
    assert all(len(get(x)) == 2 for x in ("k", "v", "q", "pattern", "z"))  # clean run, ablated run
    for x in ("k", "v"):
        torch.testing.assert_close(get(x)[0], get(x)[1], rtol=0, atol=0)
    q0, q1 = get("q")  # [batch, pos, head, d_head]
    torch.testing.assert_close(q0[:, :start], q1[:, :start], rtol=0, atol=0)
    others = [i for i in range(4) if i != h]
    torch.testing.assert_close(q0[:, :, others], q1[:, :, others], rtol=0, atol=0)
    assert (q0[:, start:, h] - q1[:, start:, h]).abs().max() > 1e-5
    p0, p1 = get("pattern")  # [batch, head, q, k]
    torch.testing.assert_close(p0[:, :, :start], p1[:, :, :start], rtol=0, atol=0)
    z0, z1 = get("z")
    torch.testing.assert_close(z0[:, :start], z1[:, :start], rtol=0, atol=0)


def test_flag_restored_and_no_hooks_after_an_error(model, tokens):
    calls = []

    def boom(a, hook):
        calls.append(1)
        if len(calls) == 2:  # the ablated run of the first batch
            raise RuntimeError("mid-run failure")

    for flag in (False, True):
        model.set_use_split_qkv_input(flag)
        with pytest.raises(RuntimeError, match="mid-run"):
            with model.hooks(fwd_hooks=[(f"blocks.{PAIR['head_layer']}.attn.hook_pattern", boom)]):
                attention.path_ablation(model, tokens, **PAIR)
        assert model.cfg.use_split_qkv_input is flag and no_hooks(model)
        calls.clear()
    model.set_use_split_qkv_input(False)
    attention.path_ablation(model, tokens, **PAIR)
    assert model.cfg.use_split_qkv_input is False and no_hooks(model)


def test_statistics_cover_all_batches(model, tokens):
    one = attention.path_ablation(model, tokens, **PAIR, batch_rows=1, start=12)
    four = attention.path_ablation(model, tokens.numpy(), **PAIR, batch_rows=4, start=12)
    assert len(one) == 4 * (16 - 12)
    assert one[["row", "pos"]].values.tolist() == [[r, p] for r in range(4) for p in range(12, 16)]
    pd.testing.assert_frame_equal(one, four, check_exact=False, rtol=1e-5, atol=1e-6)
    default = attention.path_ablation(model, tokens, **PAIR, batch_rows=3)
    assert len(default) == 4 * 8 and default.pos.min() == 8 and sorted(default.row.unique()) == [0, 1, 2, 3]


# --------------------------------------------------------------------------------------------- BOS values
def test_bos_value_ratio_matches_numpy(model, tokens):
    df = attention.bos_value_ratio(model, tokens, batch_rows=3)
    assert list(df.columns) == attention.VALUE_COLS and len(df) == 12 and attention.PAPER_BOS_VALUE_RATIO == 19.4
    cache = clean_cache(model, tokens)
    for l, h in [(0, 1), (2, 3)]:
        out = np.linalg.norm(np64(cache[f"blocks.{l}.attn.hook_v"])[:, :, h] @ np64(model.W_O)[l, h], axis=-1)
        row = df[(df.layer == l) & (df["head"] == h)].iloc[0]
        assert row.bos_out_norm == pytest.approx(out[:, 0].mean(), rel=1e-5)
        assert row.other_out_norm == pytest.approx(out[:, 1:].mean(), rel=1e-5)
        assert row.ratio == pytest.approx(out[:, 1:].mean() / out[:, 0].mean(), rel=1e-5)
    assert no_hooks(model)


def test_position_norms_and_the_position_null(model, tokens):
    norms = attention.position_out_norms(model, tokens, batch_rows=3)
    cache = clean_cache(model, tokens)
    n_ctx = tokens.shape[1]
    brute = np.stack([np.stack([np.linalg.norm(np64(cache[f"blocks.{l}.attn.hook_v"])[:, :, h] @ np64(model.W_O)[l, h],
                                               axis=-1).mean(0) for h in range(4)]) for l in range(3)])
    np.testing.assert_allclose(norms, brute, rtol=1e-5)
    null = attention.position_null(norms)
    assert null.shape == (n_ctx - 1,)
    p = 5  # position 5 in place of BOS: the other positions' mean over its own, median over the 12 heads
    ratio = (brute.sum(-1) - brute[..., p]) / (n_ctx - 1) / brute[..., p]
    assert null[p - 1] == pytest.approx(np.median(ratio), rel=1e-9)
    assert no_hooks(model)


# ---------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("kwargs, match", [
    (dict(layer=2, neuron=0, head_layer=2, head=0), "head layer 2 is not after neuron layer 2"),
    (dict(layer=1, neuron=0, head_layer=0, head=0), "head layer 0 is not after neuron layer 1"),
    (dict(layer=3, neuron=0, head_layer=2, head=0), "neuron layer 3 is out of range"),
    (dict(layer=0, neuron=64, head_layer=2, head=0), "neuron 64 is out of range"),
    (dict(layer=0, neuron=0, head_layer=2, head=4), "head 4 is out of range"),
    (dict(layer=0, neuron=0, head_layer=-1, head=0), "head layer -1 is out of range"),
    (dict(layer=0, neuron=0, head_layer=1, head=0, start=0), "start 0 is outside 1..15"),
    (dict(layer=0, neuron=0, head_layer=1, head=0, start=16), "start 16 is outside 1..15"),
    (dict(layer=0, neuron=0, head_layer=1, head=0, batch_rows=0), "batch_rows 0"),
])
def test_path_ablation_bad_input(model, tokens, kwargs, match):
    with pytest.raises(UserError, match=match) as e:
        attention.path_ablation(model, tokens, **kwargs)
    assert "\n" not in str(e.value) and ": " in str(e.value)
    assert no_hooks(model) and model.cfg.use_split_qkv_input is False


@pytest.mark.parametrize("call, match", [
    (lambda m: attention.bos_scores(m, 50), "BOS id 50 is out of range"),
    (lambda m: attention.bos_keys(m, -1), "BOS id -1 is out of range"),
    (lambda m: attention.random_scores(m, 99, n=5), "BOS id 99 is out of range"),
    (lambda m: attention.random_scores(m, 0, n=0), "n 0 is not a positive integer"),
    (lambda m: attention.bos_value_ratio(m, torch.zeros(2, 17, dtype=torch.long)), "tokens have 17 positions"),
    (lambda m: attention.bos_value_ratio(m, torch.full((2, 4), 50)), "outside the vocabulary"),
    (lambda m: attention.bos_value_ratio(m, torch.zeros(2, 4)), "must be an integer array"),
    (lambda m: attention.top_pairs(pd.DataFrame({"score": [1.0]}), 0), "k 0 is not a positive integer"),
])
def test_other_bad_input(model, call, match):
    with pytest.raises(UserError, match=match) as e:
        call(model)
    assert "\n" not in str(e.value)

"""Neuron properties against independent computations: numpy on the Hugging Face weights with LayerNorm
folded by hand, scipy moments of pre-activations collected with HF forward hooks, exact streaming moments on
shifted data, gated / bias-free MLPs, the cached profile run joined into neurons.csv (smoke zoo), and the one
hook runner every pass over the held-out tokens uses, against TransformerLens' `run_with_cache`."""

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

import universal_neurons as un
from universal_neurons import UserError
from universal_neurons.measures import activations
from universal_neurons.runs import properties
from universal_neurons.runs import selection
from universal_neurons.measures.activation_stats import (ACT_COLS,
                                                         MomentAccumulator,
                                                         activation_stats,
                                                         neuron_activations)
from universal_neurons.measures.token_classes import class_scores
from universal_neurons.measures.weight_stats import WEIGHT_COLS, weight_stats

N_TOKENS = 4000


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ref(smoke, smoke_zoo):
    """The smoke reference (seed 0) as processed by the loader, and its folder."""
    folder = smoke.seed_dir(smoke.seeds[0])
    return un.load_model(str(folder)), folder


@pytest.fixture(scope="module")
def rows(smoke, smoke_data):
    return smoke_data[1].tokens


def hand_folded(folder):
    """Independent: numpy float64 weights of an HF GPT2 with ln_2 folded into c_fc, W_in and W_out centred
    on d_model, ln_f folded into W_U, W_U centred on d_model then on the vocabulary (TransformerLens' steps)."""
    from transformers import GPT2LMHeadModel

    hf = GPT2LMHeadModel.from_pretrained(folder)
    g = {k: v.detach().double().numpy() for k, v in hf.named_parameters()}
    layers = []
    for l in range(hf.config.n_layer):
        p = f"transformer.h.{l}."
        fc = g[p + "mlp.c_fc.weight"]  # [d_model, d_mlp]
        w_in = g[p + "ln_2.weight"][:, None] * fc
        w_out = g[p + "mlp.c_proj.weight"]  # [d_mlp, d_model]
        layers.append({"w_in": (w_in - w_in.mean(0)).T, "b_in": g[p + "mlp.c_fc.bias"] + g[p + "ln_2.bias"] @ fc,
                       "w_out": w_out - w_out.mean(1, keepdims=True)})
    w_u = hf.lm_head.weight.detach().double().numpy().T * g["transformer.ln_f.weight"][:, None]  # [d_model, vocab]
    w_u = w_u - w_u.mean(0)
    return layers, w_u - w_u.mean(1, keepdims=True)


def unit(w, axis):
    return w / np.linalg.norm(w, axis=axis, keepdims=True)


def test_weight_stats_match_numpy_on_hand_folded_hf_weights(ref):
    model, folder = ref
    ours, problems = weight_stats(model)
    assert not problems and len(ours) == model.cfg.n_layers * model.cfg.d_mlp
    layers, w_u = hand_folded(folder)
    u = unit(w_u, 0)
    all_in = unit(np.concatenate([h["w_in"] for h in layers]), 1)
    all_out = unit(np.concatenate([h["w_out"] for h in layers]), 1)
    for l, h in enumerate(layers):
        o = ours[ours["layer"] == l]
        n_in, n_out = np.linalg.norm(h["w_in"], axis=1), np.linalg.norm(h["w_out"], axis=1)
        c = unit(h["w_out"], 1) @ u  # [d_mlp, vocab]
        expect = {"w_in_norm": n_in, "input_bias": h["b_in"], "w_out_norm": n_out,
                  "in_out_sim": (h["w_in"] * h["w_out"]).sum(1) / (n_in * n_out), "l2_penalty": n_in ** 2 + n_out ** 2,
                  "vocab_mean": c.mean(1), "vocab_var": c.var(1), "vocab_skew": stats.skew(c, axis=1),
                  "vocab_kurt": stats.kurtosis(c, axis=1, fisher=False)}
        for k, v in expect.items():
            np.testing.assert_allclose(o[k], v, rtol=2e-4, atol=2e-6, err_msg=f"layer {l} {k}")
        d = len(h["w_in"])
        for name, w in (("max_in_cos", all_in), ("max_out_cos", all_out)):
            cos = w[l * d:(l + 1) * d] @ w.T
            cos[np.arange(d), l * d + np.arange(d)] = -np.inf
            np.testing.assert_allclose(o[name], cos.max(1), atol=2e-6, err_msg=f"layer {l} {name}")
    mask = np.zeros(model.cfg.d_vocab, bool)
    mask[np.random.default_rng(0).choice(len(mask), 40, replace=False)] = True
    c = unit(layers[-1]["w_out"], 1) @ u
    expect = (c[:, mask].mean(1) - c[:, ~mask].mean(1)) / c.std(1)
    got = class_scores(model, {"some": mask})
    np.testing.assert_allclose(got.loc[got["layer"] == len(layers) - 1, "some"], expect, rtol=1e-4, atol=1e-6)


def test_streaming_moments_match_scipy_on_hf_hooks(ref, rows):
    from transformers import GPT2LMHeadModel

    model, folder = ref
    (ours, hist), = activation_stats([model], ["seed-0"], rows, N_TOKENS, batch_rows=8)  # ~9 batches
    # independent: HF hooks on c_fc (pre-activation) and act (post), tokens filtered as the paper does
    tok = model.tokenizer
    bad = [i for i in range(len(tok)) if i in tok.all_special_ids or (not tok.decode([i]).strip()
                                                                       and "\n" in tok.decode([i]))]
    x = np.asarray(rows[:200], dtype=np.int64)
    keep = ~np.isin(x, bad)
    keep &= np.cumsum(keep.ravel()).reshape(keep.shape) <= N_TOKENS
    has_next = keep & (np.cumsum(keep.ravel()).reshape(keep.shape) <= 1000)
    has_next[:, -1] = False
    pre, post = {}, {}
    hf = GPT2LMHeadModel.from_pretrained(folder).eval()
    hooks = [h for l, blk in enumerate(hf.transformer.h) for h in (
        blk.mlp.c_fc.register_forward_hook(lambda m, i, o, l=l: pre.__setitem__(l, o)),
        blk.mlp.act.register_forward_hook(lambda m, i, o, l=l: post.__setitem__(l, o)))]
    with torch.no_grad():
        hf(torch.from_numpy(x))
    for h in hooks:
        h.remove()
    assert keep.sum() == N_TOKENS
    a = np.concatenate([pre[l][torch.from_numpy(keep)].double().numpy() for l in sorted(pre)], 1)  # [T, N]
    np.testing.assert_allclose(ours["mean"], a.mean(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ours["var"], a.var(0), rtol=1e-4)
    np.testing.assert_allclose(ours["skew"], stats.skew(a, axis=0), rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(ours["kurt"], stats.kurtosis(a, axis=0, fisher=False), rtol=1e-3)
    np.testing.assert_allclose(ours["sparsity"], (a > 0).mean(0), atol=2 / N_TOKENS)  # signs of ~0 may flip
    assert (hist["counts"].sum(1) == N_TOKENS).all()
    # post-activations of chosen neurons, aligned with the next token
    pairs = [(1, 5), (0, 7), (1, 200)]
    acts, nxt = neuron_activations(model, rows, pairs, 1000, batch_rows=8)
    want = {l: post[l][torch.from_numpy(has_next)].numpy() for l in post}
    np.testing.assert_allclose(acts, np.stack([want[l][:, n] for l, n in pairs], 1), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(nxt, x[:, 1:][has_next[:, :-1]])


def test_accumulator_is_exact_far_from_zero():
    """Power sums about the first batch's mean: exact where raw float64 sums would cancel catastrophically."""
    rng = np.random.default_rng(0)
    x = (1e4 + rng.lognormal(0, 1, (3000, 5))).astype(np.float32)
    acc = MomentAccumulator(5, n_bins=20)
    for part in np.array_split(x, 3):
        acc.update(torch.from_numpy(part))
    got, xd = acc.result(), x.astype(np.float64)
    np.testing.assert_allclose(got["mean"], xd.mean(0), rtol=1e-12)
    np.testing.assert_allclose(got["var"], xd.var(0), rtol=1e-9)
    np.testing.assert_allclose(got["skew"], stats.skew(xd), rtol=1e-8)
    np.testing.assert_allclose(got["kurt"], stats.kurtosis(xd, fisher=False), rtol=1e-8)
    assert (got["sparsity"] == 1).all() and (acc.hist.sum(1) == 3000).all()
    assert acc.hist[:, 0].sum() == 0  # nothing below the widened first-batch range here


def test_gated_and_bias_free_mlps_warn_and_keep_the_rest(ref, rows):
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    model, _ = ref
    cfg = HookedTransformerConfig(n_layers=2, d_model=16, d_head=4, n_heads=4, d_mlp=40, n_ctx=64,
                                  d_vocab=model.cfg.d_vocab, act_fn="silu", gated_mlp=True, normalization_type="LN",
                                  seed=0)
    gated = HookedTransformer(cfg, tokenizer=model.tokenizer)
    with pytest.warns(UserWarning, match=r"gated MLP.*w_in_norm, input_bias, in_out_sim, l2_penalty"):
        w, problems = weight_stats(gated, "gated")
    assert len(w) == 80 and len(problems) == 1  # d_mlp = 40, not 4 * d_model
    assert w[["w_in_norm", "input_bias", "in_out_sim", "l2_penalty", "max_in_cos"]].isna().all().all()
    assert np.isfinite(w[["w_out_norm", "max_out_cos", "vocab_var", "vocab_kurt"]].to_numpy()).all()
    (a, _), = activation_stats([gated], ["gated"], rows, 500)
    assert np.isfinite(a[ACT_COLS].to_numpy()).all()

    saved = [blk.mlp.b_in for blk in model.blocks]
    for blk in model.blocks:
        blk.mlp.b_in = None
    try:
        with pytest.warns(UserWarning, match="no input bias.*input_bias"):
            w, _ = weight_stats(model, "nobias")
    finally:
        for blk, b in zip(model.blocks, saved):
            blk.mlp.b_in = b
    assert w["input_bias"].isna().all() and np.isfinite(w[["w_in_norm", "in_out_sim", "vocab_kurt"]].to_numpy()).all()


def test_profile_run_is_cached_and_joined_into_neurons_csv(smoke, smoke_zoo, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # the zoo's GPT-2s define every statistic
        res = properties.compute_properties(smoke, n_tokens=2000, out_dir=tmp_path, progress=False)
    names = res.info["names"]
    assert names[0] == f"seed-{smoke.seeds[0]}" and set(res.table["model"]) == set(names) == set(res.hists)
    assert res.table[WEIGHT_COLS + ACT_COLS].notna().all().all() and len(res.table) == 3 * 512
    alone = properties.neuron_frame(smoke, tmp_path)  # no neurons.csv yet: the reference's properties
    assert len(alone) == 512 and "excess_corr" not in alone
    neurons = pd.DataFrame({"layer": np.repeat([0, 1], 256), "neuron": np.tile(np.arange(256), 2),
                            "is_dead": False, "excess_corr": np.linspace(0, 0.4, 512)})
    neurons.to_csv(tmp_path / "neurons.csv", index=False)
    (tmp_path / "universality.json").write_text(json.dumps({"names": names}))
    joined = properties.neuron_frame(smoke, tmp_path)
    on_disk = pd.read_csv(tmp_path / "neurons.csv")
    assert {"sparsity", "vocab_kurt", "excess_corr"} <= set(on_disk.columns) and len(on_disk) == 512
    ref_rows = res.table[res.table["model"] == names[0]].reset_index(drop=True)
    np.testing.assert_allclose(joined["kurt"], ref_rows["kurt"])
    stamps = [(tmp_path / f).stat().st_mtime_ns for f in ("neurons.csv", "properties.json")]
    properties.compute_properties(smoke, n_tokens=2000, out_dir=tmp_path, progress=False)  # cached, and already joined
    assert stamps == [(tmp_path / f).stat().st_mtime_ns for f in ("neurons.csv", "properties.json")]
    group, label = selection.universal_group(joined, threshold=0.5, top_pct=2, min_count=10)
    assert label.startswith("top 2%") and group.sum() == 11 and joined.loc[group, "excess_corr"].min() > 0.39
    assert json.loads((tmp_path / "properties.key.json").read_text())["n_tokens"] == 2000  # cache.py's key file
    fewer = properties.compute_properties(smoke, n_tokens=1500, out_dir=tmp_path, progress=False)  # a new key: recomputed
    assert fewer.info["n_tokens"] == 1500 and (fewer.hists[names[0]]["counts"].sum(1) == 1500).all()
    (tmp_path / "universality.json").write_text(json.dumps({"names": ["elsewhere"]}))
    with pytest.raises(UserError, match="not a member"):
        properties.neuron_frame(smoke, tmp_path)


def test_hook_runner_gives_run_with_cache_activations_at_the_kept_positions(ref, rows):
    """hook_pre, hook_post, ln_final.hook_scale (masked) and an attention pattern (whole) of every batch of a
    planned pass equal those of a plain forward with `run_with_cache`, bit for bit; the batches cover exactly
    the planned kept tokens, never cross a chunk's end, and `next_token` drops each row's last position."""
    model, _ = ref
    plan = activations.plan_pass([model], ["seed-0"], rows, 3000, chunk_tokens=1000)
    masked = {**activations.mlp_points(model, "hook_pre"), **{f"blocks.{l}.mlp.hook_post": ("post", l)
                                                     for l in range(model.cfg.n_layers)}, "ln_final.hook_scale": "scale"}
    kept, starts = 0, []  # (first row, end row) of each batch
    for b0, toks, mask in activations.held_out_batches(plan, 8, "cpu"):
        starts.append((b0, b0 + len(toks)))
        np.testing.assert_array_equal(toks.numpy(), np.asarray(rows[b0:b0 + len(toks)], dtype=np.int64))
        got = {}
        activations.run_hooks(model, toks, mask, masked, got.__setitem__, name="seed-0")
        activations.run_hooks(model, toks, None, {"blocks.1.attn.hook_pattern": "pattern"}, got.__setitem__)
        with torch.inference_mode():
            _, cache = model.run_with_cache(toks)
        for point, key in masked.items():
            assert torch.equal(got[key], cache[point][mask]), point
        assert torch.equal(got["pattern"], cache["blocks.1.attn.hook_pattern"])
        kept += int(mask.sum())
    assert kept == 3000 == plan.snap_tokens[-1]
    assert all(any(r0 <= b0 and b1 <= r1 for r0, r1 in plan.chunks) for b0, b1 in starts)  # inside one chunk
    assert len(plan.chunks) > 1 and [b for b, _ in starts] == sorted({b for b, _ in starts}) and starts[0][0] == 0
    assert starts[-1][1] == plan.n_rows and all(a[1] == b[0] for a, b in zip(starts, starts[1:]))  # every row once
    last = [m for *_, m in activations.held_out_batches(plan, 8, "cpu", next_token=True)]
    assert not any(m[:, -1].any() for m in last)
    # the correlation pass's chunk matrix: hook_post of every layer side by side, in the same token order
    post = torch.cat([activations.chunk_activations([model], ["seed-0"], plan, c, 8, "cpu")[0] for c in range(len(plan.chunks))])
    want = []
    for _, toks, mask in activations.held_out_batches(plan, 8, "cpu"):
        _, cache = model.run_with_cache(toks)
        want.append(torch.cat([cache[f"blocks.{l}.mlp.hook_post"][mask] for l in range(model.cfg.n_layers)], 1))
    assert torch.equal(post, torch.cat(want))


def test_hook_runner_refuses_nan_and_rows_that_do_not_fit(ref, rows):
    model, _ = ref
    plan = activations.plan_pass([model], ["seed-0"], rows, 500)
    b0, toks, mask = next(activations.held_out_batches(plan, 8, "cpu"))
    b_in = model.blocks[1].mlp.b_in
    saved = b_in.detach().clone()
    with torch.no_grad():
        b_in[3] = float("nan")
    try:
        with pytest.raises(UserError, match=r"^seed-0: NaN or inf activation in layer 1, held-out rows 0-7; [^\n]*$"):
            activations.run_hooks(model, toks, mask, activations.mlp_points(model), lambda *_: None, name="seed-0",
                        rows="held-out rows 0-7")
    finally:
        with torch.no_grad():
            b_in.copy_(saved)
    wide = np.concatenate([rows[:50], rows[:50]], 1)  # rows longer than the model's context
    with pytest.raises(UserError, match="do not fit the models"):
        activations.plan_pass([model], ["seed-0"], wide, 500)

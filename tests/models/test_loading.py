"""The loader: zoo folders, local GPT-2 and GPT-NeoX checkpoints, offline, and its errors."""

import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import universal_neurons as un
from universal_neurons.data.tokenizer import load_tokenizer


def hf_logprobs_and_mlp(hf, tokens, layer):
    acts = {}
    mlp = hf.transformer.h[layer].mlp if hasattr(hf, "transformer") else hf.gpt_neox.layers[layer].mlp
    handle = mlp.act.register_forward_hook(lambda mod, inp, out: acts.setdefault("post", out))
    with torch.no_grad():
        logits = hf(tokens).logits
    handle.remove()
    return logits.log_softmax(-1), acts["post"]


def test_zoo_member_matches_transformers(smoke_zoo, smoke_data):
    from transformers import GPT2LMHeadModel

    heldout = smoke_data[1]
    tokens = torch.as_tensor(heldout.tokens[:4].astype(np.int64))
    model = un.load_model(smoke_zoo[0])
    hf = GPT2LMHeadModel.from_pretrained(smoke_zoo[0]).eval()
    for layer in range(model.cfg.n_layers):
        ref_lp, ref_post = hf_logprobs_and_mlp(hf, tokens, layer)
        with torch.no_grad():
            logits, cache = model.run_with_cache(tokens, names_filter=f"blocks.{layer}.mlp.hook_post")
        torch.testing.assert_close(logits.log_softmax(-1), ref_lp, atol=1e-4, rtol=0)
        torch.testing.assert_close(cache[f"blocks.{layer}.mlp.hook_post"], ref_post, atol=1e-5, rtol=0)


def save_random(kind, folder, tokenizer_dir):
    torch.manual_seed(0)
    if kind == "gpt2":
        from transformers import GPT2Config, GPT2LMHeadModel

        cfg = GPT2Config(vocab_size=len(load_tokenizer(tokenizer_dir)), n_positions=64, n_embd=48, n_layer=2,
                         n_head=4, n_inner=160, activation_function="gelu_new")  # d_mlp != 4 d_model
        hf = GPT2LMHeadModel(cfg)
    else:
        from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

        cfg = GPTNeoXConfig(vocab_size=len(load_tokenizer(tokenizer_dir)), hidden_size=64, num_hidden_layers=2,
                            num_attention_heads=4, intermediate_size=256, max_position_embeddings=64,
                            rotary_pct=0.25, hidden_act="gelu", tie_word_embeddings=False)
        hf = GPTNeoXForCausalLM(cfg)
    hf.eval().save_pretrained(folder)
    load_tokenizer(tokenizer_dir).save_pretrained(folder)
    return hf


@pytest.mark.parametrize("kind", ["gpt2", "neox"])
def test_local_hf_checkpoint_loads_offline(tmp_path, monkeypatch, smoke_data, kind):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hf = save_random(kind, tmp_path / kind, smoke_data[2])
    model = un.load_model(tmp_path / kind)
    tokens = torch.randint(0, model.cfg.d_vocab, (2, 32))
    ref_lp, ref_post = hf_logprobs_and_mlp(hf, tokens, 1)
    with torch.no_grad():
        logits, cache = model.run_with_cache(tokens, names_filter="blocks.1.mlp.hook_post")
    torch.testing.assert_close(logits.log_softmax(-1), ref_lp, atol=1e-4, rtol=0)
    torch.testing.assert_close(cache["blocks.1.mlp.hook_post"], ref_post, atol=1e-5, rtol=0)
    assert model.cfg.d_mlp == (160 if kind == "gpt2" else 256)


def test_processing_folds_layernorm_and_centres(smoke_zoo):
    model = un.load_model(smoke_zoo[0])
    assert model.cfg.normalization_type == "LNPre"
    assert model.W_U.mean(-1).abs().max() < 1e-5  # centred unembedding
    assert model.W_out.mean(-1).abs().max() < 1e-5  # centred writing weights


def test_missing_folder_says_where_it_looked(tmp_path):
    with pytest.raises(un.UserError, match="no checkpoint at") as e:
        un.load_model(tmp_path / "zoo" / "seed-9")
    assert "\n" not in str(e.value) and "make zoo" in str(e.value)


def test_unreachable_hub_id_fails_at_once_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    t0 = time.time()
    with pytest.raises(un.UserError, match="stanford-crfm/alias-gpt2-small-x21.*checkpoint-400000") as e:
        un.load_model("stanford-gpt2-small-a")
    assert time.time() - t0 < 10 and "\n" not in str(e.value)


def test_tokenizer_larger_than_model_vocab_is_refused(tmp_path, smoke_data):
    from transformers import GPT2Config, GPT2LMHeadModel

    GPT2LMHeadModel(GPT2Config(vocab_size=100, n_positions=16, n_embd=32, n_layer=1, n_head=2)).save_pretrained(tmp_path)
    load_tokenizer(smoke_data[2]).save_pretrained(tmp_path)
    with pytest.raises(un.UserError, match="tokenizer has .* entries but the model only 100"):
        un.load_model(tmp_path)


def test_cli_prints_one_line_errors():
    r = subprocess.run([sys.executable, "-m", "universal_neurons", "zoo", "--profile", "nope"],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "unknown profile 'nope'" in r.stderr

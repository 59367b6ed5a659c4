"""The tiny zoo the universality tests share: 2 seeds of a 2-layer GPT-2 (64 neurons a layer) trained in a few
seconds on the standard library's sources, its held-out rows, and edited copies of seed 0. Test modules import
the fixtures `tiny` and `models`; the zoo is built once per session whichever module asks first."""

import glob
import sysconfig
from dataclasses import dataclass

import numpy as np
import pytest
import torch

import universal_neurons as un

N_TOKENS = 3000
MODEL = {"n_layer": 2, "d_model": 32, "d_mlp": 64, "n_head": 4, "n_ctx": 32}
TRAIN = {"seeds": [0, 1], "tokens": 30000, "batch_size": 16, "lr": 3e-3, "warmup_steps": 10, "weight_decay": 0.1,
         "checkpoint_every": 1000}
FAST = {"chunk_tokens": 512, "batch_rows": 16}
_BUILT: dict[str, dict] = {}


@dataclass
class Doc:
    source: str
    doc_id: str
    text: str


def _edit(src, dst, tokenizer_dir=None, fn=None):
    """Copy checkpoint `src` to `dst`, applying `fn(hf_model)` to its weights and optionally another tokenizer."""
    from transformers import GPT2LMHeadModel

    from universal_neurons.data.tokenizer import load_tokenizer

    hf = GPT2LMHeadModel.from_pretrained(src)
    if fn:
        with torch.no_grad():
            fn(hf)
    hf.save_pretrained(dst)
    load_tokenizer(tokenizer_dir or src).save_pretrained(dst)
    return dst



def build(tmp_path_factory) -> dict:
    """A 2-seed zoo (2 layers x 64 neurons) laid out as profile 'tiny' under <root>/artifacts, its held-out
    rows, and edited copies of seed 0: neuron-permuted, with dead neurons, with NaN, with another tokenizer.
    Built once per test session (every test module's fixture gets the same one)."""
    key = str(tmp_path_factory.getbasetemp())
    if key in _BUILT:
        return _BUILT[key]
    from universal_neurons.data.tokenizer import build_tokenizer, load_tokenizer
    from universal_neurons.data.tokens import TokenRows, build_rows
    from universal_neurons.models.zoo import train_seed

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("tiny")
    files = sorted(glob.glob(sysconfig.get_paths()["stdlib"] + "/*.py"))[:60]
    docs = [Doc("py", f, open(f, errors="replace").read()) for f in files]
    tdir = build_tokenizer("bpe", root / "tok", (d.text for d in docs), 512)
    tok = load_tokenizer(tdir)
    train = build_rows(docs[10:], tok, 32, root / "data/train", {"t": 1}, progress=False)
    heldout = build_rows(docs[:10], tok, 32, root / "data/heldout", {"t": 1}, progress=False)
    zoo = root / "artifacts" / "tiny" / "zoo"
    few = TokenRows(heldout.tokens[:16], heldout.sources[:16], heldout.header)
    seeds = [train_seed(s, zoo / f"seed-{s}", train, few, MODEL, TRAIN, tdir, progress=False) for s in (0, 1)]
    perms = [np.random.default_rng(l).permutation(MODEL["d_mlp"]) for l in range(MODEL["n_layer"])]

    def permute(hf):  # new neuron j = old neuron perm[j]
        for blk, perm in zip(hf.transformer.h, perms):
            blk.mlp.c_fc.weight.copy_(blk.mlp.c_fc.weight[:, perm])
            blk.mlp.c_fc.bias.copy_(blk.mlp.c_fc.bias[perm])
            blk.mlp.c_proj.weight.copy_(blk.mlp.c_proj.weight[perm])

    def kill(layer, neuron):
        def fn(hf):  # pre-activation 0 on every token: gelu(0) = 0, zero variance
            hf.transformer.h[layer].mlp.c_fc.weight[:, neuron] = 0
            hf.transformer.h[layer].mlp.c_fc.bias[neuron] = 0
        return fn

    def poison(hf):
        hf.transformer.h[1].mlp.c_fc.bias[0] = float("nan")

    other_tok = build_tokenizer("bpe", root / "tok2", (d.text for d in docs[30:]), 400)
    torch.set_num_threads(threads)
    _BUILT[key] = {"root": root, "rows": heldout, "seeds": seeds, "perms": perms, "tok": tok,
            "perm": _edit(seeds[0], root / "perm", fn=permute),
            "dead_ref": _edit(seeds[0], root / "dead0", fn=kill(0, 5)),
            "dead_partner": _edit(seeds[1], root / "dead1", fn=kill(1, 3)),
            "nan": _edit(seeds[0], root / "nan", fn=poison),
            "other_tok": _edit(seeds[0], root / "othertok", tokenizer_dir=other_tok)}
    return _BUILT[key]


def loader(tiny: dict):
    """name ("seed0", "seed1", "perm", "dead_ref", ...) -> the loaded model, each loaded once."""
    cache = {}

    def get(name):
        if name not in cache:
            src = tiny["seeds"][int(name[-1])] if name.startswith("seed") else tiny[name]
            cache[name] = un.load_model(src)
        return cache[name]
    return get


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    return build(tmp_path_factory)


@pytest.fixture(scope="session")
def models(tiny):
    return loader(tiny)

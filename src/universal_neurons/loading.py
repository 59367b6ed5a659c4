"""One loader for every model the book studies: zoo folders, local Hugging Face checkpoints, hub ids and
TransformerLens aliases, into a `HookedTransformer` with the paper's processing (LayerNorm folded,
writing weights centred, unembedding centred). Offline it never touches the network: the config is
built from the local config.json and the weights are converted with TransformerLens' own converters.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import torch

from .errors import UserError

SUPPORTED = {"GPT2LMHeadModel": "gpt2", "GPTNeoXForCausalLM": "neox"}
STANFORD_REVISION = "checkpoint-400000"  # the Stanford CRFM repos' `main` moved during 2022


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")


def hub_id(source: str) -> str:
    """Map a TransformerLens alias (e.g. `stanford-gpt2-small-a`) to its hub id; other names pass through."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from transformer_lens.loading_from_pretrained import get_official_model_name
    try:
        return get_official_model_name(source)
    except ValueError:
        return source


def resolve_checkpoint(source, revision: str | None = None) -> Path:
    """A local folder holding config.json for `source` (a folder, a hub id or an alias); fetched if online."""
    path = Path(str(source)).expanduser()
    if (path / "config.json").is_file():
        return path
    looks_local = str(source).startswith((".", "/", "~")) or path.exists() or os.sep + "seed-" in str(source)
    if looks_local:
        raise UserError(f"no checkpoint at {path} (no config.json there); train the zoo with "
                        "`make zoo PROFILE=<name>` or pass a folder saved with save_pretrained")
    repo = hub_id(str(source))
    if revision is None and repo.startswith("stanford-crfm/"):
        revision = STANFORD_REVISION
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo, revision=revision, local_files_only=_offline(),
                                      allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model", "*.bin"]))
    except Exception as e:  # hub errors come in many classes; all mean the same to the user
        where = "the Hugging Face cache (HF_HUB_OFFLINE=1)" if _offline() else "the Hugging Face hub"
        raise UserError(f"model {source!r} (hub id {repo}, revision {revision or 'main'}) not found in {where}: "
                        f"{type(e).__name__}; fetch it on a machine online with `hf download {repo}"
                        f"{' --revision ' + revision if revision else ''}` or pass a local folder") from None


def hooked_config(folder: Path, device: str = "cpu"):
    """A HookedTransformerConfig built from a local config.json (no network), ready for folded LayerNorm."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from transformer_lens import HookedTransformerConfig
        from transformer_lens.loading_from_pretrained import convert_hf_model_config

    hf = json.loads((folder / "config.json").read_text())
    arch = (hf.get("architectures") or ["?"])[0]
    if arch not in SUPPORTED:
        raise UserError(f"{folder}: architecture {arch} is not supported; supported: {', '.join(SUPPORTED)}")
    if arch == "GPT2LMHeadModel":  # built here: TransformerLens assumes d_mlp = 4 d_model and a `n_ctx` field
        cfg = {"d_model": hf["n_embd"], "d_head": hf["n_embd"] // hf["n_head"], "n_heads": hf["n_head"],
               "d_mlp": hf.get("n_inner") or 4 * hf["n_embd"], "n_layers": hf["n_layer"],
               "n_ctx": hf.get("n_positions", hf.get("n_ctx", 1024)), "eps": hf.get("layer_norm_epsilon", 1e-5),
               "d_vocab": hf["vocab_size"], "act_fn": hf.get("activation_function", "gelu_new"),
               "use_attn_scale": hf.get("scale_attn_weights", True), "use_local_attn": False,
               "scale_attn_by_inverse_layer_idx": hf.get("scale_attn_by_inverse_layer_idx", False),
               "normalization_type": "LN", "original_architecture": arch, "tokenizer_name": str(folder)}
    else:
        cfg = convert_hf_model_config(str(folder))
    cfg.update(normalization_type="LNPre", device=device, dtype=torch.float32, from_checkpoint=False)
    cfg.setdefault("default_prepend_bos", True)
    return HookedTransformerConfig.from_dict(cfg)


def load_model(source, device: str = "cpu", revision: str | None = None, tokenizer=None):
    """Load `source` into a HookedTransformer with the paper's weight processing, in eval mode."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from transformer_lens import HookedTransformer
        from transformer_lens.pretrained.weight_conversions import convert_gpt2_weights, convert_neox_weights
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    from .tokenizer import load_tokenizer

    from .shipped import verify_member

    folder = resolve_checkpoint(source, revision)
    verify_member(folder)  # a member of a shipped zoo: its files must match the manifest
    cfg = hooked_config(folder, device)
    hf_logging.disable_progress_bar()
    hf_model = AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True, dtype=torch.float32)
    convert = convert_gpt2_weights if cfg.original_architecture == "GPT2LMHeadModel" else convert_neox_weights
    state = convert(hf_model, cfg)
    del hf_model
    tok = tokenizer if tokenizer is not None else load_tokenizer(folder)
    if len(tok) > cfg.d_vocab:
        raise UserError(f"{source}: the tokenizer has {len(tok)} entries but the model only {cfg.d_vocab}; "
                        "pair the model with the tokenizer it was trained with")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = HookedTransformer(cfg, tokenizer=tok, move_to_device=False)
        model.load_and_process_state_dict(state, fold_ln=True, center_writing_weights=True,
                                          center_unembed=True, fold_value_biases=True)
    model.to(device, print_details=False)
    model.eval()
    model.checkpoint_dir = folder
    return model

"""One loader for every model the book studies: zoo folders, local Hugging Face checkpoints, hub ids and
TransformerLens aliases, into a `HookedTransformer` with the paper's processing (LayerNorm folded,
writing weights centred, unembedding centred). Offline it never touches the network: the config is
built from the local config.json and the weights are converted with TransformerLens' own converters.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import torch

from ..config.profile import name_of
from ..config.sources import resolve_checkpoint
from ..core.cache import weights_signature
from ..core.checksum import file_sha256
from ..core.errors import UserError
from ..data.tokenizer import load_tokenizer
from .shipped import verify_member

SUPPORTED = {"GPT2LMHeadModel": "gpt2", "GPTNeoXForCausalLM": "neox"}
def hooked_config(folder: Path, device: str = "cpu"):
    """A HookedTransformerConfig built from a local config.json (no network), ready for folded LayerNorm."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from transformer_lens import HookedTransformerConfig
        from transformer_lens.loading_from_pretrained import convert_hf_model_config

    try:
        hf = json.loads((folder / "config.json").read_text())
        if not isinstance(hf, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as e:
        raise UserError(f"{folder / 'config.json'} is unreadable ({type(e).__name__}: cut or damaged); "
                        f"{_weights_fix(folder)}") from None
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


def _in_hub_cache(folder: Path) -> bool:
    """True for a snapshot folder of the Hugging Face cache (`.../models--owner--name/snapshots/<commit>`)."""
    parts = Path(folder).absolute().parts
    return len(parts) >= 3 and parts[-2] == "snapshots" and parts[-3].startswith("models--")


def _weights_fix(folder: Path) -> str:
    if (folder / "training_log.json").is_file():
        return (f"delete {folder} and retrain it with `python -m universal_neurons zoo --profile <name>` (or restore "
                "it from a backup)")
    if _in_hub_cache(folder):
        return f"fetch the checkpoint again (delete {folder.parent.parent} from the Hugging Face cache) or restore it"
    return (f"{folder} is a local checkpoint: restore it from where it came from, or save it again with "
            "save_pretrained")


def check_identity(folder: Path, info: dict) -> None:
    """A zoo member's folder `seed-<k>` must hold seed k's training log: a member copied over another is refused."""
    m = re.fullmatch(r"seed-(\d+)", Path(folder).name)
    seed = info.get("seed") if isinstance(info, dict) else None
    if m and isinstance(seed, int) and seed != int(m[1]) and not info.get("snapshot"):
        raise UserError(f"{folder} holds the training log of seed {seed}, not seed {m[1]} (a member copied over "
                        f"another?); {_weights_fix(Path(folder))}")


def verify_recorded(folder: Path) -> None:
    """If the folder's training_log.json records sha256 checksums of its files (`files` or `sha256`: name ->
    hex digest), check them; one-line UserError naming the first file that differs."""
    log = Path(folder) / "training_log.json"
    if not log.is_file():
        return
    try:
        info = json.loads(log.read_text())
    except (OSError, ValueError):
        raise UserError(f"{log} is unreadable (damaged); {_weights_fix(Path(folder))}") from None
    check_identity(Path(folder), info)
    record = info.get("files") or info.get("sha256") if isinstance(info, dict) else None
    if not isinstance(record, dict):
        return
    for name, digest in record.items():
        f = Path(folder) / name
        if not f.is_file():
            raise UserError(f"{f} is missing (recorded in {log.name}); {_weights_fix(Path(folder))}")
        if file_sha256(f) != digest:
            raise UserError(f"{f} does not match the sha256 recorded in {log.name} (truncated, damaged or "
                            f"edited); {_weights_fix(Path(folder))}")


def check_safetensors(folder: Path) -> None:
    """Every .safetensors file of the folder is whole: its JSON header parses and its tensors end where the file
    ends (a truncated or cut file is a one-line UserError, not a traceback from deep inside the loader)."""
    import struct

    for f in sorted(Path(folder).glob("*.safetensors")):
        size = f.stat().st_size
        problem = None
        try:
            with open(f, "rb") as fh:
                head = fh.read(8)
                n = struct.unpack("<Q", head)[0] if len(head) == 8 else None
                if n is None or n > size - 8:
                    problem = "its header is cut"
                else:
                    header = json.loads(fh.read(n))
                    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
                    if 8 + n + end != size:
                        problem = f"it holds {size} bytes where its header describes {8 + n + end}"
        except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError) as e:
            problem = f"its header is unreadable ({type(e).__name__})"
        if problem:
            raise UserError(f"weight file {f} is truncated or damaged: {problem}; {_weights_fix(Path(folder))}")


def load_model(source, device: str = "cpu", revision: str | None = None, tokenizer=None):
    """Load `source` into a HookedTransformer with the paper's weight processing, in eval mode."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from transformer_lens import HookedTransformer
        from transformer_lens.pretrained.weight_conversions import convert_gpt2_weights, convert_neox_weights
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging


    folder = resolve_checkpoint(source, revision)
    verify_member(folder)  # a member of a shipped zoo: its files must match the manifest
    check_safetensors(folder)  # whole files (a truncation is named as such)
    verify_recorded(folder)  # a zoo member whose training log records its files' sha256
    cfg = hooked_config(folder, device)
    hf_logging.disable_progress_bar()
    try:
        hf_model = AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True, dtype=torch.float32)
    except (OSError, ValueError, RuntimeError) as e:
        raise UserError(f"the weights in {folder} could not be read ({type(e).__name__}: "
                        f"{(str(e).splitlines() or [''])[0][:120]}); {_weights_fix(folder)}") from None
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
        try:
            model.load_and_process_state_dict(state, fold_ln=True, center_writing_weights=True,
                                              center_unembed=True, fold_value_biases=True)
        except RuntimeError as e:  # shapes that do not fit config.json
            raise UserError(f"the weights in {folder} do not fit its config.json ({(str(e).splitlines() or [''])[0][:120]}); "
                            f"{_weights_fix(folder)}") from None
    model.to(device, print_details=False)
    model.eval()
    model.checkpoint_dir = folder
    return model


def members_signature(profile) -> dict:
    """`weights_signature` of each member of a profile, by member name (seed-0, ...): the part of a chapter's
    cache key that changes when a member's weights do."""
    return {name_of(s): weights_signature(resolve_checkpoint(s, profile.revision)) for s in profile.members()}

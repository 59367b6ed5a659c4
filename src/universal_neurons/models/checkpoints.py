"""A zoo member's checkpoints while it trains: one folder per step (`<zoo>/.partial/seed-<k>/step-<n>/`: weights,
optimizer, state), written whole under a temporary name and renamed, resumed only by a run of the same recipe, and
cleaned when another recipe's or a torn one is found.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

import torch

from ..config.profile import MODEL_DEFAULTS, TRAIN_DEFAULTS
from ..core.atomic import atomic_dir, write_json


def checkpoint_root(out_dir: Path) -> Path:
    """Where a member's checkpoints live while it trains: `<zoo>/.partial/<member>/step-<n>/`."""
    return Path(out_dir).parent / ".partial" / Path(out_dir).name


CHECKPOINT_FILES = ("model.safetensors", "optimizer.pt", "state.json")


def latest_checkpoint(root: Path) -> Path | None:
    """The newest complete checkpoint folder under `root` (a folder appears only once it is whole; one that
    lacks a file, torn by something other than this module, is skipped)."""
    steps = sorted(Path(root).glob("step-*[0-9]")) if Path(root).is_dir() else []
    steps = [s for s in steps if all((s / f).is_file() for f in CHECKPOINT_FILES)]
    return steps[-1] if steps else None


def _checkpoint_key(ckpt: Path):
    """The recipe key a checkpoint was written with (None when its state.json is unreadable)."""
    try:
        return json.loads((ckpt / "state.json").read_text()).get("key")
    except (OSError, ValueError, AttributeError):
        return None


def recipe_key(seed: int, model_cfg: dict, train_cfg: dict, provenance: dict) -> dict:
    """What a member's checkpoints must match to be resumed: its seed, model, training settings and data."""
    return json.loads(json.dumps({"seed": seed, "model": {**MODEL_DEFAULTS, **model_cfg},
                                  "train": _no_seeds({**TRAIN_DEFAULTS, **train_cfg}),
                                  "data": provenance}))  # as state.json stores it


def clean_partials(jobs: list[dict]) -> list[Path]:
    """Before a zoo run: remove the checkpoints under `<zoo>/.partial/seed-<k>/` that this run cannot resume
    (written with another recipe or data, or incomplete), and a `.partial/` left empty. Returns what was removed."""
    removed = []
    for j in jobs:
        root = checkpoint_root(j["out_dir"])
        if not root.is_dir():
            continue
        key = recipe_key(j["seed"], j["model_cfg"], j["train_cfg"], j["train"].header["provenance"])
        for step in sorted(root.glob("step-*[0-9]")):
            if not all((step / f).is_file() for f in CHECKPOINT_FILES) or _checkpoint_key(step) != key:
                shutil.rmtree(step, ignore_errors=True)
                removed.append(step)
        with contextlib.suppress(OSError):
            root.rmdir()  # only if empty
    for zoo in {Path(j["out_dir"]).parent for j in jobs}:
        with contextlib.suppress(OSError):
            (zoo / ".partial").rmdir()
    return removed


def _save_checkpoint(root: Path, model, opt, step: int, log: list, key: dict | None = None) -> Path:
    """Write model, optimizer and state into `root/step-<n>` atomically, then drop the older ones: a kill at
    any moment leaves the previous checkpoint or this one, never a mixture."""
    from safetensors.torch import save_file

    dest = root / f"step-{step:09d}"
    with atomic_dir(dest) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()
                   if k != "lm_head.weight"}, str(tmp / "model.safetensors"))
        torch.save(opt.state_dict(), tmp / "optimizer.pt")
        write_json(tmp / "state.json", {"step": step, "log": log, "key": key})
    for old in root.iterdir():
        if old != dest:
            shutil.rmtree(old, ignore_errors=True)
    return dest


def _load_checkpoint(ckpt: Path, model, opt, device):
    from safetensors.torch import load_file

    state = json.loads((ckpt / "state.json").read_text())
    model.load_state_dict(load_file(str(ckpt / "model.safetensors"), device=str(device)), strict=False)
    model.tie_weights()
    opt.load_state_dict(torch.load(ckpt / "optimizer.pt", map_location=device, weights_only=True))
    return state["step"], state["log"]


def _no_seeds(train_cfg: dict) -> dict:
    return {k: v for k, v in train_cfg.items() if k != "seeds"}

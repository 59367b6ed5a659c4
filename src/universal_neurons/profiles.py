"""Named parameter sets (profiles/*.yaml), overridable one value at a time, and where their outputs live.

A profile either trains its own zoo (`train:` section; members are `artifacts/<profile>/zoo/seed-<k>`)
or names real checkpoints (`models:` section; members are hub ids or local folders).
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from .errors import UserError

REPO_ROOT = Path(__file__).resolve().parents[2]
PROFILE_DIR = REPO_ROOT / "profiles"


def artifacts_root() -> Path:
    """`$UN_ARTIFACTS` if set, else `<repo>/artifacts`."""
    return Path(os.environ.get("UN_ARTIFACTS", REPO_ROOT / "artifacts"))


# Every key a profile may set, with its default: an override may name any of them.
DEFAULTS = {
    "corpus": {"source": "registry", "tier": "prose", "path": None, "hf_dataset": None, "hf_split": "train",
               "hf_text_field": "text", "heldout_fraction": 0.05},
    "tokenizer": {"kind": "bpe", "vocab_size": 8192},
    "model": {"n_ctx": 128},
    "analysis": {"reference_seed": 0, "n_tokens": 300000, "batch_size": 64},
}
# What a zoo profile's `train:` and `model:` sections get unless they say otherwise: the trainer's speed
# options measured fastest here (`make bench-train`). `threads` is part of the recipe: a seed's bytes
# depend on it. `schedule`: cosine to 10% of the peak, or wsd (constant, then a linear decay to zero over
# the last `decay_fraction` of the steps).
TRAIN_DEFAULTS = {"threads": 1, "attention": "sdpa", "fused_adamw": True, "schedule": "cosine",
                  "decay_fraction": 0.2, "eval_tokens": 2**18, "precision": "fp32"}
MODEL_DEFAULTS = {"activation": "gelu_pytorch_tanh"}


def _merged(defaults: dict, cfg: dict) -> dict:
    out = copy.deepcopy(defaults)
    for k, v in cfg.items():
        out[k] = _merged(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


def _apply_override(cfg: dict, item: str) -> None:
    """Apply one `section.key=value` override (value parsed as YAML)."""
    if "=" not in item:
        raise UserError(f"override {item!r} is not of the form section.key=value (e.g. train.tokens=300000)")
    key, raw = item.split("=", 1)
    parts = key.strip().split(".")
    node = cfg
    for p in parts[:-1]:
        if not isinstance(node.get(p), dict):
            raise UserError(f"override {item!r}: the profile has no section {p!r}; sections: {', '.join(sorted(cfg))}")
        node = node[p]
    if parts[-1] not in node:
        raise UserError(f"override {item!r}: unknown key {parts[-1]!r}; known: {', '.join(sorted(node))}")
    node[parts[-1]] = _parse_value(raw)


def _parse_value(raw: str):
    """YAML, except that numbers YAML 1.1 reads as strings (`5e-3`, `1e6`) become numbers."""
    value = yaml.safe_load(raw)
    if isinstance(value, str):
        try:
            number = float(value)
            return int(number) if number.is_integer() and "." not in value and "e-" not in value.lower() else number
        except ValueError:
            pass
    return value


@dataclass
class Profile:
    name: str
    cfg: dict

    @property
    def root(self) -> Path:
        return artifacts_root() / self.name

    @property
    def shipped_dir(self) -> Path | None:
        """The repository folder of a shipped zoo (`shipped: zoo/release`), or None for a zoo trained here."""
        rel = self.cfg.get("shipped")
        return REPO_ROOT / rel if rel else None

    @property
    def uses_shipped(self) -> bool:
        """True if the members are the shipped ones: a `shipped:` folder whose recipe the profile (with its
        overrides) still is; an override of the recipe means a zoo trained here instead."""
        from .shipped import describes_shipped

        return describes_shipped(self)  # False without a `shipped:` folder

    @property
    def zoo_dir(self) -> Path:
        """Where the members are: the shipped folder, or `artifacts/<profile>/zoo` for a zoo trained here."""
        return self.shipped_dir if self.uses_shipped else self.trained_dir

    @property
    def trained_dir(self) -> Path:
        """Where `make zoo` trains (for a shipped profile: where RETRAIN=1 retrains it)."""
        return self.root / "zoo"

    @property
    def tables_dir(self) -> Path:
        return self.root / "tables"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def corpus_root(self) -> Path:
        return artifacts_root() / "corpus"

    @property
    def is_zoo(self) -> bool:
        return "train" in self.cfg

    @property
    def seeds(self) -> list[int]:
        return list(self.cfg["train"]["seeds"]) if self.is_zoo else []

    def seed_dir(self, seed: int) -> Path:
        return self.zoo_dir / f"seed-{seed}"

    def members(self) -> list[str]:
        """Model sources, reference first: zoo folders, or the hub ids / local folders of a real profile."""
        if self.is_zoo:
            ref = self.cfg.get("analysis", {}).get("reference_seed", self.seeds[0])
            order = [ref] + [s for s in self.seeds if s != ref]
            return [str(self.seed_dir(s)) for s in order]
        m = self.cfg["models"]
        return [m["reference"], *m["partners"]]

    @property
    def revision(self) -> str | None:
        return None if self.is_zoo else self.cfg["models"].get("revision")


def load_profile(name: str, overrides: list[str] | tuple[str, ...] = ()) -> Profile:
    """Load `profiles/<name>.yaml` and apply `section.key=value` overrides."""
    path = PROFILE_DIR / f"{name}.yaml"
    if not path.is_file():
        raise UserError(f"unknown profile {name!r}; choose one of: {', '.join(available_profiles())}")
    cfg = _merged(DEFAULTS, yaml.safe_load(path.read_text()))
    if "train" in cfg:
        cfg["train"] = _merged(TRAIN_DEFAULTS, cfg["train"])
        cfg["model"] = _merged(MODEL_DEFAULTS, cfg["model"])
    for item in overrides:
        _apply_override(cfg, item)
    return Profile(name, cfg)

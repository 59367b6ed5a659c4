"""The shipped zoo: members trained once, committed in the repository, and checked before any analysis.

A zoo profile with `shipped: zoo/release` reads its members from that folder instead of training them.
`manifest.json` beside the members records the recipe, the data (corpus manifest and tokenizer checksums),
the package versions, and per seed whether it is final, its steps, wall time, CPU and thread count, and the
sha256 of every file. `verify` checks all of it; a member folder is checked again whenever it is loaded.
"""

from __future__ import annotations

import datetime
import json
from importlib import metadata
from pathlib import Path

from ..config.recipe import MANIFEST, RECIPE, read_manifest
from ..core.atomic import write_json
from ..core.checksum import file_sha256
from ..core.errors import UserError
from ..core.paths import shown

PACKAGES = ("torch", "transformers", "tokenizers", "safetensors", "numpy", "transformer-lens")
LFS_POINTER = b"version https://git-lfs"


def folder_checksums(folder: Path) -> dict[str, str]:
    """sha256 of every file of a member (or tokenizer) folder, by name; hidden files are not part of it."""
    return {f.name: file_sha256(f) for f in sorted(Path(folder).iterdir()) if f.is_file() and not f.name.startswith(".")}


def record_seed(zoo_dir: Path, profile, seed: int) -> dict:
    """Add a finished seed (its training log and file checksums) to the manifest, written atomically."""
    zoo_dir = Path(zoo_dir)
    member = zoo_dir / f"seed-{seed}"
    info = json.loads((member / "training_log.json").read_text())
    man = read_manifest(zoo_dir) or {"created": datetime.date.today().isoformat()}
    man.update({
        "profile": profile.name, "seeds_expected": profile.seeds,
        "recipe": {k: profile.cfg[k] for k in RECIPE},
        "data": info["data"], "packages": {p: _version(p) for p in PACKAGES},
        "tokenizer": folder_checksums(zoo_dir / "tokenizer") if (zoo_dir / "tokenizer").is_dir() else {},
        "retrain": f"make zoo PROFILE={profile.name} RETRAIN=1",
    })
    seeds = man.setdefault("seeds", {})
    seeds[str(seed)] = {"final": True, "steps": info["steps"], "tokens": info["tokens"],
                        "train_seconds": round(info["train_seconds"], 1), "cpu": info.get("cpu"),
                        "threads": info.get("threads"), "torch": info.get("torch"), "device": info["device"],
                        "heldout_loss": info["heldout_loss"], "files": folder_checksums(member),
                        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    man["final_seeds"] = sorted(int(s) for s, v in seeds.items() if v.get("final"))
    write_json(zoo_dir / MANIFEST, man)
    return man


def _version(pkg: str) -> str | None:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


def _check_files(folder: Path, expected: dict[str, str], profile_name: str) -> None:
    for name, digest in expected.items():
        f = folder / name
        fix = (f"restore it with `git checkout -- {shown(f)}` or retrain with `make zoo PROFILE={profile_name} "
               "RETRAIN=1`")
        if not f.is_file():
            raise UserError(f"shipped file {shown(f)} is missing; {fix}")
        with open(f, "rb") as fh:
            head = fh.read(len(LFS_POINTER))
        if head == LFS_POINTER:
            raise UserError(f"shipped file {shown(f)} is a Git LFS pointer, not the file; run `git lfs pull`, {fix}")
        if file_sha256(f) != digest:
            raise UserError(f"shipped file {shown(f)} does not match its checksum in the manifest (damaged, "
                            f"truncated or edited); {fix}")


def verify(zoo_dir: Path, profile) -> dict:
    """Check that every seed of `profile` is final in the manifest and that every file matches its sha256;
    one-line UserError otherwise. Returns the manifest."""
    zoo_dir = Path(zoo_dir)
    man = read_manifest(zoo_dir)
    if not man:
        raise UserError(f"the shipped zoo {shown(zoo_dir)} has no {MANIFEST}; restore it with `git checkout -- "
                        f"{shown(zoo_dir)}` or train it with `python -m universal_neurons release --profile {profile.name}`")
    final = set(man.get("final_seeds", []))
    missing = [s for s in profile.seeds if s not in final]
    if missing:
        raise UserError(f"the shipped zoo {shown(zoo_dir)} is partial: seed(s) {', '.join(map(str, missing))} "
                        f"not final in its manifest; train them with `python -m universal_neurons release --profile "
                        f"{profile.name}` (resumable)")
    _check_files(zoo_dir / "tokenizer", man.get("tokenizer", {}), profile.name)
    for s in profile.seeds:
        _check_files(zoo_dir / f"seed-{s}", man["seeds"][str(s)]["files"], profile.name)
    return man


def verify_member(folder: Path) -> None:
    """If `folder` is a member of a shipped zoo (listed in its parent's manifest), check its files."""
    folder = Path(folder)
    man_path = folder.parent / MANIFEST
    if not man_path.is_file():
        return
    man = read_manifest(folder.parent)
    entry = man.get("seeds", {}).get(folder.name.removeprefix("seed-"))
    if entry:
        _check_files(folder, entry["files"], man.get("profile", "<profile>"))



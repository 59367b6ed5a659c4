"""The shipped zoo's release: training its members into the repository, checking them, training them again."""

from __future__ import annotations

import json
from pathlib import Path

from ..config.recipe import describes_shipped, read_manifest
from ..core.atomic import atomic_dir
from ..core.checksum import file_sha256
from ..core.errors import UserError
from ..core.machine import cpu_model
from ..core.paths import shown
from ..data.prepare import corpus_dir, tokenizer_dir
from .shipped import record_seed, verify
from .zoo import train_members, zoo_jobs


# ---- training it, checking it, training it again ---------------------------------------------------------
def commit_seed(zoo_dir: Path, seed: int) -> None:
    """`git add` the shipped zoo's folder and commit it (in the repository that holds it): a finished seed is kept
    even if the run stops later."""
    import subprocess

    info = read_manifest(zoo_dir)["seeds"][str(seed)]
    subprocess.run(["git", "-C", str(zoo_dir), "add", "--", str(zoo_dir)], check=True)
    subprocess.run(["git", "-C", str(zoo_dir), "commit", "-q", "-m",
                    f"{shown(zoo_dir)}: seed {seed} ({info['tokens']:,} tokens, held-out loss {info['heldout_loss']:.4f}, "
                    f"{info['train_seconds'] / 60:.0f} min on {info['cpu']})", "--", str(zoo_dir)], check=True)


def train_release(profile, seeds=None, device: str = "cpu", progress: bool = True, commit: bool = False) -> list[Path]:
    """Train the shipped zoo's missing seeds into its repository folder, side by side when cores allow;
    each finished seed is recorded in the manifest at once (and committed with `commit`). Resumable."""
    import shutil

    zoo_dir = profile.shipped_dir
    if zoo_dir is None or not describes_shipped(profile):
        raise UserError(f"profile {profile.name!r} does not describe a shipped zoo (no `shipped:` folder, or its "
                        "recipe was overridden); train it with `make zoo`")
    tdir = tokenizer_dir(profile, progress)
    if tdir != zoo_dir / "tokenizer":
        with atomic_dir(zoo_dir / "tokenizer") as tmp:
            for f in Path(tdir).iterdir():
                if f.is_file():
                    shutil.copy2(f, tmp / f.name)
    jobs = zoo_jobs(profile, out_root=zoo_dir, progress=progress, seeds=seeds)
    final = set(read_manifest(zoo_dir).get("final_seeds", []))
    for j in jobs:  # trained before but not yet recorded (e.g. killed between the two)
        if j["seed"] not in final and (j["out_dir"] / "training_log.json").is_file():
            record_seed(zoo_dir, profile, j["seed"])
    def done(path: Path) -> None:
        seed = int(path.name.removeprefix("seed-"))
        record_seed(zoo_dir, profile, seed)
        if commit:
            commit_seed(zoo_dir, seed)

    return train_members(jobs, device, progress, on_done=done)


def check(profile) -> str:
    """Verify the shipped zoo (one-line UserError if damaged or partial); a line saying what was checked."""
    man = verify(profile.shipped_dir, profile)

    note = ""
    cdir = corpus_dir(profile, progress=False)
    if file_sha256(cdir / "manifest.json") != man["data"]["corpus_sha256"]:
        note = ("; note: this machine's corpus differs from the one the zoo was trained on (other package "
                "versions), so held-out numbers can differ slightly")
    return (f"{shown(profile.shipped_dir)}: {len(profile.seeds)} shipped seed(s) match their checksums "
            f"(trained on {', '.join(sorted({v['cpu'] for v in man['seeds'].values() if v.get('cpu')}))}){note}")


def retrain_and_compare(profile, device: str = "cpu", progress: bool = True, out_root=None) -> list[str]:
    """Retrain the shipped zoo from scratch into `out_root` (default artifacts/<profile>/zoo) and say, per
    seed, whether its bytes equal the shipped ones; where they differ, the held-out losses side by side."""
    man = verify(profile.shipped_dir, profile)
    out_root = Path(out_root) if out_root is not None else profile.trained_dir
    paths = train_members(zoo_jobs(profile, out_root=out_root, progress=progress), device, progress)
    lines = []
    for s, path in zip(profile.seeds, paths):
        shipped = man["seeds"][str(s)]
        mine = file_sha256(path / "model.safetensors")
        if mine == shipped["files"]["model.safetensors"]:
            lines.append(f"seed {s}: identical bytes to the shipped member ({shown(path)})")
        else:
            loss = json.loads((path / "training_log.json").read_text())["heldout_loss"]
            lines.append(f"seed {s}: bytes differ from the shipped member (trained on {shipped['cpu']} with "
                         f"{shipped['threads']} thread(s); here {cpu_model()}, device {device}); held-out loss "
                         f"{loss:.4f} here against {shipped['heldout_loss']:.4f} shipped")
    return lines

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

from .atomic import write_json
from .errors import UserError
from .checksum import file_sha256

MANIFEST = "manifest.json"
PACKAGES = ("torch", "transformers", "tokenizers", "safetensors", "numpy", "transformer-lens")
LFS_POINTER = b"version https://git-lfs"
RECIPE = ("corpus", "tokenizer", "model", "train")  # the profile sections a shipped zoo was trained with


def _rel(path: Path) -> str:
    from .config import project_dir

    try:
        return str(Path(path).resolve().relative_to(project_dir().resolve()))
    except ValueError:
        return str(path)


def folder_checksums(folder: Path) -> dict[str, str]:
    """sha256 of every file of a member (or tokenizer) folder, by name; hidden files are not part of it."""
    return {f.name: file_sha256(f) for f in sorted(Path(folder).iterdir()) if f.is_file() and not f.name.startswith(".")}


def read_manifest(zoo_dir: Path) -> dict:
    path = Path(zoo_dir) / MANIFEST
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except ValueError:
        raise UserError(f"{_rel(path)} is not valid JSON; restore it with `git checkout -- {_rel(path)}`") from None


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
        fix = (f"restore it with `git checkout -- {_rel(f)}` or retrain with `make zoo PROFILE={profile_name} "
               "RETRAIN=1`")
        if not f.is_file():
            raise UserError(f"shipped file {_rel(f)} is missing; {fix}")
        with open(f, "rb") as fh:
            head = fh.read(len(LFS_POINTER))
        if head == LFS_POINTER:
            raise UserError(f"shipped file {_rel(f)} is a Git LFS pointer, not the file; run `git lfs pull`, {fix}")
        if file_sha256(f) != digest:
            raise UserError(f"shipped file {_rel(f)} does not match its checksum in the manifest (damaged, "
                            f"truncated or edited); {fix}")


def verify(zoo_dir: Path, profile) -> dict:
    """Check that every seed of `profile` is final in the manifest and that every file matches its sha256;
    one-line UserError otherwise. Returns the manifest."""
    zoo_dir = Path(zoo_dir)
    man = read_manifest(zoo_dir)
    if not man:
        raise UserError(f"the shipped zoo {_rel(zoo_dir)} has no {MANIFEST}; restore it with `git checkout -- "
                        f"{_rel(zoo_dir)}` or train it with `python -m universal_neurons release --profile {profile.name}`")
    final = set(man.get("final_seeds", []))
    missing = [s for s in profile.seeds if s not in final]
    if missing:
        raise UserError(f"the shipped zoo {_rel(zoo_dir)} is partial: seed(s) {', '.join(map(str, missing))} "
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


# ---- which zoo a profile means -----------------------------------------------------------------------------
def _recipe_key(recipe: dict) -> str:
    r = json.loads(json.dumps(recipe))  # the manifest's JSON types
    r.get("train", {}).pop("seeds", None)
    return json.dumps(r, sort_keys=True)


def describes_shipped(profile, sections=RECIPE) -> bool:
    """True if the profile (with its overrides) has the shipped zoo's recipe in these sections, or the zoo
    is not trained yet; an override (other tokens, tokenizer, width, ...) means a zoo trained here instead.
    `sections=("corpus", "tokenizer")`: whether the shipped tokenizer is the profile's."""
    if profile.shipped_dir is None:
        return False
    man = read_manifest(profile.shipped_dir)
    if not man:
        return True
    return (_recipe_key({k: man["recipe"][k] for k in sections})
            == _recipe_key({k: profile.cfg[k] for k in sections}))


def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in tree.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def recipe_differences(profile) -> list[str]:
    """`key=value (shipped: value)` for every recipe key (seeds aside) where the profile, with its overrides,
    differs from its shipped zoo's manifest; empty without a `shipped:` folder or manifest, or when it matches."""
    man = read_manifest(profile.shipped_dir) if profile.shipped_dir is not None else {}
    if not man or describes_shipped(profile):
        return []
    mine = _flat(json.loads(json.dumps({k: profile.cfg.get(k, {}) for k in RECIPE})))
    theirs = _flat({k: man["recipe"].get(k, {}) for k in RECIPE})
    keys = [k for k in dict.fromkeys([*mine, *theirs]) if k != "train.seeds" and mine.get(k) != theirs.get(k)]
    return [f"{k}={mine.get(k, '(unset)')} (shipped: {theirs.get(k, '(unset)')})" for k in keys]


def recipe_note(profile) -> str | None:
    """One line for `universal-neurons zoo` when a profile with a `shipped:` zoo no longer has its recipe (an
    override of corpus, tokenizer, model or train): what differs, and that its zoo is trained here instead."""
    diff = recipe_differences(profile)
    if not diff:
        return None
    return (f"note: profile {profile.name!r} differs from the shipped zoo {_rel(profile.shipped_dir)} in "
            f"{', '.join(diff)}: its {len(profile.seeds)} seed(s) are trained here into {_rel(profile.trained_dir)} "
            f"({profile.cfg['train']['tokens']:,} tokens each), not read from the shipped zoo; drop those overrides "
            "to use it")


# ---- training it, checking it, training it again ---------------------------------------------------------
def commit_seed(zoo_dir: Path, seed: int) -> None:
    """`git add` the shipped zoo's folder and commit it (in the repository that holds it): a finished seed is kept
    even if the run stops later."""
    import subprocess

    info = read_manifest(zoo_dir)["seeds"][str(seed)]
    subprocess.run(["git", "-C", str(zoo_dir), "add", "--", str(zoo_dir)], check=True)
    subprocess.run(["git", "-C", str(zoo_dir), "commit", "-q", "-m",
                    f"{_rel(zoo_dir)}: seed {seed} ({info['tokens']:,} tokens, held-out loss {info['heldout_loss']:.4f}, "
                    f"{info['train_seconds'] / 60:.0f} min on {info['cpu']})", "--", str(zoo_dir)], check=True)


def train_release(profile, seeds=None, device: str = "cpu", progress: bool = True, commit: bool = False) -> list[Path]:
    """Train the shipped zoo's missing seeds into its repository folder, side by side when cores allow;
    each finished seed is recorded in the manifest at once (and committed with `commit`). Resumable."""
    import shutil

    from .atomic import atomic_dir
    from .data import tokenizer_dir
    from .zoo import train_members, zoo_jobs

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
    from .data import corpus_dir

    note = ""
    cdir = corpus_dir(profile, progress=False)
    if file_sha256(cdir / "manifest.json") != man["data"]["corpus_sha256"]:
        note = ("; note: this machine's corpus differs from the one the zoo was trained on (other package "
                "versions), so held-out numbers can differ slightly")
    return (f"{_rel(profile.shipped_dir)}: {len(profile.seeds)} shipped seed(s) match their checksums "
            f"(trained on {', '.join(sorted({v['cpu'] for v in man['seeds'].values() if v.get('cpu')}))}){note}")


def retrain_and_compare(profile, device: str = "cpu", progress: bool = True, out_root=None) -> list[str]:
    """Retrain the shipped zoo from scratch into `out_root` (default artifacts/<profile>/zoo) and say, per
    seed, whether its bytes equal the shipped ones; where they differ, the held-out losses side by side."""
    from .zoo import cpu_model, train_members, zoo_jobs

    man = verify(profile.shipped_dir, profile)
    out_root = Path(out_root) if out_root is not None else profile.trained_dir
    paths = train_members(zoo_jobs(profile, out_root=out_root, progress=progress), device, progress)
    lines = []
    for s, path in zip(profile.seeds, paths):
        shipped = man["seeds"][str(s)]
        mine = file_sha256(path / "model.safetensors")
        if mine == shipped["files"]["model.safetensors"]:
            lines.append(f"seed {s}: identical bytes to the shipped member ({_rel(path)})")
        else:
            loss = json.loads((path / "training_log.json").read_text())["heldout_loss"]
            lines.append(f"seed {s}: bytes differ from the shipped member (trained on {shipped['cpu']} with "
                         f"{shipped['threads']} thread(s); here {cpu_model()}, device {device}); held-out loss "
                         f"{loss:.4f} here against {shipped['heldout_loss']:.4f} shipped")
    return lines

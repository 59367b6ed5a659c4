"""One cache for every computed file: a key (a JSON-able dict of every input, with the writer's `version`)
stored beside the files it produced; the files are reused while the key is the same.

    key = cache.make_key("universality", version=3, models=[...], data=..., n_tokens=300000)
    if not cache.is_current(folder, key):
        with cache.updating(folder, key):       # the old key is removed first: a half-written folder is never current
            write the files atomically ...       # the new key is written last, only on success

A key's `kind` names its file (`<folder>/<kind>.key.json`), so several caches can share a folder. Keys are
portable: a path under the artifacts root or the project is stored relative to it (`<artifacts>/smoke/zoo/seed-0`),
and weights are named by their content (`weights_signature`), so a moved or copied artifacts folder, or a fresh
checkout of the shipped zoo, still serves its cached results. Reading a cache needs no lock and no write.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

from .atomic import write_json
from .paths import artifacts_root, project_dir


def make_key(kind: str, *, version: int, **inputs) -> dict:
    """A cache key: what was computed (`kind`), by which version of its writer, from which inputs."""
    return _normalised({"kind": kind, "version": version, **inputs})


def _roots() -> list[tuple[str, str]]:
    return [(str(artifacts_root()), "<artifacts>"), (str(project_dir().absolute()), "<project>")]


def _portable(obj, roots):
    """`obj` with every absolute path under one of `roots` written relative to it (`<artifacts>/smoke/...`)."""
    if isinstance(obj, dict):
        return {k: _portable(v, roots) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_portable(v, roots) for v in obj]
    if isinstance(obj, str) and obj.startswith(os.sep):
        for root, name in roots:
            if obj == root or obj.startswith(root.rstrip(os.sep) + os.sep):
                return name + obj[len(root.rstrip(os.sep)):]
    return obj


def _normalised(key: dict) -> dict:
    return _portable(json.loads(json.dumps(key, sort_keys=True, default=str)), _roots())


def key_path(folder, key: dict) -> Path:
    return Path(folder) / f"{key['kind']}.key.json"


def digest(key: dict, n: int = 12) -> str:
    """A short stable hash of a key (names checkpoints and run folders)."""
    return hashlib.sha1(json.dumps(_normalised(key), sort_keys=True).encode()).hexdigest()[:n]


def stored_key(folder, kind: str) -> dict | None:
    """The key the folder's `kind` files were written with, or None (never written, or unreadable)."""
    path = Path(folder) / f"{kind}.key.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def is_current(folder, key: dict) -> bool:
    """True if the folder holds files written with exactly this key (a key stored with absolute paths, by an
    earlier version, compares in its portable form)."""
    stored = stored_key(folder, key["kind"])
    return stored is not None and _normalised(stored) == _normalised(key)


def forget(folder, key: dict) -> None:
    """Remove the stored key of `key`'s kind: until a new one is written, the files are not current."""
    key_path(folder, key).unlink(missing_ok=True)


@contextlib.contextmanager
def updating(folder, key: dict):
    """Rewrite the files of `key` in `folder`: the old key goes first, the new one is written on success."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    forget(folder, key)
    yield folder
    write_json(key_path(folder, key), _normalised(key))


def weights_signature(folder) -> list:
    """What identifies a checkpoint's weights cheaply, by content where that is known without reading them: per
    safetensors file its name, size and the sha256 its training log or its shipped zoo's manifest records (checked
    whenever the member is loaded), else the Hugging Face cache's blob name (the file's hash), else its mtime."""
    folder = Path(folder)
    recorded = _recorded_sha256(folder)
    out = []
    for f in sorted(folder.glob("*.safetensors")):
        st = f.stat()
        out.append([f.name, st.st_size, recorded.get(f.name) or _blob_name(f) or st.st_mtime_ns])
    return out


def _recorded_sha256(folder: Path) -> dict:
    """name -> sha256 recorded for a member's files: its training_log.json (`files`), else its zoo's manifest."""
    records = []
    with contextlib.suppress(OSError, ValueError):
        info = json.loads((folder / "training_log.json").read_text())
        records.append(info.get("files") or info.get("sha256") if isinstance(info, dict) else None)
    with contextlib.suppress(OSError, ValueError, AttributeError, KeyError, TypeError):
        seed = folder.name.removeprefix("seed-")
        records.append(json.loads((folder.parent / "manifest.json").read_text())["seeds"][seed]["files"])
    return next((r for r in records if isinstance(r, dict) and r), {})


def _blob_name(f: Path) -> str | None:
    """A Hugging Face cache snapshot's file is a link to `blobs/<its hash>`: that hash, else None."""
    with contextlib.suppress(OSError):
        if f.is_symlink():
            target = Path(os.readlink(f))
            if target.parent.name == "blobs":
                return f"blob:{target.name}"
    return None



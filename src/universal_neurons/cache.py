"""One cache for every computed file: a key (a JSON-able dict of every input, with the writer's `version`)
stored beside the files it produced; the files are reused while the key is the same.

    key = cache.make_key("universality", version=3, models=[...], data=..., n_tokens=300000)
    if not cache.is_current(folder, key):
        with cache.updating(folder, key):       # the old key is removed first: a half-written folder is never current
            write the files atomically ...       # the new key is written last, only on success

A key's `kind` names its file (`<folder>/<kind>.key.json`), so several caches can share a folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path

from .atomic import write_json


def make_key(kind: str, *, version: int, **inputs) -> dict:
    """A cache key: what was computed (`kind`), by which version of its writer, from which inputs."""
    return _normalised({"kind": kind, "version": version, **inputs})


def _normalised(key: dict) -> dict:
    return json.loads(json.dumps(key, sort_keys=True, default=str))


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
    """True if the folder holds files written with exactly this key."""
    return stored_key(folder, key["kind"]) == _normalised(key)


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
    """What identifies a checkpoint's weights cheaply: name, size and mtime of its safetensors files."""
    return sorted([f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in Path(folder).glob("*.safetensors"))


def members_signature(profile) -> dict:
    """`weights_signature` of each member of a profile, by member name (seed-0, ...): the part of a chapter's
    cache key that changes when a member's weights do."""
    from .config import name_of
    from .loading import resolve_checkpoint

    return {name_of(s): weights_signature(resolve_checkpoint(s, profile.revision)) for s in profile.members()}

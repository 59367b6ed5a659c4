"""The one sha256 of a file's bytes that every manifest, provenance record and shipped-file check uses."""

from __future__ import annotations

import hashlib
from pathlib import Path


def file_sha256(path) -> str:
    """Hex sha256 of the file's bytes, read in 1 MiB blocks (a checkpoint never sits in memory twice)."""
    h = hashlib.sha256()
    with open(Path(path), "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def files_sha256(root, names) -> str:
    """Hex sha256 over the files `names` (paths relative to `root`, in the order given): each name's UTF-8, a NUL,
    then its bytes. What a code signature hashes: a file renamed or edited changes it."""
    h = hashlib.sha256()
    for name in names:
        h.update(str(name).encode() + b"\0" + (Path(root) / name).read_bytes())
    return h.hexdigest()

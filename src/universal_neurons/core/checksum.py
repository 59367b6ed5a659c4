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

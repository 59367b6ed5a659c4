"""Where things are: the folder commands run in, the artifacts root, and a path as a reader sees it."""

from __future__ import annotations

import os
from pathlib import Path


def project_dir() -> Path:
    """The folder commands run in (the checkout, for `make`): a `shipped:` zoo and results/ are found here."""
    return Path.cwd()


def artifacts_root() -> Path:
    """`$UN_ARTIFACTS` if set, else `./artifacts` of the working directory (absolute)."""
    return Path(os.environ.get("UN_ARTIFACTS") or project_dir() / "artifacts").absolute()




def shown(path) -> str:
    """`path` relative to the working directory (the checkout, for `make`) when it lies under it, else as given."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)

"""Atomic file and folder writes: write to a temporary name beside the target, then rename. A failed write
removes its temporary file or folder; one left by a killed process (`.<name>.<random>.tmp`) is removed by the
next run of its folder (`lock.clean_leftovers`).

A failed write is reported with its path, whatever raised it: an OSError without a file name gets the target's,
and the writers that hide the machine's fault in their own message (torch's `[enforce fail at inline_container.cc]
. unexpected pos`, safetensors' `IoError(... StorageFull ...)`) become the OSError they stand for (ENOSPC, EROFS)
naming the target. `require_space` defers a command's free-space check to its first write, so a run whose results
are all cached (it writes nothing) is never refused for want of space.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from .cli import enough_space

_pending_space: list[tuple] = []  # (folder, bytes, what): checked once, before the first write

# what torch's and safetensors' writers say for the machine's faults
_TORCH_WRITER = re.compile(r"inline_container|PytorchStreamWriter|unexpected pos|file write failed")
_FAULT_TEXT = ((errno.ENOSPC, re.compile(r"No space left|StorageFull|os error 28|code: 28\b")),
               (errno.EROFS, re.compile(r"Read-only file system|ReadOnlyFilesystem|os error 30|code: 30\b")),
               (errno.EDQUOT, re.compile(r"Disk quota exceeded|os error 122")))
_WRITE_FAULTS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.EIO)
NEARLY_FULL = 64 * 2**20  # a torch writer failing with less than this free: the disk is full


def require_space(folder, need_bytes: float, what: str) -> None:
    """Check, before the first atomic write of this process, that `folder`'s disk has `need_bytes` free (a one-line
    UserError otherwise); nothing is checked if nothing is written."""
    _pending_space.append((Path(folder), need_bytes, what))


def _check_space() -> None:
    while _pending_space:
        folder, need, what = _pending_space.pop(0)
        enough_space(folder, need, what)


def _free(folder: Path) -> float:
    with contextlib.suppress(OSError):
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        return shutil.disk_usage(folder).free
    return float("inf")


def machine_fault(e: BaseException, path) -> OSError | None:
    """The OSError (with `path`) that a failed write `e` stands for, or None when it is not the machine's fault:
    an OSError without a file name, or a writer's message of a full or read-only disk."""
    path = str(path)
    if isinstance(e, OSError):
        if e.errno in _WRITE_FAULTS and e.filename is None:
            return OSError(e.errno, e.strerror or os.strerror(e.errno), path)
        return None
    if not isinstance(e, Exception):
        return None
    text = str(e)
    for code, pattern in _FAULT_TEXT:
        if pattern.search(text):
            return OSError(code, os.strerror(code), path)
    if _TORCH_WRITER.search(text) and _free(Path(path).parent) < NEARLY_FULL:
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
    return None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside `path`; on success rename it onto `path`, on error delete it."""
    path = Path(path)
    _check_space()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:  # from here on a failure (a full disk, a read-only folder, a kill) removes the temporary file
        os.close(fd)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        fault = machine_fault(e, path)
        if fault is not None:
            raise fault from e
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike):
    """Yield a temporary folder beside `path`; on success it replaces `path`, on error it is removed."""
    path = Path(path)
    _check_space()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        fault = machine_fault(e, path)
        if fault is not None:
            raise fault from e
        raise


def write_text(path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_npz(path, arrays: dict) -> None:
    """np.savez of `arrays` into `path` atomically (through a file object, so no '.npz' is appended)."""
    import numpy as np

    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)


def copy_file(src, dst) -> None:
    """Copy the file `src` onto `dst` atomically."""
    import shutil

    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)

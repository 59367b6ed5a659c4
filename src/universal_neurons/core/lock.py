"""One run per folder at a time: `run_lock(folders)` holds `<folder>/.lock` (filelock) for each folder a command
writes, and, once they are held, removes what killed runs left there (`clean_leftovers`).

A second run on a locked folder waits up to `UN_LOCK_WAIT` seconds (default 10), saying so on stderr, then
stops with one line naming the folder and the process that holds it. Folders are locked in sorted order, so two
runs that share several folders cannot deadlock. Locks are re-entrant within a process (a command that holds its
run folder may lock it again to build its data there), and a process started by one that holds a folder for it
(`python -m universal_neurons.runs.locked ... -- COMMAND`, the Makefile's wrapper of a chapter's papermill run) finds the
folder in `UN_LOCK_HELD` and does not wait for its parent. Reading a cached result takes no lock.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
from pathlib import Path

from .errors import UserError

LOCK_NAME = ".lock"
DEFAULT_WAIT = 10.0
HELD_ENV = "UN_LOCK_HELD"  # folders (os.pathsep-separated) a parent process holds for this one
# what atomic.py leaves when killed: `.<name>.<8 random characters>.tmp` files and folders (tempfile.mkstemp /
# mkdtemp: 8 of a-z, 0-9 and _), and nothing else: a user's own `.notes.old.tmp` is not a leftover
TMP_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")
_held: dict[Path, int] = {}  # folders this process holds, with how many run_lock blocks hold each


def lock_wait() -> float:
    raw = os.environ.get("UN_LOCK_WAIT", "")
    try:
        wait = float(raw) if raw else DEFAULT_WAIT
    except ValueError:
        raise UserError(f"UN_LOCK_WAIT={raw!r} is not a number of seconds; unset it or set e.g. UN_LOCK_WAIT=60") from None
    return max(wait, 0.0)


def _holder(lock_file: Path) -> str:
    with contextlib.suppress(OSError, ValueError):
        pid = int(lock_file.read_text().strip())
        return f"pid {pid}"
    return "pid unknown"


def held_for_us() -> set[Path]:
    """The folders a parent process holds for this one (`UN_LOCK_HELD`)."""
    return {Path(p).absolute() for p in os.environ.get(HELD_ENV, "").split(os.pathsep) if p}


def is_held(folder) -> bool:
    """True if this process (or its parent, for it) holds `folder`'s lock."""
    folder = Path(folder).absolute()
    return folder in _held or folder in held_for_us()


@contextlib.contextmanager
def run_lock(folders, wait: float | None = None, clean: bool = True):
    """Hold `<folder>/.lock` for every folder (created if missing), then (with `clean`) remove the leftovers of
    killed runs under them; release all on exit. A folder held by another process: wait up to `wait` seconds
    (None: `UN_LOCK_WAIT`), then a one-line UserError. A folder this process (or its parent, for it) already
    holds is held again at no cost and not cleaned again."""
    from filelock import FileLock, Timeout

    wait = lock_wait() if wait is None else wait
    folders = sorted({Path(f).absolute() for f in folders if f is not None})
    acquired = []
    with contextlib.ExitStack() as stack:
        for folder in folders:
            if is_held(folder):
                _held[folder] = _held.get(folder, 0) + 1
                stack.callback(_release_count, folder)
                continue
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / LOCK_NAME
            lock = FileLock(str(path), is_singleton=False)
            try:
                lock.acquire(timeout=0)
            except Timeout:
                print(f"waiting up to {wait:g} s for another run using {folder} ({_holder(path)}) "
                      "(UN_LOCK_WAIT sets how long)", file=sys.stderr)
                try:
                    lock.acquire(timeout=wait)
                except Timeout:
                    raise UserError(f"another run is using {folder} ({_holder(path)}); wait for it to finish, stop "
                                    f"it, or raise UN_LOCK_WAIT (now {wait:g} s)") from None
            stack.callback(lock.release)
            _held[folder] = 1
            stack.callback(_release_count, folder)
            acquired.append(folder)
            with contextlib.suppress(OSError):
                path.write_text(f"{os.getpid()}\n")  # the same inode: the holder, for the next one's message
        if clean:
            for folder in acquired:
                clean_leftovers(folder)
        yield folders


def _release_count(folder: Path) -> None:
    _held[folder] -= 1
    if _held[folder] <= 0:
        del _held[folder]


def clean_leftovers(folder) -> list[Path]:
    """Remove the temporary files and folders of killed atomic writes (`.<name>.<random>.tmp`) under `folder`;
    call it only while holding the folder's lock. Returns what was removed."""
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in [d for d in dirnames if TMP_NAME.match(d)]:
            shutil.rmtree(Path(dirpath) / name, ignore_errors=True)
            dirnames.remove(name)
            removed.append(Path(dirpath) / name)
        for name in filenames:
            if TMP_NAME.match(name):
                with contextlib.suppress(FileNotFoundError):
                    (Path(dirpath) / name).unlink()
                removed.append(Path(dirpath) / name)
    return removed

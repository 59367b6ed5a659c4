"""What every subcommand of `universal-neurons` shares: the profile options, the device check and one-line errors."""

from __future__ import annotations

import argparse
import errno
import functools
import os
import shutil
import sys
import tempfile
from pathlib import Path

from .errors import UserError


def profile_options(default_profile: str = "default", device: bool = True) -> argparse.ArgumentParser:
    """A parent parser with --profile, --set, --quiet (and --device); nothing reaches a hub unless asked."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    ap = argparse.ArgumentParser(add_help=False)
    ap.add_argument("--profile", default=default_profile,
                    help=f"a shipped profile name (see `config --list`) or the path of a .yaml file "
                         f"(default: {default_profile})")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="override one key, e.g. --set train.tokens=1e6; one --set may hold several separated by "
                         "spaces (\"train.seeds=[0, 1] book.threshold=0.4\"), and --set may be repeated")
    if device:
        ap.add_argument("--device", default="cpu", type=checked_device,
                        help="where to compute: cpu, cuda, cuda:<k> or mps (default: cpu)")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    return ap


def checked_device(name: str) -> str:
    """`name` if torch can use it here, else a one-line UserError (never a silent fall-back to the CPU)."""
    import torch

    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError):
        raise UserError(f"unknown device {name!r}: use cpu, cuda, cuda:<k> or mps") from None
    if dev.type not in ("cpu", "cuda", "mps"):  # meta, xla, ...: torch knows them, the analyses do not run there
        raise UserError(f"device {name!r} ({dev.type}) is not one the analyses run on: use cpu, cuda, cuda:<k> or mps")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name!r} asked for, but torch sees no CUDA device here: use --device cpu "
                        "(or DEVICE=cpu with make)")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise UserError(f"device {name!r}: torch sees only {torch.cuda.device_count()} CUDA device(s)")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"device {name!r} asked for, but MPS is not available here: use --device cpu")
    return name


# the machine's faults, turned into one line: (what happened, the fix)
DISK_FAULTS = {
    errno.ENOSPC: ("no space left on the device", "free some space, or set UN_ARTIFACTS to a folder on a larger disk"),
    errno.EDQUOT: ("disk quota exceeded", "free some space, or set UN_ARTIFACTS to a folder on another disk"),
    errno.EROFS: ("read-only file system", "set UN_ARTIFACTS to a writable folder (or remount it read-write)"),
    errno.EACCES: ("permission denied", "make it writable for this user, or set UN_ARTIFACTS to a writable folder"),
    errno.EPERM: ("operation not permitted", "make it writable for this user, or set UN_ARTIFACTS to a writable folder"),
}


SERVE_CACHED = (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT)  # a folder that can still be read


def disk_fault(e: OSError) -> str | None:
    """One line for an OSError of a full disk, a read-only file system or missing permissions, else None."""
    if e.errno not in DISK_FAULTS:
        return None
    what, fix = DISK_FAULTS[e.errno]
    where = e.filename if e.filename is not None else "a file"
    return f"{where}: {what}; {fix}"


def one_line_errors(main):
    """Wrap a `main(argv) -> int | None`: a UserError, or an OSError of a full disk, a read-only file system or
    a refused permission (wherever it is raised), becomes one line on stderr and exit status 2."""

    @functools.wraps(main)
    def wrapper(argv=None) -> int:
        try:
            return main(argv) or 0
        except KeyboardInterrupt:
            print("error: interrupted (Ctrl-C); what was finished is kept, and the same command resumes from there",
                  file=sys.stderr)
            return 130
        except UserError as e:
            print(f"error: {_one_line(e)}", file=sys.stderr)
            return 2
        except OSError as e:
            line = disk_fault(e)
            if line is None:
                raise
            print(f"error: {line}", file=sys.stderr)
            return 2

    return wrapper


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split())


def writable(folder) -> Path:
    """`folder` (created if missing) if a file can be written in it, else a one-line UserError naming it."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-probe.", suffix=".tmp", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        what, fix = DISK_FAULTS.get(e.errno, (e.strerror or str(e), "choose another folder with UN_ARTIFACTS"))
        raise UserError(f"{folder}: cannot write there ({what}); {fix}") from None
    return folder


def read_only(folder) -> bool:
    """True if no file can be written in `folder` (created if missing): its disk is read-only or full, or this user
    may not write there. Cached results can still be read from it, with no lock; the first write then stops with
    one line naming its path. Another fault: the one-line UserError of `writable`."""
    try:
        writable(folder)
    except UserError as e:
        if isinstance(e.__context__, OSError) and e.__context__.errno in SERVE_CACHED:
            return True
        raise
    return False


def _existing(folder: Path) -> Path:
    folder = Path(folder).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def enough_space(folder, need_bytes: float, what: str = "this run") -> None:
    """A one-line UserError if the disk of `folder` has less than `need_bytes` free (a rough estimate)."""
    free = shutil.disk_usage(_existing(folder)).free
    if free < need_bytes:
        raise UserError(f"{folder}: {free / 2**20:,.0f} MiB free, but {what} writes about {need_bytes / 2**20:,.0f} "
                        "MiB; free some space, or set UN_ARTIFACTS to a folder on a larger disk")

"""What every subcommand of `universal-neurons` shares: the profile options, the device check and one-line errors."""

from __future__ import annotations

import argparse
import functools
import os
import sys

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
    except RuntimeError:
        raise UserError(f"unknown device {name!r}: use cpu, cuda, cuda:<k> or mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name!r} asked for, but torch sees no CUDA device here: use --device cpu "
                        "(or DEVICE=cpu with make)")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise UserError(f"device {name!r}: torch sees only {torch.cuda.device_count()} CUDA device(s)")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"device {name!r} asked for, but MPS is not available here: use --device cpu")
    return name


def one_line_errors(main):
    """Wrap a `main(argv) -> int | None`: a UserError becomes one line on stderr and exit status 2."""

    @functools.wraps(main)
    def wrapper(argv=None) -> int:
        try:
            return main(argv) or 0
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2

    return wrapper

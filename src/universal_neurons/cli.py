"""What every command line of the package shares: the profile arguments and one-line errors."""

from __future__ import annotations

import argparse
import functools
import os
import sys

from .errors import UserError


def profile_parser(prog: str, default_profile: str = "default") -> argparse.ArgumentParser:
    """A parser with --profile, --set, --device and --quiet; nothing reaches a hub unless asked."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    ap = argparse.ArgumentParser(prog=prog)
    ap.add_argument("--profile", default=default_profile)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quiet", action="store_true")
    return ap


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

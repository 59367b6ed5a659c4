"""Run a command while holding a profile's run folder: the Makefile runs each chapter's papermill so."""

from __future__ import annotations

import os
import sys

from ..config.profile import load_profile
from ..core.cli import one_line_errors, profile_options, read_only
from ..core.errors import UserError
from ..core.lock import HELD_ENV, run_lock


def main(argv=None) -> int:
    """`python -m universal_neurons.runs.locked --profile NAME [--set ...] -- COMMAND...`: run COMMAND while holding the
    profile's run folder (the Makefile runs each chapter's papermill so: a CLI run beside it waits, and its
    cleaner never sweeps a folder the notebook is writing). A read-only run folder is not locked (reading needs
    no lock). Exit status: COMMAND's."""
    import argparse
    import subprocess

    ap = argparse.ArgumentParser(prog="python -m universal_neurons.runs.locked", parents=[profile_options(device=False)],
                                 description=main.__doc__.split("\n\n")[0])
    ap.add_argument("command", nargs=argparse.REMAINDER, help="the command to run (after --)")
    args = ap.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise UserError("no command to run: python -m universal_neurons.runs.locked --profile NAME -- COMMAND...")
    root = load_profile(args.profile, args.overrides).root
    folders = [] if read_only(root) else [root]
    with run_lock(folders):
        held = os.pathsep.join([*os.environ.get(HELD_ENV, "").split(os.pathsep), *map(str, folders)]).strip(os.pathsep)
        return subprocess.run(command, env={**os.environ, HELD_ENV: held}).returncode




if __name__ == "__main__":
    sys.exit(one_line_errors(main)())

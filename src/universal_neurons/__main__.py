"""Command line: `python -m universal_neurons <command> --profile NAME [--set section.key=value ...]`."""

from __future__ import annotations

import argparse
import os
import sys

from .errors import UserError


def main(argv=None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    ap = argparse.ArgumentParser(prog="python -m universal_neurons")
    ap.add_argument("command", choices=["data", "zoo", "info"], help="data: corpus+tokenizer+token rows; zoo: train every seed")
    ap.add_argument("--profile", default="default")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    try:
        from .profiles import load_profile

        profile = load_profile(args.profile, args.overrides)
        progress = not args.quiet
        if args.command == "data":
            from .data import prepare

            train, heldout = prepare(profile, progress)
            print(f"{profile.name}: {len(train)} train rows, {len(heldout)} held-out rows of {train.n_ctx} tokens; "
                  f"unigram entropy {train.header['unigram_entropy_nats']:.3f} nats")
        elif args.command == "zoo":
            from .zoo import train_zoo

            if not profile.is_zoo:
                print(f"{profile.name}: real checkpoints ({', '.join(profile.members())}); nothing to train")
                return 0
            for path in train_zoo(profile, device=args.device, progress=progress):
                print(path)
        elif args.command == "info":
            for m in profile.members():
                print(m)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

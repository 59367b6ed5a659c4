"""Command line: `python -m universal_neurons <command> --profile NAME [--set section.key=value ...]`."""

from __future__ import annotations

import sys

from .cli import one_line_errors, profile_parser


@one_line_errors
def main(argv=None) -> int:
    ap = profile_parser("python -m universal_neurons")
    ap.add_argument("command", choices=["data", "zoo", "info"], help="data: corpus+tokenizer+token rows; zoo: train every seed")
    args = ap.parse_args(argv)
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
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Command line: `python -m universal_neurons <command> --profile NAME [--set section.key=value ...]`.

data: corpus + tokenizer + token rows. zoo: train every seed (a shipped zoo: check it; `--retrain`: train it
again into artifacts/ and compare). release: train a shipped zoo's missing seeds into its repository folder.
"""

from __future__ import annotations

import sys

from .cli import one_line_errors, profile_parser


@one_line_errors
def main(argv=None) -> int:
    ap = profile_parser("python -m universal_neurons")
    ap.add_argument("command", choices=["data", "zoo", "release", "info"])
    ap.add_argument("--retrain", action="store_true", help="zoo: retrain a shipped zoo into artifacts/ and compare")
    ap.add_argument("--seeds", type=int, nargs="+", help="release: only these seeds")
    ap.add_argument("--commit", action="store_true", help="release: git-commit each seed as soon as it is trained")
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
        if not profile.is_zoo:
            print(f"{profile.name}: real checkpoints ({', '.join(profile.members())}); nothing to train")
            return 0
        from . import shipped

        if profile.uses_shipped and args.retrain:
            for line in shipped.retrain_and_compare(profile, device=args.device, progress=progress):
                print(line)
        elif profile.uses_shipped:
            print(shipped.check(profile))
        else:
            from .zoo import train_zoo

            for path in train_zoo(profile, device=args.device, progress=progress):
                print(path)
    elif args.command == "release":
        from . import shipped

        for path in shipped.train_release(profile, seeds=args.seeds, device=args.device, progress=progress,
                                           commit=args.commit):
            print(path)
    elif args.command == "info":
        for m in profile.members():
            print(m)
    return 0


if __name__ == "__main__":
    sys.exit(main())

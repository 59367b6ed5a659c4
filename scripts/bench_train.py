"""Trainer throughput: today's settings against the speed options, in one run on this machine.

`make bench-train` (or `python scripts/bench_train.py --profile default`). Prints the CPU, then tokens/s of
the profile's model for each trainer setting (random tokens, the profile's batch, after warm-up steps),
and the ratio of the best way to train a zoo (several one-thread seeds side by side) to the old trainer
(one seed at a time with every core, eager attention, gelu_new, plain AdamW).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import subprocess
import sys
import time

import numpy as np

from universal_neurons.models import malloc

SETTINGS = {  # name: (attention, activation, fused AdamW, precision)
    "before (eager, gelu_new, AdamW)": ("eager", "gelu_new", False, "fp32"),
    "sdpa": ("sdpa", "gelu_new", False, "fp32"),
    "sdpa + gelu_pytorch_tanh": ("sdpa", "gelu_pytorch_tanh", False, "fp32"),
    "sdpa + tanh + fused AdamW": ("sdpa", "gelu_pytorch_tanh", True, "fp32"),
    "sdpa + tanh + fused + bf16 autocast": ("sdpa", "gelu_pytorch_tanh", True, "bf16"),
}
# The same as "sdpa + tanh + fused AdamW" with another malloc (LD_PRELOAD), where one is found: glibc returns
# the large logits buffers to the kernel every step (page faults), these allocators keep them. tcmalloc is
# the one `make zoo` uses (universal_neurons.models.malloc: fetched into the venv by `make env`).
ALLOCATORS = {"+ tcmalloc": malloc.find() or "",
              "+ jemalloc": "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"}


def measure(model_cfg: dict, vocab: int, batch: int, setting, threads: int, steps: int, warmup: int) -> float:
    """Tokens/s of `steps` training steps of the trainer's own step (after `warmup` steps)."""
    import torch
    from transformers import GPT2LMHeadModel

    from universal_neurons.models.zoo import _autocast, gpt2_config

    torch.set_num_threads(threads)
    attention, activation, fused, precision = setting
    torch.manual_seed(0)
    model = GPT2LMHeadModel(gpt2_config({**model_cfg, "activation": activation}, vocab, 0, attention))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=fused)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, vocab, (batch, model_cfg["n_ctx"]), generator=g)
    for i in range(warmup + steps):
        if i == warmup:
            t0 = time.perf_counter()
        with _autocast("cpu", precision):
            loss = model(x, labels=x).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    return steps * x.numel() / (time.perf_counter() - t0)


def _worker(args):
    return measure(*args)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="default")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3, help="rounds over all settings; the median is reported")
    ap.add_argument("--json", help="also write the results here")
    a = ap.parse_args()
    from universal_neurons import load_profile

    prof = load_profile(a.profile)
    m, t = prof.cfg["model"], prof.cfg["train"]
    vocab = prof.cfg["tokenizer"]["vocab_size"]
    cores = os.cpu_count() or 1
    import torch

    print(subprocess.run(["lscpu"], capture_output=True, text=True).stdout if sys.platform == "linux" else platform.processor())
    print(f"torch {torch.__version__}; profile {a.profile}: {m['n_layer']} layers, d_model {m['d_model']}, d_mlp "
          f"{m['d_mlp']}, vocab {vocab}, batch {t['batch_size']}x{m['n_ctx']}; {a.steps} steps after {a.warmup}")
    ctx = mp.get_context("spawn")
    modes = [(cores, 1)] + ([(1, cores)] if cores > 1 else [])  # (threads, processes): the old way, the new way
    runs: dict[tuple, list[float]] = {}
    settings = [(n, st, None) for n, st in SETTINGS.items()]
    settings += [(f"sdpa + tanh + fused {n}", SETTINGS["sdpa + tanh + fused AdamW"], lib)
                 for n, lib in ALLOCATORS.items() if os.path.exists(lib)]
    for rep in range(a.repeats):  # rounds over every setting, so that a slow moment hits all of them alike
        for name, setting, preload in settings:
            for threads, procs in modes:
                job = (m, vocab, t["batch_size"], setting, threads, a.steps, a.warmup)
                # fresh processes per measurement (no state carried over), started with the allocator preloaded
                with malloc.preloaded(preload), ctx.Pool(procs) as pool:
                    tps = sum(pool.map(_worker, [job] * procs))
                runs.setdefault((name, threads, procs), []).append(tps)
                print(f"round {rep + 1}: {name:38s} {threads} thread(s) x {procs} process(es): {tps:9,.0f} tokens/s",
                      flush=True)
    rows = [{"setting": n, "threads": th, "processes": p, "tokens_per_s": float(np.median(v)), "runs": v}
            for (n, th, p), v in runs.items()]
    old = next(r["tokens_per_s"] for r in rows if r["setting"].startswith("before") and r["threads"] == cores
               and r["processes"] == 1)
    print(f"\nmedian of {a.repeats} round(s); ratio to the old trainer (one process using all {cores} cores, eager "
          "attention, gelu_new, plain AdamW):")
    for r in rows:
        print(f"  {r['setting']:38s} {r['threads']} thread(s) x {r['processes']} process(es): "
              f"{r['tokens_per_s']:9,.0f} tokens/s  {r['tokens_per_s'] / old:5.2f}x")
    if a.json:
        from universal_neurons.models.zoo import cpu_model

        with open(a.json, "w") as f:
            json.dump({"cpu": cpu_model(), "torch": torch.__version__, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())

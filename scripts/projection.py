"""What each profile's token passes cost at its own token budget and at the paper's 100M tokens: on this machine's
cores (rates measured here), on one H100 and on 8 H100s under torchrun (datasheet rates at an assumed efficiency:
no GPU has been lent to this project), with the memory each needs (`universal_neurons.runs.projection`).

    .venv/bin/python scripts/projection.py [--threads 2] [--json results/projection.json]

Run it on an idle machine: it measures the rates first (seconds). Prints the CPU and a markdown table and writes the
JSON that the README's generated block reads.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
PAPER_TOKENS = 100_000_000
PROFILES = ("default", "gpt2-small", "pythia-160m", "gpt2-medium")
GPUS = 8


def cpu_name() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    return next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")), "unknown CPU")


def shapes() -> list[tuple]:
    """(Shape, the profile's n_tokens, its robust_tokens) per profile: the default zoo's shape from its config, the
    paper's models from their stand-ins' configs (the checkpoints are not here)."""
    from universal_neurons.config.profile import load_profile
    from universal_neurons.models import stand_ins
    from universal_neurons.runs.projection import Shape

    out = []
    for name in PROFILES:
        prof = load_profile(name)
        cfg, partners = prof.cfg, len(prof.members()) - 1
        if name in stand_ins.SHAPES:
            layers, d_mlp = stand_ins.neurons(name)
            c = stand_ins._config(name)
            d_model = getattr(c, "n_embd", None) or c.hidden_size
        else:
            layers, d_mlp, d_model = cfg["model"]["n_layer"], cfg["model"]["d_mlp"], cfg["model"]["d_model"]
        shape = Shape(name, int(layers), int(d_mlp), int(d_model), int(cfg["model"]["n_ctx"]), partners)
        out.append((shape, int(cfg["analysis"]["n_tokens"]), int(cfg["book"]["robust_tokens"]),
                    float(cfg["analysis"]["max_accumulator_gb"])))
    return out


def rows(rates_list, ranks_of) -> list[dict]:
    from universal_neurons.runs import projection as P

    table = []
    for shape, n_tokens, robust_tokens, _ in shapes():
        for rates in rates_list:
            for tokens in sorted({n_tokens, PAPER_TOKENS}):
                budget = P.fitted_budget(shape, rates.memory_gb)
                r = P.robustness(shape, robust_tokens, budget)
                for ranks in ranks_of(rates):
                    u = P.universality(shape, tokens, budget, joined=ranks == 1)  # the control joins on one process
                    table.append({"profile": shape.name, "neurons": f"{shape.n_layers} x {shape.d_mlp:,}",
                                  "partners": shape.partners, "tokens": tokens, "machine": rates.machine,
                                  "ranks": ranks, "measured": rates.measured, "budget_gb": budget,
                                  "universality_h": u.seconds(rates, ranks) / 3600, "universality_tiles": u.tiles,
                                  "universality_gb": u.memory_gb, "robustness_h": r.seconds(rates) / 3600,
                                  "robustness_passes": r.tiles, "robust_tokens": robust_tokens,
                                  "robustness_gb": r.memory_gb})
    return table


def calibrate(bench: Path, cpu: str) -> list[dict]:
    """The model against the scale dry run's universality steps on this CPU (rates measured again at the dry run's
    threads): the pass alone, as the universality chapter runs it (the control pass is another chapter's)."""
    import torch

    from universal_neurons.models import stand_ins
    from universal_neurons.runs import projection as P

    try:
        res = json.loads(Path(bench).read_text())
    except (OSError, ValueError):
        return []
    rows = [r for r in res.get("rows", []) if r["step"] == "universality" and r["status"] == "ok"
            and r["shape"] in stand_ins.SHAPES and r["shape"] != "tiny"]
    if res.get("cpu") != cpu or not rows or res.get("device") != "cpu":
        return []
    threads = torch.get_num_threads()
    torch.set_num_threads(int(res["threads"]))
    rates = P.measure_rates("dry run's threads", 24.0)
    torch.set_num_threads(threads)
    out = []
    for r in rows:
        layers, d_mlp = stand_ins.neurons(r["shape"])
        c = stand_ins._config(r["shape"])
        shape = P.Shape(r["shape"], layers, d_mlp, getattr(c, "n_embd", None) or c.hidden_size, 512,
                        int(res["partners"]))
        model = P.universality(shape, int(res["tokens"]), 4.0, control=False).seconds(rates)
        out.append({"what": f"universality pass, {r['shape']} stand-ins, {res['partners']} partner(s), "
                            f"{res['tokens']:,} tokens, {res['threads']} thread(s)",
                    "model_s": model, "measured_s": r["seconds"]})
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads of the measured rates")
    ap.add_argument("--memory-gb", type=float, default=24.0, help="this machine's memory, for its budget")
    ap.add_argument("--json", type=Path, default=ROOT / "results" / "projection.json")
    ap.add_argument("--bench", type=Path, default=ROOT / "results" / "bench-scale.json",
                    help="a scale dry run on this CPU, whose universality rows check the model")
    a = ap.parse_args(argv)
    import torch

    from universal_neurons.core.atomic import write_json
    from universal_neurons.runs import projection as P

    torch.set_num_threads(a.threads)
    cpu = cpu_name()
    print(f"CPU: {cpu}; torch {torch.__version__}; {a.threads} thread(s)", flush=True)
    here = P.measure_rates(f"{a.threads} CPU cores ({cpu}, measured)", a.memory_gb)
    calibration = calibrate(a.bench, cpu)
    gpu = P.datasheet_rates()
    table = rows([here, gpu], lambda r: (1,) if r.measured else (1, GPUS))
    result = {"cpu": cpu, "threads": a.threads, "torch": torch.__version__,
              "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "paper_tokens": PAPER_TOKENS, "rates": [P.as_dict(here), P.as_dict(gpu)],
              "assumed_efficiency": P.ASSUMED_EFFICIENCY, "calibration": calibration, "rows": table}
    print(P.markdown(result["rows"]))
    for c in calibration:
        print(f"calibration: {c['what']}: model {c['model_s']:,.0f} s, measured {c['measured_s']:,.0f} s")
    write_json(a.json, result)
    print(f"\nwritten: {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

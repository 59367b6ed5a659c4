"""The README's figures that come from a run, generated in one place: every block between
`<!-- generated: NAME -->` and `<!-- end generated -->` in README.md is written by this script.

    python scripts/readme_figures.py                 # rewrite the generated blocks of README.md (`make readme`)
    python scripts/readme_figures.py --check         # exit 1 if a block differs from what the sources give
    python scripts/readme_figures.py --record-build 1320 --what "fresh-clone make book"   # a timing, with its CPU
    scripts/timed.sh "fresh-clone make book" make book   # the same, timing the command itself
    python scripts/readme_figures.py --glued-from artifacts/default/notebooks   # the default book's glued values

Sources, all in the repository: the release zoo's manifest and training logs (zoo/release/), the shipped results
(results/sweep.csv, results/recipe.csv, results/emergence-default.*), the recorded timings
(results/build-times.json: what, seconds, date, commit, CPU) and the glued values of the default book's executed
notebooks (results/readme-glued.json, written by --glued-from, which reads them the way scripts/glue_values.py
does). tests/test_readme.py checks that README.md holds exactly what this script writes.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BUILD_TIMES = ROOT / "results" / "build-times.json"
GLUED = ROOT / "results" / "readme-glued.json"
RELEASE = ROOT / "zoo" / "release"
BLOCK = re.compile(r"(<!-- generated: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- end generated -->)", re.S)

# The glued values the README quotes: chapter -> keys (the chapters' own names, also read by the claims page).
GLUED_KEYS = {
    "universality": ["share_universal_pct", "n_universal", "n_neurons", "threshold"],
    "robustness": ["rob_share", "rob_n_universal", "rob_draw_min", "rob_draw_max", "rob_draws", "rob_boot_low",
                   "rob_boot_high", "rob_control_share", "rob_n_always", "rob_verdict_share"],
    "claims": ["clm_n_claims", "clm_n_hold", "clm_n_direction", "clm_n_fail", "clm_n_untestable",
               "clm_n_control_hold"],
}


# ---------------------------------------------------------------------------------------------------- sources
def glued(notebook: Path) -> dict[str, str]:
    """{name: value} of the glue outputs of one executed notebook (as scripts/glue_values.py reads them)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from glue_values import glued as read

    return read(notebook)


def shown(raw: str):
    """A glued plain-text value as a Python value (myst-nb stores its repr: numbers, quoted strings)."""
    import ast

    try:
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return raw


def glued_values(folder: Path) -> dict[str, dict[str, str]]:
    """The GLUED_KEYS of the executed notebooks in `folder` (a chapter or key that is missing raises KeyError)."""
    out = {}
    for chapter, keys in GLUED_KEYS.items():
        values = glued(Path(folder) / f"{chapter}.ipynb")
        out[chapter] = {k: values[k] for k in keys}
    return out


def cpu_model() -> str:
    for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def commit() -> str:
    r = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short=10", "HEAD"], capture_output=True, text=True)
    return r.stdout.strip() or "unknown"


def record_build(seconds: float, what: str, note: str = "", path: Path = BUILD_TIMES) -> dict:
    """Append one timing to results/build-times.json, with the date, the commit and this machine's CPU."""
    entries = json.loads(path.read_text()) if path.is_file() else []
    entry = {"what": what, "seconds": round(float(seconds), 1), "date": datetime.date.today().isoformat(),
             "commit": commit(), "cpu": cpu_model(), "cores": os.cpu_count(), "note": note}
    entries.append(entry)
    path.write_text(json.dumps(entries, indent=2) + "\n")
    return entry


# ---------------------------------------------------------------------------------------------------- blocks
def duration(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m} min {s:02d} s" if m else f"{s} s"


def block_build_times(root: Path = ROOT) -> str:
    """The latest timing of each recorded build, as a table."""
    path = root / "results" / "build-times.json"
    entries = json.loads(path.read_text()) if path.is_file() else []
    latest = {}
    for e in entries:
        latest[e["what"]] = e
    rows = ["| what | time | date | commit | machine | note |", "|---|---|---|---|---|---|"]
    for what in ("fresh-clone make book", "fresh-clone make test"):
        if what not in latest:
            rows.append(f"| {what} | not recorded at this state | | | | `scripts/timed.sh \"{what}\" make "
                        f"{what.split()[-1]}` records it |")
    for e in latest.values():
        rows.append(f"| {e['what']} | {duration(e['seconds'])} | {e['date']} | {e['commit']} | "
                    f"{e['cores']} cores, {e['cpu']} | {e.get('note', '')} |")
    return "\n".join(rows)


def _release(root: Path):
    man = json.loads((root / "zoo" / "release" / "manifest.json").read_text())
    logs = {s: json.loads((root / "zoo" / "release" / f"seed-{s}" / "training_log.json").read_text())
            for s in man["final_seeds"]}
    return man, logs


def block_release_zoo(root: Path = ROOT) -> str:
    """The release zoo in one sentence, from its manifest and training logs."""
    man, logs = _release(root)
    seeds = man["final_seeds"]
    loss = [man["seeds"][str(s)]["heldout_loss"] for s in seeds]
    secs = [man["seeds"][str(s)]["train_seconds"] for s in seeds]
    tps = [man["seeds"][str(s)]["tokens"] / man["seeds"][str(s)]["train_seconds"] for s in seeds]
    size = sum((root / "zoo" / "release" / f"seed-{s}" / "model.safetensors").stat().st_size for s in seeds)
    cpus = sorted({man["seeds"][str(s)]["cpu"] for s in seeds})
    m, t = man["recipe"]["model"], man["recipe"]["train"]
    unigram = logs[seeds[0]]["unigram_entropy_nats"]
    return (f"**{len(seeds)} seeds** (reference seed {seeds[0]} and {len(seeds) - 1} partners) of {m['n_layer']} "
            f"layers, d_model {m['d_model']}, d_mlp {m['d_mlp']:,}, n_ctx {m['n_ctx']}, a "
            f"{man['recipe']['tokenizer']['vocab_size']:,}-token BPE ({logs[seeds[0]]['n_params']:,} parameters), "
            f"{man['seeds'][str(seeds[0])]['tokens']:,} tokens and {man['seeds'][str(seeds[0])]['steps']:,} steps "
            f"each ({t['schedule']} schedule, lr {t['lr']:g}); held-out loss {min(loss):.3f}-{max(loss):.3f} nats "
            f"against a unigram entropy of {unigram:.2f}; {duration(min(secs))} to {duration(max(secs))} per seed "
            f"({min(tps):,.0f}-{max(tps):,.0f} tokens/s, {t['threads']} thread each) on {', '.join(cpus)}, "
            f"{man['created']}; {size / 1e6:.1f} MB of weights in all (manifest: `zoo/release/manifest.json`).")


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def block_recipe(root: Path = ROOT) -> str:
    """The release recipe's candidates (results/recipe.csv)."""
    t = pd.read_csv(root / "results" / "recipe.csv")
    t = t[(t["stage"] == "final") & (t["pairing"] == "all")]
    rows = ["| candidate | d_mlp | schedule | held-out loss | above 0.5 | above 0.4 | above 0.3 | excess q99 | "
            "excess max | median mean_corr / baseline | control q99.9 |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for _, r in t.iterrows():
        rows.append(f"| `{r['point']}` | {r['d_mlp']:,} | {r['schedule']} | {r['heldout_loss']:.3f} | "
                    f"{r['n_universal']} ({100 * r['share_universal']:.2f}%) | {100 * r['share_above_0.4']:.2f}% | "
                    f"{_pct(r['share_above_0.3'])} | {r['excess_q99']:.3f} | {r['excess_max']:.3f} | "
                    f"{r['mean_corr_median']:.3f} / {r['mean_baseline_median']:.3f} | {r['control_q999']:.3f} |")
    return "\n".join(rows)


def block_sweep(root: Path = ROOT) -> str:
    """The scale study's grid (results/sweep.csv): the three partners' mean, with the single-partner range."""
    t = pd.read_csv(root / "results" / "sweep.csv")
    t = t[t["stage"] == "final"]
    rows = ["| point | d_mlp | layers | tokens per seed | held-out loss | excess q99 (single partners) | excess max | "
            "control q99.9 | share above control q99.9 | median mean_corr / baseline |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for point, g in t.groupby("point", sort=False):
        a = g[g["pairing"] == "all"].iloc[0]
        single = g[g["pairing"].str.match(r"p\d+$")]["excess_q99"]
        rows.append(f"| `{point}` | {a['d_mlp']:,} | {a['n_layer']} | {a['tokens'] / 1e6:.1f}M | "
                    f"{a['heldout_loss']:.2f} | {a['excess_q99']:.3f} ({single.min():.3f}-{single.max():.3f}) | "
                    f"{a['excess_max']:.3f} | {a['control_q999']:.3f} | {_pct(a['share_above_control_q999'])} | "
                    f"{a['mean_corr_median']:.3f} / {a['mean_baseline_median']:.3f} |")
    largest = t[t["pairing"] == "all"].sort_values("excess_max").iloc[-1]
    rows += ["", f"Above the paper's 0.5: {int(t[t['pairing'] == 'all']['n_universal'].sum())} neurons in all "
                 f"{t['point'].nunique()} points (the largest excess is {largest['excess_max']:.3f}, "
                 f"`{largest['point']}`)."]
    return "\n".join(rows)


EMERGENCE_THRESHOLD = 0.5


def block_emergence(root: Path = ROOT) -> str:
    """Universality over training (results/emergence-default.npz and .json)."""
    z = np.load(root / "results" / "emergence-default.npz")
    info = json.loads((root / "results" / "emergence-default.json").read_text())
    excess = (z["real"] - z["base"]).mean(axis=1)  # [steps, neurons]: mean over partners of best minus baseline
    final = excess[-1] > EMERGENCE_THRESHOLD
    top5 = excess >= np.quantile(excess, 0.95, axis=1, keepdims=True)
    tok = z["tokens"]
    head = "| training tokens | " + " | ".join("0" if x == 0 else f"{x / 1e6:.1f}M" for x in tok) + " |"
    rows = [head, "|---|" + "---|" * len(tok),
            "| held-out loss (reference) | " + " | ".join(f"{x:.2f}" for x in z["loss"][:, 0]) + " |",
            f"| universal (excess > {EMERGENCE_THRESHOLD}) | " + " | ".join(str(int(x)) for x in
                                                                       (excess > EMERGENCE_THRESHOLD).sum(1)) + " |",
            "| excess q99 | " + " | ".join(f"{x:.3f}" for x in np.quantile(excess, 0.99, axis=1)) + " |",
            f"| the final {final.sum()}: universal then | " + " | ".join(
                str(int(x)) for x in (excess[:, final] > EMERGENCE_THRESHOLD).sum(1)) + " |",
            f"| the final {final.sum()}: in the top 5% then | " + " | ".join(
                str(int(x)) for x in top5[:, final].sum(1)) + " |"]
    shipped = (z["shipped_real"] - z["shipped_base"]).mean(axis=0) > EMERGENCE_THRESHOLD
    r = z["same_index_corr"]
    members = info["members"]
    rows += ["", f"Seeds {info['reference_seed']} and {', '.join(map(str, info['partner_seeds']))} retrained on "
                 f"{info['cpu']} ({info['date']}, `{info['command']}`), measured over {info['n_tokens']:,} held-out "
                 f"tokens; training took {duration(min(m['train_seconds'] for m in members.values()))} to "
                 f"{duration(max(m['train_seconds'] for m in members.values()))} per seed. A sibling of the shipped "
                 f"zoo (same recipe, seeds and data order, another CPU): its reference's neurons correlate with the "
                 f"shipped reference's neuron of the same index at a median r = {np.median(r):.3f} "
                 f"({np.mean(r > 0.9):.0%} above 0.9); {int((final & shipped).sum())} of its {int(final.sum())} "
                 f"final universal neurons are universal in the shipped zoo against the same partner seed "
                 f"({int(shipped.sum())} there)."]
    return "\n".join(rows)


def block_universality(root: Path = ROOT) -> str:
    """The default book's universal share and its robustness, from the snapshot of its glued values."""
    path = root / "results" / "readme-glued.json"
    if not path.is_file():
        return ("Not recorded yet: after `make book`, `python scripts/readme_figures.py --glued-from "
                "artifacts/default/notebooks` copies the default book's values here.")
    snap = json.loads(path.read_text())
    u = {k: shown(v) for k, v in snap["values"]["universality"].items()}
    r = {k: shown(v) for k, v in snap["values"]["robustness"].items()}
    c = {k: shown(v) for k, v in snap["values"]["claims"].items()}
    return (f"In the default book ({snap['run']}, commit {snap['commit']}, {snap['date']}): **{u['n_universal']:,} of "
            f"the {u['n_neurons']:,} neurons ({u['share_universal_pct']:.2f}%) are universal** at the threshold "
            f"{u['threshold']} (the paper: 1.23-4.16%). The robustness chapter's co-moment pass gives "
            f"{r['rob_share']:.2f}% ({r['rob_n_universal']}), {r['rob_draw_min']:.2f}-{r['rob_draw_max']:.2f}% over "
            f"{r['rob_draws']} draws of the baseline, a bootstrap interval of {r['rob_boot_low']:.2f}-"
            f"{r['rob_boot_high']:.2f}%, {r['rob_control_share']:.2f}% with the untrained control's correlations as the "
            f"baseline, and {r['rob_n_always']} neurons universal under every null; the paper's claim of a few percent: "
            f"**{r['rob_verdict_share']}**. Of the paper's {c['clm_n_claims']} claims, by the book's verdict protocol: "
            f"**{c['clm_n_hold']} hold, {c['clm_n_direction']} direction only, {c['clm_n_fail']} do not hold, "
            f"{c['clm_n_untestable']} not testable here**; on untrained models of the same shape, "
            f"{c['clm_n_control_hold']} hold.")


def block_projection(root: Path = ROOT) -> str:
    """The projection table, from results/projection.json (scripts/projection.py)."""
    path = root / "results" / "projection.json"
    if not path.is_file():
        return "Not measured yet: `make projection` writes it."
    from universal_neurons.runs.projection import markdown

    res = json.loads(path.read_text())
    cpu = next(r for r in res["rates"] if r["measured"])
    return (f"Rates measured on {res['cpu']} ({res['threads']} threads, torch {res['torch']}, {res['date']}): GEMM "
            f"{cpu['gemm32'] / 1e9:.0f} GFLOP/s in float32, {cpu['gemm64'] / 1e9:.0f} in float64, a GPT-2 forward "
            f"{cpu['forward'] / 1e9:.0f} GFLOP/s. The H100 rows are its datasheet at an assumed efficiency "
            f"({', '.join(f'{k} {v:.0%}' for k, v in res['assumed_efficiency'].items())}), not a measurement."
            + "".join(f" The model against a measurement ({c['what']}): {c['model_s']:,.0f} s modelled, "
                      f"{c['measured_s']:,.0f} s measured." for c in res.get("calibration", []))
            + "\n\n" + markdown(res["rows"]))


def block_bench_scale(root: Path = ROOT) -> str:
    """The scale dry runs' tables, from results/bench-scale.json and then any results/bench-scale-<name>.json (a run
    with settings of its own), each drawn by scripts/bench_scale.py's own `markdown` (every step's time and peak
    memory per shape, the sampled steps' projections, the total, and a line per step that was not ok) under a line
    with its settings and above its note."""
    import importlib.util

    paths = sorted((root / "results").glob("bench-scale*.json"), key=lambda p: (p.name != "bench-scale.json", p.name))
    if not paths:
        return "Not run yet: `make bench-scale` writes it."
    spec = importlib.util.spec_from_file_location("bench_scale", Path(__file__).resolve().parent / "bench_scale.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    blocks = []
    for path in paths:
        res = json.loads(path.read_text())
        threads = f"{res['threads']} thread{'s' if res['threads'] != 1 else ''}" + (
            f" per shape, {res['jobs']} shapes side by side" if res.get("jobs", 1) > 1 else "")
        sampled = (f"; the robustness step's first {res['sample_tiles']} tiles derived and the rest projected"
                   if res.get("sample_tiles") else "")
        lines = [f"On {res['cpu']} ({threads}, torch {res['torch']}, {res['date']}), {res['tokens']:,} held-out "
                 f"tokens per budget, {res['partners']} partner{'s' if res['partners'] != 1 else ''}, overrides "
                 f"{', '.join(f'`{o}`' for o in res['extra_overrides']) or 'none'}{sampled}"
                 f" (`results/{path.name}`):", "",
                 bench.markdown(res["rows"], res["shapes"], res["steps"])]
        if res.get("note"):
            lines += ["", res["note"]]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


BLOCKS = {"projection": block_projection, "bench-scale": block_bench_scale, "build-times": block_build_times, "release-zoo": block_release_zoo, "recipe": block_recipe,
          "sweep": block_sweep, "emergence": block_emergence, "universality": block_universality}


def render(text: str, root: Path = ROOT) -> str:
    """`text` (the README) with every generated block rewritten from the sources under `root`."""
    def one(m):
        name = m["name"]
        if name not in BLOCKS:
            raise KeyError(f"README.md has a generated block {name!r} that this script does not know")
        return m.group(1) + BLOCKS[name](root).rstrip("\n") + "\n" + m.group(4)

    return BLOCK.sub(one, text)


def blocks(text: str) -> dict[str, str]:
    return {m["name"]: m["body"] for m in BLOCK.finditer(text)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if README.md differs from what the sources give")
    ap.add_argument("--record-build", type=float, metavar="SECONDS",
                    help="append a timing to results/build-times.json (with the date, commit and CPU), then "
                         "rewrite the README")
    ap.add_argument("--what", default="fresh-clone make book", help="what --record-build timed")
    ap.add_argument("--note", default="", help="a note for --record-build (e.g. '578 passed, 2 skipped')")
    ap.add_argument("--glued-from", type=Path, metavar="FOLDER",
                    help="snapshot the quoted glued values of these executed notebooks into results/readme-glued.json")
    ap.add_argument("--run", default=None, help="the run's name for --glued-from (default: the folder's parent)")
    a = ap.parse_args(argv)
    if a.record_build is not None:
        print(json.dumps(record_build(a.record_build, a.what, a.note)))
    if a.glued_from is not None:
        values = glued_values(a.glued_from)
        GLUED.write_text(json.dumps({"run": a.run or a.glued_from.resolve().parent.name, "commit": commit(),
                                     "date": datetime.date.today().isoformat(), "values": values},
                                    indent=2, sort_keys=True) + "\n")
    text = README.read_text()
    new = render(text)
    if a.check:
        stale = [k for k, v in blocks(new).items() if blocks(text).get(k) != v]
        if stale:
            print(f"README.md: generated blocks out of date: {', '.join(stale)} (run `make readme`)", file=sys.stderr)
            return 1
        return 0
    if new != text:
        README.write_text(new)
    print(f"README.md: {len(blocks(new))} generated blocks")
    return 0


if __name__ == "__main__":
    sys.exit(main())

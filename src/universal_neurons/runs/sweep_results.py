"""The scale study's results: each point analysed (its reference against its partners, each partner alone and an
untrained control), summarised into rows, and gathered into `artifacts/<sweep>/results.csv`; the finished
table shipped in the repository's `results/` folder, and what the book shows.

Per point, `summary.json` holds its rows of results.csv, written last and cached (cache.py, with the
threshold): a point with current rows is skipped, so a killed sweep resumes point by point. One row per
pairing: `all` (the paper's mean over partners), `p<k>` (the reference against partner k alone: the
seed-to-seed spread) and `control`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..core import cache, paper
from ..core.atomic import atomic_path, copy_file, write_json
from ..core.errors import UserError
from ..core.machine import cpu_model
from ..core.paths import project_dir
from .control import CONTROL_SEED, run_control
from .neuron_tables import summary
from .selection import CONTROL_QUANTILE, book_threshold, control_threshold, is_control, resolve_threshold
from .sweep import PointProfile, Sweep, snapshot_dir, train_point, train_side_by_side
from .universality import run_universality

POINT_VERSION = 2  # 2: the key in sweep-point.key.json (cache.py), with the threshold
COLUMNS = ["point", "stage", "fraction", "train_fraction", "pairing", "reference", "partners", "d_model", "d_mlp",
           "n_head", "n_layer", "neurons", "parameters", "budget_tokens", "tokens", "heldout_loss", "heldout_loss_sd",
           "n_seeds", "n_tokens", "threshold", "n_neurons", "n_dead", "n_universal", "share_universal",
           "share_above_0.3", "share_above_0.4", "control_q999", "share_above_control_q999", "excess_q50",
           "excess_q90", "excess_q99", "excess_q999", "excess_max", "mean_corr_median", "mean_baseline_median"]


def sweep_threshold(sweep: Sweep, threshold=None) -> float:
    """The rows' threshold: `threshold`, else the sweep profile's book.threshold; a number (every row also gives
    the share above its own control's quantile)."""
    value = book_threshold(sweep.base) if threshold is None else threshold
    if is_control(value):
        raise UserError("a sweep's threshold is a number (each row also reports the share above its own control's "
                        f"{100 * CONTROL_QUANTILE:g}th percentile); set book.threshold to a number")
    return resolve_threshold(value, sweep.base.tables_dir)[0]


def _partner_table(neurons: pd.DataFrame, k: int) -> pd.DataFrame:
    """The neuron table of the reference against partner k alone (its max correlation and baseline)."""
    return pd.DataFrame({"is_dead": neurons["is_dead"], "mean_corr": neurons[f"max_corr_p{k}"],
                         "mean_baseline": neurons[f"baseline_p{k}"],
                         "excess_corr": neurons[f"max_corr_p{k}"] - neurons[f"baseline_p{k}"]})


def pairing_rows(res, ctrl, threshold: float = paper.THRESHOLD) -> list[dict]:
    """Summary rows of one analysis: `all` partners (the paper's), each partner `p<k>` alone, the `control`;
    each with the scale-aware threshold (CONTROL_QUANTILE of the control's excess) and the share above it."""
    q = control_threshold(ctrl.neurons)
    names = res.info["names"]
    tables = [("all", res.neurons, names[1:])]
    tables += [(f"p{k}", _partner_table(res.neurons, k), [names[k]]) for k in range(1, len(names))]
    tables += [("control", ctrl.neurons, ["untrained"])]
    rows = []
    for pairing, table, partners in tables:
        live = table.loc[~table["is_dead"], "excess_corr"]
        rows.append({"pairing": pairing, "reference": names[0], "partners": " ".join(partners),
                     "n_tokens": res.info["n_tokens"], "threshold": threshold, **summary(table, threshold),
                     "control_q999": q, "share_above_control_q999": float((live > q).mean()),
                     "excess_q999": float(live.quantile(CONTROL_QUANTILE))})
    return rows


def _member_info(folder: Path) -> dict:
    folder = Path(folder)
    if (folder / "snapshot.json").is_file():
        return json.loads((folder / "snapshot.json").read_text())
    info = json.loads((folder / "training_log.json").read_text())
    return info


def _losses(res, pairing: str) -> list[float]:
    dirs = res.info["checkpoint_dirs"]
    chosen = dirs if pairing == "all" else dirs[:1] if pairing == "control" else [dirs[0], dirs[int(pairing[1:])]]
    return [_member_info(Path(d))["heldout_loss"] for d in chosen]


def _point_key(sweep: Sweep, point: PointProfile, threshold: float) -> dict:
    snap = sweep.fractions if point.point_id == sweep.snapshot_point else []
    header = point.data_dir / "train.json"  # the shared rows' provenance (corpus and tokenizer checksums)
    try:
        data = json.loads(header.read_text()).get("provenance") if header.is_file() else None
    except (OSError, ValueError, AttributeError):
        data = None  # a damaged header: the rows are rebuilt, and this key is not current
    return cache.make_key("sweep-point", version=POINT_VERSION, data=data, snapshots=snap, threshold=threshold,
                          cfg={k: point.cfg[k] for k in ("corpus", "tokenizer", "model", "train", "analysis")},
                          control_seed=CONTROL_SEED)


def point_done(sweep: Sweep, point: PointProfile, threshold=None) -> bool:
    """True if the point's rows (summary.json) are current, at `threshold` (None: the sweep's book.threshold);
    a damaged summary.json counts as missing (the point is summarised again)."""
    return (cache.is_current(point.point_dir, _point_key(sweep, point, sweep_threshold(sweep, threshold)))
            and _summary_rows(point) is not None)


def _summary_rows(point: PointProfile) -> list[dict] | None:
    """The rows of the point's summary.json, or None if it is missing or damaged."""
    try:
        rows = json.loads((point.point_dir / "summary.json").read_text())["rows"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return rows if isinstance(rows, list) and all(isinstance(r, dict) for r in rows) else None


def analyse(point: PointProfile, reference, partners, out_dir: Path, device="cpu", threshold=None, progress=True):
    """Universality of `reference` against `partners`, and against the untrained control (both cached)."""
    res = run_universality(point, device=device, reference=reference, partners=partners, threshold=threshold,
                           out_dir=out_dir, progress=progress)
    ctrl = run_control(point, device=device, progress=progress, reference=reference, tables_dir=out_dir,
                       threshold=threshold)
    return res, ctrl


def run_point(sweep: Sweep, point: PointProfile, device="cpu", threshold=None, progress=True) -> list[dict]:
    """Train, analyse and summarise one point (every step cached); writes point_dir/summary.json last."""
    threshold = sweep_threshold(sweep, threshold)
    members = train_point(sweep, point, device, progress)
    info = _member_info(members[0])
    stages = [(1.0, None, None, point.tables_dir)]
    if point.point_id == sweep.snapshot_point:
        ref = point.cfg["analysis"].get("reference_seed", point.seeds[0])
        for f in sweep.fractions:
            d = snapshot_dir(point, f)
            stages.append((f, str(d / f"seed-{ref}"), [str(d / f"seed-{s}") for s in point.seeds if s != ref],
                           d / "tables"))
    rows = []
    for fraction, reference, partners, out_dir in stages:
        res, ctrl = analyse(point, reference, partners, out_dir, device, threshold, progress)
        snap = _member_info(Path(res.info["checkpoint_dirs"][0]))
        for r in pairing_rows(res, ctrl, threshold):
            losses = _losses(res, r["pairing"])
            rows.append({"point": point.point_id, "stage": "final" if fraction == 1.0 else "snapshot",
                         "fraction": fraction, "d_model": point.point["d_model"], "d_mlp": point.point["d_mlp"],
                         "n_head": point.point["n_head"], "n_layer": point.point["n_layer"],
                         "neurons": point.point["n_layer"] * point.point["d_mlp"], "parameters": info["n_params"],
                         "budget_tokens": point.point["tokens"], "tokens": snap["tokens"],
                         "train_fraction": snap["tokens"] / info["tokens"],
                         "heldout_loss": float(np.mean(losses)), "heldout_loss_sd": float(np.std(losses)),
                         "n_seeds": len(point.seeds), "variant": point.point.get("variant", ""),
                         "lr": point.cfg["train"]["lr"], "schedule": point.cfg["train"]["schedule"], **r})
    with cache.updating(point.point_dir, _point_key(sweep, point, threshold)):
        write_json(point.point_dir / "summary.json", {"rows": rows})
    return rows


def read_results(sweep: Sweep, threshold=None) -> pd.DataFrame:
    """Rows of every finished point of the sweep (from each point's summary.json), grid order."""
    rows = []
    for p in sweep.points:
        if point_done(sweep, p, threshold):
            rows += _summary_rows(p)
    table = pd.DataFrame(rows)
    first = [c for c in COLUMNS if c in table.columns]
    return table[first + [c for c in table.columns if c not in first]]


def write_results(sweep: Sweep, threshold=None) -> pd.DataFrame:
    """results.csv of the finished points, and results.json: where, when and with what it was computed."""
    import datetime

    import torch

    table = read_results(sweep, threshold)
    with atomic_path(sweep.results_path) as tmp:
        table.to_csv(tmp, index=False)
    done = [p.point_id for p in sweep.points if point_done(sweep, p, threshold)]
    write_json(sweep.results_path.with_suffix(".json"), {
        "sweep": sweep.base.name, "cpu": cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__,
        "date": datetime.date.today().isoformat(), "points_done": done,
        "recompute": f"python -m universal_neurons sweep --profile {sweep.base.name}"})
    return table


def shipped_results_path(sweep: Sweep) -> Path:
    """`results/<sweep>.csv` in the repository: a finished sweep's table, kept because it costs hours."""
    return project_dir() / "results" / f"{sweep.base.name}.csv"


def ship_results(sweep: Sweep) -> Path:
    """Copy results.csv and its provenance (results.json) into the repository's results/ folder."""
    if not sweep.results_path.is_file():
        raise UserError(f"{sweep.results_path} does not exist; run the sweep first")
    dest = shipped_results_path(sweep)
    for src, dst in ((sweep.results_path, dest), (sweep.results_path.with_suffix(".json"), dest.with_suffix(".json"))):
        copy_file(src, dst)
    return dest


def results_for_book(sweep: Sweep, threshold=None) -> tuple[pd.DataFrame, str]:
    """The sweep's results and where they come from: the points finished on this machine, or the table
    shipped in results/ (with its machine and date) when it has more finished points."""
    here = read_results(sweep, threshold)
    shipped = shipped_results_path(sweep)
    if shipped.is_file():
        table = pd.read_csv(shipped)
        prov = json.loads(shipped.with_suffix(".json").read_text()) if shipped.with_suffix(".json").is_file() else {}
        if table["point"].nunique() > (here["point"].nunique() if len(here) else 0):
            return table, (f"the table shipped in the repository (`results/{shipped.name}`), computed on "
                           f"{prov.get('cpu', 'an unrecorded machine')} ({prov.get('cores', '?')} cores) on "
                           f"{prov.get('date', 'an unrecorded date')}; `{prov.get('recompute', 'make sweep')}` "
                           "recomputes it")
    if len(here):
        return here, f"computed on this machine (`{sweep.results_path}`)"
    return here, "nothing yet: no point has been run here and no table is shipped"


def status(sweep: Sweep, threshold=None) -> pd.DataFrame:
    """One row per point: its size, whether it is the snapshot point, and whether its rows are done."""
    return pd.DataFrame([{"point": p.point_id, "done": point_done(sweep, p, threshold),
                          "snapshots": p.point_id == sweep.snapshot_point, **{k: p.point[k] for k in
                          ("d_model", "d_mlp", "n_layer", "tokens")}} for p in sweep.points])


def run_sweep(sweep: Sweep, points=None, device="cpu", threshold=None, limit: int | None = None,
              progress=True) -> list[str]:
    """Run every missing point (or those named in `points`), at most `limit` of them; rewrite results.csv
    after each. `threshold`: None = the sweep's book.threshold. Returns the ids of the points run now."""
    threshold = sweep_threshold(sweep, threshold)
    chosen = [sweep.point(i) for i in points] if points else sweep.points
    train_side_by_side(sweep, [p for p in chosen if not point_done(sweep, p, threshold)][:limit], device, progress)
    done = []
    for p in chosen:
        if point_done(sweep, p, threshold):
            continue
        if limit is not None and len(done) >= limit:
            break
        if progress:
            print(f"[sweep] {p.name}", flush=True)
        run_point(sweep, p, device=device, threshold=threshold, progress=progress)
        done.append(p.point_id)
        write_results(sweep, threshold)
    if not sweep.results_path.is_file() or not done:
        write_results(sweep, threshold)
    return done

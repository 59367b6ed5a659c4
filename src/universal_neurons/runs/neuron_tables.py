"""The universality tables (paper section 2), derived from a saved pass (`universality.run_universality`):
one row per reference neuron (`neuron_table`), reference layer by partner layer (`layer_similarity`), the
headline numbers (`summary`) and how they converge with more tokens (`convergence`).

`load_results(profile or folder, threshold)` derives them from the folder's saved maxima and writes
neurons.csv, layer_similarity.csv, convergence.csv and universality.json (the pass's provenance, the
threshold and the summary) beside them, cached (cache.py): another threshold re-reads the maxima instead of
running the pass again. neurons.csv is what `properties.neuron_frame` joins the neuron properties into.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..core import cache, paper
from ..core.atomic import atomic_path, write_json
from ..core.checksum import file_sha256
from ..core.errors import UserError
from ..measures.maxima import MAXIMA, Correlations
from .selection import book_threshold, resolve_threshold

VERSION = 1
KIND = "universality-tables"  # the cache kind of the derived tables
TABLES = ("neurons", "layer_similarity", "convergence")  # <name>.csv, with universality.json


def neuron_table(res: Correlations, threshold: float = paper.THRESHOLD, snapshot: int = -1) -> pd.DataFrame:
    """One row per reference neuron: per-partner max correlation, baseline and argmax layer/neuron, then
    max/mean/min over partners of both, excess_corr and is_universal (see `universality`)."""
    n_layers, d = res.shapes[0]
    real, base, idx = res.real[snapshot], res.base[snapshot], res.real_idx[snapshot]  # [P, n_a]
    cols = {"layer": np.repeat(np.arange(n_layers), d), "neuron": np.tile(np.arange(d), n_layers),
            "is_dead": np.isnan(real).all(0)}
    for p in range(len(real)):
        dp = res.shapes[p + 1][1]
        cols[f"max_corr_p{p + 1}"] = real[p]
        cols[f"baseline_p{p + 1}"] = base[p]
        cols[f"max_sim_layer_p{p + 1}"] = np.where(idx[p] >= 0, idx[p] // dp, -1)
        cols[f"max_sim_neuron_p{p + 1}"] = np.where(idx[p] >= 0, idx[p] % dp, -1)
    for name, a in (("corr", real), ("baseline", base)):  # NaN propagates: dead reference neurons
        cols[f"max_{name}"], cols[f"mean_{name}"], cols[f"min_{name}"] = a.max(0), a.mean(0), a.min(0)
    cols["excess_corr"] = cols["mean_corr"] - cols["mean_baseline"]
    cols["is_universal"] = cols["excess_corr"] > threshold
    return pd.DataFrame(cols)


def layer_similarity(res: Correlations, table: pd.DataFrame) -> pd.DataFrame:
    """Per (reference layer, partner layer): mean over live reference neurons and partners of the max
    correlation within that partner layer, and the share of argmaxes (max_sim_layer) landing there."""
    rows = []
    live = ~table["is_dead"].to_numpy()
    for p, lm in enumerate(res.layer_max):  # lm [n_a, L_p]
        arg = table[f"max_sim_layer_p{p + 1}"].to_numpy()
        for a in range(res.shapes[0][0]):
            sel = live & (table["layer"].to_numpy() == a)
            for b in range(lm.shape[1]):
                rows.append({"partner": p + 1, "ref_layer": a, "partner_layer": b,
                             "mean_max_corr": np.nanmean(lm[sel, b]) if sel.any() else np.nan,
                             "argmax_share": (arg[sel] == b).mean() if sel.any() else np.nan})
    per = pd.DataFrame(rows)
    return per.groupby(["ref_layer", "partner_layer"], as_index=False)[["mean_max_corr", "argmax_share"]].mean()


def summary(table: pd.DataFrame, threshold: float = paper.THRESHOLD) -> dict:
    """Headline numbers of a neuron table: shares above thresholds and excess quantiles (live neurons)."""
    live = table[~table["is_dead"]]
    ex = live["excess_corr"]
    out = {"n_neurons": len(table), "n_dead": int(table["is_dead"].sum()),
           "n_universal": int((ex > threshold).sum()), "share_universal": float((ex > threshold).mean())}
    for t in (0.3, 0.4):
        out[f"share_above_{t}"] = float((ex > t).mean())
    for q in (0.5, 0.9, 0.99):
        out[f"excess_q{round(q * 100)}"] = float(ex.quantile(q))
    out.update(excess_max=float(ex.max()), mean_corr_median=float(live["mean_corr"].median()),
               mean_baseline_median=float(live["mean_baseline"].median()))
    return out


def convergence(res: Correlations, threshold: float = paper.THRESHOLD) -> pd.DataFrame:
    """`summary` of the neuron table at every token snapshot of the pass."""
    return pd.DataFrame([{"n_tokens": n, **summary(neuron_table(res, threshold, k), threshold)}
                         for k, n in enumerate(res.snap_tokens)])


def per_layer(table: pd.DataFrame, thresholds=(0.3, 0.4, paper.THRESHOLD)) -> pd.DataFrame:
    """Per reference layer: live neurons and how many have excess_corr above each threshold."""
    live = table[~table["is_dead"]]
    out = live.groupby("layer").agg(neurons=("neuron", "size"))
    for t in thresholds:
        out[f"above_{t}"] = live.groupby("layer")["excess_corr"].apply(lambda e: int((e > t).sum()))
    return out.reset_index()


def partner_gap(table: pd.DataFrame) -> pd.Series:
    """Per neuron: max minus min over partners of the max correlation (paper: 0.049 all, 0.105 universal)."""
    return table["max_corr"] - table["min_corr"]


# ---- the tables of a saved pass, cached ----------------------------------------------------------------
@dataclass
class Results:
    """The files of one run: neurons.csv, layer_similarity.csv, convergence.csv, universality.json."""

    neurons: pd.DataFrame
    layers: pd.DataFrame
    convergence: pd.DataFrame
    info: dict


def write_tables(res: Correlations, pass_info: dict, out_dir, threshold: float) -> None:
    """The tables of `res` at `threshold`, and universality.json (`pass_info` + threshold + summary)."""
    out_dir = Path(out_dir)
    table = neuron_table(res, threshold)
    for name, df in zip(TABLES, (table, layer_similarity(res, table), convergence(res, threshold))):
        with atomic_path(out_dir / f"{name}.csv") as tmp:
            df.to_csv(tmp, index=False)
    write_json(out_dir / "universality.json", {**pass_info, "threshold": threshold,
                                                "summary": summary(table, threshold)})


def _read(out_dir: Path) -> Results:
    """The tables of `out_dir`; a one-line UserError if one is missing, unreadable or cut (neurons.csv must hold
    one row per reference neuron, as universality.json's summary counts them)."""
    try:
        info = json.loads((out_dir / "universality.json").read_text())
        frames = [pd.read_csv(out_dir / f"{name}.csv") for name in TABLES]
        n = info.get("summary", {}).get("n_neurons")
        if n is not None and len(frames[0]) != n:
            raise ValueError(f"neurons.csv has {len(frames[0])} rows, universality.json counts {n}")
    except (OSError, ValueError, KeyError, TypeError, AttributeError, pd.errors.ParserError) as e:
        raise UserError(f"the universality tables in {out_dir} are damaged ({type(e).__name__}: "
                        f"{(str(e).splitlines() or [''])[0][:100]}); delete {out_dir / 'universality-tables.key.json'} "
                        "and rerun `python -m universal_neurons universality --profile <name>`") from None
    return Results(*frames, info)


def load_results(source, threshold=None) -> Results:
    """The universality tables of a profile (its tables folder) or of a folder `run_universality` wrote, at
    `threshold` (as `selection.resolve_threshold` takes it; None: a profile's book.threshold, or for a folder
    the paper's). Derived from the saved maxima the first time a threshold is asked for, then reused."""
    profile = source if hasattr(source, "tables_dir") else None
    out_dir = Path(profile.tables_dir if profile is not None else source)
    if threshold is None:
        threshold = book_threshold(profile) if profile is not None else paper.THRESHOLD
    threshold = resolve_threshold(threshold, out_dir)[0]  # control: out_dir/control
    if not (out_dir / MAXIMA).is_file():
        return _legacy(out_dir, threshold)
    key = cache.make_key(KIND, version=VERSION, threshold=threshold, maxima=file_sha256(out_dir / MAXIMA))
    if cache.is_current(out_dir, key):
        try:
            return _read(out_dir)
        except UserError:
            pass  # a damaged table counts as missing: derived again below
    res, pass_info = Correlations.load(out_dir)  # DamagedPass: `universality.ensure_results` recomputes it
    with cache.updating(out_dir, key):
        write_tables(res, pass_info, out_dir, threshold)
    return _read(out_dir)


def _legacy(out_dir: Path, threshold: float) -> Results:
    """Tables written before the pass was saved: usable as they are, at the threshold they were made with."""
    info = out_dir / "universality.json"
    if not info.is_file():
        raise UserError(f"no universality results in {out_dir}; run `python -m universal_neurons universality "
                        "--profile <name>`")
    made = json.loads(info.read_text()).get("threshold")
    if made != threshold:
        raise UserError(f"the tables in {out_dir} were made at threshold {made} without saving the pass; rerun "
                        "`python -m universal_neurons universality --profile <name>` to derive them at "
                        f"{threshold:g}")
    return _read(out_dir)


def twin(neurons: pd.DataFrame, layer: int, neuron: int, k: int) -> tuple[int, int, float]:
    """(layer, neuron, correlation) of the reference neuron's best match in partner k (1-based), from the
    universality table's max_sim columns."""
    row = neurons[(neurons["layer"] == layer) & (neurons["neuron"] == neuron)].iloc[0]
    return int(row[f"max_sim_layer_p{k}"]), int(row[f"max_sim_neuron_p{k}"]), float(row[f"max_corr_p{k}"])

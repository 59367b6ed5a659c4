"""Neuron properties of a profile (paper sections 4.2, 5.1 and 6; figures 3, 5, 6, 9, 10, 14): the weight
statistics (`weight_stats`) of every member and the activation statistics (`activation_stats`) of every
member or the reference only, computed once and cached in the tables folder, then joined with the
universality table into neurons.csv; and the chapters' helpers on that joined table.

Run it with `python -m universal_neurons properties --profile smoke` (or `compute_properties(profile)`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..config.sources import resolve_checkpoint
from ..core import cache
from ..core.atomic import atomic_path, write_json
from ..core.checksum import file_sha256
from ..core.errors import UserError
from ..data.prepare import analysis_rows
from ..measures.activation_stats import ACT_COLS, N_BINS, StatsTaps, activation_stats
from ..measures.maxima import MAXIMA
from ..measures.weight_stats import WEIGHT_COLS, weight_stats
from ..models.loading import load_model
from .neuron_tables import load_results

VERSION = 1  # of the files below; a change of it recomputes them

__all__ = ["Properties", "compute_properties", "load_properties", "neuron_frame", "layer_percentiles"]


@dataclass
class Properties:
    table: pd.DataFrame  # one row per (model, layer, neuron): WEIGHT_COLS + ACT_COLS (NaN where not computed)
    hists: dict[str, dict]  # model name -> {counts, lo, width}
    info: dict


def _files(out_dir: Path):
    return out_dir / "properties.csv", out_dir / "properties-hist.npz", out_dir / "properties.json"


def load_properties(profile, out_dir=None) -> Properties:
    """Read what `compute_properties` wrote into `out_dir` (default the profile's tables folder); a one-line
    UserError if the files are missing, unreadable, or do not match the sha256 properties.json records."""
    csv, npz, js = _files(Path(out_dir or profile.tables_dir))
    if not js.is_file():
        raise UserError(f"no neuron properties in {js.parent}; run `python -m universal_neurons properties "
                        f"--profile {profile.name}`")
    try:
        info = json.loads(js.read_text())
        for f in (csv, npz):
            recorded = info.get("files", {}).get(f.name)
            if recorded is not None and file_sha256(f) != recorded:
                raise ValueError(f"{f.name} does not match its sha256 in {js.name}")
        with np.load(npz) as z:
            hists = {n: {k: z[f"{k}_{i}"] for k in ("counts", "lo", "width")}
                     for i, n in enumerate(info["act_models"])}
        table = pd.read_csv(csv)
        if not {"model", "layer", "neuron", *WEIGHT_COLS} <= set(table.columns):
            raise ValueError(f"{csv.name} lacks its columns")
    except Exception as e:  # damaged JSON, zip or CSV: many classes, one meaning
        raise UserError(f"the neuron properties in {js.parent} are damaged ({type(e).__name__}: "
                        f"{(str(e).splitlines() or [''])[0][:100]}); rerun `python -m universal_neurons properties "
                        f"--profile {profile.name}` (it recomputes them)") from None
    return Properties(table, hists, info)


def _plan(profile, all_members: bool, out_dir, n_tokens, device, progress: bool = False):
    """(key, out_dir, sources, names, rows, n_tokens, batch_rows) of a properties run."""
    analysis = profile.cfg.get("analysis", {})
    n_tokens = int(n_tokens or analysis["n_tokens"])
    out_dir = Path(out_dir or profile.tables_dir)
    sources = profile.members()
    names = [Path(s).name if Path(s).exists() else s for s in sources]
    dirs = [resolve_checkpoint(s, profile.revision) for s in sources]
    rows = analysis_rows(profile, progress=progress)
    batch_rows = analysis.get("batch_size", 64)
    key = cache.make_key("properties", version=VERSION, models=sources, checkpoint_dirs=[str(d) for d in dirs],
                         weights=[cache.weights_signature(d) for d in dirs], data=rows.header["provenance"],
                         n_tokens=n_tokens, all_members=all_members, n_bins=N_BINS,
                         batch_size=batch_rows, device=str(device).split(":")[0])
    return key, out_dir, sources, names, rows, n_tokens, batch_rows


def _current(profile, out_dir: Path, key) -> bool:
    if cache.is_current(out_dir, key):
        try:
            load_properties(profile, out_dir)
        except UserError:
            cache.forget(out_dir, key)  # damaged files count as missing: recomputed
    return cache.is_current(out_dir, key)


def compute_properties(profile, device="cpu", all_members: bool = True, out_dir=None, progress: bool = True, *,
                       n_tokens: int | None = None) -> Properties:
    """Weight statistics of every member of the profile and activation statistics of every member (or the
    reference only) on `n_tokens` held-out tokens (default `analysis.n_tokens`), written into `out_dir`
    (default the profile's tables folder) as properties.csv, properties-hist.npz and properties.json, then
    joined into neurons.csv (`neuron_frame`). Cached (`core.cache`): a rerun with the same models, data and
    parameters reads the files (which the universality pass may have written: `properties_feed`)."""
    key, out_dir, sources, names, rows, n_tokens, batch_rows = _plan(profile, all_members, out_dir, n_tokens, device,
                                                                     progress)
    if not _current(profile, out_dir, key):
        with cache.updating(out_dir, key):
            t0 = time.time()
            models = [load_model(s, device=device, revision=profile.revision) for s in sources]
            n_act = len(models) if all_members else 1
            acts = activation_stats(models[:n_act], names[:n_act], rows.tokens, n_tokens, batch_rows, device)
            _write_properties(out_dir, models, sources, names, acts, n_tokens, device, t0, "its own pass")
    neuron_frame(profile, out_dir)
    return load_properties(profile, out_dir)


@dataclass
class PropertiesFeed:
    """The activation statistics a pass fills (`taps`) and the properties run they stand for (`_plan`'s tuple)."""
    taps: StatsTaps
    plan: tuple


def properties_feed(profile, sources, models, device, out_dir=None) -> PropertiesFeed | None:
    """The activation statistics for a pass over the profile's held-out tokens to fill (`maxima.correlate`'s
    taps), when the properties in `out_dir` (default the tables folder) are not yet computed and that pass runs
    every member (`sources`, in order) on analysis.n_tokens tokens; else None. `write_fed` writes them after."""
    if list(sources) != list(profile.members()):
        return None
    plan = _plan(profile, True, out_dir, None, device)
    return None if _current(profile, plan[1], plan[0]) else PropertiesFeed(StatsTaps(models, device), plan)


def write_fed(feed: PropertiesFeed, device, t0: float) -> bool:
    """Write the properties `feed` gathered in a pass started at `t0` (as `compute_properties` would), if it saw
    every token from the same first batch; else False (they are then computed by their own pass when asked for)."""
    key, out_dir, sources, names, rows, n_tokens, batch_rows = feed.plan
    if not feed.taps.same_as_own_pass(names, rows.tokens, n_tokens, batch_rows):
        return False
    with cache.updating(out_dir, key):
        _write_properties(out_dir, feed.taps.models, sources, names, feed.taps.result(), n_tokens, device,
                          t0, "the universality pass")
    return True


def _write_properties(out_dir: Path, models, sources, names, acts, n_tokens, device, t0: float, fed_by: str) -> None:
    stats = [weight_stats(model, name) for model, name in zip(models, names)]
    n_act = len(acts)
    table = pd.concat([(f.merge(acts[i][0], on=["layer", "neuron"]) if i < n_act
                        else f.assign(**dict.fromkeys(ACT_COLS, np.nan))).assign(model=name)
                       for i, ((f, _), name) in enumerate(zip(stats, names))], ignore_index=True)
    table = table[["model", "layer", "neuron", *WEIGHT_COLS, *ACT_COLS]]
    csv, npz, js = _files(out_dir)
    with atomic_path(csv) as tmp:
        table.to_csv(tmp, index=False)
    with atomic_path(npz) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **{f"{k}_{i}": h[k] for i, (_, h) in enumerate(acts) for k in h})

    write_json(js, {"files": {f.name: file_sha256(f) for f in (csv, npz)}, "models": sources, "names": names,
                    "reference": names[0],
                    "act_models": names[:n_act], "n_tokens": n_tokens, "device": str(device),
                    "seconds": time.time() - t0, "activations_from": fed_by, "warnings": [w for _, p in stats for w in p],
                    "dropped": "BOS/EOS/pad and newline tokens", "n_bins": N_BINS})


def neuron_frame(profile, tables_dir=None) -> pd.DataFrame:
    """The universality table (neurons.csv) of the profile's reference joined with its properties by (layer,
    neuron), the joined columns also written into neurons.csv; without neurons.csv, the properties alone."""
    tables_dir = Path(tables_dir or profile.tables_dir)
    props = load_properties(profile, tables_dir)
    uni_json, neurons_csv = tables_dir / "universality.json", tables_dir / "neurons.csv"
    ref = props.info["reference"]
    if uni_json.is_file():
        try:
            uni = json.loads(uni_json.read_text())
            ref = uni["names"][0]
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            raise UserError(f"{uni_json} is damaged; rerun `python -m universal_neurons universality --profile "
                            f"{profile.name}`") from None
        if (tables_dir / MAXIMA).is_file() and uni.get("threshold") is not None:
            load_results(tables_dir, uni["threshold"])  # checks the tables: a damaged neurons.csv is derived again
        if ref not in set(props.table["model"]):
            raise UserError(f"neurons.csv is about {ref}, which is not a member of profile {profile.name}; rerun "
                            f"`python -m universal_neurons universality --profile {profile.name}`")
    own = props.table[props.table["model"] == ref].drop(columns="model")
    if not neurons_csv.is_file():
        return own.reset_index(drop=True)
    neurons = pd.read_csv(neurons_csv)
    cols = [c for c in own.columns if c not in ("layer", "neuron")]
    joined = neurons.drop(columns=[c for c in cols if c in neurons.columns]).merge(own, on=["layer", "neuron"],
                                                                                    how="left")
    if not set(cols) <= set(neurons.columns) or not np.allclose(neurons[cols], joined[cols], rtol=1e-9, atol=0,
                                                                 equal_nan=True):
        with atomic_path(neurons_csv) as tmp:
            joined.to_csv(tmp, index=False)
    return joined


# ---- the chapters' helpers on the joined table -----------------------------------------------------------
def layer_percentiles(frame: pd.DataFrame, cols) -> pd.DataFrame:
    """Each column of `cols` as a percentile (0-100) within its layer (ties averaged)."""
    return frame.groupby("layer")[list(cols)].rank(pct=True) * 100



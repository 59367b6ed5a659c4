"""Emergence over training: retrain a zoo's recipe with snapshots of the weights at log-spaced steps
(`zoo.snapshot_steps`), then measure at each step the reference against its partners at the same step: the
universal share, the excess distribution, the per-layer counts, and where the neurons universal at the end stood.

The retrain goes to <run>/emergence/seed-<k> with its snapshots in <run>/emergence/snapshots/seed-<k>/step-<n>
(`universal-neurons emergence`, or `make emergence`); the results, small, are shipped in results/ with their
provenance, so the book reads them without training."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ..core.errors import UserError
from .. import data
from ..config.recipe import read_manifest
from ..core import cache
from ..core.atomic import copy_file, write_json, write_npz
from ..core.checksum import file_sha256
from ..core.paths import project_dir
from ..measures import activations, matching, nulls
from ..measures.uncertainty import excess_from
from ..models.loading import load_model
from ..core.machine import cpu_model
from ..models.zoo import heldout_loss, train_members, zoo_jobs

SNAPSHOTS = 10  # log-spaced steps besides step 0


def root(profile) -> Path:
    """The retrain's folder: <run>/emergence."""
    return Path(profile.trained_dir).parent / "emergence"


def jobs(profile, seeds=None, snapshots: int = SNAPSHOTS, progress: bool = True) -> list[dict]:
    """`train_seed` jobs of the profile's recipe into root(profile), each saving `snapshots` snapshots."""
    if snapshots < 1:
        raise UserError(f"--snapshots {snapshots}: at least 1 snapshot is needed (e.g. --snapshots 10)")
    return [{**j, "snapshots": snapshots} for j in zoo_jobs(profile, out_root=root(profile), progress=progress,
                                                             seeds=seeds)]


def train(profile, seeds=None, snapshots: int = SNAPSHOTS, device: str = "cpu", progress: bool = True) -> list[Path]:
    """Retrain the chosen seeds with snapshots (side by side when the cores allow; resumable)."""
    return train_members(jobs(profile, seeds, snapshots, progress), device, progress)


VERSION = 1  # of the per-step results
LOSS_ROWS = 64  # held-out rows for each snapshot's loss


def _shipped_path(profile, suffix: str) -> Path:
    return project_dir() / "results" / f"emergence-{profile.name}{suffix}"


def trained_seeds(profile) -> list[int]:
    """The seeds whose retrain has finished (its final folder written), in the profile's order."""
    return [s for s in profile.seeds if (root(profile) / f"seed-{s}" / "training_log.json").is_file()]


def snapshots_of(profile, seed: int) -> dict[int, Path]:
    """step -> snapshot folder of one retrained seed (whole snapshots only)."""
    folder = root(profile) / "snapshots" / f"seed-{seed}"
    found = folder.glob("step-*[0-9]") if folder.is_dir() else []
    return {int(f.name.removeprefix("step-")): f for f in found if (f / "training_log.json").is_file()}


def _order(profile, seeds) -> list[int]:
    ref = int(profile.cfg["analysis"]["reference_seed"])
    if ref not in seeds or len(seeds) < 2:
        raise UserError(f"the emergence analysis needs the reference seed {ref} and a partner retrained with "
                        f"snapshots (found: {seeds or 'none'}); run `universal-neurons emergence --profile "
                        f"{profile.name}` (or `make emergence PROFILE={profile.name}`)")
    return [ref] + [s for s in seeds if s != ref]


def measure_step(models, names, tokens: np.ndarray, n_tokens: int, batch_rows: int, device, progress=True) -> dict:
    """The reference `models[0]` against each partner at one step: per partner the signed-max correlation and its
    partner neuron, and the paper's rotated baseline (one draw, seed 0), each [P, n]; each model's held-out loss."""
    cms = activations.co_moments(models, names, tokens, n_tokens, batch_rows, device, progress=progress)
    sizes_b = [[m.cfg.d_mlp] * m.cfg.n_layers for m in models[1:]]
    best = [matching.signed_max(cm.corr_ab()) for cm in cms]
    return {"real": np.stack([b[0] for b in best]), "twin": np.stack([b[1] for b in best]),
            "base": np.stack([nulls.rotated_max(cm, sb, draws=1, kind="gaussian-rows", seed=0)[0]
                              for cm, sb in zip(cms, sizes_b)]),
            "loss": np.array([heldout_loss(m, tokens[:LOSS_ROWS], device) for m in models])}


def _step_key(step: int, rows, n_tokens, folders) -> dict:
    """The cache key of one step's results (<root>/steps/step-<n>.npz beside step-<n>.key.json)."""
    return cache.make_key(f"step-{step:06d}", version=VERSION, n_tokens=n_tokens, data=rows.header["provenance"],
                          members=[str(f) for f in folders],
                          weights=[json.loads((f / "training_log.json").read_text())["files"] for f in folders])


def analyse(profile, device: str = "cpu", progress: bool = True) -> Path:
    """Measure every step that all retrained seeds have a snapshot of (each step cached in <root>/steps/, so an
    interrupted analysis resumes), compare the retrained reference with the shipped one, and write
    <root>/emergence.npz with <root>/emergence.json. Returns the json's path."""
    from tqdm.auto import tqdm

    t0 = time.time()
    order = _order(profile, trained_seeds(profile))
    snaps = {s: snapshots_of(profile, s) for s in order}
    steps = sorted(set.intersection(*(set(v) for v in snaps.values())))
    rows = data.analysis_rows(profile, progress=False)
    tokens = np.asarray(rows.tokens)
    n_tokens = min(int(profile.cfg["book"]["robust_tokens"]), int(profile.cfg["analysis"]["n_tokens"]))
    batch = int(profile.cfg["analysis"].get("batch_size", 64))
    names = [f"seed-{s}" for s in order]
    out_dir = root(profile) / "steps"
    out_dir.mkdir(parents=True, exist_ok=True)
    per_step = []
    for step in tqdm(steps, desc="emergence steps", unit="step", disable=not progress):
        folders = [snaps[s][step] for s in order]
        key = _step_key(step, rows, n_tokens, folders)
        f = out_dir / f"step-{step:06d}.npz"
        if cache.is_current(out_dir, key) and f.is_file():
            with np.load(f, allow_pickle=False) as z:
                per_step.append({k: z[k] for k in z.files})
            continue
        models = [load_model(p, device=device) for p in folders]
        res = measure_step(models, names, tokens, n_tokens, batch, device, progress=False)
        with cache.updating(out_dir, key):
            write_npz(f, res)
        per_step.append(res)
    logs = [json.loads((snaps[order[0]][s] / "training_log.json").read_text()) for s in steps]
    out = {k: np.stack([r[k] for r in per_step]) for k in ("real", "twin", "base", "loss")}
    out |= {"steps": np.array(steps), "tokens": np.array([lg["tokens"] for lg in logs])}
    info = {"profile": profile.name, "reference_seed": order[0], "partner_seeds": order[1:], "steps": steps,
            "tokens": [int(t) for t in out["tokens"]], "n_tokens": n_tokens, "recipe": _recipe(profile),
            "data": rows.header["provenance"], "device": device, "date": time.strftime("%Y-%m-%d"),
            "command": f"make emergence PROFILE={profile.name}" + (
                f' EMERGENCE_SEEDS="{" ".join(map(str, order))}"' if len(order) < len(profile.seeds) else ""),
            "members": {}}

    info["cpu"] = cpu_model()
    for s in order:
        log = json.loads((root(profile) / f"seed-{s}" / "training_log.json").read_text())
        info["members"][str(s)] = {"model_sha256": log["files"]["model.safetensors"], "cpu": log.get("cpu"),
                                   "train_seconds": log.get("train_seconds"), "heldout_loss": log["heldout_loss"]}
    out |= _against_shipped(profile, order, tokens, n_tokens, batch, device, info)
    npz, js = root(profile) / "emergence.npz", root(profile) / "emergence.json"
    write_npz(npz, out)
    info["npz_sha256"] = file_sha256(npz)
    info["seconds"] = round(time.time() - t0, 1)
    write_json(js, info)
    return js


def _recipe(profile) -> dict:
    return json.loads(json.dumps({k: profile.cfg[k] for k in ("corpus", "tokenizer", "model", "train")}, default=str))


def _against_shipped(profile, order, tokens, n_tokens, batch, device, info) -> dict:
    """Where the profile ships a zoo: the retrained reference's neurons against the shipped reference's (same
    index), and the shipped reference against the shipped partners of the same seeds (its excess)."""
    if profile.shipped_dir is None or not (profile.shipped_dir / "manifest.json").is_file():
        info["shipped"] = None
        return {}
    man = read_manifest(profile.shipped_dir)
    info["shipped"] = {str(s): {"model_sha256": man["seeds"][str(s)]["files"]["model.safetensors"],
                                "cpu": man["seeds"][str(s)].get("cpu")} for s in order}
    for s in order:
        info["members"][str(s)]["identical_to_shipped"] = (info["members"][str(s)]["model_sha256"]
                                                           == info["shipped"][str(s)]["model_sha256"])

    mine = load_model(root(profile) / f"seed-{order[0]}", device=device)
    shipped = [load_model(profile.shipped_dir / f"seed-{s}", device=device) for s in order]
    cm = activations.co_moments([mine, shipped[0]], ["retrained", "shipped"], tokens, n_tokens, batch, device, progress=False)[0]
    same = np.diag(cm.corr_ab()).copy()
    ship = measure_step(shipped, [f"shipped-{s}" for s in order], tokens, n_tokens, batch, device, progress=False)
    return {"same_index_corr": same, "shipped_real": ship["real"], "shipped_base": ship["base"]}


def ship(profile) -> Path:
    """Copy the results into the repository's results/ (emergence-<profile>.npz and .json)."""
    for suffix in (".npz", ".json"):
        copy_file(root(profile) / f"emergence{suffix}", _shipped_path(profile, suffix))
    return _shipped_path(profile, ".json")


class Emergence(dict):
    """The arrays of an emergence run (dict of name -> array) with its provenance in `.info`."""

    info: dict


def load(profile) -> Emergence | None:
    """The emergence results for this profile: the run folder's own if it has them, else the shipped ones when
    they were computed with the profile's recipe and data; None when there are none. Shipped arrays are checked
    against the sha256 their json records (one-line UserError if they differ)."""
    for js in (root(profile) / "emergence.json", _shipped_path(profile, ".json")):
        if not js.is_file():
            continue
        info = json.loads(js.read_text())
        npz = js.with_suffix(".npz")
        if not npz.is_file() or file_sha256(npz) != info.get("npz_sha256"):
            raise UserError(f"{npz} is missing or does not match the sha256 recorded in {js.name}; restore it "
                            f"(`git checkout -- {npz.name}` in its folder) or recompute it with `{info.get('command')}`")
        if info.get("recipe") != _recipe(profile):
            continue  # computed for another recipe (a SET of the model, training or data)
        with np.load(npz, allow_pickle=False) as z:
            out = Emergence({k: z[k] for k in z.files})
        out.info = info
        return out
    return None


def excess(res: Emergence) -> np.ndarray:
    """[steps, n] the paper's excess (`uncertainty.excess_from`) of every reference neuron at every step."""
    return excess_from(res["real"].swapaxes(0, 1), res["base"].swapaxes(0, 1))


def summary(res: Emergence, threshold: float, d_mlp: int, top: float = 0.05):
    """One row per step: tokens, the reference's held-out loss, the universal share and count, per-layer counts,
    excess quantiles, and where the neurons universal at the last step stood (universal then; in the top `top`
    share of neurons by excess then)."""
    import pandas as pd

    ex = excess(res)
    final = ex[-1] > threshold
    rows = []
    for k, step in enumerate(res["steps"]):
        e = ex[k]
        live = ~np.isnan(e)
        uni = e > threshold
        cut = np.nanquantile(e, 1 - top)
        row = {"step": int(step), "tokens": int(res["tokens"][k]), "held-out loss": float(res["loss"][k][0]),
               "universal": int(uni.sum()), "share %": 100 * float(uni[live].mean()),
               "excess q50": float(np.nanquantile(e, 0.5)), "excess q99": float(np.nanquantile(e, 0.99)),
               "excess max": float(np.nanmax(e)),
               "final universal, universal here": int((uni & final).sum()),
               f"final universal, top {100 * top:g}% here": int(((e >= cut) & final).sum())}
        for layer in range(len(e) // d_mlp):
            row[f"layer {layer}"] = int(uni[layer * d_mlp:(layer + 1) * d_mlp].sum())
        rows.append(row)
    return pd.DataFrame(rows)

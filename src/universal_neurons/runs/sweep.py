"""The scale study: zoos over a grid of widths, depths and training budgets, each analysed for universality.

A sweep profile (`profiles/sweep.yaml`) is an ordinary zoo profile plus
- `grid:` widths ([d_model, d_mlp] or [d_model, d_mlp, n_head]), layers and tokens: every combination is
  one *point*, a derived Profile named `<sweep>/<point id>` (e.g. `sweep/w128-l4-t2400000`);
- `snapshots:` one point whose zoo is also saved at fractions of its training steps (emergence during
  training): the same run, stopped with `train_seed(stop_after=...)` at a checkpoint, exported, resumed
  (on CPU a resumed run gives the same weights as an uninterrupted one, so the schedule is the real one);
- `data_from:` a profile whose corpus, tokenizer and token rows every point reuses (null: the sweep's own,
  built once under `artifacts/<sweep>`). Nothing is re-tokenised per point.

Per point, under `artifacts/<sweep>/<point id>/`: `zoo/seed-<k>` (train_seed, cached), `tables/` (universality
of the reference seed against the other seeds), `control/` + `tables/control/` (an untrained partner: the
noise floor), `snapshots/f<fraction>/` for the snapshot point. This module builds the points and trains them;
`sweep_results` analyses and summarises them (`run_sweep`, `results.csv`, the shipped results).

CLI: `python -m universal_neurons sweep --profile sweep [--points ID ...] [--device cuda] [--limit N] [--list]`.
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ..config.profile import Profile, available_profiles, load_profile
from ..core import cache
from ..core.atomic import atomic_dir, write_json
from ..core.errors import UserError
from ..data.prepare import prepare, tokenizer_dir
from ..data.tokenizer import load_tokenizer
from ..models.zoo import (checkpoint_root, gpt2_config, is_current, latest_checkpoint, train_members, train_seed,
                          zoo_jobs)

SNAPSHOT_VERSION = 2  # 2: the key in snapshot.key.json (cache.py)
SWEEP_KEYS = ("grid", "snapshots", "data_from")


@dataclass
class PointProfile(Profile):
    """One grid point: a zoo profile whose own outputs live in `point_dir`, while its data (tokenizer/ and
    data/) are the shared ones under `data_root`. `root` is `data_root` because `data.tokenizer_dir` derives
    the tokenizer folder from it; use `point_dir` for the point's files."""

    point_id: str = ""
    point: dict = field(default_factory=dict)
    point_dir: Path = Path()
    data_root: Path = Path()

    @property
    def root(self) -> Path:
        return self.data_root

    @property
    def zoo_dir(self) -> Path:
        return self.point_dir / "zoo"

    @property
    def tables_dir(self) -> Path:
        return self.point_dir / "tables"

    @property
    def control_dir(self) -> Path:
        return self.point_dir / "control"


@dataclass
class Sweep:
    base: Profile
    points: list[PointProfile]
    directory: Path  # artifacts/<sweep>
    data_root: Path
    snapshot_point: str | None
    fractions: list[float]

    def point(self, point_id: str) -> PointProfile:
        for p in self.points:
            if p.point_id == point_id:
                return p
        raise UserError(f"no point {point_id!r} in sweep {self.base.name!r}; points: {', '.join(self.ids)}")

    @property
    def ids(self) -> list[str]:
        return [p.point_id for p in self.points]

    @property
    def results_path(self) -> Path:
        return self.directory / "results.csv"


# ---- the grid -------------------------------------------------------------------------------------------
def _int(x, what: str) -> int:
    if isinstance(x, str):  # YAML 1.1 reads 1.2e6 as a string
        try:
            x = float(x)
        except ValueError:
            pass
    if isinstance(x, bool) or not isinstance(x, (int, float)) or x != int(x) or x < 1:
        raise UserError(f"{what}: {x!r} is not a positive whole number")
    return int(x)


def _list(cfg: dict, key: str) -> list:
    v = cfg.get(key)
    if not isinstance(v, list) or not v:
        raise UserError(f"grid.{key} must be a non-empty list (got {v!r}); e.g. grid.{key}="
                        + {"widths": "[[64,256],[128,512]]", "layers": "[4]", "tokens": "[1200000]"}[key])
    return v


def point_id(d_model: int, d_mlp: int, n_layer: int, tokens: int) -> str:
    """`w<d_model>-l<layers>-t<tokens>`, with `-m<d_mlp>` after the width when d_mlp is not 4 x d_model."""
    return f"w{d_model}" + (f"-m{d_mlp}" if d_mlp != 4 * d_model else "") + f"-l{n_layer}-t{tokens}"


def grid_points(cfg: dict) -> list[dict]:
    """The grid's points in order (widths, then layers, then tokens), validated (UserError: one line)."""
    grid = cfg.get("grid")
    if not isinstance(grid, dict):
        raise UserError("the profile has no grid: section (widths, layers, tokens); see profiles/sweep.yaml")
    unknown = set(grid) - {"widths", "layers", "tokens", "variants"}
    if unknown:
        raise UserError(f"grid: unknown key(s) {', '.join(sorted(unknown))}; known: widths, layers, tokens, variants")
    widths = []
    for w in _list(grid, "widths"):
        if not isinstance(w, list) or len(w) not in (2, 3):
            raise UserError(f"grid.widths: {w!r} is not [d_model, d_mlp] or [d_model, d_mlp, n_head]")
        d_model, d_mlp = _int(w[0], "grid.widths d_model"), _int(w[1], "grid.widths d_mlp")
        n_head = _int(w[2], "grid.widths n_head") if len(w) == 3 else cfg["model"].get("n_head", 4)
        if d_model % n_head:
            raise UserError(f"grid.widths: d_model {d_model} is not divisible by n_head {n_head}")
        widths.append((d_model, d_mlp, n_head))
    layers = [_int(x, "grid.layers") for x in _list(grid, "layers")]
    tokens = [_int(x, "grid.tokens") for x in _list(grid, "tokens")]
    variants = grid.get("variants") or [{}]
    for v in variants:
        if not isinstance(v, dict) or (len(variants) > 1 and not isinstance(v.get("id"), str)):
            raise UserError(f"grid.variants: {v!r} is not a section with an id and train.* values, e.g. "
                            "{id: wsd, schedule: wsd}")
        bad = set(v) - {"id"} - set(cfg["train"])
        if bad:
            raise UserError(f"grid.variants {v.get('id')!r}: unknown train key(s) {', '.join(sorted(bad))}; "
                            f"known: {', '.join(sorted(cfg['train']))}")
    out, seen = [], set()
    for (d_model, d_mlp, n_head), n_layer, t, v in itertools.product(widths, layers, tokens, variants):
        pid = point_id(d_model, d_mlp, n_layer, t) + (f"-{v['id']}" if v.get("id") else "")
        if pid in seen:
            raise UserError(f"grid: point {pid} appears twice; remove the duplicate width, layer count or budget")
        seen.add(pid)
        out.append({"id": pid, "d_model": d_model, "d_mlp": d_mlp, "n_head": n_head, "n_layer": n_layer,
                    "tokens": t, "variant": v.get("id", ""), "train": {k: x for k, x in v.items() if k != "id"}})
    return out


def _data_root(base: Profile, directory: Path) -> Path:
    """Where the shared tokenizer/ and data/ live; checks that a `data_from` profile has the same data."""
    src = base.cfg.get("data_from")
    if src is None:
        return directory
    if not isinstance(src, str) or src not in available_profiles() or src == base.name:
        raise UserError(f"data_from={src!r} is not another profile; choose one of "
                        f"{', '.join(p for p in available_profiles() if p != base.name)}, or null")
    other = load_profile(src)
    for section, key in (("corpus", None), ("tokenizer", None), ("model", "n_ctx")):
        mine = base.cfg[section] if key is None else base.cfg[section].get(key)
        theirs = other.cfg[section] if key is None else other.cfg[section].get(key)
        if mine != theirs:
            name = section if key is None else f"{section}.{key}"
            raise UserError(f"data_from={src}: the sweep's {name} ({mine}) differs from profile {src!r}'s "
                            f"({theirs}); match it, or set data_from=null to build the sweep's own data")
    return other.root


def expand(base: Profile, directory=None) -> Sweep:
    """The sweep's points as derived profiles. `directory`: where its outputs go (default the profile's run
    folder, artifacts/<name> without overrides)."""
    if not base.is_zoo:
        raise UserError(f"profile {base.name!r} has no train: section; a sweep trains zoos")
    directory = Path(directory) if directory is not None else base.root
    data_root = _data_root(base, directory)
    common = {k: v for k, v in base.cfg.items() if k not in SWEEP_KEYS}
    if base.cfg.get("data_from"):  # the same tokenizer as that profile, shipped or not
        common["shipped"] = load_profile(base.cfg["data_from"]).cfg.get("shipped")
    points = []
    for pt in grid_points(base.cfg):
        cfg = copy.deepcopy(common)
        cfg["model"].update(d_model=pt["d_model"], d_mlp=pt["d_mlp"], n_head=pt["n_head"], n_layer=pt["n_layer"])
        cfg["train"]["tokens"] = pt["tokens"]
        cfg["train"].update(pt["train"])
        cfg["description"] = (f"{base.name} point {pt['id']}: {len(cfg['train']['seeds'])} seeds, {pt['n_layer']} "
                              f"layers, d_model {pt['d_model']}, d_mlp {pt['d_mlp']}, {pt['tokens']:,} tokens")
        points.append(PointProfile(f"{base.name}/{pt['id']}", cfg, point_id=pt["id"], point=pt,
                                   point_dir=directory / pt["id"], data_root=data_root))
    snap = base.cfg.get("snapshots") or {}
    if not isinstance(snap, dict):
        raise UserError("snapshots: must be a section with point and fractions (or empty)")
    fractions = snap.get("fractions") or []
    if not isinstance(fractions, list) or any(isinstance(f, bool) or not isinstance(f, (int, float))
                                               or not 0 < f < 1 for f in fractions):
        raise UserError(f"snapshots.fractions must be a list of numbers between 0 and 1 (got {fractions!r})")
    fractions = sorted({float(f) for f in fractions})
    spid = snap.get("point") if fractions else None
    if fractions and spid is None:
        spid = points[-1].point_id
    ids = [p.point_id for p in points]
    if spid is not None and spid not in ids:
        raise UserError(f"snapshots.point {spid!r} is not a grid point; points: {', '.join(ids)}")
    sw = Sweep(base, points, directory, data_root, spid, fractions)
    if spid is not None:
        snapshot_steps(sw.point(spid), fractions)  # validates
    return sw


def load_sweep(name: str = "sweep", overrides=(), directory=None) -> Sweep:
    return expand(load_profile(name, list(overrides)), directory)


# ---- training -------------------------------------------------------------------------------------------
def _total_steps(point: Profile) -> int:
    t, m = point.cfg["train"], point.cfg["model"]
    return int(t["tokens"]) // (t["batch_size"] * m["n_ctx"])


def snapshot_steps(point: Profile, fractions) -> dict[float, int]:
    """Training step of each snapshot fraction, rounded to a multiple of train.checkpoint_every."""
    total, every = _total_steps(point), point.cfg["train"]["checkpoint_every"]
    steps = {f: max(every, int(round(f * total / every)) * every) for f in fractions}
    bad = [f for f, s in steps.items() if s >= total]
    if bad or len(set(steps.values())) < len(steps):
        raise UserError(f"snapshots.fractions {list(fractions)} of {point.point_id} ({total} steps, a checkpoint "
                        f"every {every}) give steps {sorted(steps.values())}: not distinct or not before the end; "
                        "lower train.checkpoint_every or use fewer fractions")
    return steps


def snapshot_dir(point: PointProfile, fraction: float) -> Path:
    return point.point_dir / "snapshots" / f"f{fraction:g}"


def _export(ckpt: Path, dest: Path, point: Profile, tdir, key: dict, info: dict) -> None:
    """A loadable model folder (save_pretrained + tokenizer + snapshot.json) from a training checkpoint."""
    import torch
    from safetensors.torch import load_file
    from transformers import GPT2LMHeadModel

    tok = load_tokenizer(tdir)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(gpt2_config(point.cfg["model"], len(tok), tok.bos_token_id, point.cfg["train"]["attention"]))
    model.load_state_dict(load_file(str(ckpt / "model.safetensors")), strict=False)
    model.tie_weights()
    with atomic_dir(dest) as tmp, cache.updating(tmp, key):
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        write_json(tmp / "snapshot.json", info)


def _snapshot_key(point: Profile, seed: int, step: int, provenance: dict) -> dict:
    return cache.make_key("snapshot", version=SNAPSHOT_VERSION, model=point.cfg["model"],
                          train={k: v for k, v in point.cfg["train"].items() if k != "seeds"}, data=provenance,
                          seed=seed, step=step)


def train_with_snapshots(point: PointProfile, seed: int, fractions, train, heldout, tdir, device="cpu",
                         progress=True) -> Path:
    """Train one member of `point`, exporting the model at each snapshot fraction on the way (cached)."""
    mc, tc, prov = point.cfg["model"], point.cfg["train"], train.header["provenance"]
    final = point.seed_dir(seed)
    steps = snapshot_steps(point, fractions)
    dests = {f: snapshot_dir(point, f) / f"seed-{seed}" for f in fractions}
    work = point.point_dir / "snapshots" / ".run" / f"seed-{seed}"  # the stopped-and-resumed run
    ckpt = checkpoint_root(work)  # where train_seed keeps its checkpoints

    def at_step() -> tuple[int, Path | None]:
        last = latest_checkpoint(ckpt)
        return (json.loads((last / "state.json").read_text())["step"], last) if last else (0, None)

    todo = [f for f in fractions if not cache.is_current(dests[f], _snapshot_key(point, seed, steps[f], prov))]
    for f in todo:
        s = steps[f]
        at, _ = at_step()
        if at > s:  # a checkpoint past this snapshot (e.g. fractions changed): start again
            shutil.rmtree(ckpt)
            at = 0
        if at != s:
            train_seed(seed, work, train, heldout, mc, tc, tdir, device=device, progress=progress, stop_after=s)
        at, last = at_step()
        if at != s:
            raise RuntimeError(f"snapshot of seed {seed} expected at step {s}, checkpoint is at {at}")
        st = json.loads((last / "state.json").read_text())
        entry = st["log"][-1]
        _export(last, dests[f], point, tdir, _snapshot_key(point, seed, s, prov), {
            "fraction": f, "step": s, "tokens": entry["tokens"],
            "heldout_loss": entry["heldout_loss"], "train_loss": entry["train_loss"], "total_steps": _total_steps(point),
            "heldout_loss_note": "measured during training on a quarter of train.eval_tokens held-out tokens"})
    if is_current(final, mc, tc, prov):
        shutil.rmtree(work.parent, ignore_errors=True)
        return final
    if todo or ckpt.is_dir() or is_current(work, mc, tc, prov):
        train_seed(seed, work, train, heldout, mc, tc, tdir, device=device, progress=progress)  # finish the run
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            shutil.rmtree(final)
        os.replace(work, final)
        shutil.rmtree(work.parent, ignore_errors=True)
        return final
    return train_seed(seed, final, train, heldout, mc, tc, tdir, device=device, progress=progress)


def train_point(sweep: Sweep, point: PointProfile, device="cpu", progress=True) -> list[Path]:
    train, heldout = prepare(point, progress)
    tdir = tokenizer_dir(point, progress)
    if point.point_id == sweep.snapshot_point:
        return [train_with_snapshots(point, s, sweep.fractions, train, heldout, tdir, device, progress)
                for s in point.seeds]

    return train_members(zoo_jobs(point, progress=progress), device, progress)


def train_side_by_side(sweep: Sweep, points: list[PointProfile], device="cpu", progress=True) -> None:
    """Train the members of several points at once, one one-thread process per core (the snapshot point,
    which stops and resumes, trains on its own in `run_point`)."""
    jobs = [j for p in points if p.point_id != sweep.snapshot_point for j in zoo_jobs(p, progress=progress)]
    if jobs:
        train_members(jobs, device, progress)

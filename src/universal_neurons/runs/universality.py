"""Universal neurons (paper section 2), a profile's run: the pass of `maxima` over the profile's held-out rows,
cached (the key has no threshold), its tables derived at a threshold (`neuron_tables`), and the torchrun session
that shares the pass out over processes."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import torch

from ..config.sources import resolve_checkpoint
from ..core import cache
from ..data.prepare import analysis_rows, token_rows
from ..measures.maxima import FRACTIONS, MAXIMA, PASS_KIND, VERSION, DamagedPass, _dist, correlate
from ..measures.pass_checkpoints import _drop_stale_states
from ..models.loading import load_model
from .neuron_tables import Results, load_results
from .properties import properties_feed, write_fed
from .selection import book_threshold


# ---- a profile's pass, cached --------------------------------------------------------------------------
def _pass_key(a: dict, sources, dirs, signatures, rows, device):
    """The cache key of a pass of `sources` (reference first; their checkpoint `dirs` and weights `signatures`) with
    the analysis settings `a`."""
    return cache.make_key(PASS_KIND, version=VERSION, models=sources, checkpoint_dirs=[str(d) for d in dirs],
                          weights=list(signatures), data=rows.header["provenance"],
                          n_tokens=int(a["n_tokens"]), baseline=a["baseline"], seed=a["baseline_seed"],
                          fractions=list(FRACTIONS),
                          # the order of the float sums: the chunks, the batches and the device's kernels
                          chunk_tokens=a["chunk_tokens"], batch_size=a["batch_size"], device=torch.device(device).type)


def run_universality(profile, device="cpu", progress: bool = True, out_dir=None, partners=None, reference=None,
                     stop_after: int | None = None, threshold=None, control=None):
    """Correlate a profile's reference with its partners on its held-out rows (n_tokens, baseline, baseline_seed,
    batch_size, chunk_tokens, max_accumulator_gb, reference_seed and partners from `profile.cfg["analysis"]`;
    `reference`, `partners`: zoo seeds or model sources that override them), save the pass into `out_dir` (default the
    profile's tables folder) and return its tables at `threshold` (None: the profile's book.threshold; as
    `neuron_tables.load_results`). Cached: a rerun with the same models, data and parameters reuses the saved
    pass. Returns None on the ranks other than 0 under torchrun, and after `stop_after` chunks.
    `control`: (a partner's source, its folder): when both passes are due, that partner joins this pass (the
    reference runs once), and its pass is saved into its folder as a pass of the reference with it alone would be
    (its baseline drawn with its own partner index)."""
    a = profile.cfg["analysis"]
    out_dir = Path(out_dir or profile.tables_dir)
    sources = profile.members(reference, partners)  # None: analysis.reference_seed / analysis.partners
    dirs = [resolve_checkpoint(s, profile.revision) for s in sources]
    rows = analysis_rows(profile, progress=progress)
    n_tokens, baseline, seed, gb = int(a["n_tokens"]), a["baseline"], a["baseline_seed"], a["max_accumulator_gb"]
    signatures = [cache.weights_signature(d) for d in dirs]
    key = _pass_key(a, sources, dirs, signatures, rows, device)
    rank, world = _dist()
    if not cache.is_current(out_dir, key):
        t0 = time.time()
        joined = []  # (source, folder, checkpoint dir, key) of a partner joining this pass
        if control is not None and world == 1:
            c_dirs = [dirs[0], resolve_checkpoint(str(control[0]), profile.revision)]
            c_key = _pass_key(a, [sources[0], str(control[0])], c_dirs,
                              [signatures[0], cache.weights_signature(c_dirs[1])], rows, device)
            if not cache.is_current(Path(control[1]), c_key):
                joined = [(str(control[0]), Path(control[1]), c_dirs[1], c_key)]
        all_sources = [*sources, *[j[0] for j in joined]]
        models = [load_model(s, device=device, revision=profile.revision) for s in all_sources]
        names = [Path(s).name if Path(s).exists() else s for s in all_sources]
        prefix = f"universality-{cache.digest(key)}{'+control' if joined else ''}"
        if rank == 0:
            _drop_stale_states(out_dir / ".partial", prefix, world)
        # the members' activation statistics (the properties chapter's) from the same forward passes, when due
        feed = properties_feed(profile, sources, models[:len(sources)], device, out_dir) if rank == 0 and world == 1 else None
        taps = [(feed.taps.points(k), feed.taps.fn(k)) for k in range(len(sources))] + [None] * len(joined) if feed else None
        res = correlate(models, rows.tokens, n_tokens, names=names, baseline=baseline, seed=seed, device=device,
                        batch_rows=a["batch_size"], chunk_tokens=a["chunk_tokens"], max_accumulator_gb=gb,
                        checkpoint=out_dir / ".partial" / prefix,  # this run's only
                        progress=progress, stop_after=stop_after, taps=taps,
                        rotation_ids=[*range(len(sources) - 1), *[0] * len(joined)])
        if res is None or rank != 0:
            return None
        if feed is not None:
            write_fed(feed, device, t0)
        with contextlib.suppress(OSError):
            (out_dir / ".partial").rmdir()
        info = {"n_tokens": n_tokens, "max_accumulator_gb": gb, "world_size": world, "device": str(device),
                "baseline": {"kind": baseline, "seed": seed, "generator": "numpy default_rng([seed, partner, layer])"},
                "dropped": "BOS/EOS/pad and newline tokens"}
        seconds = time.time() - t0
        for (src, folder, c_dir, c_key), p in zip(joined, range(len(sources) - 1, len(all_sources) - 1)):
            folder.mkdir(parents=True, exist_ok=True)
            with cache.updating(folder, c_key):
                res.subset([p]).save(folder, {
                    **info, "models": [sources[0], src], "checkpoint_dirs": [str(dirs[0]), str(c_dir)],
                    "reference": sources[0], "partners": [src], "seconds": seconds,
                    "joined": f"computed in the pass of {out_dir}"})
        with cache.updating(out_dir, key):
            res.subset(range(len(sources) - 1)).save(out_dir, {
                **info, "models": sources, "checkpoint_dirs": [str(d) for d in dirs], "reference": sources[0],
                "partners": sources[1:], "seconds": seconds})
    if rank != 0:
        return None
    return load_results(out_dir, book_threshold(profile) if threshold is None else threshold)


@contextlib.contextmanager
def torchrun_session(profile, device: str = "cpu", progress: bool = True):
    """Under torchrun (WORLD_SIZE > 1): join the process group (nccl on CUDA with this rank's cuda:LOCAL_RANK,
    else gloo), build the profile's held-out rows once on rank 0, and yield the device to run on; leave the
    group at the end. In a single process: yield `device` as it is."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        yield device
        return
    import torch.distributed as dist

    if device.startswith("cuda"):
        device = f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    try:
        if dist.get_rank() == 0:
            token_rows(profile, "heldout", progress=progress)  # built once, before the others read it
        dist.barrier()
        yield device
        dist.barrier()
    finally:
        dist.destroy_process_group()


def ensure_results(profile, device="cpu", threshold=None) -> Results:
    """The profile's universality tables at `threshold` (None: its book.threshold); the pass is run first (with
    its config's parameters) when its tables folder has none, or again when its saved pass was damaged."""
    tables = Path(profile.tables_dir)
    if (tables / MAXIMA).is_file() or (tables / "universality.json").is_file():
        with contextlib.suppress(DamagedPass):  # removed by the reading: computed again below
            return load_results(profile, threshold)
    return run_universality(profile, device=device, progress=False, threshold=threshold)



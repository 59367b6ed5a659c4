"""The universality pass's resumable state: one file per rank under `<tables>/.partial/`, written atomically every
few chunks, resumed only with the same key (and, under torchrun, at the same position on every rank), removed when it
belongs to another parameter set or process count.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from ..core.atomic import atomic_path


def _save_state(path, state: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _drop_stale_states(partial: Path, prefix: str, world: int) -> list[Path]:
    """Remove the resumable states under `partial` that this pass cannot resume: another parameter set's
    (`universality-<other digest>*`) and this one's written under another number of processes."""
    removed = []
    if not partial.is_dir():
        return removed
    for f in partial.glob("universality-*"):
        if not f.name.startswith(f"{prefix}.") or not f.name.endswith(f"-of{world}.pt"):
            if f.is_file():
                f.unlink(missing_ok=True)
                removed.append(f)
    return removed


def _resume(ckpt, key: str, device, world: int):
    """The checkpoint's state if it matches `key` (and, under torch.distributed, every rank's position)."""
    state = None
    if ckpt and ckpt.is_file():
        try:
            state = torch.load(ckpt, map_location=device, weights_only=True)
        except Exception as e:  # unreadable (a damaged disk, a foreign file): start afresh, say so
            warnings.warn(f"{ckpt}: unreadable checkpoint ({type(e).__name__}); removed, the pass starts afresh",
                          stacklevel=3)
            ckpt.unlink(missing_ok=True)
    state = state if isinstance(state, dict) and state.get("key") == key else None
    if world > 1:
        import torch.distributed as dist

        pos = torch.tensor([state["step"] if state else 0], dtype=torch.int64, device=device)
        lo, hi = pos.clone(), pos.clone()
        dist.all_reduce(lo, op=dist.ReduceOp.MIN)
        dist.all_reduce(hi, op=dist.ReduceOp.MAX)
        state = state if int(lo) == int(hi) else None
    return state

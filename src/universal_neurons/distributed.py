"""torchrun: this process's rank and the number of processes, and the process group a pass runs in."""

from __future__ import annotations

import contextlib
import os

import torch


def _dist():
    import torch.distributed as dist

    return (dist.get_rank(), dist.get_world_size()) if dist.is_available() and dist.is_initialized() else (0, 1)


@contextlib.contextmanager
def torchrun_session(profile, device: str = "cpu", progress: bool = True):
    """Under torchrun (WORLD_SIZE > 1): join the process group (nccl on CUDA with this rank's cuda:LOCAL_RANK,
    else gloo), build the profile's held-out rows once on rank 0, and yield the device to run on; leave the
    group at the end. In a single process: yield `device` as it is."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        yield device
        return
    import torch.distributed as dist

    from .data import token_rows

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

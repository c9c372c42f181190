"""torchrun / DDP helpers: the process group comes from torchrun's environment (RANK, WORLD_SIZE, ...)."""

from __future__ import annotations

import datetime
import os

import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def setup(device: torch.device) -> tuple[int, int]:
    """Initialise the process group when launched by torchrun (WORLD_SIZE > 1). gloo on CPU, NCCL on CUDA.
    A short timeout makes a job whose peer died fail within seconds instead of hanging."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        timeout = datetime.timedelta(seconds=float(os.environ.get("ROADSEG_DIST_TIMEOUT", "120")))
        dist.init_process_group(backend, timeout=timeout)
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return world()


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """In-place sum across ranks (CPU tensors go through the GPU under NCCL, which only reduces CUDA tensors)."""
    if world()[1] > 1:
        if dist.get_backend() == "nccl" and t.device.type != "cuda":
            tmp = t.cuda()
            dist.all_reduce(tmp, op=dist.ReduceOp.SUM)
            t.copy_(tmp.cpu())
        else:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_gather_objects(obj) -> list:
    rank, size = world()
    if size == 1:
        return [obj]
    out = [None] * size
    dist.all_gather_object(out, obj)
    return out


def shard(items: list, rank: int | None = None, size: int | None = None) -> list:
    """Frames of this rank: every size-th item starting at rank (contiguous order kept within a rank)."""
    r, s = world()
    rank = r if rank is None else rank
    size = s if size is None else size
    return items[rank::size]

"""Data-parallel training through PyTorch's own runtime: torchrun sets RANK/WORLD_SIZE/
LOCAL_RANK, we join the process group (NCCL with CUDA, gloo on CPU) and reduce what must agree."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init(device: torch.device) -> DistContext:
    """Join the process group when launched by torchrun; a no-op otherwise."""
    if not launched_by_torchrun():
        return DistContext()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def shutdown(ctx: DistContext) -> None:
    """Tear the process group down once every rank is here: a rank that tears gloo down while
    another is still writing the run's last files can be left waiting on it forever."""
    if ctx.enabled and dist.is_initialized():
        try:
            dist.monitored_barrier(timeout=timedelta(seconds=120))
        except RuntimeError:  # a rank that died: tear down all the same
            pass
        dist.destroy_process_group()


def all_reduce(tensor: torch.Tensor, ctx: DistContext, op: Any = None) -> torch.Tensor:
    """In-place sum (or `op`) across ranks; identity on one process."""
    if ctx.enabled:
        dist.all_reduce(tensor, op=op or dist.ReduceOp.SUM)
    return tensor


def any_rank(flags: list[bool], ctx: DistContext, device: torch.device) -> list[bool]:
    """Element-wise OR of boolean flags over ranks (one collective)."""
    if not ctx.enabled:
        return flags
    tensor = torch.tensor([float(f) for f in flags], device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return [bool(v) for v in tensor.tolist()]


def broadcast(obj: Any, ctx: DistContext) -> Any:
    """Rank 0's value on every rank."""
    if not ctx.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]

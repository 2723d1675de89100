"""The GPU fast path: precision, optimizer choice and host-to-device copies that overlap compute.
On CPU every switch falls back to plain fp32 behaviour, so CPU numbers stay as they were."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Iterable, Iterator

import torch

from engine.data.loader import Batch


def pick_device(name: str) -> torch.device:
    """The device a checked --device name means here: auto is CUDA when there is one. A CUDA
    device that is absent is a UserInputError."""
    from common.errors import UserInputError
    from engine.settings import FIELD

    problem = FIELD["device"].problem(name)
    if problem:
        raise UserInputError(problem)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserInputError(f"--device {name} asked for CUDA but none is available; use --device cpu")
        index = int(name[5:]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise UserInputError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return torch.device(name)


def resolve_precision(precision: str, device: torch.device) -> str:
    """auto: bf16 autocast on CUDA, fp32 elsewhere."""
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return precision


def autocast(precision: str, device: torch.device):
    """bf16 autocast for the forward pass and loss; a no-op for fp32."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return nullcontext()


def make_optimizer(params: Iterable[torch.nn.Parameter], lr: float, device: torch.device) -> torch.optim.AdamW:
    """AdamW (weight decay 0.01); the fused kernel on CUDA (one launch for all parameters)."""
    return torch.optim.AdamW(params, lr=lr, weight_decay=0.01, fused=device.type == "cuda")


def to_device(batches: Iterable[Batch], device: torch.device) -> Iterator[Batch]:
    """Batches on `device`. On CUDA the copy of batch i+1 runs on a side stream while batch i is
    computed (host batches are pinned by the loader, so the copies are asynchronous)."""
    if device.type != "cuda":
        yield from batches
        return
    stream = torch.cuda.Stream(device)

    def start_copy(batch: Batch) -> Batch:
        with torch.cuda.stream(stream):
            moved = batch.to(device, non_blocking=True)
            if batch.hold is not None:  # the loader refills these host buffers only after the copy
                copied = torch.cuda.Event()
                copied.record(stream)
                batch.hold(copied)
        return moved

    pending = None
    for batch in batches:
        copied = start_copy(batch)
        if pending is not None:
            yield _ready(pending, stream)
        pending = copied
    if pending is not None:
        yield _ready(pending, stream)


def _ready(batch: Batch, stream: torch.cuda.Stream) -> Batch:
    current = torch.cuda.current_stream(stream.device)
    current.wait_stream(stream)
    for tensor in (batch.egpt, batch.vl, batch.mask, batch.seq_lens):
        tensor.record_stream(current)  # the caching allocator must not reuse it while compute runs
    return batch

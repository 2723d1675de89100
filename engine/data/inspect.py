"""`adapter-engine data inspect`: describe a dataset, and with `deep` verify every chunk with the
same checks the trainer relies on (plus NaN/Inf)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from common.errors import DataError
from engine.data.dataset import load_chunk, open_dataset
from engine.data.formats import Dataset


def _bytes_on_disk(dataset: Dataset) -> int:
    files = {f for ref in dataset.chunks for f in ref.files}
    if dataset.format in ("chunked", "packed"):
        files.add(dataset.path / "index.json")
    return sum(f.stat().st_size for f in files if f.exists())


def inspect_dataset(path: str | Path, deep: bool = False) -> dict[str, Any]:
    """Summary of a dataset. Raises DataError (a UserInputError) on any problem."""
    dataset = open_dataset(path)
    lengths = []
    for ref in dataset.chunks:
        chunk = load_chunk(ref, dataset.widths, mmap=not deep)
        lengths.append(chunk.seq_lens)
        if deep:
            for name, tensor in (("egpt_hidden", chunk.egpt), ("vl_hidden", chunk.vl)):
                bad = (~torch.isfinite(tensor)).sum().item()
                if bad:
                    raise DataError(f"{ref.path}: {name} holds {bad} NaN/Inf values; re-extract this chunk")
        del chunk
    lens = torch.cat(lengths).double()
    return {
        "path": str(dataset.path),
        "format": dataset.format,
        "samples": dataset.num_samples,
        "chunks": len(dataset.chunks),
        "hidden_dim": dataset.hidden_dim,
        "drafter_dim": dataset.drafter_dim,
        "padded_len": dataset.padded_len,
        "dtype": dataset.dtype,
        "bytes_on_disk": _bytes_on_disk(dataset),
        "tokens": int(lens.sum()),
        "seq_len": {"min": int(lens.min()), "max": int(lens.max()), "mean": round(lens.mean().item(), 3),
                    "median": float(lens.median())},
        "checked": "deep" if deep else "shapes",
    }

"""Loader throughput: our prefetching, vectorised loader against the seed-style loader."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from engine.bench.baseline import seed_style_batches
from common.errors import DataError
from engine.data.dataset import open_dataset
from engine.data.loader import train_loader


def _samples_per_s(batches, total: int) -> float:
    started = time.perf_counter()
    for _ in batches:
        pass
    return total / (time.perf_counter() - started)


def bench_loader(path: str | Path, batch_size: int = 64, repeats: int = 3) -> dict[str, Any]:
    """Median samples/s over `repeats` full passes of each loader over the same data (for a
    packed set, the seed-style loader reads the padded source it was packed from).
    A warm-up pass of each first, so both read from the page cache."""
    dataset = open_dataset(path)
    source = open_dataset(dataset.index["source"]) if dataset.format == "packed" else dataset
    if source.num_samples != dataset.num_samples:
        raise DataError(f"{path} and its source {source.path} hold different samples; re-pack it")
    total = dataset.num_samples
    ours_runs, base_runs = [], []
    loader = train_loader(dataset, batch_size, seed=0, reuse_buffers=3)  # as the trainer runs it
    _samples_per_s(loader, total)
    _samples_per_s(seed_style_batches(source, batch_size), total)
    for epoch in range(repeats):  # interleaved, so machine noise hits both alike
        loader.set_epoch(epoch)
        ours_runs.append(_samples_per_s(loader, total))
        base_runs.append(_samples_per_s(seed_style_batches(source, batch_size, seed=epoch), total))
    ours, baseline = statistics.median(ours_runs), statistics.median(base_runs)
    return {"bench": "loader", "path": str(path), "format": dataset.format, "baseline_path": str(source.path), "samples": total, "hidden_dim": dataset.hidden_dim,
            "batch_size": batch_size, "repeats": repeats, "unit": "samples/s",
            "ours": ours, "baseline": baseline, "ratio": ours / baseline,
            "ours_runs": ours_runs, "baseline_runs": base_runs}

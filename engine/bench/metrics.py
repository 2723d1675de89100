"""Validation metrics: our batched tensor code against a per-token Python loop."""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch

from adapters.losses import Objective, token_alignment
from engine.bench.baseline import per_token_metrics
from engine.metrics import MetricAccumulator


def bench_metrics(batch: int = 32, seq: int = 48, hidden: int = 256, batches: int = 8, repeats: int = 5,
                  seed: int = 0) -> dict[str, Any]:
    """Tokens/s of both over the same `batches` validation batches; median of `repeats`."""
    g = torch.Generator().manual_seed(seed)
    target = torch.randn(batches * batch, seq, hidden, generator=g)
    pred = target + 0.35 * torch.randn(target.shape, generator=g)  # cosines spread around 0.9
    lens = torch.randint(1, seq + 1, (batches * batch,), generator=g)
    mask = torch.arange(seq)[None, :] < lens[:, None]
    tokens = int(mask.sum())
    parts = [slice(i * batch, (i + 1) * batch) for i in range(batches)]

    def ours() -> dict[str, float]:
        acc = MetricAccumulator()
        for part in parts:
            valid = mask[part]
            p, t = pred[part][valid], target[part][valid]
            acc.update(Objective(*token_alignment(p, t), p, t), valid)
        return acc.compute("")

    def timed(fn) -> tuple[float, dict]:
        started = time.perf_counter()
        result = fn()
        return time.perf_counter() - started, result

    ours_times, base_times = [], []
    for _ in range(repeats):
        t, ours_result = timed(ours)
        ours_times.append(t)
        t, base_result = timed(lambda: per_token_metrics(pred, target, mask))
        base_times.append(t)
    for key, value in base_result.items():  # same numbers, or the comparison means nothing
        assert abs(ours_result[key] - value) < 1e-6, (key, ours_result[key], value)
    ours_rate, base_rate = tokens / statistics.median(ours_times), tokens / statistics.median(base_times)
    return {"bench": "metrics", "tokens": tokens, "batches": batches, "hidden_dim": hidden, "repeats": repeats,
            "unit": "tokens/s",
            "ours": ours_rate, "baseline": base_rate, "ratio": ours_rate / base_rate}

"""A whole epoch (train + validation with metrics) per level: ours against a seed-style fp32
loop (per-sample Python padding, nn.MultiheadAttention, per-token metric loops), same data,
same model sizes and weights, same machine, one run."""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

from adapters.losses import level_loss
from adapters.registry import build_adapter, load_registry
from engine.bench.baseline import per_token_counts, seed_style_batches, seed_style_model
from engine.data.formats import Dataset, open_dataset
from engine.data.loader import train_loader, val_loader
from engine.data.synth import SynthConfig, synthesize
from engine.metrics import MetricAccumulator

SMALL_ARCH = {"num_heads": 8}


def _epoch(model: torch.nn.Module, train: Iterable, val: Iterable, validate: Callable) -> tuple[float, int]:
    """One epoch; returns (seconds, training tokens)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    started, tokens = time.perf_counter(), 0
    model.train()
    for egpt, vl, mask in train:
        loss = level_loss(model.predicts_next, model(egpt, vl, mask), vl, mask)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        tokens += int(mask.sum())
    model.eval()
    with torch.no_grad():
        validate(model, val)
    return time.perf_counter() - started, tokens


def _ours_validate(model, batches) -> None:
    metrics = MetricAccumulator()
    for egpt, vl, mask in batches:
        pred = model(egpt, vl, mask)
        metrics.update(pred, vl, mask, level_loss(model.predicts_next, pred, vl, mask))
    metrics.compute()


def _seed_validate(model, batches) -> None:
    for egpt, vl, mask in batches:
        pred = model(egpt, vl, mask)
        level_loss(model.predicts_next, pred, vl, mask).item()
        per_token_counts(pred, vl, mask)


def _ours_batches(loader) -> Iterable:
    return ((b.egpt, b.vl, b.mask) for b in loader)


def bench_level(key: str, train: Dataset, val: Dataset, batch_size: int, repeats: int, config: str | None) -> dict:
    spec = load_registry(config).level(key)
    torch.manual_seed(0)
    model = build_adapter(spec, train.hidden_dim, SMALL_ARCH if "num_heads" in spec.arch else None)
    baseline_model = seed_style_model(model)
    ours_rates, base_rates = [], []
    for repeat in range(repeats):  # interleaved, so machine noise hits both alike
        loader = train_loader(train, batch_size, seed=repeat, reuse_buffers=3)
        seconds, tokens = _epoch(model, _ours_batches(loader), _ours_batches(val_loader(val, batch_size, reuse_buffers=3)),
                                 _ours_validate)
        ours_rates.append(tokens / seconds)
        seconds, tokens = _epoch(baseline_model, seed_style_batches(train, batch_size, seed=repeat),
                                 seed_style_batches(val, batch_size), _seed_validate)
        base_rates.append(tokens / seconds)
    ours, baseline = statistics.median(ours_rates), statistics.median(base_rates)
    return {"level": key, "params": sum(p.numel() for p in model.parameters()), "ours": ours, "baseline": baseline,
            "ratio": ours / baseline, "ours_runs": ours_rates, "baseline_runs": base_rates}


def bench_step(levels: list[str], hidden_dim: int = 1024, samples: int = 256, val_samples: int = 128,
               max_seq: int = 32, batch_size: int = 64, repeats: int = 3, config: str | None = None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-step-") as tmp:
        synthesize(Path(tmp), SynthConfig(samples=samples, val_samples=val_samples, hidden_dim=hidden_dim,
                                          max_seq=max_seq, chunk_size=max(1, samples // 2)))
        train, val = open_dataset(Path(tmp) / "train"), open_dataset(Path(tmp) / "val")
        rows = [bench_level(key, train, val, batch_size, repeats, config) for key in levels]
    return {"bench": "step", "unit": "train tokens/s (whole epoch incl. validation)", "hidden_dim": hidden_dim,
            "samples": samples, "val_samples": val_samples, "max_seq": max_seq, "batch_size": batch_size,
            "repeats": repeats, "device": "cpu", "levels": rows,
            "ours": rows[0]["ours"], "baseline": rows[0]["baseline"], "ratio": rows[0]["ratio"]}

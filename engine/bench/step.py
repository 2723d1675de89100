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

from adapters.losses import batch_objective
from adapters.registry import build_adapter, load_registry
from engine.bench.baseline import SeedStyleAdapter, padded_level_loss, per_token_counts, seed_style_batches
from engine.data.dataset import open_dataset
from engine.data.formats import Dataset
from engine.data.loader import train_loader, val_loader
from engine.data.synth import SynthConfig, synthesize
from engine.device import autocast, make_optimizer, resolve_precision, to_device
from engine.metrics import MetricAccumulator

# Dense bf16 peak of the GPUs we expect, for model FLOP utilisation (override with --peak_tflops).
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _epoch(model: torch.nn.Module, train: Iterable, val: Iterable, validate: Callable, device: torch.device,
           ours: bool) -> tuple[float, int, int]:
    """One epoch of training plus validation; returns (seconds, training tokens, validation tokens).
    Ours runs the trainer's fast path (bf16 autocast and fused AdamW on CUDA); the seed-style
    side plain fp32 AdamW."""
    precision = resolve_precision("auto", device) if ours else "fp32"
    optimizer = (make_optimizer(model.parameters(), 1e-3, device) if ours
                 else torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01))
    _sync(device)
    started, tokens = time.perf_counter(), 0
    model.train()
    for egpt, vl, mask in train:
        with autocast(precision, device):
            if ours:  # as the trainer computes it
                loss = batch_objective(model, model.predicts_next, egpt, vl, mask).loss
            else:
                loss = padded_level_loss(model.predicts_next, model(egpt, vl, mask), vl, mask)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        tokens += int(mask.sum())
    model.eval()
    with torch.no_grad(), autocast(precision, device):
        val_tokens = validate(model, val)
    _sync(device)
    return time.perf_counter() - started, tokens, val_tokens


def _ours_validate(model, batches) -> int:
    metrics, tokens = MetricAccumulator(), 0
    for egpt, vl, mask in batches:
        metrics.update(batch_objective(model, model.predicts_next, egpt, vl, mask), mask)
        tokens += int(mask.sum())
    metrics.compute()
    return tokens


def _seed_validate(model, batches) -> int:
    tokens = 0
    for egpt, vl, mask in batches:
        pred = model(egpt, vl, mask)
        padded_level_loss(model.predicts_next, pred, vl, mask).item()
        per_token_counts(pred, vl, mask)
        tokens += int(mask.sum())
    return tokens


def _ours_batches(loader, device: torch.device) -> Iterable:
    return ((b.egpt, b.vl, b.mask) for b in to_device(loader, device))


def _seed_batches(batches, device: torch.device) -> Iterable:
    return (tuple(t.to(device) for t in batch) for batch in batches)


def bench_level(key: str, train: Dataset, val: Dataset, batch_size: int, repeats: int, config: str | None,
                device: torch.device, peak_tflops: float | None) -> dict:
    spec = load_registry(config).level(key)
    torch.manual_seed(0)
    model = build_adapter(spec, train.hidden_dim).to(device)
    baseline_model = SeedStyleAdapter(model)
    params = sum(p.numel() for p in model.parameters())
    pin = device.type == "cuda"
    ours_runs, base_runs = [], []
    # one loader of each across epochs, as the trainer runs them
    train_batches = train_loader(train, batch_size, seed=0, reuse_buffers=3, pin_memory=pin, gather_ahead=pin)
    val_batches = val_loader(val, batch_size, reuse_buffers=3, pin_memory=pin, gather_ahead=pin)
    for repeat in range(repeats):  # interleaved, so machine noise hits both alike
        train_batches.set_epoch(repeat)
        ours_runs.append(_epoch(model, _ours_batches(train_batches, device), _ours_batches(val_batches, device),
                                _ours_validate, device, ours=True))
        base_runs.append(_epoch(baseline_model, _seed_batches(seed_style_batches(train, batch_size, seed=repeat), device),
                                _seed_batches(seed_style_batches(val, batch_size), device), _seed_validate,
                                device, ours=False))
    train_batches.close()

    def rate(run: tuple[float, int, int]) -> float:
        return run[1] / run[0]

    def mfu(run: tuple[float, int, int]) -> float | None:
        # 6 FLOPs per parameter per trained token (forward + backward), 2 per validated token;
        # attention-score FLOPs are left out, as is usual for MFU.
        return None if not peak_tflops else (6 * params * run[1] + 2 * params * run[2]) / run[0] / (peak_tflops * 1e12)

    ours = statistics.median(rate(r) for r in ours_runs)
    baseline = statistics.median(rate(r) for r in base_runs)
    row = {"level": key, "params": params, "ours": ours, "baseline": baseline, "ratio": ours / baseline,
           "ours_runs": [rate(r) for r in ours_runs], "baseline_runs": [rate(r) for r in base_runs]}
    if peak_tflops:
        row["ours_mfu"] = statistics.median(mfu(r) for r in ours_runs)
        row["baseline_mfu"] = statistics.median(mfu(r) for r in base_runs)
    return row


def default_peak_tflops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for model, peak in PEAK_TFLOPS.items() if model in name), None)


def bench_step(levels: list[str], hidden_dim: int = 1024, samples: int = 256, val_samples: int = 128,
               max_seq: int = 32, batch_size: int = 64, repeats: int = 3, config: str | None = None,
               device: str = "cpu", peak_tflops: float | None = None) -> dict[str, Any]:
    torch_device = torch.device(device)
    peak = peak_tflops if peak_tflops is not None else default_peak_tflops(torch_device)
    with tempfile.TemporaryDirectory(prefix="bench-step-") as tmp:
        synthesize(Path(tmp), SynthConfig(samples=samples, val_samples=val_samples, hidden_dim=hidden_dim,
                                          max_seq=max_seq, chunk_size=max(1, samples // 2)))
        train, val = open_dataset(Path(tmp) / "train"), open_dataset(Path(tmp) / "val")
        rows = [bench_level(key, train, val, batch_size, repeats, config, torch_device, peak) for key in levels]
    return {"bench": "step", "unit": "train tokens/s (whole epoch incl. validation)", "hidden_dim": hidden_dim,
            "samples": samples, "val_samples": val_samples, "max_seq": max_seq, "batch_size": batch_size,
            "repeats": repeats, "device": str(torch_device), "peak_tflops": peak, "levels": rows,
            "ours": rows[0]["ours"], "baseline": rows[0]["baseline"], "ratio": rows[0]["ratio"]}

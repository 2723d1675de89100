"""How the app shows numbers: short numbers and durations, smoothed curves, config diffs. The
reading of run files is engine.rundir's."""

from __future__ import annotations

import math
from typing import Any


def ema(values: list[float | None], weight: float = 0.6) -> list[float | None]:
    """Exponential moving average with TensorBoard's smoothing weight (0: none, 0.9: heavy),
    skipping missing values."""
    out: list[float | None] = []
    acc: float | None = None
    for v in values:
        if v is not None:
            acc = v if acc is None else weight * acc + (1 - weight) * v
        out.append(None if v is None else acc)
    return out


def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    """{'training.epochs': 3, ...} from nested dicts."""
    if not isinstance(config, dict):
        return {prefix: config} if prefix else {}
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            out.update(flatten(value, name))
        else:
            out[name] = value
    return out


# Keys that differ between any two runs and say nothing about how they differ.
_NOISE = {"timestamp", "argv", "best_val_loss", "data.train_samples", "data.val_samples"}


def config_diff(configs: list[dict[str, Any]]) -> list[tuple[str, list[Any]]]:
    """(key, its value in each config) for every flattened key whose values are not all equal."""
    flat = [flatten(c) for c in configs]
    rows = []
    for key in sorted(set().union(*flat)):
        if key in _NOISE or key.startswith("versions."):
            continue
        values = [f.get(key, "—") for f in flat]
        if any(v != values[0] for v in values[1:]):
            rows.append((key, values))
    return rows


def fmt_int(n: Any) -> str:
    if not isinstance(n, (int, float)) or isinstance(n, bool):
        return "—"
    n = float(n)
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.1f}{unit}"
    return f"{n:.0f}"


def fmt_duration(s: Any) -> str:
    if not isinstance(s, (int, float)) or isinstance(s, bool) or not math.isfinite(s):
        return "—"
    s = int(s)
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


def fmt_float(v: Any, digits: int = 4) -> str:
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
        return "—"
    return f"{v:.{digits}f}"

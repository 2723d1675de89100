"""How the app shows numbers: short numbers and durations, smoothed curves. The reading of run
files, and how configs differ, are engine.rundir's."""

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

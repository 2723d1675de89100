"""history.json's keys, and the tolerant readers every file of a run goes through: a JSON
object, a history series, the growing tail of train.log. They tolerate missing, empty, garbage,
half-written or non-regular files and deleted directories: they return what they could read
plus a one-line problem."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from common.fileio import ReadError, open_regular, read_json

# Per-epoch keys of history.json: the seed's first, then ours. Thresholds are keyed by their
# hundredths, as the seed names them (val_accept_90).
SEED_HISTORY_KEYS = ("train_loss", "train_cos_sim", "val_loss", "val_cos_sim",
                     "val_accept_80", "val_accept_85", "val_accept_90", "val_accept_95")
HISTORY_KEYS = ("epoch",) + SEED_HISTORY_KEYS + (
    "val_consecutive_90", "lr", "epoch_time_s", "train_tokens_per_s", "data_wait_frac")


def history_key(tau: float) -> str:
    """A threshold as history.json (val_accept_90) and position_stats (accept_90) key it."""
    return f"{round(tau * 100):02d}"


def read_object(path: Path) -> tuple[dict[str, Any], str | None]:
    """A JSON object from `path`, or ({}, reason)."""
    try:
        data = read_json(path)
    except ReadError as exc:
        return {}, str(exc)
    if not isinstance(data, dict):
        return {}, f"{Path(path).name} is not a JSON object"
    return data, None


def clean_series(values: Any) -> list[float | None]:
    """A history list as floats, with None where a value is missing or not finite."""
    if not isinstance(values, list):
        return []
    out: list[float | None] = []
    for v in values:
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        out.append(float(v) if ok else None)
    return out


def read_tail(path: Path, offset: int, max_bytes: int = 64_000) -> tuple[str, int, bool]:
    """New text of a growing file from `offset`: (text, new offset, was_reset).
    A file that shrank (rewritten) is read again from its last `max_bytes`."""
    try:
        size = path.stat().st_size
    except OSError:
        return "", 0, offset != 0
    reset = size < offset
    if reset or offset == 0:
        offset = max(0, size - max_bytes)
        reset = True
    if size == offset and not reset:
        return "", offset, False
    try:
        with open_regular(path) as handle:  # a FIFO named train.log must not hang the app
            handle.seek(offset)
            chunk = handle.read(max(0, size - offset))
    except OSError:
        return "", offset, False
    # Keep a partial last line for the next read.
    cut = chunk.rfind(b"\n") + 1
    if cut == 0 and len(chunk) < max_bytes:
        return "", offset, reset
    if cut:
        chunk = chunk[:cut]
    return chunk.decode("utf-8", errors="replace"), offset + len(chunk), reset

"""steps.jsonl: the within-epoch curve of a run. Append-only, one JSON object a line:

    {"step": 1200, "epoch": 2.5, "time": 1764230000.1, "elapsed_s": 312.4, "train_loss": 0.41,
     "lr": 0.0009, "tokens_per_s": 181000.0, "cpu_percent": 198.0, "rss_mb": 2150.3,
     "gpu_util": 97.0, "gpu_mem_used_mb": 30120.0, "gpu_mem_total_mb": 81559.0, "gpu_power_w": 402.1}

`step` counts optimizer steps from the start of the run, `epoch` is fractional, `elapsed_s` is
training time (a resumed run carries on from its last line), `train_loss` the mean over the steps
since the previous line. The system fields are there when they could be measured. This file is
the one exception to the atomic-write rule: it only grows, a line at a time, and a reader keeps a
last line without its newline for the next read (it may be half-written)."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable

from common.fileio import open_regular
from engine.rundir.layout import STEPS

POINTS_PER_EPOCH = 50
MIN_INTERVAL_S = 1.0


def parse_lines(text: str) -> list[dict[str, Any]]:
    """The JSON objects of complete lines; garbage lines are skipped."""
    rows = []
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def read_steps(run_dir: str | os.PathLike, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """The rows from byte `offset` up to the last complete line, and the offset after it (to
    read on from). A missing, unreadable or non-regular file reads as no rows."""
    path = Path(run_dir) / STEPS
    try:
        with open_regular(path) as handle:
            handle.seek(offset)
            chunk = handle.read()
    except OSError:
        return [], offset
    cut = chunk.rfind(b"\n") + 1  # a torn last line waits for the next read
    return parse_lines(chunk[:cut].decode("utf-8", errors="replace")), offset + cut


def series(rows: list[dict[str, Any]], key: str) -> list[float | None]:
    out = []
    for row in rows:
        value = row.get(key)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        out.append(float(value) if ok else None)
    return out


class StepLog:
    """Appends a line every `every` steps (about POINTS_PER_EPOCH a epoch) and at most one a
    MIN_INTERVAL_S, and always at an epoch's last step, with the mean loss of the steps since
    the last line."""

    def __init__(self, run_dir: Path, steps_per_epoch: int, *, enabled: bool = True,
                 min_interval_s: float = MIN_INTERVAL_S) -> None:
        self.path = Path(run_dir) / STEPS
        self.enabled = enabled
        self.steps_per_epoch = max(1, steps_per_epoch)
        self.every = max(1, steps_per_epoch // POINTS_PER_EPOCH)
        self.min_interval_s = min_interval_s
        self._losses: list[float] = []
        self._last_write = 0.0
        previous, _ = read_steps(run_dir) if enabled else ([], 0)
        self._elapsed_before = next((r["elapsed_s"] for r in reversed(previous)
                                     if isinstance(r.get("elapsed_s"), (int, float))), 0.0)
        self._started = time.monotonic()

    def step(self, step: int, epoch: float, loss: float, lr: float, tokens_per_s: float,
             system: Callable[[], dict[str, Any]] | None = None) -> bool:
        """Count a step; write a line when one is due (`system()` adds the system's use to it).
        Returns whether it wrote."""
        self._losses.append(loss)
        now = time.monotonic()
        epoch_end = step % self.steps_per_epoch == 0  # always a point: a short run still gets its curves
        if not self.enabled or not epoch_end and (step % self.every or now - self._last_write < self.min_interval_s):
            return False
        row = {"step": step, "epoch": round(epoch, 4), "time": round(time.time(), 3),
               "elapsed_s": round(self._elapsed_before + now - self._started, 3),
               "train_loss": sum(self._losses) / len(self._losses), "lr": lr, "tokens_per_s": round(tokens_per_s, 1),
               **(system() if system else {})}
        self._losses.clear()
        self._last_write = now
        line = json.dumps({k: v for k, v in row.items() if v is not None}) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)  # the umask applies
        try:
            os.write(fd, line.encode())  # one write: a reader sees the line whole or not at all
        finally:
            os.close(fd)
        return True

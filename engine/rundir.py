"""The run directory: the only contract between the engine and the TUI (SPEC §5).

Torch-free. The trainer writes through `RunDir`; readers use `engine.runindex`.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from common.errors import UserInputError
from common.names import is_safe_name
from common.fileio import write_json
from engine.process import start_of

CONFIG, HISTORY, STATUS, LOG = "config.json", "history.json", "status.json", "train.log"
BEST, LAST, FINAL, CURVES, EVAL = "best_model.pt", "last.pt", "final_model.pt", "training_curves.png", "eval.json"
# What the reference's evaluation (measure_feature_acceptance.py) writes, read where it lies in a run directory.
REFERENCE_METRICS, REFERENCE_POSITIONS = "acceptance_metrics.json", "position_stats.json"

STATES = ("queued", "running", "done", "failed", "cancelled", "diverged", "interrupted")
FINISHED = ("done", "failed", "cancelled", "diverged", "interrupted")
STALE_AFTER_S = 60.0

# Per-epoch keys of history.json: the seed's first, then ours.
SEED_HISTORY_KEYS = ("train_loss", "train_cos_sim", "val_loss", "val_cos_sim",
                     "val_accept_80", "val_accept_85", "val_accept_90", "val_accept_95")
HISTORY_KEYS = ("epoch",) + SEED_HISTORY_KEYS + (
    "val_consecutive_90", "lr", "epoch_time_s", "train_tokens_per_s", "data_wait_frac")

# The trainer writes its run directory's path here as soon as it exists (used by the queue).
RUN_DIR_FILE_ENV = "ADAPTER_ENGINE_RUN_DIR_FILE"


def now_iso() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


def run_stamp(when: datetime | None = None) -> str:
    """The time part of a run's name, and config.json's `timestamp`: YYYYmmdd_HHMMSS."""
    return (when or datetime.now()).strftime("%Y%m%d_%H%M%S")


def new_run_dir(output_dir: Path, prefix: str, stamp: str, *, nested: bool = True) -> Path:
    """Create OUTPUT/<PREFIX>/<PREFIX>_<stamp>[_n] (our layout; the prefix is the level key), or
    with `nested=False` OUTPUT/<PREFIX>_<stamp>[_n] (the reference's). Suffix _2, _3 ... if taken."""
    if not is_safe_name(prefix):
        raise UserInputError(f"level key {prefix!r} is not a safe name (letters, digits, '_' and '-')")
    parent = Path(output_dir) / prefix if nested else Path(output_dir)
    parent.mkdir(parents=True, exist_ok=True)
    for n in range(1, 10_000):
        path = parent / (f"{prefix}_{stamp}" if n == 1 else f"{prefix}_{stamp}_{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise UserInputError(f"too many runs named {prefix}_{stamp} under {parent}")


LOCK = ".lock"  # held (flock) by the one process that trains the run


class RunLock:
    """An exclusive lock on a run directory for the life of its trainer, so that no second
    trainer (a resume of a live run, a queue retry, another host on a shared filesystem where
    flock works) ever writes the same run."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK
        self.fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise UserInputError(f"{self.path.parent} is being trained by {holder}; wait for it to end, or cancel "
                                 "it first") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing drops the flock
            self.fd = None


class StatusWriter:
    """Writes status.json: at every state change, and at most once per `interval_s` otherwise."""

    def __init__(self, run_dir: Path, interval_s: float = 1.0, enabled: bool = True, **initial: Any) -> None:
        self.path = Path(run_dir) / STATUS
        self.enabled = enabled  # only one process (rank 0) writes the run directory
        self.interval_s = interval_s
        self._last_write = 0.0
        self.data: dict[str, Any] = {
            "state": "running", "pid": os.getpid(), "pid_start": start_of(os.getpid()), "host": socket.gethostname(),
            "started_at": now_iso(), "updated_at": now_iso(), "epoch": 0, "num_epochs": None,
            "step": 0, "steps_per_epoch": None, "running_loss": None, "tokens_per_s": None,
            "eta_s": None, "best_val_loss": None, "best_epoch": None, "device": None, "error": None,
        }
        self.data.update(initial)

    def update(self, force: bool = False, **fields: Any) -> None:
        changed_state = "state" in fields and fields["state"] != self.data.get("state")
        self.data.update(fields)
        now = time.monotonic()
        if self.enabled and (force or changed_state or now - self._last_write >= self.interval_s):
            self.data["updated_at"] = now_iso()
            write_json(self.path, self.data)
            self._last_write = now

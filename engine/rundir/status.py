"""status.json: the live state of a run. The trainer writes it (at most about once a second,
and at every state change); the queue closes it for a trainer that died without doing so."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

from common.fileio import ReadError, read_json, write_json
from engine.process import start_of
from engine.rundir.layout import EXTRACT_STATUS, STATUS
from engine.rundir.states import FINISHED, now_iso


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


def status_path(directory: str | os.PathLike) -> Path:
    """Where a queue job's process reports: a run's status.json, or the extract_status.json of
    a dataset an extraction job writes (a dataset has no status.json: no reader mistakes it for
    a run)."""
    directory = Path(directory)
    extract = directory / EXTRACT_STATUS
    return extract if extract.exists() and not (directory / STATUS).exists() else directory / STATUS


def final_state(run_dir: str | os.PathLike | None) -> tuple[str, str | None] | None:
    """(state, error) when the run's status.json says it ended, else None."""
    if not run_dir:
        return None
    try:
        status = read_json(status_path(run_dir))
    except ReadError:
        return None
    if not isinstance(status, dict) or status.get("state") not in FINISHED:
        return None
    error = status.get("error")
    return status["state"], error if isinstance(error, str) else None


def close_status(run_dir: str | os.PathLike | None, state: str, error: str | None = None) -> bool:
    """If the run's status.json (or extract_status.json) still says `running` (its process died),
    rewrite it with `state`. Returns whether it was rewritten. Never raises for a missing or
    broken file."""
    if not run_dir:
        return False
    path = status_path(run_dir)
    try:
        status = read_json(path)
    except ReadError:
        return False
    if not isinstance(status, dict) or status.get("state") != "running":
        return False
    status["state"] = state
    status["updated_at"] = now_iso()
    if error and not status.get("error"):
        status["error"] = error
    try:
        write_json(path, status)
    except OSError:
        return False
    return True

"""A run's states, the trainer's exit codes and what they mean, and when a running run is
really interrupted: one table for the trainer, the worker, the queue and every reader."""

from __future__ import annotations

import socket
from datetime import datetime
from typing import Any

from engine.process import is_running

STATES = ("queued", "running", "done", "failed", "cancelled", "diverged", "interrupted")
FINISHED = ("done", "failed", "cancelled", "diverged", "interrupted")
RETRYABLE = ("failed", "cancelled", "interrupted", "diverged")

# The trainer's exit codes (a cancelled run exits 0: it stopped as asked), and the state each
# means when status.json cannot say (the trainer died before writing it).
EXIT_DONE, EXIT_FAILED, EXIT_INPUT, EXIT_DIVERGED = 0, 1, 2, 3
EXIT_STATES = {EXIT_DONE: "done", EXIT_FAILED: "failed", EXIT_INPUT: "failed", EXIT_DIVERGED: "diverged"}

# How long a trainer gets between SIGTERM (it saves last.pt and ends cancelled) and SIGKILL.
STOP_GRACE_S = 30.0

# A heartbeat older than this means its process is gone (a run's status.json, the queue
# worker's row) when the process cannot be looked at: on the writer's own host its pid decides.
STALE_AFTER_S = 60.0


def now_iso() -> str:
    """The timestamps of every file and row: local time with its offset, to the second."""
    return datetime.now().astimezone().isoformat(timespec="seconds")


def age_s(stamp: Any) -> float | None:
    """Seconds since an ISO timestamp, or None when it is not one."""
    try:
        return (datetime.now().astimezone() - datetime.fromisoformat(str(stamp))).total_seconds()
    except (TypeError, ValueError):
        return None


def effective_state(status: dict) -> str:
    """A `running` run whose process is gone is shown as interrupted. On this host its pid says
    so, and a pid with its start time proves the trainer alive however long it has been quiet
    (a long validation); elsewhere, or for a bare pid that may have been reused, a heartbeat
    older than STALE_AFTER_S means gone."""
    state = status.get("state", "unknown")
    if state != "running":
        return state if isinstance(state, str) else "unknown"
    if status.get("host") == socket.gethostname():
        start = status.get("pid_start") if isinstance(status.get("pid_start"), str) else None
        if not is_running(status.get("pid"), start):
            return "interrupted"
        if start is not None:
            return "running"
    age = age_s(status.get("updated_at"))
    if age is not None and age > STALE_AFTER_S:
        return "interrupted"
    return "running"

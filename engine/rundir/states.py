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
# worker's row): on the writer's own host the pid check says so sooner.
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
    """A `running` run whose process is gone (on this host) or whose heartbeat is stale is
    shown as interrupted."""
    state = status.get("state", "unknown")
    if state != "running":
        return state if isinstance(state, str) else "unknown"
    start = status.get("pid_start") if isinstance(status.get("pid_start"), str) else None
    if status.get("host") == socket.gethostname() and not is_running(status.get("pid"), start):
        return "interrupted"
    age = age_s(status.get("updated_at"))
    if age is not None and age > STALE_AFTER_S:
        return "interrupted"
    return "running"

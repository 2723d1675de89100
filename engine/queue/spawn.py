"""Starting a queue worker in the background: detached (its own session), so it outlives the
app that started it, its terminal and an SSH hang-up. Torch-free."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from common.errors import UserInputError
from engine.queue.lifecycle import JobQueue
from engine.queue.worker import last_line, parse_gpus
from engine.process import is_running
from engine.rundir.layout import WORKER_LOG


def worker_argv(runs_dir: Path, gpus: str | None = None, *, exit_when_idle: bool = False,
                poll_interval: float | None = None, grace_s: float | None = None,
                extra: list[str] = ()) -> list[str]:
    argv = [sys.executable, "-m", "engine", "queue", "worker", "--runs", str(Path(runs_dir).absolute()),
            "--detached-child"]
    if gpus:
        argv += ["--gpus", gpus]
    if exit_when_idle:
        argv.append("--exit-when-idle")
    if poll_interval is not None:
        argv += ["--poll-interval", str(poll_interval)]
    if grace_s is not None:
        argv += ["--grace", str(grace_s)]
    return argv + list(extra)  # the backend's flags (--backend slurm --partition P ...)


def start_detached(runs_dir: str | os.PathLike, gpus: str | None = None, *, exit_when_idle: bool = False,
                   poll_interval: float | None = None, grace_s: float | None = None,
                   wait_s: float = 15.0, extra: list[str] = ()) -> int | None:
    """Start a worker in a new session (stdin /dev/null, output appended to runs/worker.log,
    SIGHUP ignored), so it outlives this process, its terminal and an SSH hang-up. Waits until
    it is up; returns its pid, or None if it exited cleanly at once (idle with
    `exit_when_idle`). A worker that fails to start raises UserInputError with its last line."""
    runs_dir = Path(runs_dir).absolute()
    parse_gpus(gpus)
    runs_dir.mkdir(parents=True, exist_ok=True)
    log_path = runs_dir / WORKER_LOG
    argv = worker_argv(runs_dir, gpus, exit_when_idle=exit_when_idle, poll_interval=poll_interval, grace_s=grace_s,
                       extra=extra)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    with JobQueue(runs_dir) as q:
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            code = proc.poll()
            if code is not None:
                if code == 0:
                    return None
                raise UserInputError(f"the queue worker exited at once: {last_line(log_path) or f'exit code {code}'} "
                                     f"(log: {log_path})")
            status = q.worker_status()
            if status.alive and status.pid == proc.pid:
                break
            time.sleep(0.05)
    # Reap it if this process lives on (the TUI), so it never lingers as a zombie.
    threading.Thread(target=proc.wait, name="reap-queue-worker", daemon=True).start()
    return proc.pid


def stop_worker(runs_dir: str | os.PathLike, wait_s: float = 0.0) -> tuple[int | None, list[int]]:
    """SIGTERM the live worker of `runs_dir`: it cancels its running jobs (each saves last.pt
    and can be resumed) and exits. Returns (its pid, the jobs it was running), or (None, [])
    when no worker is alive. With `wait_s`, waits that long for it to be gone."""
    q = JobQueue.existing(runs_dir)
    if q is None:
        return None, []
    with q:
        status = q.worker_status()
    if not status.alive:
        return None, []
    if status.host != socket.gethostname():
        raise UserInputError(f"the worker runs on {status.host} (pid {status.pid}); stop it there")
    if not is_running(status.pid, status.pid_start):  # gone since, or its pid is another process's now
        return None, []
    os.kill(status.pid, signal.SIGTERM)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and is_running(status.pid, status.pid_start):
        time.sleep(0.1)
    return status.pid, list(status.running)


def ensure_worker(runs_dir: str | os.PathLike, gpus: str | None = None, *, exit_when_idle: bool = True) -> int | None:
    """Make sure the queued jobs of `runs_dir` have a worker: the live one (its pid), else one
    started detached (its pid). None when nothing is queued: no worker is needed, none is
    started (a live idle worker may be about to leave)."""
    with JobQueue(runs_dir) as q:
        if not q.counts().get("queued"):
            return None
        status = q.worker_status()
    if status.alive:
        return status.pid
    if status.unresponsive:
        raise UserInputError(status.unresponsive_text())
    try:
        return start_detached(runs_dir, gpus, exit_when_idle=exit_when_idle)
    except UserInputError:
        with JobQueue(runs_dir) as q:
            status = q.worker_status()
        if status.alive:  # another one won the race
            return status.pid
        raise

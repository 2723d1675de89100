"""The queue worker: one per runs directory. It claims queued jobs, runs each trainer as a child
in its own session (process group) with the job's settings, records the run directory as soon
as it exists, honours cancel requests (SIGTERM, then SIGKILL after a grace period) and writes
the outcome. Torch-free. `engine.queue.spawn` starts one in the background.

    Worker(runs_dir, gpus="0,1").run()      # blocks; `adapter-engine queue worker`

Only one worker holds `runs_dir/worker.lock` (an exclusive flock); a second one refuses to
start. Jobs run one per listed GPU at a time (`gpus`), or one at a time without GPUs.
"""

from __future__ import annotations

import fcntl
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, TextIO

from common.errors import UserInputError
from common.fileio import ReadError, open_regular, read_json, write_json
from common.text import plural
from engine.extract.options import JOB_KIND, ExtractOptions
from engine.speculate.options import JOB_KIND as SPECULATE_KIND
from engine.speculate.options import SpeculateOptions
from engine.launch import torchrun_command
from engine.process import is_running, terminate_group
from engine.queue.lifecycle import JobQueue
from engine.queue.plan import settings_of
from engine.queue.storage import Job
from engine.rundir.layout import JOB_LOGS, RUN_DIR_FILE_ENV, WORKER_LOCK
from engine.rundir.states import EXIT_STATES, FINISHED, STOP_GRACE_S, now_iso
from engine.rundir.status import close_status, status_path

CPU_SLOT = "cpu"

CommandFor = Callable[[Job, Path], list[str]]


def settings_file(runs_dir: Path, job_id: int) -> Path:
    """Where the worker writes a job's settings for its trainer (RUNS/logs/job_<id>.settings.json)."""
    return Path(runs_dir) / JOB_LOGS / f"job_{job_id}.settings.json"


def trainer_command(job: Job, runs_dir: Path) -> list[str]:
    """argv for `adapter-engine train` with the job's settings (written to `settings_file`, the
    run filed under this runs directory), or `--resume RUN_DIR` to continue the job's run (an
    extraction job: `adapter-engine extract` with its options). A job spanning several GPUs runs
    under torchrun. Raises UserInputError for settings that do not hold (the job then fails with
    that line)."""
    if job.settings.get("kind") == JOB_KIND:  # an extraction: run again, it resumes by itself
        options = ExtractOptions.from_dict(job.settings.get("options"))
        return [sys.executable, "-m", "engine", "extract", *options.as_argv()]
    if job.settings.get("kind") == SPECULATE_KIND:  # a measurement: run again from the start
        speculation = SpeculateOptions.from_dict(job.settings.get("options"))
        return [sys.executable, "-m", "engine", "speculate", *speculation.as_argv()]
    argv = torchrun_command(job.nproc, ["train"]) if job.nproc > 1 else [sys.executable, "-m", "engine", "train"]
    if job.resume and job.run_dir:
        return argv + ["--resume", job.run_dir]
    settings = replace(settings_of(job), output_dir=str(runs_dir), layout="levels")
    path = settings_file(runs_dir, job.id)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, settings.as_dict())
    return argv + ["--settings", str(path)]


def parse_gpus(gpus: str | None) -> list[str] | None:
    """'0,1' -> ['0', '1']; None -> None (CPU: one job at a time)."""
    if gpus is None:
        return None
    ids = [g.strip() for g in gpus.split(",") if g.strip()]
    if not ids or not all(g.isdigit() for g in ids):
        raise UserInputError(f"--gpus {gpus!r} must be a comma-separated list of GPU indices, e.g. 0,1")
    if len(set(ids)) != len(ids):
        raise UserInputError(f"--gpus {gpus!r} lists a GPU twice")
    return ids


def last_line(path: Path, limit: int = 500) -> str | None:
    """The last non-empty line of a log file (its tail only), or None."""
    try:
        with open_regular(path) as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 16384))
            tail = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return None
    lines = [line.strip() for line in tail.splitlines() if line.strip() and not line.startswith("=== ")]
    return lines[-1][:limit] if lines else None


STUDY_EVERY_S = 5.0  # how often optimizing sweeps are brought up to date


class WorkerAlreadyRunning(UserInputError):
    pass


def acquire_lock(runs_dir: Path, wait_s: float = 5.0) -> int:
    """Take runs_dir/worker.lock (exclusive flock, held for the worker's life). If another
    worker holds it, raise WorkerAlreadyRunning, after waiting up to `wait_s` for one that is
    stopping or still starting."""
    path = runs_dir / WORKER_LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + wait_s
    queue = JobQueue(runs_dir)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                status = queue.worker_status()
                if status.unresponsive:
                    os.close(fd)
                    raise WorkerAlreadyRunning(status.unresponsive_text()) from None
                if status.alive or time.monotonic() > deadline:
                    os.close(fd)
                    who = f" (pid {status.pid} on {status.host})" if status.alive else ""
                    raise WorkerAlreadyRunning(f"a queue worker is already running for {runs_dir}{who}; "
                                               "it will run the queued jobs (`adapter-engine queue status`)") from None
                time.sleep(0.1)
    finally:
        queue.close()
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


@dataclass
class _Child:
    job: Job
    pid: int
    slots: list[str]
    log: Path
    run_dir_file: Path
    proc: subprocess.Popen | None = None  # None: adopted from a worker that died
    run_dir: str | None = None
    term_sent_at: float | None = None
    killed: bool = False


class Worker:
    """Runs the queue of `runs_dir` until stopped (SIGTERM/SIGINT) or, with `exit_when_idle`,
    until nothing is queued or running. `command_for(job, runs_dir)` builds the child's argv
    (the real trainer by default; tests pass a stand-in)."""

    backend = "local"  # engine.queue.slurm_worker.SlurmWorker runs the jobs on Slurm instead
    cluster: str | None = None

    def __init__(self, runs_dir: str | os.PathLike, gpus: str | None = None, *, exit_when_idle: bool = False,
                 poll_interval: float = 1.0, grace_s: float = STOP_GRACE_S, heartbeat_s: float = 2.0,
                 recover_every_s: float = 10.0, command_for: CommandFor = trainer_command,
                 detached: bool = False, out: TextIO | None = None) -> None:
        self.runs_dir = Path(runs_dir).absolute()
        self.gpus = parse_gpus(gpus)
        self.slots = self.gpus or [CPU_SLOT]
        self.exit_when_idle = exit_when_idle
        if not poll_interval > 0 or not grace_s >= 0:
            raise UserInputError("--poll-interval must be > 0 and --grace >= 0")
        self.poll_interval = poll_interval
        self.grace_s = grace_s
        self.heartbeat_s = heartbeat_s
        self.recover_every_s = recover_every_s
        self.command_for = command_for
        self.detached = detached
        self.out = out or sys.stdout
        self.pid = os.getpid()
        self.children: dict[int, _Child] = {}
        self._stop_signal: int | None = None
        self.queue: JobQueue | None = None

    # -- plumbing -----------------------------------------------------------------------------

    def log(self, message: str) -> None:
        try:
            print(f"{now_iso()} {message}", file=self.out, flush=True)
        except (OSError, ValueError):
            pass

    def _on_signal(self, signum: int, frame: object) -> None:
        self._stop_signal = signum

    def _install_signals(self) -> dict:
        """SIGTERM/SIGINT stop the worker cleanly; a detached one ignores SIGHUP. Returns the
        previous handlers (restored when run() returns)."""
        if threading.current_thread() is not threading.main_thread():
            return {}
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        if self.detached:
            previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, signal.SIG_IGN)
        return previous

    def _used_slots(self) -> set[str]:
        return {slot for child in self.children.values() for slot in child.slots}

    def _free_slots(self) -> list[str]:
        used = self._used_slots()
        return [slot for slot in self.slots if slot not in used]

    # -- the loop -----------------------------------------------------------------------------

    def run(self) -> int:
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        lock_fd = acquire_lock(self.runs_dir)
        self.queue = q = JobQueue(self.runs_dir)
        previous_handlers = self._install_signals()
        gpus = ",".join(self.gpus) if self.gpus else None
        try:
            q.heartbeat(self.pid, gpus, starting=True)
            q.set_backend(self.pid, self.backend, self.cluster)
            self.log(f"worker started: pid {self.pid}, runs {self.runs_dir}, {self.describe()}")
            self._recover()
            last_beat = last_recover = time.monotonic()
            last_study = 0.0
            while True:
                now = time.monotonic()
                if now - last_beat >= self.heartbeat_s:
                    q.heartbeat(self.pid, gpu_stats=self._gpu_stats())
                    last_beat = now
                running = len(self.children)
                self._poll_children()
                if self._stop_signal is not None:
                    self._shutdown()
                    break
                self._handle_cancels()
                if now - last_recover >= self.recover_every_s:
                    self._recover()
                    last_recover = now
                if now - last_study >= STUDY_EVERY_S or len(self.children) < running:  # a trial may have ended
                    self._advance_studies()
                    last_study = now
                self._start_jobs()
                if self.exit_when_idle and not self.children and self._advance_studies() == [] \
                        and q.stop_if_idle(self.pid):
                    self.log("queue is empty; worker exits (--exit-when-idle)")
                    break
                time.sleep(self.poll_interval)
        finally:
            try:
                q.worker_stopped(self.pid)
            finally:
                q.close()
                os.close(lock_fd)
                for sig, handler in previous_handlers.items():
                    signal.signal(sig, handler)
        return 0

    def describe(self) -> str:
        return f"GPUs {','.join(self.gpus)}" if self.gpus else "CPU, one job at a time"

    def _gpu_stats(self) -> list[dict] | None:
        """Each of the worker's GPUs' use (NVML), for the app's Queue tab; None without NVML."""
        from engine.system import gpus_sample

        indices = [int(g) for g in self.gpus or [] if g.isdigit()]
        return gpus_sample(indices) or None if indices else None

    def _advance_studies(self) -> list[int]:
        """Optimizing sweeps: report, prune, tell and queue their next trials."""
        from engine.queue.study import advance_studies

        opened = advance_studies(self.runs_dir, self.queue)
        if opened:
            self.log(f"sweep trial {'job' if len(opened) == 1 else 'jobs'} {', '.join(map(str, opened))} queued")
        return opened

    def _recover(self) -> None:
        q = self.queue
        for job_id in q.recover(skip=set(self.children)):
            job = q.get(job_id)
            self.log(f"job {job_id} ({job.level}) found {job.state}: {job.error}")
        for job in q.orphans():
            if job.id in self.children:
                continue
            free = self._free_slots()
            taken = [g for g in (job.gpus or "").split(",") if g in free] if self.gpus else free[:1]
            q.adopt(job.id, self.pid)
            logs = self.runs_dir / JOB_LOGS
            child = _Child(job=job, pid=job.pid, slots=taken, log=logs / f"job_{job.id}.log",
                           run_dir_file=logs / f"job_{job.id}.rundir", run_dir=job.run_dir)
            self.children[job.id] = child
            self.log(f"job {job.id} ({job.level}) adopted: its trainer pid {job.pid} outlived the previous worker")

    def _start_jobs(self) -> None:
        while self._stop_signal is None:
            free = self._free_slots()
            gpus_for = (lambda n, free=free: ",".join(free[:n])) if self.gpus else None
            job = self.queue.claim_next(self.pid, len(free), len(self.slots), gpus_for)
            if job is None:
                return
            self._spawn(job, free[:job.nproc])

    def _spawn(self, job: Job, slots: list[str]) -> None:
        q = self.queue
        logs = self.runs_dir / JOB_LOGS
        logs.mkdir(exist_ok=True)
        log = logs / f"job_{job.id}.log"
        run_dir_file = logs / f"job_{job.id}.rundir"
        run_dir_file.unlink(missing_ok=True)
        if job.nodes > 1:
            q.finish(job.id, "failed", None, f"the job spans {job.nodes} nodes; only a worker with --backend slurm "
                                             "runs it (retry it there)")
            self.log(f"job {job.id} ({job.level}) failed: it spans {job.nodes} nodes")
            return
        if job.resume and not (job.run_dir and Path(job.run_dir).is_dir()):
            q.finish(job.id, "failed", None, f"cannot resume: run directory {job.run_dir} is gone")
            self.log(f"job {job.id} ({job.level}) failed: run directory to resume is gone")
            return
        env = dict(os.environ)
        env[RUN_DIR_FILE_ENV] = str(run_dir_file)
        env["PYTHONUNBUFFERED"] = "1"
        gpus = ",".join(slots) if self.gpus else None
        if gpus is not None:
            env["CUDA_VISIBLE_DEVICES"] = gpus
        try:
            argv = self.command_for(job, self.runs_dir)
            with open(log, "ab") as handle:
                handle.write(f"=== {now_iso()} job {job.id} attempt {job.attempts}: {shlex.join(argv)}\n".encode())
                handle.flush()
                proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT,
                                        start_new_session=True, env=env)
        except (OSError, ValueError, UserInputError) as exc:
            q.finish(job.id, "failed", None, f"cannot start the trainer: {exc}")
            self.log(f"job {job.id} ({job.level}) failed to start: {exc}")
            return
        q.set_started(job.id, proc.pid, gpus)
        self.children[job.id] = _Child(job=job, pid=proc.pid, slots=slots, log=log, run_dir_file=run_dir_file,
                                       proc=proc, run_dir=job.run_dir if job.resume else None)
        self.log(f"job {job.id} ({job.level}) started: pid {proc.pid}"
                 + (f", CUDA_VISIBLE_DEVICES={gpus}" if gpus else "") + f", log {log}")

    def _read_run_dir(self, child: _Child) -> None:
        if child.run_dir is not None:
            return
        try:
            text = child.run_dir_file.read_text(encoding="utf-8").strip()
        except OSError:
            return
        if not text:
            return
        path = Path(text)
        if not path.is_absolute():
            path = self.runs_dir / path
        if path.is_dir():
            child.run_dir = str(path)
            self.queue.set_run_dir(child.job.id, child.run_dir)

    def _poll_children(self) -> None:
        for child in list(self.children.values()):
            self._read_run_dir(child)
            if child.proc is not None:
                code = child.proc.poll()
                if code is None:
                    continue
            else:
                if is_running(child.pid, child.job.pid_start):  # adopted: not its parent, so no exit code
                    continue
                code = None
            self._finish(child, code)

    def _handle_cancels(self) -> None:
        now = time.monotonic()
        for job_id in self.queue.cancel_requests(list(self.children)):
            child = self.children[job_id]
            if child.term_sent_at is None:
                self.log(f"job {job_id} ({child.job.level}) cancel: SIGTERM to process group {child.pid}")
                terminate_group(child.pid)
                child.term_sent_at = now
        self._kill_overdue(now)

    def _kill_overdue(self, now: float) -> None:
        for child in self.children.values():
            if child.term_sent_at is not None and not child.killed and now - child.term_sent_at > self.grace_s:
                self.log(f"job {child.job.id} ({child.job.level}) still running {self.grace_s:g} s after SIGTERM: SIGKILL")
                terminate_group(child.pid, kill=True)
                child.killed = True

    def _shutdown(self) -> None:
        name = signal.Signals(self._stop_signal).name
        self.log(f"{name} received: cancelling {plural(len(self.children), 'running job')}, then exiting")
        start = time.monotonic()
        for child in self.children.values():
            if child.term_sent_at is None:
                terminate_group(child.pid)
                child.term_sent_at = start
        while self.children:
            self.queue.heartbeat(self.pid)
            self._poll_children()
            self._kill_overdue(time.monotonic())
            if self.children:
                time.sleep(min(self.poll_interval, 0.2))

    # -- outcome ------------------------------------------------------------------------------

    def _finish(self, child: _Child, code: int | None) -> None:
        """Set the job's state from the run's status.json, else from the exit code."""
        job = child.job
        self._read_run_dir(child)
        status: dict = {}
        if child.run_dir:
            try:
                data = read_json(status_path(child.run_dir))
                status = data if isinstance(data, dict) else {}
            except ReadError:
                status = {}
        cancelled = child.term_sent_at is not None or bool(self.queue.cancel_requests([job.id]))
        raw = status.get("state")
        error = status.get("error") if isinstance(status.get("error"), str) else None
        if raw in FINISHED:
            state = raw
        elif cancelled and (code is None or code != 0 or child.killed):
            state = "cancelled"
        elif code is None or code < 0:
            state = "interrupted"
        else:
            state = EXIT_STATES.get(code, "failed")
        if state == "cancelled" and not error:
            error = ("killed after the grace period" if child.killed
                     else "stopped with the queue worker" if self._stop_signal is not None else None)
        if state in ("failed", "diverged", "interrupted") and not error:
            if code is not None and code < 0:
                error = f"trainer killed by {signal.Signals(-code).name}"
            else:
                error = last_line(child.log) or (f"trainer exited with code {code}" if code is not None
                                                 else "trainer process gone")
        if raw == "running" or (child.run_dir and raw is None and state != "done"):
            close_status(child.run_dir, state, error)
        self.queue.finish(job.id, state, code, error, child.run_dir)
        child.run_dir_file.unlink(missing_ok=True)
        del self.children[job.id]
        self.log(f"job {job.id} ({job.level}) {state}" + (f" (exit {code})" if code is not None else "")
                 + (f": {error}" if error and state != "done" else "")
                 + (f" run {child.run_dir}" if child.run_dir else ""))

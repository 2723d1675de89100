"""What happens to a job: claimed by the worker, started, finished, cancelled, retried, and
recovered when its process is gone (a job then ends as its run says it ended). Every pid is
checked with its process's start before it is trusted, adopted or signalled (engine.process).
The worker's own row (alive, heartbeat) is here too. Torch-free."""

from __future__ import annotations

import json

import sqlite3
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from common.errors import UserInputError
from engine.process import is_running, start_of, terminate_group
from engine.queue.storage import Job, QueueStore
from engine.rundir.layout import LAST
from engine.rundir.states import RETRYABLE, STALE_AFTER_S, STATES, STOP_GRACE_S, age_s, now_iso
from engine.rundir.status import close_status, final_state

# Slurm states that end a job the cluster stopped (a time limit, a preemption, a lost node): a
# retry continues its run from last.pt.
RESUME_ON_RETRY = ("TIMEOUT", "PREEMPTED", "NODE_FAIL")


@dataclass
class WorkerStatus:
    alive: bool
    pid: int | None = None
    host: str | None = None
    heartbeat: str | None = None
    running: list[int] = field(default_factory=list)
    started_at: str | None = None
    gpus: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    pid_start: str | None = None
    gpu_stats: list[dict] = field(default_factory=list)  # each GPU's use at the last heartbeat (NVML)
    backend: str | None = None  # "local" or "slurm" (None: a worker from before backends)
    cluster: str | None = None  # the Slurm cluster's name
    # Its process is there (this host) but its heartbeat stopped: SIGSTOPped, or hung. Not alive,
    # and no other worker may start beside it.
    unresponsive: bool = False

    def unresponsive_text(self) -> str:
        return (f"the queue worker (pid {self.pid}) is alive but not responding since its last heartbeat at "
                f"{self.heartbeat}: resume it (kill -CONT {self.pid}) or stop it (`adapter-engine queue worker "
                "--stop`)")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _stats(text: str | None) -> list[dict]:
    try:
        stats = json.loads(text) if text else []
    except ValueError:
        return []
    return [s for s in stats if isinstance(s, dict)] if isinstance(stats, list) else []


class JobQueue(QueueStore):
    """The queue of a runs directory: its jobs (QueueStore) and what happens to them."""

    def retry(self, job_id: int, resume: bool = False, front: bool = False) -> int:
        """Put a failed/cancelled/interrupted/diverged job back in the queue (same id). With
        `resume`, the trainer continues the job's run directory from last.pt."""
        job_id = self._id(job_id)
        with self._tx() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                raise UserInputError(f"no job {job_id}; `adapter-engine queue ls` lists them")
            if row["state"] not in RETRYABLE:
                raise UserInputError(f"job {job_id} is {row['state']}; only {', '.join(RETRYABLE)} jobs can be retried")
            has_last = bool(row["run_dir"]) and (Path(row["run_dir"]) / LAST).is_file()
            if row["slurm_state"] in RESUME_ON_RETRY and has_last:
                resume = True  # stopped by the cluster, not by its own doing: never start it over
            if resume and not has_last:
                where = row["run_dir"] or "no run directory"
                raise UserInputError(f"job {job_id} cannot resume: {where} has no {LAST}; retry without --resume")
            lo, hi = db.execute("SELECT MIN(position), MAX(position) FROM jobs WHERE state = 'queued'").fetchone()
            position = ((lo if lo is not None else 1) - 1) if front else ((hi if hi is not None else 0) + 1)
            db.execute(
                "UPDATE jobs SET state = 'queued', position = ?, resume = ?, run_dir = ?, pid = NULL, host = NULL, "
                "worker_pid = NULL, started_at = NULL, finished_at = NULL, exit_code = NULL, error = NULL, "
                "gpus = NULL, cancel_requested_at = NULL, slurm_id = NULL, slurm_state = NULL, slurm_node = NULL "
                "WHERE id = ?",
                (position, int(resume), row["run_dir"] if resume else None, job_id))
        return job_id

    # -- cancelling ---------------------------------------------------------------------------

    def cancel(self, ids: list[int], *, wait: bool = False, grace_s: float = STOP_GRACE_S) -> None:
        """Queued -> cancelled at once. Running -> flagged; the worker sends SIGTERM to the
        trainer's process group and SIGKILL after its grace period. When no worker watches the
        job (it died), this call signals the trainer itself. With `wait`, block until every
        job has ended, escalating to SIGKILL after `grace_s`."""
        ids = [self._id(i) for i in ids]
        for job_id in ids:
            self.get(job_id)  # unknown ids refuse the call before anything changes
        now = now_iso()
        signal_here: list[tuple[int, int]] = []
        on_slurm: list[str] = []
        worker = self.worker_status()
        with self._tx() as db:
            for job_id in ids:
                row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
                if row["state"] == "queued":
                    db.execute("UPDATE jobs SET state = 'cancelled', position = NULL, finished_at = ?, "
                               "error = 'cancelled before it started' WHERE id = ?", (now, job_id))
                elif row["state"] == "running":
                    if row["cancel_requested_at"] is None:
                        db.execute("UPDATE jobs SET cancel_requested_at = ? WHERE id = ?", (now, job_id))
                    if row["slurm_id"]:  # the cluster stops it: scancel here, the worker records the end
                        on_slurm.append(row["slurm_id"])
                        if not worker.alive:
                            self._finish_gone(db, row, "cancelled", "cancelled with scancel")
                    elif row["host"] == self.host and not self._process_alive(row):
                        self._finish_gone(db, row, "cancelled", "cancelled (its process was already gone)")
                    elif row["host"] == self.host and row["pid"] and not (worker.alive and worker.host == self.host):
                        signal_here.append((job_id, row["pid"]))
        for _, pid in signal_here:
            terminate_group(pid, kill=False)
        if on_slurm:
            from engine.queue.slurm import scancel

            scancel(on_slurm)
            if not worker.alive:  # no worker will hear Slurm say so: record it here
                marks = ", ".join("?" for _ in on_slurm)
                with self._tx() as db:
                    db.execute(f"UPDATE jobs SET slurm_state = 'CANCELLED' WHERE state = 'cancelled' "
                               f"AND slurm_id IN ({marks})", tuple(on_slurm))
        if wait:
            self.wait_ended(ids, grace_s=grace_s)

    def wait_ended(self, ids: list[int], grace_s: float = STOP_GRACE_S, timeout_s: float | None = None) -> None:
        """Block until none of `ids` is running; SIGKILL (same host) what outlives `grace_s`."""
        start = time.monotonic()
        killed: set[int] = set()
        while True:
            self.recover()
            running = [j for j in (self.get(i) for i in ids) if j.state == "running"]
            if not running:
                return
            elapsed = time.monotonic() - start
            if timeout_s is not None and elapsed > timeout_s:
                raise UserInputError(f"job(s) {', '.join(str(j.id) for j in running)} still running after "
                                     f"{timeout_s:.0f} s")
            if elapsed > grace_s:
                for job in running:
                    if job.host == self.host and job.pid and job.id not in killed:
                        terminate_group(job.pid, kill=True)
                        killed.add(job.id)
            time.sleep(0.2)

    def _process_alive(self, row: sqlite3.Row) -> bool:
        """Whether the job's trainer (or, before it started, its worker) is still that process.
        Only meaningful on the job's host."""
        if row["pid"]:
            return is_running(row["pid"], row["pid_start"])
        return is_running(row["worker_pid"], row["worker_pid_start"])

    def _finish_gone(self, db: sqlite3.Connection, row: sqlite3.Row, state: str, error: str) -> None:
        """A job whose process is gone ends as its run says it ended (a trainer can finish after
        its worker died), else as `state`, which its run's status.json then says too."""
        final = final_state(row["run_dir"])
        if final is not None:
            state, error = final
        else:
            close_status(row["run_dir"], state, error)
        db.execute("UPDATE jobs SET state = ?, finished_at = ?, error = ? WHERE id = ?",
                   (state, now_iso(), error if state != "done" else None, row["id"]))

    def recover(self, skip: set[int] | frozenset[int] = frozenset()) -> list[int]:
        """A `running` job on this host whose process is gone becomes `interrupted` (or
        `cancelled`, if a cancel was asked for), and so does its run's status.json. Jobs in
        `skip` (the caller's own children) are left alone. Returns the ids changed."""
        changed = []
        with self._tx() as db:
            # A job on Slurm has no process here: the cluster runs it, a Slurm worker follows it.
            rows = db.execute("SELECT * FROM jobs WHERE state = 'running' AND host = ? AND slurm_id IS NULL",
                              (self.host,)).fetchall()
            for row in rows:
                if row["id"] in skip or self._process_alive(row):
                    continue
                if row["cancel_requested_at"] is not None:
                    self._finish_gone(db, row, "cancelled", "cancelled")
                else:
                    self._finish_gone(db, row, "interrupted", "the trainer process is gone (worker died or it was killed)")
                changed.append(row["id"])
        return changed

    # -- the worker's side --------------------------------------------------------------------

    def claim_next(self, worker_pid: int, free_slots: int, total_slots: int,
                   gpus_for: Callable[[int], str | None] | None = None) -> Job | None:
        """Atomically take the head of the queue for this worker, if it fits in `free_slots`.
        A job asking for more slots than the worker has at all is failed with a message.
        `gpus_for(nproc)` names the GPUs the job gets (recorded in the same transaction)."""
        with self._tx() as db:
            while True:
                row = db.execute("SELECT * FROM jobs WHERE state = 'queued' ORDER BY position, id LIMIT 1").fetchone()
                if row is None:
                    return None
                if row["nproc"] > total_slots:
                    db.execute("UPDATE jobs SET state = 'failed', position = NULL, finished_at = ?, error = ? WHERE id = ?",
                               (now_iso(), f"job asks for {row['nproc']} GPUs but the worker has {total_slots} "
                                           "slot(s); start the worker with --gpus listing enough GPUs", row["id"]))
                    continue
                if row["nproc"] > free_slots:
                    return None
                gpus = gpus_for(row["nproc"]) if gpus_for else None
                db.execute("UPDATE jobs SET state = 'running', position = NULL, host = ?, worker_pid = ?, "
                           "worker_pid_start = ?, pid = NULL, pid_start = NULL, gpus = ?, started_at = ?, "
                           "finished_at = NULL, exit_code = NULL, error = NULL, attempts = attempts + 1 "
                           "WHERE id = ? AND state = 'queued'",
                           (self.host, worker_pid, start_of(worker_pid), gpus, now_iso(), row["id"]))
                row = db.execute("SELECT * FROM jobs WHERE id = ?", (row["id"],)).fetchone()
                return self._job(row)

    def set_started(self, job_id: int, pid: int, gpus: str | None) -> None:
        with self._tx() as db:
            db.execute("UPDATE jobs SET pid = ?, pid_start = ?, gpus = ? WHERE id = ?",
                       (pid, start_of(pid), gpus, job_id))

    def set_slurm(self, job_id: int, slurm_id: str, state: str | None, node: str | None) -> None:
        """What Slurm says of a job: its id once submitted, then its state and node."""
        with self._tx() as db:
            db.execute("UPDATE jobs SET slurm_id = ?, slurm_state = ?, slurm_node = COALESCE(?, slurm_node) "
                       "WHERE id = ?", (slurm_id, state, node or None, job_id))

    def on_slurm(self) -> list[Job]:
        """Running jobs submitted to Slurm (a new Slurm worker follows those of one that died)."""
        return [self._job(r) for r in self._rows("SELECT * FROM jobs WHERE state = 'running' AND slurm_id IS NOT NULL")]

    def set_run_dir(self, job_id: int, run_dir: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE jobs SET run_dir = ? WHERE id = ?", (run_dir, job_id))

    def finish(self, job_id: int, state: str, exit_code: int | None, error: str | None,
               run_dir: str | None = None) -> None:
        if state not in STATES:
            raise ValueError(f"unknown state {state!r}")
        with self._tx() as db:
            db.execute("UPDATE jobs SET state = ?, exit_code = ?, error = ?, finished_at = ?, "
                       "run_dir = COALESCE(?, run_dir), position = NULL WHERE id = ?",
                       (state, exit_code, error, now_iso(), run_dir, job_id))

    def cancel_requests(self, ids: list[int]) -> list[int]:
        """Which of `ids` (running jobs) have a cancel request."""
        if not ids:
            return []
        marks = ", ".join("?" for _ in ids)
        return [r[0] for r in self._rows(f"SELECT id FROM jobs WHERE id IN ({marks}) AND state = 'running' "
                                         "AND cancel_requested_at IS NOT NULL", tuple(ids))]

    def orphans(self) -> list[Job]:
        """Running jobs on this host whose trainer is alive. Those a worker does not already
        watch outlived the worker that started them; the new worker adopts them."""
        rows = self._rows("SELECT * FROM jobs WHERE state = 'running' AND host = ? AND pid IS NOT NULL", (self.host,))
        return [self._job(r) for r in rows if is_running(r["pid"], r["pid_start"])]

    def adopt(self, job_id: int, worker_pid: int) -> None:
        with self._tx() as db:
            db.execute("UPDATE jobs SET worker_pid = ? WHERE id = ?", (worker_pid, job_id))

    def heartbeat(self, pid: int, gpus: str | None = None, *, starting: bool = False,
                  gpu_stats: list[dict] | None = None) -> None:
        now = now_iso()
        stats = json.dumps(gpu_stats) if gpu_stats else None
        with self._tx() as db:
            if starting:
                db.execute("INSERT OR REPLACE INTO worker (id, pid, pid_start, host, gpus, started_at, heartbeat, "
                           "stopped_at, gpu_stats) VALUES (1, ?, ?, ?, ?, ?, ?, NULL, ?)",
                           (pid, start_of(pid), self.host, gpus, now, now, stats))
            else:
                db.execute("UPDATE worker SET heartbeat = ?, gpu_stats = ? WHERE id = 1 AND pid = ? AND host = ?",
                           (now, stats, pid, self.host))

    def set_backend(self, pid: int, backend: str, cluster: str | None) -> None:
        with self._tx() as db:
            db.execute("UPDATE worker SET backend = ?, cluster = ? WHERE id = 1 AND pid = ? AND host = ?",
                       (backend, cluster, pid, self.host))

    def stop_if_idle(self, pid: int) -> bool:
        """Mark the worker stopped if no job is queued, in one transaction with that check, so
        a job added at the same moment is never left without a worker."""
        with self._tx() as db:
            if db.execute("SELECT COUNT(*) FROM jobs WHERE state = 'queued'").fetchone()[0]:
                return False
            db.execute("UPDATE worker SET stopped_at = ? WHERE id = 1 AND pid = ? AND host = ?",
                       (now_iso(), pid, self.host))
            return True

    def worker_stopped(self, pid: int) -> None:
        with self._tx() as db:
            db.execute("UPDATE worker SET stopped_at = ? WHERE id = 1 AND pid = ? AND host = ?",
                       (now_iso(), pid, self.host))

    def worker_status(self) -> WorkerStatus:
        """Alive: not stopped, heartbeat fresh and, on this host, the process exists."""
        rows = self._rows("SELECT * FROM worker WHERE id = 1")
        running = [r[0] for r in self._rows("SELECT id FROM jobs WHERE state = 'running' ORDER BY started_at, id")]
        counts = self.counts()
        if not rows:
            return WorkerStatus(alive=False, running=running, counts=counts)
        row = rows[0]
        age = age_s(row["heartbeat"])
        exists = row["host"] == self.host and is_running(row["pid"], row["pid_start"])
        alive = (row["stopped_at"] is None and age is not None and age < STALE_AFTER_S
                 and (row["host"] != self.host or exists))
        return WorkerStatus(alive=alive, unresponsive=not alive and row["stopped_at"] is None and exists,
                            pid=row["pid"], host=row["host"], heartbeat=row["heartbeat"],
                            running=running, started_at=row["started_at"], gpus=row["gpus"], counts=counts,
                            pid_start=row["pid_start"], gpu_stats=_stats(row["gpu_stats"]),
                            backend=row["backend"], cluster=row["cluster"])

"""runs/queue.db: the persistent job queue (SPEC §8). Torch-free; used by the CLI, the worker
and the TUI.

SQLite in WAL mode. Every write is one short `BEGIN IMMEDIATE` transaction, so any number of
processes (TUIs, CLIs, the worker) can add, claim and update jobs at the same time without
losing or double-running one. The schema is versioned with `PRAGMA user_version`; opening an
older database migrates it in place, opening a newer one is refused with a clear message.

Job order (`JobQueue.jobs()`): queued jobs by position (the head runs next), then running jobs
by start time, then finished jobs newest first.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator

from common.errors import UserInputError
from common.names import is_safe_name
from common.fileio import ReadError, read_json, write_json
from engine.process import is_running, start_of
from engine.rundir import FINISHED, LAST, STATUS, now_iso

DB_NAME = "queue.db"
STATES = ("queued", "running", "done", "failed", "cancelled", "diverged", "interrupted")
RETRYABLE = ("failed", "cancelled", "interrupted", "diverged")
HEARTBEAT_STALE_S = 30.0
BUSY_TIMEOUT_MS = 30_000
FLAG_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
# Set by the queue itself, never by a job's args.
RESERVED_ARGS = ("level", "output_dir", "runs", "resume", "config")

# Migration i takes the schema from version i to i + 1. Append, never edit.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE jobs (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        level         TEXT    NOT NULL,
        dataset       TEXT,
        args          TEXT    NOT NULL,           -- JSON object: train flags without dashes
        state         TEXT    NOT NULL DEFAULT 'queued',
        position      INTEGER,                    -- order among queued jobs (lower runs first)
        run_dir       TEXT,
        pid           INTEGER,                    -- trainer pid = its process group id
        host          TEXT,
        worker_pid    INTEGER,                    -- worker that claimed the job
        created_at    TEXT    NOT NULL,
        started_at    TEXT,
        finished_at   TEXT,
        exit_code     INTEGER,
        error         TEXT,
        nproc         INTEGER NOT NULL DEFAULT 1,  -- processes (GPUs) the job spans
        gpus          TEXT,                       -- CUDA_VISIBLE_DEVICES given to the job
        resume        INTEGER NOT NULL DEFAULT 0,  -- next start continues run_dir from last.pt
        attempts      INTEGER NOT NULL DEFAULT 0,
        cancel_requested_at TEXT,
        config        TEXT                        -- adapters.toml the job was planned with
    );
    CREATE INDEX jobs_state_position ON jobs (state, position);
    CREATE TABLE worker (
        id          INTEGER PRIMARY KEY CHECK (id = 1),
        pid         INTEGER,
        host        TEXT,
        gpus        TEXT,
        started_at  TEXT,
        heartbeat   TEXT,
        stopped_at  TEXT
    );
    """,
    # Each pid with its process's start (engine.process), so a reused pid is never trusted or signalled.
    """
    ALTER TABLE jobs ADD COLUMN pid_start TEXT;
    ALTER TABLE jobs ADD COLUMN worker_pid_start TEXT;
    ALTER TABLE worker ADD COLUMN pid_start TEXT;
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)



@dataclass
class Job:
    """One row of the queue. `position` is the 1-based place among queued jobs (None otherwise)."""

    id: int
    level: str
    dataset: str | None
    args: dict[str, Any]
    state: str
    position: int | None
    run_dir: str | None
    pid: int | None
    host: str | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    exit_code: int | None
    error: str | None
    nproc: int = 1
    gpus: str | None = None
    resume: bool = False
    attempts: int = 0
    cancel_requested: bool = False
    worker_pid: int | None = None
    config: str | None = None
    pid_start: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


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

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def age_s(stamp: str | None) -> float | None:
    try:
        return (datetime.now().astimezone() - datetime.fromisoformat(str(stamp))).total_seconds()
    except (TypeError, ValueError):
        return None


def check_args(args: Any) -> dict[str, Any]:
    """Job args are train flags without dashes; values are JSON scalars (True = bare flag,
    None/False = omitted) or lists of scalars."""
    if not isinstance(args, dict):
        raise UserInputError(f"job args must be a dict of train flags, got {type(args).__name__}")
    scalar = (str, int, float, bool, type(None))
    for key, value in args.items():
        if not isinstance(key, str) or not FLAG_NAME.match(key):
            raise UserInputError(f"job arg {key!r} is not a flag name (lower-case letters, digits and '_')")
        if key in RESERVED_ARGS:
            raise UserInputError(f"job arg {key!r} is set by the queue; leave it out")
        if isinstance(value, list):
            if not all(isinstance(v, scalar) and v is not None for v in value):
                raise UserInputError(f"job arg {key!r}: a list may hold only strings and numbers")
        elif not isinstance(value, scalar):
            raise UserInputError(f"job arg {key!r} has a value of type {type(value).__name__}; "
                                 "use a string, number, boolean or null")
        if isinstance(value, float) and value != value:
            raise UserInputError(f"job arg {key!r} is NaN")
    return dict(args)


def _check_level(level: Any) -> str:
    if not isinstance(level, str) or not is_safe_name(level):
        raise UserInputError(f"level {level!r} is not a safe level key (letters, digits, '_' and '-')")
    return level


def _check_nproc(nproc: Any) -> int:
    if not isinstance(nproc, int) or isinstance(nproc, bool) or nproc < 1:
        raise UserInputError(f"nproc must be an integer >= 1, got {nproc!r}")
    return nproc


def _busy(exc: sqlite3.Error) -> bool:
    return "locked" in str(exc) or "busy" in str(exc)


def database_problem(path: Path, exc: sqlite3.Error) -> str:
    """One line saying what is wrong with queue.db, and what to do."""
    text = str(exc)
    if "not a database" in text or isinstance(exc, sqlite3.DatabaseError) and "malformed" in text:
        return f"{path} is not a queue database ({text}); move it aside and the queue starts empty"
    if "full" in text:
        return f"cannot write {path}: the disk is full; free some space"
    if "readonly" in text or "read-only" in text:
        return f"cannot write {path}: it is read-only"
    return f"cannot use {path}: {text}"


def run_final_state(run_dir: str | None) -> tuple[str, str | None] | None:
    """(state, error) when the run's status.json says it ended, else None."""
    if not run_dir:
        return None
    try:
        status = read_json(Path(run_dir) / STATUS)
    except ReadError:
        return None
    if not isinstance(status, dict) or status.get("state") not in FINISHED:
        return None
    error = status.get("error")
    return status["state"], error if isinstance(error, str) else None


def mark_run_status(run_dir: str | None, state: str, error: str | None = None) -> bool:
    """If run_dir/status.json still says `running`, rewrite it (atomically) with `state`.
    Returns whether it was rewritten. Never raises for a missing or broken file."""
    if not run_dir:
        return False
    path = Path(run_dir) / STATUS
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


class JobQueue:
    """The queue in `runs_dir/queue.db` (created on first use). Safe to share between threads."""

    def __init__(self, runs_dir: str | os.PathLike) -> None:
        self.runs_dir = Path(runs_dir).absolute()
        if self.runs_dir.exists() and not self.runs_dir.is_dir():
            raise UserInputError(f"runs directory {self.runs_dir} is not a directory")
        try:
            self.runs_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserInputError(f"cannot create runs directory {self.runs_dir}: {exc.strerror}") from None
        self.path = self.runs_dir / DB_NAME
        self.host = socket.gethostname()
        self._lock = threading.RLock()
        if self.path.exists() and not self.path.is_file():
            raise UserInputError(f"{self.path} is not a regular file; move it aside and the queue starts empty")
        try:
            self._db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                                       check_same_thread=False)
            self._db.row_factory = sqlite3.Row
            self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self._set_wal()
            self._migrate()
        except sqlite3.Error as exc:
            raise UserInputError(database_problem(self.path, exc)) from None

    # -- connection ---------------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> "JobQueue":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _set_wal(self) -> None:
        # Switching to WAL needs a moment of exclusive access; another process opening the
        # database at the same instant can make it fail once (busy). It is persistent once set.
        for attempt in range(50):
            try:
                mode = self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() == "wal":
                    return
            except sqlite3.OperationalError as exc:
                if not _busy(exc):  # a full disk, a read-only file...: say so at once
                    raise
            time.sleep(0.05 * (attempt + 1))
        raise UserInputError(f"cannot switch {self.path} to WAL mode (is it on a network file system?)")

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken with BEGIN IMMEDIATE: writers queue up instead of
        failing, and a read-then-write inside cannot race another process."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                except BaseException:
                    if self._db.in_transaction:  # SQLite has rolled back already after a full disk
                        self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                if _busy(exc):
                    raise
                raise UserInputError(database_problem(self.path, exc)) from None

    def _migrate(self) -> None:
        with self._tx() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise UserInputError(f"{self.path} has schema version {version}, newer than this adapter-engine "
                                     f"understands ({SCHEMA_VERSION}); upgrade adapter-engine")
            for step in range(version, SCHEMA_VERSION):
                for statement in MIGRATIONS[step].split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version = {step + 1}")

    def schema_version(self) -> int:
        with self._lock:
            return self._db.execute("PRAGMA user_version").fetchone()[0]

    # -- reading ------------------------------------------------------------------------------

    @staticmethod
    def _job(row: sqlite3.Row, rank: int | None = None) -> Job:
        try:
            args = json.loads(row["args"])
        except (TypeError, ValueError):
            args = {}
        return Job(
            id=row["id"], level=row["level"], dataset=row["dataset"], args=args, state=row["state"],
            position=rank, run_dir=row["run_dir"], pid=row["pid"], host=row["host"],
            created_at=row["created_at"], started_at=row["started_at"], finished_at=row["finished_at"],
            exit_code=row["exit_code"], error=row["error"], nproc=row["nproc"], gpus=row["gpus"],
            resume=bool(row["resume"]), attempts=row["attempts"],
            cancel_requested=row["cancel_requested_at"] is not None, worker_pid=row["worker_pid"],
            config=row["config"], pid_start=row["pid_start"],
        )

    def _rows(self, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def jobs(self) -> list[Job]:
        """Queued jobs by position, then running ones by start, then finished ones newest first."""
        queued = self._rows("SELECT * FROM jobs WHERE state = 'queued' ORDER BY position, id")
        running = self._rows("SELECT * FROM jobs WHERE state = 'running' ORDER BY started_at, id")
        finished = self._rows("SELECT * FROM jobs WHERE state NOT IN ('queued', 'running') "
                              "ORDER BY finished_at DESC, id DESC")
        return ([self._job(r, i + 1) for i, r in enumerate(queued)]
                + [self._job(r) for r in running] + [self._job(r) for r in finished])

    def get(self, job_id: int) -> Job:
        rows = self._rows("SELECT * FROM jobs WHERE id = ?", (self._id(job_id),))
        if not rows:
            raise UserInputError(f"no job {job_id} in {self.path}; `adapter-engine queue ls` lists them")
        row = rows[0]
        rank = None
        if row["state"] == "queued":
            rank = self._rows("SELECT COUNT(*) FROM jobs WHERE state = 'queued' AND (position < ? OR "
                              "(position = ? AND id <= ?))", (row["position"], row["position"], row["id"]))[0][0]
        return self._job(row, rank)

    @staticmethod
    def _id(job_id: Any) -> int:
        if isinstance(job_id, bool) or not isinstance(job_id, int):
            try:
                return int(str(job_id))
            except ValueError:
                raise UserInputError(f"job id {job_id!r} is not a number") from None
        return job_id

    def counts(self) -> dict[str, int]:
        return {r[0]: r[1] for r in self._rows("SELECT state, COUNT(*) FROM jobs GROUP BY state")}

    # -- adding and arranging -----------------------------------------------------------------

    def add(self, level: str, args: dict, *, front: bool = False, dataset: str | None = None,
            nproc: int = 1, config: str | None = None) -> int:
        """Queue one job at the end (or the head with `front`); returns its id."""
        return self.add_many([(level, args)], front=front, dataset=dataset, nproc=nproc, config=config)[0]

    def add_many(self, jobs: list[tuple[str, dict]], *, front: bool = False, dataset: str | None = None,
                 nproc: int = 1, config: str | None = None) -> list[int]:
        """Queue several jobs in one transaction, keeping their order; returns their ids."""
        checked = [(_check_level(level), check_args(args)) for level, args in jobs]
        nproc = _check_nproc(nproc)
        if dataset is not None and not isinstance(dataset, str):
            raise UserInputError(f"dataset must be a name or path string, got {type(dataset).__name__}")
        if config is not None:  # the worker may run elsewhere: pin the file the jobs were planned with
            if not Path(config).is_file():
                raise UserInputError(f"config {config} not found")
            config = str(Path(config).resolve())
        ids = []
        with self._tx() as db:
            lo, hi = db.execute("SELECT MIN(position), MAX(position) FROM jobs WHERE state = 'queued'").fetchone()
            start = ((lo if lo is not None else 1) - len(checked)) if front else ((hi if hi is not None else 0) + 1)
            created = now_iso()
            for offset, (level, args) in enumerate(checked):
                cur = db.execute(
                    "INSERT INTO jobs (level, dataset, args, state, position, created_at, nproc, config) "
                    "VALUES (?, ?, ?, 'queued', ?, ?, ?, ?)",
                    (level, dataset, json.dumps(args), start + offset, created, nproc, config))
                ids.append(cur.lastrowid)
        return ids

    def _queued_ids(self, db: sqlite3.Connection) -> list[int]:
        return [r[0] for r in db.execute("SELECT id FROM jobs WHERE state = 'queued' ORDER BY position, id")]

    def _renumber(self, db: sqlite3.Connection, order: list[int]) -> None:
        for pos, job_id in enumerate(order, start=1):
            db.execute("UPDATE jobs SET position = ? WHERE id = ?", (pos, job_id))

    def move(self, job_id: int, to: int) -> None:
        """Put a queued job at 1-based position `to` among the queued jobs."""
        job_id = self._id(job_id)
        with self._tx() as db:
            row = db.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                raise UserInputError(f"no job {job_id}; `adapter-engine queue ls` lists them")
            if row["state"] != "queued":
                raise UserInputError(f"job {job_id} is {row['state']}; only queued jobs can be moved")
            order = self._queued_ids(db)
            if isinstance(to, bool) or not isinstance(to, int) or not 1 <= to <= len(order):
                raise UserInputError(f"position {to!r} is out of range; there are {len(order)} queued jobs "
                                     f"(use 1..{len(order)})")
            order.remove(job_id)
            order.insert(to - 1, job_id)
            self._renumber(db, order)

    def remove(self, ids: list[int]) -> None:
        """Delete queued jobs. Any id that is unknown or not queued refuses the whole call."""
        ids = [self._id(i) for i in ids]
        with self._tx() as db:
            for job_id in ids:
                row = db.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
                if row is None:
                    raise UserInputError(f"no job {job_id}; `adapter-engine queue ls` lists them")
                if row["state"] != "queued":
                    raise UserInputError(f"job {job_id} is {row['state']}; only queued jobs can be removed "
                                         "(cancel a running one, `queue clear` finished ones)")
            db.executemany("DELETE FROM jobs WHERE id = ?", [(i,) for i in ids])

    def clear(self, states: tuple[str, ...] = ("done",)) -> int:
        """Delete finished jobs in `states` from the queue (their run directories stay)."""
        bad = [s for s in states if s not in STATES or s in ("queued", "running")]
        if bad:
            raise UserInputError(f"cannot clear jobs in state {bad[0]!r}; finished states: "
                                 f"{', '.join(s for s in STATES if s not in ('queued', 'running'))}")
        with self._tx() as db:
            marks = ", ".join("?" for _ in states)
            return db.execute(f"DELETE FROM jobs WHERE state IN ({marks})", tuple(states)).rowcount

    def clear_done(self) -> int:
        return self.clear(("done",))

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
            if resume and not (row["run_dir"] and (Path(row["run_dir"]) / LAST).is_file()):
                where = row["run_dir"] or "no run directory"
                raise UserInputError(f"job {job_id} cannot resume: {where} has no {LAST}; retry without --resume")
            lo, hi = db.execute("SELECT MIN(position), MAX(position) FROM jobs WHERE state = 'queued'").fetchone()
            position = ((lo if lo is not None else 1) - 1) if front else ((hi if hi is not None else 0) + 1)
            db.execute(
                "UPDATE jobs SET state = 'queued', position = ?, resume = ?, run_dir = ?, pid = NULL, host = NULL, "
                "worker_pid = NULL, started_at = NULL, finished_at = NULL, exit_code = NULL, error = NULL, "
                "gpus = NULL, cancel_requested_at = NULL WHERE id = ?",
                (position, int(resume), row["run_dir"] if resume else None, job_id))
        return job_id

    # -- cancelling ---------------------------------------------------------------------------

    def cancel(self, ids: list[int], *, wait: bool = False, grace_s: float = 30.0) -> None:
        """Queued -> cancelled at once. Running -> flagged; the worker sends SIGTERM to the
        trainer's process group and SIGKILL after its grace period. When no worker watches the
        job (it died), this call signals the trainer itself. With `wait`, block until every
        job has ended, escalating to SIGKILL after `grace_s`."""
        ids = [self._id(i) for i in ids]
        for job_id in ids:
            self.get(job_id)  # unknown ids refuse the call before anything changes
        now = now_iso()
        signal_here: list[tuple[int, int]] = []
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
                    if row["host"] == self.host and not self._process_alive(row):
                        self._finish_gone(db, row, "cancelled", "cancelled (its process was already gone)")
                    elif row["host"] == self.host and row["pid"] and not (worker.alive and worker.host == self.host):
                        signal_here.append((job_id, row["pid"]))
        from engine.queue.signals import terminate_group

        for _, pid in signal_here:
            terminate_group(pid, kill=False)
        if wait:
            self.wait_ended(ids, grace_s=grace_s)

    def wait_ended(self, ids: list[int], grace_s: float = 30.0, timeout_s: float | None = None) -> None:
        """Block until none of `ids` is running; SIGKILL (same host) what outlives `grace_s`."""
        from engine.queue.signals import terminate_group

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
        final = run_final_state(row["run_dir"])
        if final is not None:
            state, error = final
        else:
            mark_run_status(row["run_dir"], state, error)
        db.execute("UPDATE jobs SET state = ?, finished_at = ?, error = ? WHERE id = ?",
                   (state, now_iso(), error if state != "done" else None, row["id"]))

    def recover(self, skip: set[int] | frozenset[int] = frozenset()) -> list[int]:
        """A `running` job on this host whose process is gone becomes `interrupted` (or
        `cancelled`, if a cancel was asked for), and so does its run's status.json. Jobs in
        `skip` (the caller's own children) are left alone. Returns the ids changed."""
        changed = []
        with self._tx() as db:
            rows = db.execute("SELECT * FROM jobs WHERE state = 'running' AND host = ?", (self.host,)).fetchall()
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

    def heartbeat(self, pid: int, gpus: str | None = None, *, starting: bool = False) -> None:
        now = now_iso()
        with self._tx() as db:
            if starting:
                db.execute("INSERT OR REPLACE INTO worker (id, pid, pid_start, host, gpus, started_at, heartbeat, "
                           "stopped_at) VALUES (1, ?, ?, ?, ?, ?, ?, NULL)",
                           (pid, start_of(pid), self.host, gpus, now, now))
            else:
                db.execute("UPDATE worker SET heartbeat = ? WHERE id = 1 AND pid = ? AND host = ?",
                           (now, pid, self.host))

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
        alive = (row["stopped_at"] is None and age is not None and age < HEARTBEAT_STALE_S
                 and (row["host"] != self.host or is_running(row["pid"], row["pid_start"])))
        return WorkerStatus(alive=alive, pid=row["pid"], host=row["host"], heartbeat=row["heartbeat"],
                            running=running, started_at=row["started_at"], gpus=row["gpus"], counts=counts)

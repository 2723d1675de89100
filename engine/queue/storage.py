"""queue.db's storage: the SQLite database, its schema and migrations, and the jobs as rows:
reading them, adding, ordering and removing them. Torch-free.

SQLite in WAL mode. Every write is one short `BEGIN IMMEDIATE` transaction, so any number of
processes (apps, CLIs, the worker) can add, claim and update jobs at the same time without
losing or double-running one. The schema is versioned with `PRAGMA user_version`; opening an
older database migrates it in place, opening a newer one is refused with a clear message.

Job order (`jobs()`): queued jobs by position (the head runs next), then running jobs by start
time, then finished jobs newest first. State changes are `engine.queue.lifecycle`'s.
"""

from __future__ import annotations

import json
import math
import os
import socket
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

from common.errors import UserInputError
from common.names import is_safe_name
from engine.rundir.layout import QUEUE_DB
from engine.rundir.states import FINISHED, now_iso

BUSY_TIMEOUT_MS = 30_000

# Migration i takes the schema from version i to i + 1. Append, never edit.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE jobs (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        level         TEXT    NOT NULL,
        dataset       TEXT,
        args          TEXT    NOT NULL,           -- JSON object: the job's settings (TrainSettings)
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
    # Sweeps: the jobs of one `queue add --sweep` share an id; the worker reports its GPUs' use.
    """
    ALTER TABLE jobs ADD COLUMN sweep TEXT;
    ALTER TABLE worker ADD COLUMN gpu_stats TEXT;
    """,
    # The Slurm backend: a job's Slurm job id, its node and Slurm's state for it (NULL for the
    # local backend); the worker's backend and cluster, for `queue status` and the app.
    """
    ALTER TABLE jobs ADD COLUMN slurm_id TEXT;
    ALTER TABLE jobs ADD COLUMN slurm_state TEXT;
    ALTER TABLE jobs ADD COLUMN slurm_node TEXT;
    ALTER TABLE worker ADD COLUMN backend TEXT;
    ALTER TABLE worker ADD COLUMN cluster TEXT;
    """,
    # The nodes a job spans, `nproc` processes on each (more than one only on Slurm).
    """
    ALTER TABLE jobs ADD COLUMN nodes INTEGER NOT NULL DEFAULT 1;
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


@dataclass
class Job:
    """One row of the queue. `position` is the 1-based place among queued jobs (None otherwise)."""

    id: int
    level: str
    dataset: str | None
    settings: dict[str, Any]  # a TrainSettings as a dict (engine.queue.plan makes them)
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
    sweep: str | None = None
    slurm_id: str | None = None  # the Slurm backend's job id, node and Slurm state (PENDING, RUNNING, ...)
    slurm_node: str | None = None
    slurm_state: str | None = None
    nodes: int = 1  # nodes the job spans, `nproc` processes on each (Slurm: srun torchrun)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_settings(settings: Any) -> dict[str, Any]:
    """A job's settings are a JSON object (plain values, nested objects and lists of them)."""
    if not isinstance(settings, dict):
        raise UserInputError(f"a job's settings must be a dict, got {type(settings).__name__}")

    def plain(value: Any) -> bool:
        if isinstance(value, float):
            return math.isfinite(value)
        if isinstance(value, dict):
            return all(isinstance(k, str) and plain(v) for k, v in value.items())
        if isinstance(value, list):
            return all(plain(v) for v in value)
        return value is None or isinstance(value, (str, int, bool))

    bad = next((k for k, v in settings.items() if not isinstance(k, str) or not plain(v)), None)
    if bad is not None:
        raise UserInputError(f"job setting {bad!r} is not a plain JSON value")
    return dict(settings)


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


class QueueStore:
    """The jobs table of `runs_dir/queue.db` (created on first use). Safe to share between threads."""

    def __init__(self, runs_dir: str | os.PathLike) -> None:
        self.runs_dir = Path(runs_dir).absolute()
        if self.runs_dir.exists() and not self.runs_dir.is_dir():
            raise UserInputError(f"runs directory {self.runs_dir} is not a directory")
        try:
            self.runs_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserInputError(f"cannot create runs directory {self.runs_dir}: {exc.strerror}") from None
        self.path = self.runs_dir / QUEUE_DB
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

    @classmethod
    def existing(cls, runs_dir: str | os.PathLike):
        """The queue of `runs_dir` if queue.db is there, else None: reading never creates one."""
        return cls(runs_dir) if (Path(runs_dir).absolute() / QUEUE_DB).exists() else None

    # -- connection ---------------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> "QueueStore":
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
            settings = json.loads(row["args"])
        except (TypeError, ValueError):
            settings = {}
        return Job(
            id=row["id"], level=row["level"], dataset=row["dataset"],
            settings=settings if isinstance(settings, dict) else {}, state=row["state"],
            position=rank, run_dir=row["run_dir"], pid=row["pid"], host=row["host"],
            created_at=row["created_at"], started_at=row["started_at"], finished_at=row["finished_at"],
            exit_code=row["exit_code"], error=row["error"], nproc=row["nproc"], gpus=row["gpus"],
            resume=bool(row["resume"]), attempts=row["attempts"],
            cancel_requested=row["cancel_requested_at"] is not None, worker_pid=row["worker_pid"],
            config=row["config"], pid_start=row["pid_start"], sweep=row["sweep"],
            slurm_id=row["slurm_id"], slurm_node=row["slurm_node"], slurm_state=row["slurm_state"],
            nodes=row["nodes"],
        )

    def _rows(self, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def jobs(self) -> list[Job]:
        """Queued jobs by position, then running ones by start, then finished ones newest first.

        One statement, so one snapshot: a job that the worker claims meanwhile is listed once,
        in one state (three reads could see it queued in the first and running in the second)."""
        rows = self._rows(
            "SELECT * FROM jobs ORDER BY CASE state WHEN 'queued' THEN 0 WHEN 'running' THEN 1 ELSE 2 END, "
            "CASE state WHEN 'queued' THEN position END, "
            "CASE state WHEN 'running' THEN started_at END, "
            "CASE WHEN state NOT IN ('queued', 'running') THEN finished_at END DESC, "
            "CASE WHEN state = 'queued' OR state = 'running' THEN id END, id DESC")
        queued = [r for r in rows if r["state"] == "queued"]
        return [self._job(r, i + 1) for i, r in enumerate(queued)] + [self._job(r) for r in rows[len(queued):]]

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

    def add(self, level: str, settings: dict, *, front: bool = False, dataset: str | None = None,
            nproc: int = 1, config: str | None = None) -> int:
        """Queue one job at the end (or the head with `front`); returns its id."""
        return self.add_many([(level, settings)], front=front, dataset=dataset, nproc=nproc, config=config)[0]

    def add_many(self, jobs: list[tuple[str, dict]], *, front: bool = False, dataset: str | None = None,
                 nproc: int = 1, config: str | None = None, sweep: str | None = None,
                 nodes: int = 1) -> list[int]:
        """Queue several jobs (level, settings) in one transaction, keeping their order; returns
        their ids. The settings are stored as given: `engine.queue.plan` validates them."""
        checked = [(_check_level(level), _check_settings(settings)) for level, settings in jobs]
        nproc = _check_nproc(nproc)
        if isinstance(nodes, bool) or not isinstance(nodes, int) or nodes < 1:
            raise UserInputError(f"nodes must be an integer >= 1, got {nodes!r}")
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
            for offset, (level, settings) in enumerate(checked):
                cur = db.execute(
                    "INSERT INTO jobs (level, dataset, args, state, position, created_at, nproc, config, sweep, nodes) "
                    "VALUES (?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?)",
                    (level, dataset, json.dumps(settings), start + offset, created, nproc, config, sweep, nodes))
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
        bad = [s for s in states if s not in FINISHED]
        if bad:
            raise UserInputError(f"cannot clear jobs in state {bad[0]!r}; finished states: {', '.join(FINISHED)}")
        with self._tx() as db:
            marks = ", ".join("?" for _ in states)
            return db.execute(f"DELETE FROM jobs WHERE state IN ({marks})", tuple(states)).rowcount

    def clear_done(self) -> int:
        return self.clear(("done",))

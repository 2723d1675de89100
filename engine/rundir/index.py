"""The run index: the leaderboard rows of a runs directory, kept in RUNS/.index.db (SQLite, WAL)
so that listing 10,000 runs does not parse 40,000 JSON files.

Never the source of truth. A row is used only while every file its summary was read from is
the one it was read from: the fingerprint is each file's (inode, size, mtime in ns), and since
every writer replaces a file atomically (a new inode), any write shows. The fingerprint is
taken *before* the files are read, so a write during the read makes the row stale, never wrong.
Rows of live runs (running, or interrupted as judged by the clock) are never stored: their
state depends on the time and on processes, not only on files. Delete the file and it is
rebuilt; a corrupt one, or one of a newer schema, is moved aside (one line of notice) and
rebuilt; where it cannot be written (a read-only runs directory, a full disk, a lock held too
long) the rows are read from the files, as without an index.

Any number of readers and writers (CLIs, apps) at once: each call opens its own connection,
and each write is one short transaction."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from dataclasses import fields
from pathlib import Path
from typing import Callable, Iterable

from engine.rundir.layout import (CONFIG, EVAL, HISTORY, META, REFERENCE_METRICS, RUN_INDEX, SPECULATE, STATUS,
                                  iter_run_dirs)
from engine.rundir.summary import RunSummary, summarize

SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 2.0  # a writer waits this long for another; past it the rows are just not stored this time
# The files `summarize` reads: a change to any of them (or its appearing or going) re-reads the run.
SUMMARY_FILES = frozenset((CONFIG, HISTORY, STATUS, EVAL, REFERENCE_METRICS, SPECULATE, META))
LIVE_STATES = frozenset(("running", "interrupted"))
# Bump when `summarize` reads the same files differently: every stored row is then read again.
SUMMARY_VERSION = 1
_ROW_FIELDS = tuple(f.name for f in fields(RunSummary) if f.name != "path")
SUMMARY_KEY = hashlib.sha256(f"{SUMMARY_VERSION}:{','.join(_ROW_FIELDS)}".encode()).hexdigest()[:16]

SCHEMA = ("CREATE TABLE IF NOT EXISTS runs (path TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, summary TEXT NOT NULL)",
          "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")


def fingerprint(run_dir: str) -> str | None:
    """(name, inode, size, mtime_ns) of each summary file in `run_dir`; None if it cannot be listed."""
    parts = []
    try:
        with os.scandir(run_dir) as entries:
            for entry in entries:
                if entry.name in SUMMARY_FILES:
                    try:
                        st = entry.stat()
                    except OSError:  # gone between the listing and the stat: not there
                        continue
                    parts.append(f"{entry.name}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}")
    except OSError:
        return None
    return "|".join(sorted(parts))


def storable(row: RunSummary) -> bool:
    return row.state not in LIVE_STATES


def _to_json(row: RunSummary) -> str:
    return json.dumps({name: getattr(row, name) for name in _ROW_FIELDS}, separators=(",", ":"))


def _from_json(text: str, path: str) -> RunSummary | None:
    try:
        values = json.loads(text)
        return RunSummary(path=path, **{k: values[k] for k in _ROW_FIELDS})
    except (ValueError, KeyError, TypeError):
        return None


class RunIndex:
    """The index of one runs directory. `open` returns None where there can be none."""

    def __init__(self, root: Path, notice: Callable[[str], None]) -> None:
        self.root = os.fspath(root)
        self.path = os.path.join(self.root, RUN_INDEX)
        self.notice = notice

    @classmethod
    def open(cls, root: str | os.PathLike, notice: Callable[[str], None] = lambda line: None) -> "RunIndex | None":
        index = cls(Path(root), notice)
        if os.path.islink(index.path) or (os.path.lexists(index.path) and not os.path.isfile(index.path)):
            notice(f"run index {index.path} is not a regular file; listing the runs from their files")
            return None  # a FIFO would block SQLite's open; a link would write elsewhere
        for attempt in range(2):
            try:
                with index._connect() as db:
                    index._prepare(db)
                return index
            except _MoveAside as why:
                if attempt or not index._move_aside(str(why)):
                    return None
            except sqlite3.Error:  # read-only, full, locked too long: list from the files
                return None
        return None

    # -- the database --------------------------------------------------------------------------
    def _connect(self) -> "_Closing":
        return _Closing(sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None))

    def _prepare(self, db: sqlite3.Connection) -> None:
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise _MoveAside(f"it was written by a newer adapter-tui (schema {version}, this one reads "
                                 f"{SCHEMA_VERSION})")
            if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                db.execute("PRAGMA journal_mode=WAL")
            db.execute("BEGIN IMMEDIATE")
            for statement in SCHEMA:
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            stored = db.execute("SELECT value FROM meta WHERE key = 'summary'").fetchone()
            if stored is None or stored[0] != SUMMARY_KEY:  # rows of another reader's making: read again
                db.execute("DELETE FROM runs")
                db.execute("INSERT OR REPLACE INTO meta VALUES ('summary', ?)", (SUMMARY_KEY,))
            db.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError) and not _corrupt(exc):
                raise
            raise _MoveAside(f"it is not a readable index ({exc})") from None

    def _move_aside(self, why: str) -> bool:
        aside = f"{self.path}.{time.strftime('%Y%m%d-%H%M%S')}.bad"
        try:
            os.replace(self.path, aside)
            for suffix in ("-wal", "-shm"):  # the moved file's own journal: it goes with it
                if os.path.exists(self.path + suffix):
                    os.replace(self.path + suffix, aside + suffix)
        except OSError:
            return False
        self.notice(f"run index {self.path}: {why}; moved it to {os.path.basename(aside)} and rebuilt it")
        return True

    # -- rows ----------------------------------------------------------------------------------
    def rows(self, run_dirs: Iterable[str], *, rescan: bool = False, prune: bool = True) -> list[RunSummary]:
        """The summary of each run directory: from the index where its files are unchanged, read
        (and stored) where not. With `prune`, rows of directories not listed are dropped."""
        run_dirs = list(run_dirs)
        try:
            with self._connect() as db:
                stored = {} if rescan else dict(
                    (path, (fp, text)) for path, fp, text in db.execute("SELECT path, fingerprint, summary FROM runs"))
        except sqlite3.Error:
            return [summarize(path) for path in run_dirs]
        result, fresh, keys = [], [], set()
        for path in run_dirs:
            key = self._key(path)
            keys.add(key)
            fp = fingerprint(path)
            hit = stored.get(key)
            row = _from_json(hit[1], path) if hit and fp is not None and hit[0] == fp else None
            if row is None:
                row = summarize(path)
                if fp is not None and storable(row):
                    fresh.append((key, fp, _to_json(row)))
            result.append(row)
        gone = [(key,) for key in stored if key not in keys] if prune else []
        self._write(fresh, gone, clear=rescan and prune)
        return result

    def remember(self, path: str, fp: str | None, row: RunSummary) -> None:
        """Store one run's row, read after `fp` was taken (a watcher's re-read). A live row is not
        stored, and needs no delete: its files differ from any stored row's."""
        if fp is not None and storable(row):
            self._write([(self._key(path), fp, _to_json(row))], [])

    def _key(self, path: str) -> str:
        """Rows are keyed by the path below the root, so one index serves the root however it is named."""
        prefix = self.root.rstrip(os.sep) + os.sep
        return path[len(prefix):] if path.startswith(prefix) else os.path.relpath(path, self.root)

    def _write(self, rows: list[tuple[str, str, str]], gone: list[tuple[str]], clear: bool = False) -> None:
        if not rows and not gone and not clear:
            return
        try:
            with self._connect() as db:
                db.execute("BEGIN IMMEDIATE")
                if clear:
                    db.execute("DELETE FROM runs")
                db.executemany("DELETE FROM runs WHERE path = ?", gone)
                db.executemany("INSERT OR REPLACE INTO runs VALUES (?, ?, ?)", rows)
                db.execute("COMMIT")
        except sqlite3.Error:  # locked past the timeout, read-only, full: the rows are right, just not kept
            pass


class _MoveAside(Exception):
    """The index file is not one this version can use."""


def _corrupt(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return "not a database" in text or "malformed" in text or "corrupt" in text


class _Closing:
    """A connection that closes (not only commits) at the end of a `with` block."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        return self.db

    def __exit__(self, *exc: object) -> None:
        if self.db.in_transaction:
            self.db.rollback()
        self.db.close()


def load_indexed(root: str | os.PathLike, *, rescan: bool = False, notice: Callable[[str], None] = lambda line: None,
                 index: RunIndex | None | bool = True) -> list[RunSummary]:
    """Every run under `root` (as `summary.load_runs`), through the index where there can be one
    (`index`: one already opened, None for none; by default it is opened here)."""
    run_dirs = list(iter_run_dirs(Path(root)))
    if index is True:
        index = RunIndex.open(root, notice)
    if index is None:
        return [summarize(path) for path in run_dirs]
    return index.rows(run_dirs, rescan=rescan)

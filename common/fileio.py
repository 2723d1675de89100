"""Atomic writes and tolerant reads: a reader never sees half a file, a crash never corrupts
the previous version, and garbage on disk is reported instead of raised.

Files and directories are created with the permissions the umask allows (as `open` and
`mkdir` would), not the owner-only ones `tempfile` uses: a runs directory is often shared
between cluster nodes and the machine running the app. Readers open only regular files, and
without blocking: a FIFO named history.json must not hang the app.
"""

from __future__ import annotations

import errno
import json
import math
import os
import stat
import tempfile
from contextlib import contextmanager, suppress
from functools import lru_cache
from pathlib import Path
from typing import IO, Any, Callable, Iterator

from common.errors import UserInputError


@lru_cache(maxsize=1)
def current_umask() -> int:
    """The process's umask, read without changing it where the system says it (Linux)."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: read it by setting it, then put it back
    os.umask(mask)
    return mask


def shared_tempdir(prefix: str, parent: str | os.PathLike) -> Path:
    """tempfile.mkdtemp, then the mode a plain mkdir would give (0777 less the umask)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    os.chmod(path, 0o777 & ~current_umask())
    return path


class DiskFull(UserInputError):
    """A write found the device (or the quota) full: one line naming the file and the space left."""


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _disk_full(exc: BaseException, path: Path, attempted: int) -> DiskFull | None:
    """The write's failure as DiskFull when the device is full: ENOSPC or EDQUOT, or a library's
    own error (torch's "unexpected pos") with less free space left than the write needed."""
    try:
        usage = os.statvfs(path.parent)
        free = usage.f_bavail * usage.f_frsize
    except OSError:
        return None
    full = isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)
    if not full and not (isinstance(exc, (OSError, RuntimeError)) and free < attempted + (1 << 20)):
        return None
    return DiskFull(f"no space left on the device writing {path} ({free / 2**20:.1f} MiB free); free some space or "
                    "write elsewhere")


def _discard(tmp: str, path: Path, exc: BaseException) -> None:
    """Remove a failed write's temp file; raise DiskFull (one line) if the device was full."""
    attempted = _size(tmp)
    with suppress(FileNotFoundError):
        os.unlink(tmp)
    full = _disk_full(exc, path, attempted)
    if full is not None:
        raise full from None


def _stage(path: Path, write: Callable[[IO[bytes]], None]) -> str:
    """`write` into a fsynced temp file beside `path` (mode 0666 less the umask); its name."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException as exc:
        _discard(tmp, path, exc)
        raise
    return tmp


def write_all(writes: list[tuple[str | os.PathLike, Callable[[IO[bytes]], None]]]) -> None:
    """Several files that must agree (an epoch's checkpoints and history): each written to a temp
    file first, and only once all are written are they moved into place (os.replace needs no
    space), so a full disk leaves every one of them as it was."""
    staged: list[tuple[str, Path]] = []
    try:
        for path, write in writes:
            staged.append((_stage(Path(path), write), Path(path)))
        for tmp, path in staged:
            os.replace(tmp, path)
    except BaseException:
        for tmp, _ in staged:
            with suppress(FileNotFoundError):
                os.unlink(tmp)
        raise


@contextmanager
def atomic_writer(path: str | os.PathLike) -> Iterator[Any]:
    """Open a temp file beside `path` for binary writing; on success fsync and os.replace it
    into place (mode 0666 less the umask), on failure remove it (a full device: DiskFull)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        _discard(tmp, path, exc)
        raise


def _finite(value: Any) -> Any:
    """JSON has no NaN/Infinity: store them as null so every reader can parse the file."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def json_bytes(data: Any) -> bytes:
    """`data` as the JSON every writer here writes (non-finite floats become null)."""
    return json.dumps(_finite(data), indent=2, default=str).encode("utf-8")


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Atomically write `data` as JSON (non-finite floats become null)."""
    payload = json_bytes(data)
    with atomic_writer(path) as handle:
        handle.write(payload)


class ReadError(Exception):
    """A file that should hold JSON is missing, empty or garbage; the message says which."""


class NotRegularFile(OSError):
    """A FIFO, socket, device or directory where a regular file should be."""


def open_regular(path: str | os.PathLike, mode: str = "rb", **kwargs: Any) -> IO:
    """Open a regular file for reading without ever blocking: a FIFO (which would wait for a
    writer), a socket or a device raises NotRegularFile instead."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotRegularFile(f"{os.path.basename(path)} is not a regular file")
        if hasattr(os, "O_NONBLOCK"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, mode, **kwargs)
    except BaseException:
        os.close(fd)
        raise


def read_json(path: str | os.PathLike, *, missing_ok: bool = False) -> Any:
    """Read JSON, raising ReadError with a one-line reason for any problem (a missing file
    returns None instead when `missing_ok`)."""
    name = os.path.basename(path)
    try:
        with open_regular(path, "r", encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        if missing_ok:
            return None
        raise ReadError(f"{name} is missing") from None
    except NotRegularFile as exc:
        raise ReadError(str(exc)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ReadError(f"{name} cannot be read: {exc.__class__.__name__}") from None
    if not text.strip():
        raise ReadError(f"{name} is empty")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReadError(f"{name} is not valid JSON (line {exc.lineno})") from None
    except RecursionError:
        raise ReadError(f"{name} is nested too deeply to be one of ours") from None


def unwritable_dir(path: str | os.PathLike) -> str | None:
    """Why a directory cannot be created at (or written in) `path`, or None when it can: it is a
    file, it lies under a file, or its nearest existing ancestor is read-only. Checked before
    anything is written, so bad input never leaves half a run behind."""
    path = Path(path).absolute()
    if path.exists() and not path.is_dir():
        return f"{path} is a file, not a directory"
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        return f"{path} lies under {existing}, which is a file"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"cannot write in {existing} (permission denied)"
    return None


def make_dirs(path: str | os.PathLike) -> Path | None:
    """mkdir -p; returns the outermost directory it created (None if `path` existed), so that a
    failure later can remove exactly what was created and nothing else."""
    path = Path(path)
    top = None
    missing = path
    while not missing.exists():
        top = missing
        missing = missing.parent
    path.mkdir(parents=True, exist_ok=True)
    return top

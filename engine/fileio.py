"""Atomic writes and tolerant reads: a reader never sees half a file, a crash never corrupts
the previous version, and garbage on disk is reported instead of raised."""

from __future__ import annotations

import json
import math
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


@contextmanager
def atomic_writer(path: str | os.PathLike) -> Iterator[Any]:
    """Open a temp file beside `path` for binary writing; on success fsync and os.replace it
    into place, on failure remove it."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
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


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Atomically write `data` as JSON (non-finite floats become null)."""
    payload = json.dumps(_finite(data), indent=2, default=str).encode("utf-8")
    with atomic_writer(path) as handle:
        handle.write(payload)


class ReadError(Exception):
    """A file that should hold JSON is missing, empty or garbage; the message says which."""


def read_json(path: str | os.PathLike, *, missing_ok: bool = False) -> Any:
    """Read JSON, raising ReadError with a one-line reason for any problem (a missing file
    returns None instead when `missing_ok`)."""
    name = os.path.basename(path)
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        if missing_ok:
            return None
        raise ReadError(f"{name} is missing") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ReadError(f"{name} cannot be read: {exc.__class__.__name__}") from None
    if not text.strip():
        raise ReadError(f"{name} is empty")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReadError(f"{name} is not valid JSON (line {exc.lineno})") from None

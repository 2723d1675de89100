"""One trainer per run directory."""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path

from common.errors import UserInputError
from engine.rundir.layout import LOCK


class RunLock:
    """An exclusive lock on a run directory for the life of its trainer, so that no second
    trainer (a resume of a live run, a queue retry, another host on a shared filesystem where
    flock works) ever writes the same run."""

    def __init__(self, run_dir: Path, name: str = LOCK, doing: str = "trained") -> None:
        self.path = Path(run_dir) / name
        self.doing = doing  # what the holder does there, for the refusal
        self.fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise UserInputError(f"{self.path.parent} is being {self.doing} by {holder}; wait for it to end, or "
                                 "cancel it first") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing drops the flock
            self.fd = None

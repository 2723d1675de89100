"""Deleting a run directory, on the user's explicit request (`runs delete`, the app's `D`).

Only the files this contract names (layout.RUN_FILES) are removed, and the directory when it is
then empty: anything else someone put there stays, and is reported. A run that is training
(its lock is held) is refused, as is any path that is not a run directory inside the runs
directory."""

from __future__ import annotations

import os
from pathlib import Path

from common.errors import UserInputError
from engine.rundir.files import read_object
from engine.rundir.layout import LOCK, RUN_FILES, STATUS, is_run_dir, linked_run_problem
from engine.rundir.lock import RunLock
from engine.rundir.states import effective_state


def delete_run(run_dir: str | os.PathLike, runs_root: str | os.PathLike) -> list[str]:
    """Delete a run; returns the names left behind (not ours to delete), [] when it is gone."""
    run_dir, root = Path(run_dir).absolute(), Path(runs_root).absolute()
    linked = linked_run_problem(run_dir)
    if linked:
        raise UserInputError(linked)
    if not run_dir.is_dir() or not is_run_dir(str(run_dir)):
        raise UserInputError(f"{run_dir} is not a run directory")
    if root.resolve() not in run_dir.resolve().parents:
        raise UserInputError(f"{run_dir} is not inside the runs directory {root}")
    status, _ = read_object(run_dir / STATUS)
    if status and effective_state(status) == "running":
        raise UserInputError(f"{run_dir.name} is training; cancel it first")
    lock = RunLock(run_dir)
    lock.acquire()  # a live trainer holds it: refused with who holds it
    try:
        for name in RUN_FILES:
            path = run_dir / name
            if name != LOCK and path.is_file() and not path.is_symlink():
                path.unlink()
    finally:
        lock.release()
    (run_dir / LOCK).unlink(missing_ok=True)
    left = sorted(os.listdir(run_dir))
    if not left:
        run_dir.rmdir()
    return left

"""Where a run came from, recorded in its config.json: the code (git commit, and whether the tree
had uncommitted changes) of the adapter-tui checkout that ran it and of the working directory
when that is another checkout, the data (a fingerprint of each dataset: its index.json's hash
and sample count, or for a single .pt file its size and the hash of its first MiB) and the host.
Torch-free; everything is best effort (no git, no checkout: no code entry)."""

from __future__ import annotations

import hashlib
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
HEAD_BYTES = 1 << 20


def _git(cwd: Path, *args: str) -> str | None:
    git = shutil.which("git")
    if git is None:
        return None
    try:
        done = subprocess.run([git, "-C", str(cwd), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def checkout(directory: Path) -> dict[str, Any] | None:
    """{"repo", "commit", "dirty"} of the git checkout holding `directory`, or None."""
    top = _git(directory, "rev-parse", "--show-toplevel")
    commit = _git(directory, "rev-parse", "HEAD") if top else None
    if not top or not commit:
        return None
    status = _git(directory, "status", "--porcelain", "--untracked-files=no")
    return {"repo": top, "commit": commit, "dirty": bool(status) if status is not None else None}


def code_version(cwd: Path | None = None) -> list[dict[str, Any]]:
    """The checkouts involved: adapter-tui's own, then the working directory's if it differs."""
    found = []
    for directory in (PACKAGE_ROOT, Path(cwd) if cwd else Path.cwd()):
        info = checkout(directory)
        if info and all(info["repo"] != other["repo"] for other in found):
            found.append(info)
    return found


def _sha256(path: Path, limit: int | None = None) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        digest.update(handle.read(limit) if limit else handle.read())
    return digest.hexdigest()


def data_fingerprint(dataset: Any) -> dict[str, Any]:
    """What identifies a dataset (an engine.data Dataset): its index.json's hash and its
    samples, or a single file's size and the hash of its head."""
    path = Path(dataset.path)
    out: dict[str, Any] = {"path": str(path), "format": dataset.format, "samples": dataset.num_samples}
    try:
        if path.is_dir() and (path / "index.json").is_file():
            out["index_sha256"] = _sha256(path / "index.json")
        elif path.is_file():
            out["size"] = path.stat().st_size
            out["head_sha256"] = _sha256(path, HEAD_BYTES)
    except OSError:
        pass
    return out


def lineage(train: Any, val: Any, cwd: Path | None = None) -> dict[str, Any]:
    return {"code": code_version(cwd), "data": {"train": data_fingerprint(train), "val": data_fingerprint(val)},
            "host": socket.gethostname()}

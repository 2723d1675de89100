"""What the TUI asks of the engine, behind one small class so tests can swap it.

The job queue (`engine.queue`, torch-free) is read and changed in-process; anything that imports
torch runs as a `python -m engine ...` subprocess: queueing new jobs (`queue add`, so the app
plans and checks exactly as the command line does), `levels` parameter counts, `data inspect`,
`synth`, `checkpoint`. Every method may block: call them from thread workers only.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

from common.errors import UserInputError


class BackendError(Exception):
    """An engine command failed; the message is one line for the user."""


class Backend:
    def __init__(self, runs_dir: Path, config: Path | None) -> None:
        self.runs_dir = Path(runs_dir)
        self.config = Path(config) if config else None
        self._queue = None

    # -- queue -----------------------------------------------------------------------------
    @property
    def queue(self):
        """The engine's JobQueue on runs_dir, or None while there is no queue.db: the app only
        reads the queue, and reading never creates one (`queue add` does)."""
        if self._queue is None:
            from engine.queue import JobQueue

            self._queue = JobQueue.existing(self.runs_dir)
        return self._queue

    def ensure_worker(self) -> int | None:
        from engine.queue import ensure_worker

        return ensure_worker(self.runs_dir)

    def stop_worker(self) -> tuple[int | None, list[int]]:
        """Stop the worker (its running jobs are cancelled); (its pid, those jobs) or (None, [])."""
        from engine.queue.spawn import stop_worker

        return stop_worker(self.runs_dir, wait_s=5)

    def submit(self, request: Any) -> list[int]:
        """Queue a LaunchRequest through `adapter-engine queue add`, the engine's own planning and
        checks (the data read to its last chunk, the model sized against the device), and make
        sure a worker runs the jobs. Returns their ids; BackendError says why it was refused."""
        argv = ["queue", "add", "--runs", str(self.runs_dir), "--json"]
        for level in request.levels:
            argv += ["--level", level]
        if request.dataset:
            argv += ["--dataset", request.dataset]
        for name, value in request.fields.items():
            if value is True:
                argv.append(f"--{name}")
            elif value is not False and value is not None:
                argv.append(f"--{name}={value}")  # `=` keeps a value starting with '-' a value
        for axis in getattr(request, "sweep", []):
            argv += ["--sweep", axis]
        if getattr(request, "sweep_random", None):
            argv += ["--sweep-random", str(request.sweep_random)]
        if request.front:
            argv.append("--front")
        if self.config:
            argv += ["--config", str(self.config)]
        try:
            jobs = json.loads(self._engine(*argv))
        except json.JSONDecodeError:
            raise BackendError("queue add printed something that is not JSON") from None
        self.ensure_worker()
        return [job["id"] for job in jobs]

    def job_for_run(self, run_dir: str) -> Any:
        """The newest job that wrote `run_dir`, or None."""
        if self.queue is None:
            return None
        matches = [j for j in self.queue.jobs() if j.run_dir and Path(j.run_dir).resolve() == Path(run_dir).resolve()]
        return max(matches, key=lambda j: j.id) if matches else None

    # -- subprocesses ----------------------------------------------------------------------
    def _engine(self, *argv: str, timeout: float = 120) -> str:
        cmd = [sys.executable, "-m", "engine", *argv]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BackendError(f"{' '.join(argv[:2])}: {exc}") from None
        if done.returncode != 0:
            lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
            raise BackendError(lines[-1] if lines else f"{argv[0]} exited with {done.returncode}")
        return done.stdout

    def queue_speculation(self, run_dir: str) -> tuple[str | None, int | None]:
        """`queue add --speculate RUN_DIR` (the models, prompts and layer from the extraction of
        the run's data): (None, job id), or (the engine's one line on why not, None)."""
        try:
            out = self._engine("queue", "add", "--runs", str(self.runs_dir), "--json", "--speculate", run_dir,
                               timeout=300)
            return None, int(json.loads(out)[0]["id"])
        except BackendError as exc:
            return str(exc), None
        except (json.JSONDecodeError, LookupError, TypeError, ValueError):
            return "queue add --speculate printed something that is not its job", None

    def levels(self, widths: tuple[int, int]) -> list[dict[str, Any]]:
        """Levels with parameter counts at `widths` (drafter Hd, verifier Hv) (`adapter-engine levels --json`)."""
        drafter, hidden = widths
        argv = ["levels", "--hidden_dim", str(hidden), "--drafter_dim", str(drafter), "--json"]
        if self.config:
            argv += ["--config", str(self.config)]
        try:
            return json.loads(self._engine(*argv))
        except json.JSONDecodeError:
            raise BackendError("levels --json printed something that is not JSON") from None

    def checkpoint(self, path: str) -> dict[str, Any]:
        """`adapter-engine checkpoint PATH --json`: level, class, parameters, epoch and saved
        metrics of a checkpoint, ours or the reference's."""
        try:
            info = json.loads(self._engine("checkpoint", path, "--json", timeout=60))
        except json.JSONDecodeError:
            raise BackendError("checkpoint printed something that is not JSON") from None
        if not isinstance(info, dict):
            raise BackendError("checkpoint did not return an object")
        return info

    def inspect(self, path: str) -> dict[str, Any]:
        """`adapter-engine data inspect PATH --json`: format, samples, chunks, hidden_dim..."""
        try:
            info = json.loads(self._engine("data", "inspect", path, "--json"))
        except json.JSONDecodeError:
            raise BackendError("data inspect printed something that is not JSON") from None
        if not isinstance(info, dict):
            raise BackendError("data inspect did not return an object")
        return info

    def synth(self, out_dir: Path, on_line: Callable[[str], None]) -> None:
        """Create the demo dataset, calling `on_line` with each progress line."""
        cmd = [sys.executable, "-m", "engine", "synth", str(out_dir)]
        try:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        except OSError as exc:
            raise BackendError(f"synth: {exc}") from None
        last = ""
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.strip():
                last = line.strip()
                on_line(last)
        if proc.wait() != 0:
            raise BackendError(last or f"synth exited with {proc.returncode}")


__all__ = ["Backend", "BackendError", "UserInputError"]

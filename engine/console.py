"""Console progress for `adapter-engine train` and `extract`: a rich progress bar on a terminal;
elsewhere the log lines are the plain-text record."""

from __future__ import annotations

import sys
import time
from typing import Any


class EpochProgress:
    """One bar per epoch: step/steps, running loss, tokens/s."""

    def __init__(self, enabled: bool | None = None) -> None:
        self.enabled = sys.stdout.isatty() if enabled is None else enabled
        self._progress: Any = None
        self._task: Any = None

    def start(self, epoch: int, num_epochs: int, steps: int) -> None:
        if not self.enabled:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._progress = Progress(TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("loss {task.fields[loss]:.4f}  {task.fields[rate]:,.0f} tok/s"),
                                  TimeRemainingColumn(), transient=True)
        self._task = self._progress.add_task("train", total=steps, epoch=f"{epoch}/{num_epochs}", loss=0.0, rate=0.0)
        self._progress.start()

    def advance(self, step: int, loss: float, tokens_per_s: float) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=step, loss=loss, rate=tokens_per_s)

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


class CountProgress:
    """A bar of done/total on a terminal; elsewhere (a queue job's log) a line at most every
    `every_s` seconds and at the end."""

    def __init__(self, label: str, enabled: bool | None = None, every_s: float = 5.0) -> None:
        self.label = label
        self.bar = sys.stdout.isatty() if enabled is None else enabled
        self.every_s = every_s
        self._progress: Any = None
        self._task: Any = None
        self._last_line = 0.0

    def update(self, done: int, total: int, line: str) -> None:
        if self.bar:
            if self._progress is None:
                from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

                self._progress = Progress(TextColumn(self.label), BarColumn(), MofNCompleteColumn(),
                                          TimeRemainingColumn(), transient=True)
                self._task = self._progress.add_task(self.label, total=total)
                self._progress.start()
            self._progress.update(self._task, completed=done)
            return
        now = time.monotonic()
        if done >= total or now - self._last_line >= self.every_s:
            self._last_line = now
            print(f"{self.label}: {line}", flush=True)

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

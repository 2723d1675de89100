"""Console progress for `adapter-engine train`: a rich progress bar on a terminal, nothing
otherwise (the per-epoch log lines are the plain-text record)."""

from __future__ import annotations

import sys
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

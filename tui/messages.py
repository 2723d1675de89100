"""The app's typed messages. Results that thread workers post back are in the past tense (the
work is done); requests one pane makes of another, or of the queue, are imperatives."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from textual.message import Message

from adapters.registry import Registry
from engine.rundir.run import RunData
from engine.rundir.summary import RunSummary


# -- results of thread workers -------------------------------------------------------------------
@dataclass
class RunsLoaded(Message):
    runs: list[RunSummary]
    first_run: bool = False


class RunsShown(Message):
    """The leaderboard's rows of a scan are painted."""


@dataclass
class RunRead(Message):
    data: RunData
    full: bool


@dataclass
class StepsRead(Message):
    """New lines of a run's steps.jsonl, read from `start` up to `offset`."""
    path: str
    rows: list[dict]
    start: int
    offset: int


@dataclass
class QueueLoaded(Message):
    jobs: list[Any]
    worker: Any
    error: str | None = None
    progress: dict[int, str] = field(default_factory=dict)  # an extraction job's "done/total samples"


@dataclass
class DatasetInspected(Message):
    path: str
    info: dict | None
    error: str | None


@dataclass
class LevelsCounted(Message):
    widths: tuple[int, int]  # (drafter Hd, verifier Hv)
    rows: list[dict]


@dataclass
class SynthProgressed(Message):
    line: str
    done: bool = False


@dataclass
class JobsSubmitted(Message):
    ids: list[int]
    levels: list[str]
    front: bool


@dataclass
class CheckpointDescribed(Message):
    path: str             # the run directory
    info: dict | None     # `adapter-engine checkpoint --json`
    error: str | None


@dataclass
class RegistryReloaded(Message):
    """adapters.toml changed on disk and was read again (`registry` None: it is broken now)."""
    registry: Registry | None
    error: str | None


# -- requests --------------------------------------------------------------------------------
@dataclass
class ForkRun(Message):
    """Fill the Launch form from a run's config.json (and, with `init_from`, its best weights)."""
    config: dict
    run_dir: str


@dataclass
class CancelJob(Message):
    job_id: int


@dataclass
class RetryJob(Message):
    job_id: int
    resume: bool = False


@dataclass
class MoveJob(Message):
    job_id: int
    delta: int  # -1 up, +1 down


@dataclass
class RemoveJob(Message):
    job_id: int


class ClearDone(Message):
    """Forget the done jobs."""


class StartWorker(Message):
    """Start a queue worker if none is alive."""


class StopWorker(Message):
    """Stop the queue worker (its running jobs are cancelled and keep last.pt)."""


@dataclass
class PaneReady(Message):
    """A lazily mounted pane is in place (the screen runs what waited for it)."""
    pane: Any

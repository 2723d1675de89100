"""Messages that thread workers post back to the main screen (past tense: the work is done)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual.message import Message

from engine.rundir.summary import RunSummary
from engine.rundir.run import RunData


@dataclass
class RunsLoaded(Message):
    runs: list[RunSummary]
    first_run: bool = False


class RunsShown(Message):
    """The leaderboard's rows of a scan are painted (the hidden panels wait for the first)."""


@dataclass
class RunRead(Message):
    data: RunData
    full: bool


@dataclass
class QueueLoaded(Message):
    jobs: list[Any]
    worker: Any
    error: str | None = None


@dataclass
class DatasetInspected(Message):
    path: str
    info: dict | None
    error: str | None


@dataclass
class LevelsCounted(Message):
    hidden_dim: int
    rows: list[dict]


@dataclass
class SynthProgressed(Message):
    line: str


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

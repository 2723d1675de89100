"""Messages that thread workers post back to the main screen (past tense: the work is done)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual.message import Message

from engine.runindex import RunSummary
from tui.data import RunData


@dataclass
class RunsLoaded(Message):
    runs: list[RunSummary]
    elapsed_s: float
    first_run: bool = False


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

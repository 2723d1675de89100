"""The one file watcher: a watchdog observer on the runs directory (and on adapters.toml).

The observer thread does nothing but post messages. A burst of events for the same run
collapses into the newest (`can_replace`), so an epoch's history + status writes cost one read.
An atomic `os.replace` arrives as a *moved* event: its destination is what counts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from textual.message import Message
from watchdog.events import (DirCreatedEvent, DirDeletedEvent, DirMovedEvent, FileClosedEvent, FileCreatedEvent,
                             FileDeletedEvent, FileModifiedEvent, FileMovedEvent, FileSystemEvent,
                             FileSystemEventHandler)
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserver

from engine.rundir.layout import (CONFIG, DATASETS, EVAL, HISTORY, LOG, META, NOT_RUNS, QUEUE_DB, REFERENCE_METRICS,
                                  REFERENCE_POSITIONS, SPECULATE, STATUS, STEPS)

RUN_FILES = {CONFIG, HISTORY, STATUS, EVAL, LOG, META, STEPS, SPECULATE, REFERENCE_METRICS, REFERENCE_POSITIONS}
# What the handler uses. Without a filter inotify also reports every open and read-only close,
# so reading 1,000 run directories (3,000+ files) would flood the observer thread.
EVENTS = [FileCreatedEvent, FileModifiedEvent, FileMovedEvent, FileDeletedEvent, FileClosedEvent,
          DirCreatedEvent, DirMovedEvent, DirDeletedEvent]
QUEUE_FILES = {QUEUE_DB, f"{QUEUE_DB}-wal"}


class RunFilesChanged(Message):
    """Something changed in a run directory (`name` is the file, "" for the directory)."""

    def __init__(self, run_dir: str, name: str) -> None:
        super().__init__()
        self.run_dir = run_dir
        self.name = name

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, RunFilesChanged) and message.run_dir == self.run_dir and (
            message.name == self.name or {message.name, self.name} <= RUN_FILES - {LOG, STEPS} | {""})


class LevelDirChanged(Message):
    """A level directory appeared or vanished: rescan it."""

    def __init__(self, level_dir: str) -> None:
        super().__init__()
        self.level_dir = level_dir

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, LevelDirChanged) and message.level_dir == self.level_dir


class QueueChanged(Message):
    """queue.db was written."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, QueueChanged)


class DatasetsChanged(Message):
    """Something under RUNS/datasets changed (the demo dataset appeared, say)."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, DatasetsChanged)


class ConfigChanged(Message):
    """adapters.toml was written."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, ConfigChanged)


class _ConfigHandler(FileSystemEventHandler):
    def __init__(self, config: Path, post: Callable[[Message], object]) -> None:
        self.config = str(config)
        self.post = post

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        if self.config in (str(event.src_path), str(getattr(event, "dest_path", "") or "")):
            self.post(ConfigChanged())


class _Handler(FileSystemEventHandler):
    def __init__(self, root: Path, post: Callable[[Message], object]) -> None:
        self.root = root
        self.post = post

    def _route(self, path: str, is_dir: bool, kind: str) -> None:
        try:
            parts = Path(path).relative_to(self.root).parts
        except ValueError:
            return
        if not parts or parts[-1].startswith("."):
            return
        if parts[0] == DATASETS:
            self.post(DatasetsChanged())
            return
        if len(parts) == 1:
            if parts[0] in QUEUE_FILES:
                self.post(QueueChanged())
            elif is_dir and kind != "modified" and parts[0] not in NOT_RUNS:
                self.post(LevelDirChanged(str(self.root / parts[0])))
        elif len(parts) == 2 and is_dir and kind != "modified":
            if parts[0] not in NOT_RUNS:
                self.post(RunFilesChanged(str(self.root / parts[0] / parts[1]), ""))
        elif len(parts) == 2 and parts[1] in RUN_FILES and parts[0] not in NOT_RUNS:
            self.post(RunFilesChanged(str(self.root / parts[0]), parts[1]))  # RUNS/<RUN>/ (the seed's layout)
        elif len(parts) == 3 and parts[2] in RUN_FILES:
            self.post(RunFilesChanged(str(self.root / parts[0] / parts[1]), parts[2]))

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        if event.event_type == "moved":
            self._route(str(event.dest_path), event.is_directory, "moved")
            self._route(str(event.src_path), event.is_directory, "moved")
        else:
            self._route(str(event.src_path), event.is_directory, event.event_type)


class RunsWatcher:
    """Owns the observer. `start()` on mount, `stop()` on unmount."""

    def __init__(self, root: Path, post: Callable[[Message], object], poll: bool = False,
                 poll_interval: float = 0.5, config: Path | None = None) -> None:
        self.root = Path(root).resolve()
        self.post = post
        self.poll = poll
        self.config = Path(config).resolve() if config else None
        self.observer = PollingObserver(timeout=poll_interval) if poll else Observer()

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.observer.schedule(_Handler(self.root, self.post), str(self.root), recursive=True, event_filter=EVENTS)
        if self.config is not None and self.config.parent.is_dir():  # the directory: editors replace the file
            self.observer.schedule(_ConfigHandler(self.config, self.post), str(self.config.parent), recursive=False,
                                   event_filter=EVENTS)
        self.observer.daemon = True
        self.observer.start()

    def stop(self) -> None:
        if self.observer.is_alive():
            self.observer.stop()
            self.observer.join(timeout=2)

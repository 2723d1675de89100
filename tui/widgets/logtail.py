"""A live tail of the selected run's train.log, read incrementally in a thread worker."""

from __future__ import annotations

from pathlib import Path

from textual import work
from textual.widgets import Log

from common.text import printable
from engine.rundir.layout import LOG
from engine.rundir.files import read_tail


class LogTail(Log):
    """`follow(run_dir)` switches file; `poll()` reads whatever was appended."""

    DEFAULT_CSS = """
    LogTail { height: 1fr; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, max_lines=2000, highlight=False)
        self.path: Path | None = None
        self._offset = 0

    def follow(self, run_dir: str | None) -> None:
        path = Path(run_dir) / LOG if run_dir else None
        if path == self.path:
            return
        self.path, self._offset = path, 0
        self.clear()
        if path is not None:
            self.poll()

    def poll(self) -> None:
        if self.path is not None:
            self._read(self.path, self._offset)

    @work(thread=True, exclusive=True, group="logtail", exit_on_error=False)
    def _read(self, path: Path, offset: int) -> None:
        text, new_offset, reset = read_tail(path, offset)
        self.app.call_from_thread(self._append, path, text, new_offset, reset)

    def _append(self, path: Path, text: str, offset: int, reset: bool) -> None:
        if path != self.path:
            return
        if reset:
            self.clear()
            if not text and not path.exists():
                self.write_line(f"({LOG} not written yet)")
        self._offset = offset
        if text:
            self.write(printable(text, multiline=True))  # a log line may carry a terminal's escapes

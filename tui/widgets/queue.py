"""The queue panel: every job with its state, the worker's status, and the job actions
(cancel, retry, retry with resume, move up/down, remove), posted upward as messages."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Static

from tui.widgets.leaderboard import STATE_STYLE

COLUMNS = ("id", "state", "level", "dataset", "epochs", "nproc", "gpus", "run", "error")


def _get(obj: Any, name: str, default: Any = None) -> Any:
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


def _ago(stamp: Any) -> str:
    try:
        if isinstance(stamp, (int, float)):
            age = datetime.now().timestamp() - float(stamp)
        else:
            age = (datetime.now().astimezone() - datetime.fromisoformat(str(stamp))).total_seconds()
    except (TypeError, ValueError):
        return "?"
    return f"{max(0, int(age))}s ago"


def _gpu_list(gpus: Any) -> list[str]:
    """"0,1" -> ["0", "1"]; None, "" or garbage -> []."""
    if not isinstance(gpus, str):
        return []
    return [g.strip() for g in gpus.split(",") if g.strip()]


def gpus_text(job: Any) -> Text:
    """The GPUs a job holds (running: bold), or ran on (finished: dim); "—" for none (CPU)."""
    gpus = _gpu_list(_get(job, "gpus"))
    if not gpus:
        return Text("—", style="dim")
    return Text(",".join(gpus), style="bold cyan" if _get(job, "state") == "running" else "dim")


def nproc_text(job: Any) -> str:
    nproc = _get(job, "nproc")
    return str(nproc) if isinstance(nproc, int) and not isinstance(nproc, bool) and nproc > 0 else "1"


def worker_text(status: Any, jobs: list[Any] | None = None) -> Text:
    if status is None:
        return Text("worker: unknown (queue not available)", style="dim")
    if _get(status, "alive"):
        running = _get(status, "running") or []
        text = (f"worker: alive · pid {_get(status, 'pid')} on {_get(status, 'host')} · heartbeat "
                f"{_ago(_get(status, 'heartbeat'))} · running {', '.join(map(str, running)) or 'nothing'}")
        gpus = _gpu_list(_get(status, "gpus"))
        if gpus:
            held = {g for job in jobs or [] if _get(job, "state") == "running" for g in _gpu_list(_get(job, "gpus"))}
            free = [g for g in gpus if g not in held]
            text += f" · gpus {','.join(gpus)} (free: {','.join(free) or 'none'})"
        return Text(text, style="green")
    return Text("worker: not running (w starts one; adding a job starts one)", style="yellow")


class QueuePanel(Vertical):
    DEFAULT_CSS = """
    QueuePanel { height: 1fr; }
    QueuePanel > #worker { height: 1; padding: 0 1; }
    QueuePanel > DataTable { height: 1fr; }
    """

    BINDINGS = [
        Binding("x", "job('cancel')", "Cancel", id="queue.cancel", tooltip="Cancel the job (SIGTERM, then SIGKILL)"),
        Binding("r", "job('retry')", "Retry", id="queue.retry", tooltip="Queue the job again"),
        Binding("R", "job('resume')", "Retry+resume", id="queue.retry_resume",
                tooltip="Queue the job again, resuming from its last.pt"),
        Binding("K,shift+up", "job('up')", "Up", id="queue.move_up", tooltip="Move the job up the queue"),
        Binding("J,shift+down", "job('down')", "Down", id="queue.move_down", tooltip="Move the job down"),
        Binding("delete,d", "job('remove')", "Remove", id="queue.remove", tooltip="Remove the job from the list"),
        Binding("w", "worker", "Worker", id="queue.worker", tooltip="Start a worker if none is alive"),
        Binding("C", "clear_done", "Clear done", id="queue.clear_done", show=False,
                tooltip="Remove finished jobs from the list"),
    ]

    @dataclass
    class ActionRequested(Message):
        action: str
        job_id: int | None

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.jobs: list[Any] = []
        self.worker: Any = None

    def compose(self) -> ComposeResult:
        yield Static(worker_text(None), id="worker")
        table = DataTable(id="jobs", cursor_type="row", zebra_stripes=True)
        table.tooltip = "x cancel · r retry · R retry+resume · K/J move · d remove · w worker"
        yield table

    class Mounted(Message):
        """The panel is ready for jobs (it is mounted lazily)."""

    def on_mount(self) -> None:
        if not self.query("#jobs"):  # the app quit while this panel was being mounted
            return
        table = self.query_one("#jobs", DataTable)
        for column in COLUMNS:
            table.add_column(column, key=column)
        self.post_message(self.Mounted())

    @property
    def selected_id(self) -> int | None:
        table = self.query_one("#jobs", DataTable)
        if table.row_count == 0:
            return None
        key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        return int(key.value)

    def set_jobs(self, jobs: list[Any], worker: Any, error: str | None = None) -> None:
        self.jobs, self.worker = jobs, worker
        self.query_one("#worker", Static).update(
            Text(f"queue unavailable: {error}", style="bold red") if error else worker_text(worker, jobs))
        table = self.query_one("#jobs", DataTable)
        selected = self.selected_id
        table.clear()
        for job in jobs:
            args = _get(job, "settings") or {}
            state = str(_get(job, "state"))
            pos = _get(job, "position")
            label = f"{state} #{pos}" if state == "queued" and pos else state
            run = _get(job, "run_dir") or ""
            table.add_row(
                str(_get(job, "id")), Text(label, style=STATE_STYLE.get(state, "")), str(_get(job, "level")),
                str(_get(job, "dataset") or args.get("train_data", "") or ""), str(args.get("num_epochs", "")),
                nproc_text(job), gpus_text(job), run.rstrip("/").rsplit("/", 1)[-1], Text(str(_get(job, "error") or ""), style="red"),
                key=str(_get(job, "id")))
        if selected is not None and str(selected) in table.rows:
            table.move_cursor(row=table.get_row_index(str(selected)), animate=False)

    def action_job(self, action: str) -> None:
        job_id = self.selected_id
        if job_id is not None:
            self.post_message(self.ActionRequested(action, job_id))

    def action_worker(self) -> None:
        self.post_message(self.ActionRequested("worker", None))

    def action_clear_done(self) -> None:
        self.post_message(self.ActionRequested("clear_done", None))

    @on(DataTable.RowSelected, "#jobs")
    def _selected(self, event: DataTable.RowSelected) -> None:
        event.stop()

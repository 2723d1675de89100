"""The Queue tab: the worker's status and every job. Its keys post typed requests (CancelJob,
RetryJob, ...), which it carries out in thread workers through the engine's queue; other panes
and the command palette post the same requests."""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from common.text import plural
from engine.rundir.states import STOP_GRACE_S
from tui.backend import Backend
from tui.messages import (CancelJob, ClearDone, MoveJob, PaneReady, QueueLoaded, RemoveJob, RetryJob, StartWorker,
                          StopWorker)
from tui.screens.dialogs import ConfirmScreen
from tui.widgets.logtail import LogTail
from tui.widgets.queue import JobsTable, gpus_use_text, jobs_progress, worker_text
from tui.refresh import guarded


class QueuePane(Vertical):
    DEFAULT_CSS = """
    QueuePane { height: 1fr; }
    QueuePane > #worker { height: 1; padding: 0 1; }
    QueuePane > #gpus-use { height: auto; padding: 0 1; display: none; }
    QueuePane.-gpus > #gpus-use { display: block; }
    QueuePane > JobsTable { height: 1fr; }
    QueuePane > #job-log { height: 8; display: none; border-top: solid $primary-darken-2; }
    QueuePane.-slurm-log > #job-log { display: block; }
    """

    BINDINGS = [
        Binding("x", "cancel", "Cancel", id="queue.cancel", tooltip="Cancel the job (SIGTERM, then SIGKILL)"),
        Binding("r", "retry(False)", "Retry", id="queue.retry", tooltip="Queue the job again"),
        Binding("R", "retry(True)", "Retry+resume", id="queue.retry_resume",
                tooltip="Queue the job again, resuming from its last.pt"),
        Binding("K,shift+up", "move(-1)", "Up", id="queue.move_up", tooltip="Move the job up the queue"),
        Binding("J,shift+down", "move(1)", "Down", id="queue.move_down", tooltip="Move the job down"),
        Binding("delete,d", "remove", "Remove", id="queue.remove", tooltip="Remove the job from the list"),
        Binding("w", "start_worker", "Worker", id="queue.worker", tooltip="Start a worker if none is alive"),
        Binding("W", "stop_worker", "Stop worker", id="queue.stop_worker", show=False,
                tooltip="Stop the worker: its running jobs are cancelled (they keep last.pt)"),
        Binding("C", "clear_done", "Clear done", id="queue.clear_done", show=False,
                tooltip="Remove done jobs from the list"),
    ]

    def __init__(self, backend: Backend, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.backend = backend
        self.jobs: list = []
        self.worker = None

    def compose(self) -> ComposeResult:
        yield Static(worker_text(None), id="worker")
        yield Static(id="gpus-use")
        table = JobsTable(id="jobs", cursor_type="row", zebra_stripes=True, fixed_columns=2)
        table.tooltip = "x cancel · r retry · R retry+resume · K/J move · d remove · w start · W stop worker"
        yield table
        yield LogTail(id="job-log")  # a Slurm job's train.log, written on the shared filesystem

    @property
    def table(self) -> JobsTable:
        return self.query_one(JobsTable)

    def on_mount(self) -> None:
        self.load()
        self.set_interval(3, self._tick)  # heartbeats and GPU use age while the tab is shown
        self.post_message(PaneReady(self))

    def _tick(self) -> None:
        tab = self.parent
        if tab is not None and tab.parent is not None and getattr(tab.parent, "current", None) == tab.id:
            self.load()

    # -- reading -----------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="queue", exit_on_error=False)
    def load(self) -> None:
        try:
            queue = self.backend.queue
            if queue is None:  # nothing queued here yet: no queue.db, and reading does not create one
                self.post_message(QueueLoaded([], None, None))
                return
            jobs = queue.jobs()
            self.post_message(QueueLoaded(jobs, queue.worker_status(), progress=jobs_progress(jobs)))
        except Exception as exc:  # the queue db may be locked, broken or not there yet
            self.post_message(QueueLoaded([], None, f"{exc.__class__.__name__}: {exc}"))

    @on(QueueLoaded)
    @guarded("the Queue tab")
    def _loaded(self, message: QueueLoaded) -> None:
        if message.error:  # one line; the rows read last time stay
            line = Text(f"queue unavailable: {message.error}; showing the last rows read", style="bold red")
            self.query_one("#worker", Static).update(line)
            return
        self.jobs, self.worker = message.jobs, message.worker
        if message.worker is None:
            line = Text("no queue yet: queueing a job (Launch tab) creates it and starts a worker", style="dim")
        else:
            line = worker_text(message.worker, message.jobs)
        self.query_one("#worker", Static).update(line)
        use = gpus_use_text(message.worker) if message.worker is not None else None
        self.set_class(use is not None, "-gpus")
        self.query_one("#gpus-use", Static).update(use or "")
        self.table.set_jobs(message.jobs, message.progress)
        self._follow_selected()
        self.query_one("#job-log", LogTail).poll()

    @on(DataTable.RowHighlighted)
    def _row_highlighted(self, message: DataTable.RowHighlighted) -> None:
        self._follow_selected()

    def _follow_selected(self) -> None:
        """Show the selected job's log tail when it runs on Slurm: the app cannot see its
        process, so its train.log is where it says how it goes."""
        selected = self.table.selected_id
        job = next((j for j in self.jobs if getattr(j, "id", None) == selected), None)
        on_slurm = job is not None and bool(getattr(job, "slurm_id", None))
        self.set_class(on_slurm, "-slurm-log")
        self.query_one("#job-log", LogTail).follow(getattr(job, "run_dir", None) if on_slurm else None)

    # -- keys: requests ----------------------------------------------------------------------
    def _post_for_selected(self, make) -> None:
        job_id = self.table.selected_id
        if job_id is not None:
            self.post_message(make(job_id))

    def action_cancel(self) -> None:
        self._post_for_selected(CancelJob)

    def action_retry(self, resume: bool) -> None:
        self._post_for_selected(lambda job_id: RetryJob(job_id, resume))

    def action_move(self, delta: int) -> None:
        self._post_for_selected(lambda job_id: MoveJob(job_id, delta))

    def action_remove(self) -> None:
        self._post_for_selected(RemoveJob)

    def action_start_worker(self) -> None:
        self.post_message(StartWorker())

    def action_stop_worker(self) -> None:
        running = [j for j in self.jobs if getattr(j, "state", None) == "running"]
        question = ("Stop the queue worker?" + (f"\n\nIts {plural(len(running), 'running job')} {'is' if len(running) == 1 else 'are'} cancelled; each keeps "
                                                 "last.pt, so R (retry with resume) continues it." if running else ""))
        self.app.push_screen(ConfirmScreen(question, "Stop"), lambda yes: yes and self.post_message(StopWorker()))

    def action_clear_done(self) -> None:
        self.post_message(ClearDone())

    # -- requests: carried out in workers ----------------------------------------------------
    @on(CancelJob)
    @work(thread=True, group="queue-action", exit_on_error=False)
    def _cancel(self, message: CancelJob) -> None:
        queue = self.backend.queue
        was = queue.get(message.job_id).state
        queue.cancel([message.job_id])
        note = (f"cancelling job {message.job_id}: the trainer saves last.pt and stops (SIGKILL after "
                f"{STOP_GRACE_S:g} s)" if was == "running" else f"job {message.job_id} cancelled")
        self.app.call_from_thread(self.notify, note, timeout=6)
        self.load()

    @on(RetryJob)
    @work(thread=True, group="queue-action", exit_on_error=False)
    def _retry(self, message: RetryJob) -> None:
        new_id = self.backend.queue.retry(message.job_id, resume=message.resume)
        self.backend.ensure_worker()
        how = "resuming from last.pt" if message.resume else "from scratch"
        self.app.call_from_thread(self.notify, f"job {message.job_id} queued again as job {new_id}, {how}", timeout=4)
        self.load()

    @on(MoveJob)
    @work(thread=True, group="queue-action", exit_on_error=False)
    def _move(self, message: MoveJob) -> None:
        queue = self.backend.queue
        job = queue.get(message.job_id)
        if job.position is None:
            raise ValueError(f"job {message.job_id} is {job.state}; only queued jobs move")
        queue.move(message.job_id, to=max(1, job.position + message.delta))
        self.load()

    @on(RemoveJob)
    @work(thread=True, group="queue-action", exit_on_error=False)
    def _remove(self, message: RemoveJob) -> None:
        self.backend.queue.remove([message.job_id])
        self.load()

    @on(ClearDone)
    @work(thread=True, group="queue-action", exit_on_error=False)
    def _clear_done(self, message: ClearDone) -> None:
        self.backend.queue.clear_done()
        self.load()

    @on(StartWorker)
    @work(thread=True, group="queue-action", exit_on_error=False)
    def _start_worker(self, message: StartWorker) -> None:
        pid = self.backend.ensure_worker()
        self.app.call_from_thread(self.notify, f"worker pid {pid}" if pid else "nothing queued: no worker needed")
        self.load()

    @on(StopWorker)
    @work(thread=True, group="queue-action", exit_on_error=False)
    def _stop_worker(self, message: StopWorker) -> None:
        pid, cancelled = self.backend.stop_worker()
        note = "no worker is running" if pid is None else f"stopped the worker (pid {pid})" + (
            f"; cancelled {'job' if len(cancelled) == 1 else 'jobs'} {', '.join(map(str, cancelled))}" if cancelled else "")
        self.app.call_from_thread(self.notify, note, timeout=6)
        self.load()

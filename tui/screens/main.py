"""The main screen: Runs (leaderboard + curves / details / log), Launch and Queue as tabs.

It is the hub: children post messages up, the watcher's messages arrive here, and every slow
thing (reading run directories, the queue, engine subprocesses) runs in a thread worker that
posts a message back. Over 400 lines because it is that hub: each handler is short, and the
widgets hold their own logic."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import DataTable, Footer, SelectionList, TabbedContent, TabPane
from textual.worker import Worker, WorkerState, get_current_worker

from adapters.registry import Registry
from engine.rundir.layout import BEST, FINAL, LAST, LOG
from engine.rundir.summary import load_runs, summarize
from tui.backend import Backend
from engine.rundir.evaluation import parse_any_eval
from engine.rundir.run import RunData, read_run
from tui.messages import (CheckpointDescribed, DatasetInspected, JobsSubmitted, LevelsCounted, QueueLoaded, RunRead,
                          RunsLoaded, RunsShown, SynthProgressed)
from tui.watcher import LevelDirChanged, QueueChanged, RunFilesChanged
from tui.widgets.acceptance import AcceptancePanel, AcceptanceRun
from tui.widgets.curves import CurvesPanel
from tui.widgets.details import RunDetails
from tui.widgets.launch import LaunchPanel, LaunchRequest
from tui.widgets.leaderboard import Leaderboard
from tui.widgets.logtail import LogTail
from tui.widgets.queue import QueuePanel

NOTIFY_STATES = {"done": "information", "failed": "error", "diverged": "error"}
CHECKPOINTS = (BEST, FINAL, LAST)  # the details pane describes the first that exists
ACTIVE_STATES = ("running", "queued")
DEMO_EPOCHS = 10


class MainScreen(Screen):
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]

    BINDINGS = [
        Binding("1", "tab('runs')", "Runs", id="tab.runs", tooltip="Leaderboard and curves"),
        Binding("2", "tab('launch')", "Launch", id="tab.launch", tooltip="Queue new trainings"),
        Binding("3", "tab('queue')", "Queue", id="tab.queue", tooltip="Jobs and the worker"),
        Binding("c", "inspect('curves')", "Curves", id="inspector.curves", show=False),
        Binding("i", "inspect('details')", "Details", id="inspector.details", show=False,
                tooltip="Config of the run; diff of two marked runs"),
        Binding("t", "inspect('log')", "Log", id="inspector.log", show=False, tooltip="Live tail of train.log"),
        Binding("p", "inspect('accept')", "Accept", id="inspector.accept", show=False,
                tooltip="Acceptance by position (eval.json) of the selected and marked runs"),
        Binding("a", "accept_threshold", "Threshold", id="accept.threshold", show=False,
                tooltip="Acceptance plot: next threshold of the runs' eval.json"),
        Binding("g", "log_y", "Log y", id="curves.log_y", show=False, tooltip="Toggle log-scale y"),
        Binding("e", "ema", "EMA", id="curves.ema", show=False, tooltip="Toggle EMA smoothing"),
        Binding("m", "metric", "Metric", id="curves.metric", show=False, tooltip="Next overlay metric"),
        Binding("v", "view", "Plot", id="curves.view", show=False, tooltip="Next plot (narrow terminals)"),
        Binding("ctrl+r", "rescan", "Rescan", id="runs.rescan", show=False, tooltip="Read every run again"),
    ]

    def __init__(self, runs_dir: Path, registry: Registry | None, backend: Backend) -> None:
        super().__init__(id="main")
        self.runs_dir = Path(runs_dir)
        self.registry = registry
        self.backend = backend
        self.selected: str | None = None
        self.marked: list[str] = []
        self.cache: dict[str, RunData] = {}
        self.states: dict[str, str] = {}
        self.follow_new = False
        self.accept_tau: str | None = None  # threshold of the acceptance plot; None: each file's primary
        self._panels: set[str] = set()
        self.checkpoints: dict[tuple[str, int], tuple[dict | None, str | None]] = {}

    def compose(self) -> ComposeResult:
        with TabbedContent(id="tabs", initial="runs"):
            with TabPane("Runs 1", id="runs"):
                yield Leaderboard(id="leaderboard")
                with TabbedContent(id="inspector", initial="curves"):
                    with TabPane("Curves c", id="curves"):
                        yield CurvesPanel(id="curves-panel")
                    with TabPane("Details i", id="details"):
                        yield RunDetails(id="details-panel")
                    with TabPane("Log t", id="log"):
                        yield LogTail(id="log-panel")
                    yield TabPane("Accept p", id="accept")  # panels below: see _mount_panels
            yield TabPane("Launch 2", id="launch")
            yield TabPane("Queue 3", id="queue")
        yield Footer()

    # -- shortcuts to children ---------------------------------------------------------------
    @property
    def leaderboard(self) -> Leaderboard:
        return self.query_one(Leaderboard)

    @property
    def curves(self) -> CurvesPanel:
        return self.query_one(CurvesPanel)

    @property
    def launch(self) -> LaunchPanel:
        return self.query_one(LaunchPanel)

    @property
    def queue_panel(self) -> QueuePanel:
        return self.query_one(QueuePanel)

    def on_mount(self) -> None:
        self.leaderboard.table.focus()
        # Read the runs once the first frame is out: the reader thread and the event loop share
        # one interpreter lock, so starting it earlier only slows the first paint down.
        self.call_after_refresh(self.scan)
        self.set_timer(3, self._mount_panels)  # in case the first scan is slow (network filesystem)
        self.load_queue()
        self.set_interval(15, self._recheck_running)
        self.set_interval(3, self._tick_queue)

    # -- scanning and reading (thread workers) -----------------------------------------------
    @work(thread=True, exclusive=True, group="scan", exit_on_error=False)
    def scan(self, known: list[str] | None = None) -> None:
        known = known or []
        runs = load_runs(self.runs_dir)
        found = {r.path for r in runs}
        # Rows that vanished stay, saying what is wrong.
        runs += [summarize(Path(p)) for p in known if p not in found]
        datasets = self.registry.datasets.values() if self.registry else []
        first_run = not runs and not any(Path(d.train).exists() for d in datasets)
        self.post_message(RunsLoaded(runs, first_run))

    def read(self, path: str, full: bool) -> None:
        self.run_worker(lambda: self._read(path, full), thread=True, exclusive=True,
                        group=f"read:{path}", exit_on_error=False)

    def _read(self, path: str, full: bool) -> None:
        data = read_run(path, full=full)
        if not get_current_worker().is_cancelled:
            self.post_message(RunRead(data, full))

    @work(thread=True, exclusive=True, group="queue", exit_on_error=False)
    def load_queue(self) -> None:
        try:
            queue = self.backend.queue
            self.post_message(QueueLoaded(queue.jobs(), queue.worker_status()))
        except Exception as exc:  # the queue db may be locked, missing or not installed yet
            self.post_message(QueueLoaded([], None, f"{exc.__class__.__name__}: {exc}"))

    def _recheck_running(self) -> None:
        """A running run whose heartbeat goes stale becomes interrupted without a file event."""
        for path, state in self.states.items():
            if state == "running":
                self.read(path, full=path == self.selected)

    def _tick_queue(self) -> None:
        if self.query_one("#tabs", TabbedContent).active == "queue":
            self.load_queue()

    # -- watcher messages --------------------------------------------------------------------
    @on(RunFilesChanged)
    def _files_changed(self, message: RunFilesChanged) -> None:
        if message.name == LOG:
            if message.run_dir == self.selected:
                self.query_one(LogTail).poll()
            return
        self.read(message.run_dir, full=message.run_dir == self.selected or message.run_dir in self.marked)

    @on(LevelDirChanged)
    def _level_changed(self, message: LevelDirChanged) -> None:
        self.scan(list(self.leaderboard.rows))

    @on(QueueChanged)
    def _queue_changed(self, message: QueueChanged) -> None:
        self.load_queue()

    # -- worker results ----------------------------------------------------------------------
    @on(RunsLoaded)
    def _runs_loaded(self, message: RunsLoaded) -> None:
        known = set(self.states)
        for run in message.runs:
            self.states[run.path] = run.state
        self.leaderboard.set_runs(message.runs)
        # Loaded means on screen: after the table has measured its rows and the screen refreshed.
        self.leaderboard.table.call_after_refresh(lambda: self.post_message(RunsShown()))
        if self.follow_new:
            new = [r.path for r in message.runs if r.path not in known]
            if new:
                self.leaderboard.select_path(max(new))
                self.follow_new = False
        if message.first_run:
            self._offer_demo()

    @on(RunsShown)
    def _runs_shown(self) -> None:
        self._mount_panels()

    def _mount_panels(self, panes: set[str] | None = None) -> None:
        """The hidden panels (Launch, Queue, Accept) are mounted once the first rows are on
        screen, or at once when one is asked for: building them while the runs are read would
        hold up the first frame and the leaderboard. Until then `query(LaunchPanel)` is empty."""
        makers = {"accept": lambda: AcceptancePanel(id="accept-panel"),
                  "launch": lambda: LaunchPanel(self.registry, id="launch-panel"),
                  "queue": lambda: QueuePanel(id="queue-panel")}
        for pane, make in makers.items():
            if pane not in self._panels and (panes is None or pane in panes):
                self._panels.add(pane)
                self.query_one(f"#{pane}", TabPane).mount(make())

    def _ready(self, cls: type[Widget]) -> bool:
        """Whether the panel of this class is mounted, its children in place."""
        return any(w.is_mounted for w in self.query(cls))

    def with_launch(self, action: Callable[[LaunchPanel], object]) -> None:
        """Run action(launch panel) once the panel is mounted (mounting it now if need be)."""
        self._mount_panels({"launch"})
        if not self._ready(LaunchPanel):
            self.set_timer(0.05, lambda: self.with_launch(action))
            return
        action(self.launch)

    def _offer_demo(self) -> None:
        def offer(launch: LaunchPanel) -> None:
            launch.set_first_run(True)
            self.action_tab("launch")
        self.with_launch(offer)

    @on(RunRead)
    def _run_read(self, message: RunRead) -> None:
        data = message.data
        run = data.summary
        before = self.states.get(run.path)
        self.states[run.path] = run.state
        is_new = run.path not in self.leaderboard.rows
        self.leaderboard.update_run(run)
        if message.full:
            self.cache[run.path] = data
        elif run.path in self.cache:
            self.cache[run.path].summary = run
        if is_new and self.follow_new:
            self.follow_new = False
            self.leaderboard.select_path(run.path)
        if before in ACTIVE_STATES and run.state in NOTIFY_STATES:
            detail = f": {run.error}" if run.error and run.state != "done" else ""
            loss = f" · best val {run.best_val_loss:.4f}" if run.best_val_loss is not None else ""
            self.notify(f"{run.run} {run.state}{loss}{detail}", title=f"run {run.state}",
                        severity=NOTIFY_STATES[run.state], timeout=8)
            self.app.bell()
        if run.path == self.selected:
            self._show_selected()
        if run.path in self.marked:
            self._show_marked()

    @on(QueueLoaded)
    def _queue_loaded(self, message: QueueLoaded) -> None:
        for panel in self.query(QueuePanel):
            if panel.is_mounted:  # else it asks again when it is (QueuePanel.Mounted)
                panel.set_jobs(message.jobs, message.worker, message.error)

    # -- selection, marks, inspector ---------------------------------------------------------
    @on(Leaderboard.RunHighlighted)
    def _highlighted(self, message: Leaderboard.RunHighlighted) -> None:
        if message.path == self.selected:
            return
        self.selected = message.path
        self.query_one(LogTail).follow(message.path)
        if message.path:
            self._show_selected()
            self.read(message.path, full=True)

    def _show_selected(self) -> None:
        data = self.cache.get(self.selected or "")
        if data is None:
            self.curves.show_run(Path(self.selected or "").name, {}, {}, None)
            self._show_acceptance()
            return
        run = data.summary
        self.curves.show_run(run.run, data.history, data.status, run.state)
        if len(self.marked) != 2:
            self.query_one(RunDetails).show_config(run.run, data.config, data.problems, run.error)
            self._describe_checkpoint()
        self._show_acceptance()

    def _describe_checkpoint(self) -> None:
        """The selected run's checkpoint, read by the engine once the Details tab shows it (the
        engine needs torch: a subprocess, so not for every row scrolled past)."""
        path = self.selected
        if not path or self.query_one("#inspector", TabbedContent).active != "details":
            return
        checkpoint = next((Path(path) / name for name in CHECKPOINTS if (Path(path) / name).is_file()), None)
        if checkpoint is None:
            self.query_one(RunDetails).show_checkpoint(None)
            return
        stamp = (str(checkpoint), checkpoint.stat().st_mtime_ns)
        if stamp in self.checkpoints:
            self.query_one(RunDetails).show_checkpoint(*self.checkpoints[stamp])
            return
        self.describe_checkpoint(path, stamp)

    @work(thread=True, exclusive=True, group="checkpoint", exit_on_error=False)
    def describe_checkpoint(self, path: str, stamp: tuple[str, int]) -> None:
        try:
            info, error = self.backend.checkpoint(stamp[0]), None
        except Exception as exc:  # a broken or foreign file: say so in the pane
            info, error = None, str(exc)
        if not get_current_worker().is_cancelled:
            self.checkpoints[stamp] = (info, error)
            self.post_message(CheckpointDescribed(path, info, error))

    @on(CheckpointDescribed)
    def _checkpoint_described(self, message: CheckpointDescribed) -> None:
        if message.path == self.selected and len(self.marked) != 2:
            self.query_one(RunDetails).show_checkpoint(message.info, message.error)

    @on(Leaderboard.MarksChanged)
    def _marks_changed(self, message: Leaderboard.MarksChanged) -> None:
        self.marked = message.paths
        for path in self.marked:
            if path not in self.cache:
                self.read(path, full=True)
        self._show_marked()
        if len(self.marked) != 2:
            self._show_selected()

    def _show_marked(self) -> None:
        ready = [self.cache[p] for p in self.marked if p in self.cache]
        self.curves.show_overlay({d.summary.run: d.history for d in ready})
        if len(self.marked) == 2 and len(ready) == 2:
            self.query_one(RunDetails).show_diff((ready[0].summary.run, ready[0].config),
                                                 (ready[1].summary.run, ready[1].config))
        self._show_acceptance()

    def _show_acceptance(self) -> None:
        """Acceptance by position: the selected run, then every marked run (from eval.json)."""
        paths = ([self.selected] if self.selected else []) + [p for p in self.marked if p != self.selected]
        runs = []
        for path in paths:
            data = self.cache.get(path)
            if data is None:
                runs.append(AcceptanceRun(Path(path).name, None, "reading...", path == self.selected))
                continue
            view, problem = data.evaluation, data.eval_problem
            if self.accept_tau is not None and data.eval_data is not None:
                view, problem = parse_any_eval(data.eval_data, self.accept_tau)
            runs.append(AcceptanceRun(data.summary.run, view, problem, path == self.selected))
        for panel in self.query(AcceptancePanel):
            if panel.is_mounted:  # else it asks again when it is (AcceptancePanel.Mounted)
                panel.show(runs)

    @on(AcceptancePanel.Mounted)
    def _acceptance_mounted(self, message: AcceptancePanel.Mounted) -> None:
        self._show_acceptance()

    # -- fork and resume ---------------------------------------------------------------------
    @on(Leaderboard.ForkRequested)
    def _fork(self, message: Leaderboard.ForkRequested) -> None:
        data = self.cache.get(message.path)
        if data is None or not data.config:
            self.notify("this run has no readable config.json to fork", severity="warning")
            return

        def fork(launch: LaunchPanel) -> None:
            problem = launch.fill_from_config(data.config)
            if problem:
                self.notify(problem, severity="warning")
                return
            self.action_tab("launch")
            self.notify(f"forked {data.summary.run}: edit and press ctrl+s")
        self.with_launch(fork)

    @on(Leaderboard.ResumeRequested)
    def _resume(self, message: Leaderboard.ResumeRequested) -> None:
        state = self.states.get(message.path)
        if state not in ("interrupted", "cancelled", "failed"):
            self.notify(f"only interrupted, cancelled or failed runs resume (this one is {state})",
                        severity="warning")
            return
        self.resume_run(message.path)

    @work(thread=True, group="queue-action", exit_on_error=False)
    def resume_run(self, path: str) -> None:
        job = self.backend.job_for_run(path)
        if job is None:
            self.app.call_from_thread(self.notify, "this run was not started by the queue: resume it with "
                                      f"`adapter-engine train --resume {path}`", severity="warning")
            return
        new_id = self.backend.queue.retry(job.id, resume=True)
        self.backend.ensure_worker()
        self.app.call_from_thread(self.notify, f"resuming {Path(path).name} as job {new_id}")
        self.load_queue()

    # -- launch ------------------------------------------------------------------------------
    @on(LaunchPanel.Submitted)
    def _submitted(self, message: LaunchPanel.Submitted) -> None:
        self.submit(message.request)

    @work(thread=True, group="queue-action", exit_on_error=False)
    def submit(self, request: LaunchRequest) -> None:
        ids = self.backend.submit(request)
        self.post_message(JobsSubmitted(ids, request.levels, request.front))

    @on(JobsSubmitted)
    def _jobs_submitted(self, message: JobsSubmitted) -> None:
        where = "at the front" if message.front else "at the back"
        self.notify(f"queued {', '.join(message.levels)} {where} (jobs {', '.join(map(str, message.ids))})")
        self.follow_new = True
        self.load_queue()
        self.action_tab("runs")

    @on(LaunchPanel.DatasetChanged)
    def _dataset_changed(self, message: LaunchPanel.DatasetChanged) -> None:
        self.inspect_dataset(message.path)

    @work(thread=True, exclusive=True, group="inspect", exit_on_error=False)
    def inspect_dataset(self, path: str) -> None:
        try:
            info, error = self.backend.inspect(path), None
        except Exception as exc:
            info, error = None, str(exc)
        if not get_current_worker().is_cancelled:
            self.post_message(DatasetInspected(path, info, error))

    @on(DatasetInspected)
    def _inspected(self, message: DatasetInspected) -> None:
        self.with_launch(lambda launch: launch.show_dataset(message.info, message.error))

    @on(LaunchPanel.ParamsWanted)
    def _params_wanted(self, message: LaunchPanel.ParamsWanted) -> None:
        self.count_levels(message.hidden_dim)

    @work(thread=True, exclusive=True, group="levels", exit_on_error=False)
    def count_levels(self, hidden_dim: int) -> None:
        rows = self.backend.levels(hidden_dim)
        self.post_message(LevelsCounted(hidden_dim, rows))

    @on(LevelsCounted)
    def _levels_counted(self, message: LevelsCounted) -> None:
        self.with_launch(lambda launch: launch.set_params(message.hidden_dim, message.rows))

    @on(LaunchPanel.DemoRequested)
    def _demo(self, message: LaunchPanel.DemoRequested) -> None:
        self.make_demo()

    @work(thread=True, exclusive=True, group="demo", exit_on_error=False)
    def make_demo(self) -> None:
        if not self.registry or "demo" not in self.registry.datasets:
            raise RuntimeError("adapters.toml has no [datasets.demo]")
        entry = self.registry.datasets["demo"]
        if not Path(entry.train).exists():
            self.backend.synth(Path(entry.train).parent, lambda line: self.post_message(SynthProgressed(line)))
        self.post_message(SynthProgressed("demo dataset ready; queueing L1"))
        level = "L1" if "L1" in self.registry.levels else next(iter(self.registry.levels))
        request = LaunchRequest([level], {"num_epochs": DEMO_EPOCHS}, front=True, dataset="demo")
        self.post_message(JobsSubmitted(self.backend.submit(request), [level], True))

    @on(SynthProgressed)
    def _synth_progress(self, message: SynthProgressed) -> None:
        self.with_launch(lambda launch: launch.synth_progress(message.line))

    @on(QueuePanel.Mounted)
    def _queue_mounted(self, message: QueuePanel.Mounted) -> None:
        self.load_queue()

    @on(QueuePanel.ActionRequested)
    def _queue_action(self, message: QueuePanel.ActionRequested) -> None:
        self.queue_action(message.action, message.job_id)

    @work(thread=True, group="queue-action", exit_on_error=False)
    def queue_action(self, action: str, job_id: int | None) -> None:
        queue = self.backend.queue
        if action == "cancel":
            queue.cancel([job_id])
        elif action in ("retry", "resume"):
            queue.retry(job_id, resume=action == "resume")
            self.backend.ensure_worker()
        elif action in ("up", "down"):
            job = queue.get(job_id)
            if job.position is None:
                raise ValueError(f"job {job_id} is {job.state}; only queued jobs move")
            queue.move(job_id, to=max(1, job.position + (-1 if action == "up" else 1)))
        elif action == "remove":
            queue.remove([job_id])
        elif action == "clear_done":
            queue.clear_done()
        elif action == "worker":
            pid = self.backend.ensure_worker()
            self.app.call_from_thread(self.notify, f"worker pid {pid}" if pid else "worker found nothing to do")
        self.load_queue()

    # -- errors from any worker --------------------------------------------------------------
    @on(Worker.StateChanged)
    def _worker_failed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            error = event.worker.error
            self.notify(str(error).splitlines()[0] if str(error) else error.__class__.__name__,
                        title=event.worker.group, severity="error", timeout=8)
            if event.worker.group == "demo":
                self.with_launch(lambda launch: launch.synth_progress(f"failed: {error}"))

    # -- actions -----------------------------------------------------------------------------
    def action_tab(self, tab: str) -> None:
        self.query_one("#tabs", TabbedContent).active = tab
        self._mount_panels({tab})
        if (tab == "launch" and not self._ready(LaunchPanel)) or (tab == "queue" and not self._ready(QueuePanel)):
            self.set_timer(0.05, lambda: self.action_tab(tab))  # still being mounted
            return
        if tab == "runs":
            self.leaderboard.table.focus()
        elif tab == "queue":
            self.queue_panel.query_one(DataTable).focus()
            self.load_queue()
        elif tab == "launch":
            if self.launch.has_class("-first-run"):
                self.launch.query_one("#demo").focus()
            else:
                self.launch.query_one(SelectionList).focus()
            if not self.launch.params:
                self.count_levels(self.launch.hidden_dim)

    def action_inspect(self, pane: str) -> None:
        self.query_one("#tabs", TabbedContent).active = "runs"
        self.query_one("#inspector", TabbedContent).active = pane
        self._mount_panels({pane})

    def action_log_y(self) -> None:
        self.curves.toggle_log()

    def action_ema(self) -> None:
        self.curves.toggle_smooth()

    def action_metric(self) -> None:
        self.notify(f"overlay metric: {self.curves.next_metric()}", timeout=2)

    def action_view(self) -> None:
        self.curves.next_view()

    def action_accept_threshold(self) -> None:
        """Step the acceptance plot through the thresholds the shown runs were evaluated at."""
        shown = [self.cache[p] for p in [self.selected, *self.marked] if p in self.cache]
        views = [d.evaluation for d in shown if d.evaluation is not None]
        if not views:
            self.notify("no eval.json to switch thresholds in", severity="warning", timeout=3)
            return
        thresholds = views[0].thresholds
        current = self.accept_tau or views[0].tau
        self.accept_tau = thresholds[(thresholds.index(current) + 1) % len(thresholds)] \
            if current in thresholds else thresholds[0]
        self.notify(f"acceptance threshold: {self.accept_tau}", timeout=2)
        self._show_acceptance()

    def action_rescan(self) -> None:
        self.scan(list(self.leaderboard.rows))

    @on(TabbedContent.TabActivated, "#tabs")
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        self._mount_panels({event.pane.id})
        if event.pane.id == "queue":
            self.load_queue()

    @on(TabbedContent.TabActivated, "#inspector")
    def _inspector_activated(self, event: TabbedContent.TabActivated) -> None:
        self._mount_panels({event.pane.id})
        if event.pane.id == "details":
            self._describe_checkpoint()

    def run_data(self, path: str) -> Any:
        return self.cache.get(path)

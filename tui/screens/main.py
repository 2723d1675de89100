"""The main screen: a header saying which runs directory this is, the Runs, Launch and Queue
tabs, and the footer. Each tab is a pane that owns its widgets, workers and state; the screen
only lays them out, switches tabs, hands the watcher's messages to the pane they concern, and
carries the few requests that cross panes (a fork goes to Launch, queued jobs to Runs).

Launch and Queue are mounted lazily (after the first frame); what is asked of them before they
are in place waits for their PaneReady message."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.lazy import Lazy
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer, Static, TabbedContent, TabPane
from textual.worker import Worker, WorkerState

from adapters.registry import Registry
from common.errors import ConfigError
from common.text import printable
from engine.rundir.layout import RunsDir
from tui.backend import Backend
from tui.messages import ForkRun, JobsSubmitted, PaneReady, RegistryReloaded, RunsLoaded
from tui.panes.launch import LaunchPane
from tui.panes.queue import QueuePane
from tui.panes.runs import RunsPane
from tui.watcher import ConfigChanged, DatasetsChanged, LevelDirChanged, QueueChanged, RunFilesChanged

TABS = ("runs", "launch", "queue")


class MainScreen(Screen):
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]

    DEFAULT_CSS = """
    MainScreen > #header { height: 1; padding: 0 1; color: $text-muted; text-wrap: nowrap; text-overflow: ellipsis; }
    """

    BINDINGS = [
        # The tab labels show these keys already: not repeated in the footer.
        Binding("1", "tab('runs')", "Runs", id="tab.runs", show=False, tooltip="Leaderboard and curves"),
        Binding("2", "tab('launch')", "Launch", id="tab.launch", show=False, tooltip="Queue new trainings"),
        Binding("3", "tab('queue')", "Queue", id="tab.queue", show=False, tooltip="Jobs and the worker"),
        # In a text field the digits type: escape leaves the field first, or these switch at once.
        Binding("f1", "tab('runs')", "Runs", id="tab.runs_anywhere", show=False, priority=True,
                tooltip="Runs tab, also from a text field"),
        Binding("f2", "tab('launch')", "Launch", id="tab.launch_anywhere", show=False, priority=True,
                tooltip="Launch tab, also from a text field"),
        Binding("f3", "tab('queue')", "Queue", id="tab.queue_anywhere", show=False, priority=True,
                tooltip="Queue tab, also from a text field"),
        Binding("ctrl+s", "launch('start')", "Start now", id="launch.start_now", priority=True,
                tooltip="Queue the selected levels at the front and start"),
        Binding("ctrl+o", "launch('enqueue')", "Add to queue", id="launch.enqueue", priority=True,
                tooltip="Queue the selected levels at the back"),
        Binding("ctrl+l", "launch('preset')", "Queue preset", id="launch.preset", priority=True,
                tooltip="Queue every level of the chosen preset"),
    ]

    def __init__(self, runs: RunsDir, registry: Registry | None, backend: Backend, *,
                 config_path: Path | None = None, bell: bool = False) -> None:
        super().__init__(id="main")
        self.runs = runs
        self.runs_dir = runs.path
        self.registry = registry
        self.backend = backend
        self.config_path = config_path
        self.bell = bell
        self._ready: set[type] = set()
        self._pending: dict[type, list[Callable]] = {LaunchPane: [], QueuePane: []}

    def compose(self) -> ComposeResult:
        yield Static(Text(f"runs {printable(self.runs.describe())}"), id="header")
        with TabbedContent(id="tabs", initial="runs"):
            with TabPane("Runs 1", id="runs"):
                yield RunsPane(self.runs_dir, self.backend, bell=self.bell, id="runs-pane")
            with TabPane("Launch 2", id="launch"):
                yield Lazy(LaunchPane(self.registry, self.backend, id="launch-pane"))
            with TabPane("Queue 3", id="queue"):
                yield Lazy(QueuePane(self.backend, id="queue-pane"))
        yield Footer(compact=True)

    # -- the panes ---------------------------------------------------------------------------
    @property
    def runs_pane(self) -> RunsPane:
        return self.query_one(RunsPane)

    @property
    def leaderboard(self):
        return self.runs_pane.leaderboard

    @property
    def curves(self):
        return self.runs_pane.curves

    @property
    def launch(self) -> LaunchPane:
        return self.query_one(LaunchPane)

    @property
    def queue_panel(self) -> QueuePane:
        return self.query_one(QueuePane)

    @property
    def selected(self) -> str | None:
        return self.runs_pane.selected

    @property
    def cache(self) -> dict:
        return self.runs_pane.cache

    def with_pane(self, kind: type[Widget], action: Callable) -> None:
        """action(pane) now if the pane is in place, else as soon as it is."""
        if kind in self._ready:
            action(self.query_one(kind))
        else:
            self._pending[kind].append(action)

    @on(PaneReady)
    def _pane_ready(self, message: PaneReady) -> None:
        kind = type(message.pane)
        self._ready.add(kind)
        for action in self._pending.pop(kind, []):
            action(message.pane)
        self._pending[kind] = []

    # -- the watcher -------------------------------------------------------------------------
    @on(RunFilesChanged)
    def _files_changed(self, message: RunFilesChanged) -> None:
        self.runs_pane.files_changed(message)

    @on(LevelDirChanged)
    def _level_changed(self, message: LevelDirChanged) -> None:
        self.runs_pane.level_changed(message)

    @on(QueueChanged)
    def _queue_changed(self, message: QueueChanged) -> None:
        if QueuePane in self._ready:
            self.queue_panel.load()

    @on(DatasetsChanged)
    def _datasets_changed(self, message: DatasetsChanged) -> None:
        if LaunchPane in self._ready:
            self.launch.datasets_changed()

    @on(ConfigChanged)
    def _config_changed(self, message: ConfigChanged) -> None:
        self.reload_registry()

    @work(thread=True, exclusive=True, group="config", exit_on_error=False)
    def reload_registry(self) -> None:
        from adapters.registry import load_registry

        try:
            self.post_message(RegistryReloaded(load_registry(self.config_path), None))
        except ConfigError as exc:
            self.post_message(RegistryReloaded(None, str(exc)))

    @on(RegistryReloaded)
    async def _registry_reloaded(self, message: RegistryReloaded) -> None:
        if message.registry is None:
            self.notify(f"{message.error}; the Launch form keeps the last good one", title="adapters.toml",
                        severity="error", timeout=10)
            return
        added = sorted(set(message.registry.levels) - set(self.registry.levels if self.registry else ()))
        self.registry = message.registry
        if LaunchPane in self._ready:
            await self.launch.set_registry(message.registry)
            if any(Path(d.train).exists() for d in message.registry.datasets.values()):
                self.launch.set_first_run(False)  # a dataset now exists (registered by extract, say)
        else:
            self.with_pane(LaunchPane, lambda pane: self.call_later(pane.set_registry, message.registry))
        self.notify("adapters.toml reloaded" + (f": new {'level' if len(added) == 1 else 'levels'} {', '.join(added)}" if added else ""), timeout=4)

    # -- requests that cross panes -----------------------------------------------------------
    @on(RunsLoaded)
    def _runs_loaded(self, message: RunsLoaded) -> None:
        datasets = self.registry.datasets.values() if self.registry else []
        if message.first_run and not any(Path(d.train).exists() for d in datasets):
            def offer(launch: LaunchPane) -> None:
                launch.set_first_run(True)
                self.action_tab("launch")
            self.with_pane(LaunchPane, offer)

    @on(ForkRun)
    def _fork(self, message: ForkRun) -> None:
        def fork(launch: LaunchPane) -> None:
            problem = launch.fork(message.config, message.run_dir)
            if problem:
                self.notify(problem, severity="warning")
                return
            self.action_tab("launch")
            self.notify(f"forked {Path(message.run_dir).name}: edit, then ctrl+s", timeout=4)
        self.with_pane(LaunchPane, fork)

    @on(JobsSubmitted)
    def _jobs_submitted(self, message: JobsSubmitted) -> None:
        where = "at the front" if message.front else "at the back"
        self.notify(f"queued {', '.join(message.levels)} {where} (jobs {', '.join(map(str, message.ids))})")
        self.runs_pane.follow_new = True
        if QueuePane in self._ready:
            self.queue_panel.load()
        self.action_tab("runs")

    # -- errors from any worker --------------------------------------------------------------
    @on(Worker.StateChanged)
    def _worker_failed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            error = event.worker.error
            self.notify(str(error).splitlines()[0] if str(error) else error.__class__.__name__,
                        title=event.worker.group, severity="error", timeout=8)
            if event.worker.group == "demo":
                self.with_pane(LaunchPane, lambda launch: launch.form.synth_progress(f"failed: {error}"))

    # -- actions -----------------------------------------------------------------------------
    def action_tab(self, tab: str) -> None:
        self.query_one("#tabs", TabbedContent).active = tab
        if tab == "runs":
            self.leaderboard.table.focus()
        elif tab == "launch":
            self.with_pane(LaunchPane, lambda pane: pane.focus_form())
        elif tab == "queue":
            self.with_pane(QueuePane, lambda pane: (pane.table.focus(), pane.load()))

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        if action == "launch":  # Launch's actions: only while its tab is shown
            return self.query_one("#tabs", TabbedContent).active == "launch"
        return True

    def action_launch(self, what: str) -> None:
        def act(pane: LaunchPane) -> None:
            if what == "preset":
                pane.action_preset()
            else:
                pane.action_submit(what == "start")
        self.with_pane(LaunchPane, act)

    @on(TabbedContent.TabActivated, "#tabs")
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        self.refresh_bindings()  # the footer shows Launch's keys on its tab only
        if event.pane.id == "queue" and QueuePane in self._ready:
            self.queue_panel.load()

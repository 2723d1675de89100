"""The Textual app: small on purpose. It owns the one watchdog observer (started on mount,
stopped on unmount), the keys that work everywhere and the command palette, and installs the
main screen; everything else lives in panes, screens and widgets."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from adapters.registry import Registry, default_config_path, load_registry
from common.errors import ConfigError
from engine.rundir.layout import RunsDir, resolve_runs_dir
from tui.backend import Backend
from tui.messages import StartWorker
from tui.panes.launch import LaunchPane
from tui.panes.queue import QueuePane
from tui.panes.runs import RunsPane
from tui.screens.help import HelpScreen
from tui.screens.main import MainScreen
from tui.watcher import RunsWatcher
from tui.widgets.leaderboard import Leaderboard


class AdapterTUI(App):
    TITLE = "adapter-tui"
    CSS_PATH = "app.tcss"
    BINDINGS = [
        Binding("q", "quit", "Quit", id="app.quit", tooltip="Quit (training keeps running); in a text field: ctrl+q"),
        Binding("question_mark", "help", "Help", id="app.help", tooltip="All keys"),
    ]

    def __init__(self, runs: RunsDir, registry: Registry | None, backend: Backend, poll: bool = False,
                 config_error: str | None = None, config_path: Path | None = None, bell: bool = False) -> None:
        super().__init__()
        self.runs = runs
        self.runs_dir = runs.path
        self.registry = registry
        self.backend = backend
        self.poll = poll
        self.config_error = config_error
        self.config_path = config_path
        self.watcher: RunsWatcher | None = None
        self._main = MainScreen(runs, registry, backend, config_path=config_path, bell=bell)

    def get_default_screen(self) -> Screen:
        return self._main

    def on_mount(self) -> None:
        self.watcher = RunsWatcher(self.runs_dir, self._main.post_message, poll=self.poll, config=self.config_path)
        try:
            self.watcher.start()
        except OSError as exc:  # e.g. inotify watch limit: the user can still use --poll
            self.notify(f"cannot watch {self.runs_dir}: {exc}; try --poll", severity="error", timeout=15)
        if self.config_error:
            self.notify(self.config_error, title="adapters.toml", severity="error", timeout=20)

    def on_unmount(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()

    @property
    def main(self) -> MainScreen:
        return self._main

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            return
        self.push_screen(HelpScreen(self, [
            ("anywhere", self.BINDINGS + [b for b in MainScreen.BINDINGS if not b.id.startswith("launch.")]),
            ("Runs", RunsPane.BINDINGS + Leaderboard.BINDINGS),
            ("Launch", [b for b in MainScreen.BINDINGS if b.id.startswith("launch.")] + LaunchPane.BINDINGS),
            ("Queue", QueuePane.BINDINGS),
        ]))

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        # Textual's own "Keys" panel is left out: ours (below) lists every key of the app.
        yield from (c for c in super().get_system_commands(screen) if c.title != "Keys")
        main = self.main
        runs = main.runs_pane
        yield SystemCommand("Runs: leaderboard and curves", "Show the Runs tab", lambda: main.action_tab("runs"))
        yield SystemCommand("Launch: queue trainings", "Show the Launch tab", lambda: main.action_tab("launch"))
        yield SystemCommand("Queue: jobs and worker", "Show the Queue tab", lambda: main.action_tab("queue"))
        yield SystemCommand("Start now", "Queue the Launch form's levels at the front",
                            lambda: (main.action_tab("launch"), main.action_launch("start")))
        yield SystemCommand("Add to queue", "Queue the Launch form's levels at the back",
                            lambda: (main.action_tab("launch"), main.action_launch("enqueue")))
        yield SystemCommand("Queue preset", "Queue every level of the chosen preset",
                            lambda: (main.action_tab("launch"), main.action_launch("preset")))
        yield SystemCommand("Create demo dataset and train L1", "adapter-engine synth, then queue L1",
                            lambda: main.with_pane(LaunchPane, lambda pane: pane.make_demo()))
        yield SystemCommand("Start queue worker", "Start a detached worker if jobs wait",
                            lambda: main.with_pane(QueuePane, lambda pane: pane.post_message(StartWorker())))
        yield SystemCommand("Stop queue worker", "Its running jobs are cancelled and keep last.pt",
                            lambda: main.with_pane(QueuePane, lambda pane: pane.action_stop_worker()))
        yield SystemCommand("Leaderboard columns", "Choose the columns", runs.action_columns)
        yield SystemCommand("Show or hide archived runs", "Leaderboard", runs.leaderboard.action_toggle_archived)
        yield SystemCommand("Toggle log-scale y", "Curves", runs.action_log_y)
        yield SystemCommand("Smoothing: off / 0.6 / 0.9", "Curves", runs.action_smoothing)
        yield SystemCommand("Next overlay metric", "Curves of the selected and marked runs", runs.action_metric)
        yield SystemCommand("Run details / config diff", "Inspector", lambda: runs.action_inspect("details"))
        yield SystemCommand("Log tail", "Inspector", lambda: runs.action_inspect("log"))
        yield SystemCommand("Acceptance by position", "Inspector: eval.json of the selected and marked runs",
                            lambda: runs.action_inspect("accept"))
        yield SystemCommand("Next acceptance threshold", "Acceptance by position", runs.action_accept_threshold)
        yield SystemCommand("Rescan runs", "Read every run directory again", runs.action_rescan)
        yield SystemCommand("Keys", "Every key of adapter-tui, by where it works", self.action_help)


def make_app(runs_dir: str | Path | None = None, config: str | Path | None = None, poll: bool = False,
             backend: Backend | None = None, bell: bool = False) -> AdapterTUI:
    """Build the app (used by the CLI and every test). The runs directory is found as the
    engine finds it (--runs, $ADAPTER_RUNS, beside the project's adapters.toml, ./runs). A
    broken adapters.toml does not stop the app: the runs still show, and the error is displayed."""
    runs = resolve_runs_dir(runs_dir)
    registry, error = None, None
    try:
        registry = load_registry(config)
    except ConfigError as exc:
        error = str(exc)
    config_path = Path(config) if config else (registry.path if registry else default_config_path())
    return AdapterTUI(runs, registry, backend or Backend(runs.path, config_path), poll=poll, config_error=error,
                      config_path=config_path, bell=bell)

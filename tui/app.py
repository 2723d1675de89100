"""The Textual app: small on purpose. It owns the one watchdog observer (started on mount,
stopped on unmount) and installs the main screen; everything else lives in screens/widgets."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from common.errors import ConfigError
from adapters.registry import Registry, load_registry
from tui.backend import Backend
from tui.screens.help import HelpScreen
from tui.screens.main import MainScreen
from tui.watcher import RunsWatcher
from tui.widgets.launch import LaunchPanel
from tui.widgets.leaderboard import Leaderboard
from tui.widgets.queue import QueuePanel


class AdapterTUI(App):
    TITLE = "adapter-tui"
    CSS_PATH = "app.tcss"
    BINDINGS = [
        Binding("q", "quit", "Quit", id="app.quit", tooltip="Quit (training keeps running)"),
        Binding("question_mark", "help", "Help", id="app.help", tooltip="All keys"),
    ]

    def __init__(self, runs_dir: Path, registry: Registry | None, backend: Backend, poll: bool = False,
                 config_error: str | None = None) -> None:
        super().__init__()
        self.runs_dir = Path(runs_dir)
        self.registry = registry
        self.backend = backend
        self.poll = poll
        self.config_error = config_error
        self.watcher: RunsWatcher | None = None
        self._main = MainScreen(self.runs_dir, self.registry, self.backend)

    def get_default_screen(self) -> Screen:
        return self._main

    def on_mount(self) -> None:
        self.watcher = RunsWatcher(self.runs_dir, self._main.post_message, poll=self.poll)
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
        self.push_screen(HelpScreen([("anywhere", self.BINDINGS), ("main", MainScreen.BINDINGS),
                                     ("leaderboard", Leaderboard.BINDINGS), ("launch", LaunchPanel.BINDINGS),
                                     ("queue", QueuePanel.BINDINGS)]))

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        main = self.main
        yield SystemCommand("Runs: leaderboard and curves", "Show the Runs tab", lambda: main.action_tab("runs"))
        yield SystemCommand("Launch: queue trainings", "Show the Launch tab", lambda: main.action_tab("launch"))
        yield SystemCommand("Queue: jobs and worker", "Show the Queue tab", lambda: main.action_tab("queue"))
        yield SystemCommand("Start now", "Queue the Launch form's levels at the front",
                            lambda: main.with_launch(lambda launch: launch.action_submit(True)))
        yield SystemCommand("Add to queue", "Queue the Launch form's levels at the back",
                            lambda: main.with_launch(lambda launch: launch.action_submit(False)))
        yield SystemCommand("Queue preset", "Queue every level of the chosen preset",
                            lambda: main.with_launch(lambda launch: launch.action_preset()))
        yield SystemCommand("Create demo dataset and train L1", "adapter-engine synth, then queue L1",
                            main.make_demo)
        yield SystemCommand("Start queue worker", "Start a detached worker if none is alive",
                            lambda: main.queue_action("worker", None))
        yield SystemCommand("Toggle log-scale y", "Curves", main.action_log_y)
        yield SystemCommand("Toggle EMA smoothing", "Curves", main.action_ema)
        yield SystemCommand("Next overlay metric", "Curves of marked runs", main.action_metric)
        yield SystemCommand("Run details / config diff", "Inspector", lambda: main.action_inspect("details"))
        yield SystemCommand("Log tail", "Inspector", lambda: main.action_inspect("log"))
        yield SystemCommand("Acceptance by position", "Inspector: eval.json of the selected and marked runs",
                            lambda: main.action_inspect("accept"))
        yield SystemCommand("Next acceptance threshold", "Acceptance by position", main.action_accept_threshold)
        yield SystemCommand("Rescan runs", "Read every run directory again", main.action_rescan)
        yield SystemCommand("Keys", "Every key binding", self.action_help)


def make_app(runs_dir: str | Path = "runs", config: str | Path | None = None, poll: bool = False,
             backend: Backend | None = None) -> AdapterTUI:
    """Build the app (used by the CLI and every test). A broken adapters.toml does not stop
    the app: the runs still show, and the error is displayed."""
    runs_dir = Path(runs_dir).resolve()
    registry, error = None, None
    try:
        registry = load_registry(config)
    except ConfigError as exc:
        error = str(exc)
    config_path = Path(config) if config else (registry.path if registry else None)
    return AdapterTUI(runs_dir, registry, backend or Backend(runs_dir, config_path), poll=poll, config_error=error)

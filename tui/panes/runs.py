"""The Runs tab: the leaderboard over the inspector (tui/widgets/inspector.py).

It owns its state (the runs read, the selection, the marks), its thread workers (scanning,
reading a run, editing meta.json, deleting, queueing a measurement) and its keys; the inspector
draws what it holds. The screen forwards the watcher's messages about run directories to it."""

from __future__ import annotations

from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.worker import get_current_worker

from engine.rundir.delete import delete_run
from engine.rundir.index import RunIndex, fingerprint, load_indexed
from engine.rundir.layout import LOG, STEPS, is_run_dir
from engine.rundir.meta import tag_changes, update_meta
from engine.rundir.run import RunData, read_run
from engine.rundir.steps import read_steps
from engine.rundir.summary import summarize
from tui.backend import Backend
from tui.messages import ForkRun, RunRead, RunsLoaded, RunsShown, StepsRead
from tui.refresh import guarded
from tui.screens.dialogs import ColumnsScreen, ConfirmScreen, PromptScreen
from tui.watcher import LevelDirChanged, RunFilesChanged
from tui.widgets.curves import CurvesPanel
from tui.widgets.inspector import RunInspector
from tui.widgets.leaderboard import COLUMNS, Leaderboard
from tui.widgets.logtail import LogTail

NOTIFY_STATES = {"done": "information", "failed": "error", "diverged": "error", "cancelled": "warning"}
ACTIVE_STATES = ("running", "queued")
RESUMABLE = ("interrupted", "cancelled", "failed")


class RunsPane(Vertical):
    BINDINGS = [
        Binding("c", "inspect('curves')", "Curves", id="inspector.curves", show=False),
        Binding("i", "inspect('details')", "Details", id="inspector.details", show=False,
                tooltip="State, error, notes and config of the run; diff of the marked runs"),
        Binding("t", "inspect('log')", "Log", id="inspector.log", show=False, tooltip="Live tail of train.log"),
        Binding("p", "inspect('accept')", "Accept", id="inspector.accept", show=False,
                tooltip="Acceptance by position (eval.json) of the selected and marked runs"),
        Binding("a", "accept_threshold", "Threshold", id="accept.threshold", show=False,
                tooltip="Acceptance plot: next threshold of the runs' eval.json"),
        Binding("h", "inspect('hparams')", "Settings", id="inspector.hparams", show=False,
                tooltip="Which settings matter, across the selected run's sweep or the marked runs"),
        Binding("y", "hparams_metric", "Metric", id="hparams.metric", show=False,
                tooltip="Which settings matter: rank by the next metric"),
        Binding("g", "log_y", "Log y", id="curves.log_y", show=False, tooltip="Toggle log-scale y"),
        Binding("e", "smoothing", "Smooth", id="curves.smoothing", show=False,
                tooltip="Smoothing weight: off, 0.6, 0.9"),
        Binding("m", "metric", "Metric", id="curves.metric", show=False, tooltip="Next overlay metric"),
        Binding("v", "view", "Plot", id="curves.view", show=False, tooltip="Next plot (narrow terminals)"),
        Binding("x", "x_axis", "X axis", id="curves.x_axis", show=False,
                tooltip="Curves against epochs, steps or wall time (steps.jsonl)"),
        Binding("w", "inspect('speedup')", "Speedup", id="inspector.speedup", show=False,
                tooltip="Estimated vs measured speedup of every run that has both"),
        Binding("M", "measure", "Measure speedup", id="runs.measure", show=False,
                tooltip="Queue `speculate` for this run: its speedup in a real draft-verify loop"),
        Binding("f", "fork", "Fork", id="runs.fork", tooltip="Launch form filled with this run's settings"),
        Binding("R", "resume", "Resume", id="runs.resume", show=False, tooltip="Resume this run through the queue"),
        Binding("o", "columns", "Columns", id="runs.columns", tooltip="Choose the leaderboard's columns"),
        Binding("n", "note", "Note", id="runs.note", show=False, tooltip="Edit the run's note (meta.json)"),
        Binding("T", "tags", "Tags", id="runs.tags", show=False, tooltip="Edit the run's tags: +tag -tag"),
        Binding("L", "label", "Label", id="runs.label", show=False, tooltip="Give the run a label"),
        Binding("A", "archive", "Archive", id="runs.archive", show=False,
                tooltip="Archive (hide) or unarchive the run; . shows archived runs"),
        Binding("D", "delete", "Delete", id="runs.delete", show=False,
                tooltip="Delete the run directory (asks first)"),
        Binding("ctrl+r", "rescan", "Rescan", id="runs.rescan", show=False, tooltip="Read every run again"),
    ]

    def __init__(self, runs_dir: Path, backend: Backend, *, bell: bool = False, id: str | None = None) -> None:
        super().__init__(id=id)
        self.runs_dir = Path(runs_dir)
        self.backend = backend
        self.bell = bell
        self.selected: str | None = None
        self.marked: list[str] = []
        self.cache: dict[str, RunData] = {}
        self.states: dict[str, str] = {}
        self.follow_new = False
        self.deleted: set[str] = set()  # deleted here: late file events and reads of them are ignored
        self.steps: dict[str, tuple[list[dict], int]] = {}  # steps.jsonl rows and read offset, by run
        self.index: RunIndex | None = None  # opened by the first scan (no file work before the first frame)

    def compose(self) -> ComposeResult:
        yield Leaderboard(id="leaderboard")
        yield RunInspector(self, id="run-inspector")

    @property
    def leaderboard(self) -> Leaderboard:
        return self.query_one(Leaderboard)

    @property
    def inspector(self) -> RunInspector:
        return self.query_one(RunInspector)

    @property
    def curves(self) -> CurvesPanel:
        return self.inspector.curves

    def on_mount(self) -> None:
        self.leaderboard.table.focus()
        # Read the runs once the first frame is out: the reader thread and the event loop share
        # one interpreter lock, so starting it earlier only slows the first paint down.
        self.call_after_refresh(self.scan)
        self.set_interval(15, self._recheck_running)

    # -- reading (thread workers) ------------------------------------------------------------
    @work(thread=True, exclusive=True, group="scan", exit_on_error=False)
    def scan(self, known: list[str] | None = None, rescan: bool = False) -> None:
        """Every run, through the run index (RUNS/.index.db): only runs whose files changed are
        read; `rescan` reads them all and rebuilds it."""
        known = known or []
        self.index = RunIndex.open(self.runs_dir, self._index_notice)
        runs = load_indexed(self.runs_dir, rescan=rescan, index=self.index)
        found = {r.path for r in runs}
        runs += [summarize(Path(p)) for p in known if p not in found and Path(p).exists()]
        self.post_message(RunsLoaded(runs, first_run=not runs))

    def _index_notice(self, line: str) -> None:
        self.app.call_from_thread(self.app.notify, line, severity="warning", timeout=10)

    def read(self, path: str, full: bool) -> None:
        self.run_worker(lambda: self._read(path, full), thread=True, exclusive=True,
                        group=f"read:{path}", exit_on_error=False)

    def _read(self, path: str, full: bool) -> None:
        before = fingerprint(path)  # taken first: a write during the read leaves the stored row stale, not wrong
        data = read_run(path, full=full)
        if self.index is not None and Path(path).is_relative_to(self.runs_dir):
            self.index.remember(path, before, data.summary)  # the next start finds this run current
        if not get_current_worker().is_cancelled:
            self.post_message(RunRead(data, full))

    def _recheck_running(self) -> None:
        """A running run whose process died becomes interrupted without a file event."""
        for path, state in self.states.items():
            if state == "running":
                self.read(path, full=path == self.selected)

    # -- the watcher (forwarded by the screen) -----------------------------------------------
    def files_changed(self, message: RunFilesChanged) -> None:
        if message.name == LOG:
            if message.run_dir == self.selected:
                self.query_one(LogTail).poll()
            return
        if message.name == STEPS:
            if message.run_dir == self.selected:
                self.read_steps(message.run_dir)
            return
        if message.run_dir in self.deleted or (
                not is_run_dir(message.run_dir) and message.run_dir not in self.leaderboard.rows):
            return
        self.read(message.run_dir, full=message.run_dir == self.selected or message.run_dir in self.marked)

    def level_changed(self, message: LevelDirChanged) -> None:
        self.scan(list(self.leaderboard.rows))

    # -- results -----------------------------------------------------------------------------
    def read_steps(self, path: str) -> None:
        """The lines of steps.jsonl not read yet (all of them the first time)."""
        _, offset = self.steps.get(path, ([], 0))
        self.run_worker(lambda: self._read_steps(path, offset), thread=True, exclusive=True,
                        group=f"steps:{path}", exit_on_error=False)

    def _read_steps(self, path: str, offset: int) -> None:
        rows, end = read_steps(path, offset)
        self.post_message(StepsRead(path, rows, offset, end))

    @on(StepsRead)
    @guarded("the step curves")
    def _steps_read(self, message: StepsRead) -> None:
        rows, offset = self.steps.get(message.path, ([], 0))
        if message.start != offset:  # read from a stale offset: read again from where we are
            return
        rows = rows + message.rows
        self.steps[message.path] = (rows, message.offset)
        if message.path == self.selected:
            self.curves.show_steps(rows)

    @on(RunsLoaded)
    @guarded("the leaderboard")
    def _runs_loaded(self, message: RunsLoaded) -> None:
        known = set(self.states)
        for run in message.runs:
            self.states[run.path] = run.state
        self.leaderboard.set_runs(message.runs)
        # Shown means on screen: after the table has measured its rows and the screen refreshed.
        self.leaderboard.table.call_after_refresh(lambda: self.post_message(RunsShown()))
        if self.follow_new:
            new = [r.path for r in message.runs if r.path not in known]
            if new:
                self.leaderboard.select_path(max(new))
                self.follow_new = False

    @on(RunRead)
    @guarded("the leaderboard")
    def _run_read(self, message: RunRead) -> None:
        data = message.data
        run = data.summary
        if run.path in self.deleted:
            return
        before = self.states.get(run.path)
        self.states[run.path] = run.state
        is_new = run.path not in self.leaderboard.rows
        measured_before = None if is_new else self.leaderboard.rows[run.path].speedup_measured
        self.leaderboard.update_run(run)
        if message.full:
            self.cache[run.path] = data
        elif run.path in self.cache:
            self.cache[run.path].summary = run
        if is_new and self.follow_new:
            self.follow_new = False
            self.leaderboard.select_path(run.path)
        if before in ACTIVE_STATES and run.state in NOTIFY_STATES:
            self._notify_end(data)
        if not is_new and run.speedup_measured is not None and run.speedup_measured != measured_before:
            tau = f" · τ {run.tau:.2f} at γ={run.measured_gamma}" if run.tau is not None else ""
            self.notify(f"{run.run}: measured speedup {run.speedup_measured:.2f}x{tau}", title="speedup measured",
                        timeout=8)
        self.inspector.show_speedup()
        if run.path == self.selected:
            self.inspector.show_selected()
        if run.path in self.marked or run.path == self.selected:
            self.inspector.show_marked()
        selected = self.leaderboard.rows.get(self.selected or "")
        if selected is not None and selected.sweep and run.sweep == selected.sweep:
            self.inspector.show_hparams()

    def _notify_end(self, data: RunData) -> None:
        run = data.summary
        detail = f": {run.error}" if run.error and run.state != "done" else ""
        loss = f" · best val {run.best_val_loss:.4f}" if run.best_val_loss is not None else ""
        self.notify(f"{run.run} {run.state}{loss}{detail}", title=f"run {run.state}",
                    severity=NOTIFY_STATES[run.state], timeout=8)
        if self.bell and run.state != "cancelled":
            self.app.bell()

    # -- selection, marks, inspector ---------------------------------------------------------
    @on(Leaderboard.RunHighlighted)
    def _highlighted(self, message: Leaderboard.RunHighlighted) -> None:
        if message.path == self.selected:
            return
        self.selected = message.path
        self.query_one(LogTail).follow(message.path)
        if message.path:
            self.inspector.show_selected()
            self.inspector.show_marked()
            self.read(message.path, full=True)
            self.read_steps(message.path)

    @on(Leaderboard.MarksChanged)
    def _marks_changed(self, message: Leaderboard.MarksChanged) -> None:
        self.marked = message.paths
        for path in self.marked:
            if path not in self.cache:
                self.read(path, full=True)
        self.inspector.show_marked()
        if len(self.marked) < 2:
            self.inspector.show_selected()

    # -- actions: view (drawn by the inspector) ---------------------------------------------
    def action_inspect(self, pane: str) -> None:
        self.inspector.inspect(pane)

    def action_log_y(self) -> None:
        self.inspector.toggle_log_y()

    def action_smoothing(self) -> None:
        self.inspector.cycle_smoothing()

    def action_metric(self) -> None:
        self.inspector.next_metric()

    def action_view(self) -> None:
        self.inspector.next_view()

    def action_x_axis(self) -> None:
        self.inspector.cycle_x_axis()

    def action_accept_threshold(self) -> None:
        self.inspector.next_threshold()

    def action_hparams_metric(self) -> None:
        self.inspector.next_hparams_metric()

    def action_rescan(self) -> None:
        self.scan(list(self.leaderboard.rows), rescan=True)

    def action_columns(self) -> None:
        board = self.leaderboard
        available = board.available()
        shown = [k for k, _, _ in board._columns if k != "mark"]
        columns = [(key, header) for key, header, _ in COLUMNS if key in available and key != "run"]

        def chosen(keys: list[str] | None) -> None:
            if keys is not None:
                board.choose_columns(keys or None)
        self.app.push_screen(ColumnsScreen(columns, shown), chosen)

    # -- actions: the selected run -----------------------------------------------------------
    def _selected_run(self):
        path = self.leaderboard.highlighted_path
        return self.leaderboard.rows.get(path) if path else None

    def action_fork(self) -> None:
        run = self._selected_run()
        data = self.cache.get(run.path) if run else None
        if data is None or not data.config:
            self.notify("this run has no readable config.json to fork", severity="warning")
            return
        self.post_message(ForkRun(data.config, run.path))

    def action_resume(self) -> None:
        run = self._selected_run()
        if run is None:
            return
        if run.state not in RESUMABLE:
            self.notify(f"only {', '.join(RESUMABLE)} runs resume (this one is {run.state})", severity="warning")
            return
        self.resume_run(run.path)

    def action_measure(self) -> None:
        run = self._selected_run()
        if run is not None:
            self.measure(run.path)

    @work(thread=True, group="runs-action", exit_on_error=False)
    def measure(self, path: str) -> None:
        """`queue add --speculate RUN`: the engine checks it (models, prompts and layer from the
        extraction of the run's data) and the worker runs it; the toast comes with the figure."""
        problem, job_id = self.backend.queue_speculation(path)
        if problem:
            self.app.call_from_thread(self.notify, problem, title="cannot measure", severity="warning", timeout=10)
            return
        self.backend.ensure_worker()
        self.app.call_from_thread(self.notify, f"measuring the speedup of {Path(path).name} as job {job_id} "
                                  "(Queue tab: prompts done, running τ)", timeout=6)

    @work(thread=True, group="runs-action", exit_on_error=False)
    def resume_run(self, path: str) -> None:
        job = self.backend.job_for_run(path)
        if job is None:
            self.app.call_from_thread(self.notify, "this run was not started by the queue: resume it with "
                                      f"`adapter-engine train --resume {path}`", severity="warning")
            return
        new_id = self.backend.queue.retry(job.id, resume=True)
        self.backend.ensure_worker()
        self.app.call_from_thread(self.notify, f"resuming {Path(path).name} as job {new_id}")

    def _edit(self, prompt: str, value: str, placeholder: str, apply) -> None:
        run = self._selected_run()
        if run is None:
            return

        def answered(text: str | None) -> None:
            if text is not None:
                self.edit_meta(run.path, apply, text)
        self.app.push_screen(PromptScreen(f"{prompt} · {run.run}", value(run), placeholder), answered)

    def action_note(self) -> None:
        self._edit("Note", lambda r: r.note.replace("\n", " "), "what this run tried, what it showed",
                   lambda path, text: update_meta(path, note=text))

    def action_label(self) -> None:
        self._edit("Label", lambda r: r.label or "", "a short name (empty removes it)",
                   lambda path, text: update_meta(path, label=text or None, clear_label=not text.strip()))

    def action_tags(self) -> None:
        def apply(path: str, text: str):
            words = text.split()
            added, removed = tag_changes(words)
            if not any(w[:1] in "+-" for w in words):  # the whole list, as typed
                removed = sorted(set(self.leaderboard.rows[path].tags) - set(added))
            return update_meta(path, add_tags=added, remove_tags=removed)
        self._edit("Tags (+tag adds, -tag removes, or the whole list)", lambda r: " ".join(r.tags), "best ablation",
                   apply)

    def action_archive(self) -> None:
        run = self._selected_run()
        if run is not None:
            archive = not run.archived
            self.edit_meta(run.path, lambda path, _: update_meta(path, archived=archive), "",
                           f"{run.run} {'archived (. shows archived runs)' if archive else 'unarchived'}")

    @work(thread=True, group="runs-action", exit_on_error=False)
    def edit_meta(self, path: str, apply, text: str, done: str | None = None) -> None:
        apply(path, text)  # a UserInputError is shown by the screen's worker-error handler
        self.read(path, full=True)
        if done:
            self.app.call_from_thread(self.notify, done, timeout=4)

    def action_delete(self) -> None:
        run = self._selected_run()
        if run is None:
            return
        question = (f"Delete [b]{run.run}[/b]?\n\nIts config, history, logs and checkpoints are removed for good "
                    "(files that are not a run's are left). To only hide it, archive it with A instead.")

        def answered(yes: bool) -> None:
            if yes:
                self.delete(run.path)
        self.app.push_screen(ConfirmScreen(question, "Delete"), answered)

    @work(thread=True, group="runs-action", exit_on_error=False)
    def delete(self, path: str) -> None:
        left = delete_run(path, self.runs_dir)
        message = f"deleted {Path(path).name}" + (f"; left {', '.join(left)} (not a run's files)" if left else "")
        self.app.call_from_thread(self._forget, path)
        self.app.call_from_thread(self.notify, message, timeout=6)

    def _forget(self, path: str) -> None:
        self.deleted.add(path)
        self.leaderboard.remove_run(path)
        self.states.pop(path, None)
        self.cache.pop(path, None)

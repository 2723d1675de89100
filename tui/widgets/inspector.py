"""The Runs tab's inspector: curves, details, log tail, acceptance, which settings matter and
estimated vs measured speedup, for the run the leaderboard selects and the runs it marks. It
reads the pane's state (the runs read, the selection, the marks) and draws; the pane owns the
reading and the keys, which call in here."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.lazy import Lazy
from textual.widgets import TabbedContent, TabPane
from textual.worker import get_current_worker

from common.text import plural
from engine.rundir.evaluation import parse_any_eval
from engine.rundir.hparams import METRICS, rank
from engine.rundir.layout import CHECKPOINTS
from tui.messages import CheckpointDescribed
from tui.refresh import guarded
from tui.widgets.acceptance import AcceptancePanel, AcceptanceRun
from tui.widgets.curves import CurvesPanel
from tui.widgets.details import RunDetails
from tui.widgets.hparams import HParamsPanel
from tui.widgets.logtail import LogTail
from tui.widgets.speedup import SpeedupPanel, speedup_points

if TYPE_CHECKING:
    from tui.panes.runs import RunsPane


class RunInspector(Vertical):
    DEFAULT_CSS = "RunInspector { height: 1fr; } RunInspector > TabbedContent { height: 1fr; }"

    def __init__(self, runs: "RunsPane", *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.runs = runs
        self.accept_tau: str | None = None  # threshold of the acceptance plot; None: each file's primary
        self.hparams_metric = METRICS[0]
        self.checkpoints: dict[tuple[str, int], tuple[dict | None, str | None]] = {}

    def compose(self) -> ComposeResult:
        with TabbedContent(id="inspector", initial="curves"):
            with TabPane("Curves c", id="curves"):
                yield CurvesPanel(id="curves-panel")
            with TabPane("Details i", id="details"):
                yield RunDetails(id="details-panel")
            with TabPane("Log t", id="log"):
                yield LogTail(id="log-panel")
            with TabPane("Accept p", id="accept"):
                yield Lazy(AcceptancePanel(id="accept-panel"))
            with TabPane("Settings h", id="hparams"):
                yield Lazy(HParamsPanel(id="hparams-panel"))
            with TabPane("Speedup w", id="speedup"):
                yield Lazy(SpeedupPanel(id="speedup-panel"))

    @property
    def tabs(self) -> TabbedContent:
        return self.query_one("#inspector", TabbedContent)

    @property
    def curves(self) -> CurvesPanel:
        return self.query_one(CurvesPanel)

    def inspect(self, pane: str) -> None:
        self.tabs.active = pane

    def show_selected(self) -> None:
        data = self.runs.cache.get(self.runs.selected or "")
        if data is None:
            self.curves.show_run(Path(self.runs.selected or "").name, {}, {}, None)
            self.show_acceptance()
            return
        run = data.summary
        self.curves.show_run(run.run, data.history, data.status, run.state, self.runs.steps.get(run.path, ([], 0))[0])
        if len(self.runs.marked) < 2:
            self.query_one(RunDetails).show_run(data)
            self.describe_selected_checkpoint()
        self.show_acceptance()

    def describe_selected_checkpoint(self) -> None:
        """The selected run's checkpoint, read by the engine once the Details tab shows it (the
        engine needs torch: a subprocess, so not for every row scrolled past)."""
        path = self.runs.selected
        if not path or self.tabs.active != "details":
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
            info, error = self.runs.backend.checkpoint(stamp[0]), None
        except Exception as exc:  # a broken or foreign file: say so in the pane
            info, error = None, str(exc)
        if not get_current_worker().is_cancelled:
            self.checkpoints[stamp] = (info, error)
            self.post_message(CheckpointDescribed(path, info, error))

    @on(CheckpointDescribed)
    @guarded("the checkpoint view")
    def _checkpoint_described(self, message: CheckpointDescribed) -> None:
        if message.path == self.runs.selected and len(self.runs.marked) < 2:
            self.query_one(RunDetails).show_checkpoint(message.info, message.error)

    def overlaid(self) -> list[str]:
        """The selected run, then the marked ones: what the overlay and the acceptance plot show."""
        return ([self.runs.selected] if self.runs.selected else []) + [p for p in self.runs.marked if p != self.runs.selected]

    def show_marked(self) -> None:
        shown = [self.runs.cache[p] for p in self.overlaid() if p in self.runs.cache]
        self.curves.show_overlay({d.summary.run: d.history for d in shown} if self.runs.marked else {})
        marked = [self.runs.cache[p] for p in self.runs.marked if p in self.runs.cache]
        if len(self.runs.marked) >= 2 and len(marked) == len(self.runs.marked):
            self.query_one(RunDetails).show_diff([(d.summary.run, d.config) for d in marked])
        self.show_acceptance()
        self.show_hparams()

    def show_hparams(self) -> None:
        """Which settings matter: across the selected run's sweep, else across the marked runs."""
        panels = [p for p in self.query(HParamsPanel) if p.is_mounted]
        if not panels:
            return
        rows = self.runs.leaderboard.rows
        selected = rows.get(self.runs.selected or "")
        if selected is not None and selected.sweep:
            group = [r for r in rows.values() if r.sweep == selected.sweep]
            title = f"sweep {selected.sweep}: {plural(len(group), 'run')}"
        elif len(self.runs.marked) >= 2:
            group = [rows[p] for p in self.runs.marked if p in rows]
            title = f"{len(group)} marked runs"
        else:
            for panel in panels:
                panel.show("", [], self.hparams_metric, "Select a run of a sweep, or mark runs to compare (space).")
            return
        scored = [r for r in group if getattr(r, self.hparams_metric) is not None]
        note = (f"{len(scored)} with {self.hparams_metric} · y: next metric" if scored else
                f"no run has {self.hparams_metric} yet · y: next metric")
        for panel in panels:
            panel.show(title, rank(group, self.hparams_metric), self.hparams_metric, note)

    @on(HParamsPanel.Mounted)
    def _hparams_mounted(self, message: HParamsPanel.Mounted) -> None:
        self.show_hparams()

    def next_hparams_metric(self) -> None:
        self.hparams_metric = METRICS[(METRICS.index(self.hparams_metric) + 1) % len(METRICS)]
        self.notify(f"settings ranked by {self.hparams_metric}", timeout=2)
        self.show_hparams()

    def show_acceptance(self) -> None:
        """Acceptance by position: the selected run, then every marked run (from eval.json)."""
        runs = []
        for path in self.overlaid():
            data = self.runs.cache.get(path)
            if data is None:
                runs.append(AcceptanceRun(Path(path).name, None, "reading...", path == self.runs.selected))
                continue
            view, problem = data.evaluation, data.eval_problem
            if self.accept_tau is not None and data.eval_data is not None:
                view, problem = parse_any_eval(data.eval_data, self.accept_tau)
            runs.append(AcceptanceRun(data.summary.run, view, problem, path == self.runs.selected))
        for panel in self.query(AcceptancePanel):
            panel.show(runs)

    def show_speedup(self) -> None:
        for panel in self.query(SpeedupPanel):
            panel.show(speedup_points(list(self.runs.leaderboard.rows.values())))

    @on(SpeedupPanel.Mounted)
    def _speedup_mounted(self, message: SpeedupPanel.Mounted) -> None:
        self.show_speedup()

    @on(AcceptancePanel.Mounted)
    def _acceptance_mounted(self, message: AcceptancePanel.Mounted) -> None:
        self.show_acceptance()

    @on(TabbedContent.TabActivated, "#inspector")
    def _inspector_activated(self, event: TabbedContent.TabActivated) -> None:
        event.stop()
        if event.pane.id == "details":
            self.describe_selected_checkpoint()

    def toggle_log_y(self) -> None:
        self.curves.toggle_log()

    def cycle_smoothing(self) -> None:
        weight = self.curves.cycle_smoothing()
        self.notify(f"smoothing {weight:g}" if weight else "smoothing off", timeout=2)

    def next_metric(self) -> None:
        self.notify(f"overlay metric: {self.curves.next_metric()}", timeout=2)

    def next_view(self) -> None:
        self.curves.next_view()

    def cycle_x_axis(self) -> None:
        axis = self.curves.cycle_x_axis()
        self.notify(f"curves against {axis}" + ("" if axis == "epoch" or self.curves.steps else
                                                 " (this run has no steps.jsonl: epoch ends only)"), timeout=2)

    def next_threshold(self) -> None:
        """Step the acceptance plot through the thresholds the shown runs were evaluated at."""
        shown = [self.runs.cache[p] for p in self.overlaid() if p in self.runs.cache]
        views = [d.evaluation for d in shown if d.evaluation is not None]
        if not views:
            self.notify("no eval.json to switch thresholds in", severity="warning", timeout=3)
            return
        thresholds = views[0].thresholds
        current = self.accept_tau or views[0].tau
        self.accept_tau = thresholds[(thresholds.index(current) + 1) % len(thresholds)] \
            if current in thresholds else thresholds[0]
        self.notify(f"acceptance threshold: {self.accept_tau}", timeout=2)
        self.show_acceptance()


"""Estimated vs measured speedup: for every run that has both an estimate (eval.json) and a
measurement (speculate.json), a scatter of one against the other beside the line y = x, and a
table of the figures, so a researcher sees at a glance whether the cosine proxy can be trusted
for this pair of models."""

from __future__ import annotations

from dataclasses import dataclass

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import Static
from textual_plotext import PlotextPlot

from common.text import plural, printable
from engine.rundir.summary import RunSummary
from tui.widgets.throttle import ThrottledRedraw


@dataclass(frozen=True)
class SpeedupPoint:
    run: str
    level: str
    estimated: float
    measured: float
    tau: float | None
    gamma: int | None


def speedup_points(rows: list[RunSummary]) -> list[SpeedupPoint]:
    """The runs with both figures, best measured first."""
    points = [SpeedupPoint(r.run, r.level, r.speedup, r.speedup_measured, r.tau, r.measured_gamma) for r in rows
              if r.speedup is not None and r.speedup_measured is not None]
    return sorted(points, key=lambda p: -p.measured)


def verdict(points: list[SpeedupPoint]) -> str:
    """One line: how far the estimate is from the measurement, and whether it ranks alike."""
    if not points:
        return "No run has both an estimate (eval.json) and a measurement (speculate.json): M measures the selected run."
    ratio = sorted(p.estimated / p.measured for p in points if p.measured > 0)
    text = f"{plural(len(points), 'run')} · the estimate is {ratio[len(ratio) // 2]:.2f}× the measured speedup (median)"
    if len(points) > 1:
        by_estimate = [p.run for p in sorted(points, key=lambda p: -p.estimated)]
        text += " · it ranks them " + ("alike" if by_estimate == [p.run for p in points] else "differently")
    return text


class SpeedupPanel(ThrottledRedraw, Horizontal):
    DEFAULT_CSS = """
    SpeedupPanel { height: 1fr; }
    SpeedupPanel > PlotextPlot { width: 1fr; min-width: 30; height: 1fr; }
    SpeedupPanel > #speedup-table { width: 1fr; height: 1fr; padding: 0 1; overflow-y: auto; }
    """

    class Mounted(Message):
        """The panel is ready (it is mounted lazily): send it the runs."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.points: list[SpeedupPoint] = []

    def compose(self) -> ComposeResult:
        yield PlotextPlot(id="speedup-plot")
        yield Static(id="speedup-table")

    def on_mount(self) -> None:
        self.call_after_refresh(self.post_message, self.Mounted())

    def show(self, points: list[SpeedupPoint]) -> None:
        if points != self.points or not self.redraws:
            self.points = points
            self.request_redraw()

    def redraw(self) -> None:
        table = Table(expand=True, show_edge=False, pad_edge=False, title=Text(verdict(self.points), style="dim"))
        for name in ("run", "level", "est.×", "meas.×", "τ", "γ"):
            table.add_column(name, no_wrap=True, justify="left" if name in ("run", "level") else "right")
        for p in self.points:
            table.add_row(Text(printable(p.run)), p.level, f"{p.estimated:.2f}x", f"{p.measured:.2f}x",
                          "—" if p.tau is None else f"{p.tau:.2f}", "—" if p.gamma is None else str(p.gamma))
        self.query_one("#speedup-table", Static).update(table)
        plt = self.query_one(PlotextPlot).plt
        plt.clear_figure()
        plt.title("measured vs estimated speedup")
        plt.xlabel("estimated ×")
        plt.ylabel("measured ×")
        if self.points:
            xs, ys = [p.estimated for p in self.points], [p.measured for p in self.points]
            top = max(xs + ys + [1.0])
            plt.plot([0, top], [0, top], label="y = x", color="gray")  # on the line: the proxy is right
            plt.scatter(xs, ys, marker="dot", color="cyan")
        self.query_one(PlotextPlot).refresh()

"""Which settings matter: for the selected run's sweep (or the marked runs), a scatter of the
chosen metric against each setting that varies (log x where the values span decades), most
effective first, and the table ranking them by the spread of their group means
(engine.rundir.hparams, as `adapter-engine runs --sweep ID` prints it)."""

from __future__ import annotations

import math

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Static
from textual_plotext import PlotextPlot

from engine.rundir.hparams import Effect
from tui.widgets.throttle import ThrottledRedraw

PLOTS = 3  # scatters shown side by side: the three most effective settings


class HParamsPanel(ThrottledRedraw, Vertical):
    DEFAULT_CSS = """
    HParamsPanel { height: 1fr; }
    HParamsPanel > #hp-caption { height: auto; padding: 0 1; }
    HParamsPanel > #hp-plots { height: 1fr; min-height: 6; }
    HParamsPanel PlotextPlot { width: 1fr; height: 1fr; }
    HParamsPanel > #hp-table { height: auto; max-height: 8; padding: 0 1; }
    """

    class Mounted(Message):
        """The panel is ready (it is mounted lazily): send it the runs."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.title = ""
        self.metric = "best_val_loss"
        self.effects: list[Effect] = []
        self.note = "Select a run of a sweep, or mark runs to compare (space)."

    def compose(self) -> ComposeResult:
        yield Static(Text(self.note, style="dim"), id="hp-caption")
        with Horizontal(id="hp-plots"):
            for i in range(PLOTS):
                yield PlotextPlot(id=f"hp-plot-{i}")
        yield Static(id="hp-table")

    def on_mount(self) -> None:
        self.call_after_refresh(self.post_message, self.Mounted())

    def show(self, title: str, effects: list[Effect], metric: str, note: str | None = None) -> None:
        self.title, self.effects, self.metric = title, effects, metric
        self.note = note or ""
        self.request_redraw()

    def redraw(self) -> None:
        caption = Text(self.title, style="bold") if self.title else Text()
        if self.note:
            caption.append(("  " if self.title else "") + self.note, style="dim")
        self.query_one("#hp-caption", Static).update(caption)
        table = Table(expand=True, show_edge=False, pad_edge=False)
        for name in ("setting", f"effect on {self.metric}", "best", "rank corr.", "groups: mean (runs)"):
            table.add_column(name, no_wrap=name != "groups: mean (runs)")
        for e in self.effects:
            table.add_row(e.name, f"{e.effect:.4g}", e.best, "–" if e.correlation is None else f"{e.correlation:+.2f}",
                          "; ".join(f"{label}: {mean:.4g} ({n})" for label, mean, n in e.groups))
        self.query_one("#hp-table", Static).update(table if self.effects else "")
        for i in range(PLOTS):
            plot = self.query_one(f"#hp-plot-{i}", PlotextPlot)
            plot.display = i < len(self.effects) or i == 0
            plt = plot.plt
            plt.clear_figure()
            if i < len(self.effects):
                effect = self.effects[i]
                xs = [math.log10(x) if effect.log else x for x, _ in effect.points]
                plt.scatter(xs, [y for _, y in effect.points], marker="dot")
                plt.title(f"{self.metric} vs {effect.name}")
                plt.xlabel(f"log10 {effect.name}" if effect.log else effect.name)
            else:
                plt.title("no setting varies across these runs" if self.title else "")
            plot.refresh()

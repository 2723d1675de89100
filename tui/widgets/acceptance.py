"""Acceptance by position from eval.json: for position k, the fraction of samples whose first k
drafted tokens are all accepted at the primary threshold. One line for the selected run and one
per marked run, with a legend, and a caption per run with E[min(L, γ)] and the estimated speedup.
Redraws are capped like the curves (~4/s)."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Static
from textual_plotext import PlotextPlot

from tui.widgets.throttle import ThrottledRedraw
from engine.rundir.evaluation import EvalView
from tui.data import fmt_float

NEGLIGIBLE = 1e-3  # positions where every run is below this are cut from the x axis


@dataclass
class AcceptanceRun:
    """One line of the plot: a run's name, its parsed eval.json (or why there is none)."""
    name: str
    view: EvalView | None
    problem: str | None = None
    selected: bool = False


def caption(run: AcceptanceRun) -> Text:
    """`name · E[min(L,γ)] · speedup · prefix · accept rate · token agreement` for one run."""
    mark = "▶ " if run.selected else "  "
    view = run.view
    if view is None:
        return Text(f"{mark}{run.name} · {run.problem or 'no eval.json yet'}", style="dim")
    parts = []
    if view.expected_at_gamma is not None:
        gamma = view.gamma if view.gamma is not None else "γ"
        parts.append(f"E[min(L,{gamma})] {fmt_float(view.expected_at_gamma, 2)}")
    if view.speedup is not None:
        cost = f" (draft cost {view.draft_cost:g})" if view.draft_cost is not None else ""
        parts.append(f"speedup {fmt_float(view.speedup, 2)}x{cost}")
    if view.prefix:
        parts.append(f"prefix@{view.tau} " + " ".join(f"{k} {v:.2f}".replace(".00", "")
                                                     for k, v in view.prefix.items()))
    if view.accept_rate is not None:
        parts.append(f"accept@{view.tau} {fmt_float(view.accept_rate, 3)}")
    if view.token_top1 is not None:
        parts.append(f"top-1 {fmt_float(view.token_top1, 3)}")
    if view.token_top5 is not None:
        parts.append(f"top-5 {fmt_float(view.token_top5, 3)}")
    text = Text(f"{mark}{run.name}", style="bold" if run.selected else "")
    if view.source == "reference":
        text.append(" · the reference's figures (acceptance at each position; its end-to-end speedup)",
                    style="italic yellow")
    text.append(" · " + " · ".join(parts) if parts else " · eval.json has no summary numbers")
    return text


def visible_positions(curves: list[list[float | None]], gamma: int | None) -> int:
    """How many positions to plot: up to the last one where any run is above NEGLIGIBLE (and at
    least up to γ), so a long tail of zeros does not squash the curve."""
    longest = max((len(c) for c in curves), default=0)
    last = 0
    for curve in curves:
        for k, p in enumerate(curve, 1):
            if p is not None and p >= NEGLIGIBLE:
                last = max(last, k)
    return min(longest, max(last + 1, gamma or 0, 1))


class AcceptancePanel(ThrottledRedraw, Vertical):
    """Caption (one line per run) + plot. Feed it with `show`."""

    DEFAULT_CSS = """
    AcceptancePanel { height: 1fr; }
    AcceptancePanel > #accept-caption { height: auto; max-height: 6; padding: 0 1; }
    AcceptancePanel > PlotextPlot { height: 1fr; min-height: 6; }
    """

    class Mounted(Message):
        """The panel is ready (it is mounted lazily): send it the runs."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.runs: list[AcceptanceRun] = []
        self.drawn: dict[str, list[float | None]] = {}
        self.title = ""

    def compose(self) -> ComposeResult:
        yield Static(Text("Select a run.", style="dim"), id="accept-caption")
        yield PlotextPlot(id="plot-position")

    def on_mount(self) -> None:
        self.call_after_refresh(self.post_message, self.Mounted())  # once is_mounted is true
        self.request_redraw()

    def show(self, runs: list[AcceptanceRun]) -> None:
        self.runs = runs
        self.request_redraw()

    def redraw(self) -> None:
        runs = self.runs
        lines = Text("\n").join(caption(r) for r in runs) if runs else Text("Select a run.", style="dim")
        self.query_one("#accept-caption", Static).update(lines)

        plot = self.query_one("#plot-position", PlotextPlot)
        plt = plot.plt
        plt.clear_figure()
        with_data = [r for r in runs if r.view is not None and any(p is not None for p in r.view.by_position)]
        self.drawn = {r.name: r.view.by_position for r in with_data}
        if not with_data:
            problem = next((r.problem for r in runs if r.selected), None) or (runs[0].problem if runs else None)
            self.title = f"acceptance by position: {problem or 'no eval.json yet'}"
            plt.title(self.title)
            plot.refresh()
            return
        taus = sorted({r.view.tau for r in with_data})
        gammas = {r.view.gamma for r in with_data if r.view.gamma}
        gamma = max(gammas) if gammas else None
        cut = visible_positions([r.view.by_position for r in with_data], gamma)
        self.title = f"acceptance by position @{'/'.join(taus)}" + (f" · │ at γ={gamma}" if gamma else "")
        plt.title(self.title)
        sources = {r.view.source for r in with_data}
        plt.xlabel("position k: " + " · ".join(label for source, label in (
            ("ours", "first k drafted tokens all accepted"), ("reference", "reference†: token k accepted"))
            if source in sources))
        for run in with_data:
            points = [(k, p) for k, p in enumerate(run.view.by_position[:cut], 1) if p is not None]
            if points:
                xs, ys = zip(*points)
                label = run.name if len(with_data) > 1 or len(runs) > 1 else f"{run.name} @{run.view.tau}"
                if run.view.source == "reference":
                    label += " †"
                plt.plot(list(xs), list(ys), label=label, marker="braille")
        if gamma and gamma <= cut:
            plt.vline(gamma)
        plt.ylim(0, 1)
        if cut <= 16:
            plt.xticks(list(range(1, cut + 1)))
        plot.refresh()

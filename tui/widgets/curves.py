"""Live curves for the selected run (loss, cosine, acceptance) or one metric overlaid across the
selected and the marked runs, plus a one-line progress of a running run. Redraws are capped
(~4/s). Smoothing is TensorBoard's exponential weight: off, 0.6 or 0.9 (`e` cycles)."""

from __future__ import annotations

import math
from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Static
from textual_plotext import PlotextPlot

from tui.widgets.throttle import ThrottledRedraw
from tui.data import ema, fmt_duration, fmt_float, fmt_int

PLOTS = {
    "loss": ("loss", [("train", "train_loss"), ("val", "val_loss")]),
    "cosine": ("cosine", [("train", "train_cos_sim"), ("val", "val_cos_sim")]),
    "accept": ("acceptance", [("@.80", "val_accept_80"), ("@.85", "val_accept_85"),
                              ("@.90", "val_accept_90"), ("@.95", "val_accept_95")]),
}
OVERLAY_METRICS = ("val_loss", "train_loss", "val_cos_sim", "val_accept_90", "val_accept_80",
                   "val_accept_95", "val_consecutive_90")
SMOOTHING = (0.0, 0.6, 0.9)


def progress_text(status: dict[str, Any], state: str | None = None) -> str:
    if not status:
        return ""
    parts = [str(state or status.get("state", "?"))]
    if status.get("num_epochs"):
        parts.append(f"epoch {status.get('epoch', 0)}/{status['num_epochs']}")
    steps = status.get("steps_per_epoch")
    if steps:
        step = status.get("step", 0)
        share = f" ({100 * step / steps:.0f}%)" if isinstance(step, int) and isinstance(steps, int) and steps > 0 else ""
        parts.append(f"step {step}/{steps}{share}")
    if status.get("running_loss") is not None:
        parts.append(f"loss {fmt_float(status.get('running_loss'), 4)}")
    if status.get("tokens_per_s"):
        parts.append(f"{fmt_int(status.get('tokens_per_s'))} tok/s")
    if status.get("eta_s") is not None and (state or status.get("state")) == "running":
        parts.append(f"ETA {fmt_duration(status.get('eta_s'))}")
    if status.get("device"):
        parts.append(str(status["device"]))
    return " · ".join(parts)


class CurvesPanel(ThrottledRedraw, Vertical):
    """Plots plus a one-line progress. Feed it with `show_run` / `show_overlay`."""

    DEFAULT_CSS = """
    CurvesPanel { height: 1fr; }
    CurvesPanel > #progress { height: 1; padding: 0 1; }
    CurvesPanel > #plots { height: 1fr; }
    CurvesPanel PlotextPlot { width: 1fr; height: 1fr; min-height: 6; }
    CurvesPanel #plot-overlay { display: none; }
    CurvesPanel.-overlay #plot-overlay { display: block; }
    CurvesPanel.-overlay .run-plot { display: none; }
    CurvesPanel.-one .run-plot { display: none; }
    CurvesPanel.-one .run-plot.-current { display: block; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.title = ""
        self.history: dict[str, list[float | None]] = {}
        self.status: dict[str, Any] = {}
        self.state: str | None = None
        self.overlay: dict[str, dict[str, list[float | None]]] = {}
        self.overlay_metric = OVERLAY_METRICS[0]
        self.log_y = False
        self.smooth = 0.0  # the smoothing weight
        self.current = "loss"
        self.drawn_history: dict[str, list[float | None]] = {}

    def compose(self) -> ComposeResult:
        yield Static(id="progress")
        with Horizontal(id="plots"):
            for key in PLOTS:
                yield PlotextPlot(id=f"plot-{key}", classes="run-plot" + (" -current" if key == self.current else ""))
            yield PlotextPlot(id="plot-overlay")

    def on_mount(self) -> None:
        self.request_redraw()

    # -- inputs ------------------------------------------------------------------------------
    def show_run(self, title: str, history: dict, status: dict, state: str | None = None) -> None:
        self.title, self.history, self.status, self.state = title, history, status, state
        self._update_progress()
        self.request_redraw()

    def show_overlay(self, runs: dict[str, dict]) -> None:
        """Overlay one metric across these runs (name -> history: the selected run and the
        marked ones); fewer than two turns it off."""
        self.overlay = runs
        self.set_class(len(runs) >= 2, "-overlay")
        self.request_redraw()

    def toggle_log(self) -> None:
        self.log_y = not self.log_y
        self.request_redraw()

    def cycle_smoothing(self) -> float:
        self.smooth = SMOOTHING[(SMOOTHING.index(self.smooth) + 1) % len(SMOOTHING)] \
            if self.smooth in SMOOTHING else SMOOTHING[0]
        self.request_redraw()
        return self.smooth

    def next_metric(self) -> str:
        self.overlay_metric = OVERLAY_METRICS[(OVERLAY_METRICS.index(self.overlay_metric) + 1) % len(OVERLAY_METRICS)]
        self.request_redraw()
        return self.overlay_metric

    def set_single(self, single: bool) -> None:
        """Show one plot at a time (narrow terminals); `next_view` cycles."""
        self.set_class(single, "-one")

    def next_view(self) -> str:
        keys = list(PLOTS)
        self.current = keys[(keys.index(self.current) + 1) % len(keys)]
        for key in keys:
            self.query_one(f"#plot-{key}").set_class(key == self.current, "-current")
        self.set_single(True)
        return self.current

    # -- drawing -----------------------------------------------------------------------------
    def _update_progress(self) -> None:
        text = progress_text(self.status, self.state)
        if not text and self.title:
            text = f"{self.title}: {len(self.history.get('val_loss', []))} epochs"
        self.query_one("#progress", Static).update(text)

    def redraw(self) -> None:
        self.drawn_history = self.history
        suffix = (" log" if self.log_y else "") + (f" smoothed {self.smooth:g}" if self.smooth else "")
        for key, (title, series) in PLOTS.items():
            lines = [(label, self.history.get(metric, [])) for label, metric in series]
            self._draw(self.query_one(f"#plot-{key}", PlotextPlot), f"{title}{suffix}", lines)
        if len(self.overlay) >= 2:
            lines = [(name, hist.get(self.overlay_metric, [])) for name, hist in self.overlay.items()]
            self._draw(self.query_one("#plot-overlay", PlotextPlot), f"{self.overlay_metric}{suffix}", lines)

    def _draw(self, plot: PlotextPlot, title: str, lines: list[tuple[str, list[float | None]]]) -> None:
        plt = plot.plt
        plt.clear_figure()
        plt.title(title)
        plt.xlabel("epoch")
        drawn = 0
        for label, values in lines:
            values = ema(values, self.smooth) if self.smooth else values
            points = [(i + 1, v) for i, v in enumerate(values)
                      if v is not None and math.isfinite(v) and (v > 0 or not self.log_y)]
            if points:
                xs, ys = zip(*points)
                plt.plot(list(xs), list(ys), label=label, marker="braille")
                drawn += 1
        longest = max((len(v) for _, v in lines), default=0)
        if 0 < longest <= 12:
            plt.xticks(list(range(1, longest + 1)))
        if self.log_y and drawn:
            plt.yscale("log")
        if not drawn:
            plt.title(f"{title}: no epochs yet")
        plot.refresh()

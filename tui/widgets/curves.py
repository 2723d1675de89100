"""Live curves for the selected run (loss, cosine, acceptance) or one metric overlaid across the
selected and the marked runs, plus a one-line progress of a running run and, while it runs, its
system use (CPU, memory, GPU, with a sparkline). The x axis is epochs, steps or wall time (`x`
cycles): in steps and time the training loss comes from steps.jsonl, a point every ~1/50 epoch.
Redraws are capped (~4/s). Smoothing is TensorBoard's exponential weight: off, 0.6 or 0.9."""

from __future__ import annotations

import math
from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Sparkline, Static
from textual_plotext import PlotextPlot

from common.text import plural
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
X_AXES = ("epoch", "step", "time")
X_LABELS = {"epoch": "epoch", "step": "step", "time": "minutes"}
SPARK_POINTS = 60


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


def system_text(system: dict[str, Any]) -> str:
    """`cpu 140% · rss 1.2 GB · gpu 87% 30.1/80 GB 250 W` from status.json's system fields."""
    parts = []
    if isinstance(system.get("cpu_percent"), (int, float)):
        parts.append(f"cpu {system['cpu_percent']:.0f}%")
    if isinstance(system.get("rss_mb"), (int, float)):
        parts.append(f"rss {system['rss_mb'] / 1024:.1f} GB")
    if isinstance(system.get("gpu_util"), (int, float)):
        gpu = f"gpu {system['gpu_util']:.0f}%"
        if isinstance(system.get("gpu_mem_used_mb"), (int, float)) and isinstance(system.get("gpu_mem_total_mb"), (int, float)):
            gpu += f" {system['gpu_mem_used_mb'] / 1024:.1f}/{system['gpu_mem_total_mb'] / 1024:.0f} GB"
        if isinstance(system.get("gpu_power_w"), (int, float)):
            gpu += f" {system['gpu_power_w']:.0f} W"
        parts.append(gpu)
    return " · ".join(parts)


def epoch_ends(history: dict, steps: list[dict[str, Any]], status: dict, axis: str) -> list[float]:
    """Where each epoch of history.json ends on the x axis: its number, its last step, or the
    minutes of training up to it (from epoch_time_s)."""
    n = max((len(v) for v in history.values() if isinstance(v, list)), default=0)
    if axis == "time":
        times = history.get("epoch_time_s") or []
        total, out = 0.0, []
        for i in range(n):
            t = times[i] if i < len(times) and isinstance(times[i], (int, float)) else 0.0
            total += t
            out.append(total / 60)
        return out
    if axis == "step":
        per_epoch = status.get("steps_per_epoch")
        if not isinstance(per_epoch, int) or per_epoch <= 0:
            ratios = [r["step"] / r["epoch"] for r in steps if isinstance(r.get("step"), (int, float))
                      and isinstance(r.get("epoch"), (int, float)) and r["epoch"] > 0]
            per_epoch = round(ratios[-1]) if ratios else 1
        return [float((i + 1) * per_epoch) for i in range(n)]
    return [float(i + 1) for i in range(n)]


def steps_points(steps: list[dict[str, Any]], axis: str) -> list[tuple[float, float | None]]:
    key = "step" if axis == "step" else "elapsed_s"
    scale = 1.0 if axis == "step" else 1 / 60
    return [(float(r[key]) * scale, r.get("train_loss") if isinstance(r.get("train_loss"), (int, float)) else None)
            for r in steps if isinstance(r.get(key), (int, float))]


class CurvesPanel(ThrottledRedraw, Vertical):
    """Plots plus a one-line progress. Feed it with `show_run` / `show_overlay`."""

    DEFAULT_CSS = """
    CurvesPanel { height: 1fr; }
    CurvesPanel > #progress { height: 1; padding: 0 1; }
    CurvesPanel > #system-row { height: 1; display: none; padding: 0 1; }
    CurvesPanel.-running > #system-row { display: block; }
    CurvesPanel #system { width: auto; max-width: 1fr; }
    CurvesPanel #spark { width: 24; margin-left: 1; }
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
        self.x_axis = "epoch"
        self.steps: list[dict[str, Any]] = []  # steps.jsonl of the selected run
        self.current = "loss"
        self.drawn_history: dict[str, list[float | None]] = {}

    def compose(self) -> ComposeResult:
        yield Static(id="progress")
        with Horizontal(id="system-row"):
            yield Static(id="system")
            yield Sparkline([], id="spark")
        with Horizontal(id="plots"):
            for key in PLOTS:
                yield PlotextPlot(id=f"plot-{key}", classes="run-plot" + (" -current" if key == self.current else ""))
            yield PlotextPlot(id="plot-overlay")

    def on_mount(self) -> None:
        self.request_redraw()

    # -- inputs ------------------------------------------------------------------------------
    def show_run(self, title: str, history: dict, status: dict, state: str | None = None,
                 steps: list[dict[str, Any]] | None = None) -> None:
        if title != self.title:
            self.steps = []
        self.title, self.history, self.status, self.state = title, history, status, state
        if steps is not None:
            self.steps = steps
        self._update_progress()
        self.request_redraw()

    def show_steps(self, steps: list[dict[str, Any]]) -> None:
        """The selected run's steps.jsonl (all of it so far)."""
        self.steps = steps
        self._update_progress()
        if self.x_axis != "epoch":
            self.request_redraw()

    def cycle_x_axis(self) -> str:
        self.x_axis = X_AXES[(X_AXES.index(self.x_axis) + 1) % len(X_AXES)]
        self.request_redraw()
        return self.x_axis

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
            text = f"{self.title}: {plural(len(self.history.get('val_loss', [])), 'epoch')}"
        self.query_one("#progress", Static).update(text)
        system = self.status.get("system") if isinstance(self.status.get("system"), dict) else {}
        running = self.state == "running" and bool(system or self.steps)
        self.set_class(running, "-running")
        if running:
            self.query_one("#system", Static).update(system_text(system))
            key = "gpu_util" if any("gpu_util" in r for r in self.steps) else "cpu_percent"
            values = [float(r[key]) for r in self.steps[-SPARK_POINTS:] if isinstance(r.get(key), (int, float))]
            spark = self.query_one("#spark", Sparkline)
            spark.display = bool(values)  # no steps.jsonl yet: no line rather than a flat one
            spark.data = values or [0.0]
            spark.tooltip = f"{'GPU utilisation' if key == 'gpu_util' else 'CPU %'}, last {plural(len(values), 'point')}"

    def redraw(self) -> None:
        self.drawn_history = self.history
        suffix = (" log" if self.log_y else "") + (f" smoothed {self.smooth:g}" if self.smooth else "")
        ends = epoch_ends(self.history, self.steps, self.status, self.x_axis)
        for key, (title, series) in PLOTS.items():
            lines = [(label, list(zip(ends, self.history.get(metric, [])))) for label, metric in series]
            if key == "loss" and self.x_axis != "epoch" and self.steps:
                lines.insert(0, ("train (steps)", steps_points(self.steps, self.x_axis)))
            self._draw(self.query_one(f"#plot-{key}", PlotextPlot), f"{title}{suffix}", lines, X_LABELS[self.x_axis])
        if len(self.overlay) >= 2:
            lines = [(name, [(i + 1, v) for i, v in enumerate(hist.get(self.overlay_metric, []))])
                     for name, hist in self.overlay.items()]
            self._draw(self.query_one("#plot-overlay", PlotextPlot), f"{self.overlay_metric}{suffix}", lines, "epoch")

    def _draw(self, plot: PlotextPlot, title: str, lines: list[tuple[str, list[tuple[float, float | None]]]],
              xlabel: str) -> None:
        plt = plot.plt
        plt.clear_figure()
        plt.title(title)
        plt.xlabel(xlabel)
        drawn = 0
        for label, pairs in lines:
            xs_all = [x for x, _ in pairs]
            values = [v for _, v in pairs]
            values = ema(values, self.smooth) if self.smooth else values
            points = [(x, v) for x, v in zip(xs_all, values)
                      if v is not None and math.isfinite(v) and (v > 0 or not self.log_y)]
            if points:
                xs, ys = zip(*points)
                plt.plot(list(xs), list(ys), label=label, marker="braille")
                drawn += 1
        longest = max((len(p) for _, p in lines), default=0)
        if xlabel == "epoch" and 0 < longest <= 12:
            plt.xticks(list(range(1, longest + 1)))
        if self.log_y and drawn:
            plt.yscale("log")
        if not drawn:
            plt.title(f"{title}: no epochs yet")
        plot.refresh()

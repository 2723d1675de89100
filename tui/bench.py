"""TUI benchmarks (targets in docs/BENCHMARKS.md): first paint, watch-to-plot latency (median), loading 1,000 runs.

`run_bench()` returns {first_paint_s, watch_latency_median_s, load_1000_runs_s} and:
  load_1000_runs_s          rescan (every file read) of N runs in a running app until the rows are on screen
  load_at_startup_s         the same load while the app is still starting up (from app start)
  first_paint_with_runs_s   first paint of a fresh process (imports included) with N runs present
  runs_on_screen_s          fresh process start to all N rows painted in the leaderboard (no run index yet)
  runs_on_screen_warm_s     the same again, the run index current
`python -m tui.bench [--runs N] [--samples K] [--json]` prints it, so the engine's `bench tui`
can call it in a subprocess. Torch-free."""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common.fileio import write_json  # noqa: E402
from engine.bench.runs import make_runs, synthetic_history  # noqa: E402  (torch-free)


class _NoQueue:
    """Benchmarks measure the TUI, not SQLite: a backend with an empty queue."""

    def __init__(self, runs_dir: Path) -> None:
        self.runs_dir = runs_dir
        self.queue = self

    def jobs(self) -> list:
        return []

    def worker_status(self):
        return None


def first_paint(runs_dir: Path, wait_rows: bool = False) -> tuple[float, float | None]:
    """Seconds from interpreter start of a fresh process (imports included) to the first frame,
    and with `wait_rows` to every run of `runs_dir` painted in the leaderboard (the RunsShown
    message the app posts)."""
    code = f"""
import time
t0 = time.perf_counter()
import asyncio, json
from pathlib import Path
import textual.screen
from tui.app import make_app
from tui.bench import _NoQueue
from tui.messages import RunsShown
painted, shown = [], []
_layout = textual.screen.Screen._refresh_layout
def _refresh_layout(self, *args, **kwargs):  # the first frame is written here
    result = _layout(self, *args, **kwargs)
    painted.append(time.perf_counter())
    return result
textual.screen.Screen._refresh_layout = _refresh_layout
def hook(message):
    if isinstance(message, RunsShown):
        shown.append(time.perf_counter())
async def main():
    root = Path({str(runs_dir)!r})
    app = make_app(root, backend=_NoQueue(root))
    async with app.run_test(size=(120, 40), message_hook=hook) as pilot:
        while not painted or ({wait_rows!r} and not shown):
            await asyncio.sleep(0.002)
        await pilot.pause(0.3)  # let the hidden panels finish mounting
asyncio.run(main())
print(json.dumps([painted[0] - t0, shown[0] - t0 if shown else None]))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "first paint failed")
    paint, rows = json.loads(out.stdout.strip().splitlines()[-1])
    return paint, rows


async def _in_app(runs_dir: Path, target: Path, samples: int, poll: bool) -> tuple[float, float, list[float]]:
    from tui.app import make_app
    from tui.messages import RunsShown

    shown: list[float] = []

    def hook(message: object) -> None:
        if isinstance(message, RunsShown):
            shown.append(time.perf_counter())

    app = make_app(runs_dir, backend=_NoQueue(runs_dir), poll=poll)
    started = time.perf_counter()
    async with app.run_test(size=(160, 48), message_hook=hook) as pilot:
        main = app.main
        while not shown:
            await asyncio.sleep(0.005)
        startup_load_s = shown[0] - started
        await pilot.pause(1.0)  # let the lazily mounted panels settle
        before = len(shown)
        start = time.perf_counter()
        main.runs_pane.action_rescan()  # the leaderboard reads all n runs again
        while len(shown) == before:
            await asyncio.sleep(0.005)
        load_s = shown[-1] - start
        main.leaderboard.select_path(str(target))
        while len(main.curves.drawn_history.get("val_loss", [])) != 5:
            await asyncio.sleep(0.01)
        latencies = []
        for k in range(samples):
            epochs = 6 + k
            await pilot.pause(0.3)  # let the redraw cap reset, as between real epochs
            start = time.perf_counter()
            write_json(target / "history.json", synthetic_history(epochs))
            deadline = start + 5
            while len(main.curves.drawn_history.get("val_loss", [])) != epochs and time.perf_counter() < deadline:
                await asyncio.sleep(0.005)
            latencies.append(time.perf_counter() - start)
        return load_s, startup_load_s, latencies


def run_bench(n_runs: int = 1000, samples: int = 10, poll: bool = False) -> dict:
    with tempfile.TemporaryDirectory(prefix="tui-bench-") as tmp:
        root = Path(tmp) / "runs"
        root.mkdir()
        paint, _ = first_paint(root)
        paths = make_runs(root, n_runs)
        paint_full, rows_painted = first_paint(root, wait_rows=True)  # builds the run index
        _, rows_painted_warm = first_paint(root, wait_rows=True)      # reads it
        load_s, startup_load_s, latencies = asyncio.run(_in_app(root, paths[0], samples, poll))
    return {"first_paint_s": round(paint, 4), "watch_latency_median_s": round(statistics.median(latencies), 4),
            "load_1000_runs_s": round(load_s, 4), "load_at_startup_s": round(startup_load_s, 4),
            "first_paint_with_runs_s": round(paint_full, 4), "runs_on_screen_s": round(rows_painted, 4),
            "runs_on_screen_warm_s": round(rows_painted_warm, 4),
            "runs": n_runs, "samples": samples, "poll": poll}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tui.bench", description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=1000, help="run directories to load (default 1000)")
    p.add_argument("--samples", type=int, default=10, help="history writes to time (default 10)")
    p.add_argument("--poll", action="store_true", help="use the polling observer")
    p.add_argument("--json", action="store_true", help="print JSON")
    args = p.parse_args(argv)
    result = run_bench(args.runs, args.samples, args.poll)
    print(json.dumps(result) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

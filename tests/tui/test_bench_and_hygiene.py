"""The app's command line and its benchmark helper run (torch-freedom: tests/test_import_hygiene.py)."""

from __future__ import annotations

import subprocess
import sys


def test_cli_help():
    out = subprocess.run([sys.executable, "-m", "tui", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "--poll" in out.stdout and "--runs" in out.stdout


def test_bench_small():
    from tui.bench import run_bench

    result = run_bench(n_runs=30, samples=3)
    assert set(result) >= {"first_paint_s", "watch_latency_median_s", "load_1000_runs_s"}
    assert 0 < result["first_paint_s"] < 10
    assert 0 < result["watch_latency_median_s"] < 3
    assert 0 < result["load_1000_runs_s"] < 10

"""`adapter-engine bench runs`: listing N runs with the run index against reading every file
(`runs --rescan`, what every listing did before the index), in one process tree, same runs.

Each figure is a fresh `adapter-engine runs DIR --json` process (imports included), the median
of `repeats`: `cold_s` with no index yet (it is built then), `warm_s` with the index current,
`rescan_s` reading every file. `equal` says the warm rows are the rescan's."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common.fileio import write_json
from engine.rundir.files import HISTORY_KEYS
from engine.rundir.layout import RUN_INDEX

LEVELS = ("L1", "L2", "L3", "L4", "L5", "B1", "L5F")


def synthetic_history(epochs: int) -> dict:
    history = {k: [round(1.0 / (i + 1), 4) for i in range(epochs)] for k in HISTORY_KEYS}
    history["epoch"] = list(range(1, epochs + 1))
    return history


def make_runs(root: Path, n: int) -> list[Path]:
    """n finished run directories (config, history, status) spread over the levels."""
    paths = []
    for i in range(n):
        level = LEVELS[i % len(LEVELS)]
        run = root / level / f"{level}_20250101_{i:06d}"
        run.mkdir(parents=True)
        write_json(run / "config.json", {"level_key": level, "adapter": {"params": 1000 + i},
                                         "training": {"epochs": 5}, "timestamp": "20250101_000000"})
        write_json(run / "history.json", synthetic_history(5))
        write_json(run / "status.json", {"state": "done", "epoch": 5, "num_epochs": 5})
        paths.append(run)
    return paths


def _listing(root: Path, *extra: str) -> tuple[float, list]:
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "engine", "runs", str(root), "--json", *extra],
                         capture_output=True, text=True, check=True)
    return time.perf_counter() - start, json.loads(out.stdout)


def bench_runs(n_runs: int, repeats: int = 3) -> dict:
    with tempfile.TemporaryDirectory(prefix="runs-bench-") as tmp:
        root = Path(tmp) / "runs"
        make_runs(root, n_runs)
        cold = []
        for _ in range(repeats):
            for name in (RUN_INDEX, RUN_INDEX + "-wal", RUN_INDEX + "-shm"):
                (root / name).unlink(missing_ok=True)
            cold.append(_listing(root)[0])
        warm = [_listing(root) for _ in range(repeats)]
        rescan = [_listing(root, "--rescan") for _ in range(repeats)]
    rescan_s, warm_s = statistics.median(t for t, _ in rescan), statistics.median(t for t, _ in warm)
    return {"runs": len(warm[0][1]), "repeats": repeats, "cold_s": round(statistics.median(cold), 3),
            "warm_s": round(warm_s, 3), "rescan_s": round(rescan_s, 3), "rescan_over_warm": round(rescan_s / warm_s, 2),
            "equal": warm[-1][1] == rescan[-1][1]}

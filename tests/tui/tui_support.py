"""Helpers for the TUI tests: run directories in tmp_path (ours and seed-format), a fake engine
backend (queue in memory, no subprocesses), and Pilot utilities. A module of its own, because
`conftest` is an ambiguous name with two conftest files in the tree."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.fileio import write_json

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "adapters.toml"


def history(n: int, start: float = 1.0) -> dict[str, list]:
    h: dict[str, list] = {k: [] for k in ("epoch", "train_loss", "train_cos_sim", "val_loss", "val_cos_sim",
                                          "val_accept_80", "val_accept_85", "val_accept_90", "val_accept_95",
                                          "val_consecutive_90", "lr", "epoch_time_s", "train_tokens_per_s",
                                          "data_wait_frac")}
    for i in range(n):
        loss = start / (i + 1)
        h["epoch"].append(i + 1)
        h["train_loss"].append(loss * 1.1)
        h["train_cos_sim"].append(1 - loss / 2)
        h["val_loss"].append(loss)
        h["val_cos_sim"].append(1 - loss / 3)
        for t, a in (("80", 0.9), ("85", 0.8), ("90", 0.6), ("95", 0.3)):
            h[f"val_accept_{t}"].append(a * (1 - loss / 4))
        h["val_consecutive_90"].append(3.0 + i)
        h["lr"].append(1e-3)
        h["epoch_time_s"].append(2.0)
        h["train_tokens_per_s"].append(1000.0)
        h["data_wait_frac"].append(0.01)
    return h


def config(level: str, epochs: int = 3, **extra: Any) -> dict:
    return {"task": "align", "vlm_only": False, "level_key": level,
            "adapter": {"level": level, "name": "Bottleneck", "hidden_dim": 64, "bottleneck_dim": 256,
                        "num_blocks": 1, "params": 2_113_537},
            "data": {"train_path": "/data/train", "val_path": "/data/val", "train_samples": 10, "val_samples": 2},
            "training": {"epochs": epochs, "batch_size": 8, "learning_rate": 0.001, "early_stopping": 10},
            "timestamp": "20250101_000000", "seed": 0, "device": "cpu", **extra}


def make_run(root: Path, level: str, name: str, epochs_done: int = 2, *, epochs: int = 3,
             state: str | None = "done", start: float = 1.0, **cfg: Any) -> Path:
    run = root / level / name
    run.mkdir(parents=True)
    write_json(run / "config.json", config(level, epochs, **cfg))
    write_json(run / "history.json", history(epochs_done, start))
    if state is not None:
        write_json(run / "status.json", {"state": state, "pid": os.getpid(), "host": "elsewhere",
                                         "epoch": epochs_done, "num_epochs": epochs, "step": 5,
                                         "steps_per_epoch": 10, "running_loss": 0.5, "tokens_per_s": 1234.0,
                                         "eta_s": 30, "device": "cpu", "error": None})
    (run / "train.log").write_text("epoch 1 done\nepoch 2 done\n")
    return run


def eval_result(curve: list[float], *, gamma: int = 5, draft_cost: float = 0.1, tau: float = 0.9,
                top: bool = False) -> dict:
    """An eval.json as the engine writes it, with `curve` as acceptance by position at `tau`
    (the other thresholds get a scaled copy); E[min(L, γ)] and the speedup follow from it."""
    taus = [0.8, 0.85, 0.9, 0.95]
    curves = {f"{t:g}": [round(p * (1.0 if t == tau else (1.1 if t < tau else 0.5)), 6) for p in curve]
              for t in taus}
    curves = {k: [min(1.0, p) for p in v] for k, v in curves.items()}
    expected = {k: {str(g): sum(v[:g]) for g in range(1, 9)} for k, v in curves.items()}
    key = f"{tau:g}"
    at_gamma = sum(curves[key][:gamma])
    result = {
        "samples": 10, "tokens": 100, "thresholds": taus, "threshold": tau, "gamma": gamma,
        "draft_cost": draft_cost,
        "accept_rate": {k: (v[0] if v else 0.0) for k, v in curves.items()},
        "prefix_length": {k: {"mean": sum(v), "median": float(sum(p >= 0.5 for p in v)), "p90": float(len(v))}
                          for k, v in curves.items()},
        "accept_by_position": curves, "expected_accepted": expected,
        "expected_accepted_at_gamma": at_gamma, "speedup": (at_gamma + 1) / (1 + gamma * draft_cost),
    }
    if top:
        result.update(token_top1_match=0.5, token_top5_match=0.75)
    return result


def make_eval(run: Path, curve: list[float], **kw: Any) -> dict:
    result = eval_result(curve, **kw)
    write_json(run / "eval.json", result)
    return result


def make_seed_run(root: Path, level: str = "L2", name: str = "L2_20240101_000000") -> Path:
    run = root / level / name
    run.mkdir(parents=True)
    seed_hist = {k: v for k, v in history(4, 0.8).items()
                 if k in ("train_loss", "train_cos_sim", "val_loss", "val_cos_sim", "val_accept_80",
                          "val_accept_85", "val_accept_90", "val_accept_95")}
    (run / "history.json").write_text(json.dumps(seed_hist))
    (run / "config.json").write_text(json.dumps({
        "task": "align", "vlm_only": False,
        "adapter": {"level": 2, "name": "MultiLayer", "hidden_dim": 4096, "params": 6_324_227},
        "data": {"train_path": "/seed/train", "val_path": "/seed/val"},
        "training": {"epochs": 4, "batch_size": 64, "learning_rate": 0.001, "early_stopping": 10},
        "timestamp": "20240101_000000", "best_val_loss": 0.2}))
    return run


@dataclass
class FakeJob:
    id: int
    level: str
    dataset: str | None
    settings: dict
    state: str = "queued"
    position: int | None = None
    run_dir: str | None = None
    pid: int | None = None
    host: str | None = None
    error: str | None = None
    nproc: int = 1
    gpus: str | None = None


@dataclass
class FakeWorkerStatus:
    alive: bool = False
    pid: int | None = None
    host: str | None = None
    heartbeat: str | None = None
    running: list = field(default_factory=list)
    gpus: str | None = None
    gpu_stats: list = field(default_factory=list)


class FakeQueue:
    """The JobQueue calls the TUI makes, in memory."""

    def __init__(self) -> None:
        self.job_list: list[FakeJob] = []
        self.calls: list[tuple] = []
        self.worker_gpus: str | None = None

    def _renumber(self) -> None:
        queued = sorted((j for j in self.job_list if j.state == "queued"), key=lambda j: (j.position or 0, j.id))
        for i, j in enumerate(queued, 1):
            j.position = i

    def add_many(self, jobs, front=False, dataset=None, config=None):
        self.calls.append(("add_many", [l for l, _ in jobs], front, dataset))
        ids = []
        for k, (level, args) in enumerate(jobs):
            job = FakeJob(len(self.job_list) + 1, level, dataset, dict(args),
                          position=(-len(jobs) + k) if front else 10_000 + k)
            self.job_list.append(job)
            ids.append(job.id)
        self._renumber()
        return ids

    def jobs(self):
        return list(self.job_list)

    def get(self, job_id):
        return next(j for j in self.job_list if j.id == job_id)

    def cancel(self, ids):
        self.calls.append(("cancel", ids))
        for j in self.job_list:
            if j.id in ids:
                j.state, j.position = "cancelled", None

    def retry(self, job_id, resume=False):
        self.calls.append(("retry", job_id, resume))
        job = self.get(job_id)
        job.state, job.position = "queued", 10_000
        self._renumber()
        return job_id

    def move(self, job_id, to):
        self.calls.append(("move", job_id, to))
        queued = sorted((j for j in self.job_list if j.state == "queued"), key=lambda j: j.position)
        job = self.get(job_id)
        queued.remove(job)
        queued.insert(to - 1, job)
        for i, j in enumerate(queued, 1):
            j.position = i

    def remove(self, ids):
        self.calls.append(("remove", ids))
        self.job_list = [j for j in self.job_list if j.id not in ids]
        self._renumber()

    def clear_done(self):
        self.calls.append(("clear_done",))

    def worker_status(self):
        running = [j.id for j in self.job_list if j.state == "running"]
        return FakeWorkerStatus(alive=True, pid=4242, host="here", heartbeat=None, running=running,
                                gpus=self.worker_gpus)


class FakeBackend:
    def __init__(self, runs_dir: Path, levels_rows: list[dict] | None = None, inspect: dict | None = None) -> None:
        self.runs_dir = runs_dir
        self.queue = FakeQueue()
        self.workers_started = 0
        self.inspected: list[str] = []
        self.inspect_result = inspect if inspect is not None else {
            "format": "chunked", "samples": 100, "chunks": 2, "hidden_dim": 64}
        self.levels_rows = levels_rows
        self.require_existing = False  # inspect() fails for a path that does not exist (as the engine's does)

    def ensure_worker(self):
        self.workers_started += 1
        return 4242

    def stop_worker(self):
        self.workers_stopped = getattr(self, "workers_stopped", 0) + 1
        running = [j.id for j in self.queue.job_list if j.state == "running"]
        for job in self.queue.job_list:
            if job.state == "running":
                job.state = "cancelled"
        return 4242, running

    def submit(self, request):
        """As `queue add` would: one job per level, each with its level's defaults for the fields
        the request leaves out."""
        from adapters.registry import load_registry

        self.requests = getattr(self, "requests", []) + [request]
        from engine.queue.sweep import grid, parse_axes, random_points

        registry = load_registry(CONFIG)
        data = {"train_data": str(registry.datasets[request.dataset].train)} if request.dataset else {}
        axes = parse_axes(request.sweep)
        points = (random_points(axes, request.sweep_random) if request.sweep_random else grid(axes)) if axes else [{}]
        sweep = "sweep_test" if axes else None
        jobs = [(level, {**registry.level(level).train, **data, **request.fields, **point, "sweep": sweep})
                for level in request.levels for point in points]
        ids = self.queue.add_many(jobs, front=request.front, dataset=request.dataset)
        self.ensure_worker()
        return ids

    def queue_speculation(self, run_dir):
        """As `queue add --speculate RUN` would: refused without an extraction to take the
        models from, else one speculate job."""
        from engine.speculate.options import JOB_KIND, extraction_of

        if not extraction_of(run_dir):
            return f"give --drafter: {run_dir}'s training data records no extraction to take it from", None
        (job_id,) = self.queue.add_many([(JOB_KIND, {"kind": JOB_KIND, "options": {"run": run_dir}})])
        return None, job_id

    def job_for_run(self, run_dir):
        return next((j for j in self.queue.job_list if j.run_dir == run_dir), None)

    def levels(self, widths):
        from adapters.registry import load_registry

        drafter, hidden = widths
        self.counted_at = getattr(self, "counted_at", []) + [widths]
        reg = load_registry(CONFIG)
        return self.levels_rows or [{"key": k, "params": 1000 * hidden + i + (drafter if drafter != hidden else 0),
                                     "name": s.name}
                                    for i, (k, s) in enumerate(reg.levels.items())]

    def checkpoint(self, path):
        self.described = getattr(self, "described", []) + [path]
        return {"path": path, "format": "reference", "level": "L4", "class": "AttentionAdapter",
                "init_kwargs": {"hidden_dim": 64, "num_heads": 4}, "params": 12345, "epoch": 7,
                "metrics": {"accept_90": 0.25}}

    def inspect(self, path):
        from tui.backend import BackendError

        self.inspected.append(path)
        if "bad" in path or (self.require_existing and not Path(path).exists()):
            raise BackendError(f"{path} is not a dataset: no index.json and not a .pt file")
        return dict(self.inspect_result)

    def synth(self, out_dir, on_line):
        for i in range(3):
            on_line(f"chunk {i + 1}/3")
        (Path(out_dir) / "train").mkdir(parents=True, exist_ok=True)
        (Path(out_dir) / "val").mkdir(parents=True, exist_ok=True)


async def wait_for(pilot, predicate, timeout: float = 60.0, step: float = 0.05) -> bool:
    """Pause the pilot until predicate() is true (or time runs out)."""
    import time

    from textual.css.query import NoMatches

    def check() -> bool:
        try:
            return bool(predicate())
        except (NoMatches, KeyError):  # lazily mounted panels, rows not loaded yet
            return False

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        await pilot.pause(step)
    return check()


def screen_text(app) -> str:
    """The screen as plain text (what export_screenshot draws, without the SVG)."""
    import io

    from rich.console import Console

    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), record=True, legacy_windows=False,
                      safe_box=False, color_system=None)
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return console.export_text()


def make_reference_run(root: Path, name: str = "L4_20260206_192256", *, positions: bool = True) -> Path:
    """A run directory as the reference leaves it, in its layout (RUNS/<RUN>/), with its
    evaluation's acceptance_metrics.json and position_stats.json beside it."""
    run = root / name
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({
        "task": "train_L4_Attention", "vlm_only": False,
        "adapter": {"level": 4, "name": "Attention", "hidden_dim": 4096, "params": 100_714_497},
        "training": {"epochs": 50, "batch_size": 64}, "timestamp": "20260206_192256", "best_val_loss": 1.2458}))
    seed_hist = {k: v for k, v in history(3, 1.5).items() if k in ("train_loss", "val_loss", "val_cos_sim",
                                                                    "val_accept_90")}
    (run / "history.json").write_text(json.dumps(seed_hist))
    (run / "best_model.pt").write_bytes(b"a torch file, as far as the TUI knows")
    (run / "acceptance_metrics.json").write_text(json.dumps({
        "accept_90": 0.248, "consecutive_mean_90": 7.619, "consecutive_median_90": 5.0, "sd_gamma_decode": 5,
        "sd_consecutive_gamma5": 4.606, "speedup_e2e": 0.9391, "position_accept_90": [0.95, 0.9, 0.8, 0.6],
        "token_top1_match": 0.24, "token_top5_match": 0.39}))
    if positions:
        (run / "position_stats.json").write_text(json.dumps([
            {"position": k, "mean": 0.9 - 0.1 * k, "std": 0.1, "num_samples": 10, "accept_80": 0.99 - 0.1 * k,
             "accept_85": 0.97 - 0.1 * k, "accept_90": 0.95 - 0.1 * k, "accept_95": 0.9 - 0.1 * k} for k in range(4)]))
    return run

"""Every run directory as a leaderboard row: used by `adapter-engine runs` and the app. A
broken run directory yields a row that says what is wrong, never an exception.

A runs directory holds runs in two layouts, side by side: ours, RUNS/<LEVEL>/<RUN>/, and the
reference's, RUNS/<RUN>/ (a seed command with --output_dir). Run directories written by the
seed's own trainer (config.json + history.json only) are valid finished runs, and the
reference's evaluation files beside them (acceptance_metrics.json) fill the acceptance columns,
marked as the reference's figures."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adapters import seed
from common.fileio import ReadError, read_json
from engine.rundir.evaluation import PRIMARY_THRESHOLD, eval_key
from engine.rundir.layout import (CONFIG, EVAL, HISTORY, META, REFERENCE_METRICS, SPECULATE, STATUS, is_evaluation_dir,
                                  iter_run_dirs, level_of_name)
from engine.rundir.meta import parse_meta
from engine.rundir.speculation import parse_speculation, primary
from engine.rundir.states import age_s, effective_state


@dataclass
class RunSummary:
    run: str
    path: str
    level: str
    params: int | None = None
    hidden_dim: int | None = None   # the verifier's width Hv (config.json's adapter section)
    drafter_dim: int | None = None  # the drafter's width Hd (= hidden_dim unless recorded otherwise)
    state: str = "unknown"
    epochs_done: int = 0
    num_epochs: int | None = None
    best_val_loss: float | None = None
    best_epoch: int | None = None
    cos_sim: float | None = None
    accept_90: float | None = None
    consecutive_90: float | None = None
    duration_s: float | None = None
    started: str | None = None
    seed_format: bool = False
    error: str | None = None
    prefix_mean_90: float | None = None
    expected_tokens: float | None = None
    speedup: float | None = None          # estimated from cosine acceptance (eval.json)
    speedup_measured: float | None = None  # measured in the draft-verify loop (speculate.json)
    tau: float | None = None               # measured tokens per verifier step
    measured_gamma: int | None = None
    eval_source: str = "ours"  # "reference": the acceptance columns come from its acceptance_metrics.json
    progress: dict[str, Any] = field(default_factory=dict)
    label: str | None = None   # meta.json: the user's words about the run
    tags: list[str] = field(default_factory=list)
    note: str = ""
    archived: bool = False
    linked: bool = False       # reached through a symbolic link: listed, read-only (layout.linked_run_problem)
    sweep: str | None = None   # the sweep the run belongs to (config.json)
    hparams: dict[str, float] = field(default_factory=dict)  # its numeric settings, for sweeps

    def as_dict(self) -> dict[str, Any]:
        """The row as JSON-ready values, in field order (a shallow copy: the values are plain JSON
        types; dataclasses.asdict's deep copy was most of what `runs --json` took at 10,000 runs)."""
        return dict(self.__dict__)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _at(history: dict, key: str, index: int | None) -> float | None:
    values = history.get(key)
    if index is None or not isinstance(values, list) or index >= len(values):
        return None
    return _number(values[index])


def summarize(run_dir: Path | str) -> RunSummary:
    """One leaderboard row. Problems with any file land in `error`; the row is still returned."""
    run_dir = os.fspath(run_dir)  # plain strings: this runs once per run, 1,000 runs in < 1 s
    row = RunSummary(run=os.path.basename(run_dir), path=run_dir, level=level_of_name(run_dir),
                     linked=os.path.islink(run_dir) or os.path.islink(os.path.dirname(run_dir)))
    problems: list[str] = []

    def load(name: str) -> dict | None:
        try:
            data = read_json(os.path.join(run_dir, name), missing_ok=True)
        except ReadError as exc:
            problems.append(str(exc))
            return None
        if data is not None and not isinstance(data, dict):
            problems.append(f"{name} is not a JSON object")
            return None
        return data

    config, history, status = load(CONFIG), load(HISTORY), load(STATUS)
    if not os.path.isdir(run_dir):
        problems.append("run directory was deleted")

    if config:
        row.level = str(config.get("level_key") or seed.key_from_config(config) or row.level)
        adapter = config.get("adapter") if isinstance(config.get("adapter"), dict) else {}
        params = adapter.get("params")
        row.params = params if isinstance(params, int) and not isinstance(params, bool) else None
        row.hidden_dim = _int(adapter.get("hidden_dim"))
        row.drafter_dim = _int(adapter.get("drafter_dim")) or row.hidden_dim
        training = config.get("training") if isinstance(config.get("training"), dict) else {}
        row.num_epochs = training.get("epochs") if isinstance(training.get("epochs"), int) else None
        row.started = config.get("timestamp") if isinstance(config.get("timestamp"), str) else None
        row.sweep = config.get("sweep") if isinstance(config.get("sweep"), str) else None
        row.hparams = hyperparameters(config)

    if history:
        val = history.get("val_loss")
        if isinstance(val, list):
            row.epochs_done = len(val)
            finite = [(v, i) for i, v in enumerate(val) if _number(v) is not None]
            if finite:
                row.best_val_loss, best = min(finite)
                row.best_epoch = best + 1
                row.cos_sim = _at(history, "val_cos_sim", best)
                row.accept_90 = _at(history, "val_accept_90", best)
                row.consecutive_90 = _at(history, "val_consecutive_90", best)
        times = history.get("epoch_time_s")
        if isinstance(times, list) and all(_number(t) is not None for t in times) and times:
            row.duration_s = float(sum(times))

    if status is not None:
        row.state = effective_state(status)
        row.num_epochs = status.get("num_epochs") if isinstance(status.get("num_epochs"), int) else row.num_epochs
        row.progress = {k: status.get(k) for k in ("epoch", "step", "steps_per_epoch", "running_loss",
                                                   "tokens_per_s", "eta_s", "device")}
        if status.get("error"):
            row.error = str(status["error"])
        started, age = age_s(status.get("started_at")), age_s(status.get("updated_at"))
        if started is not None and age is not None:
            row.duration_s = max(0.0, started - age)
    elif config is not None and history is not None and not os.path.exists(os.path.join(run_dir, STATUS)):
        row.state, row.seed_format = "done", True
    elif config is None and history is None and not problems and is_evaluation_dir(run_dir):
        row.state, row.seed_format = "done", True  # the reference's evaluation alone: a finished result

    evaluation = load(EVAL)
    if evaluation:
        row.prefix_mean_90 = _number((evaluation.get("prefix_length", {}).get(eval_key(PRIMARY_THRESHOLD)) or {}).get("mean")
                                     if isinstance(evaluation.get("prefix_length"), dict) else None)
        row.expected_tokens = _number(evaluation.get("expected_accepted_at_gamma"))
        row.speedup = _number(evaluation.get("speedup"))
        if row.best_val_loss is None:  # an evaluated checkpoint without a history (the reference's, say)
            row.best_val_loss = _number(evaluation.get("val_loss"))
        if row.cos_sim is None:
            row.cos_sim = _number(evaluation.get("cos_sim"))
    elif os.path.exists(os.path.join(run_dir, REFERENCE_METRICS)):
        metrics = load(REFERENCE_METRICS)
        if metrics:  # the reference's own definitions (docs/SEED.md)
            row.eval_source = "reference"
            row.prefix_mean_90 = _number(metrics.get("consecutive_mean_90"))
            row.expected_tokens = _number(metrics.get("sd_consecutive_gamma5"))
            row.speedup = _number(metrics.get("speedup_e2e"))
            if row.cos_sim is None:  # an evaluation without a history: its own figures
                row.cos_sim = _number(metrics.get("cos_sim_mean"))
            if row.accept_90 is None:
                row.accept_90 = _number(metrics.get("accept_90"))

    if os.path.exists(os.path.join(run_dir, SPECULATE)):
        speculation = load(SPECULATE)
        measured = primary(speculation, parse_speculation(speculation)) if speculation else None
        if measured is not None:
            row.speedup_measured, row.tau, row.measured_gamma = measured.speedup, measured.tau, measured.gamma

    if os.path.exists(os.path.join(run_dir, META)):
        meta = parse_meta(load(META))
        row.label, row.tags, row.note, row.archived = meta.label, meta.tags, meta.note, meta.archived

    if problems:
        row.error = "; ".join(problems)
        if status is None and not row.seed_format:
            row.state = "unreadable"
    return row


HPARAMS = ("learning_rate", "batch_size", "num_epochs", "early_stopping", "seed", "val_split")


def hyperparameters(config: dict) -> dict[str, float]:
    """A run's numeric settings (and architecture overrides), from config.json's settings or,
    for the reference's runs, its training table."""
    settings = config.get("settings") if isinstance(config.get("settings"), dict) else None
    if settings is None:
        training = config.get("training") if isinstance(config.get("training"), dict) else {}
        settings = {"learning_rate": training.get("learning_rate"), "batch_size": training.get("batch_size"),
                    "num_epochs": training.get("epochs"), "early_stopping": training.get("early_stopping")}
    arch = settings.get("arch_overrides") if isinstance(settings.get("arch_overrides"), dict) else {}
    values = {**{k: settings.get(k) for k in HPARAMS}, **arch}
    return {k: float(v) for k, v in values.items() if _number(v) is not None}


def load_runs(root: Path) -> list[RunSummary]:
    return [summarize(path) for path in iter_run_dirs(root)]


SORT_KEYS = ("run", "level", "params", "state", "epochs_done", "best_val_loss", "cos_sim", "accept_90",
             "consecutive_90", "duration_s", "prefix_mean_90", "expected_tokens", "speedup", "speedup_measured", "tau")
HIGHER_IS_BETTER = {"cos_sim", "accept_90", "consecutive_90", "prefix_mean_90", "expected_tokens", "speedup",
                    "speedup_measured", "tau", "epochs_done", "params"}


def sort_runs(rows: list[RunSummary], key: str) -> list[RunSummary]:
    """Best first for metrics (missing values last), alphabetical for text columns."""
    if key not in SORT_KEYS:
        raise ValueError(f"unknown sort key {key!r} (one of: {', '.join(SORT_KEYS)})")
    present = [r for r in rows if getattr(r, key) is not None]
    missing = [r for r in rows if getattr(r, key) is None]
    present.sort(key=lambda r: getattr(r, key), reverse=key in HIGHER_IS_BETTER)
    return present + missing

"""Everything the app shows of one run, read in one go (in a worker thread)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.rundir.evaluation import NO_EVAL, EvalView, load_eval
from engine.rundir.files import clean_series, read_object
from engine.rundir.layout import CONFIG, HISTORY, STATUS
from engine.rundir.summary import RunSummary, summarize


@dataclass
class RunData:
    """Everything the inspector shows for one run, read in one go (in a worker thread)."""
    path: str
    summary: RunSummary
    history: dict[str, list[float | None]] = field(default_factory=dict)
    status: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    evaluation: EvalView | None = None
    eval_problem: str | None = NO_EVAL
    eval_data: Any = None  # the whole eval.json, to show other thresholds than the primary


def read_run(path: str | os.PathLike, *, full: bool = True) -> RunData:
    """Summary of a run; with `full` also its curves, status and config."""
    run_dir = Path(path)
    data = RunData(path=str(run_dir), summary=summarize(run_dir))
    if not full:
        return data
    history, problem = read_object(run_dir / HISTORY)
    if problem and (run_dir / HISTORY).exists():
        data.problems.append(problem)
    data.history = {k: clean_series(v) for k, v in history.items() if isinstance(v, list)}
    if (run_dir / STATUS).exists():
        data.status, problem = read_object(run_dir / STATUS)
        if problem:
            data.problems.append(problem)
    if (run_dir / CONFIG).exists():
        data.config, problem = read_object(run_dir / CONFIG)
        if problem:
            data.problems.append(problem)
    data.eval_data, data.evaluation, data.eval_problem = load_eval(run_dir)
    if data.eval_problem == NO_EVAL:
        data.eval_problem = why_no_eval(data.summary, data.config)
    return data


def why_no_eval(summary: RunSummary, config: dict[str, Any]) -> str:
    """Why a run has no eval.json: not yet, or never (and how to get one)."""
    settings = config.get("settings") if isinstance(config.get("settings"), dict) else {}
    if summary.state in ("running", "queued"):
        return "no eval.json yet (written when the run ends)"
    if summary.state != "done":
        return f"no eval.json: the run ended {summary.state}"
    if summary.seed_format:
        return "no eval.json: the reference's runs have none (`adapter-engine eval RUN` writes one)"
    if settings.get("no_eval"):
        return "no eval.json: trained with --no_eval (`adapter-engine eval RUN` writes one)"
    return "no eval.json: the evaluation at the end failed (see train.log; `adapter-engine eval RUN` retries)"

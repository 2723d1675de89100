"""Torch-free readers for the TUI: history, status and config of one run, log tails, config
diffs and curve smoothing. Every reader tolerates missing, empty, garbage or half-written
files and deleted directories: it returns what it could read plus a one-line problem."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.fileio import ReadError, open_regular, read_json
from engine.rundir import CONFIG, EVAL, HISTORY, REFERENCE_METRICS, REFERENCE_POSITIONS, STATUS
from engine.runindex import RunSummary, summarize

CURVE_KEYS = ("train_loss", "val_loss", "train_cos_sim", "val_cos_sim",
              "val_accept_80", "val_accept_85", "val_accept_90", "val_accept_95")


def read_object(path: Path) -> tuple[dict[str, Any], str | None]:
    """A JSON object from `path`, or ({}, reason)."""
    try:
        data = read_json(path)
    except ReadError as exc:
        return {}, str(exc)
    if not isinstance(data, dict):
        return {}, f"{Path(path).name} is not a JSON object"
    return data, None


def clean_series(values: Any) -> list[float | None]:
    """A history list as floats, with None where a value is missing or not finite."""
    if not isinstance(values, list):
        return []
    out: list[float | None] = []
    for v in values:
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        out.append(float(v) if ok else None)
    return out


NO_EVAL = "no eval.json yet"
PRIMARY_TAU = 0.9


def _num(value: Any) -> float | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


@dataclass
class EvalView:
    """What the acceptance panel shows from one eval.json, every field checked. Thresholds are
    the f"{tau:g}" keys the engine writes ("0.9")."""
    tau: str
    by_position: list[float | None]
    gamma: int | None = None
    draft_cost: float | None = None
    expected_at_gamma: float | None = None
    speedup: float | None = None
    prefix: dict[str, float] = field(default_factory=dict)
    accept_rate: float | None = None
    token_top1: float | None = None
    token_top5: float | None = None
    thresholds: list[str] = field(default_factory=list)
    # "reference": the reference's acceptance_metrics.json, whose curve is the marginal acceptance
    # at each position and whose speedup is its own end-to-end estimate (docs/SEED.md)
    source: str = "ours"


def parse_eval(data: Any, tau: float | str | None = None) -> tuple[EvalView | None, str | None]:
    """An EvalView at threshold `tau` (default: the file's primary threshold, else 0.9), or
    (None, reason). Tolerates any shape: a wrong-typed field is left out, not raised."""
    if not isinstance(data, dict):
        return None, f"{EVAL} is not a JSON object"
    curves = data.get("accept_by_position")
    if not isinstance(curves, dict) or not curves:
        return None, f"{EVAL} has no accept_by_position"
    if tau is None:
        tau = _num(data.get("threshold"))
        tau = PRIMARY_TAU if tau is None else tau
    key = tau if isinstance(tau, str) else f"{tau:g}"
    if key not in curves:
        if isinstance(tau, str) or tau != PRIMARY_TAU:
            return None, f"{EVAL} has no threshold {key}"
        key = next(iter(curves))  # an eval run with other thresholds: show its first one
    values = curves.get(key)
    if not isinstance(values, list):
        return None, f"{EVAL}: accept_by_position[{key}] is not a list"
    view = EvalView(tau=str(key), by_position=[_num(v) for v in values])
    gamma = data.get("gamma")
    view.gamma = gamma if isinstance(gamma, int) and not isinstance(gamma, bool) and gamma > 0 else None
    view.draft_cost = _num(data.get("draft_cost"))
    view.speedup = _num(data.get("speedup"))
    view.token_top1, view.token_top5 = _num(data.get("token_top1")), _num(data.get("token_top5"))
    view.thresholds = [str(k) for k in curves]
    primary = _num(data.get("threshold"))
    expected = data.get("expected_accepted")
    per_gamma = expected.get(key) if isinstance(expected, dict) else None
    if primary is not None and f"{primary:g}" == key:
        view.expected_at_gamma = _num(data.get("expected_accepted_at_gamma"))
    elif isinstance(per_gamma, dict) and view.gamma is not None:
        view.expected_at_gamma = _num(per_gamma.get(str(view.gamma)))
    if primary is None or f"{primary:g}" != key:
        view.speedup = None  # the file's speedup belongs to its primary threshold
    prefix = data.get("prefix_length")
    prefix = prefix.get(key) if isinstance(prefix, dict) else None
    if isinstance(prefix, dict):
        view.prefix = {k: v for k in ("mean", "median", "p90") if (v := _num(prefix.get(k))) is not None}
    rates = data.get("accept_rate")
    view.accept_rate = _num(rates.get(key)) if isinstance(rates, dict) else None
    return view, None


REFERENCE_TAUS = ("0.8", "0.85", "0.9", "0.95")


def parse_reference_eval(data: Any, tau: float | str | None = None) -> tuple[EvalView | None, str | None]:
    """A view of the reference's evaluation files: {"metrics": acceptance_metrics.json,
    "positions": position_stats.json or None}. Its curve is the marginal acceptance at each
    position (position_stats.json has every threshold; acceptance_metrics.json 0.9 only)."""
    metrics = data.get("metrics") if isinstance(data, dict) else None
    if not isinstance(metrics, dict):
        return None, f"{REFERENCE_METRICS} is not a JSON object"
    positions = data.get("positions") if isinstance(data.get("positions"), list) else None
    taus = list(REFERENCE_TAUS) if positions else ["0.9"]
    key = "0.9" if tau is None else (tau if isinstance(tau, str) else f"{tau:g}")
    if key not in taus:
        return None, f"the reference's evaluation has no threshold {key}"
    field_name = f"accept_{round(float(key) * 100)}"
    if positions:
        curve = [_num(row.get(field_name)) if isinstance(row, dict) else None for row in positions]
    elif isinstance(metrics.get("position_accept_90"), list):
        curve = [_num(v) for v in metrics["position_accept_90"]]
    else:
        return None, f"{REFERENCE_METRICS} has no acceptance by position"
    gamma = metrics.get("sd_gamma_decode")
    view = EvalView(tau=key, by_position=curve, source="reference", thresholds=taus,
                    gamma=gamma if isinstance(gamma, int) and not isinstance(gamma, bool) and gamma > 0 else None,
                    accept_rate=_num(metrics.get(field_name)),
                    token_top1=_num(metrics.get("token_top1_match")), token_top5=_num(metrics.get("token_top5_match")))
    suffix = round(float(key) * 100)
    view.prefix = {k: v for k in ("mean", "median") if (v := _num(metrics.get(f"consecutive_{k}_{suffix}"))) is not None}
    if key == "0.9":  # its decode estimate and end-to-end speedup are at 0.9
        view.expected_at_gamma = _num(metrics.get("sd_consecutive_gamma5"))
        view.speedup = _num(metrics.get("speedup_e2e"))
    return view, None


def load_eval(run_dir: Path) -> tuple[Any, EvalView | None, str | None]:
    """(the parsed file, its view at the primary threshold, None), or (None, None, why not):
    "no eval.json yet", or what is wrong with the file. Without eval.json, the reference's
    acceptance_metrics.json (with position_stats.json) stands in, marked as the reference's."""
    path = Path(run_dir) / EVAL
    if not path.exists():
        if (Path(run_dir) / REFERENCE_METRICS).exists():
            metrics, problem = read_object(Path(run_dir) / REFERENCE_METRICS)
            if problem:
                return None, None, problem
            positions = None
            if (Path(run_dir) / REFERENCE_POSITIONS).exists():
                try:
                    positions = read_json(Path(run_dir) / REFERENCE_POSITIONS)
                except ReadError:
                    positions = None
            data = {"reference": True, "metrics": metrics, "positions": positions}
            return (data, *parse_reference_eval(data))
        return None, None, NO_EVAL
    data, problem = read_object(path)
    if problem:
        return None, None, problem
    return (data, *parse_eval(data))


def parse_any_eval(data: Any, tau: float | str | None = None) -> tuple[EvalView | None, str | None]:
    """parse_eval, or parse_reference_eval for what load_eval read from the reference's files."""
    if isinstance(data, dict) and data.get("reference") is True:
        return parse_reference_eval(data, tau)
    return parse_eval(data, tau)


def read_eval(run_dir: Path) -> tuple[EvalView | None, str | None]:
    """(view, None), or (None, why not)."""
    return load_eval(run_dir)[1:]


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


def ema(values: list[float | None], alpha: float = 0.4) -> list[float | None]:
    """Exponential moving average that skips missing values."""
    out: list[float | None] = []
    acc: float | None = None
    for v in values:
        if v is not None:
            acc = v if acc is None else alpha * v + (1 - alpha) * acc
        out.append(None if v is None else acc)
    return out


def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    """{'training.epochs': 3, ...} from nested dicts."""
    if not isinstance(config, dict):
        return {prefix: config} if prefix else {}
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            out.update(flatten(value, name))
        else:
            out[name] = value
    return out


# Keys that differ between any two runs and say nothing about how they differ.
_NOISE = {"timestamp", "argv", "best_val_loss", "data.train_samples", "data.val_samples"}


def config_diff(a: dict[str, Any], b: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(key, value in a, value in b) for every flattened key whose value differs."""
    fa, fb = flatten(a), flatten(b)
    rows = []
    for key in sorted(set(fa) | set(fb)):
        if key in _NOISE or key.startswith("versions."):
            continue
        va, vb = fa.get(key, "—"), fb.get(key, "—")
        if va != vb:
            rows.append((key, va, vb))
    return rows


def read_tail(path: Path, offset: int, max_bytes: int = 64_000) -> tuple[str, int, bool]:
    """New text of a growing file from `offset`: (text, new offset, was_reset).
    A file that shrank (rewritten) is read again from its last `max_bytes`."""
    try:
        size = path.stat().st_size
    except OSError:
        return "", 0, offset != 0
    reset = size < offset
    if reset or offset == 0:
        offset = max(0, size - max_bytes)
        reset = True
    if size == offset and not reset:
        return "", offset, False
    try:
        with open_regular(path) as handle:  # a FIFO named train.log must not hang the app
            handle.seek(offset)
            chunk = handle.read(max(0, size - offset))
    except OSError:
        return "", offset, False
    # Keep a partial last line for the next read.
    cut = chunk.rfind(b"\n") + 1
    if cut == 0 and len(chunk) < max_bytes:
        return "", offset, reset
    if cut:
        chunk = chunk[:cut]
    return chunk.decode("utf-8", errors="replace"), offset + len(chunk), reset


def fmt_int(n: Any) -> str:
    if not isinstance(n, (int, float)) or isinstance(n, bool):
        return "—"
    n = float(n)
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.1f}{unit}"
    return f"{n:.0f}"


def fmt_duration(s: Any) -> str:
    if not isinstance(s, (int, float)) or isinstance(s, bool) or not math.isfinite(s):
        return "—"
    s = int(s)
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


def fmt_float(v: Any, digits: int = 4) -> str:
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
        return "—"
    return f"{v:.{digits}f}"

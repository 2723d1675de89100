"""eval.json: what `adapter-engine eval` (and the trainer, at the end of a run) writes, and the
tolerant reader the app and `runs` use. Thresholds are keyed f"{tau:g}" ("0.9"), the primary
one named by `threshold`. Without eval.json, the reference's acceptance_metrics.json (and
position_stats.json) beside a run stand in, marked as the reference's figures."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.fileio import ReadError, read_json, write_json
from engine.rundir.files import history_key, read_object
from engine.rundir.layout import EVAL, REFERENCE_METRICS, REFERENCE_POSITIONS

PRIMARY_THRESHOLD = 0.9
NO_EVAL = "no eval.json yet"
REFERENCE_TAUS = ("0.8", "0.85", "0.9", "0.95")


def eval_key(tau: float) -> str:
    """A threshold as eval.json keys it: "0.9"."""
    return f"{tau:g}"


def write_eval(run_dir: str | os.PathLike, result: dict[str, Any]) -> Path:
    """The one writer of eval.json (atomic)."""
    path = Path(run_dir) / EVAL
    write_json(path, result)
    return path


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
        tau = PRIMARY_THRESHOLD if tau is None else tau
    key = tau if isinstance(tau, str) else f"{tau:g}"
    if key not in curves:
        if isinstance(tau, str) or tau != PRIMARY_THRESHOLD:
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
    view.token_top1 = _num(data.get("token_top1_match", data.get("token_top1")))  # older files: token_top1
    view.token_top5 = _num(data.get("token_top5_match", data.get("token_top5")))
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
    field_name = f"accept_{history_key(float(key))}"
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
    suffix = history_key(float(key))
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

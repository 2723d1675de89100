"""speculate.json: what `adapter-engine speculate` measured for a run's adapter inside a real
draft–verify loop, and the tolerant reader `runs`, `eval` and the app use; and
speculate_status.json, a running speculation's progress. Draft lengths are keyed str(γ) ("5").
The figures of the primary draft length (`gamma`, the first one measured) are the run's."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.fileio import write_json
from common.text import plural
from engine.rundir.files import read_object
from engine.rundir.layout import SPECULATE, SPECULATE_PROGRESS

VERSION = 1


def write_speculation(run_dir: str | os.PathLike, result: dict[str, Any]) -> Path:
    """The one writer of speculate.json (atomic: a killed speculation leaves the old file or none)."""
    path = Path(run_dir) / SPECULATE
    write_json(path, {"version": VERSION, **result})
    return path


def write_progress(run_dir: str | os.PathLike, progress: dict[str, Any]) -> None:
    write_json(Path(run_dir) / SPECULATE_PROGRESS, progress)


def _num(value: Any) -> float | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


@dataclass(frozen=True)
class Measured:
    """One draft length's figures, each checked (None where missing or garbage)."""
    gamma: int
    tau: float | None = None
    speedup: float | None = None
    draft_ms_per_token: float | None = None
    verify_ms_per_step: float | None = None
    baseline_ms_per_token: float | None = None
    greedy_parity: bool | None = None


def parse_speculation(data: Any) -> dict[int, Measured]:
    """{γ: Measured} from speculate.json's content; {} for anything unusable."""
    per_gamma = data.get("per_gamma") if isinstance(data, dict) else None
    if not isinstance(per_gamma, dict):
        return {}
    out: dict[int, Measured] = {}
    for key, row in per_gamma.items():
        if not (isinstance(key, str) and key.isdigit() and isinstance(row, dict)):
            continue
        rate = _num(row.get("baseline_tokens_per_s"))
        parity = row.get("greedy_parity")
        out[int(key)] = Measured(int(key), _num(row.get("tau")), _num(row.get("speedup")),
                                 _num(row.get("draft_ms_per_token")), _num(row.get("verify_ms_per_step")),
                                 1000.0 / rate if rate else None, parity if isinstance(parity, bool) else None)
    return out


def read_speculation(run_dir: str | os.PathLike) -> tuple[dict[str, Any] | None, dict[int, Measured]]:
    """(speculate.json's content, its figures per γ); (None, {}) when it is missing or garbage."""
    path = Path(run_dir) / SPECULATE
    if not path.exists():
        return None, {}
    data, problem = read_object(path)
    return (None, {}) if problem else (data, parse_speculation(data))


def primary(data: Any, figures: dict[int, Measured]) -> Measured | None:
    """The run's measured figures: at the file's primary γ, else the first one."""
    gamma = data.get("gamma") if isinstance(data, dict) else None
    return figures.get(gamma) if gamma in figures else next(iter(figures.values()), None)


def read_progress(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    data, problem = read_object(Path(run_dir) / SPECULATE_PROGRESS)
    return None if problem else data


def progress_text(progress: dict[str, Any] | None) -> str:
    """"3/10 prompts, τ 2.41" (γ named when several are measured)."""
    if not progress:
        return ""
    done, total = progress.get("prompts_done"), progress.get("prompts_total")
    if not isinstance(done, int) or not isinstance(total, int):
        return ""
    text = f"{done}/{plural(total, 'prompt')}"
    gamma, tau = progress.get("gamma"), _num(progress.get("tau"))
    if tau is not None:
        several = isinstance(gamma, int) and progress.get("gammas", 1) != 1
        text += f", τ {tau:.2f}" + (f" at γ={gamma}" if several else "")
    return text

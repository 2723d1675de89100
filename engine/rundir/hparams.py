"""Which hyperparameters matter: for runs that differ in their settings (a sweep, or any runs
picked together), how a metric varies with each setting. Each setting's runs are grouped by
value (or, with more than six distinct values, into four bins, log-spaced when the values span
a decade or more); its effect is the spread of the groups' mean metric, and settings are ranked
by it. `adapter-engine runs --sweep ID` and the app's hyperparameter pane show the same ranking."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from engine.rundir.summary import HIGHER_IS_BETTER, RunSummary

METRICS = ("best_val_loss", "accept_90", "speedup", "cos_sim", "consecutive_90", "expected_tokens")
MAX_GROUPS = 6
BINS = 4


@dataclass
class Effect:
    name: str
    points: list[tuple[float, float]]        # (setting, metric) per run
    groups: list[tuple[str, float, int]]     # (value or bin, mean metric, runs)
    effect: float                            # spread of the group means
    best: str                                # the group with the best mean
    correlation: float | None                # Spearman's rank correlation of setting and metric
    log: bool                                # the values span a decade or more


def _fmt(value: float) -> str:
    return f"{value:.3g}"


def _ranks(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2
        i = j + 1
    return ranks


def spearman(xs: list[float], ys: list[float]) -> float | None:
    if len(xs) < 3:
        return None
    rx, ry = _ranks(xs), _ranks(ys)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    sx, sy = math.sqrt(sum((a - mx) ** 2 for a in rx)), math.sqrt(sum((b - my) ** 2 for b in ry))
    return cov / (sx * sy) if sx and sy else None


def _groups(points: list[tuple[float, float]], log: bool) -> list[tuple[str, list[float]]]:
    distinct = sorted({x for x, _ in points})
    if len(distinct) <= MAX_GROUPS:
        return [(_fmt(v), [y for x, y in points if x == v]) for v in distinct]
    scale = math.log if log else (lambda v: v)
    unscale = math.exp if log else (lambda v: v)
    low, high = scale(distinct[0]), scale(distinct[-1])
    bins: dict[int, list[float]] = {}
    for x, y in points:
        bins.setdefault(min(BINS - 1, int((scale(x) - low) / (high - low) * BINS)), []).append(y)
    edge = lambda i: unscale(low + (high - low) * i / BINS)  # noqa: E731
    return [(f"{edge(i):.3g}–{edge(i + 1):.3g}", bins[i]) for i in sorted(bins)]


def rank(runs: list[RunSummary], metric: str = "best_val_loss") -> list[Effect]:
    """The settings that vary across `runs`, most effective first."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r} (one of: {', '.join(METRICS)})")
    scored = [r for r in runs if getattr(r, metric) is not None]
    names = sorted({k for r in scored for k in r.hparams})
    higher = metric in HIGHER_IS_BETTER
    effects = []
    for name in names:
        points = [(r.hparams[name], float(getattr(r, metric))) for r in scored if name in r.hparams]
        if len({x for x, _ in points}) < 2:
            continue
        xs = [x for x, _ in points]
        log = min(xs) > 0 and max(xs) / min(xs) >= 10
        groups = [(label, sum(ys) / len(ys), len(ys)) for label, ys in _groups(points, log)]
        means = [m for _, m, _ in groups]
        best = (max if higher else min)(groups, key=lambda g: g[1])[0]
        effects.append(Effect(name, points, groups, max(means) - min(means), best,
                              spearman(xs, [y for _, y in points]), log))
    return sorted(effects, key=lambda e: e.effect, reverse=True)


def as_rows(effects: list[Effect]) -> list[dict[str, Any]]:
    return [{"setting": e.name, "effect": e.effect, "best": e.best, "correlation": e.correlation,
             "groups": [{"value": label, "mean": mean, "runs": n} for label, mean, n in e.groups]} for e in effects]


def markdown(effects: list[Effect], metric: str) -> str:
    lines = [f"| setting | effect on {metric} (spread of group means) | best | rank correlation | groups (mean, runs) |",
             "|---|---|---|---|---|"]
    for e in effects:
        groups = "; ".join(f"{label}: {mean:.4g} ({n})" for label, mean, n in e.groups)
        corr = "–" if e.correlation is None else f"{e.correlation:+.2f}"
        lines.append(f"| {e.name} | {e.effect:.4g} | {e.best} | {corr} | {groups} |")
    return "\n".join(lines)

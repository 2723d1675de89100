"""Sweeps: many jobs from one `queue add`, sharing a sweep id (in the queue and in each run's
config.json).

    --sweep learning_rate=1e-4,3e-4,1e-3 --sweep batch_size=32,64      the grid: 6 jobs a level
    --sweep learning_rate=1e-5:1e-2 --sweep-random 8                    8 points, log-uniform
    --sweep learning_rate=1e-5:1e-2 --sweep-optimize val_loss --trials 20   an Optuna study

A value list is the values to try; LOW:HIGH is a range (log-uniform when LOW > 0, else
uniform; whole numbers for an integer field), for random points and studies. Every value is
checked as its flag is (engine.settings.FIELDS) before anything is queued. Torch-free."""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from common.errors import UserInputError
from engine.settings import ARCH_FIELDS, FIELD

# What a sweep can vary: the numbers of a run (paths, devices and levels are not swept).
SWEEPABLE = ("learning_rate", "batch_size", "num_epochs", "early_stopping", "seed", "val_split", *ARCH_FIELDS)


@dataclass(frozen=True)
class Axis:
    name: str
    values: tuple[Any, ...] = ()  # a list of values, or
    low: float | None = None      # a range
    high: float | None = None

    @property
    def is_range(self) -> bool:
        return self.low is not None

    @property
    def log(self) -> bool:
        return self.is_range and self.low > 0

    @property
    def integer(self) -> bool:
        return FIELD[self.name].kind is int

    def sample(self, rng: random.Random) -> Any:
        if not self.is_range:
            return rng.choice(self.values)
        if self.log:
            value = math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        else:
            value = rng.uniform(self.low, self.high)
        return int(round(value)) if self.integer else float(f"{value:.4g}")

    def describe(self) -> str:
        if self.is_range:
            return f"{self.name}={self.low:g}:{self.high:g}" + (" (log)" if self.log else "")
        return f"{self.name}={','.join(f'{v:g}' if isinstance(v, float) else str(v) for v in self.values)}"


def _value(name: str, text: str, flag: str) -> Any:
    field = FIELD[name]
    try:
        value = field.parse(text.strip())
    except ValueError:
        raise UserInputError(f"{flag}: {text.strip()!r} is not {'an integer' if field.kind is int else 'a number'} "
                             f"({name})") from None
    problem = field.problem(value)
    if problem:
        raise UserInputError(f"{flag}: {problem}")
    return value


def parse_axis(text: str, flag: str = "--sweep") -> Axis:
    """`name=v1,v2,...` or `name=low:high`, every value checked."""
    name, sep, spec = text.partition("=")
    name = name.strip()
    if not sep or not spec.strip():
        raise UserInputError(f"{flag} {text!r}: write NAME=V1,V2,... or NAME=LOW:HIGH, e.g. learning_rate=1e-4,3e-4")
    if name not in SWEEPABLE:
        raise UserInputError(f"{flag}: {name!r} cannot be swept (one of: {', '.join(SWEEPABLE)})")
    if ":" in spec:
        low_text, _, high_text = spec.partition(":")
        low, high = _value(name, low_text, flag), _value(name, high_text, flag)
        if not low < high:
            raise UserInputError(f"{flag} {text!r}: the range's low end must be below its high end")
        return Axis(name, low=low, high=high)
    values = tuple(dict.fromkeys(_value(name, v, flag) for v in spec.split(",") if v.strip()))
    if not values:
        raise UserInputError(f"{flag} {text!r}: no values")
    return Axis(name, values=values)


def parse_axes(texts: list[str]) -> list[Axis]:
    axes = [parse_axis(t) for t in texts]
    names = [a.name for a in axes]
    repeated = next((n for n in names if names.count(n) > 1), None)
    if repeated:
        raise UserInputError(f"--sweep {repeated} is given twice; list every value in one --sweep")
    return axes


MAX_JOBS = 10_000  # one `queue add` queues at most this many jobs unless --max-jobs raises it


def check_job_count(count: int, max_jobs: int, what: str) -> None:
    """Refuse a sweep that would queue more than `max_jobs`, before anything is built."""
    if count > max_jobs:
        raise UserInputError(f"{what} makes {count:,} jobs, above the limit of {max_jobs:,}; narrow the sweep "
                             "or raise the limit with --max-jobs N")


def grid_size(axes: list[Axis]) -> int:
    ranged = [a.name for a in axes if a.is_range]
    if ranged:
        raise UserInputError(f"--sweep {ranged[0]} is a range: give --sweep-random N (or --sweep-optimize) "
                             "to sample it, or list values for a grid")
    return math.prod(len(a.values) for a in axes)


def grid(axes: list[Axis]) -> list[dict[str, Any]]:
    """Every combination of the axes' values (ranges need --sweep-random or --sweep-optimize)."""
    grid_size(axes)
    return [dict(zip([a.name for a in axes], combo)) for combo in itertools.product(*[a.values for a in axes])]


def random_points(axes: list[Axis], n: int, seed: int = 0) -> list[dict[str, Any]]:
    """`n` points, each axis sampled independently (seeded: the same command queues the same points)."""
    if n < 1:
        raise UserInputError(f"--sweep-random must be >= 1, got {n}")
    rng = random.Random(seed)
    return [{a.name: a.sample(rng) for a in axes} for _ in range(n)]


def new_sweep_id(when: datetime | None = None) -> str:
    return "sweep_" + (when or datetime.now()).strftime("%Y%m%d_%H%M%S")

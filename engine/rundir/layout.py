"""Where things are in a runs directory: the files of a run, how runs are named and laid out
(ours, RUNS/<LEVEL>/<LEVEL>_<stamp>/, and the reference's, RUNS/<prefix>_<stamp>/, side by
side), and what else a runs directory holds (the queue, the worker, datasets)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Iterator, Mapping

from common.errors import UserInputError
from common.names import is_safe_name
from common.project import find_project

# The files of a run directory (docs/CONTRACT.md describes each).
CONFIG, HISTORY, STATUS, LOG = "config.json", "history.json", "status.json", "train.log"
BEST, LAST, FINAL, CURVES, EVAL = "best_model.pt", "last.pt", "final_model.pt", "training_curves.png", "eval.json"
SPECULATE = "speculate.json"  # the measured speedup of the draft-verify loop (adapter-engine speculate)
SPECULATE_PROGRESS = "speculate_status.json"  # a running speculation's progress
LOCK = ".lock"  # flock-ed by the one process that trains the run
META = "meta.json"  # the user's label, tags, note and archive flag (never written by the trainer)
STEPS = "steps.jsonl"  # within-epoch points, appended while training
# What the reference's evaluation (measure_feature_acceptance.py) writes, read where it lies in a run directory.
REFERENCE_METRICS, REFERENCE_POSITIONS = "acceptance_metrics.json", "position_stats.json"
CHECKPOINTS = (BEST, FINAL, LAST)  # a run directory's checkpoint, in order of preference
# Every file a run directory may hold by this contract: what deleting a run removes, and nothing else.
RUN_FILES = (CONFIG, HISTORY, STATUS, LOG, BEST, LAST, FINAL, CURVES, EVAL, META, STEPS, LOCK, SPECULATE,
             SPECULATE_PROGRESS, REFERENCE_METRICS, REFERENCE_POSITIONS)

# An extraction job reports here in the dataset it writes (a dataset has no status.json).
EXTRACT_STATUS = "extract_status.json"

# What else a runs directory holds.
QUEUE_DB, WORKER_LOCK, WORKER_LOG, JOB_LOGS, DATASETS = "queue.db", "worker.lock", "worker.log", "logs", "datasets"
SWEEPS = "sweeps"  # RUNS/sweeps/<id>/: a sweep's spec and, for an optimizing sweep, its Optuna study
RUN_INDEX = ".index.db"  # the leaderboard rows of finished runs, cached (engine.rundir.index); hidden: never a run
NOT_RUNS = (DATASETS, JOB_LOGS, SWEEPS)

# The trainer writes its run directory's path into the file this names, as soon as it exists (the queue's worker reads it).
RUN_DIR_FILE_ENV = "ADAPTER_ENGINE_RUN_DIR_FILE"

DEFAULT_RUNS = "runs"
RUNS_ENV = "ADAPTER_RUNS"


@dataclass(frozen=True)
class RunsDir:
    """The runs directory a command uses, and how it was found (said to the user)."""

    path: Path
    source: str

    def describe(self) -> str:
        return f"{self.path} ({self.source})"


def resolve_runs_dir(flag: str | os.PathLike | None = None, *, start: str | os.PathLike | None = None,
                     environ: Mapping[str, str] | None = None) -> RunsDir:
    """--runs, else $ADAPTER_RUNS, else `runs` beside the nearest adapters.toml from the working
    directory up (as git finds .git), else ./runs. Never the bare working directory's `runs`
    inside a project: `cd sub && adapter-engine queue ls` sees the project's queue."""
    if flag:
        return RunsDir(Path(flag).absolute(), "--runs")
    value = (os.environ if environ is None else environ).get(RUNS_ENV)
    if value:
        return RunsDir(Path(value).absolute(), f"${RUNS_ENV}")
    project = find_project(start)
    if project is not None:
        return RunsDir(project / DEFAULT_RUNS, "beside the project's adapters.toml")
    here = Path(start if start is not None else Path.cwd()).absolute()
    return RunsDir(here / DEFAULT_RUNS, "the working directory; no adapters.toml above it")


RUN_NAME = re.compile(r"^(.+?)_\d{8}_\d{6}(?:_\d+)?$")  # <LEVEL or prefix>_<YYYYmmdd_HHMMSS>[_n]


def run_stamp(when: datetime | None = None) -> str:
    """The time part of a run's name, and config.json's `timestamp`: YYYYmmdd_HHMMSS."""
    return (when or datetime.now()).strftime("%Y%m%d_%H%M%S")


def new_run_dir(output_dir: Path, prefix: str, stamp: str, *, nested: bool = True) -> Path:
    """Create OUTPUT/<PREFIX>/<PREFIX>_<stamp>[_n] (our layout; the prefix is the level key), or
    with `nested=False` OUTPUT/<PREFIX>_<stamp>[_n] (the reference's). Suffix _2, _3 ... if taken."""
    if not is_safe_name(prefix):
        raise UserInputError(f"level key {prefix!r} is not a safe name (letters, digits, '_' and '-')")
    parent = Path(output_dir) / prefix if nested else Path(output_dir)
    parent.mkdir(parents=True, exist_ok=True)
    for n in range(1, 10_000):
        path = parent / (f"{prefix}_{stamp}" if n == 1 else f"{prefix}_{stamp}_{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise UserInputError(f"too many runs named {prefix}_{stamp} under {parent}")


def is_run_dir(path: str) -> bool:
    return any(os.path.exists(os.path.join(path, name)) for name in (CONFIG, HISTORY, STATUS))


def is_evaluation_dir(path: str) -> bool:
    """The reference's Stage-3 output: acceptance_metrics.json with no run files beside it."""
    return os.path.exists(os.path.join(path, REFERENCE_METRICS)) and not is_run_dir(path)


SEARCH_DEPTH = 6     # RUNS/a/b/c/<LEVEL>/<RUN>: the seed's repository root finds feasible/feature_alignment/tasks/L1/*
SEARCH_LIMIT = 20_000  # entries looked at that are not runs, at most: a home directory given by mistake ends, it does not hang
NOT_SEARCHED = {"__pycache__", "node_modules", "site-packages", "wandb"}
NOT_DESCENDED = ("index.json", "pyvenv.cfg")  # a dataset split, a virtual environment


def _skipped(entry: os.DirEntry, depth: int) -> bool:
    if entry.name.startswith(".") or entry.name in NOT_SEARCHED or (depth == 0 and entry.name in NOT_RUNS):
        return True
    try:
        return not entry.is_dir()
    except OSError:
        return True


def iter_run_dirs(root: Path, depth: int = SEARCH_DEPTH) -> Iterator[str]:
    """Run directories (holding config.json, history.json or status.json) and the reference's
    evaluation directories (acceptance_metrics.json alone) anywhere below `root`, as TensorBoard
    finds a logdir's runs: ours at RUNS/<LEVEL>/<RUN>/, the reference's at RUNS/<RUN>/ or deeper
    (its repository root, `pipeline/`, `feasible/feature_alignment/`). Hidden directories,
    datasets (an index.json) and virtual environments are skipped; a symbolic link is listed
    when it is a run (read-only: linked_run_problem), and followed only as a level directory of
    RUNS itself, never deeper out of it."""
    budget = [SEARCH_LIMIT]

    def walk(path: str, level: int) -> Iterator[str]:
        try:
            entries = sorted(os.scandir(path), key=lambda e: e.name)
        except OSError:
            return
        for entry in entries:
            if budget[0] <= 0:
                return
            if _skipped(entry, level):
                budget[0] -= 1
                continue
            if is_run_dir(entry.path) or is_evaluation_dir(entry.path):
                yield entry.path  # runs cost no budget: a lab's 100,000 runs are all listed
                continue
            budget[0] -= 1
            descend = level + 1 < depth and not (entry.is_symlink() and level > 0)
            if descend and not any(os.path.exists(os.path.join(entry.path, name)) for name in NOT_DESCENDED):
                yield from walk(entry.path, level + 1)

    yield from walk(os.fspath(root), 0)


def level_of_name(run_dir: str) -> str:
    """The level a run directory's name (or, failing that, its parent's) says."""
    match = RUN_NAME.match(os.path.basename(run_dir))
    return match.group(1) if match else os.path.basename(os.path.dirname(run_dir))


def linked_run_problem(run_dir: str | os.PathLike) -> str | None:
    """One rule for runs reached through a symbolic link (the run directory or its level
    directory): they are listed, read-only; no command writes through the link."""
    path = Path(run_dir).absolute()
    link = next((p for p in (path, path.parent) if p.is_symlink()), None)
    if link is None:
        return None
    return (f"{path.name} is reached through the symbolic link {link} -> {os.path.realpath(link)}: linked runs are "
            "read-only here; change it where it lives")


def checkpoint_of(target: Path) -> Path:
    """A checkpoint file as given, or a run directory's best_model.pt (else final_model.pt, last.pt)."""
    if target.is_file():
        return target
    if target.is_dir():
        for name in CHECKPOINTS:
            if (target / name).is_file():
                return target / name
        raise UserInputError(f"{target} holds no checkpoint ({', '.join(CHECKPOINTS)}); train it first")
    raise UserInputError(f"{target} does not exist; pass a run directory or a checkpoint file")


def find_run(root: Path, ref: str | os.PathLike) -> Path:
    """A run directory given as a path, or by its name among the runs of `root`."""
    path = Path(ref)
    if path.is_dir() and is_run_dir(str(path)):
        return path.absolute()
    matches = [Path(p) for p in iter_run_dirs(root) if os.path.basename(p) == str(ref)]
    if len(matches) == 1:
        return matches[0].absolute()
    if matches:
        raise UserInputError(f"{ref} names {len(matches)} runs under {root}; give its path")
    raise UserInputError(f"no run {str(ref)!r} under {root} (give a run directory, or a name from `adapter-engine runs`)")

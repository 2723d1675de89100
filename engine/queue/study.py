"""A sweep's record, RUNS/sweeps/<id>/sweep.json, and for `--sweep-optimize` its Optuna study
(RUNS/sweeps/<id>/optuna.db): the study lives in the runs directory, so it outlives the app
and any worker. The queue worker calls `advance_studies` as it runs: each open trial's job is
followed through its live history.json (reported to Optuna epoch by epoch; the median pruner
cancels a trial that falls behind), a finished job's best value is told, and new trials are
queued until the study has its trials. Optuna is imported only when a study exists."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from common.errors import UserInputError
from common.fileio import ReadError, read_json, write_json
from engine.queue.lifecycle import JobQueue
from engine.queue.sweep import Axis, new_sweep_id, parse_axes
from engine.rundir.files import HISTORY_KEYS, clean_series, read_object
from engine.rundir.layout import HISTORY, SWEEPS
from engine.settings import FIELD

SPEC, STORAGE = "sweep.json", "optuna.db"
MINIMIZE = ("val_loss", "train_loss")  # every other history metric is better higher
log = logging.getLogger("adapter-engine.study")


def sweep_dir(runs_dir: Path, sweep_id: str) -> Path:
    return Path(runs_dir) / SWEEPS / sweep_id


def unique_sweep_id(runs_dir: Path) -> str:
    base = new_sweep_id()
    sweep_id, n = base, 1
    while sweep_dir(runs_dir, sweep_id).exists():
        n += 1
        sweep_id = f"{base}_{n}"
    return sweep_id


def write_sweep(runs_dir: Path, sweep_id: str, spec: dict[str, Any]) -> Path:
    """Record what a sweep varied (sweeps/<id>/sweep.json): `runs --sweep ID` and the app read it."""
    path = sweep_dir(runs_dir, sweep_id) / SPEC
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, {"id": sweep_id, **spec})
    return path


def read_sweep(runs_dir: Path, sweep_id: str) -> dict[str, Any] | None:
    try:
        spec = read_json(sweep_dir(runs_dir, sweep_id) / SPEC)
    except ReadError:
        return None
    return spec if isinstance(spec, dict) else None


def _optuna():
    try:
        import optuna
    except ImportError:
        raise UserInputError("--sweep-optimize needs Optuna: pip install -e '.[sweep]' (or pip install optuna)") \
            from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def _distribution(optuna, axis: Axis):
    d = optuna.distributions
    if not axis.is_range:
        return d.CategoricalDistribution(list(axis.values))
    if axis.integer:
        return d.IntDistribution(int(axis.low), int(axis.high), log=axis.log)
    return d.FloatDistribution(float(axis.low), float(axis.high), log=axis.log)


@dataclass
class Study:
    runs_dir: Path
    sweep_id: str
    spec: dict[str, Any]

    @property
    def metric(self) -> str:
        return self.spec["metric"]

    @property
    def direction(self) -> str:
        return self.spec["direction"]

    @property
    def trials(self) -> int:
        return self.spec["trials"]

    @property
    def storage(self) -> str:
        return f"sqlite:///{sweep_dir(self.runs_dir, self.sweep_id) / STORAGE}"

    def load(self):
        optuna = _optuna()
        pruner = optuna.pruners.MedianPruner(n_startup_trials=self.spec["startup_trials"], n_warmup_steps=1)
        return optuna, optuna.load_study(study_name=self.sweep_id, storage=self.storage, pruner=pruner)

    def _plan(self, point: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        from engine.queue.plan import plan_jobs

        plan = plan_jobs(self.spec["levels"], config=self.spec["config"], **{**self.spec["fields"], **point})
        level, settings = plan.jobs[0]
        return level, {**settings, "sweep": self.sweep_id}

    def _values(self, run_dir: str | None) -> list[float | None]:
        if not run_dir:
            return []
        history, _ = read_object(Path(run_dir) / HISTORY)
        return clean_series(history.get(self.metric))

    def advance(self, queue: JobQueue) -> list[int]:
        """Bring the study up to date with its jobs, prune, tell, and queue new trials. Returns
        the ids of the jobs it queued."""
        optuna, study = self.load()
        running = optuna.trial.TrialState.RUNNING
        best = min if self.direction == "minimize" else max
        for frozen in study.get_trials(deepcopy=False, states=(running,)):
            job = _job(queue, frozen.user_attrs.get("job_id"))
            if job is None:  # removed from the queue
                study.tell(frozen.number, state=optuna.trial.TrialState.FAIL)
                continue
            if job.state == "queued":
                continue
            values = self._values(job.run_dir)
            trial = optuna.trial.Trial(study, frozen._trial_id)
            for step, value in enumerate(values, start=1):
                if value is not None and step not in frozen.intermediate_values:
                    trial.report(value, step)
            finite = [v for v in values if v is not None]
            if job.state == "running":
                if finite and trial.should_prune():
                    queue.cancel([job.id])
                    study.tell(frozen.number, state=optuna.trial.TrialState.PRUNED)
                    log.info("sweep %s: trial %d (job %d) pruned at epoch %d", self.sweep_id, frozen.number,
                             job.id, len(values))
            elif job.state == "done" and finite:
                study.tell(frozen.number, best(finite))
            elif job.state != "running":
                study.tell(frozen.number, state=optuna.trial.TrialState.FAIL)
        opened = []
        distributions = {axis.name: _distribution(optuna, axis) for axis in parse_axes(self.spec["axes"])}
        open_trials = len(study.get_trials(deepcopy=False, states=(running,)))
        while open_trials < self.spec["parallel"] and len(study.trials) < self.trials:
            trial = study.ask(distributions)
            level, settings = self._plan(trial.params)
            job_id = queue.add_many([(level, settings)], front=self.spec["front"], dataset=self.spec["dataset"],
                                    nproc=self.spec["nproc"], config=self.spec["config"], sweep=self.sweep_id)[0]
            trial.set_user_attr("job_id", job_id)
            opened.append(job_id)
            open_trials += 1
        if open_trials == 0 and len(study.trials) >= self.trials and not self.spec.get("finished"):
            self.spec["finished"] = True
            write_sweep(self.runs_dir, self.sweep_id, {k: v for k, v in self.spec.items() if k != "id"})
        return opened


def _job(queue: JobQueue, job_id: Any):
    try:
        return queue.get(job_id) if job_id is not None else None
    except UserInputError:
        return None


def create_study(runs_dir: Path, axes: list[str], metric: str, *, trials: int, parallel: int,
                 levels: list[str], preset: str | None, config: str | None, fields: dict[str, Any],
                 front: bool = False, nproc: int = 1, check: Callable[[Any], None] | None = None) -> Study:
    """Check everything (`check` gets the plan of one trial: `queue add` reads the data with it),
    then create the study and its record. Nothing is queued here."""
    from engine.queue.plan import plan_jobs

    optuna = _optuna()
    parsed = parse_axes(axes)
    if metric not in HISTORY_KEYS or metric == "epoch":
        raise UserInputError(f"--sweep-optimize {metric!r}: not a history.json metric (one of: "
                             f"{', '.join(k for k in HISTORY_KEYS if k != 'epoch')})")
    if trials < 1 or parallel < 1:
        raise UserInputError("--trials and --parallel must be >= 1")
    given = [a.name for a in parsed if fields.get(a.name) not in (None, FIELD[a.name].default)]
    if given:
        raise UserInputError(f"--{given[0]} and --sweep {given[0]} both give it; keep one")
    probe = {a.name: (a.values[0] if not a.is_range else a.low) for a in parsed}
    plan = plan_jobs(levels, preset=preset, config=config, **{**fields, **probe})
    if len(plan.settings) != 1:
        raise UserInputError("--sweep-optimize tunes one level: give exactly one --level")
    if check is not None:
        check(plan)
    sweep_id = unique_sweep_id(runs_dir)
    direction = "minimize" if metric in MINIMIZE else "maximize"
    spec = {"kind": "optuna", "metric": metric, "direction": direction, "trials": trials, "parallel": parallel,
            "startup_trials": min(5, max(2, trials // 4)), "axes": axes, "levels": [plan.settings[0].level],
            "fields": {k: v for k, v in fields.items() if v is not None}, "config": plan.config,
            "dataset": plan.dataset, "front": front, "nproc": nproc, "finished": False}
    write_sweep(runs_dir, sweep_id, spec)
    study = Study(Path(runs_dir), sweep_id, {"id": sweep_id, **spec})
    optuna.create_study(study_name=sweep_id, storage=study.storage, direction=direction)
    return study


def open_studies(runs_dir: Path) -> list[Study]:
    """The optimizing sweeps of a runs directory that still have work."""
    root = Path(runs_dir) / SWEEPS
    studies = []
    for spec_path in sorted(root.glob(f"*/{SPEC}")) if root.is_dir() else []:
        spec = read_sweep(runs_dir, spec_path.parent.name)
        if spec and spec.get("kind") == "optuna" and not spec.get("finished"):
            studies.append(Study(Path(runs_dir), spec_path.parent.name, spec))
    return studies


def advance_studies(runs_dir: Path, queue: JobQueue) -> list[int]:
    """Advance every open study (the worker calls this); a broken study is logged, not raised."""
    opened = []
    for study in open_studies(runs_dir):
        try:
            opened += study.advance(queue)
        except Exception as exc:  # an Optuna or planning error must not stop the worker
            log.warning("sweep %s: %s", study.sweep_id, exc)
    return opened

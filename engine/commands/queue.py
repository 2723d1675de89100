"""`adapter-engine queue ...`: the persistent job queue (runs/queue.db) and its worker.

    queue add --preset all --dataset demo --num_epochs 2     one job per level
    queue worker --exit-when-idle                           run them (--detach: in the background)
    queue ls | status | cancel ID... | retry ID [--resume] | rm ID... | move ID --to N | clear --done

A second worker on the same runs directory refuses to start (exit 2) and names the live one.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from engine.rundir.states import STOP_GRACE_S


def _common(p: argparse.ArgumentParser, json_flag: bool = True) -> None:
    p.add_argument("--runs", metavar="DIR", help="runs directory holding queue.db (default: $ADAPTER_RUNS, else runs/ "
                   "beside the nearest adapters.toml from here up, else ./runs)")
    if json_flag:
        p.add_argument("--json", action="store_true", help="print JSON for scripts")


def register(sub: argparse._SubParsersAction) -> None:
    from engine.settings import add_train_flags

    p = sub.add_parser("queue", help="queue trainings and run them with a detached worker",
                       description="The job queue in RUNS/queue.db: add jobs, list, cancel, retry, reorder, and run "
                                   "the worker that trains them one after another (one per GPU with --gpus).")
    actions = p.add_subparsers(dest="queue_command", required=True, metavar="ACTION")

    a = actions.add_parser("add", conflict_handler="resolve", help="queue one job per level",
                           description="Queue trainings with the flags of `adapter-engine train`. --level is "
                                       "repeatable; --preset NAME adds the levels of adapters.toml [presets]. Each "
                                       "level keeps its own training defaults unless a flag overrides them. The "
                                       "levels and the data are checked now, so a job that cannot start is refused.")
    add_train_flags(a)
    a.add_argument("--level", action="append", metavar="KEY", help="level key of adapters.toml (repeatable)")
    a.add_argument("--preset", metavar="NAME", help="levels of adapters.toml [presets] NAME (e.g. all)")
    a.add_argument("--front", action="store_true", help="put the jobs at the head of the queue")
    a.add_argument("--nproc", type=int, default=1, metavar="N",
                   help="GPUs one job spans via torchrun (default 1; needs a worker with --gpus)")
    a.add_argument("--nodes", type=int, default=1, metavar="M",
                   help="nodes one job spans, --nproc processes on each (default 1; needs a worker with "
                        "--backend slurm, which runs srun torchrun)")
    a.add_argument("--output_dir", default=None, help="same as --runs (the runs directory)")
    sweep = a.add_argument_group("sweeps", "many jobs from one command, sharing a sweep id (docs: README, Sweeps)")
    sweep.add_argument("--sweep", action="append", metavar="NAME=VALUES",
                       help="a setting to vary: NAME=V1,V2,... (a grid of every combination) or NAME=LOW:HIGH "
                            "(a range for --sweep-random / --sweep-optimize; log-uniform when LOW > 0); repeatable")
    sweep.add_argument("--sweep-random", type=int, metavar="N",
                       help="N random points instead of the grid (seeded by --seed)")
    sweep.add_argument("--sweep-optimize", metavar="METRIC",
                       help="an Optuna study over the --sweep space minimizing (val_loss, train_loss) or "
                            "maximizing (val_cos_sim, val_accept_90, ...) METRIC of history.json; trials are "
                            "queue jobs and poor ones are pruned from their live history (needs optuna)")
    sweep.add_argument("--trials", type=int, metavar="N", help="trials of --sweep-optimize (default 20)")
    sweep.add_argument("--max-jobs", type=int, default=None, metavar="N",
                       help="the most jobs one sweep may queue (default 10,000): a guard against a typo's 10^6 grid")
    sweep.add_argument("--parallel", type=int, default=1, metavar="N",
                       help="trials of --sweep-optimize queued at a time (default 1)")
    a.add_argument("--extract", nargs=argparse.REMAINDER, metavar="ARGS",
                   help="queue an extraction instead: everything after --extract is `adapter-engine extract`'s "
                        "arguments (--drafter, --verifier, --prompts, OUT, ...), checked now; give it last")
    a.add_argument("--speculate", nargs=argparse.REMAINDER, metavar="ARGS",
                   help="queue a speedup measurement instead: everything after --speculate is `adapter-engine "
                        "speculate`'s arguments (RUN_DIR, --drafter, --verifier, --prompts, ...), checked now; give "
                        "it last")
    a.set_defaults(output_dir=None)
    _common(a)
    a.set_defaults(func=cmd_add)

    ls = actions.add_parser("ls", help="list jobs", description="List jobs: queued ones in run order, then "
                                                                "running ones, then finished ones newest first.")
    _common(ls)
    ls.set_defaults(func=cmd_ls)

    c = actions.add_parser("cancel", help="cancel jobs", description="Cancel jobs. A queued job is marked "
                           "cancelled; a running one gets SIGTERM (it saves last.pt and stops), SIGKILL after the "
                           "grace period.")
    c.add_argument("ids", type=int, nargs="+", metavar="ID")
    c.add_argument("--wait", action="store_true", help="block until the jobs have stopped")
    c.add_argument("--grace", type=float, default=STOP_GRACE_S, metavar="S",
                   help=f"with --wait: seconds before SIGKILL (default {STOP_GRACE_S:g})")
    _common(c, json_flag=False)
    c.set_defaults(func=cmd_cancel)

    r = actions.add_parser("retry", help="queue a failed/cancelled/interrupted/diverged job again",
                           description="Put a finished job that did not succeed back in the queue (same id).")
    r.add_argument("id", type=int, metavar="ID")
    r.add_argument("--resume", action="store_true", help="continue the job's run directory from its last.pt")
    r.add_argument("--front", action="store_true", help="put it at the head of the queue")
    _common(r, json_flag=False)
    r.set_defaults(func=cmd_retry)

    rm = actions.add_parser("rm", help="remove queued jobs", description="Remove queued jobs (only queued ones).")
    rm.add_argument("ids", type=int, nargs="+", metavar="ID")
    _common(rm, json_flag=False)
    rm.set_defaults(func=cmd_rm)

    mv = actions.add_parser("move", help="reorder a queued job", description="Move a queued job to position N.")
    mv.add_argument("id", type=int, metavar="ID")
    mv.add_argument("--to", type=int, required=True, metavar="N", help="new 1-based position among queued jobs")
    _common(mv, json_flag=False)
    mv.set_defaults(func=cmd_move)

    cl = actions.add_parser("clear", help="forget finished jobs", description="Remove finished jobs from the "
                            "queue (their run directories stay).")
    cl.add_argument("--done", action="store_true", help="remove done jobs")
    cl.add_argument("--finished", action="store_true", help="remove every finished job (done, failed, cancelled, "
                                                            "diverged, interrupted)")
    _common(cl)
    cl.set_defaults(func=cmd_clear)

    w = actions.add_parser("worker", help="run queued jobs (one worker per runs directory)",
                           description="Run queued jobs until stopped (SIGTERM/Ctrl-C cancel the running ones). "
                                       "--detach starts it in the background, immune to logout and SSH hang-up, "
                                       "logging to RUNS/worker.log.")
    w.add_argument("--gpus", metavar="LIST", help="GPU indices, e.g. 0,1: one job per GPU at a time "
                                                  "(default: one job at a time, GPUs as inherited)")
    w.add_argument("--exit-when-idle", action="store_true", help="exit once nothing is queued or running")
    w.add_argument("--detach", action="store_true", help="start in the background and return its pid")
    w.add_argument("--stop", action="store_true", help="stop the running worker: its running jobs are cancelled "
                                                       "(each keeps last.pt: retry them with --resume) and it exits")
    w.add_argument("--poll-interval", type=float, default=1.0, metavar="S", help="seconds between checks (default 1)")
    w.add_argument("--grace", type=float, default=STOP_GRACE_S, metavar="S",
                   help=f"seconds between SIGTERM and SIGKILL on cancel (default {STOP_GRACE_S:g})")
    w.add_argument("--detached-child", action="store_true", help=argparse.SUPPRESS)
    _slurm_flags(w)
    _common(w)
    w.set_defaults(func=cmd_worker)

    s = actions.add_parser("status", help="is a worker alive, and what runs",
                           description="Worker alive or not, pid, host, last heartbeat, running jobs, counts.")
    _common(s)
    s.set_defaults(func=cmd_status)


def _slurm_flags(w: argparse.ArgumentParser) -> None:
    g = w.add_argument_group("Slurm", "--backend slurm submits each job with sbatch (defaults: adapters.toml [slurm])")
    g.add_argument("--backend", choices=("local", "slurm"), default="local",
                   help="run jobs here (local, the default) or on a Slurm cluster")
    g.add_argument("--partition", metavar="P", help="Slurm partition (default: the cluster's default)")
    g.add_argument("--account", metavar="A", help="Slurm account to charge")
    g.add_argument("--time", metavar="LIMIT", help="each job's time limit, e.g. 24:00:00 (at it, the job saves "
                                                   "last.pt and ends interrupted; a retry resumes it)")
    g.add_argument("--mem", metavar="SIZE", help="memory per job, e.g. 32G")
    g.add_argument("--gpus-per-proc", type=int, metavar="N", help="GPUs per process of a job (default: 1 when the "
                                                                  "partition's nodes have GPUs, else 0)")
    g.add_argument("--cpus-per-proc", type=int, metavar="N", help="CPUs per process of a job (default 1)")
    g.add_argument("--max-submitted", type=int, metavar="N", help="at most N jobs submitted at a time (default: "
                                                                  "every queued job)")
    g.add_argument("--config", metavar="TOML", help="adapters.toml whose [slurm] table gives these defaults "
                                                     "(default: the nearest adapters.toml)")
    g.add_argument("--sbatch-arg", action="append", metavar="ARG", dest="sbatch_args",
                   help="one more sbatch option, e.g. --sbatch-arg=--qos=high (repeatable)")


SLURM_FLAGS = ("partition", "account", "time", "mem", "gpus_per_proc", "cpus_per_proc", "max_submitted", "sbatch_args")


def _slurm_worker(args: argparse.Namespace, runs: Path):
    """A SlurmWorker for these flags, the cluster checked first: no sbatch, an unknown partition
    or a queued job asking more GPUs than a node has is one line and exit 2, nothing submitted."""
    from adapters.registry import load_registry
    from engine.queue.slurm import SlurmOptions, check_partition, read_cluster
    from engine.queue.slurm_worker import SlurmWorker, check_queued

    given = {name: getattr(args, name) for name in SLURM_FLAGS}
    options = SlurmOptions.from_config(load_registry(args.config).slurm if _has_config(args) else {}, **given)
    cluster = read_cluster()
    partition = check_partition(options, cluster)
    check_queued(runs, options, cluster, partition)
    return SlurmWorker(runs, options, cluster, partition, exit_when_idle=args.exit_when_idle,
                       poll_interval=args.poll_interval, grace_s=args.grace, detached=args.detached_child)


def _has_config(args: argparse.Namespace) -> bool:
    from adapters.registry import default_config_path

    return args.config is not None or default_config_path().is_file()


def _slurm_argv(args: argparse.Namespace) -> list[str]:
    """The Slurm flags again, for a worker started in the background."""
    argv = ["--backend", args.backend]
    if args.config:
        argv += ["--config", args.config]
    for name in SLURM_FLAGS:
        value = getattr(args, name)
        flag = "--" + name.replace("_", "-")
        if name == "sbatch_args":
            argv += [f"--sbatch-arg={arg}" for arg in value or []]
        elif value is not None:
            argv += [flag, str(value)]
    return argv


# -- helpers ------------------------------------------------------------------------------------

def _runs(args: argparse.Namespace):
    from engine.rundir.layout import resolve_runs_dir

    return resolve_runs_dir(args.runs)


def _queue(args: argparse.Namespace):
    """The queue, created on first use (for the commands that add or change jobs)."""
    from engine.queue import JobQueue

    return JobQueue(_runs(args).path)


def _existing_queue(args: argparse.Namespace):
    """The queue if there is one; None (nothing created) for the commands that only read."""
    from engine.queue import JobQueue

    return JobQueue.existing(_runs(args).path)


def _print_json(data) -> None:
    print(json.dumps(data, indent=2, default=str))


def _short(text: str | None, width: int) -> str:
    if not text:
        return ""
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _deep_check(plan) -> None:
    """Check the data and each job the way the trainer will, before anything is queued."""
    from dataclasses import replace

    from engine.data import inspect_dataset
    from engine.inputs import prepare

    for path in plan.data_paths:
        inspect_dataset(path)
    for i, settings in enumerate(plan.settings):
        prepare(settings if i == 0 else replace(settings, lm_head=None))  # the LM head is checked once


# -- commands -----------------------------------------------------------------------------------

def cmd_add(args: argparse.Namespace) -> int:
    from common.errors import UserInputError
    from engine.queue.plan import plan_jobs
    from engine.settings import FIELD, effective_spec, ignored_arch_flags, ignored_warning

    if args.output_dir and args.runs and Path(args.output_dir).absolute() != Path(args.runs).absolute():
        raise UserInputError(f"--output_dir {args.output_dir} and --runs {args.runs} differ; give one of them")
    if args.output_dir:
        args.runs = args.output_dir
    if args.nproc < 1:
        raise UserInputError(f"--nproc must be >= 1, got {args.nproc}")
    if args.nodes < 1:
        raise UserInputError(f"--nodes must be >= 1, got {args.nodes}")
    if args.nodes > 1 and (args.extract is not None or args.sweep_optimize):
        raise UserInputError("--nodes is for training jobs and grid or random sweeps; drop it here")
    if args.extract is not None:
        from engine.commands.extract import add_to_queue

        return add_to_queue(args, lambda: _queue(args))
    if args.speculate is not None:
        from engine.commands.speculate import add_to_queue as add_speculation

        return add_speculation(args, lambda: _queue(args))
    fields = {name: getattr(args, name) for name in FIELD if name not in ("level", "config", "output_dir")}
    if not args.sweep:
        if args.sweep_random or args.sweep_optimize:
            raise UserInputError("--sweep-random and --sweep-optimize need the space: --sweep NAME=VALUES")
        plans = [plan_jobs(list(args.level or []), preset=args.preset, config=args.config, **fields)]
        sweep_id = None
    elif args.sweep_optimize:
        return _add_study(args, fields)
    else:
        plans, sweep_id = _plan_sweep(args, fields)
    plan = plans[0]
    for each in plans:
        _deep_check(each)
    from adapters.registry import load_registry

    registry = load_registry(plan.config)
    warned = set()
    for settings in (s for each in plans for s in each.settings):
        spec = effective_spec(registry, settings)
        ignored = ignored_arch_flags(spec, settings.arch_overrides)
        if ignored and spec.key not in warned:
            warned.add(spec.key)
            print(f"adapter-engine queue add: warning: {ignored_warning(spec, ignored)}", file=sys.stderr)
    jobs_to_add = [(level, {**settings, "sweep": sweep_id}) for each in plans for level, settings in each.jobs]
    with _queue(args) as q:
        ids = q.add_many(jobs_to_add, front=args.front, dataset=plan.dataset, nproc=args.nproc, config=plan.config,
                         sweep=sweep_id, nodes=args.nodes)
        jobs = [q.get(i) for i in ids]
    if sweep_id:
        from engine.queue.study import write_sweep

        write_sweep(_runs(args).path, sweep_id, {"axes": args.sweep, "random": args.sweep_random,
                                                 "levels": [s.level for s in plan.settings], "jobs": ids})
    if args.json:
        _print_json([job.as_dict() for job in jobs])
        return 0
    for job in jobs:
        print(f"queued job {job.id}: {job.level} at position {job.position} "
              f"({job.settings.get('num_epochs')} epochs, batch {job.settings.get('batch_size')}, "
              f"lr {job.settings.get('learning_rate')}) on {job.dataset}")
    if sweep_id:
        print(f"sweep {sweep_id}: {len(jobs)} jobs (`adapter-engine runs --sweep {sweep_id}` ranks them)")
    print("start a worker with `adapter-engine queue worker` (or --detach) if none is running")
    return 0


def _plan_sweep(args: argparse.Namespace, fields: dict) -> tuple[list, str]:
    """One plan per point of the grid (or of --sweep-random), everything checked first."""
    from common.errors import UserInputError
    from engine.queue.plan import plan_jobs
    from engine.queue.study import unique_sweep_id
    from engine.queue.sweep import check_job_count, grid, grid_size, parse_axes, random_points
    from engine.settings import FIELD

    axes = parse_axes(args.sweep)
    given = [a.name for a in axes if fields.get(a.name) not in (None, FIELD[a.name].default)]
    if given:
        raise UserInputError(f"--{given[0]} and --sweep {given[0]} both give it; keep one")
    max_jobs = _max_jobs(args)
    if args.sweep_random is not None and args.sweep_random < 1:
        raise UserInputError(f"--sweep-random must be >= 1, got {args.sweep_random}")
    count = args.sweep_random if args.sweep_random else grid_size(axes)
    what = f"--sweep-random {count:,}" if args.sweep_random else f"the --sweep grid of {count:,} points"
    check_job_count(count, max_jobs, what)  # before a point is drawn: each level only multiplies it
    first = plan_jobs(list(args.level or []), preset=args.preset, config=args.config, **fields)
    check_job_count(count * len(first.jobs), max_jobs, f"{what} for {len(first.jobs)} levels")
    points = random_points(axes, args.sweep_random, seed=args.seed or 0) if args.sweep_random else grid(axes)
    plans = [plan_jobs(list(args.level or []), preset=args.preset, config=args.config, **{**fields, **point})
             for point in points]
    return plans, unique_sweep_id(_runs(args).path)


def _max_jobs(args: argparse.Namespace) -> int:
    from common.errors import UserInputError
    from engine.queue.sweep import MAX_JOBS

    if args.max_jobs is not None and args.max_jobs < 1:
        raise UserInputError(f"--max-jobs must be >= 1, got {args.max_jobs}")
    return MAX_JOBS if args.max_jobs is None else args.max_jobs


def _add_study(args: argparse.Namespace, fields: dict) -> int:
    """--sweep-optimize: an Optuna study in RUNS/sweeps/<id>/ whose trials the worker queues."""
    from engine.queue.study import create_study
    from engine.queue.sweep import check_job_count

    trials = 20 if args.trials is None else args.trials
    check_job_count(trials, _max_jobs(args), f"--trials {trials:,}")
    study = create_study(_runs(args).path, args.sweep, args.sweep_optimize, trials=trials,
                         parallel=args.parallel, levels=list(args.level or []), preset=args.preset,
                         config=args.config, fields=fields, front=args.front, nproc=args.nproc, check=_deep_check)
    with _queue(args) as q:
        opened = study.advance(q)
        jobs = [q.get(i) for i in opened]
    if args.json:
        _print_json([job.as_dict() for job in jobs])
        return 0
    print(f"sweep {study.sweep_id}: an Optuna study of {study.trials} trials {study.direction} {study.metric}; "
          f"queued trial job(s) {', '.join(str(j.id) for j in jobs)}. The queue worker queues the rest and prunes "
          "poor trials as they train.")
    return 0


def _epochs_or_progress(job) -> str:
    """A training job's epochs; an extraction's samples or a speculation's prompts done."""
    from engine.queue.progress import job_progress

    progress = job_progress(job.settings)
    return str(job.settings.get("num_epochs", "")) if progress is None else progress or "—"


def cmd_ls(args: argparse.Namespace) -> int:
    q = _existing_queue(args)
    jobs = []
    if q is not None:
        with q:
            q.recover()
            jobs = q.jobs()
    if args.json:
        _print_json([job.as_dict() for job in jobs])
        return 0
    if not jobs:
        where = "no queue yet" if q is None else "no jobs"
        print(f"{where} in {_runs(args).describe()}; add some with `adapter-engine queue add`")
        return 0
    import shutil

    on_slurm = any(job.slurm_id for job in jobs)
    rows = [("ID", "#", "STATE", "LEVEL", "DATASET", "EP", "RUN", "WHEN") + (("SLURM",) if on_slurm else ()) + ("ERROR",)]
    for job in jobs:
        dataset = job.dataset or ""
        if "/" in dataset:  # a path: its last two parts say enough (demo/train)
            dataset = "/".join(Path(dataset).parts[-2:])
        when = job.finished_at or job.started_at or job.created_at
        rows.append((str(job.id), str(job.position or ""), job.state, job.level, _short(dataset, 20),
                     _epochs_or_progress(job), Path(job.run_dir).name if job.run_dir else "",
                     (when or "")[11:16]) + ((slurm_cell(job),) if on_slurm else ()) + (" ".join((job.error or "").split()),))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    room = max(20, shutil.get_terminal_size((100, 24)).columns - sum(widths) - 2 * len(widths))
    for row in rows:
        cells = [cell.rjust(w) if i in (0, 1, 5) else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths))]
        print("  ".join(cells + [_short(row[-1], room)]).rstrip())
    return 0


def slurm_cell(job) -> str:
    """'1234 RUNNING gpu01': a job's Slurm id, state and node (empty for a local job)."""
    return " ".join(part for part in (job.slurm_id, job.slurm_state, job.slurm_node) if part)


def cmd_cancel(args: argparse.Namespace) -> int:
    with _queue(args) as q:
        before = {i: q.get(i).state for i in args.ids}
        q.cancel(args.ids, wait=args.wait, grace_s=args.grace)
        for job_id in args.ids:
            job = q.get(job_id)
            if before[job_id] == "running" and job.state == "running":
                print(f"job {job_id}: cancel requested (the trainer stops at its next step)")
            else:
                print(f"job {job_id}: {job.state}")
    return 0


def cmd_retry(args: argparse.Namespace) -> int:
    with _queue(args) as q:
        job_id = q.retry(args.id, resume=args.resume, front=args.front)
        job = q.get(job_id)
    how = f"resuming {job.run_dir}" if job.resume else "from scratch"
    print(f"job {job.id} ({job.level}) queued again at position {job.position}, {how}")
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    with _queue(args) as q:
        q.remove(args.ids)
    print(f"removed job(s) {', '.join(map(str, args.ids))}")
    return 0


def cmd_move(args: argparse.Namespace) -> int:
    with _queue(args) as q:
        q.move(args.id, args.to)
    print(f"job {args.id} is now at position {args.to}")
    return 0


def cmd_clear(args: argparse.Namespace) -> int:
    from common.errors import UserInputError
    from engine.rundir.states import FINISHED

    if not (args.done or args.finished):
        raise UserInputError("say what to clear: --done (done jobs) or --finished (every finished job)")
    states = FINISHED if args.finished else ("done",)
    with _queue(args) as q:
        count = q.clear(states)
    if args.json:
        _print_json({"removed": count})
    else:
        print(f"removed {count} {'finished' if args.finished else 'done'} job(s) from the queue")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from common.errors import UserInputError
    from engine.queue.spawn import start_detached
    from engine.queue.worker import Worker, parse_gpus

    if args.stop:
        return _stop_worker(args)
    parse_gpus(args.gpus)
    if not args.poll_interval > 0 or args.grace < 0:
        raise UserInputError("--poll-interval must be > 0 and --grace >= 0")
    runs = _runs(args).path
    if args.backend != "local" or any(getattr(args, name) for name in SLURM_FLAGS):
        if args.gpus:
            raise UserInputError("--gpus names this machine's GPUs; with --backend slurm use --gpus-per-proc")
        if args.backend != "slurm":
            raise UserInputError("the Slurm flags (--partition, --time, ...) need --backend slurm")
        worker = _slurm_worker(args, runs)  # checks the cluster before anything starts
        if not args.detach:
            return worker.run()
    if args.detach:
        with _queue(args) as q:
            status = q.worker_status()
        if status.alive:
            raise UserInputError(f"a queue worker is already running for {runs} (pid {status.pid} on {status.host})")
        if status.unresponsive:
            raise UserInputError(status.unresponsive_text())
        pid = start_detached(runs, args.gpus, exit_when_idle=args.exit_when_idle,
                             poll_interval=args.poll_interval, grace_s=args.grace,
                             extra=_slurm_argv(args) if args.backend == "slurm" else [])
        if args.json:
            _print_json({"pid": pid, "log": str(runs / "worker.log")})
        elif pid is None:
            print("the worker found nothing to do and exited (--exit-when-idle)")
        else:
            print(f"queue worker started in the background: pid {pid}, log {runs / 'worker.log'}")
        return 0
    worker = Worker(runs, args.gpus, exit_when_idle=args.exit_when_idle, poll_interval=args.poll_interval,
                    grace_s=args.grace, detached=args.detached_child)
    return worker.run()


def _stop_worker(args: argparse.Namespace) -> int:
    from engine.queue.spawn import stop_worker

    runs = _runs(args)
    q = _existing_queue(args)
    on_slurm = False
    if q is not None:
        with q:
            on_slurm = q.worker_status().backend == "slurm"
    pid, running = stop_worker(runs.path, wait_s=args.grace + 10)
    if on_slurm:  # a Slurm worker leaves its jobs to the cluster; the next one follows them
        running = []
    if args.json:
        _print_json({"stopped": pid, "cancelled_jobs": running})
    elif pid is None:
        print(f"no worker is running for {runs.describe()}")
    else:
        cancelled = f"; cancelled job(s) {', '.join(map(str, running))} (retry with --resume)" if running else ""
        stays = "; its jobs stay on the Slurm cluster (the next Slurm worker follows them)" if on_slurm else ""
        print(f"stopped the queue worker (pid {pid}){cancelled}{stays}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from engine.queue.lifecycle import WorkerStatus
    from engine.rundir.states import age_s

    runs = _runs(args)
    q = _existing_queue(args)
    jobs = []
    if q is None:
        status = WorkerStatus(alive=False)
    else:
        with q:
            q.recover()
            status = q.worker_status()
            jobs = [q.get(i) for i in status.running]
    if args.json:
        _print_json({**status.as_dict(), "runs_dir": str(runs.path), "runs_dir_source": runs.source,
                     "queue_exists": q is not None})
        return 0
    print(f"runs: {runs.describe()}")
    if q is None:
        print("queue: none yet (`adapter-engine queue add` creates it)")
        return 0
    backend = f"Slurm, cluster {status.cluster or '(unnamed)'}" if status.backend == "slurm" else "local"
    if status.alive:
        age = age_s(status.heartbeat)
        print(f"worker: alive ({backend}), pid {status.pid} on {status.host}, heartbeat {status.heartbeat}"
              + (f" ({age:.0f} s ago)" if age is not None else "") + (f", GPUs {status.gpus}" if status.gpus else ""))
    elif status.unresponsive:
        print(f"worker: {status.unresponsive_text()}")
    elif status.pid:
        print(f"worker: not running (last: pid {status.pid} on {status.host}, heartbeat {status.heartbeat})")
    else:
        print("worker: not running (none has run here yet)")
    running = [f"job {job.id} ({job.level}{', ' + Path(job.run_dir).name if job.run_dir else ''}"
               f"{', Slurm ' + slurm_cell(job) if job.slurm_id else ''})" for job in jobs]
    print(f"running: {'; '.join(running) or 'nothing'}")
    counts = ", ".join(f"{state} {n}" for state, n in sorted(status.counts.items()))
    print(f"jobs: {counts or 'none'}")
    return 0

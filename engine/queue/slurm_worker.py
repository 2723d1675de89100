"""The queue worker's Slurm backend: each claimed job is submitted with sbatch as a batch script
(RUNS/logs/job_<id>.sbatch, beside its log), followed with squeue / `scontrol show job`, and
recorded with its Slurm job id, node and state; cancels go through scancel. Torch-free.

    SlurmWorker(runs_dir, options, cluster, partition).run()   # `queue worker --backend slurm`

The loop, the lock (one worker per runs directory), heartbeats and sweeps are the local
worker's (engine.queue.worker); only how a job is started, followed and stopped differs.
Stopping the worker leaves the submitted jobs to the cluster: the next Slurm worker on the same
runs directory follows them again.
"""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from common.errors import UserInputError
from common.fileio import ReadError, read_json
from engine.extract.options import JOB_KIND
from engine.queue.lifecycle import RESUME_ON_RETRY, JobQueue
from engine.queue.slurm import (ENDED_AS, Cluster, SlurmJob, SlurmOptions, batch_script, gpu_problem, gpus_per_proc,
                                query, sbatch, scancel, show_job, write_script)
from engine.queue.storage import Job
from engine.queue.worker import Worker, last_line, trainer_command
from engine.rundir.layout import JOB_LOGS, LAST
from engine.rundir.states import FINISHED, now_iso
from engine.rundir.status import close_status, status_path

UNLIMITED = 1_000_000  # "slots" for claim_next: Slurm, not the worker, decides what runs at once


def script_path(runs_dir: Path, job_id: int) -> Path:
    """Where a job's batch script is written (RUNS/logs/job_<id>.sbatch)."""
    return Path(runs_dir) / JOB_LOGS / f"job_{job_id}.sbatch"


def check_queued(runs_dir: Path, options: SlurmOptions, cluster: Cluster, partition: str) -> None:
    """Refuse (one line) before anything is submitted when a queued job cannot run there."""
    q = JobQueue.existing(runs_dir)
    if q is None:
        return
    with q:
        per_proc = gpus_per_proc(options, cluster, partition)
        for job in q.jobs():
            problem = gpu_problem(job.nproc, per_proc, cluster, partition, job.nodes) if job.state == "queued" else None
            if problem:
                raise UserInputError(f"queued job {job.id} ({job.level}) {problem}")


@dataclass
class _Submitted:
    job: Job
    slurm_id: str | None
    log: Path
    run_dir_file: Path
    run_dir: str | None = None
    state: str | None = None
    node: str | None = None
    cancel_sent: bool = False


class SlurmWorker(Worker):
    """Runs the queue of `runs_dir` on a Slurm cluster (checked by the caller: `cluster` from
    slurm.read_cluster, `partition` from slurm.check_partition)."""

    backend = "slurm"

    def __init__(self, runs_dir: str | os.PathLike, options: SlurmOptions, cluster: Cluster, partition: str,
                 **kwargs) -> None:
        super().__init__(runs_dir, None, **kwargs)
        self.options = options
        self.cluster = cluster.name
        self.cluster_info = cluster
        self.partition = partition
        self.per_proc = gpus_per_proc(options, cluster, partition)
        self.max_submitted = options.max_submitted or UNLIMITED
        self.children: dict[int, _Submitted] = {}  # type: ignore[assignment]

    def describe(self) -> str:
        cap = f", at most {self.max_submitted} submitted" if self.max_submitted < UNLIMITED else ""
        return (f"Slurm cluster {self.cluster or '(unnamed)'}, partition {self.partition}, "
                f"{self.per_proc} GPU(s) per process{cap}")

    def _gpu_stats(self) -> list[dict] | None:
        return None  # the GPUs are the nodes', not this machine's

    # -- submitting -----------------------------------------------------------------------------

    def _recover(self) -> None:
        """Follow the jobs a previous Slurm worker submitted (this one holds the lock now)."""
        for job in self.queue.on_slurm():
            if job.id in self.children:
                continue
            logs = self.runs_dir / JOB_LOGS
            self.queue.adopt(job.id, self.pid)
            self.children[job.id] = _Submitted(job=job, slurm_id=job.slurm_id, log=logs / f"job_{job.id}.log",
                                               run_dir_file=logs / f"job_{job.id}.rundir", run_dir=job.run_dir,
                                               state=job.slurm_state, node=job.slurm_node)
            self.log(f"job {job.id} ({job.level}) followed again: Slurm job {job.slurm_id} ({job.slurm_state})")

    def _start_jobs(self) -> None:
        while self._stop_signal is None and len(self.children) < self.max_submitted:
            job = self.queue.claim_next(self.pid, UNLIMITED, UNLIMITED)
            if job is None:
                return
            self._submit(job)

    def _submit(self, job: Job) -> None:
        q = self.queue
        logs = self.runs_dir / JOB_LOGS
        logs.mkdir(exist_ok=True)
        log, run_dir_file = logs / f"job_{job.id}.log", logs / f"job_{job.id}.rundir"
        problem = gpu_problem(job.nproc, self.per_proc, self.cluster_info, self.partition, job.nodes)
        if problem:
            q.finish(job.id, "failed", None, f"job {problem}")
            self.log(f"job {job.id} ({job.level}) failed: it {problem}")
            return
        if job.resume and not (job.run_dir and Path(job.run_dir).is_dir()):
            q.finish(job.id, "failed", None, f"cannot resume: run directory {job.run_dir} is gone")
            self.log(f"job {job.id} ({job.level}) failed: run directory to resume is gone")
            return
        run_dir_file.unlink(missing_ok=True)
        try:
            argv = engine_args(trainer_command(job, self.runs_dir))
            fresh_train = job.settings.get("kind") != JOB_KIND and argv[-2:-1] == ["--settings"]
            text = batch_script(job_id=job.id, level=job.level, python=sys.executable, engine_argv=argv, log=log,
                                run_dir_file=run_dir_file, options=self.options, partition=self.partition,
                                gpus=job.nproc * self.per_proc, nproc=job.nproc, nodes=job.nodes, workdir=Path.cwd(),
                                resume_argv=argv[:-2] + ["--resume"] if fresh_train else None)
            script = write_script(script_path(self.runs_dir, job.id), text)
            with open(log, "ab") as handle:
                handle.write(f"=== {now_iso()} job {job.id} attempt {job.attempts}: sbatch {script}\n".encode())
            slurm_id = sbatch(script)
        except (OSError, UserInputError) as exc:
            q.finish(job.id, "failed", None, f"cannot submit to Slurm: {exc}")
            self.log(f"job {job.id} ({job.level}) failed to submit: {exc}")
            return
        q.set_slurm(job.id, slurm_id, "PENDING", None)
        self.children[job.id] = _Submitted(job=job, slurm_id=slurm_id, log=log, run_dir_file=run_dir_file,
                                           run_dir=job.run_dir if job.resume else None, state="PENDING")
        self.log(f"job {job.id} ({job.level}) submitted: Slurm job {slurm_id}, script {script}, "
                 f"log {log} ({shlex.join(argv[-2:])})")

    # -- following ------------------------------------------------------------------------------

    def _poll_children(self) -> None:
        if not self.children:
            return
        try:
            seen = query([c.slurm_id for c in self.children.values() if c.slurm_id])
        except UserInputError as exc:  # the controller is busy or down: try again next round
            self.log(f"cannot follow the Slurm jobs: {exc}")
            return
        for child in list(self.children.values()):
            self._read_run_dir(child)  # type: ignore[arg-type]
            report = seen.get(child.slurm_id or "")
            if report is not None and report.state in ENDED_AS and report.state not in RESUME_ON_RETRY \
                    and report.exit_code is None:
                report = show_job(child.slurm_id) or report  # the exit code
            if report is not None and (report.state, report.node) != (child.state, child.node):
                child.state, child.node = report.state, report.node or child.node
                self.queue.set_slurm(child.job.id, child.slurm_id, child.state, child.node)
                self.log(f"job {child.job.id} ({child.job.level}) Slurm {child.state}"
                         + (f" on {child.node}" if child.node else "") + (f" ({report.reason})" if report.reason else ""))
            if report is None or report.state in ENDED_AS:
                self._finish_submitted(child, report)

    def _handle_cancels(self) -> None:
        wanted = [self.children[i] for i in self.queue.cancel_requests(list(self.children))]
        wanted = [c for c in wanted if not c.cancel_sent and c.slurm_id]
        if not wanted:
            return
        for child in wanted:
            self.log(f"job {child.job.id} ({child.job.level}) cancel: scancel {child.slurm_id}")
        try:
            scancel([c.slurm_id for c in wanted])  # type: ignore[misc]
        except UserInputError as exc:
            self.log(f"scancel failed, trying again next round: {exc}")
            return
        for child in wanted:
            child.cancel_sent = True

    def _shutdown(self) -> None:
        if self.children:
            self.log(f"{len(self.children)} job(s) stay on the cluster; the next Slurm worker follows them "
                     "(`queue cancel` stops them)")

    def _finish_submitted(self, child: _Submitted, report: SlurmJob | None) -> None:
        """The job's state: Slurm's word for a time limit, a preemption or a lost node (its run
        resumes when retried); else the run's status.json; else Slurm's state."""
        job = child.job
        status: dict = {}
        if child.run_dir:
            try:
                data = read_json(status_path(child.run_dir))
                status = data if isinstance(data, dict) else {}
            except ReadError:
                status = {}
        raw = status.get("state")
        error = status.get("error") if isinstance(status.get("error"), str) else None
        slurm_state = report.state if report else "GONE"
        has_last = bool(child.run_dir) and (Path(child.run_dir) / LAST).is_file()
        if slurm_state in RESUME_ON_RETRY:
            state = "interrupted"
            error = f"Slurm {slurm_state}" + ("; `queue retry` resumes it from last.pt" if has_last else "")
        elif raw in FINISHED:
            state = raw
        elif report is not None:
            state = ENDED_AS[slurm_state]
            if state != "done" and not error:
                error = last_line(child.log) or f"Slurm {slurm_state}"
        else:
            state, error = "interrupted", f"Slurm no longer knows job {child.slurm_id}"
        if state not in ("done", "cancelled") and self.queue.cancel_requests([job.id]) and slurm_state == "CANCELLED":
            state = "cancelled"
        code = _exit_code(report.exit_code if report else None)
        close_status(child.run_dir, state, error)
        self.queue.set_slurm(job.id, child.slurm_id or "", slurm_state, child.node)
        self.queue.finish(job.id, state, code, error if state != "done" else None, child.run_dir)
        child.run_dir_file.unlink(missing_ok=True)
        del self.children[job.id]
        self.log(f"job {job.id} ({job.level}) {state} (Slurm {slurm_state})" + (f": {error}" if error and state != "done" else "")
                 + (f" run {child.run_dir}" if child.run_dir else ""))


def engine_args(argv: list[str]) -> list[str]:
    """The arguments after `-m engine` of a local trainer command (whatever launches it here:
    on Slurm the batch script decides how it is launched)."""
    for i in range(len(argv) - 1):
        if argv[i:i + 2] == ["-m", "engine"]:
            return argv[i + 2:]
    raise UserInputError(f"cannot tell the engine's arguments in {argv!r}")


def _exit_code(text: str | None) -> int | None:
    """Slurm's 'EXIT:SIGNAL' (scontrol ExitCode) as our exit code (a signal as its negative)."""
    if not text or ":" not in text:
        return None
    code, _, sig = text.partition(":")
    try:
        return -int(sig) if int(sig) else int(code)
    except ValueError:
        return None

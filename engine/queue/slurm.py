"""Slurm, seen from the queue: the cluster's options and their checks, the batch script of a job,
and the commands that submit (sbatch), follow (squeue, `scontrol show job`) and cancel (scancel)
it. Torch-free; every command runs without a shell.

Why sbatch and not submitit: submitit pickles a Python callable and unpickles it on the node,
while a queue job is already a command line (`adapter-engine train --settings FILE`). A plain
batch script says exactly what runs, can be read and resubmitted by hand, and needs nothing on
the node but this package. Jobs are followed with squeue and `scontrol show job`, which work
without accounting (sacct needs slurmdbd).
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from common.errors import UserInputError
from common.fileio import atomic_writer

SLURM_TIMEOUT_S = 30.0  # one Slurm command; a controller that does not answer is an error

# Slurm's job states (squeue %T) and what each means for a queue job: still on the cluster,
# or ended as one of our states. TIMEOUT, PREEMPTED and NODE_FAIL end it `interrupted`: it kept
# its last.pt, and a retry resumes from it (lifecycle.RESUME_ON_RETRY).
ACTIVE = ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD",
          "RESIZING", "SUSPENDED", "STOPPED", "SIGNALING", "STAGE_OUT", "RESV_DEL_HOLD")
ENDED_AS = {"COMPLETED": "done", "FAILED": "failed", "OUT_OF_MEMORY": "failed", "BOOT_FAIL": "failed",
            "DEADLINE": "failed", "SPECIAL_EXIT": "failed", "REVOKED": "failed", "CANCELLED": "cancelled",
            "TIMEOUT": "interrupted", "PREEMPTED": "interrupted", "NODE_FAIL": "interrupted"}

_TIME = re.compile(r"^(\d+|\d+:\d{1,2}|\d+:\d{1,2}:\d{1,2}|\d+-\d+|\d+-\d+:\d{1,2}|\d+-\d+:\d{1,2}:\d{1,2}|"
                   r"INFINITE|UNLIMITED)$")
_SLURM_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")
_GRES_GPU = re.compile(r"(?:^|,)gpu(?::[A-Za-z0-9_.\-]+)?:(\d+)")


@dataclass(frozen=True)
class SlurmOptions:
    """How the worker submits jobs: `queue worker --backend slurm` flags, else adapters.toml
    [slurm]. `gpus_per_proc` None: one GPU per process when the partition's nodes have GPUs."""

    partition: str | None = None
    account: str | None = None
    time: str | None = None
    sbatch_args: tuple[str, ...] = ()
    gpus_per_proc: int | None = None
    cpus_per_proc: int = 1
    mem: str | None = None
    max_submitted: int | None = None

    def checked(self) -> "SlurmOptions":
        """The options as given, each checked; UserInputError (one line) for the first bad one."""
        for flag, value in (("--partition", self.partition), ("--account", self.account)):
            if value is not None and not _SLURM_NAME.match(value):
                raise UserInputError(f"{flag} {value!r} is not a Slurm name (letters, digits, '_', '.', '-')")
        if self.time is not None and not _TIME.match(self.time):
            raise UserInputError(f"--time {self.time!r} is not a Slurm time limit; use e.g. 30, 4:00:00 or 1-12:00:00")
        if self.mem is not None and not re.match(r"^\d+[KMGT]?$", self.mem):
            raise UserInputError(f"--mem {self.mem!r} is not a Slurm memory size; use e.g. 16G or 4000M")
        for flag, value, low in (("--gpus-per-proc", self.gpus_per_proc, 0), ("--cpus-per-proc", self.cpus_per_proc, 1),
                                 ("--max-submitted", self.max_submitted, 1)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
                raise UserInputError(f"{flag} must be an integer >= {low}, got {value!r}")
        for arg in self.sbatch_args:
            if not isinstance(arg, str) or not arg.startswith("-") or any(c in arg for c in "\n\r\0"):
                raise UserInputError(f"--sbatch-arg {arg!r} must be one sbatch option on one line, e.g. "
                                     "--sbatch-arg=--qos=high")
        return self

    @classmethod
    def from_config(cls, table: dict, **given) -> "SlurmOptions":
        """Flags given on the command line (not None) over adapters.toml [slurm] keys."""
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(table) - known)
        if unknown:
            raise UserInputError(f"adapters.toml [slurm] unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")
        for key, value in table.items():
            kind = {"sbatch_args": list, "gpus_per_proc": int, "cpus_per_proc": int, "max_submitted": int}.get(key, str)
            if not isinstance(value, kind) or isinstance(value, bool) or \
                    (kind is list and not all(isinstance(v, str) for v in value)):
                raise UserInputError(f"adapters.toml [slurm] {key} must be "
                                     + ("a list of strings" if kind is list else "an integer" if kind is int else "a string")
                                     + f", got {value!r}")
        merged = {**table, **{k: v for k, v in given.items() if v not in (None, ())}}
        if merged.get("sbatch_args") is not None:
            merged["sbatch_args"] = tuple(merged["sbatch_args"])
        return cls(**merged).checked()


@dataclass
class Cluster:
    """What sinfo says: the cluster's name, its partitions, the default one, and the most GPUs
    a node of each partition has."""

    name: str | None
    partitions: list[str]
    default: str | None
    max_gpus: dict[str, int] = field(default_factory=dict)
    nodes: dict[str, int] = field(default_factory=dict)  # each partition's node count


@dataclass
class SlurmJob:
    """One job as Slurm reports it (squeue, else `scontrol show job`)."""

    state: str
    node: str | None
    reason: str | None = None
    exit_code: str | None = None


def _run(argv: list[str], what: str) -> str:
    """Run a Slurm command; its stdout. UserInputError with Slurm's own line when it fails."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=SLURM_TIMEOUT_S,
                              stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise UserInputError(f"no {argv[0]} on PATH: the Slurm backend needs Slurm's commands "
                             "(sbatch, squeue, scancel, sinfo); install them or use --backend local") from None
    except subprocess.TimeoutExpired:
        raise UserInputError(f"{what}: {argv[0]} did not answer in {SLURM_TIMEOUT_S:g} s (is slurmctld up?)") from None
    if done.returncode != 0:
        lines = [line.strip() for line in (done.stderr or done.stdout).splitlines() if line.strip()]
        raise UserInputError(f"{what}: {lines[-1] if lines else f'{argv[0]} exited with {done.returncode}'}")
    return done.stdout


def require_commands() -> None:
    """Every Slurm command the backend runs is on PATH."""
    missing = [c for c in ("sbatch", "squeue", "scancel", "sinfo", "scontrol") if shutil.which(c) is None]
    if missing:
        raise UserInputError(f"no {missing[0]} on PATH: the Slurm backend needs Slurm's commands (sbatch, squeue, "
                             "scancel, sinfo, scontrol); install them or use --backend local")


def gres_gpus(gres: str) -> int:
    """GPUs in a sinfo %G field ('gpu:4', 'gpu:a100:2(S:0-1),shard:8', '(null)')."""
    return sum(int(n) for n in _GRES_GPU.findall(gres))


def read_cluster() -> Cluster:
    require_commands()
    out = _run(["sinfo", "-h", "-o", "%P|%G|%D"], "cannot read the cluster's partitions")
    partitions, default, max_gpus, nodes = [], None, {}, {}
    for line in out.splitlines():
        name, _, rest = line.strip().partition("|")
        gres, _, count = rest.partition("|")
        if not name:
            continue
        if name.endswith("*"):
            name = name[:-1]
            default = name
        if name not in partitions:
            partitions.append(name)
        max_gpus[name] = max(max_gpus.get(name, 0), gres_gpus(gres))
        nodes[name] = nodes.get(name, 0) + (int(count) if count.isdigit() else 1)
    cluster = None
    config = _run(["scontrol", "show", "config"], "cannot read the Slurm configuration")
    match = re.search(r"^ClusterName\s*=\s*(\S+)", config, re.MULTILINE)
    if match:
        cluster = match.group(1)
    return Cluster(name=cluster, partitions=partitions, default=default, max_gpus=max_gpus, nodes=nodes)


def check_partition(options: SlurmOptions, cluster: Cluster) -> str:
    """The partition jobs go to (the given one, else the cluster's default); refused when unknown."""
    known = ", ".join(cluster.partitions) or "none"
    if options.partition is None:
        if cluster.default is None:
            raise UserInputError(f"the cluster has no default partition; name one with --partition (known: {known})")
        return cluster.default
    if options.partition not in cluster.partitions:
        raise UserInputError(f"unknown Slurm partition {options.partition!r} (sinfo knows: {known}); "
                             "fix --partition or adapters.toml [slurm] partition")
    return options.partition


def gpus_per_proc(options: SlurmOptions, cluster: Cluster, partition: str) -> int:
    if options.gpus_per_proc is not None:
        return options.gpus_per_proc
    return 1 if cluster.max_gpus.get(partition, 0) > 0 else 0


def gpu_problem(nproc: int, per_proc: int, cluster: Cluster, partition: str, nodes: int = 1) -> str | None:
    """Why a job of `nproc` processes on each of `nodes` nodes cannot run in `partition`, or None."""
    if nodes > cluster.nodes.get(partition, 1):
        return (f"spans {nodes} nodes but partition {partition!r} has {cluster.nodes.get(partition, 1)}; "
                "lower --nodes or pick another partition")
    wanted, most = nproc * per_proc, cluster.max_gpus.get(partition, 0)
    if wanted > most:
        return (f"asks for {wanted} GPU{'s' if wanted != 1 else ''} on one node but no node of partition "
                f"{partition!r} has more than {most}; lower --nproc or --gpus-per-proc, or pick another partition")
    return None


# -- the batch script -----------------------------------------------------------------------------

def batch_script(*, job_id: int, level: str, python: str, engine_argv: list[str], log: Path, run_dir_file: Path,
                 options: SlurmOptions, partition: str, gpus: int, nproc: int, nodes: int, workdir: Path,
                 resume_argv: list[str] | None) -> str:
    """The sbatch script of one queue job: `python -m engine ENGINE_ARGV`, or for several
    processes torchrun (on several nodes one per node under srun, meeting at the first node).
    `resume_argv` (a fresh training job): the engine arguments a requeued job runs instead once
    its run has a last.pt, followed by the run directory, so a preempted job continues."""
    q = shlex.quote
    if nproc > 1 and nodes == 1:  # one node: torchrun alone, as the local worker runs it
        launch = f"{q(python)} -m engine.launch --standalone --nproc_per_node={nproc} -m engine"
    elif nodes > 1:
        launch = (f'srun --ntasks-per-node=1 {q(python)} -m engine.launch --nnodes "$SLURM_NNODES" '
                  f'--nproc_per_node {nproc} --rdzv_backend c10d --rdzv_endpoint "$head:$port" '
                  '--rdzv_id "$SLURM_JOB_ID" -m engine')
    else:
        launch = f"{q(python)} -m engine"
    lines = ["#!/bin/bash",
             f"# adapter-tui queue job {job_id} ({level}), written by the queue worker.",
             "# Submit it again by hand with: sbatch THIS_FILE",
             f"#SBATCH --job-name=adapter-{job_id}-{level}",
             f"#SBATCH --output={log}",
             "#SBATCH --open-mode=append",
             f"#SBATCH --partition={partition}",
             f"#SBATCH --nodes={nodes}",
             "#SBATCH --ntasks-per-node=1",
             f"#SBATCH --cpus-per-task={options.cpus_per_proc * nproc}",
             "#SBATCH --requeue"]
    if gpus:
        lines.append(f"#SBATCH --gres=gpu:{gpus}")  # per node
    if options.account:
        lines.append(f"#SBATCH --account={options.account}")
    if options.time:
        lines.append(f"#SBATCH --time={options.time}")
    if options.mem:
        lines.append(f"#SBATCH --mem={options.mem}")
    lines += [f"#SBATCH {arg}" for arg in options.sbatch_args]
    lines += ["set -eu",
              f"cd {q(str(workdir))}",
              f"export ADAPTER_ENGINE_RUN_DIR_FILE={q(str(run_dir_file))}",
              "export PYTHONUNBUFFERED=1",
              'echo "=== $(date -Iseconds) Slurm job $SLURM_JOB_ID on $(hostname) (restart ${SLURM_RESTART_COUNT:-0})"']
    if nodes > 1:
        lines += ['head=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
                  "port=$((29500 + SLURM_JOB_ID % 10000))  # two jobs on one head node meet apart"]
    if resume_argv is not None:
        lines += ["# Requeued (preempted, node lost): continue the run from its last.pt.",
                  'run_dir=$(cat "$ADAPTER_ENGINE_RUN_DIR_FILE" 2>/dev/null || true)',
                  'if [ -n "$run_dir" ] && [ -f "$run_dir/last.pt" ]; then',
                  f'    exec {launch} {shlex.join(resume_argv)} "$run_dir"',
                  "fi"]
    lines.append(f"exec {launch} {shlex.join(engine_argv)}")
    return "\n".join(lines) + "\n"


def write_script(path: Path, text: str) -> Path:
    """Atomically, with the umask's mode (sbatch reads it; it needs no execute bit)."""
    with atomic_writer(path) as handle:
        handle.write(text.encode("utf-8"))
    return path


# -- commands -------------------------------------------------------------------------------------

def sbatch(script: Path) -> str:
    """Submit a batch script; its Slurm job id."""
    out = _run(["sbatch", "--parsable", str(script)], f"sbatch {script.name} failed")
    job_id = out.strip().split(";")[0]
    if not job_id.isdigit():
        raise UserInputError(f"sbatch {script.name} answered {out.strip()!r}, not a job id")
    return job_id


def query(slurm_ids: list[str]) -> dict[str, SlurmJob]:
    """Each job's state and node, from one squeue call; a job squeue has forgotten is asked of
    `scontrol show job`. A job neither knows is left out (purged: it ended long ago)."""
    if not slurm_ids:
        return {}
    found: dict[str, SlurmJob] = {}
    try:
        out = _run(["squeue", "-h", "--states=all", "-j", ",".join(slurm_ids), "-o", "%i|%T|%N|%r"],
                   "squeue failed")
    except UserInputError as exc:
        if "Invalid job id" not in str(exc):
            raise
        out = ""
    for line in out.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 4 and parts[0] in slurm_ids:
            found[parts[0]] = SlurmJob(state=parts[1].split()[0], node=parts[2] or None,
                                       reason=None if parts[3] in ("None", "") else parts[3])
    for slurm_id in slurm_ids:
        if slurm_id not in found:
            job = show_job(slurm_id)
            if job is not None:
                found[slurm_id] = job
    return found


def show_job(slurm_id: str) -> SlurmJob | None:
    """`scontrol show job`: the job's state, node, reason and exit code; None when unknown."""
    try:
        out = _run(["scontrol", "show", "job", "-o", slurm_id], "scontrol show job failed")
    except UserInputError as exc:
        if "Invalid job id" in str(exc):
            return None
        raise
    fields = dict(item.split("=", 1) for item in out.split() if "=" in item)
    if "JobState" not in fields:
        return None
    node = fields.get("NodeList")
    reason = fields.get("Reason")
    return SlurmJob(state=fields["JobState"], node=None if node in (None, "(null)") else node,
                    reason=None if reason in (None, "None") else reason, exit_code=fields.get("ExitCode"))


def scancel(slurm_ids: list[str]) -> None:
    """Cancel jobs: Slurm sends SIGTERM (the trainer saves last.pt), then SIGKILL after KillWait."""
    if slurm_ids:
        _run(["scancel", *slurm_ids], "scancel failed")

"""The queue's Slurm backend against a real Slurm (scripts/slurm_local.sh: one node on this
machine): a job to done, a cancel through scancel, a time-limit kill resumed from last.pt, a
failing job, a 2x2 sweep under --max-submitted, two workers, and bad configuration refused
before anything is submitted. NODE_FAIL, which one node cannot produce, through stand-in Slurm
commands beside the real tests."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from support import ROOT, run_cli, wait_for

SLURM_LOCAL = ROOT / "scripts" / "slurm_local.sh"
WORKER = ("queue", "worker", "--backend", "slurm", "--poll-interval", "0.3")


@pytest.fixture(scope="module")
def slurm():
    """The local cluster, started when it is not up. Skipped only where Slurm is not installed."""
    if shutil.which("sbatch") is None:
        pytest.skip("no sbatch on PATH: install slurm-wlm and munge (scripts/slurm_local.sh start)")
    if subprocess.run(["sinfo", "-h"], capture_output=True, timeout=30).returncode != 0:
        subprocess.run([str(SLURM_LOCAL), "start"], check=True, timeout=120)
    from engine.queue.slurm import read_cluster

    return read_cluster()


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("slurm_data") / "demo"
    done = run_cli("synth", out, "--samples", "48", "--val_samples", "16", "--hidden_dim", "32",
                   "--chunk_size", "16", "--max_seq", "8")
    assert done.returncode == 0, done.stderr
    return out


def add(runs: Path, data: Path, *extra: str) -> list[dict]:
    done = run_cli("queue", "add", "--level", "L1", "--train_data", data / "train", "--val_data", data / "val",
                   "--runs", runs, "--json", *extra)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def jobs(runs: Path) -> dict[int, dict]:
    done = run_cli("queue", "ls", "--runs", runs, "--json")
    assert done.returncode == 0, done.stderr
    return {job["id"]: job for job in json.loads(done.stdout)}


def start_worker(runs: Path, *extra: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "engine", *WORKER, "--runs", str(runs), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=cwd)


def stop(proc: subprocess.Popen) -> str:
    if proc.poll() is None:
        proc.terminate()
    out, _ = proc.communicate(timeout=60)
    return out


def epochs(run_dir: str) -> int:
    try:
        return len(json.loads((Path(run_dir) / "history.json").read_text())["val_loss"])
    except (OSError, ValueError, KeyError):
        return 0


# -- real jobs -------------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_job_runs_on_slurm_to_done_with_its_slurm_id_node_and_script(slurm, data, tmp_path):
    runs = tmp_path / "runs"
    [added] = add(runs, data, "--num_epochs", "2")
    done = run_cli(*WORKER, "--runs", runs, "--exit-when-idle", cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    job = jobs(runs)[added["id"]]
    assert job["state"] == "done" and job["exit_code"] == 0, job
    assert job["slurm_id"].isdigit() and job["slurm_state"] == "COMPLETED"
    assert job["slurm_node"] == socket.gethostname().split(".")[0]
    assert epochs(job["run_dir"]) == 2
    script = (runs / "logs" / f"job_{job['id']}.sbatch").read_text()
    assert "#SBATCH --partition=" + slurm.default in script and "--settings" in script
    status = json.loads(run_cli("queue", "status", "--runs", runs, "--json").stdout)
    assert (status["backend"], status["cluster"]) == ("slurm", slurm.name)
    table = run_cli("queue", "ls", "--runs", runs).stdout
    assert f"{job['slurm_id']} COMPLETED" in table


@pytest.mark.slow
def test_queue_cancel_runs_scancel_and_the_job_ends_cancelled(slurm, data, tmp_path):
    runs = tmp_path / "runs"
    [added] = add(runs, data, "--num_epochs", "100000", "--early_stopping", "100000")
    first = start_worker(runs, cwd=tmp_path)
    worker = first
    try:
        job = wait_for(lambda: (j := jobs(runs)[added["id"]])["slurm_state"] == "RUNNING" and j["run_dir"]
                       and epochs(j["run_dir"]) >= 1 and j, timeout=120, step=0.2)
        stop(first)  # a stopped worker leaves the job to the cluster; the next one follows it
        from engine.queue.slurm import show_job

        assert show_job(job["slurm_id"]).state == "RUNNING" and jobs(runs)[added["id"]]["state"] == "running"
        worker = start_worker(runs, cwd=tmp_path)
        wait_for(lambda: jobs(runs)[added["id"]]["worker_pid"] == worker.pid, timeout=60, step=0.2)  # it follows it
        cancel = run_cli("queue", "cancel", added["id"], "--runs", runs)
        assert cancel.returncode == 0, cancel.stderr
        job = wait_for(lambda: (j := jobs(runs)[added["id"]])["state"] not in ("queued", "running") and j,
                       timeout=120, step=0.2)
    finally:
        log = stop(worker)
    assert job["state"] == "cancelled" and job["slurm_state"] == "CANCELLED", (job, log)
    assert f"Slurm job {job['slurm_id']} (RUNNING)" in log  # the second worker followed it
    assert (Path(job["run_dir"]) / "last.pt").is_file()
    assert show_job(job["slurm_id"]).state == "CANCELLED"


@pytest.mark.slow
def test_a_job_killed_by_its_time_limit_is_retried_from_last_pt(slurm, data, tmp_path):
    runs = tmp_path / "runs"
    [added] = add(runs, data, "--num_epochs", "100000", "--early_stopping", "100000")
    worker = start_worker(runs, "--time", "1", cwd=tmp_path)  # a minute: Slurm's smallest limit
    try:
        job = wait_for(lambda: (j := jobs(runs)[added["id"]])["state"] not in ("queued", "running") and j,
                       timeout=300, step=0.5)
        assert job["state"] == "interrupted" and job["slurm_state"] == "TIMEOUT", job
        assert "resumes it from last.pt" in job["error"]
        before = epochs(job["run_dir"])
        assert before >= 1
        retry = run_cli("queue", "retry", added["id"], "--runs", runs)  # no --resume: a TIMEOUT resumes anyway
        assert retry.returncode == 0 and "resuming" in retry.stdout, retry.stdout + retry.stderr
        resumed = wait_for(lambda: (j := jobs(runs)[added["id"]])["slurm_state"] == "RUNNING"
                           and epochs(j["run_dir"]) > before and j, timeout=120, step=0.2)
        assert resumed["run_dir"] == job["run_dir"] and resumed["slurm_id"] != job["slurm_id"]
        assert "resumed from" in (Path(job["run_dir"]) / "train.log").read_text()
        assert run_cli("queue", "cancel", added["id"], "--runs", runs).returncode == 0
        wait_for(lambda: jobs(runs)[added["id"]]["state"] == "cancelled", timeout=120, step=0.2)
    finally:
        stop(worker)


@pytest.mark.slow
def test_a_failing_job_ends_failed_with_its_one_line_error(slurm, data, tmp_path):
    runs = tmp_path / "runs"
    copy = tmp_path / "gone"
    shutil.copytree(data, copy)
    [added] = add(runs, copy, "--num_epochs", "1")
    shutil.rmtree(copy / "train")  # the trainer, not `queue add`, now finds the data missing
    done = run_cli(*WORKER, "--runs", runs, "--exit-when-idle", cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    job = jobs(runs)[added["id"]]
    assert job["state"] == "failed" and job["slurm_state"] == "FAILED" and job["exit_code"] == 2, job
    assert "gone/train" in job["error"] and "Traceback" not in job["error"]


@pytest.mark.slow
def test_a_2x2_sweep_runs_with_at_most_max_submitted_jobs_on_the_cluster(slurm, data, tmp_path):
    runs = tmp_path / "runs"
    added = add(runs, data, "--num_epochs", "1", "--sweep", "learning_rate=0.001,0.002", "--sweep", "batch_size=4,8")
    assert len(added) == 4
    done = run_cli(*WORKER, "--runs", runs, "--exit-when-idle", "--max-submitted", "2", cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    final = jobs(runs)
    assert [final[a["id"]]["state"] for a in added] == ["done"] * 4
    assert len({final[a["id"]]["slurm_id"] for a in added}) == 4
    on_cluster = peak = 0
    for line in done.stdout.splitlines():  # the worker's log: each submission and each end
        on_cluster += (" submitted: Slurm job " in line) - (" (Slurm " in line and ") run " in line)
        peak = max(peak, on_cluster)
    assert peak == 2, done.stdout


@pytest.mark.slow
def test_two_workers_never_submit_one_job_twice(slurm, data, tmp_path):
    runs = tmp_path / "runs"
    added = add(runs, data, "--num_epochs", "1", "--sweep", "seed=1,2,3")
    workers = [start_worker(runs, "--exit-when-idle", cwd=tmp_path) for _ in range(2)]
    outs = [w.communicate(timeout=600)[0] for w in workers]
    codes = sorted(w.returncode for w in workers)
    assert codes == [0, 2], outs  # the second one refuses: one worker per runs directory
    assert any("already running" in out for out in outs)
    final = jobs(runs)
    assert all(final[a["id"]]["state"] == "done" for a in added)
    scripts = {str(runs / "logs" / f"job_{a['id']}.sbatch") for a in added}
    listed = subprocess.run(["squeue", "-h", "--states=all", "-o", "%i|%o"], capture_output=True, text=True,
                            check=True).stdout.split()
    submitted = [line for line in listed if line.partition("|")[2] in scripts]
    assert len(submitted) == 3, submitted  # each job once on the cluster


# -- refused before anything is submitted ----------------------------------------------------------

def refused(runs: Path, *extra: str, env: dict | None = None, cwd: Path) -> str:
    done = run_cli(*WORKER, "--runs", runs, "--exit-when-idle", *extra, env=env, cwd=cwd)
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert not list((runs / "logs").glob("*.sbatch")) if (runs / "logs").exists() else True
    return lines[0]


def test_no_sbatch_on_path_is_refused_in_one_line(data, tmp_path):
    runs = tmp_path / "runs"
    add(runs, data)
    bare = tmp_path / "bin"  # only python: no Slurm command can be found
    bare.mkdir()
    os.symlink(sys.executable, bare / "python")
    line = refused(runs, env={"PATH": str(bare)}, cwd=tmp_path)
    assert "no sbatch on PATH" in line
    assert jobs(runs)[1]["state"] == "queued"


def test_an_unknown_partition_is_refused_with_the_known_ones(slurm, data, tmp_path):
    runs = tmp_path / "runs"
    add(runs, data)
    line = refused(runs, "--partition", "nosuch", cwd=tmp_path)
    assert "unknown Slurm partition 'nosuch'" in line and slurm.default in line
    assert jobs(runs)[1]["state"] == "queued" and jobs(runs)[1]["slurm_id"] is None


def test_a_job_asking_more_gpus_than_any_node_has_is_refused(slurm, data, tmp_path):
    runs = tmp_path / "runs"
    add(runs, data)
    most = max(slurm.max_gpus.values())
    line = refused(runs, "--gpus-per-proc", str(most + 1), cwd=tmp_path)
    assert f"queued job 1 (L1) asks for {most + 1} GPU" in line and f"more than {most}" in line
    assert jobs(runs)[1]["state"] == "queued"


@pytest.mark.parametrize("flags, says", [(("--time", "soon"), "--time 'soon'"),
                                         (("--sbatch-arg", "qos=high"), "--sbatch-arg 'qos=high'"),
                                         (("--max-submitted", "0"), "--max-submitted must be"),
                                         (("--partition", "a/b"), "not a Slurm name")])
def test_bad_slurm_options_are_refused_before_slurm_is_asked(data, tmp_path, flags, says):
    runs = tmp_path / "runs"
    add(runs, data)
    assert says in refused(runs, *flags, cwd=tmp_path)


# -- NODE_FAIL, which one node cannot produce: stand-in Slurm commands --------------------------------

FAKE_SLURM = textwrap.dedent("""\
    #!{python}
    # A stand-in for Slurm's commands: sbatch runs the script at once (to its end), then squeue
    # and scontrol say the node failed.
    import os, subprocess, sys
    name = os.path.basename(sys.argv[0])
    if name == "sbatch":
        subprocess.run(["bash", sys.argv[-1]], check=False, env={{**os.environ, "SLURM_JOB_ID": "4242"}},
                       stdout=open(os.environ["FAKE_LOG"], "ab"), stderr=subprocess.STDOUT)
        print("4242")
    elif name == "sinfo":
        print("debug*|(null)")
    elif name == "squeue":
        print("4242|NODE_FAIL|node7|NodeDown")
    elif name == "scontrol":
        print("ClusterName = fake" if "config" in sys.argv else "JobId=4242 JobState=NODE_FAIL NodeList=node7 ExitCode=0:0")
    """)


@pytest.mark.slow
def test_a_node_failure_ends_interrupted_and_a_retry_resumes_from_last_pt(data, tmp_path):
    bin_dir = tmp_path / "fake-slurm"
    bin_dir.mkdir()
    for name in ("sbatch", "squeue", "scancel", "sinfo", "scontrol"):
        (bin_dir / name).write_text(FAKE_SLURM.format(python=sys.executable))
        (bin_dir / name).chmod(0o755)
    runs = tmp_path / "runs"
    [added] = add(runs, data, "--num_epochs", "1")
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_LOG": str(tmp_path / "fake.log")}
    done = run_cli(*WORKER, "--runs", runs, "--exit-when-idle", env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    job = jobs(runs)[added["id"]]
    assert (job["state"], job["slurm_state"], job["slurm_node"]) == ("interrupted", "NODE_FAIL", "node7"), job
    assert "resumes it from last.pt" in job["error"]
    retry = run_cli("queue", "retry", added["id"], "--runs", runs)
    assert retry.returncode == 0 and f"resuming {job['run_dir']}" in retry.stdout, retry.stdout + retry.stderr
    again = jobs(runs)[added["id"]]
    assert again["slurm_id"] is None and again["state"] == "queued"


# -- the database ---------------------------------------------------------------------------------

def test_a_queue_db_from_before_slurm_opens_and_gains_the_slurm_columns(tmp_path):
    import sqlite3

    from engine.queue import JobQueue
    from engine.queue.storage import MIGRATIONS

    db = sqlite3.connect(tmp_path / "queue.db")
    for migration in MIGRATIONS[:3]:
        db.executescript(migration)
    db.execute("INSERT INTO jobs (level, args, state, created_at) VALUES ('L1', '{}', 'done', 'now')")
    db.execute("PRAGMA user_version = 3")
    db.commit()
    db.close()
    with JobQueue(tmp_path) as q:
        assert q.schema_version() == len(MIGRATIONS)
        [job] = q.jobs()
        assert (job.level, job.slurm_id, job.slurm_state, job.slurm_node) == ("L1", None, None, None)
        assert q.worker_status().backend is None


# -- adapters.toml [slurm] --------------------------------------------------------------------------

def test_adapters_toml_slurm_table_gives_the_defaults_and_flags_win(tmp_path):
    from engine.queue.slurm import SlurmOptions

    table = {"partition": "gpu", "time": "4:00:00", "sbatch_args": ["--qos=high"], "max_submitted": 8}
    options = SlurmOptions.from_config(table, partition="debug", time=None, sbatch_args=None)
    assert (options.partition, options.time, options.sbatch_args, options.max_submitted) == \
        ("debug", "4:00:00", ("--qos=high",), 8)
    for bad, says in (({"partiton": "x"}, "unknown key 'partiton'"), ({"max_submitted": "8"}, "must be an integer"),
                      ({"sbatch_args": "--qos=high"}, "a list of strings"), ({"time": "soon"}, "--time 'soon'")):
        with pytest.raises(Exception, match=says):
            SlurmOptions.from_config(bad)


def test_an_unknown_partition_from_adapters_toml_is_refused(slurm, data, tmp_path):
    config = tmp_path / "adapters.toml"
    config.write_text((ROOT / "adapters.toml").read_text() + '\n[slurm]\npartition = "fromtoml"\n')
    runs = tmp_path / "runs"
    add(runs, data)
    assert "unknown Slurm partition 'fromtoml'" in refused(runs, "--config", config, cwd=tmp_path)


# -- several processes, several nodes --------------------------------------------------------------

@pytest.mark.slow
def test_a_two_process_job_runs_under_torchrun_on_its_node(slurm, data, tmp_path):
    runs = tmp_path / "runs"
    [added] = add(runs, data, "--num_epochs", "1", "--nproc", "2")
    done = run_cli(*WORKER, "--runs", runs, "--exit-when-idle", cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    job = jobs(runs)[added["id"]]
    assert job["state"] == "done" and job["slurm_state"] == "COMPLETED", job
    script = (runs / "logs" / f"job_{job['id']}.sbatch").read_text()
    assert "-m engine.launch --standalone --nproc_per_node=2" in script and "srun" not in script
    assert "x 2 ranks" in (Path(job["run_dir"]) / "train.log").read_text()


def test_a_multi_node_script_asks_each_node_for_its_gpus_and_meets_at_the_first():
    from engine.queue.slurm import SlurmOptions, batch_script

    text = batch_script(job_id=3, level="L4", python="/venv/bin/python", engine_argv=["train", "--settings", "/r/s.json"],
                        log=Path("/r/logs/job_3.log"), run_dir_file=Path("/r/logs/job_3.rundir"),
                        options=SlurmOptions(time="4:00:00", sbatch_args=("--qos=high",)), partition="gpu",
                        gpus=8, nproc=8, nodes=2, workdir=Path("/r"), resume_argv=["train", "--resume"])
    for line in ("#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=1", "#SBATCH --gres=gpu:8", "#SBATCH --time=4:00:00",
                 "#SBATCH --qos=high", "#SBATCH --partition=gpu", "#SBATCH --requeue"):
        assert line in text.splitlines(), line
    assert text.count('--nnodes "$SLURM_NNODES" --nproc_per_node 8') == 2  # fresh, and requeued from last.pt
    assert text.rstrip().endswith("-m engine train --settings /r/s.json")


def test_a_job_on_more_nodes_than_the_partition_has_is_refused(slurm, data, tmp_path):
    runs = tmp_path / "runs"
    add(runs, data, "--nodes", str(slurm.nodes[slurm.default] + 1))
    line = refused(runs, cwd=tmp_path)
    assert f"spans {slurm.nodes[slurm.default] + 1} nodes but partition" in line


def test_the_local_worker_fails_a_multi_node_job_with_what_to_do(data, tmp_path):
    runs = tmp_path / "runs"
    [added] = add(runs, data, "--nodes", "2")
    done = run_cli("queue", "worker", "--runs", runs, "--exit-when-idle", "--poll-interval", "0.2", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    job = jobs(runs)[added["id"]]
    assert job["state"] == "failed" and "--backend slurm" in job["error"] and job["nodes"] == 2

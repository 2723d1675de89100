"""The queue through `adapter-engine queue ...` and the real trainer: validation before
enqueueing, a detached worker that outlives its shell, cancel with a loadable last.pt, and
recovery plus resume after SIGKILL of worker and trainer."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support import ROOT, wait_for

from engine.cli import main
from engine.queue import JobQueue, ensure_worker
from engine.process import pid_exists as pid_alive

ENGINE = [sys.executable, "-m", "engine"]


def engine(*args: str, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*ENGINE, *args], capture_output=True, text=True, timeout=timeout, **kw)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("queue_data") / "demo"
    done = engine("synth", str(out), "--samples", "256", "--val_samples", "64", "--hidden_dim", "64",
                  "--chunk_size", "64")
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture
def runs(tmp_path) -> Path:
    return tmp_path / "runs"


def test_queue_modules_never_import_torch():
    code = ("import sys, engine.queue, engine.commands.queue; "
            "from engine.queue import JobQueue, Job, WorkerStatus, ensure_worker; "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# -- queue add --------------------------------------------------------------------------------------

def test_add_preset_all_queues_seven_jobs_in_order_with_each_levels_defaults(data, runs, registry, capsys):
    assert main(["queue", "add", "--preset", "all", "--train_data", str(data / "train"),
                 "--val_data", str(data / "val"), "--runs", str(runs), "--json"]) == 0
    added = json.loads(capsys.readouterr().out)
    with JobQueue(runs) as q:
        jobs = q.jobs()
    assert [j.level for j in jobs] == ["L1", "L2", "L3", "L4", "L5", "B1", "L5F"] == registry.preset("all")
    assert [j.position for j in jobs] == list(range(1, 8)) and [a["id"] for a in added] == [j.id for j in jobs]
    for job in jobs:
        defaults = registry.level(job.level).train
        assert {k: job.settings[k] for k in defaults} == defaults
        assert job.settings["train_data"] == str((data / "train").resolve())
        assert job.state == "queued" and job.config == str(registry.path.resolve())
    assert jobs[3].settings["num_epochs"] == 300 and jobs[3].settings["early_stopping"] == 50  # L4's own recipe
    assert jobs[5].settings["vlm_only"] is True  # B1 trains on verifier states

    # overrides apply to every level; --front puts the new jobs first, in order
    assert main(["queue", "add", "--level", "L2", "--level", "L1", "--num_epochs", "2", "--front", "--seed", "7",
                 "--train_data", str(data / "train"), "--val_data", str(data / "val"), "--runs", str(runs)]) == 0
    with JobQueue(runs) as q:
        head = q.jobs()[:2]
    assert [(j.level, j.settings["num_epochs"], j.settings["seed"], j.settings["batch_size"]) for j in head] == \
        [("L2", 2, 7, 64), ("L1", 2, 7, 64)]


def test_add_carries_precision_and_eval_flags_to_the_trainer(data, runs):
    from engine.queue import trainer_command

    assert main(["queue", "add", "--level", "L1", "--precision", "bf16", "--no_eval", "--compile",
                 "--train_data", str(data / "train"), "--val_data", str(data / "val"), "--runs", str(runs)]) == 0
    with JobQueue(runs) as q:
        job = q.jobs()[-1]
    settings = json.loads(Path(trainer_command(job, runs)[5]).read_text())
    assert (settings["precision"], settings["no_eval"], settings["compile"]) == ("bf16", True, True)


@pytest.mark.parametrize("flags, message", [
    (["--level", "NOPE"], "unknown level 'NOPE'"),
    (["--preset", "nope"], "unknown preset 'nope'"),
    ([], "no level to queue"),
    (["--level", "L1", "--val_data", "VAL", "--train_data", "/does/not/exist"], "does not exist"),
    (["--level", "L1", "--train_data", "TRAIN", "--val_data", "NOTDATA"], "without index.json"),
    (["--level", "L1", "--train_data", "TRAIN", "--val_data", "VAL", "--num_epochs", "0"], "--num_epochs must be >= 1"),
    (["--level", "L1", "--train_data", "TRAIN", "--val_data", "VAL", "--num_heads", "5"], None),
    (["--level", "L4", "--train_data", "TRAIN", "--val_data", "VAL", "--num_heads", "5"], "does not divide"),
    (["--level", "L1", "--dataset", "nope"], "unknown dataset 'nope'"),
])
def test_add_refuses_jobs_that_cannot_start(data, runs, tmp_path, capsys, flags, message):
    (tmp_path / "notdata").mkdir()
    subst = {"TRAIN": str(data / "train"), "VAL": str(data / "val"), "NOTDATA": str(tmp_path / "notdata")}
    code = main(["queue", "add", "--runs", str(runs), *[subst.get(f, f) for f in flags]])
    err = capsys.readouterr().err
    if message is None:  # an override a level does not use is fine
        assert code == 0
        return
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    with JobQueue(runs) as q:
        assert q.jobs() == []


def test_cli_errors_are_one_line_without_traceback(runs):
    for args in (["rm", "5"], ["move", "1", "--to", "2"], ["retry", "3"], ["cancel", "4"], ["clear"]):
        done = engine("queue", *args, "--runs", str(runs), timeout=60)
        assert done.returncode == 2, (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
        assert done.stderr.startswith("adapter-engine queue: error: ")


def test_ls_status_move_rm_and_clear_through_the_cli(runs, capsys):
    with JobQueue(runs) as q:
        a, b, c = q.add_many([("L1", {"num_epochs": 1}), ("L2", {}), ("L3", {})])
    assert main(["queue", "move", str(c), "--to", "1", "--runs", str(runs)]) == 0
    assert main(["queue", "rm", str(b), "--runs", str(runs)]) == 0
    capsys.readouterr()
    assert main(["queue", "ls", "--runs", str(runs), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(j["id"], j["position"], j["state"]) for j in listed] == [(c, 1, "queued"), (a, 2, "queued")]
    assert main(["queue", "ls", "--runs", str(runs)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:4] == ["ID", "#", "STATE", "LEVEL"] and "L3" in out
    assert main(["queue", "status", "--runs", str(runs), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["alive"] is False and status["counts"] == {"queued": 2}
    assert main(["queue", "cancel", str(a), "--runs", str(runs)]) == 0
    assert capsys.readouterr().out == f"job {a}: cancelled\n"
    assert main(["queue", "clear", "--finished", "--runs", str(runs), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"removed": 1}


# -- the detached worker ----------------------------------------------------------------------------

def test_detached_worker_survives_its_shell_and_sighup(runs):
    shell = subprocess.Popen(["bash", "-c", f"{' '.join(ENGINE)} queue worker --detach --runs {runs} "
                                            "--poll-interval 0.2; sleep 60"],
                             start_new_session=True, stdout=subprocess.PIPE, text=True)
    pid = None
    try:
        line = shell.stdout.readline()
        assert "started in the background: pid" in line
        pid = int(line.split("pid ")[1].split(",")[0])
        os.killpg(shell.pid, signal.SIGHUP)  # the terminal hangs up on the shell's process group
        shell.wait(timeout=60)
        os.kill(pid, signal.SIGHUP)  # and a stray SIGHUP to the worker itself

        def beat():
            with JobQueue(runs) as q:
                return q.worker_status().heartbeat

        first = wait_for(beat)
        wait_for(lambda: beat() != first)  # a heartbeat after both hang-ups: alive and reporting
        assert pid_alive(pid)
        with JobQueue(runs) as q:
            status = q.worker_status()
        assert status.alive and status.pid == pid
        # a second worker refuses, naming the first
        second = engine("queue", "worker", "--runs", str(runs), timeout=60)
        assert second.returncode == 2 and f"pid {pid}" in second.stderr
        again = engine("queue", "worker", "--detach", "--runs", str(runs), timeout=60)
        assert again.returncode == 2 and "already running" in again.stderr
        assert ensure_worker(runs) is None  # nothing queued: nothing to ensure
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not pid_alive(pid))
        with JobQueue(runs) as q:
            assert not q.worker_status().alive
        assert "worker started" in (runs / "worker.log").read_text()
    finally:
        if shell.poll() is None:
            os.killpg(shell.pid, signal.SIGKILL)
        if pid is not None and pid_alive(pid):  # a failed assertion must not leave the worker behind
            os.kill(pid, signal.SIGKILL)


def test_ensure_worker_with_nothing_queued_returns_none(runs):
    assert ensure_worker(runs) is None
    with JobQueue(runs) as q:
        assert not q.worker_status().alive


# -- the real trainer -------------------------------------------------------------------------------

def tiny_args(data: Path, **extra) -> dict:
    """A planned L1 job's settings on the tiny set."""
    from engine.queue import plan_jobs

    return plan_jobs(["L1"], train_data=str(data / "train"), val_data=str(data / "val"), batch_size=64,
                     early_stopping=0, seed=0, device="cpu", **extra).jobs[0][1]


@pytest.mark.slow
def test_trainer_exit_2_ends_failed_with_its_error(runs, data):
    with JobQueue(runs) as q:  # planned, then its data vanished: the trainer says so, exit 2
        job_id = q.add("L1", {**tiny_args(data), "train_data": "/no/such/dataset"})
        assert ensure_worker(runs) is not None
        job = wait_for(lambda: (j := q.get(job_id)).state not in ("queued", "running") and j, timeout=90)
    assert job.state == "failed" and job.exit_code == 2 and job.run_dir is None
    assert "/no/such/dataset does not exist" in job.error and "error" in job.error


@pytest.mark.slow
def test_cancel_a_running_job_leaves_a_loadable_last_pt(runs, data):
    from adapters.checkpoint import safe_load

    with JobQueue(runs) as q:
        job_id = q.add("L1", tiny_args(data, num_epochs=500))
        worker = subprocess.Popen([*ENGINE, "queue", "worker", "--runs", str(runs), "--exit-when-idle",
                                   "--poll-interval", "0.1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            run_dir = Path(wait_for(lambda: q.get(job_id).run_dir, timeout=60))
            wait_for(lambda: (run_dir / "last.pt").exists(), timeout=60)
            started = time.monotonic()
            assert main(["queue", "cancel", str(job_id), "--runs", str(runs)]) == 0
            job = wait_for(lambda: (j := q.get(job_id)).state != "running" and j, timeout=30)
            assert time.monotonic() - started < 30  # within the grace period
            assert worker.wait(timeout=30) == 0
        finally:
            if worker.poll() is None:
                worker.kill()
    assert (job.state, job.exit_code) == ("cancelled", 0)
    assert json.loads((run_dir / "status.json").read_text())["state"] == "cancelled"
    state = safe_load(run_dir / "last.pt")
    assert state["epoch"] >= 1 and state["state_dict"]


@pytest.mark.slow
def test_sigkill_of_worker_and_trainer_then_resume_in_the_same_run_dir(runs, data):
    with JobQueue(runs) as q:
        # enough epochs that the trainer cannot finish between its first last.pt and the kill
        job_id = q.add("L1", tiny_args(data, num_epochs=30))
        worker = subprocess.Popen([*ENGINE, "queue", "worker", "--runs", str(runs), "--poll-interval", "0.1"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        run_dir = Path(wait_for(lambda: q.get(job_id).run_dir, timeout=60))
        wait_for(lambda: (run_dir / "last.pt").exists(), timeout=60)
        trainer = q.get(job_id).pid
        worker.kill()
        worker.wait()
        os.killpg(trainer, signal.SIGKILL)
        wait_for(lambda: not pid_alive(trainer))
        assert q.get(job_id).state == "running"  # nobody has noticed yet

        again = engine("queue", "worker", "--runs", str(runs), "--exit-when-idle", "--poll-interval", "0.1")
        assert again.returncode == 0, again.stderr
        job = q.get(job_id)
        assert job.state == "interrupted"
        assert json.loads((run_dir / "status.json").read_text())["state"] == "interrupted"

        assert engine("queue", "retry", str(job_id), "--resume", "--runs", str(runs)).returncode == 0
        done = engine("queue", "worker", "--runs", str(runs), "--exit-when-idle", "--poll-interval", "0.1")
        assert done.returncode == 0, done.stderr
        job = q.get(job_id)
    assert (job.state, job.run_dir, job.attempts) == ("done", str(run_dir), 2)
    history = json.loads((run_dir / "history.json").read_text())
    assert history["epoch"] == list(range(1, 31))
    assert sorted(p.name for p in (runs / "L1").iterdir()) == [run_dir.name]  # no second run dir
    assert "--resume" in (runs / "logs" / f"job_{job_id}.log").read_text()


@pytest.mark.slow
def test_worker_stop_stops_the_live_worker(runs):
    started = engine("queue", "worker", "--detach", "--runs", str(runs), "--poll-interval", "0.2", "--json")
    assert started.returncode == 0, started.stderr
    pid = json.loads(started.stdout)["pid"]
    try:
        assert pid_alive(pid)
        stopped = engine("queue", "worker", "--stop", "--runs", str(runs))
        assert stopped.returncode == 0 and f"stopped the queue worker (pid {pid})" in stopped.stdout
        assert wait_for(lambda: not pid_alive(pid))
        with JobQueue(runs) as q:
            assert not q.worker_status().alive
        again = engine("queue", "worker", "--stop", "--runs", str(runs))
        assert again.returncode == 0 and "no worker is running" in again.stdout
    finally:
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
def test_a_twelve_job_sweep_runs_from_one_command_and_is_ranked(data, runs):
    added = engine("queue", "add", "--level", "L1", "--train_data", str(data / "train"), "--val_data",
                   str(data / "val"), "--runs", str(runs), "--num_epochs", "1", "--sweep", "learning_rate=1e-4,1e-3,1e-2",
                   "--sweep", "batch_size=32,64", "--sweep", "seed=0,1", "--json")
    assert added.returncode == 0, added.stderr
    jobs = json.loads(added.stdout)
    sweep = jobs[0]["sweep"]
    assert len(jobs) == 12 and {j["sweep"] for j in jobs} == {sweep}
    worker = engine("queue", "worker", "--runs", str(runs), "--exit-when-idle", "--poll-interval", "0.2", timeout=900)
    assert worker.returncode == 0, worker.stderr
    ranked = engine("runs", str(runs), "--sweep", sweep, "--json")
    result = json.loads(ranked.stdout)
    assert len(result["runs"]) == 12 and all(r["state"] == "done" and r["sweep"] == sweep for r in result["runs"])
    settings = [row["setting"] for row in result["settings"]]
    assert settings[0] == "learning_rate" and set(settings) == {"learning_rate", "batch_size", "seed"}
    # the app ranks the same sweep in its settings pane
    import asyncio

    async def view() -> list[str]:
        from tui.app import make_app

        app = make_app(runs, ROOT / "adapters.toml")
        async with app.run_test(size=(160, 48)) as pilot:
            while app.main.leaderboard.table.row_count < 12:
                await pilot.pause(0.05)
            app.main.leaderboard.select_path(result["runs"][0]["path"])
            await pilot.press("h")
            while not any(p.effects for p in app.main.runs_pane.query("#hparams-panel")):
                await pilot.pause(0.05)
            return [e.name for e in app.main.runs_pane.query_one("#hparams-panel").effects]
    assert asyncio.run(asyncio.wait_for(view(), 300)) == settings  # a guard against a hang

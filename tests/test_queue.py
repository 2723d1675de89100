"""The job queue with a stand-in trainer: the database, the worker's bookkeeping, cancel,
recovery, races between processes. Fast; the real trainer is in test_queue_e2e.py."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from support import ROOT, wait_for

from common.errors import UserInputError
from engine.queue import Job, JobQueue, Worker, ensure_worker, trainer_command
from engine.queue import storage as queue_db
from engine.queue.worker import acquire_lock, WorkerAlreadyRunning
from engine.process import pid_exists as pid_alive

# A stand-in for `adapter-engine train` that honours the same contract: it writes its run
# directory's path to $ADAPTER_ENGINE_RUN_DIR_FILE, keeps status.json, stops on SIGTERM with
# state cancelled and exit 0, and exits 1/2/3 for failed/input error/diverged.
FAKE_TRAINER = textwrap.dedent('''
    import json, os, signal, sys, time
    from pathlib import Path

    args = json.loads(sys.argv[1])
    runs = Path(sys.argv[2])
    resume = sys.argv[3] if len(sys.argv) > 3 else None
    mode = args.get("mode", "done")
    with open(runs / "executions.txt", "a") as fh:
        fh.write(f"{args.get('tag')}\\n")
    if mode == "exit2":
        print("loading...")
        print("adapter-engine train: error: dataset /nope does not exist; check the path", file=sys.stderr)
        sys.exit(2)
    stop = []
    if mode == "ignore_term":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    run_dir = Path(resume) if resume else runs / "FAKE" / f"FAKE_{os.getpid()}"
    run_dir.mkdir(parents=True, exist_ok=True)

    def status(state, error=None):
        tmp = run_dir / ".status.tmp"
        tmp.write_text(json.dumps({"state": state, "pid": os.getpid(), "error": error}))
        os.replace(tmp, run_dir / "status.json")

    status("running")
    if os.environ.get("ADAPTER_ENGINE_RUN_DIR_FILE"):
        Path(os.environ["ADAPTER_ENGINE_RUN_DIR_FILE"]).write_text(str(run_dir))
    (run_dir / "env.json").write_text(json.dumps({"cuda": os.environ.get("CUDA_VISIBLE_DEVICES"),
                                                  "resumed": resume is not None}))
    deadline = time.time() + float(args.get("sleep", 0))
    while time.time() < deadline and not stop:
        time.sleep(0.02)
    if stop:
        status("cancelled")
        sys.exit(0)
    if mode == "fail":
        status("failed", "RuntimeError: boom")
        sys.exit(1)
    if mode == "diverge":
        status("diverged", "non-finite loss at epoch 1 step 3")
        sys.exit(3)
    if mode == "crash":
        os.kill(os.getpid(), signal.SIGKILL)
    status("done")
''')

WORKER_SCRIPT = textwrap.dedent('''
    import json, sys
    from common.errors import UserInputError
    from engine.queue import Worker

    fake, runs, exit_when_idle = sys.argv[1], sys.argv[2], sys.argv[3] == "1"

    def command_for(job, runs_dir):
        argv = [sys.executable, fake, json.dumps(job.settings), str(runs_dir)]
        return argv + [job.run_dir] if job.resume and job.run_dir else argv

    try:
        sys.exit(Worker(runs, exit_when_idle=exit_when_idle, poll_interval=0.05, grace_s=5,
                        command_for=command_for).run())
    except UserInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
''')


@pytest.fixture
def fake(tmp_path):
    path = tmp_path / "fake_trainer.py"
    path.write_text(FAKE_TRAINER)
    return path


@pytest.fixture
def runs(tmp_path):
    return tmp_path / "runs"


@pytest.fixture
def q(runs):
    queue = JobQueue(runs)
    yield queue
    queue.close()


def fake_command(fake: Path):
    def command_for(job: Job, runs_dir: Path) -> list[str]:
        argv = [sys.executable, str(fake), json.dumps(job.settings), str(runs_dir)]
        return argv + [job.run_dir] if job.resume and job.run_dir else argv
    return command_for


def make_worker(runs, fake, **kw) -> Worker:
    kw.setdefault("exit_when_idle", True)
    kw.setdefault("poll_interval", 0.05)
    kw.setdefault("recover_every_s", 0.5)
    return Worker(runs, command_for=fake_command(fake), out=open(os.devnull, "w"), **kw)


def executions(runs: Path) -> list[str]:
    path = runs / "executions.txt"
    return path.read_text().split() if path.exists() else []


# -- the database ---------------------------------------------------------------------------------

def test_schema_is_versioned_and_in_wal_mode(q, runs):
    assert q.schema_version() == queue_db.SCHEMA_VERSION
    con = sqlite3.connect(runs / "queue.db")
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()
    JobQueue(runs).close()  # reopening migrates nothing and changes nothing
    assert q.schema_version() == queue_db.SCHEMA_VERSION


def test_an_older_database_is_migrated(runs, monkeypatch):
    with JobQueue(runs) as q:
        q.add("L1", {"num_epochs": 2})
    monkeypatch.setattr(queue_db, "MIGRATIONS", queue_db.MIGRATIONS + ["ALTER TABLE jobs ADD COLUMN note TEXT"])
    monkeypatch.setattr(queue_db, "SCHEMA_VERSION", len(queue_db.MIGRATIONS))
    with JobQueue(runs) as q:
        assert q.schema_version() == len(queue_db.MIGRATIONS)
        assert q.jobs()[0].settings == {"num_epochs": 2}
    con = sqlite3.connect(runs / "queue.db")
    assert "note" in [row[1] for row in con.execute("PRAGMA table_info(jobs)")]
    con.close()


def test_a_newer_database_is_refused(runs):
    JobQueue(runs).close()
    con = sqlite3.connect(runs / "queue.db")
    con.execute("PRAGMA user_version = 99")
    con.commit()
    con.close()
    with pytest.raises(UserInputError, match="schema version 99"):
        JobQueue(runs)


def test_order_front_move_remove_clear(q):
    a, b = q.add_many([("L1", {"tag": "a"}), ("L2", {"tag": "b"})])
    c = q.add("L3", {"tag": "c"})
    d, e = q.add_many([("L4", {"tag": "d"}), ("L5", {"tag": "e"})], front=True)
    assert [j.id for j in q.jobs()] == [d, e, a, b, c]
    assert [j.position for j in q.jobs()] == [1, 2, 3, 4, 5]
    assert q.get(a).position == 3
    q.move(c, 1)
    assert [j.id for j in q.jobs()] == [c, d, e, a, b]
    q.move(c, 5)
    assert [j.id for j in q.jobs()] == [d, e, a, b, c]
    with pytest.raises(UserInputError, match="out of range"):
        q.move(c, 6)
    q.remove([d, e])
    assert [j.id for j in q.jobs()] == [a, b, c]
    q.cancel([a])
    assert q.get(a).state == "cancelled" and q.get(a).position is None
    with pytest.raises(UserInputError, match="only queued jobs can be removed"):
        q.remove([a, b])
    assert q.get(b).state == "queued"  # nothing removed by a refused call
    with pytest.raises(UserInputError, match="no job 999"):
        q.get(999)
    assert q.clear_done() == 0
    assert q.clear(("cancelled",)) == 1
    assert [j.id for j in q.jobs()] == [b, c]


def test_a_job_claimed_while_the_list_is_read_is_listed_once(q, runs, monkeypatch):
    """The app's Queue tab crashed on a duplicate row key: the job list read queued, running and
    finished jobs in three statements, and a worker's claim between two of them listed one job
    as queued and as running. Here a second connection claims after every statement."""
    a, b = q.add_many([("L1", {"tag": "a"}), ("L2", {"tag": "b"})])
    other = JobQueue(runs)
    read = q._rows

    def read_then_claim(sql, params=()):
        rows = read(sql, params)
        if sql.startswith("SELECT * FROM jobs") and "WHERE id" not in sql:
            other.claim_next(worker_pid=os.getpid(), free_slots=1, total_slots=1)
        return rows

    monkeypatch.setattr(q, "_rows", read_then_claim)
    for _ in range(3):
        ids = [job.id for job in q.jobs()]
        assert sorted(ids) == [a, b], ids
    other.close()


@pytest.mark.parametrize("level, settings, message", [
    ("../etc", {}, "not a safe level key"),
    ("L1", {"num_epochs": float("nan")}, "not a plain JSON value"),
    ("L1", {"arch_overrides": {"num_heads": object()}}, "not a plain JSON value"),
    ("L1", ["num_epochs", 2], "must be a dict"),
])
def test_bad_jobs_are_refused(q, level, settings, message):
    with pytest.raises(UserInputError, match=message):
        q.add(level, settings)
    assert q.jobs() == []


def job_of(settings, **kw):
    return Job(id=1, level=kw.pop("level", "L4"), dataset="demo", settings=settings, state="running", position=None,
               run_dir=kw.pop("run_dir", None), pid=None, host=None, created_at="", started_at=None,
               finished_at=None, exit_code=None, error=None, config=str(ROOT / "adapters.toml"), **kw)


def test_the_trainer_gets_the_jobs_settings_filed_under_the_runs_directory(runs, tiny_data):
    from engine.queue.plan import plan_jobs

    planned = plan_jobs(["L4"], train_data=str(tiny_data / "train"), num_epochs=2, learning_rate=1e-4,
                        vlm_only=True).settings[0]
    argv = trainer_command(job_of(planned.as_dict()), runs)
    assert argv[:4] == [sys.executable, "-m", "engine", "train"] and argv[4] == "--settings"
    written = json.loads(Path(argv[5]).read_text())
    assert written == {**planned.as_dict(), "output_dir": str(runs), "layout": "levels"}
    assert trainer_command(job_of(planned.as_dict(), resume=True, run_dir="/r/L4/L4_x"), runs)[4:] == \
        ["--resume", "/r/L4/L4_x"]
    job = job_of(planned.as_dict(), nproc=2)
    assert trainer_command(job, runs)[1:5] == ["-m", "engine.launch", "--standalone", "--nproc_per_node=2"]


def test_a_job_queued_with_train_flags_is_planned_when_it_starts(runs, tiny_data):
    """Jobs queued before jobs stored settings hold flags: they still run, as planned now."""
    argv = trainer_command(job_of({"train_data": str(tiny_data / "train"), "num_epochs": 3}, level="L2"), runs)
    written = json.loads(Path(argv[5]).read_text())
    assert (written["level"], written["num_epochs"], written["batch_size"]) == ("L2", 3, 64)
    with pytest.raises(UserInputError, match="does not exist"):
        trainer_command(job_of({"train_data": "/no/such/data"}), runs)


def test_retry_rules(q, tmp_path):
    job_id = q.add("L1", {})
    with pytest.raises(UserInputError, match="only failed"):
        q.retry(job_id)
    claimed = q.claim_next(os.getpid(), 1, 1)
    run_dir = tmp_path / "runs" / "L1" / "L1_x"
    run_dir.mkdir(parents=True)
    q.set_run_dir(job_id, str(run_dir))
    q.finish(job_id, "interrupted", None, "gone")
    with pytest.raises(UserInputError, match="has no last.pt"):
        q.retry(job_id, resume=True)
    (run_dir / "last.pt").write_bytes(b"x")
    assert q.retry(job_id, resume=True) == claimed.id
    job = q.get(job_id)
    assert (job.state, job.resume, job.run_dir, job.error, job.position) == ("queued", True, str(run_dir), None, 1)
    q.claim_next(os.getpid(), 1, 1)
    q.finish(job_id, "done", 0, None)
    with pytest.raises(UserInputError, match="job 1 is done"):
        q.retry(job_id)


# -- races between processes ----------------------------------------------------------------------

def test_concurrent_adds_from_several_processes_lose_nothing(runs, q):
    code = ("import sys; from engine.queue import JobQueue; q = JobQueue(sys.argv[1]); "
            "[q.add('L1', {'tag': f'{sys.argv[2]}-{i}'}) for i in range(25)]")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(runs), str(p)]) for p in range(4)]
    assert all(p.wait(timeout=60) == 0 for p in procs)
    jobs = q.jobs()
    assert len(jobs) == 100
    assert sorted(j.settings["tag"] for j in jobs) == sorted(f"{p}-{i}" for p in range(4) for i in range(25))
    assert sorted(j.position for j in jobs) == list(range(1, 101))
    for p in range(4):  # each process's jobs keep their order
        mine = [int(j.settings["tag"].split("-")[1]) for j in jobs if j.settings["tag"].startswith(f"{p}-")]
        assert mine == sorted(mine)


def test_claims_from_racing_processes_take_each_job_once(runs, q):
    q.add_many([("L1", {"tag": str(i)}) for i in range(40)])
    code = ("import os, sys, json; from engine.queue import JobQueue; q = JobQueue(sys.argv[1]); got = []\n"
            "while (job := q.claim_next(os.getpid(), 1, 1)) is not None: got.append(job.id)\n"
            "print(json.dumps(got))")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(runs)], stdout=subprocess.PIPE, text=True)
             for _ in range(4)]
    claimed = [i for p in procs for i in json.loads(p.communicate(timeout=60)[0])]
    assert sorted(claimed) == [j.id for j in q.jobs() if j.state == "running"] == list(range(1, 41))


def test_two_workers_racing_over_eight_jobs_run_each_once(runs, q, fake, tmp_path):
    q.add_many([("L1", {"tag": f"job{i}", "sleep": 0.2}) for i in range(8)])
    script = tmp_path / "worker.py"
    script.write_text(WORKER_SCRIPT)
    procs = [subprocess.Popen([sys.executable, str(script), str(fake), str(runs), "1"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [p.communicate(timeout=90) + (p.returncode,) for p in procs]
    assert sorted(executions(runs)) == sorted(f"job{i}" for i in range(8))
    assert [j.state for j in q.jobs()] == ["done"] * 8
    refused = [r for r in results if r[2] == 2]
    for _, err, _ in refused:  # a second worker says why it did not start
        assert "already running" in err
    assert all(r[2] in (0, 2) for r in results)


def test_only_one_worker_holds_the_lock(runs, q):
    fd = acquire_lock(runs)
    try:
        q.heartbeat(os.getpid(), starting=True)
        with pytest.raises(WorkerAlreadyRunning, match=f"pid {os.getpid()}"):
            acquire_lock(runs, wait_s=0.2)
    finally:
        os.close(fd)
    os.close(acquire_lock(runs, wait_s=0.2))


def test_a_stopped_worker_gets_one_answer_alive_but_not_responding(runs, q, capsys):
    """SIGSTOP a process that holds the worker's row: status says so, --detach and a second
    worker refuse with that one line, and nothing is started beside it."""
    from engine.cli import main

    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        q.heartbeat(proc.pid, starting=True)
        os.kill(proc.pid, signal.SIGSTOP)
        with q._tx() as db:  # its last heartbeat, long ago: what a stopped worker leaves
            db.execute("UPDATE worker SET heartbeat = '2026-01-01T00:00:00+00:00'")
        status = q.worker_status()
        assert not status.alive and status.unresponsive and status.pid == proc.pid
        q.add("L1", {})
        assert main(["queue", "status", "--runs", str(runs)]) == 0
        out = capsys.readouterr().out
        assert "alive but not responding since its last heartbeat at 2026-01-01" in out and "not running" not in out
        assert main(["queue", "worker", "--detach", "--runs", str(runs)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"kill -CONT {proc.pid}" in err and "already running" not in err
        with pytest.raises(UserInputError, match="not responding"):
            ensure_worker(runs)
        assert q.worker_status().pid == proc.pid  # nothing started beside it
    finally:
        proc.kill()
        proc.wait()
    assert not q.worker_status().unresponsive  # gone: plainly not running


# -- the worker and the outcome of a job ----------------------------------------------------------

@pytest.mark.parametrize("mode, state, exit_code, error", [
    ("done", "done", 0, None),
    ("exit2", "failed", 2, "adapter-engine train: error: dataset /nope does not exist; check the path"),
    ("fail", "failed", 1, "RuntimeError: boom"),
    ("diverge", "diverged", 3, "non-finite loss at epoch 1 step 3"),
    ("crash", "interrupted", -9, "trainer killed by SIGKILL"),
])
def test_job_state_comes_from_status_json_and_exit_code(q, runs, fake, mode, state, exit_code, error):
    job_id = q.add("L1", {"mode": mode})
    assert make_worker(runs, fake).run() == 0
    job = q.get(job_id)
    assert (job.state, job.exit_code, job.error) == (state, exit_code, error)
    assert job.finished_at and job.started_at and job.pid and job.attempts == 1
    if mode == "exit2":
        assert job.run_dir is None
        assert "dataset /nope does not exist" in (runs / "logs" / f"job_{job_id}.log").read_text()
    else:
        assert job.run_dir and Path(job.run_dir).is_dir()
        assert json.loads((Path(job.run_dir) / "status.json").read_text())["state"] == state
    assert not q.worker_status().alive


def test_run_dir_is_recorded_while_the_job_runs(q, runs, fake):
    job_id = q.add("L1", {"sleep": 1.0})
    worker = make_worker(runs, fake)
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        run_dir = wait_for(lambda: q.get(job_id).run_dir)
        job = q.get(job_id)
        assert job.state == "running" and Path(run_dir).is_dir()
        status = wait_for(lambda: q.worker_status() if q.worker_status().alive else None)
        assert status.pid == os.getpid() and status.running == [job_id] and status.heartbeat
    finally:
        thread.join(timeout=20)
    assert q.get(job_id).state == "done"


def test_gpus_run_one_job_per_gpu(q, runs, fake):
    ids = q.add_many([("L1", {"sleep": 0.6}) for _ in range(3)])
    worker = make_worker(runs, fake, gpus="0,1")
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        wait_for(lambda: len(q.worker_status().running) == 2)
        assert sorted(q.get(i).gpus for i in ids[:2]) == ["0", "1"]
        assert q.get(ids[2]).state == "queued"
    finally:
        thread.join(timeout=20)
    jobs = [q.get(i) for i in ids]
    assert [j.state for j in jobs] == ["done"] * 3
    assert [json.loads((Path(j.run_dir) / "env.json").read_text())["cuda"] for j in jobs] == [j.gpus for j in jobs]


def test_a_job_wider_than_the_worker_fails_clearly(q, runs, fake):
    job_id = q.add("L1", {}, nproc=2)
    make_worker(runs, fake).run()
    job = q.get(job_id)
    assert job.state == "failed" and "asks for 2 GPUs" in job.error


def test_cancel_queued_and_running_jobs(q, runs, fake):
    running, queued = q.add_many([("L1", {"sleep": 30}), ("L2", {})])
    worker = make_worker(runs, fake, grace_s=10)
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        wait_for(lambda: q.get(running).run_dir)
        started = time.monotonic()
        q.cancel([queued, running])
        assert q.get(queued).state == "cancelled"
        wait_for(lambda: q.get(running).state != "running", timeout=10)
        assert time.monotonic() - started < 5  # SIGTERM, not the 30 s sleep or the grace period
    finally:
        thread.join(timeout=20)
    job = q.get(running)
    assert (job.state, job.exit_code) == ("cancelled", 0)
    assert json.loads((Path(job.run_dir) / "status.json").read_text())["state"] == "cancelled"
    assert executions(runs) == ["None"]  # the cancelled queued job never started


def test_cancel_escalates_to_sigkill_after_the_grace_period(q, runs, fake):
    job_id = q.add("L1", {"sleep": 60, "mode": "ignore_term"})
    worker = make_worker(runs, fake, grace_s=0.5)
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        wait_for(lambda: q.get(job_id).run_dir)
        q.cancel([job_id])
    finally:
        thread.join(timeout=20)
    job = q.get(job_id)
    assert (job.state, job.exit_code, job.error) == ("cancelled", -9, "killed after the grace period")
    assert json.loads((Path(job.run_dir) / "status.json").read_text())["state"] == "cancelled"


def test_a_job_left_running_by_a_dead_worker_becomes_interrupted(q, runs, fake):
    job_id = q.add("L1", {})
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    q.claim_next(dead.pid, 1, 1)
    q.set_started(job_id, dead.pid, None)
    run_dir = runs / "L1" / "L1_x"
    run_dir.mkdir(parents=True)
    (run_dir / "status.json").write_text(json.dumps({"state": "running", "pid": dead.pid}))
    q.set_run_dir(job_id, str(run_dir))
    q.add("L2", {})
    make_worker(runs, fake).run()  # recovery at start, then it runs the rest
    job = q.get(job_id)
    assert job.state == "interrupted" and "gone" in job.error
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "interrupted" and status["updated_at"]
    assert [j.state for j in q.jobs()] == ["done", "interrupted"]


def test_a_trainer_that_outlived_its_worker_is_adopted(q, runs, fake):
    job_id = q.add("L1", {"sleep": 1.0})
    env = dict(os.environ, ADAPTER_ENGINE_RUN_DIR_FILE=str(runs / "orphan.rundir"))
    orphan = subprocess.Popen([sys.executable, str(fake), json.dumps({"sleep": 1.0}), str(runs)],
                              start_new_session=True, env=env)
    q.claim_next(999_999_999, 1, 1)
    q.set_started(job_id, orphan.pid, None)
    q.set_run_dir(job_id, wait_for(lambda: (runs / "orphan.rundir").exists() and (runs / "orphan.rundir").read_text()))
    threading.Thread(target=orphan.wait, daemon=True).start()  # init would reap it in real life
    make_worker(runs, fake).run()  # waits for the adopted job before it leaves
    job = q.get(job_id)
    assert job.state == "done" and job.exit_code is None
    assert not pid_alive(orphan.pid) or orphan.poll() is not None


def test_retry_with_resume_passes_the_run_dir(q, runs, fake):
    job_id = q.add("L1", {"mode": "fail"})
    make_worker(runs, fake).run()
    first = q.get(job_id)
    assert first.state == "failed"
    (Path(first.run_dir) / "last.pt").write_bytes(b"x")
    q.retry(job_id, resume=True)
    with q._tx() as db:  # the retried job succeeds this time
        db.execute("UPDATE jobs SET args = ? WHERE id = ?", (json.dumps({"mode": "done"}), job_id))
    make_worker(runs, fake).run()
    job = q.get(job_id)
    assert (job.state, job.run_dir, job.attempts) == ("done", first.run_dir, 2)
    assert json.loads((Path(job.run_dir) / "env.json").read_text())["resumed"] is True


def test_worker_sigterm_cancels_its_jobs_and_exits(q, runs, fake, tmp_path):
    job_id = q.add("L1", {"sleep": 60})
    script = tmp_path / "worker.py"
    script.write_text(WORKER_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), str(fake), str(runs), "0"])
    try:
        wait_for(lambda: q.get(job_id).run_dir)
        trainer = q.get(job_id).pid
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    job = q.get(job_id)
    assert job.state == "cancelled" and not pid_alive(trainer)
    assert not q.worker_status().alive


def test_cancel_without_a_worker_signals_the_trainer_itself(q, runs, fake):
    job_id = q.add("L1", {"sleep": 60})
    env = dict(os.environ, ADAPTER_ENGINE_RUN_DIR_FILE=str(runs / "orphan.rundir"))
    orphan = subprocess.Popen([sys.executable, str(fake), json.dumps({"sleep": 60}), str(runs)],
                              start_new_session=True, env=env)
    try:
        q.claim_next(999_999_999, 1, 1)
        q.set_started(job_id, orphan.pid, None)
        run_dir = wait_for(lambda: (runs / "orphan.rundir").exists() and (runs / "orphan.rundir").read_text())
        q.set_run_dir(job_id, run_dir)
        threading.Thread(target=orphan.wait, daemon=True).start()  # init would reap it in real life
        q.cancel([job_id], wait=True, grace_s=10)
    finally:
        if orphan.poll() is None:
            orphan.kill()
    job = q.get(job_id)
    assert job.state == "cancelled" and orphan.returncode == 0
    assert json.loads((Path(run_dir) / "status.json").read_text())["state"] == "cancelled"

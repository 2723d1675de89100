"""The standing hostile suite: bad input at every entry point gets one line on stderr, exit
code 2, no traceback and nothing written (the tree is compared before and after); injected
faults lose nothing and run nothing twice. docs/RELIABILITY.md gives the totals."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from support import ROOT, make_synth, run_cli, wait_for
from engine.cli import main

ROOT_USER = hasattr(os, "geteuid") and os.geteuid() == 0  # root ignores permissions


def tree(root: Path) -> dict[str, tuple]:
    """Everything under root: kind, size, mode and modification time of each entry."""
    entries = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        entries[str(path.relative_to(root))] = (st.st_mode, st.st_size if path.is_file() else 0, st.st_mtime_ns)
    return entries


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Data, runs and traps every bad-input case uses, built once."""
    root = tmp_path_factory.mktemp("world")
    make_synth(root / "data", samples=96, val_samples=16, hidden_dim=16, max_seq=6, chunk_size=32, lm_head=True)
    (root / "a_file").write_text("not a directory")
    empty = make_synth(root / "empty_src", samples=4, val_samples=4, hidden_dim=16, max_seq=6, chunk_size=4)
    index = json.loads((empty / "train" / "index.json").read_text())
    index["chunks"][0]["n_samples"], index["total_samples"] = 0, 0  # one chunk, with no sample in it
    (empty / "train" / "index.json").write_text(json.dumps(index))
    torch.save({"egpt_hidden": torch.zeros(0, 6, 16), "vl_hidden": torch.zeros(0, 6, 16),
                "seq_lens": torch.zeros(0, dtype=torch.long)}, empty / "train" / "chunks" / "chunk_000000.pt")
    torch.save({"egpt_hidden": torch.zeros(0, 6, 16), "vl_hidden": torch.zeros(0, 6, 16),
                "seq_lens": torch.zeros(0, dtype=torch.long)}, root / "empty.pt")
    for name, change in [("bad_hidden", lambda c: {**c, "egpt_hidden": c["egpt_hidden"][..., :8],
                                                      "vl_hidden": c["vl_hidden"][..., :8]}),
                         ("bad_lens", lambda c: {**c, "seq_lens": c["seq_lens"] * 0 + 99}),
                         ("bad_count", lambda c: {k: v[:5] for k, v in c.items() if k in ("egpt_hidden", "vl_hidden", "seq_lens")})]:
        copy = make_synth(root / name, samples=96, val_samples=16, hidden_dim=16, max_seq=6, chunk_size=32)
        chunk_path = copy / "train" / "chunks" / "chunk_000002.pt"  # the third chunk, not the first
        torch.save(change(torch.load(chunk_path, weights_only=True)), chunk_path)
    big_config = root / "inf_lr.toml"
    big_config.write_text((ROOT / "adapters.toml").read_text().replace("learning_rate = 1e-3", "learning_rate = inf", 1))
    for section, value in (("presets", "3"), ("datasets", '"x"')):  # top-level keys: before any table
        (root / f"{section}.toml").write_text(f'{section} = {value}\n[levels.L1]\nclass = "BottleneckAdapter"\n')
    (root / "notdb").mkdir()
    (root / "notdb" / "queue.db").write_text("this is not SQLite")
    ckpts = root / "ckpts"
    ckpts.mkdir()
    from adapters.checkpoint import save_adapter
    from adapters.registry import build_adapter, load_registry

    model = build_adapter(load_registry(ROOT / "adapters.toml").level("L1"), 16, {"bottleneck_dim": 4})
    save_adapter(model, ckpts / "good.pt")
    good = torch.load(ckpts / "good.pt", weights_only=True)
    torch.save({k: v for k, v in good.items() if k != "init_kwargs"}, ckpts / "missing.pt")
    torch.save({**good, "init_kwargs": {**good["init_kwargs"], "colour": 3}}, ckpts / "kwargs.pt")
    torch.save({**good, "state_dict": {}}, ckpts / "empty_state.pt")
    return root


def bad_inputs(w: Path) -> list[tuple[list, str]]:
    d = w / "data"
    train = ["train", "--train_data", d / "train", "--val_data", d / "val", "--level", "L1", "--bottleneck_dim", 4,
             "--num_epochs", 1]
    return [
        # data pack must never delete what it did not create
        (["data", "pack", d / "train", w / "data"], "overlap"),
        (["data", "pack", d / "train", d / "train"], "overlap"),
        (["data", "pack", d / "train", d / "train" / "inside"], "overlap"),
        (["data", "pack", d / "train", w / "a_file", "--force"], "is a file"),
        (["data", "pack", d / "train", w, "--force"], "overlap"),
        (["data", "pack", d / "train", w / "ckpts", "--force"], "not a dataset"),
        # every chunk's header, not only the first
        (["train", "--train_data", w / "bad_hidden" / "train", "--level", "L1"], "hidden size 8 differs"),
        (["train", "--train_data", w / "bad_lens" / "train", "--level", "L1"], "seq_lens must lie in"),
        (["train", "--train_data", w / "bad_count" / "train", "--level", "L1"], "holds 5 samples but index.json says 32"),
        (["data", "inspect", w / "bad_hidden" / "train"], "hidden size 8 differs"),
        # no samples at all
        (["train", "--train_data", w / "empty_src" / "train", "--level", "L1"], "holds no samples"),
        (["train", "--train_data", w / "empty.pt", "--level", "L1"], "holds no samples"),
        (["data", "inspect", w / "empty.pt"], "holds no samples"),
        (["data", "pack", w / "empty.pt", w / "packed_empty"], "holds no samples"),
        (["eval", w / "ckpts" / "good.pt", "--data", w / "empty.pt"], "holds no samples"),
        (["train", "--train_data", d / "train", "--val_data", w / "empty.pt", "--level", "L1"], "holds no samples"),
        # where runs go
        ([*train, "--output_dir", w / "a_file"], "is a file"),
        ([*train, "--output_dir", w / "a_file" / "below"], "lies under"),
        # numbers
        ([*train, "--seed", -1], "--seed must be between 0 and"),
        ([*train, "--seed", 2 ** 63], "--seed must be between 0 and"),
        ([*train, "--learning_rate", "inf"], "--learning_rate must be a finite number"),
        ([*train, "--learning_rate", "nan"], "--learning_rate must be a finite number"),
        ([*train, "--val_split", "1.5"], "--val_split must be between 0 and 1"),
        (["levels", "--config", w / "inf_lr.toml"], "learning_rate must be a finite number"),
        (["train", "--train_data", d / "train", "--level", "L4", "--num_heads", 4, "--ffn_dim", 20_000_000_000],
         "GiB to train"),
        (["levels", "--hidden_dim", 10 ** 10], "--hidden_dim must be between 1 and"),
        (["synth", w / "huge", "--hidden_dim", 200_000], "GiB of memory"),
        # eval
        (["eval", w / "ckpts" / "good.pt", "--data", d / "val", "--device", "mps"], "--device must be auto, cpu"),
        *([(["eval", w / "ckpts" / "good.pt", "--data", d / "val", "--device", "cuda"], "none is available")]
          if not torch.cuda.is_available() else []),
        (["eval", w / "ckpts" / "missing.pt", "--data", d / "val"], "missing 'init_kwargs'"),
        (["eval", w / "ckpts" / "kwargs.pt", "--data", d / "val"], "does not rebuild its adapter"),
        (["eval", w / "ckpts" / "empty_state.pt", "--data", d / "val"], "does not rebuild its adapter"),
        (["eval", w / "ckpts" / "good.pt", "--data", d / "val", "--draft_cost", "inf"], "--draft_cost must be a finite"),
        # configuration and the queue database
        (["levels", "--config", w / "presets.toml"], "[presets]"),
        (["levels", "--config", w / "datasets.toml"], "[datasets]"),
        (["queue", "ls", "--runs", w / "notdb"], "is not a queue database"),
        (["queue", "status", "--runs", w / "notdb"], "is not a queue database"),
        # synth
        (["synth", w / "a_file"], "is a file"),
        (["synth", w / "a_file" / "x"], "lies under"),
        (["synth", w / "data"], "already exists"),
    ]


def test_every_bad_input_is_one_line_exit_2_and_writes_nothing(world, capsys):
    failures = []
    cases = bad_inputs(world)
    for argv, words in cases:
        before = tree(world)
        code = main([str(a) for a in argv])
        err = capsys.readouterr().err.strip()
        problems = []
        if code != 2:
            problems.append(f"exit {code}")
        if len(err.splitlines()) != 1 or words not in err:
            problems.append(f"stderr {err!r}")
        if tree(world) != before:
            changed = set(tree(world).items()) ^ set(before.items())
            problems.append(f"changed {sorted({k for k, _ in changed})[:3]}")
        if problems:
            failures.append(f"{' '.join(map(str, argv))}: {'; '.join(problems)}")
    assert not failures, "\n".join(failures)
    assert len(cases) >= 39  # 40 where no CUDA device is present


def test_the_real_command_line_prints_no_traceback(world):
    for argv, words in [(["data", "pack", world / "data" / "train", world / "data"], "overlap"),
                        (["queue", "ls", "--runs", world / "notdb"], "not a queue database")]:
        out = run_cli(*argv)
        assert out.returncode == 2 and words in out.stderr and "Traceback" not in out.stderr


@pytest.mark.skipif(ROOT_USER, reason="root writes into read-only directories")
def test_read_only_places_are_one_line(world, tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    d = world / "data"
    try:
        for argv, words in [(["train", "--train_data", d / "train", "--val_data", d / "val", "--level", "L1",
                              "--output_dir", locked / "runs"], "permission denied"),
                            (["synth", locked / "demo"], "permission denied"),
                            (["data", "pack", d / "train", locked / "packed"], "permission denied")]:
            assert main([str(a) for a in argv]) == 2
            assert words in capsys.readouterr().err
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o755)


def test_pack_force_replaces_only_a_dataset(world, tmp_path):
    from engine.data.pack import pack

    target = tmp_path / "packed"
    pack(world / "data" / "train", target)
    (tmp_path / "keep.txt").write_text("mine")
    pack(world / "data" / "train", target, force=True)  # a dataset: replaced
    assert (target / "index.json").is_file() and (tmp_path / "keep.txt").read_text() == "mine"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_synth_on_a_full_disk_removes_what_it_created(tmp_path, monkeypatch, capsys):
    from engine.data import synth

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(synth, "_write_split", full)
    assert main(["synth", str(tmp_path / "new" / "demo"), "--samples", "8", "--val_samples", "4"]) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "new").exists()


def test_a_full_disk_under_queue_db_is_said_at_once(tmp_path):
    from common.errors import UserInputError
    from engine.queue import JobQueue

    with JobQueue(tmp_path) as q:
        q._db.execute("PRAGMA max_page_count = 2")  # as a full disk: SQLITE_FULL on the next growth
        added = 0
        with pytest.raises(UserInputError, match="the disk is full"):
            for _ in range(200):
                q.add("L1", {"note": "x" * 4000})
                added += 1
        assert added < 200  # said at the first growth that does not fit, not retried


@pytest.fixture
def small_tmpfs(tmp_path):
    """A tmpfs of a size the test picks (root mounts it; skipped where mounting is not allowed)."""
    mounted = []

    def mount(size_bytes: int) -> Path:
        point = tmp_path / f"tmpfs{len(mounted)}"
        point.mkdir()
        size = -(-size_bytes // 4096) * 4096
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounted.append(point)
        return point
    yield mount
    for point in mounted:
        subprocess.run(["umount", str(point)], capture_output=True)


def test_a_full_disk_while_checkpoints_are_saved_is_one_line_and_every_file_agrees(tmp_path, tiny_data,
                                                                                   small_tmpfs):
    """The disk fills while epoch 2 is saved: one line on stderr naming the file and the space
    left, no traceback; status.json says so, and status, history, best_model.pt and last.pt all
    stop at epoch 1."""
    argv = ["--train_data", tiny_data / "train", "--val_data", tiny_data / "val", "--level", "L4",
            "--num_heads", "4", "--ffn_dim", "512", "--batch_size", "64", "--no_eval"]
    sized = run_cli("train", *argv, "--num_epochs", "1", "--output_dir", tmp_path / "sized")
    assert sized.returncode == 0, sized.stderr
    (probe,) = (tmp_path / "sized").glob("L4/*")
    one_epoch = sum(p.stat().st_size for p in probe.iterdir()) - (probe / "final_model.pt").stat().st_size
    checkpoints = (probe / "last.pt").stat().st_size + (probe / "best_model.pt").stat().st_size
    disk = small_tmpfs(one_epoch + checkpoints // 2 + 64 * 1024)  # epoch 1 fits, epoch 2's new copies do not
    out = run_cli("train", *argv, "--num_epochs", "3", "--learning_rate", "1e-2", "--output_dir", disk)
    assert out.returncode != 0 and "Traceback" not in out.stderr, out.stderr
    errors = [line for line in out.stderr.splitlines() if "no space left" in line]
    assert len(errors) == 1 and "MiB free" in errors[0], out.stderr
    (run,) = disk.glob("L4/*")
    status = json.loads((run / "status.json").read_text())
    history = json.loads((run / "history.json").read_text())
    assert status["state"] == "failed" and "no space left on the device writing" in status["error"]
    last = torch.load(run / "last.pt", weights_only=True)
    best = torch.load(run / "best_model.pt", weights_only=True)
    assert status["epoch"] == len(history["val_loss"]) == last["epoch"] == best["epoch"] == 1
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]


def test_nested_json_is_refused_not_crashed(tmp_path):
    from common.fileio import ReadError, read_json
    from engine.rundir.summary import summarize

    run = tmp_path / "L1" / "L1_20260101_000000"
    run.mkdir(parents=True)
    (run / "status.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ReadError, match="nested too deeply"):
        read_json(run / "status.json")
    assert "nested too deeply" in summarize(run).error


# -- non-regular files ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["history.json", "status.json", "config.json", "eval.json", "train.log"])
def test_a_fifo_never_blocks_a_reader(tmp_path, name):
    """Every reader in its own process, with a timeout: a blocked open would hang it."""
    run = tmp_path / "runs" / "L1" / "L1_20260101_000000"
    run.mkdir(parents=True)
    (run / "history.json").write_text(json.dumps({"val_loss": [1.0]}))
    if (run / name).exists():
        (run / name).unlink()
    os.mkfifo(run / name)
    code = f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
from engine.rundir.summary import load_runs
from engine.rundir.files import read_tail
from engine.rundir.run import read_run
rows = load_runs({str(tmp_path / 'runs')!r})
data = read_run({str(run)!r})
read_tail(__import__('pathlib').Path({str(run / 'train.log')!r}), 0)
print(rows[0].error or '', '|', data.problems)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    if name != "train.log":
        assert "not a regular file" in out.stdout


def test_a_fifo_config_makes_resume_refuse_at_once(tmp_path):
    run = tmp_path / "L1_20260101_000000"
    run.mkdir()
    os.mkfifo(run / "config.json")
    out = run_cli("train", "--resume", run, timeout=60)
    assert out.returncode == 2 and "not a regular file" in out.stderr


# -- resume ----------------------------------------------------------------------------------------

def a_finished_run(tiny_data, root: Path, *extra) -> Path:
    assert main(["train", "--train_data", str(tiny_data / "train"), "--val_data", str(tiny_data / "val"),
                 "--output_dir", str(root), "--level", "L1", "--bottleneck_dim", "4", "--num_epochs", "1",
                 "--no_eval", *map(str, extra)]) == 0
    return next(root.glob("L1/*"))


@pytest.mark.parametrize("damage, words", [
    (None, "the run is done"),
    ("last.pt", "last.pt"),
    ("config.json", "not a resumable run directory"),
])
def test_a_refused_resume_leaves_the_run_byte_for_byte(tmp_path, tiny_data, capsys, damage, words):
    run = a_finished_run(tiny_data, tmp_path)
    if damage:
        (run / damage).write_bytes(b"garbage")
        status = json.loads((run / "status.json").read_text())
        (run / "status.json").write_text(json.dumps({**status, "state": "interrupted"}))
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    stat_before = tree(run)
    assert main(["train", "--resume", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and len(err.splitlines()) == 1
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before and tree(run) == stat_before


@pytest.mark.slow
def test_a_second_trainer_on_a_live_run_is_refused(tmp_path, tiny_data):
    proc = subprocess.Popen([sys.executable, "-m", "engine", "train", "--train_data", str(tiny_data / "train"),
                             "--val_data", str(tiny_data / "val"), "--level", "L2", "--bottleneck_dim", "16",
                             "--batch_size", "4", "--num_epochs", "200", "--output_dir", str(tmp_path)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        last = wait_for(lambda: next(tmp_path.glob("L2/*/last.pt"), None), timeout=120)
        out = run_cli("train", "--resume", last.parent, timeout=120)
        assert out.returncode == 2 and "is being trained by pid" in out.stderr, out.stderr
        assert proc.poll() is None  # the first trainer goes on, alone
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    assert json.loads((last.parent / "status.json").read_text())["state"] == "cancelled"


# -- signals at each phase -----------------------------------------------------------------------

def test_sigterm_before_the_run_directory_exists_writes_nothing(tmp_path, tiny_data, monkeypatch):
    from engine import train as train_module

    real = train_module.prepare

    def prepare_then_signal(*args, **kwargs):
        inputs = real(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)
        return inputs

    monkeypatch.setattr(train_module, "prepare", prepare_then_signal)
    assert main(["train", "--train_data", str(tiny_data / "train"), "--val_data", str(tiny_data / "val"),
                 "--output_dir", str(tmp_path / "runs"), "--level", "L1"]) == 0
    assert not (tmp_path / "runs").exists()


def test_sigterm_right_after_the_run_directory_exists_records_cancelled(tmp_path, tiny_data, monkeypatch):
    from engine import train as train_module

    real = train_module.Trainer.__init__

    def init_then_signal(self, *args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # config.json and status.json are there already
        real(self, *args, **kwargs)

    monkeypatch.setattr(train_module.Trainer, "__init__", init_then_signal)
    assert main(["train", "--train_data", str(tiny_data / "train"), "--val_data", str(tiny_data / "val"),
                 "--output_dir", str(tmp_path), "--level", "L1", "--bottleneck_dim", "4"]) == 0
    run = next(tmp_path.glob("L1/*"))
    assert json.loads((run / "status.json").read_text())["state"] == "cancelled"
    assert "no epoch had finished, so there is no last.pt" in (run / "train.log").read_text()


def test_logs_claim_only_files_that_exist(tmp_path, tiny_data):
    assert main(["train", "--train_data", str(tiny_data / "train"), "--val_data", str(tiny_data / "val"),
                 "--output_dir", str(tmp_path), "--level", "L1", "--learning_rate", "1e30", "--num_epochs", "2"]) == 3
    run = next(tmp_path.glob("L1/*"))
    log = (run / "train.log").read_text()
    assert (run / "best_model.pt").exists() == ("best_model.pt is kept" in log)
    assert ("no epoch had finished: no checkpoint" in log) == (not (run / "best_model.pt").exists())


# -- the queue: pids reused, workers killed -------------------------------------------------------

def test_a_reused_pid_is_never_signalled(tmp_path):
    from engine.queue import JobQueue

    with JobQueue(tmp_path) as q:
        job_id = q.add("L1", {"num_epochs": 1})
        q.claim_next(os.getpid(), 1, 1)
        q.set_started(job_id, os.getpid(), None)  # this test's pid, as a reused one would be...
        q._db.execute("UPDATE jobs SET pid_start = 'another-boot:1' WHERE id = ?", (job_id,))  # ...not that process
        q.cancel([job_id])  # would SIGTERM this very process if the pid were trusted
        assert q.get(job_id).state == "cancelled"
        assert q.orphans() == []


def test_a_job_whose_worker_died_ends_as_its_run_ended(tmp_path):
    from common.fileio import write_json
    from engine.queue import JobQueue

    run = tmp_path / "L1" / "L1_20260101_000000"
    run.mkdir(parents=True)
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    gone = int(finished.stdout)
    write_json(run / "status.json", {"state": "done", "pid": gone, "error": None})
    with JobQueue(tmp_path) as q:
        job_id = q.add("L1", {"num_epochs": 1})
        q.claim_next(gone, 1, 1)
        q.set_started(job_id, gone, None)
        q.set_run_dir(job_id, str(run))
        assert q.recover() == [job_id]
        job = q.get(job_id)
        assert job.state == "done" and job.error is None
        with pytest.raises(Exception, match="only failed, cancelled, interrupted, diverged jobs can be retried"):
            q.retry(job_id)
    assert json.loads((run / "status.json").read_text())["state"] == "done"


# -- permissions follow the umask ---------------------------------------------------------------

def test_written_files_and_directories_follow_the_umask(tmp_path):
    from engine.data.synth import SynthConfig, synthesize
    from common.fileio import write_json

    old = os.umask(0o002)
    try:
        from common import fileio

        fileio.current_umask.cache_clear()
        write_json(tmp_path / "x.json", {})
        synthesize(tmp_path / "demo", SynthConfig(samples=4, val_samples=4, hidden_dim=8, max_seq=4, chunk_size=4))
        assert (tmp_path / "x.json").stat().st_mode & 0o777 == 0o664
        assert (tmp_path / "demo" / "train").stat().st_mode & 0o777 == 0o775
        assert (tmp_path / "demo" / "train" / "index.json").stat().st_mode & 0o777 == 0o664
    finally:
        os.umask(old)
        fileio.current_umask.cache_clear()


# -- any bytes as a run's JSON ---------------------------------------------------------------------

try:
    from hypothesis import HealthCheck, given, settings, strategies as st
except ImportError:  # the GPU machine has no hypothesis: these are for the CPU suite
    given = None

if given is not None:
    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(history=st.one_of(st.binary(max_size=300), st.recursive(
               st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=5),
               lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
               max_leaves=20).map(lambda v: json.dumps(v).encode())),
           status=st.binary(max_size=200))
    def test_any_bytes_as_history_or_status_never_crash_a_reader(tmp_path, history, status):
        from engine.rundir.summary import summarize
        from engine.rundir.run import read_run

        run = tmp_path / "L1" / "L1_20260101_000000"
        run.mkdir(parents=True, exist_ok=True)
        (run / "history.json").write_bytes(history)
        (run / "status.json").write_bytes(status)
        row = summarize(run)
        assert isinstance(row.state, str)
        read_run(run)


# -- bounded work: a sweep is counted before anything is built -------------------------------
@pytest.mark.parametrize("words, said", [
    ([f"--sweep={name}={','.join(str(v) for v in values)}" for name, values in (
        ("learning_rate", [1e-5 * (k + 1) for k in range(10)]), ("batch_size", range(8, 18)),
        ("seed", range(10)), ("num_epochs", range(1, 11)), ("early_stopping", range(1, 11)),
        ("bottleneck_dim", range(8, 18)))], "the --sweep grid of 1,000,000 points makes 1,000,000 jobs"),
    (["--sweep", "learning_rate=1e-5:1e-2", "--sweep-random", "100000000"], "--sweep-random 100,000,000 makes"),
    (["--sweep", "learning_rate=1e-5:1e-2", "--sweep-random", "0"], "--sweep-random must be >= 1"),
    (["--sweep", "learning_rate=1e-5:1e-2", "--sweep-optimize", "val_loss", "--trials", "0"],
     "--trials and --parallel must be >= 1"),
    (["--sweep", "learning_rate=1e-5:1e-2", "--sweep-optimize", "val_loss", "--trials", "100000"],
     "--trials 100,000 makes 100,000 jobs"),
    (["--sweep", "seed=0,1,2", "--max-jobs", "2"], "above the limit of 2"),
], ids=["grid-1e6", "random-1e8", "random-0", "trials-0", "trials-1e5", "max-jobs"])
def test_a_sweep_too_large_is_refused_before_it_is_built(tmp_path, capsys, monkeypatch, words, said):
    from engine.queue import plan

    data = make_synth(tmp_path / "data", samples=8, val_samples=4, hidden_dim=16, max_seq=4, chunk_size=8)
    planned = []
    real = plan.plan_jobs
    monkeypatch.setattr(plan, "plan_jobs", lambda *a, **k: planned.append(1) or real(*a, **k))
    runs = tmp_path / "runs"
    assert main(["queue", "add", "--level", "L2", "--train_data", str(data / "train"), "--runs", str(runs),
                 *words]) == 2
    err = capsys.readouterr().err.strip()
    assert said in err and len(err.splitlines()) == 1, err
    assert len(planned) <= 1 and not (runs / "queue.db").exists()

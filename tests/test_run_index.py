"""The run index (RUNS/.index.db): the same rows as reading every file, from the index where
the files are unchanged, never stale, never in the way (issue 27)."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading

import pytest

from common.fileio import write_json
from engine.rundir import index as run_index
from engine.rundir.index import RunIndex, load_indexed
from engine.rundir.layout import RUN_INDEX
from engine.rundir.summary import load_runs
from support import ROOT
from engine.bench.runs import make_runs, synthetic_history as _history


def rows_of(rows):
    return sorted((r.as_dict() for r in rows), key=lambda row: row["path"])


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "runs"
    root.mkdir()
    paths = make_runs(root, 12)
    seed_run = root / "L2_20240101_000000"  # the reference's layout: config and history, no status
    seed_run.mkdir()
    write_json(seed_run / "config.json", {"adapter": {"level": 2, "params": 5}, "training": {"epochs": 3}})
    write_json(seed_run / "history.json", _history(3))
    (paths[1] / "history.json").write_text("{not json")  # a broken run: its row says so, from the index too
    write_json(paths[2] / "eval.json", {"speedup": 1.7, "prefix_length": {"0.9": {"mean": 2.5}}})
    write_json(paths[3] / "meta.json", {"label": "mine", "tags": ["best"]})
    return root


def count_reads(monkeypatch):
    reads = []
    real = run_index.summarize
    monkeypatch.setattr(run_index, "summarize", lambda path: reads.append(path) or real(path))
    return reads


def test_the_index_gives_the_rows_the_files_give_and_reads_no_file_the_second_time(runs, monkeypatch):
    reads = count_reads(monkeypatch)
    first = load_indexed(runs)
    assert len(reads) == 13 and (runs / RUN_INDEX).is_file()
    reads.clear()
    second = load_indexed(runs)
    assert reads == []
    assert rows_of(first) == rows_of(second) == rows_of(load_runs(runs))
    broken = next(r for r in second if r.run.endswith("000001"))
    assert broken.error and "history.json" in broken.error


@pytest.mark.parametrize("change", ["replace", "in_place", "new_file", "removed"])
def test_any_change_to_a_runs_files_is_seen_at_once(runs, monkeypatch, change):
    load_indexed(runs)
    reads = count_reads(monkeypatch)
    run = sorted(runs.glob("L1/*"))[0]
    if change == "replace":      # an atomic write: a new inode
        write_json(run / "history.json", _history(7))
    elif change == "in_place":   # the reference's trainer rewrites its files in place
        with open(run / "history.json", "w") as handle:
            json.dump(_history(8), handle)
    elif change == "new_file":
        write_json(run / "meta.json", {"label": "new label"})
    else:
        (run / "status.json").unlink()
    rows = {r.path: r for r in load_indexed(runs)}
    assert reads == [str(run)]
    assert rows_of(rows.values()) == rows_of(load_runs(runs))
    expected = {"replace": ("epochs_done", 7), "in_place": ("epochs_done", 8), "new_file": ("label", "new label"),
                "removed": ("seed_format", True)}[change]
    assert getattr(rows[str(run)], expected[0]) == expected[1]


def test_live_runs_are_read_from_their_files_every_time(runs, monkeypatch):
    run = sorted(runs.glob("L1/*"))[0]
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    write_json(run / "status.json", {"state": "running", "pid": os.getpid(), "host": socket.gethostname(),
                                     "epoch": 1, "num_epochs": 5})
    assert {r.path: r for r in load_indexed(runs)}[str(run)].state == "running"
    reads = count_reads(monkeypatch)
    load_indexed(runs)
    assert reads == [str(run)]  # not stored: its state is the clock's and the process's
    # the trainer dies without a word: the same file now means interrupted
    write_json(run / "status.json", {"state": "running", "pid": int(dead.stdout), "host": socket.gethostname(),
                                     "epoch": 1, "num_epochs": 5})
    assert {r.path: r for r in load_indexed(runs)}[str(run)].state == "interrupted"
    with sqlite3.connect(runs / RUN_INDEX) as db:
        stored = {path for (path,) in db.execute("SELECT path FROM runs")}
    assert os.path.relpath(run, runs) not in stored and len(stored) == 12


def test_a_deleted_run_leaves_the_index_and_a_deleted_index_is_rebuilt(runs):
    import shutil

    load_indexed(runs)
    gone = sorted(runs.glob("L2/*"))[0]
    shutil.rmtree(gone)
    assert str(gone) not in {r.path for r in load_indexed(runs)}
    with sqlite3.connect(runs / RUN_INDEX) as db:
        assert os.path.relpath(gone, runs) not in {p for (p,) in db.execute("SELECT path FROM runs")}
    (runs / RUN_INDEX).unlink()
    for suffix in ("-wal", "-shm"):
        (runs / (RUN_INDEX + suffix)).unlink(missing_ok=True)
    assert rows_of(load_indexed(runs)) == rows_of(load_runs(runs)) and (runs / RUN_INDEX).is_file()


@pytest.mark.parametrize("damage, why", [
    (lambda path: path.write_bytes(b"garbage, not SQLite" * 100), "not a readable index"),
    (lambda path: sqlite3.connect(path).execute("PRAGMA user_version = 99").connection.commit(),
     "written by a newer adapter-tui (schema 99"),
])
def test_a_corrupt_or_newer_index_is_moved_aside_with_one_line_and_rebuilt(runs, damage, why):
    damage(runs / RUN_INDEX)
    notices = []
    rows = load_indexed(runs, notice=notices.append)
    assert rows_of(rows) == rows_of(load_runs(runs))
    assert len(notices) == 1 and why in notices[0] and "moved it to" in notices[0]
    assert len(list(runs.glob(RUN_INDEX + ".*.bad"))) == 1  # kept, not deleted
    with sqlite3.connect(runs / RUN_INDEX) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == run_index.SCHEMA_VERSION


def test_an_index_that_is_not_a_regular_file_is_left_alone_and_never_blocks(runs):
    os.mkfifo(runs / RUN_INDEX)  # opening a FIFO for reading would wait for a writer forever
    notices = []
    assert rows_of(load_indexed(runs, notice=notices.append)) == rows_of(load_runs(runs))
    assert "not a regular file" in notices[0]
    assert RunIndex.open(runs) is None and not (runs / RUN_INDEX).is_file()


def test_rows_stored_by_another_summary_version_are_read_again(runs, monkeypatch):
    load_indexed(runs)
    monkeypatch.setattr(run_index, "SUMMARY_KEY", "another")
    reads = count_reads(monkeypatch)
    load_indexed(runs)
    assert len(reads) == 13


def test_many_readers_and_writers_at_once_agree_with_the_files(runs):
    """Apps and CLIs list the runs while a trainer keeps rewriting one: every listing is whole,
    and once the writes stop the index gives exactly what the files say."""
    run = sorted(runs.glob("L3/*"))[0]
    stop = threading.Event()

    def trainer():
        epochs = 5
        while not stop.is_set():
            epochs += 1
            write_json(run / "history.json", _history(epochs))

    writer = threading.Thread(target=trainer)
    writer.start()
    try:
        procs = [subprocess.Popen([sys.executable, "-m", "engine", "runs", str(runs), "--json"], cwd=ROOT,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
        results = [p.communicate(timeout=300) for p in procs]
        in_thread = [load_indexed(runs) for _ in range(3)]
    finally:
        stop.set()
        writer.join()
    for (out, err), proc in zip(results, procs):
        assert proc.returncode == 0, err
        assert len(json.loads(out)) == 13
    assert all(len(rows) == 13 for rows in in_thread)
    assert rows_of(load_indexed(runs)) == rows_of(load_runs(runs))


def test_runs_rescan_reads_every_file_and_prints_the_same_rows(runs, capsys, monkeypatch):
    from engine.cli import main

    assert main(["runs", str(runs), "--json"]) == 0
    indexed = json.loads(capsys.readouterr().out)
    reads = count_reads(monkeypatch)
    assert main(["runs", str(runs), "--json", "--rescan"]) == 0
    assert json.loads(capsys.readouterr().out) == indexed and len(reads) == 13
    assert main(["runs", str(runs), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == indexed and len(reads) == 13  # the rescan rebuilt it


def test_runs_past_the_search_budget_are_all_listed(tmp_path, monkeypatch):
    from engine.rundir import layout

    monkeypatch.setattr(layout, "SEARCH_LIMIT", 8)  # the seven level directories, and one more
    make_runs(tmp_path / "runs", 12)
    assert len(list(layout.iter_run_dirs(tmp_path / "runs"))) == 12
    for i in range(20):  # a tree of directories that are not runs still ends the search
        (tmp_path / "home" / f"d{i:02d}" / "x").mkdir(parents=True)
    write_json(tmp_path / "home" / "d19" / "x" / "config.json", {})
    assert list(layout.iter_run_dirs(tmp_path / "home")) == []


def test_bench_runs_lists_the_same_rows_with_and_without_the_index():
    from support import run_cli

    out = run_cli("bench", "runs", "--runs", "20", "--repeats", "1", "--json", check=True)
    result = json.loads(out.stdout)
    assert result["runs"] == 20 and result["equal"] is True
    assert min(result["cold_s"], result["warm_s"], result["rescan_s"]) > 0

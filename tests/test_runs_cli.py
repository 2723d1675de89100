"""Where the runs directory is, commands that only read never create a queue, and the user's
words about runs: `runs` listing and filtering, label/tag/note/archive/delete (meta.json)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from common.errors import UserInputError
from common.fileio import write_json
from engine.cli import main
from engine.rundir.layout import RUNS_ENV, resolve_runs_dir
from engine.rundir.query import FilterError, parse_filter
from engine.rundir.summary import RunSummary

ROOT = Path(__file__).resolve().parents[1]


def make_run(root: Path, level: str, name: str, *, state: str = "done", val: list[float] = (0.5,),
             speedup: float | None = None) -> Path:
    run = root / level / name
    run.mkdir(parents=True)
    write_json(run / "config.json", {"level_key": level, "adapter": {"params": 1000}, "training": {"epochs": len(val)}})
    write_json(run / "history.json", {"val_loss": list(val), "val_cos_sim": [0.9] * len(val),
                                      "val_accept_90": [0.5] * len(val)})
    write_json(run / "status.json", {"state": state, "host": "elsewhere", "epoch": len(val), "num_epochs": len(val)})
    if speedup is not None:
        write_json(run / "eval.json", {"speedup": speedup, "expected_accepted_at_gamma": 2.0, "threshold": 0.9})
    return run


# -- the runs directory -------------------------------------------------------------------------
def test_the_runs_directory_is_the_flag_then_the_environment_then_the_project_then_here(tmp_path):
    project = tmp_path / "project"
    (project / "sub" / "deeper").mkdir(parents=True)
    (project / "adapters.toml").write_text("")
    deeper = project / "sub" / "deeper"
    assert resolve_runs_dir("x", start=deeper, environ={RUNS_ENV: "/env"}).source == "--runs"
    assert resolve_runs_dir(None, start=deeper, environ={RUNS_ENV: "/env"}).path == Path("/env")
    found = resolve_runs_dir(None, start=deeper, environ={})
    assert found.path == project / "runs" and "adapters.toml" in found.source
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    here = resolve_runs_dir(None, start=elsewhere, environ={})
    assert here.path == elsewhere / "runs" and "working directory" in here.source


def _engine(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in (RUNS_ENV, "ADAPTER_TUI_CONFIG")}
    environ["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "engine", *args], capture_output=True, text=True, cwd=cwd,
                          env={**environ, **(env or {})}, timeout=60)


def test_reading_the_queue_never_creates_one_and_says_which_runs_directory(tmp_path):
    listing = _engine("queue", "ls", cwd=tmp_path)
    status = _engine("queue", "status", cwd=tmp_path)
    assert listing.returncode == 0 and status.returncode == 0, listing.stderr + status.stderr
    assert "no queue yet" in listing.stdout and str(tmp_path / "runs") in listing.stdout
    assert f"runs: {tmp_path / 'runs'}" in status.stdout and "none yet" in status.stdout
    assert not (tmp_path / "runs").exists()  # nothing created: not the directory, not queue.db
    project = tmp_path / "project"
    (project / "sub").mkdir(parents=True)
    (project / "adapters.toml").write_text((ROOT / "adapters.toml").read_text())
    inside = _engine("queue", "status", cwd=project / "sub")
    assert f"runs: {project / 'runs'} (beside the project's adapters.toml)" in inside.stdout


def test_queue_status_names_running_jobs_not_bare_ids(tmp_path, capsys):
    from engine.queue import JobQueue

    runs = tmp_path / "runs"
    with JobQueue(runs) as q:
        ids = q.add_many([("L1", {"num_epochs": 1}), ("L4", {"num_epochs": 1})])
        job = q.claim_next(os.getpid(), 1, 1)
        q.set_run_dir(job.id, str(runs / "L1" / "L1_20261127_101010"))
        q.heartbeat(os.getpid(), None, starting=True)
    assert main(["queue", "status", "--runs", str(runs)]) == 0
    out = capsys.readouterr().out
    assert f"running: job {ids[0]} (L1, L1_20261127_101010)" in out and "running jobs:" not in out


# -- runs: listing ---------------------------------------------------------------------------
def test_runs_md_names_each_row_shows_done_runs_by_default_and_state_filters(tmp_path, capsys):
    make_run(tmp_path, "L1", "L1_good", val=[0.4], speedup=1.8)
    make_run(tmp_path, "L4", "L4_bad", state="diverged")
    make_run(tmp_path, "L5", "L5_gone", state="cancelled")
    assert main(["runs", str(tmp_path), "--md"]) == 0
    out = capsys.readouterr().out
    assert "| L1_good | L1 |" in out and "1.80x" in out and "L4_bad" not in out and "L5_gone" not in out
    assert main(["runs", "--md", "--state", "diverged", "cancelled", "--runs", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "L4_bad [diverged]" in out and "L5_gone [cancelled]" in out and "L1_good" not in out
    assert main(["runs", str(tmp_path), "--md", "--all"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("L1_good", "L4_bad", "L5_gone"))
    assert main(["runs", str(tmp_path), "--json", "--where", "speedup>1.5 level=L1"]) == 0
    assert [r["run"] for r in json.loads(capsys.readouterr().out)] == ["L1_good"]
    assert main(["runs", str(tmp_path), "--where", "speedup>>"]) == 2


# -- runs: label, tag, note, archive, delete ----------------------------------------------------
def test_label_tags_note_and_archive_round_trip_through_meta_json(tmp_path, capsys):
    run = make_run(tmp_path, "L1", "L1_a")
    assert main(["runs", "--runs", str(tmp_path), "tag", "L1_a", "+best", "+ablation"]) == 0
    assert main(["runs", "--runs", str(tmp_path), "tag", "L1_a", "-ablation", "+final"]) == 0
    assert main(["runs", "label", str(run), "the baseline"]) == 0
    assert main(["runs", "note", str(run), "lr too high"]) == 0
    assert main(["runs", "note", str(run), "try 3e-4", "--append"]) == 0
    meta = json.loads((run / "meta.json").read_text())
    assert meta["tags"] == ["best", "final"] and meta["label"] == "the baseline"
    assert meta["note"] == "lr too high\ntry 3e-4" and meta["archived"] is False
    capsys.readouterr()
    assert main(["runs", "--runs", str(tmp_path), "archive", "L1_a"]) == 0
    assert run.is_dir()  # archived in place, never moved
    assert "archived" in capsys.readouterr().out
    assert main(["runs", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []  # hidden
    assert main(["runs", str(tmp_path), "--json", "--archived"]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert row["archived"] and row["tags"] == ["best", "final"] and row["label"] == "the baseline"
    assert main(["runs", "--runs", str(tmp_path), "unarchive", "L1_a"]) == 0
    assert main(["runs", "--runs", str(tmp_path), "tag", "L1_a", "+bad tag!"]) == 2


def test_a_run_reached_through_a_symlink_is_listed_read_only_and_never_written_through(tmp_path, capsys):
    outside = make_run(tmp_path / "outside", "L1", "L1_far")
    runs = tmp_path / "runs"
    (runs / "L1").mkdir(parents=True)
    (runs / "L1" / "L1_far").symlink_to(outside, target_is_directory=True)
    (runs / "L2").symlink_to(make_run(tmp_path / "other", "L2", "L2_far").parent, target_is_directory=True)
    before = {p: sorted(os.listdir(p)) for p in (outside, tmp_path / "other" / "L2" / "L2_far")}
    assert main(["runs", str(runs), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert sorted((r["run"], r["linked"]) for r in rows) == [("L1_far", True), ("L2_far", True)]
    for name in ("L1_far", "L2_far"):
        for argv in (["tag", name, "+x"], ["note", name, "hi"], ["label", name, "x"], ["archive", name],
                     ["delete", name, "--yes"]):
            assert main(["runs", "--runs", str(runs), *argv]) == 2
            err = capsys.readouterr().err.strip()
            assert "linked runs are read-only here" in err and len(err.splitlines()) == 1, (argv, err)
    assert {p: sorted(os.listdir(p)) for p in before} == before  # no meta.json written, nothing deleted
    assert main(["runs", str(runs)]) == 0
    assert "read-only" in capsys.readouterr().out


def test_options_after_the_tags_parse_as_options(tmp_path, capsys, monkeypatch):
    make_run(tmp_path / "elsewhere", "L1", "L1_a")
    monkeypatch.chdir(tmp_path)  # not a runs directory: only --runs finds the run
    assert main(["runs", "tag", "L1_a", "+x", "-y", "--runs", str(tmp_path / "elsewhere")]) == 0
    assert main(["runs", "tag", "L1_a", f"--runs={tmp_path / 'elsewhere'}", "+z"]) == 0
    meta = json.loads((tmp_path / "elsewhere" / "L1" / "L1_a" / "meta.json").read_text())
    assert meta["tags"] == ["x", "z"]
    capsys.readouterr()
    assert main(["runs", "tag", "L1_a", "+x", "--rnus", str(tmp_path)]) == 2
    assert "unknown option --rnus" in capsys.readouterr().err


def test_meta_json_that_cannot_be_read_is_never_overwritten(tmp_path):
    from engine.rundir.meta import read_meta, update_meta

    run = make_run(tmp_path, "L1", "L1_a")
    (run / "meta.json").write_text("{not json")
    meta, problem = read_meta(run)
    assert meta.tags == [] and "not valid JSON" in problem
    with pytest.raises(UserInputError, match="fix or remove it first"):
        update_meta(run, add_tags=["x"])
    assert (run / "meta.json").read_text() == "{not json"
    with pytest.raises(UserInputError, match="not a run directory"):
        update_meta(tmp_path, label="x")


def test_delete_needs_yes_removes_only_a_runs_files_and_refuses_a_live_run(tmp_path, capsys):
    from engine.rundir.lock import RunLock

    run = make_run(tmp_path, "L1", "L1_a")
    (run / "best_model.pt").write_bytes(b"weights")
    assert main(["runs", "--runs", str(tmp_path), "delete", "L1_a"]) == 2
    assert (run / "best_model.pt").exists()
    live = make_run(tmp_path, "L1", "L1_live", state="done")
    lock = RunLock(live)
    lock.acquire()
    try:
        assert main(["runs", "--runs", str(tmp_path), "delete", "L1_live", "--yes"]) == 2
        assert "is being trained" in capsys.readouterr().err
    finally:
        lock.release()
    (run / "my_notes.txt").write_text("mine")
    assert main(["runs", "--runs", str(tmp_path), "delete", "L1_a", "--yes"]) == 0
    assert sorted(os.listdir(run)) == ["my_notes.txt"]
    assert "left my_notes.txt" in capsys.readouterr().out
    assert main(["runs", "--runs", str(tmp_path), "delete", "L1_live", "--yes"]) == 0
    assert not live.exists()
    outside = make_run(tmp_path / "other", "L1", "L1_x")
    with pytest.raises(UserInputError, match="not inside the runs directory"):
        from engine.rundir.delete import delete_run

        delete_run(outside, tmp_path / "runs_elsewhere")


# -- filters ---------------------------------------------------------------------------------
def row(**kw) -> RunSummary:
    return RunSummary(run=kw.pop("run", "L4_20260101_000000"), path="/x", level=kw.pop("level", "L4"), **kw)


def test_filter_expressions():
    fast = row(speedup=1.5, state="done", tags=["best"], label="wide ffn")
    slow = row(speedup=1.1, state="done", level="L1", run="L1_x")
    unknown = row(state="running")
    assert parse_filter("speedup>1.2").matches(fast) and not parse_filter("speedup>1.2").matches(slow)
    assert not parse_filter("speedup>1.2").matches(unknown)  # no value: no match
    assert parse_filter("level=l4 state=done").matches(fast) and not parse_filter("level=L4").matches(slow)
    assert parse_filter("tag=best").matches(fast) and parse_filter("tag!=best").matches(slow)
    assert parse_filter("label~wide").matches(fast) and parse_filter("ffn").matches(fast)
    assert parse_filter("L1_").matches(slow) and not parse_filter("L1_").matches(fast)
    assert parse_filter("epoch>=0").matches(fast)
    for bad, why in (("speedup>fast", "is a number"), ("level>L1", "is text"), ("colour=red", "unknown field"),
                     ("=3", "FIELD OP VALUE"), ("speedup>", "nothing after")):
        with pytest.raises(FilterError, match=why):
            parse_filter(bad)


ESCAPES = "x\x1b[2J\x1b[31mRED\x9b1m"


def test_a_label_or_note_with_escape_sequences_is_refused(tmp_path, capsys):
    run = make_run(tmp_path, "L1", "L1_a")
    assert main(["runs", "label", str(run), ESCAPES]) == 2
    assert "control character \\x1b" in capsys.readouterr().err
    assert main(["runs", "note", str(run), "line one\nline\ttwo\x07"]) == 2  # newlines and tabs are fine, BEL is not
    assert not (run / "meta.json").exists()
    assert main(["runs", "note", str(run), "line one\nline\ttwo"]) == 0


def test_strings_written_by_hand_print_escaped_in_the_table_and_md(tmp_path, capsys):
    run = make_run(tmp_path, "L1", "L1_a")
    write_json(run / "meta.json", {"label": ESCAPES + " | col", "tags": [], "note": ESCAPES, "archived": False})
    for flags in ([], ["--md"]):
        assert main(["runs", str(tmp_path), *flags]) == 0
        out = capsys.readouterr().out
        assert "\x1b" not in out and "\x9b" not in out, flags
        assert "\\x1b[2J" in out  # shown, not obeyed
    assert main(["runs", str(tmp_path), "--md"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if "L1_a" in line)
    assert row.count(" | ") == 6  # the label's own "|" does not open a column


def test_runs_are_found_below_the_given_directory_as_the_seeds_repository_lays_them_out(tmp_path, capsys):
    """Pointed at the seed's repository root: its runs under feasible/feature_alignment/tasks/<LEVEL>/
    and its Stage-3 evaluation directories (acceptance_metrics.json alone) are found; hidden
    directories, datasets, links out of the tree and anything too deep are not."""
    tasks = tmp_path / "repo" / "feasible" / "feature_alignment" / "tasks"
    make_run(tasks, "L2", "L2_20260206_181048")
    evaluation = tasks / "L1" / "L1_20260206_095906"
    evaluation.mkdir(parents=True)
    write_json(evaluation / "acceptance_metrics.json", {"cos_sim_mean": 0.76, "accept_90": 0.16, "speedup_e2e": 0.91,
                                                        "consecutive_mean_90": 5.96})
    make_run(tmp_path / "repo" / ".git", "L3", "L3_hidden")
    dataset = tmp_path / "repo" / "data" / "train"
    make_run(dataset, "L4", "L4_inside_a_dataset")
    write_json(dataset / "index.json", {})
    make_run(tmp_path / "repo" / "a" / "b" / "c" / "d" / "e", "L5", "L5_too_deep")
    make_run(tmp_path / "outside", "L1", "L1_outside")
    (tasks / "elsewhere").symlink_to(tmp_path / "outside", target_is_directory=True)
    assert main(["runs", str(tmp_path / "repo"), "--json"]) == 0
    rows = {r["run"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == {"L2_20260206_181048", "L1_20260206_095906"}
    evaluated = rows["L1_20260206_095906"]
    assert (evaluated["state"], evaluated["level"], evaluated["eval_source"]) == ("done", "L1", "reference")
    assert (evaluated["cos_sim"], evaluated["accept_90"], evaluated["speedup"]) == (0.76, 0.16, 0.91)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["runs", str(empty)]) == 0
    err = capsys.readouterr().err
    assert f"no runs under {empty}" in err and "levels down" in err

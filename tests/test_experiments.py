"""Experiment depth: sweeps (grid, random, Optuna with pruning), steps.jsonl, system metrics
(NVML absent and mocked), lineage in and outside a git checkout, which settings matter, and
`runs --diff`."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest

from common.errors import UserInputError
from common.fileio import write_json
from engine.cli import main
from engine.queue import JobQueue
from engine.queue.sweep import grid, parse_axes, parse_axis, random_points
from engine.rundir.steps import StepLog, read_steps
from engine.rundir.summary import RunSummary

ROOT = Path(__file__).resolve().parents[1]


# -- sweeps: the space, the grid, random points ------------------------------------------------
def test_sweep_axes_grid_and_random_points():
    axes = parse_axes(["learning_rate=1e-4,3e-4,1e-3", "batch_size=32,64"])
    points = grid(axes)
    assert len(points) == 6 and {"learning_rate": 3e-4, "batch_size": 64} in points
    ranged = parse_axes(["learning_rate=1e-5:1e-2", "num_blocks=1:4", "batch_size=32,64"])
    drawn = random_points(ranged, 200, seed=3)
    assert drawn == random_points(ranged, 200, seed=3)  # seeded
    rates = [p["learning_rate"] for p in drawn]
    assert all(1e-5 <= r <= 1e-2 for r in rates)
    below = sum(r < 1e-4 for r in rates) / len(rates)
    assert 0.2 < below < 0.47  # log-uniform: a third of the draws fall in the lowest decade
    assert {p["num_blocks"] for p in drawn} <= {1, 2, 3, 4} and all(isinstance(p["num_blocks"], int) for p in drawn)
    assert {p["batch_size"] for p in drawn} == {32, 64}
    for bad, why in (("colour=1", "cannot be swept"), ("learning_rate", "NAME=V1"), ("learning_rate=-1,1", "> 0"),
                     ("batch_size=3.5", "not an integer"), ("learning_rate=1e-2:1e-5", "low end")):
        with pytest.raises(UserInputError, match=why):
            parse_axis(bad)
    with pytest.raises(UserInputError, match="is a range"):
        grid(ranged)
    with pytest.raises(UserInputError, match="given twice"):
        parse_axes(["seed=1,2", "seed=3"])


def test_queue_add_sweep_queues_the_grid_with_one_sweep_id(tmp_path, capsys):
    from support import make_synth

    data = make_synth(tmp_path / "data", samples=32, val_samples=8, hidden_dim=16, max_seq=6, chunk_size=32)
    runs = tmp_path / "runs"
    argv = ["queue", "add", "--level", "L1", "--level", "L4", "--train_data", str(data / "train"), "--val_data",
            str(data / "val"), "--runs", str(runs), "--sweep", "learning_rate=1e-4,1e-3", "--sweep", "seed=0,1,2",
            "--json"]
    assert main(argv) == 0
    jobs = json.loads(capsys.readouterr().out)
    assert len(jobs) == 12 and len({j["sweep"] for j in jobs}) == 1
    sweep = jobs[0]["sweep"]
    assert all(j["settings"]["sweep"] == sweep for j in jobs)
    assert {(j["level"], j["settings"]["learning_rate"], j["settings"]["seed"]) for j in jobs} == {
        (level, lr, seed) for level in ("L1", "L4") for lr in (1e-4, 1e-3) for seed in (0, 1, 2)}
    spec = json.loads((runs / "sweeps" / sweep / "sweep.json").read_text())
    assert spec["axes"] == ["learning_rate=1e-4,1e-3", "seed=0,1,2"] and len(spec["jobs"]) == 12
    with JobQueue(runs) as q:
        assert {j.sweep for j in q.jobs()} == {sweep}
    before = len(json.loads(json.dumps(jobs)))
    assert main([*argv[:-1], "--sweep", "learning_rate=1e-4"]) == 2  # given twice: nothing queued
    with JobQueue(runs) as q:
        assert len(q.jobs()) == before


# -- Optuna: trials are jobs, pruned from their live history ----------------------------------
def _finish(q: JobQueue, job_id: int, run_dir: Path, losses: list[float], state: str = "done") -> None:
    q.claim_next(os.getpid(), 1, 1)
    q.set_run_dir(job_id, str(run_dir))
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "history.json", {"val_loss": losses})
    if state != "running":
        q.finish(job_id, state, 0, None)


def test_an_optuna_study_queues_trials_tells_results_and_prunes_a_poor_trial(tmp_path):
    pytest.importorskip("optuna")
    from support import make_synth

    from engine.queue.study import advance_studies, create_study, open_studies

    data = make_synth(tmp_path / "data", samples=32, val_samples=8, hidden_dim=16, max_seq=6, chunk_size=32)
    runs = tmp_path / "runs"
    fields = {"train_data": str(data / "train"), "val_data": str(data / "val"), "num_epochs": 4}
    study = create_study(runs, ["learning_rate=1e-4:1e-2"], "val_loss", trials=5, parallel=1, levels=["L1"],
                         preset=None, config=str(ROOT / "adapters.toml"), fields=fields)
    assert study.direction == "minimize" and study.spec["startup_trials"] == 2
    with JobQueue(runs) as q:
        first = study.advance(q)
        assert len(first) == 1 and q.get(first[0]).sweep == study.sweep_id
        # two trials finish with good curves: Optuna is told their best values
        _finish(q, first[0], runs / "L1" / "t0", [0.5, 0.4, 0.3, 0.2])
        second = advance_studies(runs, q)
        _finish(q, second[0], runs / "L1" / "t1", [0.6, 0.45, 0.35, 0.25])
        third = advance_studies(runs, q)
        # the third trains badly: once it is behind the median at epoch 2 it is pruned and cancelled
        _finish(q, third[0], runs / "L1" / "t2", [5.0, 4.0], state="running")
        fourth = advance_studies(runs, q)
        assert q.get(third[0]).cancel_requested  # the worker stops it (SIGTERM, last.pt kept)
        _, loaded = study.load()
        states = [t.state.name for t in loaded.trials]
        assert states[:3] == ["COMPLETE", "COMPLETE", "PRUNED"] and len(fourth) == 1
        assert sorted(t.value for t in loaded.trials[:2]) == [0.2, 0.25]
        _finish(q, fourth[0], runs / "L1" / "t3", [0.7, 0.6, 0.5, 0.4])
        fifth = advance_studies(runs, q)
        _finish(q, fifth[0], runs / "L1" / "t4", [0.9, 0.8, 0.7, 0.6])
        assert advance_studies(runs, q) == []  # five trials: done
    assert open_studies(runs) == []  # finished: the worker no longer looks at it
    with pytest.raises(UserInputError, match="not a history.json metric"):
        create_study(runs, ["learning_rate=1e-4:1e-2"], "loss_of_nerve", trials=5, parallel=1, levels=["L1"],
                     preset=None, config=str(ROOT / "adapters.toml"), fields=fields)


# -- steps.jsonl --------------------------------------------------------------------------------
def test_steps_jsonl_writer_and_a_reader_that_tolerates_a_torn_line(tmp_path):
    log = StepLog(tmp_path, steps_per_epoch=100, min_interval_s=0.0)
    assert log.every == 2
    wrote = [log.step(s, s / 100, 1.0 / s, 1e-3, 500.0, lambda: {"cpu_percent": 90.0}) for s in range(1, 11)]
    assert wrote == [False, True] * 5
    rows, offset = read_steps(tmp_path)
    assert [r["step"] for r in rows] == [2, 4, 6, 8, 10] and rows[0]["cpu_percent"] == 90.0
    assert rows[0]["train_loss"] == pytest.approx((1.0 + 0.5) / 2)  # the mean since the last line
    with open(tmp_path / "steps.jsonl", "a") as f:
        f.write('{"step": 12, "train_lo')  # half a line, as a reader may find it mid-write
    more, offset2 = read_steps(tmp_path, offset)
    assert more == [] and offset2 == offset
    with open(tmp_path / "steps.jsonl", "a") as f:
        f.write('ss": 0.1}\nnot json\n')
    more, _ = read_steps(tmp_path, offset2)
    assert [r["step"] for r in more] == [12]  # the garbage line is skipped
    resumed = StepLog(tmp_path, steps_per_epoch=100, min_interval_s=0.0)  # a resumed run carries on its time
    resumed.step(14, 0.14, 0.1, 1e-3, 500.0)
    last = read_steps(tmp_path)[0][-1]
    assert last["step"] == 14 and last["elapsed_s"] >= rows[-1]["elapsed_s"]
    assert read_steps(tmp_path / "nowhere") == ([], 0)


def test_every_epochs_last_step_is_a_point_even_within_the_minimum_interval(tmp_path):
    """A short run (two epochs of three steps, all within the 1 s minimum interval) still gets a
    point at the end of each epoch, so its step and wall-time curves are not empty."""
    log = StepLog(tmp_path, steps_per_epoch=3)  # the default interval: only the first point is due by time
    wrote = [log.step(s, s / 3, 1.0, 1e-3, 500.0) for s in range(1, 7)]
    assert wrote == [True, False, True, False, False, True]
    assert [r["step"] for r in read_steps(tmp_path)[0]] == [1, 3, 6]


def test_a_trained_run_has_steps_lineage_sweep_and_system_use(tmp_path, tiny_data):
    from engine.settings import resolve
    from engine.train import run_training
    from engine.settings import flag_defaults

    args = types.SimpleNamespace(**{**flag_defaults(), "level": "L1", "train_data": str(tiny_data / "train"),
                                    "val_data": str(tiny_data / "val"), "num_epochs": 2, "runs": str(tmp_path),
                                    "config": str(ROOT / "adapters.toml")})
    settings, _ = resolve(args)
    assert run_training(settings) == 0
    run = next((tmp_path / "L1").iterdir())
    config = json.loads((run / "config.json").read_text())
    assert config["sweep"] is None and config["lineage"]["data"]["train"]["samples"] == 192
    assert config["lineage"]["data"]["val"]["index_sha256"] and config["lineage"]["host"]
    rows, _ = read_steps(run)
    assert rows and {"step", "epoch", "elapsed_s", "train_loss", "lr", "tokens_per_s", "cpu_percent", "rss_mb"} <= set(rows[0])
    status = json.loads((run / "status.json").read_text())
    assert status["system"]["rss_mb"] > 0


# -- system metrics ---------------------------------------------------------------------------
def test_system_metrics_without_nvml_and_with_a_mocked_one(monkeypatch):
    import engine.system as system

    monkeypatch.setattr(system, "_NVML", None)
    monkeypatch.setitem(sys.modules, "pynvml", None)  # not installed
    sample = system.SystemSampler(gpu_index=0).sample()
    assert "rss_mb" in sample and "gpu_util" not in sample and system.gpus_sample([0, 1]) == []

    fake = types.SimpleNamespace(
        nvmlInit=lambda: None,
        nvmlDeviceGetHandleByIndex=lambda i: f"gpu{i}",
        nvmlDeviceGetHandleByUUID=lambda u: "gpu-uuid",
        nvmlDeviceGetUtilizationRates=lambda h: types.SimpleNamespace(gpu=87),
        nvmlDeviceGetMemoryInfo=lambda h: types.SimpleNamespace(used=30 * 2**30, total=80 * 2**30),
        nvmlDeviceGetPowerUsage=lambda h: 250_000)
    monkeypatch.setattr(system, "_NVML", None)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    sample = system.SystemSampler(gpu_uuid="1234").sample()
    assert sample["gpu_util"] == 87 and sample["gpu_mem_used_mb"] == 30 * 1024 and sample["gpu_power_w"] == 250.0
    assert [g["index"] for g in system.gpus_sample([0, 1])] == [0, 1]


def test_the_worker_reports_its_gpus_use_in_the_queue(tmp_path, monkeypatch):
    import engine.system as system

    monkeypatch.setattr(system, "gpus_sample", lambda indices: [{"index": i, "gpu_util": 50.0} for i in indices])
    with JobQueue(tmp_path) as q:
        q.heartbeat(os.getpid(), "0,1", starting=True, gpu_stats=system.gpus_sample([0, 1]))
        assert [g["index"] for g in q.worker_status().gpu_stats] == [0, 1]


# -- lineage --------------------------------------------------------------------------------
@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_lineage_inside_and_outside_a_git_checkout(tmp_path):
    from engine.lineage import checkout, code_version

    outside = tmp_path / "plain"
    outside.mkdir()
    assert checkout(outside) is None
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    (repo / "train.py").write_text("print(1)\n")
    subprocess.run([*git, "add", "train.py"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "one"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    info = checkout(repo)
    assert info == {"repo": str(repo.resolve()), "commit": head, "dirty": False}
    (repo / "train.py").write_text("print(2)\n")
    assert checkout(repo)["dirty"] is True
    repos = [c["repo"] for c in code_version(cwd=repo)]
    assert str(repo.resolve()) in repos  # the working directory's checkout, beside adapter-tui's own (if any)


# -- which settings matter, and how two runs differ -------------------------------------------
def summary(lr: float, batch: int, loss: float) -> RunSummary:
    return RunSummary(run=f"L1_{lr}_{batch}", path="/x", level="L1", best_val_loss=loss, sweep="s",
                      hparams={"learning_rate": lr, "batch_size": float(batch), "seed": 0.0})


def test_settings_are_ranked_by_the_spread_of_their_group_means():
    from engine.rundir.hparams import markdown, rank

    runs = [summary(lr, b, {1e-4: 0.8, 1e-3: 0.5, 1e-2: 0.3}[lr] + (0.02 if b == 64 else 0.0))
            for lr in (1e-4, 1e-3, 1e-2) for b in (32, 64)]
    effects = rank(runs)
    assert [e.name for e in effects] == ["learning_rate", "batch_size"]  # seed never varies: left out
    assert effects[0].effect == pytest.approx(0.5) and effects[0].best == "0.01" and effects[0].log
    assert effects[0].correlation < -0.9 and effects[1].best == "32"
    table = markdown(effects, "best_val_loss")
    assert "| learning_rate | 0.5 | 0.01 | -0.96 |" in table
    many = [summary(10 ** (-5 + 3 * i / 19), 32, i / 19) for i in range(20)]  # 20 distinct values: binned
    binned = rank(many)[0]
    assert len(binned.groups) == 4 and sum(n for _, _, n in binned.groups) == 20 and binned.log
    assert all(not math.isnan(m) for _, m, _ in binned.groups)


def test_runs_sweep_ranks_and_runs_diff_shows_settings_and_lineage(tmp_path, capsys):
    for i, (lr, loss) in enumerate(((1e-4, 0.8), (1e-3, 0.4), (1e-2, 0.6))):
        run = tmp_path / "L1" / f"L1_2026112{i}_000000"
        run.mkdir(parents=True)
        write_json(run / "config.json", {"level_key": "L1", "sweep": "sweep_x", "settings": {
            "learning_rate": lr, "batch_size": 64, "seed": 0}, "lineage": {"code": [{"commit": f"c{i}"}],
                                                                            "host": "a" if i else "b"}})
        write_json(run / "history.json", {"val_loss": [loss]})
        write_json(run / "status.json", {"state": "done"})
    assert main(["runs", str(tmp_path), "--sweep", "sweep_x", "--md"]) == 0
    out = capsys.readouterr().out
    assert "Which settings matter in sweep sweep_x (3 runs)" in out and "| learning_rate | 0.4 | 0.001 |" in out
    assert main(["runs", str(tmp_path), "--sweep", "nope"]) == 2
    assert main(["runs", "--runs", str(tmp_path), "--diff", "L1_20261120_000000", "L1_20261121_000000"]) == 0
    lines = {" ".join(line.split()) for line in capsys.readouterr().out.splitlines()}
    assert {"settings.learning_rate 0.0001 → 0.001", "lineage.host b → a", "lineage.code.0.commit c0 → c1"} <= lines

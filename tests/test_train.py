"""The trainer end to end on tiny synthetic data: run directories, recipe, resume, signals."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from adapters.checkpoint import load_adapter
from support import ROOT, epochs_recorded, make_synth, run_cli
from engine.cli import main
from engine.rundir.files import SEED_HISTORY_KEYS

LEVELS = ["L1", "L2", "L3", "L4", "L5", "B1", "L5F"]
SMALL_ARCH = ["--num_heads", "4", "--ffn_dim", "64", "--bottleneck_dim", "16"]
TIMING = {"epoch_time_s", "train_tokens_per_s", "data_wait_frac", "lr_time"}


def only_run(root: Path) -> Path:
    runs = [p for p in root.glob("*/*") if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def train(tiny_data, out, *extra):
    return main(["train", "--train_data", str(tiny_data / "train"), "--val_data", str(tiny_data / "val"),
                 "--output_dir", str(out), "--batch_size", "32", *SMALL_ARCH, *map(str, extra)])


@pytest.mark.slow
@pytest.mark.parametrize("level", LEVELS)
def test_every_level_leaves_a_full_run_directory(tmp_path, tiny_data, level):
    assert train(tiny_data, tmp_path, "--level", level, "--num_epochs", 2, "--lm_head", tiny_data / "lm_head.pt") == 0
    run = only_run(tmp_path)
    assert run.parent.name == level and run.name.startswith(f"{level}_")
    for name in ("config.json", "history.json", "status.json", "train.log", "best_model.pt", "last.pt",
                 "final_model.pt", "training_curves.png"):
        assert (run / name).is_file(), name
    history = json.loads((run / "history.json").read_text())
    for key in SEED_HISTORY_KEYS + ("epoch", "lr", "epoch_time_s", "train_tokens_per_s", "data_wait_frac",
                                    "val_consecutive_90", "val_token_match"):
        assert len(history[key]) == 2, key
    config = json.loads((run / "config.json").read_text())
    for key in ("task", "vlm_only", "adapter", "data", "training", "timestamp", "best_val_loss",
                "level_key", "seed", "device", "versions", "argv"):
        assert key in config, key
    assert set(config["adapter"]) >= {"level", "name", "hidden_dim", "bottleneck_dim", "num_blocks", "num_heads",
                                      "num_layers", "ffn_dim", "params"}
    assert config["best_val_loss"] == pytest.approx(min(history["val_loss"]))
    assert config["vlm_only"] == (level == "B1")
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "done" and status["epoch"] == 2
    model, payload = load_adapter(run / "best_model.pt")
    assert payload["level"] == level


@pytest.mark.slow
def test_l1_val_cosine_rises_on_demo_data(tmp_path):
    data = make_synth(tmp_path / "demo", samples=2048, val_samples=512, hidden_dim=256, max_seq=32, chunk_size=512)
    assert main(["train", "--train_data", str(data / "train"), "--val_data", str(data / "val"),
                 "--output_dir", str(tmp_path / "runs"), "--level", "L1", "--num_epochs", "5"]) == 0
    history = json.loads((only_run(tmp_path / "runs") / "history.json").read_text())
    cos = history["val_cos_sim"]
    assert cos[-1] > cos[0] + 0.03 and all(b >= a - 0.005 for a, b in zip(cos, cos[1:]))


@pytest.mark.slow
@pytest.mark.parametrize("seed_args, level", [
    (["--adapter_level", "4", "--num_epochs", "300", "--batch_size", "64", "--early_stopping", "50"], "L4"),
    (["--adapter_level", "5", "--num_epochs", "100", "--batch_size", "64"], "L5"),
    (["--adapter_level", "5", "--vlm_only", "--num_epochs", "50", "--batch_size", "64"], "B1"),
])
def test_seed_readme_commands_start(tmp_path, tiny_data, seed_args, level):
    # The seed's commands verbatim except the script name; an early SIGTERM keeps the test short.
    proc = subprocess.Popen([sys.executable, "-m", "engine", "train", "--train_data", str(tiny_data / "train"),
                             "--val_data", str(tiny_data / "val"), "--output_dir", str(tmp_path), *seed_args],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not list(tmp_path.glob("*/history.json")):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    [run] = [p for p in tmp_path.iterdir() if p.is_dir()]  # OUTPUT_DIR/<prefix>_<time>, as the reference writes it
    config = json.loads((run / "config.json").read_text())
    assert run.name.startswith(f"{level}_") and config["training"]["epochs"] == int(seed_args[seed_args.index("--num_epochs") + 1])
    assert json.loads((run / "status.json").read_text())["state"] == "cancelled"


def test_level_defaults_apply_unless_overridden(tmp_path, tiny_data):
    from engine.cli import build_parser
    from engine.settings import resolve

    args = build_parser().parse_args(["train", "--train_data", "x", "--level", "L4"])
    settings, _ = resolve(args)
    assert (settings.num_epochs, settings.early_stopping, settings.batch_size) == (300, 50, 64)
    args = build_parser().parse_args(["train", "--train_data", "x", "--level", "L4", "--num_epochs", "3"])
    assert resolve(args)[0].num_epochs == 3


def test_early_stopping_triggers_at_patience(tmp_path, tiny_data, monkeypatch):
    from engine import train as train_module

    real = train_module.Trainer.validate
    calls = []

    def worsening(self):
        metrics = real(self)
        calls.append(1)
        metrics["val_loss"] = float(len(calls))  # gets worse every epoch after the first
        return metrics

    monkeypatch.setattr(train_module.Trainer, "validate", worsening)
    assert train(tiny_data, tmp_path, "--level", "L1", "--num_epochs", 20, "--early_stopping", 3) == 0
    history = json.loads((only_run(tmp_path) / "history.json").read_text())
    assert len(history["val_loss"]) == 4  # best at 1, then 3 epochs without improvement
    assert "early stopping" in (only_run(tmp_path) / "train.log").read_text()


def test_absurd_learning_rate_diverges(tmp_path, tiny_data):
    code = train(tiny_data, tmp_path, "--level", "L1", "--num_epochs", 3, "--learning_rate", "1e30")
    run = only_run(tmp_path)
    status = json.loads((run / "status.json").read_text())
    assert code == 3 and status["state"] == "diverged" and "non-finite" in status["error"]


def test_input_errors_exit_2_before_any_run_dir(tmp_path, tiny_data):
    for argv, needle in [
        (["--train_data", tmp_path / "missing"], "does not exist"),
        (["--train_data", tiny_data / "train", "--hidden_dim", "4096"], "conflicts with the data's hidden size 64"),
        (["--train_data", tiny_data / "train", "--level", "L9"], "unknown level 'L9'"),
        (["--train_data", tiny_data / "train", "--level", "L4", "--num_heads", "7"], "num_heads = 7 does not divide"),
        (["--dataset", "nope"], "unknown dataset 'nope'"),
        (["--train_data", tiny_data / "train", "--lm_head", tiny_data / "train" / "index.json"], "lm_head"),
    ]:
        out = run_cli("train", "--output_dir", tmp_path / "runs", *argv)
        assert out.returncode == 2, (argv, out.stderr)
        assert needle in out.stderr and "Traceback" not in out.stderr, out.stderr
        assert len(out.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_no_val_data_holds_out_last_chunk(tmp_path, tiny_data):
    assert main(["train", "--train_data", str(tiny_data / "train"), "--output_dir", str(tmp_path),
                 "--level", "L1", "--num_epochs", "1", "--bottleneck_dim", "16"]) == 0
    run = only_run(tmp_path)
    assert "holding out the last chunk" in (run / "train.log").read_text()
    config = json.loads((run / "config.json").read_text())
    assert config["data"]["train_samples"] == 128 and config["data"]["val_samples"] == 64


def spawn_train(tiny_data, out, *extra):
    return subprocess.Popen(
        [sys.executable, "-m", "engine", "train", "--train_data", str(tiny_data / "train"),
         "--val_data", str(tiny_data / "val"), "--output_dir", str(out), "--batch_size", "16",
         "--level", "L2", "--bottleneck_dim", "16", "--seed", "7", *map(str, extra)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def comparable(history):
    return {k: v for k, v in history.items() if k not in TIMING}


@pytest.mark.slow
def test_resume_after_sigkill_equals_uninterrupted_run(tmp_path, tiny_data):
    epochs = 6
    whole = spawn_train(tiny_data, tmp_path / "a", "--num_epochs", epochs)
    assert whole.wait(timeout=300) == 0
    reference = json.loads(next((tmp_path / "a").glob("*/*/history.json")).read_text())

    victim = spawn_train(tiny_data, tmp_path / "b", "--num_epochs", epochs)
    deadline = time.time() + 120
    while epochs_recorded(tmp_path / "b") < 2 and time.time() < deadline:
        time.sleep(0.02)
    victim.kill()
    victim.wait()
    run = only_run(tmp_path / "b")
    killed_at = epochs_recorded(tmp_path / "b")
    assert 2 <= killed_at < epochs, "the run finished before it could be killed"
    out = run_cli("train", "--resume", run)
    assert out.returncode == 0, out.stderr
    resumed = json.loads((run / "history.json").read_text())
    ref, got = comparable(reference), comparable(resumed)
    assert ref.keys() == got.keys()
    for key in ref:
        assert got[key] == pytest.approx(ref[key], abs=1e-6), key
    assert json.loads((run / "status.json").read_text())["state"] == "done"


@pytest.mark.slow
def test_sigterm_cancels_quickly_with_loadable_last_pt(tmp_path, tiny_data):
    proc = spawn_train(tiny_data, tmp_path, "--num_epochs", 500)
    deadline = time.time() + 120
    while not list(tmp_path.glob("*/*/last.pt")) and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)  # mid-training: it stops at the next batch, not after 500 epochs
    assert proc.wait(timeout=300) == 0
    run = only_run(tmp_path)
    assert json.loads((run / "status.json").read_text())["state"] == "cancelled"
    model, payload = load_adapter(run / "last.pt")
    assert payload["epoch"] >= 1 and "optimizer" in payload


@pytest.mark.slow
def test_readers_never_see_invalid_json(tmp_path, tiny_data):
    proc = spawn_train(tiny_data, tmp_path, "--num_epochs", 8)
    bad, reads = [], [0]

    def hammer():
        while proc.poll() is None:
            for path in tmp_path.glob("*/*/*.json"):
                try:
                    json.loads(path.read_bytes())
                    reads[0] += 1
                except FileNotFoundError:
                    pass
                except ValueError as exc:
                    bad.append((path.name, str(exc)))

    thread = threading.Thread(target=hammer)
    thread.start()
    assert proc.wait(timeout=300) == 0
    thread.join()
    assert not bad and reads[0] > 50


def test_runs_lists_a_seed_format_run(tmp_path):
    run = tmp_path / "L3" / "L3_20260207_101500"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({
        "task": "egpt_to_vl", "vlm_only": False,
        "adapter": {"level": 3, "name": "MultiLayerBottleneckAdapter", "hidden_dim": 4096, "params": 16797698},
        "training": {"epochs": 50, "batch_size": 64}, "timestamp": "20260207_101500", "best_val_loss": 1.2499}))
    (run / "history.json").write_text(json.dumps({
        "train_loss": [1.5, 1.3, 1.26], "train_cos_sim": [0.7, 0.76, 0.78], "val_loss": [1.4, 1.2499, 1.26],
        "val_cos_sim": [0.75, 0.79, 0.788], "val_accept_80": [0.5, 0.6, 0.6], "val_accept_85": [0.4, 0.5, 0.5],
        "val_accept_90": [0.2, 0.249, 0.24], "val_accept_95": [0.05, 0.06, 0.06]}))
    broken = tmp_path / "L1" / "L1_20260101_000000"
    broken.mkdir(parents=True)
    (broken / "status.json").write_text('{"state": "runn')
    out = run_cli("runs", tmp_path, "--json", check=True)
    rows = {r["run"]: r for r in json.loads(out.stdout)}
    seed = rows["L3_20260207_101500"]
    assert seed["seed_format"] and seed["state"] == "done" and seed["params"] == 16797698
    assert (seed["best_val_loss"], seed["cos_sim"], seed["accept_90"], seed["epochs_done"]) == (1.2499, 0.79, 0.249, 3)
    assert rows["L1_20260101_000000"]["state"] == "unreadable" and "not valid JSON" in rows["L1_20260101_000000"]["error"]
    md = run_cli("runs", tmp_path, "--md", check=True).stdout
    assert "| L3 | 16.8M | 1.2499 | 0.790 | 24.9% |" in md


def test_bf16_autocast_runs_on_cpu_when_asked(tmp_path, tiny_data):
    assert train(tiny_data, tmp_path, "--level", "L1", "--num_epochs", 1, "--precision", "bf16", "--no_eval") == 0
    config = json.loads((only_run(tmp_path) / "config.json").read_text())
    assert config["precision"] == "bf16"
    assert json.loads((only_run(tmp_path) / "status.json").read_text())["state"] == "done"


def test_running_run_without_its_process_shows_interrupted(tmp_path):
    import socket

    from engine.process import start_of
    from engine.rundir.summary import summarize

    run = tmp_path / "L1" / "L1_20260101_000000"
    run.mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    now = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
    status = {"state": "running", "pid": dead.pid, "host": socket.gethostname(), "updated_at": now}
    (run / "status.json").write_text(json.dumps(status))
    assert summarize(run).state == "interrupted"
    status.update(pid=os.getpid(), updated_at="2020-01-01T00:00:00+00:00")  # alive, but silent for years
    (run / "status.json").write_text(json.dumps(status))
    assert summarize(run).state == "interrupted"
    status.update(updated_at=now)
    (run / "status.json").write_text(json.dumps(status))
    assert summarize(run).state == "running"
    # its pid with the process's start time: alive for sure, however long since the last beat
    status.update(pid_start=start_of(os.getpid()), updated_at="2020-01-01T00:00:00+00:00")
    (run / "status.json").write_text(json.dumps(status))
    assert summarize(run).state == "running"
    status.update(host="another-host")  # elsewhere only the heartbeat can tell
    (run / "status.json").write_text(json.dumps(status))
    assert summarize(run).state == "interrupted"

"""Seed fidelity: the seed's commands build and write what the reference does, and the
reference's artifacts (checkpoints, LM heads, run directories, evaluation files) open here."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import reference_models
from support import ROOT, make_synth, run_cli
from engine.cli import main


def seed_train(tiny_data, *flags):
    return main(["train", "--train_data", str(tiny_data / "train"), "--val_data", str(tiny_data / "val"), *map(str, flags)])


def the_run(root: Path) -> Path:
    [run] = [p for p in root.iterdir() if p.is_dir()]
    return run


def settings_of(*argv):
    from engine.cli import build_parser
    from engine.settings import resolve

    return resolve(build_parser().parse_args(["train", "--train_data", "x", *map(str, argv)]))[0]


def test_seed_flags_take_the_references_defaults_not_the_registrys():
    s = settings_of("--adapter_level", "4")
    assert (s.num_epochs, s.batch_size, s.learning_rate, s.early_stopping, s.val_split) == (50, 64, 1e-3, 10, 0.1)
    assert s.seed_level == 4 and s.level == "L4"
    s = settings_of("--level", "L4")  # adapters.toml's recipe for L4
    assert (s.num_epochs, s.early_stopping) == (300, 50) and s.seed_level is None
    assert settings_of().seed_level == 1  # no level named: the reference's default level 1
    assert settings_of("--adapter_level", "5", "--vlm_only").level == "B1"
    assert settings_of("--adapter_level", "6").level == "L5F"


def test_seed_levels_are_built_as_the_reference_builds_them(tmp_path):
    from adapters.registry import count_parameters
    from engine.settings import seed_spec

    counts = {1: 2_113_537, 2: 6_324_227, 3: 25_188_355, 4: 100_714_497, 5: 102_819_841, 6: 169_936_897}
    for number, count in counts.items():
        assert count_parameters(seed_spec(number, False), 4096) == count
    # an adapters.toml that changes L3 does not change --adapter_level 3
    config = tmp_path / "adapters.toml"
    config.write_text('[levels.L3]\nclass = "WideBottleneckAdapter"\nnum_blocks = 1\n')
    s = settings_of("--adapter_level", "3", "--config", config)
    from adapters.registry import load_registry
    from engine.settings import effective_spec

    assert count_parameters(effective_spec(load_registry(config), s), 4096) == 25_188_355


def test_seed_command_with_output_dir_writes_the_references_layout_and_config(tmp_path, tiny_data):
    out = tmp_path / "tasks" / "L4"
    assert seed_train(tiny_data, "--adapter_level", 4, "--num_epochs", 1, "--ffn_dim", 32, "--output_dir", out,
                      "--no_eval") == 0
    run = the_run(out)
    assert run.name.startswith("L4_") and run.parent == out  # OUTPUT_DIR/L4_<YYYYmmdd_HHMMSS>
    config = json.loads((run / "config.json").read_text())
    assert config["task"] == "train_L4_Attention" and config["adapter"]["name"] == "Attention"
    assert config["adapter"]["level"] == 4 and config["timestamp"] == run.name[3:]
    # every architecture value recorded as the reference records it, used or not
    assert {k: config["adapter"][k] for k in ("bottleneck_dim", "num_blocks", "num_heads", "num_layers", "ffn_dim")} \
        == {"bottleneck_dim": 256, "num_blocks": 3, "num_heads": 8, "num_layers": 1, "ffn_dim": 32}
    assert config["training"]["optimizer"] == "AdamW" and config["training"]["scheduler"] == "CosineAnnealingLR"
    assert (config["training"]["epochs"], config["training"]["batch_size"]) == (1, 64)


@pytest.mark.parametrize("flags, prefix, task, name", [
    (["--adapter_level", 5, "--vlm_only"], "B1", "train_B1_VLMOnly_EAGLE", "EAGLE"),
    (["--adapter_level", 6], "L5F", "train_L5F_FusedEAGLE", "FusedEAGLE"),
    (["--adapter_level", 2, "--vlm_only"], "B1", "train_B1_VLMOnly_MultiLayerBottleneck", "MultiLayerBottleneck"),
])
def test_seed_prefixes_and_task_names(tmp_path, tiny_data, flags, prefix, task, name):
    arch = ["--ffn_dim", 32] if flags[1] in (5, 6) else ["--bottleneck_dim", 8]
    assert seed_train(tiny_data, *flags, *arch, "--num_epochs", 1, "--output_dir", tmp_path, "--no_eval") == 0
    run = the_run(tmp_path)
    config = json.loads((run / "config.json").read_text())
    assert run.name.startswith(f"{prefix}_") and (config["task"], config["adapter"]["name"]) == (task, name)
    assert config["vlm_only"] == ("--vlm_only" in flags)


def test_without_output_dir_a_seed_command_keeps_our_layout(tmp_path, tiny_data, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert seed_train(tiny_data, "--adapter_level", 1, "--num_epochs", 1, "--no_eval") == 0
    [run] = list((tmp_path / "runs" / "L1").iterdir())
    assert run.name.startswith("L1_")


def test_a_flag_the_level_does_not_take_is_a_warning_on_stderr_and_in_the_log(tmp_path, tiny_data):
    out = run_cli("train", "--train_data", tiny_data / "train", "--val_data", tiny_data / "val", "--adapter_level", 2,
                  "--num_layers", 4, "--bottleneck_dim", 8, "--num_epochs", 1, "--output_dir", tmp_path, "--no_eval")
    assert out.returncode == 0, out.stderr
    warnings = [line for line in out.stderr.splitlines() if "does not apply" in line]
    assert len(warnings) == 1 and "--num_layers" in warnings[0] and "--num_blocks" in warnings[0]
    assert "--num_layers does not apply to L2" in (the_run(tmp_path) / "train.log").read_text()
    config = json.loads((the_run(tmp_path) / "config.json").read_text())
    assert config["adapter"]["num_layers"] == 4 and config["arch"]["num_blocks"] == 3  # recorded, not used


def test_num_layers_stacks_l1_blocks_as_in_the_reference(tmp_path, tiny_data):
    assert seed_train(tiny_data, "--adapter_level", 1, "--num_layers", 2, "--bottleneck_dim", 8, "--num_epochs", 1,
                      "--output_dir", tmp_path, "--no_eval") == 0
    from adapters.checkpoint import load_adapter

    model, _ = load_adapter(the_run(tmp_path) / "best_model.pt")
    assert len(model.blocks) == 2


# -- holding out validation data ---------------------------------------------------------------

def test_a_one_chunk_training_set_holds_out_val_split(tmp_path):
    data = make_synth(tmp_path / "one", samples=40, val_samples=8, hidden_dim=16, max_seq=6, chunk_size=64)
    assert main(["train", "--train_data", str(data / "train"), "--level", "L1", "--bottleneck_dim", "4",
                 "--num_epochs", "1", "--val_split", "0.25", "--output_dir", str(tmp_path / "runs"), "--no_eval"]) == 0
    config = json.loads(next((tmp_path / "runs").glob("*/*/config.json")).read_text())
    assert (config["data"]["train_samples"], config["data"]["val_samples"]) == (30, 10)
    assert config["data"]["val_path"] == "split from train"


def test_held_out_samples_are_never_trained_on(tmp_path):
    from engine.data.dataset import open_dataset, split_train_val
    from engine.data.loader import train_loader, val_loader

    for chunk_size in (64, 16):  # one chunk: samples held out; several: the last chunk
        data = make_synth(tmp_path / str(chunk_size), samples=40, val_samples=8, hidden_dim=16, max_seq=6,
                          chunk_size=chunk_size)
        train, val, _ = split_train_val(open_dataset(data / "train"), 0.25, seed=3)
        seen = torch.cat([b.index for b in train_loader(train, 8, seed=0)]).tolist()
        held = torch.cat([b.index for b in val_loader(val, 8)]).tolist()
        assert not set(seen) & set(held) and sorted(seen + held) == list(range(40))


# -- the reference's artifacts -----------------------------------------------------------------

def reference_run(tmp_path, tiny_data, level="L4"):
    """A run directory as the reference leaves it: its checkpoint (H=64), config.json, history.json."""
    reference_models.install_module()
    _, payload = reference_models.build(level, 64)
    run = tmp_path / f"{level}_20260206_192256"
    run.mkdir(parents=True)
    torch.save(payload, run / "best_model.pt")
    (run / "config.json").write_text(json.dumps({
        "task": "train_L4_Attention", "vlm_only": False,
        "adapter": {"level": 4, "name": "Attention", "hidden_dim": 64, "params": 1},
        "data": {"train_path": str(tiny_data / "train"), "val_path": str(tiny_data / "val")},
        "training": {"epochs": 50, "batch_size": 64}, "timestamp": "20260206_192256", "best_val_loss": 1.2458}))
    (run / "history.json").write_text(json.dumps({"train_loss": [1.5, 1.3], "val_loss": [1.4, 1.2458],
                                                  "val_cos_sim": [0.7, 0.791], "val_accept_90": [0.2, 0.248]}))
    return run


def test_a_reference_run_evaluates_and_starts_a_fine_tuning(tmp_path, tiny_data):
    run = reference_run(tmp_path / "tasks", tiny_data)
    out = run_cli("eval", run, "--data", tiny_data / "val", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["level"] == "L4"
    assert main(["train", "--train_data", str(tiny_data / "train"), "--val_data", str(tiny_data / "val"), "--level",
                 "L4", "--num_heads", "4", "--ffn_dim", "32", "--init_from", str(run), "--num_epochs", "1",
                 "--output_dir", str(tmp_path / "runs"), "--no_eval"]) == 0
    config = json.loads(next((tmp_path / "runs").glob("L4/*/config.json")).read_text())
    assert config["init_from"] == str(run)


def test_init_from_starts_from_those_weights(tmp_path, tiny_data):
    from adapters.checkpoint import load_adapter
    from engine.inputs import prepare

    run = reference_run(tmp_path, tiny_data)
    s = settings_of("--level", "L4", "--num_heads", "4", "--ffn_dim", "32", "--init_from", str(run / "best_model.pt"))
    s.train_data, s.val_data = str(tiny_data / "train"), str(tiny_data / "val")
    from engine.train import Trainer

    trainer = Trainer(prepare(s), tmp_path / "out")
    expected, _ = load_adapter(run / "best_model.pt")
    for name, tensor in expected.state_dict().items():
        torch.testing.assert_close(trainer.model.state_dict()[name], tensor)
    trainer.train_batches.close()


def test_init_from_a_checkpoint_that_does_not_fit_is_one_line_and_nothing_written(tmp_path, tiny_data):
    run = reference_run(tmp_path, tiny_data)
    for flags, needle in [(["--level", "L1"], "does not fit this run's L1"),
                          (["--level", "L4", "--num_heads", "4", "--ffn_dim", "64"], "layers.0.ffn.0.weight differs"),
                          (["--level", "L4", "--num_heads", "4"], "differs")]:
        out = run_cli("train", "--train_data", tiny_data / "train", "--val_data", tiny_data / "val", *flags,
                      "--init_from", run, "--output_dir", tmp_path / "runs")
        assert out.returncode == 2 and needle in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
        assert not (tmp_path / "runs").exists()


def test_the_references_lm_head_file_is_accepted(tmp_path, tiny_data):
    head = torch.load(tiny_data / "lm_head.pt", weights_only=True)
    path = tmp_path / "vl_lm_head.pt"  # as extract_vl_lm_head.py saves it
    torch.save({"lm_head_weight": head, "vocab_size": head.shape[0], "hidden_dim": head.shape[1],
                "model_id": "LanguageBind/Video-LLaVA-7B-hf"}, path)
    assert seed_train(tiny_data, "--level", "L1", "--bottleneck_dim", 8, "--num_epochs", 1, "--lm_head", path,
                      "--output_dir", tmp_path / "runs") == 0
    run = next((tmp_path / "runs").glob("L1/*"))
    assert "val_token_match" in json.loads((run / "history.json").read_text())
    assert "token_top10_match" in json.loads((run / "eval.json").read_text())


def test_reference_run_directories_show_with_their_evaluation_figures(tmp_path, tiny_data):
    from engine.rundir.summary import load_runs

    runs = tmp_path / "runs"
    ours = runs / "L1" / "L1_20261127_101010"
    ours.mkdir(parents=True)
    (ours / "history.json").write_text(json.dumps({"val_loss": [0.5]}))
    run = reference_run(runs, tiny_data)  # RUNS/L4_<stamp>/, beside our RUNS/L1/...
    (run / "acceptance_metrics.json").write_text(json.dumps(
        {"accept_90": 0.24, "consecutive_mean_90": 7.619, "sd_consecutive_gamma5": 4.606, "speedup_e2e": 0.9391,
         "position_accept_90": [0.9, 0.8]}))
    rows = {r.run: r for r in load_runs(runs)}
    assert set(rows) == {ours.name, run.name}
    row = rows[run.name]
    assert (row.level, row.state, row.best_val_loss) == ("L4", "done", 1.2458)
    assert (row.prefix_mean_90, row.expected_tokens, row.speedup, row.eval_source) == (7.619, 4.606, 0.9391, "reference")
    table = run_cli("runs", runs).stdout
    assert "0.94" in table and "the reference's" in table


def test_the_seed_pipeline_runs_unchanged_and_its_lookups_find_each_run(tmp_path, tiny_data):
    """auto_train_pipeline.sh's training loop, and the seed's Usage commands, with only the script
    name changed (tiny data, so its epochs and batch sizes are cut)."""
    ckpt, exe = tmp_path / "tasks", [str(Path(sys.executable).with_name("adapter-engine")), "train"]
    script = tmp_path / "pipeline.sh"
    script.write_text(f"""#!/bin/bash
set -e
TRAIN_DATA="{tiny_data / 'train'}"
TEST_DATA="{tiny_data / 'val'}"
CHECKPOINT_DIR="{ckpt}"
train_adapter() {{
    local LEVEL=$1 EPOCHS=$2 BATCH=$3
    {' '.join(exe)} \\
        --train_data "$TRAIN_DATA" \\
        --val_data "$TEST_DATA" \\
        --adapter_level $LEVEL \\
        --num_epochs $EPOCHS \\
        --batch_size $BATCH \\
        --output_dir "$CHECKPOINT_DIR/L${{LEVEL}}"
}}
find_ckpt() {{
    CKPT=$(ls -t "$CHECKPOINT_DIR/L$1/"*"/best_model.pt" 2>/dev/null | head -1)
    [ -n "$CKPT" ] || {{ echo "ERROR: No checkpoint found for L$1"; exit 1; }}
    echo "L$1 $CKPT"
}}
train_adapter 1 2 64
find_ckpt 1
train_adapter 2 2 64
find_ckpt 2
train_adapter 3 2 32
find_ckpt 3
train_adapter 4 1 16
find_ckpt 4
train_adapter 5 1 16
find_ckpt 5
# the seed's B1 command
{' '.join(exe)} --train_data "$TRAIN_DATA" --val_data "$TEST_DATA" --adapter_level 5 --vlm_only --num_epochs 1 \\
    --batch_size 64 --output_dir "$CHECKPOINT_DIR/B1"
ls -t "$CHECKPOINT_DIR/B1/"*"/best_model.pt" | head -1
""")
    out = subprocess.run(["bash", str(script)], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    found = dict(line.split(" ", 1) for line in out.stdout.splitlines() if line[:2] in ("L1", "L2", "L3", "L4", "L5")
                 and line.endswith("best_model.pt"))
    assert set(found) == {"L1", "L2", "L3", "L4", "L5"}
    for level, path in found.items():
        assert Path(path).parent.name.startswith(f"{level}_") and Path(path).parent.parent == ckpt / level
    assert out.stdout.strip().splitlines()[-1].startswith(str(ckpt / "B1" / "B1_"))
    params = json.loads((Path(found["L3"]).parent / "config.json").read_text())["adapter"]["params"]
    assert params == 3 * (64 * 1024 + 2 * 1024 + 1024 * 64 + 1) + 4 * 64  # three wide blocks at H=64


def test_checkpoint_describes_a_reference_checkpoint(tmp_path, tiny_data):
    run = reference_run(tmp_path, tiny_data, "L5")
    out = run_cli("checkpoint", run, "--json")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert (info["format"], info["level"], info["class"], info["epoch"]) == ("reference", "L5", "EAGLEAdapter", 7)
    assert info["metrics"]["accept_90"] == 0.25 and info["init_kwargs"]["max_seq_len"] == 512
    text = run_cli("checkpoint", run / "best_model.pt").stdout
    assert "the reference's checkpoint of L5 (EAGLEAdapter)" in text

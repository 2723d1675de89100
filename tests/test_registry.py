"""adapters.toml: defaults, presets, datasets, and one clear error per kind of mistake."""

import json
import subprocess

import pytest

from common.errors import ConfigError
from adapters.registry import build_adapter, load_registry
from support import ROOT

BASE = '[levels.L1]\nclass = "BottleneckAdapter"\n'


def write(tmp_path, text):
    path = tmp_path / "adapters.toml"
    path.write_text(text)
    return path


def test_shipped_registry(registry):
    assert list(registry.levels) == ["L1", "L2", "L3", "L4", "L5", "B1", "L5F"]
    assert registry.presets["all"] == ["L1", "L2", "L3", "L4", "L5", "B1", "L5F"]
    assert registry.level("L4").train == {"num_epochs": 300, "batch_size": 64, "learning_rate": 1e-3, "early_stopping": 50}
    assert registry.level("L5").train["num_epochs"] == 100
    assert registry.level("B1").train["num_epochs"] == 50 and registry.level("B1").vlm_only
    assert registry.level("L1").train == {"num_epochs": 50, "batch_size": 64, "learning_rate": 1e-3, "early_stopping": 10}
    assert registry.level("L5F").consumes == "both"
    demo = registry.dataset("demo")
    assert demo.train.parts[-3:] == ("datasets", "demo", "train") and demo.val.name == "val"


@pytest.mark.parametrize("text, needle", [
    ("[levels.L1\nclass=", "not valid TOML"),
    ('[levels.L1]\nclass = "Nope"\n', "[levels.L1] class 'Nope' is unknown"),
    (BASE + "num_blocks = 'three'\n", "[levels.L1] num_blocks must be int"),
    (BASE + "learning_rate = true\n", "[levels.L1] learning_rate must be float"),
    (BASE + "colour = 1\n", "[levels.L1] unknown key 'colour'"),
    ('[levels."../x"]\nclass = "BottleneckAdapter"\n', "not a safe name"),
    ('[levels.L1]\nname = "x"\n', "[levels.L1] class is missing"),
    (BASE + "[presets]\nall = ['L9']\n", "[presets] all names unknown level 'L9'"),
    (BASE + "dropout = 1.5\n", "dropout must be in [0, 1)"),
    ("[levels]\n", "at least one level"),
])
def test_invalid_config_names_table_and_key(tmp_path, text, needle):
    with pytest.raises(ConfigError) as info:
        load_registry(write(tmp_path, text))
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


def test_heads_must_divide_hidden_size(tmp_path):
    reg = load_registry(write(tmp_path, '[levels.A]\nclass = "AttentionAdapter"\nnum_heads = 7\n'))
    with pytest.raises(ConfigError, match=r"\[levels.A\] num_heads = 7 does not divide hidden size 64"):
        build_adapter(reg.level("A"), 64)


def test_arch_key_the_class_does_not_take(tmp_path):
    reg = load_registry(write(tmp_path, BASE + "num_heads = 4\n"))
    with pytest.raises(ConfigError, match=r"\[levels.L1\] num_heads is not a setting of BottleneckAdapter"):
        build_adapter(reg.level("L1"), 64)


def test_levels_cli_json(python):
    out = subprocess.run([python, "-m", "engine", "levels", "--hidden_dim", "4096", "--json"],
                         capture_output=True, text=True, check=True, timeout=120)
    rows = json.loads(out.stdout)
    assert [r["key"] for r in rows] == ["L1", "L2", "L3", "L4", "L5", "B1", "L5F"]
    assert {r["key"]: r["params"] for r in rows}["L5F"] == 169_936_897
    assert all({"key", "name", "params", "consumes", "description"} <= set(r) for r in rows)


def test_levels_cli_bad_config_is_one_line_exit_2(tmp_path, python):
    path = write(tmp_path, '[levels.L1]\nclass = "Nope"\n')
    out = subprocess.run([python, "-m", "engine", "levels", "--config", str(path)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_register_dataset_appends_one_table_and_keeps_the_rest_of_the_file(tmp_path):
    from adapters.registry import register_dataset, register_problem

    config = tmp_path / "adapters.toml"
    original = (ROOT / "adapters.toml").read_text()
    config.write_text(original)
    odd = tmp_path / 'data "quoted" \\ dir'
    register_dataset(config, "mine", tmp_path / "runs" / "datasets" / "mine" / "train", odd / "val")
    text = config.read_text()
    assert text.startswith(original)
    entry = load_registry(config).dataset("mine")
    assert entry.train == tmp_path / "runs" / "datasets" / "mine" / "train"
    assert entry.val == odd / "val"
    assert 'train = "runs/datasets/mine/train"' in text  # under the file's directory: relative, as shipped
    assert "already in" in register_problem(config, "mine")
    assert "not a safe name" in register_problem(config, "../x")
    with pytest.raises(ConfigError, match="already in"):
        register_dataset(config, "mine", tmp_path, None)
    assert config.read_text() == text

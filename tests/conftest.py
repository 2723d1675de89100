import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "adapters.toml"

# Tests run with the repository's adapters.toml whatever the working directory.
os.environ.setdefault("ADAPTER_TUI_CONFIG", str(CONFIG))


@pytest.fixture
def registry():
    from adapters.registry import load_registry

    return load_registry(CONFIG)


@pytest.fixture
def python():
    return sys.executable


def run_cli(*argv, check=False, timeout=300, env=None, cwd=None):
    """Run `python -m engine ARGV` in a subprocess; returns CompletedProcess (text)."""
    import subprocess

    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "engine", *map(str, argv)], capture_output=True, text=True,
                          timeout=timeout, env=full_env, cwd=cwd or ROOT, check=check)


def make_synth(out, **kw):
    from engine.data.synth import SynthConfig, synthesize

    defaults = dict(samples=192, val_samples=64, hidden_dim=64, max_seq=12, chunk_size=64, seed=0)
    defaults.update(kw)
    lm_head = defaults.pop("lm_head", False)
    return synthesize(Path(out), SynthConfig(**defaults), lm_head=lm_head, force=True)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """Three 64-sample train chunks and one val chunk at hidden 64 (and an LM head)."""
    return make_synth(tmp_path_factory.mktemp("tiny"), lm_head=True)

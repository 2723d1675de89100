"""Helpers shared by the engine tests (a module of its own: `conftest` names are ambiguous
once tests/tui has a conftest too)."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*argv, check=False, timeout=300, env=None, cwd=None):
    """Run `python -m engine ARGV` in a subprocess; returns CompletedProcess (text)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "engine", *map(str, argv)], capture_output=True, text=True,
                          timeout=timeout, env=full_env, cwd=cwd or ROOT, check=check)


def make_synth(out, **kw):
    from engine.data.synth import SynthConfig, synthesize

    defaults = dict(samples=192, val_samples=64, hidden_dim=64, max_seq=12, chunk_size=64, seed=0)
    defaults.update(kw)
    lm_head = defaults.pop("lm_head", False)
    return synthesize(Path(out), SynthConfig(**defaults), lm_head=lm_head, force=True)


def epochs_recorded(runs_root: Path) -> int:
    """Epochs in the first history.json under runs_root/<LEVEL>/<RUN>/ (0 if none or unreadable yet)."""
    import json

    for path in Path(runs_root).glob("*/*/history.json"):
        try:
            return len(json.loads(path.read_text())["val_loss"])
        except (ValueError, KeyError):
            return 0
    return 0


def wait_for(predicate, timeout=120.0, step=0.05):
    """Poll `predicate` until it returns something truthy (returned), or fail after `timeout` s
    (a guard against a hang, not a bound on speed: CI machines are loaded)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError("timed out waiting")

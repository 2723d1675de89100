"""Real terminal, end to end: adapter-tui in tmux on demo data; queue L1 for three epochs with
the keyboard; the leaderboard shows epoch >= 1; quit; training goes on and the run ends done."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tui_support import CONFIG, ROOT

pytestmark = pytest.mark.slow


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, timeout=30).stdout


def screen(session: str) -> str:
    return tmux("capture-pane", "-p", "-t", session)


def wait_screen(session: str, pattern: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = screen(session)
        if re.search(pattern, text):
            return text
        time.sleep(0.3)
    raise AssertionError(f"{pattern!r} never appeared; screen:\n{text}")


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
def test_tmux_queue_l1_quit_and_training_goes_on(tmp_path):
    runs = tmp_path / "runs"
    config = tmp_path / "adapters.toml"
    shutil.copy(CONFIG, config)
    # the demo's full size: an epoch lasts long enough to be seen running (256 samples took 0.1 s)
    subprocess.run([sys.executable, "-m", "engine", "synth", str(runs / "datasets" / "demo")],
                   check=True, capture_output=True, timeout=300, cwd=ROOT)
    exe = str(Path(sys.executable).with_name("adapter-tui"))
    session = f"adapter-tui-test-{tmp_path.name}"[-40:].replace(".", "-")
    tmux("new-session", "-d", "-s", session, "-x", "100", "-y", "30", "-c", str(ROOT),
         exe, "--runs", str(runs), "--config", str(config))
    try:
        wait_screen(session, r"Runs 1.*Launch 2.*Queue 3", 30)
        tmux("send-keys", "-t", session, "2")
        wait_screen(session, r"Hyperparameters", 15)  # the Levels heading may be scrolled out at 30 rows
        time.sleep(1.0)
        tmux("send-keys", "-t", session, "Tab")
        time.sleep(0.5)
        tmux("send-keys", "-t", session, "3")
        time.sleep(0.5)
        tmux("send-keys", "-t", session, "C-s")
        # back on the Runs tab; the new run shows up and trains
        wait_screen(session, r"L1_\d{8}_\d{6}", 120)
        wait_screen(session, r"running\s+[123]/3", 300)
        tmux("send-keys", "-t", session, "q")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and session in tmux("ls"):
            time.sleep(0.3)
        assert session not in tmux("ls"), "adapter-tui did not quit"
        # training goes on without the TUI and ends done
        from engine.rundir.summary import load_runs

        deadline = time.monotonic() + 600
        state = None
        while time.monotonic() < deadline:
            rows = load_runs(runs)
            state = rows[0].state if rows else None
            if state in ("done", "failed", "diverged", "cancelled", "interrupted"):
                break
            time.sleep(1)
        assert state == "done", rows[0].as_dict() if rows else "no run"
        assert rows[0].epochs_done == 3
    finally:
        if session in tmux("ls"):
            tmux("kill-session", "-t", session)

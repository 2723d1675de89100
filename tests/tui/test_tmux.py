"""Real terminal, end to end: adapter-tui in tmux on demo data at 80x24; queue L1 for three
epochs with the keyboard; the leaderboard shows epoch >= 1; quit; training goes on and the run
ends done. And the layout at 80x24 and 160x48: header, tabs, keys from a text field, footer."""

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


# The app takes its size from the terminal, but COLUMNS/LINES in the environment (pytest's own
# terminal, passed on by the tmux server) would override it.
APP_ENV = ("env", "-u", "COLUMNS", "-u", "LINES")


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, timeout=30).stdout


def screen(session: str) -> str:
    return tmux("capture-pane", "-p", "-t", session)


PATIENCE = 120  # seconds before a wait gives up: a guard against a hang, not a bound on speed


def wait_screen(session: str, pattern: str, timeout: float = PATIENCE) -> str:
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = screen(session)
        if re.search(pattern, text):
            return text
        time.sleep(0.1)
    raise AssertionError(f"{pattern!r} never appeared; screen:\n{text}")


def settle(session: str) -> str:
    """Wait until the app has drawn its answer to the keys sent: the screen holds still."""
    deadline = time.monotonic() + PATIENCE
    before = screen(session)
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = screen(session)
        if now == before:
            return now
        before = now
    raise AssertionError(f"the screen never settled:\n{before}")


def wait_gone(session: str) -> None:
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline and session in tmux("ls"):
        time.sleep(0.1)
    assert session not in tmux("ls"), "adapter-tui did not quit"


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
    tmux("new-session", "-d", "-s", session, "-x", "80", "-y", "24", "-c", str(ROOT),
         *APP_ENV, exe, "--runs", str(runs), "--config", str(config))
    try:
        wait_screen(session, r"Runs 1.*Launch 2.*Queue 3")
        tmux("send-keys", "-t", session, "2")
        wait_screen(session, r"Start now")
        settle(session)  # the form is filled in
        tmux("send-keys", "-t", session, "Tab")
        settle(session)
        tmux("send-keys", "-t", session, "3")
        settle(session)
        tmux("send-keys", "-t", session, "C-s")
        # back on the Runs tab; the new run shows up and trains
        wait_screen(session, r"L1_\d{8}_\d{6}")
        wait_screen(session, r"running\s+[123]/3", 300)
        tmux("send-keys", "-t", session, "q")
        wait_gone(session)
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


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
def test_tmux_layout_and_keys(tmp_path, size):
    from tui_support import make_eval, make_run

    runs = tmp_path / "runs"
    config = tmp_path / "adapters.toml"
    shutil.copy(CONFIG, config)
    for part in ("train", "val"):
        (runs / "datasets" / "demo" / part).mkdir(parents=True)
    make_eval(make_run(runs, "L1", "L1_20261127_101010"), [0.9, 0.7, 0.5])
    make_run(runs, "L5F", "L5F_20261127_121212", state="diverged")
    exe = str(Path(sys.executable).with_name("adapter-tui"))
    session = f"adapter-tui-layout-{size[0]}-{tmp_path.name}"[-40:].replace(".", "-")
    tmux("new-session", "-d", "-s", session, "-x", str(size[0]), "-y", str(size[1]), "-c", str(tmp_path),
         *APP_ENV, exe, "--config", str(config))  # no --runs: found beside adapters.toml
    try:
        text = wait_screen(session, r"L5F_20261127_121212")
        lines = text.splitlines()
        assert f"runs {runs} (beside the project's adapters.toml)" in lines[0] or (
            size[0] < 160 and f"runs {runs}" in lines[0]), text[:600]
        assert lines[1].split()[:6] == ["Runs", "1", "Launch", "2", "Queue", "3"]
        assert "est.×" in text and "2.07x" in text, text  # the compact columns fit 80
        assert lines[-1].rstrip().endswith("palette")
        tmux("send-keys", "-t", session, "2")
        wait_screen(session, r"Start now \^s")
        settle(session)
        tmux("send-keys", "-t", session, "Tab")
        settle(session)
        tmux("send-keys", "-t", session, "7", "q")  # typed into the epochs field: no quit
        wait_screen(session, r"7q")
        assert session in tmux("ls")
        tmux("send-keys", "-t", session, "F3")  # a tab switch from the field
        wait_screen(session, r"worker:|no queue yet")
        tmux("send-keys", "-t", session, "Escape")
        settle(session)
        tmux("send-keys", "-t", session, "?")
        wait_screen(session, r"In a text field keys type")
        tmux("send-keys", "-t", session, "Escape")
        settle(session)
        tmux("send-keys", "-t", session, "q")
        wait_gone(session)
    finally:
        if session in tmux("ls"):
            tmux("kill-session", "-t", session)

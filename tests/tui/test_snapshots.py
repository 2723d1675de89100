"""Snapshots (pytest-textual-snapshot) of the Runs, Launch, Queue, help and acceptance views at
80x24 and 160x48, on fixed data: the runs lie in a fixed directory (the header shows it), their
times are written into the files, and the engine is the tests' fake backend. Each view is taken
once the app says it is ready (rows read, plots drawn), never after a fixed sleep.

After an intended change of the screen: `pytest tests/tui/test_snapshots.py --snapshot-update`,
then look at the SVGs in __snapshots__ before committing them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from tui_support import CONFIG, FakeBackend, make_eval, make_run, make_seed_run, wait_for

from common.fileio import write_json

ROOT = Path("/tmp/adapter-tui-snapshots")
SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((160, 48), id="160x48")]


@pytest.fixture
def world() -> tuple[Path, Path, FakeBackend]:
    shutil.rmtree(ROOT, ignore_errors=True)
    runs = ROOT / "runs"
    for part in ("train", "val"):
        (runs / "datasets" / "demo" / part).mkdir(parents=True)
    config = ROOT / "adapters.toml"
    shutil.copy(CONFIG, config)
    done = make_run(runs, "L1", "L1_20261127_101010", epochs_done=3, epochs=3)
    make_eval(done, [0.92, 0.81, 0.66, 0.47, 0.3, 0.18, 0.09], top=True)
    live = make_run(runs, "L4", "L4_20261127_111111", epochs_done=2, epochs=5, state="running", start=0.8)
    write_json(live / "status.json", {"state": "running", "host": "elsewhere", "epoch": 2, "num_epochs": 5,
                                      "step": 40, "steps_per_epoch": 100, "running_loss": 0.4123,
                                      "tokens_per_s": 183000.0, "eta_s": 1260, "device": "cuda:0"})
    bad = make_run(runs, "L5F", "L5F_20261127_121212", epochs_done=1, epochs=5, state="diverged", start=1.2)
    write_json(bad / "status.json", {"state": "diverged", "error": "diverged: non-finite loss at epoch 1 step 2",
                                     "epoch": 1, "num_epochs": 5})
    make_seed_run(runs)
    backend = FakeBackend(runs)
    q = backend.queue
    q.add_many([("L4", {"num_epochs": 5}), ("L5", {"num_epochs": 40}), ("B1", {"num_epochs": 40})])
    q.job_list[0].state, q.job_list[0].position, q.job_list[0].run_dir = "running", None, str(live)
    q.job_list[0].gpus = "0"
    q._renumber()
    yield runs, config, backend
    shutil.rmtree(ROOT, ignore_errors=True)


def app_of(world):
    from tui.app import make_app

    runs, config, backend = world
    return make_app(runs, config, backend=backend)


async def _runs_ready(pilot) -> None:
    main = pilot.app.main
    assert await wait_for(pilot, lambda: main.leaderboard.table.row_count == 4)
    assert await wait_for(pilot, lambda: main.curves.redraws > 0 and main.curves.drawn_history)
    await pilot.wait_for_scheduled_animations()


@pytest.mark.parametrize("size", SIZES)
def test_runs(snap_compare, world, size):
    assert snap_compare(app_of(world), terminal_size=size, run_before=_runs_ready)


@pytest.mark.parametrize("size", SIZES)
def test_acceptance(snap_compare, world, size):
    async def run_before(pilot) -> None:
        await _runs_ready(pilot)
        pilot.app.main.leaderboard.select_path(str(ROOT / "runs" / "L1" / "L1_20261127_101010"))
        await pilot.press("p")
        panel = lambda: pilot.app.main.runs_pane.query_one("#accept-panel")  # noqa: E731
        assert await wait_for(pilot, lambda: panel().drawn)
        await pilot.wait_for_scheduled_animations()
    assert snap_compare(app_of(world), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_launch(snap_compare, world, size):
    async def run_before(pilot) -> None:
        await _runs_ready(pilot)
        await pilot.press("2")
        form = lambda: pilot.app.main.launch.form  # noqa: E731
        assert await wait_for(pilot, lambda: form().dataset_ok and form().widths == (64, 64) and form().params)
        await pilot.wait_for_scheduled_animations()
    assert snap_compare(app_of(world), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_queue(snap_compare, world, size):
    async def run_before(pilot) -> None:
        await _runs_ready(pilot)
        await pilot.press("3")
        assert await wait_for(pilot, lambda: pilot.app.main.queue_panel.table.row_count == 3)
        await pilot.wait_for_scheduled_animations()
    assert snap_compare(app_of(world), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_help(snap_compare, world, size):
    async def run_before(pilot) -> None:
        await _runs_ready(pilot)
        await pilot.press("question_mark")
        assert await wait_for(pilot, lambda: pilot.app.screen.query("#help-table"))
        await pilot.wait_for_scheduled_animations()
    assert snap_compare(app_of(world), terminal_size=size, run_before=run_before)

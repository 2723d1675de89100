"""Launch panel: defaults, validation, dataset inspection, start now / add / preset, fork, first run."""

from __future__ import annotations

import shutil

from tui_support import CONFIG, make_run, screen_text, wait_for
from textual.widgets import Input


def field(app, name):
    return app.main.launch.query_one(f"#f-{name}", Input)


async def test_keyboard_queue_l1_for_three_epochs(runs, app_factory, backend):
    app = app_factory()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("2")
        assert app.main.query_one("#tabs").active == "launch"
        assert await wait_for(pilot, lambda: field(app, "num_epochs").value == "50")  # L1's default
        await pilot.press("tab")
        assert app.focused is field(app, "num_epochs")
        await pilot.press("3", "ctrl+s")
        assert await wait_for(pilot, lambda: backend.queue.job_list)
        job = backend.queue.job_list[0]
        assert job.level == "L1" and job.settings["num_epochs"] == 3 and job.dataset == "demo"
        assert job.settings["train_data"].endswith("datasets/demo/train")
        assert backend.queue.calls[0][2] is True  # front
        assert backend.workers_started == 1
        assert await wait_for(pilot, lambda: app.main.query_one("#tabs").active == "runs")


async def test_validation_and_dataset_inspection(runs, app_factory, backend):
    app = app_factory()
    async with app.run_test(size=(120, 48)) as pilot:
        await pilot.press("2")
        launch = app.main.launch
        field(app, "num_epochs").value = "zero"
        field(app, "learning_rate").value = "-1"
        launch.action_submit(False)
        assert await wait_for(pilot, lambda: "epochs: must be an integer" in (text := screen_text(app))
                              and "learning rate: must be > 0" in text)
        assert not backend.queue.job_list
        # a typed path is inspected in a worker: error inline, then a good one with its hidden size
        launch.query_one("#data-path", Input).value = "/nowhere/bad"
        assert await wait_for(pilot, lambda: "not a dataset" in screen_text(app))
        launch.query_one("#data-path", Input).value = "/some/good/data"
        assert await wait_for(pilot, lambda: "100 samples" in screen_text(app))
        assert await wait_for(pilot, lambda: launch.form.widths == (64, 64) and launch.form.params)
        assert "params at H=64" in screen_text(app)
        field(app, "num_epochs").value = "2"
        field(app, "learning_rate").value = "0.01"
        field(app, "bottleneck_dim").value = "32"
        await pilot.press("ctrl+o")
        assert await wait_for(pilot, lambda: backend.queue.job_list)
        request = backend.requests[0]  # only what differs from L1's defaults, as queue add's flags
        assert request.fields == {"train_data": "/some/good/data", "num_epochs": 2, "learning_rate": 0.01,
                                  "bottleneck_dim": 32} | ({"val_data": request.fields["val_data"]}
                                                           if "val_data" in request.fields else {})
        assert request.levels == ["L1"] and request.dataset is None and request.front is False


async def test_preset_queues_every_level_with_its_own_defaults(runs, app_factory, backend):
    app = app_factory()
    async with app.run_test(size=(120, 48)) as pilot:
        await pilot.press("2")
        assert await wait_for(pilot, lambda: field(app, "num_epochs").value == "50")  # the form is mounted
        await pilot.press("ctrl+l")
        assert await wait_for(pilot, lambda: len(backend.queue.job_list) == 7)
        by_level = {j.level: j for j in backend.queue.job_list}
        assert by_level["L4"].settings["num_epochs"] == 300 and by_level["L1"].settings["num_epochs"] == 50


async def test_fork_copies_settings(runs, app_factory):
    make_run(runs, "L1", "L1_src", batch_note=None)
    app = app_factory()
    async with app.run_test(size=(120, 48)) as pilot:
        assert await wait_for(pilot, lambda: app.main.leaderboard.table.row_count == 1)
        assert await wait_for(pilot, lambda: app.main.cache)
        await pilot.press("f")
        assert await wait_for(pilot, lambda: app.main.query_one("#tabs").active == "launch")
        assert field(app, "num_epochs").value == "3" and field(app, "batch_size").value == "8"
        assert app.main.launch.query_one("#data-path", Input).value == "/data/train"
        assert app.main.launch.form.selected_levels() == ["L1"]


async def test_fork_copies_every_setting_of_the_form(runs, app_factory):
    """Ours record every setting in config.json's settings: precision, device and seed included."""
    from engine.settings import TRAIN_FIELDS
    from tui.widgets.launch import RUN_FIELDS

    settings = {"num_epochs": 7, "batch_size": 16, "learning_rate": 0.0003, "early_stopping": 4, "seed": 11,
                "device": "cpu", "precision": "bf16", "train_data": "/data/train"}
    assert set(TRAIN_FIELDS + RUN_FIELDS) <= set(settings)  # a new form field must be forked too
    make_run(runs, "L1", "L1_src", settings=settings)
    app = app_factory()
    async with app.run_test(size=(120, 48)) as pilot:
        assert await wait_for(pilot, lambda: app.main.leaderboard.table.row_count == 1)
        assert await wait_for(pilot, lambda: app.main.cache)
        await pilot.press("f")
        assert await wait_for(pilot, lambda: app.main.query_one("#tabs").active == "launch")
        assert await wait_for(pilot, lambda: field(app, "precision").value == "bf16")
        got = {name: field(app, name).value for name in TRAIN_FIELDS + RUN_FIELDS}
        assert got == {"num_epochs": "7", "batch_size": "16", "learning_rate": "0.0003", "early_stopping": "4",
                       "seed": "11", "device": "cpu", "precision": "bf16"}


async def test_first_run_offers_demo_in_one_keystroke(tmp_path, runs, backend):
    from tui.app import make_app

    config = tmp_path / "adapters.toml"
    shutil.copy(CONFIG, config)  # demo dataset resolves under tmp_path/runs/datasets: missing
    backend.require_existing = True  # so inspecting it fails, as for real (a pass would end the offer)
    app = make_app(runs, config, backend=backend)
    async with app.run_test(size=(80, 24)) as pilot:
        assert await wait_for(pilot, lambda: app.main.launch.form.has_class("-first-run"))
        assert app.main.query_one("#tabs").active == "launch"
        assert await wait_for(pilot, lambda: "demo" in screen_text(app))
        await pilot.press("enter")
        assert await wait_for(pilot, lambda: backend.queue.job_list)
        job = backend.queue.job_list[0]
        assert job.level == "L1" and job.dataset == "demo"
        assert (tmp_path / "runs" / "datasets" / "demo" / "train").is_dir()
        assert await wait_for(pilot, lambda: app.main.query_one("#tabs").active == "runs")
        # the run the worker creates gets selected automatically
        make_run(runs, "L1", "L1_20990101_000000", epochs_done=1, state="running")
        assert await wait_for(pilot, lambda: app.main.selected and app.main.selected.endswith("L1_20990101_000000"))


async def test_architecture_placeholders_follow_the_first_selected_level(runs, app_factory, backend):
    from textual.widgets import SelectionList

    app = app_factory()
    async with app.run_test(size=(120, 48)) as pilot:
        await pilot.press("2")
        assert await wait_for(pilot, lambda: field(app, "bottleneck_dim").placeholder == "256")
        assert field(app, "num_heads").placeholder == "—"  # L1 has no attention
        levels = app.main.launch.query_one("#levels", SelectionList)
        levels.deselect("L1")
        levels.select("L4")
        assert await wait_for(pilot, lambda: field(app, "num_heads").placeholder == "8")
        assert field(app, "bottleneck_dim").placeholder == "—"


def test_the_app_queues_through_the_engines_own_planning(tmp_path):
    """The real backend submits with `queue add`: the engine's checks apply, and the job holds
    validated settings (each level's defaults where the form left a field alone)."""
    import pytest

    from engine.queue import JobQueue
    from support import make_synth
    from tui.backend import Backend, BackendError
    from tui.widgets.launch import LaunchRequest

    data = make_synth(tmp_path / "data", samples=32, val_samples=8, hidden_dim=16, max_seq=6, chunk_size=32)
    runs = tmp_path / "runs"
    backend = Backend(runs, CONFIG)
    backend.ensure_worker = lambda: None  # queue only: no worker for this test
    fields = {"train_data": str(data / "train"), "val_data": str(data / "val"), "num_epochs": 2}
    ids = backend.submit(LaunchRequest(["L1", "L4"], fields, front=False, dataset=None))
    with JobQueue(runs) as q:
        jobs = [q.get(i) for i in ids]
    assert [j.settings["num_epochs"] for j in jobs] == [2, 2]
    assert [j.settings["early_stopping"] for j in jobs] == [10, 50]  # each level's own default
    assert jobs[0].settings["train_data"] == str((data / "train").resolve())
    with pytest.raises(BackendError, match="--num_epochs must be >= 1"):
        backend.submit(LaunchRequest(["L1"], {**fields, "num_epochs": 0}, front=False, dataset=None))

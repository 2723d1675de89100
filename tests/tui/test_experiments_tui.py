"""Experiment depth in the app: the sweep form, sweeps grouped in the leaderboard, which settings
matter, curves against steps and wall time, a running run's system use, the GPUs' use in the
Queue tab, and a fork that starts from the forked run's weights."""

from __future__ import annotations

import json

from textual.widgets import Checkbox, Input
from tui_support import FakeWorkerStatus, make_run, screen_text, wait_for

from common.fileio import write_json


def board(app):
    return app.main.leaderboard


def sweep_run(runs, name: str, lr: float, batch: int, loss: float, sweep: str = "sweep_a"):
    run = make_run(runs, "L1", name, start=loss)
    config = json.loads((run / "config.json").read_text())
    config.update(sweep=sweep, settings={"learning_rate": lr, "batch_size": batch, "seed": 0})
    write_json(run / "config.json", config)
    return run


async def test_the_sweep_form_queues_the_grid(runs, app_factory, backend):
    app = app_factory()
    async with app.run_test(size=(120, 48)) as pilot:
        await pilot.press("2")
        assert await wait_for(pilot, lambda: app.main.launch.form.dataset_ok)
        form = app.main.launch.form
        form.query_one("#s-learning_rate", Input).value = "1e-4,1e-3"
        form.query_one("#s-batch_size", Input).value = "32,64"
        await pilot.press("ctrl+o")
        assert await wait_for(pilot, lambda: len(backend.queue.job_list) == 4)
        request = backend.requests[0]
        assert request.sweep == ["learning_rate=1e-4,1e-3", "batch_size=32,64"] and request.sweep_random is None
        assert "learning_rate" not in request.fields and "batch_size" not in request.fields
        assert {(j.settings["learning_rate"], j.settings["batch_size"]) for j in backend.queue.job_list} == {
            (lr, b) for lr in (1e-4, 1e-3) for b in (32, 64)}
        await pilot.press("2")
        form.query_one("#s-learning_rate", Input).value = "1e-5:1e-2"  # a range needs random points
        form.query_one("#s-batch_size", Input).value = "0,64"
        app.main.launch.action_submit(False)
        assert await wait_for(pilot, lambda: "sweep batch_size" in screen_text(app))
        assert len(backend.requests) == 1


async def test_sweeps_group_in_the_leaderboard_and_the_settings_pane_ranks_them(runs, app_factory):
    for i, (lr, batch, loss) in enumerate(((1e-4, 32, 0.9), (1e-3, 32, 0.5), (1e-2, 32, 0.3), (1e-3, 64, 0.55))):
        sweep_run(runs, f"L1_2026112{i}_000000", lr, batch, loss)
    make_run(runs, "L1", "L1_alone", start=0.4)
    app = app_factory()
    async with app.run_test(size=(160, 48)) as pilot:
        assert await wait_for(pilot, lambda: board(app).table.row_count == 5)
        names = [r.run for r in board(app).visible()]
        assert names.index("L1_alone") in (0, 4)  # never between the sweep's runs
        assert "sweep" in [k for k, _, _ in board(app)._columns]
        await pilot.press("G")
        assert [r.run for r in board(app).visible()][1] == "L1_alone"  # ungrouped: plain best-first order
        await pilot.press("G")
        board(app).select_path(str(runs / "L1" / "L1_20261122_000000"))
        await pilot.press("h")
        panel = lambda: app.main.runs_pane.query_one("#hparams-panel")  # noqa: E731
        assert await wait_for(pilot, lambda: panel().effects)
        assert [e.name for e in panel().effects] == ["learning_rate", "batch_size"]
        assert await wait_for(pilot, lambda: "sweep sweep_a: 4 runs" in screen_text(app))
        assert "best_val_loss vs learning_rate" in screen_text(app)
        await pilot.press("y")
        assert await wait_for(pilot, lambda: panel().metric == "accept_90")


async def test_curves_against_steps_and_time_and_the_system_use_of_a_running_run(runs, app_factory):
    run = make_run(runs, "L1", "L1_live", state="running")
    write_json(run / "status.json", {"state": "running", "host": "elsewhere", "epoch": 2, "num_epochs": 3,
                                     "step": 5, "steps_per_epoch": 10, "system": {
                                         "cpu_percent": 180.0, "rss_mb": 2048.0, "gpu_util": 91.0,
                                         "gpu_mem_used_mb": 30720.0, "gpu_mem_total_mb": 81920.0,
                                         "gpu_power_w": 300.0}})
    lines = [{"step": s, "epoch": s / 10, "elapsed_s": 6.0 * s, "train_loss": 1.0 / s, "gpu_util": 80.0 + s}
             for s in range(1, 21)]
    (run / "steps.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    app = app_factory()
    async with app.run_test(size=(120, 40)) as pilot:
        curves = lambda: app.main.curves  # noqa: E731
        assert await wait_for(pilot, lambda: len(curves().steps) == 20)
        assert await wait_for(pilot, lambda: "gpu 91% 30.0/80 GB 300 W" in screen_text(app))
        assert "cpu 180%" in screen_text(app) and curves().query_one("#spark").data[-1] == 100.0
        await pilot.press("x")
        assert curves().x_axis == "step"
        assert await wait_for(pilot, lambda: "train (steps)" in screen_text(app))
        await pilot.press("x")
        assert curves().x_axis == "time"
        assert await wait_for(pilot, lambda: "minutes" in screen_text(app))
        with open(run / "steps.jsonl", "a") as f:  # new lines arrive live, read from where we were
            f.write(json.dumps({"step": 21, "epoch": 2.1, "elapsed_s": 126.0, "train_loss": 0.04}) + "\n")
        assert await wait_for(pilot, lambda: len(curves().steps) == 21)
        await pilot.press("x")
        assert curves().x_axis == "epoch"


async def test_the_queue_tab_shows_each_gpus_use(runs, app_factory, backend):
    status = FakeWorkerStatus(alive=True, pid=4242, host="here", gpus="0,1", gpu_stats=[
        {"index": 0, "gpu_util": 97.0, "gpu_mem_used_mb": 40960.0, "gpu_mem_total_mb": 81920.0, "gpu_power_w": 410.0},
        {"index": 1, "gpu_util": 3.0, "gpu_mem_used_mb": 512.0, "gpu_mem_total_mb": 81920.0}])
    backend.queue.worker_status = lambda: status
    app = app_factory()
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.press("3")
        assert await wait_for(pilot, lambda: "GPU 0 97% 40.0/80 GB 410 W · GPU 1 3% 0.5/80 GB" in screen_text(app))


async def test_a_fork_can_start_from_the_forked_runs_best_weights(runs, app_factory, backend):
    source = make_run(runs, "L1", "L1_src")
    app = app_factory()
    async with app.run_test(size=(120, 48)) as pilot:
        assert await wait_for(pilot, lambda: app.main.cache)
        await pilot.press("f")
        assert await wait_for(pilot, lambda: app.main.query_one("#tabs").active == "launch")
        form = app.main.launch.form
        assert form.has_class("-forked")
        form.query_one("#init-from", Checkbox).value = True
        form.query_one("#data-path", Input).value = "/some/good/data"
        assert await wait_for(pilot, lambda: form.dataset_ok)
        await pilot.press("ctrl+o")
        assert await wait_for(pilot, lambda: backend.queue.job_list)
        assert backend.requests[0].fields["init_from"] == str(source)

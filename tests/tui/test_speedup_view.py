"""Measured speedup in the app: its own columns beside the labelled estimate, the estimated-vs-
measured view, the Measure action, and a toast when a measurement lands."""

from __future__ import annotations

from common.fileio import write_json
from engine.rundir.speculation import write_speculation
from tui.widgets.speedup import SpeedupPanel, verdict
from tui_support import make_eval, make_run, screen_text, wait_for


def _measured(run, speedup: float, tau: float, gamma: int = 5) -> None:
    write_speculation(run, {"gamma": gamma, "per_gamma": {str(gamma): {
        "speedup": speedup, "tau": tau, "draft_ms_per_token": 1.0, "verify_ms_per_step": 2.0,
        "baseline_tokens_per_s": 500.0, "greedy_parity": True}}})


def headers(app) -> list[str]:
    return [str(column.label) for column in app.main.leaderboard.table.columns.values()]


async def test_measured_columns_the_view_and_a_toast_when_a_measurement_lands(runs, app_factory):
    a = make_run(runs, "L1", "L1_20261201_000000")
    b = make_run(runs, "L4", "L4_20261201_000000")
    make_eval(a, [0.9, 0.8, 0.7])
    make_eval(b, [0.5, 0.2, 0.1])
    _measured(a, 1.31, 2.6)
    app = app_factory()
    async with app.run_test(size=(160, 48)) as pilot:
        assert await wait_for(pilot, lambda: app.main.leaderboard.table.row_count == 2)
        assert {"est.×", "meas.×", "τ"} <= set(headers(app))
        assert await wait_for(pilot, lambda: "1.31x" in screen_text(app) and "2.60" in screen_text(app))
        await pilot.press("w")
        assert await wait_for(pilot, lambda: "measured vs estimated" in screen_text(app))
        assert await wait_for(pilot, lambda: "1 run · the estimate is" in screen_text(app))
        _measured(b, 0.74, 1.4)  # a speculation ends while the app is open
        assert await wait_for(pilot, lambda: any("measured speedup 0.74x" in n.message for n in app._notifications))
        assert await wait_for(pilot, lambda: "2 runs · the estimate is" in screen_text(app))
        panel = app.query_one(SpeedupPanel)
        assert [p.run for p in panel.points] == ["L1_20261201_000000", "L4_20261201_000000"]  # best measured first
        assert "ranks them alike" in verdict(panel.points)  # the estimate puts L1 first too


async def test_the_compact_columns_show_the_measurement_at_80x24(runs, app_factory):
    run = make_run(runs, "L1", "L1_20261201_000000")
    make_eval(run, [0.9, 0.8, 0.7])
    _measured(run, 1.31, 2.6)
    app = app_factory()
    async with app.run_test(size=(80, 24)) as pilot:
        assert await wait_for(pilot, lambda: app.main.leaderboard.table.row_count == 1)
        assert headers(app)[-3:] == ["est.×", "meas.×", "τ"]
        assert await wait_for(pilot, lambda: "1.31x" in screen_text(app))


async def test_measure_queues_a_speculation_or_says_why_not(runs, app_factory, backend, tmp_path):
    data = tmp_path / "data" / "train"
    data.mkdir(parents=True)
    write_json(data / "index.json", {"extraction": {"drafter": "/m/d", "verifier": "/m/v", "prompts": "/p.jsonl",
                                                    "layer": -1}})
    extracted = make_run(runs, "L1", "L1_20261201_000000", settings={"train_data": str(data)})
    make_run(runs, "L2", "L2_20261201_000000")  # synthetic data: nothing to take the models from
    app = app_factory()
    async with app.run_test(size=(160, 48)) as pilot:
        assert await wait_for(pilot, lambda: app.main.leaderboard.table.row_count == 2)
        app.main.leaderboard.select_path(str(runs / "L2" / "L2_20261201_000000"))
        await pilot.press("M")
        assert await wait_for(pilot, lambda: any("give --drafter" in n.message for n in app._notifications))
        assert backend.queue.job_list == []
        app.main.leaderboard.select_path(str(extracted))
        await pilot.press("M")
        assert await wait_for(pilot, lambda: any("measuring the speedup of L1_20261201_000000 as job 1" in n.message
                                                 for n in app._notifications))
        (job,) = backend.queue.job_list
        assert job.level == "speculate" and job.settings["options"]["run"] == str(extracted)

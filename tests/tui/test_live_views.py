"""The app never shows a stale or misleading picture, and never dies of a refresh: columns
follow the data live, the queue table holds one row per job, and user-written strings cannot
take over the terminal."""

from __future__ import annotations

from tui_support import make_eval, make_run, screen_text, wait_for


def headers(app) -> list[str]:
    return [str(column.label) for column in app.main.leaderboard.table.columns.values()]


async def test_an_eval_json_written_while_the_app_is_open_adds_its_columns(runs, app_factory):
    run = make_run(runs, "L1", "L1_20261201_000000")
    app = app_factory()
    async with app.run_test(size=(160, 48)) as pilot:
        assert await wait_for(pilot, lambda: app.main.leaderboard.table.row_count == 1)
        assert "est.×" not in headers(app)
        make_eval(run, [0.9, 0.7, 0.5])
        assert await wait_for(pilot, lambda: "est.×" in headers(app))
        assert await wait_for(pilot, lambda: "est.×" in screen_text(app))


async def test_columns_follow_a_live_run_to_its_evaluation_at_80x24(runs, app_factory):
    from common.fileio import write_json
    app = app_factory()
    async with app.run_test(size=(80, 24)) as pilot:
        assert await wait_for(pilot, lambda: app.main.leaderboard.table is not None)
        run = make_run(runs, "L1", "L1_20261201_000000", state="running")
        assert await wait_for(pilot, lambda: app.main.leaderboard.table.row_count == 1)
        assert "est.×" not in headers(app)
        make_eval(run, [0.9, 0.7, 0.5])
        write_json(run / "status.json", {"state": "done", "epoch": 2, "num_epochs": 3})
        assert await wait_for(pilot, lambda: "est.×" in headers(app))

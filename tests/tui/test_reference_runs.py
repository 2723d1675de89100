"""The reference's run directories in the app: its layout beside ours, its evaluation figures
marked as its own, and its checkpoint described in the details pane."""

from __future__ import annotations

import pytest

from tui_support import make_reference_run, make_run, screen_text, wait_for
from engine.rundir.evaluation import load_eval, parse_reference_eval


def test_the_references_evaluation_files_become_a_marked_view(tmp_path):
    run = make_reference_run(tmp_path)
    data, view, problem = load_eval(run)
    assert problem is None and view.source == "reference" and view.tau == "0.9"
    assert view.by_position == pytest.approx([0.95, 0.85, 0.75, 0.65])  # position_stats.json: marginal
    assert (view.speedup, view.expected_at_gamma, view.gamma) == (0.9391, 4.606, 5)
    assert view.prefix == {"mean": 7.619, "median": 5.0} and view.thresholds == ["0.8", "0.85", "0.9", "0.95"]
    other, _ = parse_reference_eval(data, "0.8")
    assert other.by_position[0] == pytest.approx(0.99) and other.speedup is None
    (run / "position_stats.json").unlink()
    _, only_metrics, _ = load_eval(run)
    assert only_metrics.by_position == [0.95, 0.9, 0.8, 0.6] and only_metrics.thresholds == ["0.9"]


async def test_a_reference_run_sits_beside_ours_marked_as_the_references(runs, app_factory):
    make_run(runs, "L1", "L1_20261127_000000", start=2.0)
    run = make_reference_run(runs)
    app = app_factory()
    async with app.run_test(size=(160, 48)) as pilot:
        board = app.main.leaderboard
        assert await wait_for(pilot, lambda: board.table.row_count == 2)
        row = board.rows[str(run)]
        assert (row.level, row.state, row.eval_source) == ("L4", "done", "reference")
        assert board._cell(row, "speedup").plain == "0.94x†"
        assert "† the reference's figures" in screen_text(app)
        board.select_path(str(run))
        await pilot.press("p")
        assert await wait_for(pilot, lambda: "reference" in app.main.query_one("AcceptancePanel").title
                              or "†" in screen_text(app))
        assert "the reference's figures" in screen_text(app)


async def test_details_describe_the_selected_runs_checkpoint(runs, app_factory, backend):
    run = make_reference_run(runs)
    app = app_factory()
    async with app.run_test(size=(160, 48)) as pilot:
        assert await wait_for(pilot, lambda: app.main.leaderboard.table.row_count == 1)
        await pilot.press("i")
        assert await wait_for(pilot, lambda: "the reference's checkpoint" in screen_text(app))
        assert "AttentionAdapter" in screen_text(app) and backend.described == [str(run / "best_model.pt")]


async def test_a_reference_layout_run_updates_live(runs, app_factory):
    import json

    run = make_reference_run(runs)
    app = app_factory()
    async with app.run_test(size=(120, 36)) as pilot:
        board = app.main.leaderboard
        assert await wait_for(pilot, lambda: board.table.row_count == 1)
        history = json.loads((run / "history.json").read_text())
        history["val_loss"].append(0.01)
        (run / "history.json").write_text(json.dumps(history))
        assert await wait_for(pilot, lambda: board.rows[str(run)].best_val_loss == 0.01)

"""Leaderboard, curves, details, log tail: Pilot tests against run directories in tmp_path."""

from __future__ import annotations

import os

from tui_support import make_run, make_seed_run, screen_text, wait_for
from common.fileio import write_json


def rows(app):
    return app.main.leaderboard.table.row_count


async def test_leaderboard_lists_ours_and_seed_format(runs, app_factory):
    make_run(runs, "L1", "L1_20250101_000000", start=1.0)
    make_run(runs, "L3", "L3_20250101_000001", start=0.5, state="running")
    make_seed_run(runs)
    app = app_factory()
    async with app.run_test(size=(120, 40)) as pilot:
        assert await wait_for(pilot, lambda: rows(app) == 3)
        board = app.main.leaderboard
        # best val loss first; the seed run (0.8/4 = 0.2) wins
        assert [r.level for r in board.visible()] == ["L2", "L3", "L1"]
        text = screen_text(app)
        assert "L2_20240101_000000" in text and "done*" in text and "running" in text
        seed = next(r for r in board.rows.values() if r.seed_format)
        assert seed.epochs_done == 4 and seed.params == 6_324_227
        # best value per column is highlighted
        cell = board._cell(seed, "best_val_loss")
        assert "reverse" in cell.style
        # selecting the seed run plots its curves
        assert await wait_for(pilot, lambda: app.main.curves.drawn_history.get("val_loss", []) != [])
        assert len(app.main.curves.drawn_history["val_loss"]) == 4


async def test_sort_filter_and_keyboard(runs, app_factory):
    make_run(runs, "L1", "L1_a", start=1.0)
    make_run(runs, "L2", "L2_b", start=0.3)
    app = app_factory()
    async with app.run_test(size=(100, 30)) as pilot:
        assert await wait_for(pilot, lambda: rows(app) == 2)
        board = app.main.leaderboard
        await pilot.press("s")  # the next column shown (100 columns: the compact set)
        assert board.sort_key == "accept_90"
        assert "sort acc@.90" in screen_text(app)  # the column's header, not its internal name
        await pilot.press("S")
        assert board.reverse
        await pilot.press("slash", "L", "2")
        await pilot.pause()
        assert board.filter_text == "L2" and board.table.row_count == 1
        await pilot.press("escape")
        await pilot.pause()
        assert board.table.row_count == 2 and board.filter_text == ""


async def test_garbage_history_shows_error_and_app_keeps_running(runs, app_factory):
    good = make_run(runs, "L1", "L1_good")
    bad = make_run(runs, "L1", "L1_bad")
    (bad / "history.json").write_text("{not json")
    app = app_factory()
    async with app.run_test(size=(120, 30)) as pilot:
        assert await wait_for(pilot, lambda: rows(app) == 2)
        row = app.main.leaderboard.rows[str(bad)]
        assert row.error and "history.json is not valid JSON" in row.error
        assert "done!" in screen_text(app)  # the state cell flags it; the message is in the details
        # select it: the app keeps running, plots show no epochs, the details say what is wrong
        app.main.leaderboard.select_path(str(bad))
        assert await wait_for(pilot, lambda: app.main.selected == str(bad))
        assert "not valid JSON" in app.main.leaderboard.table.tooltip
        await pilot.press("i")
        assert await wait_for(pilot, lambda: "not valid JSON" in screen_text(app))
        # empty and half-written files, then a deleted directory
        (bad / "history.json").write_text("")
        (good / "status.json").write_text('{"state": "runn')
        import shutil

        shutil.rmtree(good)
        assert await wait_for(pilot, lambda: "deleted" in (app.main.leaderboard.rows[str(good)].error or ""))
        assert await wait_for(pilot, lambda: "empty" in (app.main.leaderboard.rows[str(bad)].error or ""))
        assert app.is_running


async def test_marks_overlay_details_diff_and_log_tail(runs, app_factory):
    make_run(runs, "L1", "L1_a", start=1.0)
    make_run(runs, "L1", "L1_b", start=0.5, training_note="x")
    app = app_factory()
    async with app.run_test(size=(160, 48)) as pilot:
        assert await wait_for(pilot, lambda: rows(app) == 2)
        main = app.main
        await pilot.press("space", "down", "space")
        assert await wait_for(pilot, lambda: len(main.curves.overlay) == 2)
        assert main.curves.has_class("-overlay")
        await pilot.press("m")
        assert main.curves.overlay_metric == "train_loss"
        await pilot.press("i")
        assert await wait_for(pilot, lambda: "training_note" in screen_text(app))
        assert "changed keys" in screen_text(app)
        # unmark one: details show the selected run's config again
        await pilot.press("space")
        assert await wait_for(pilot, lambda: "config" in screen_text(app) and "changed keys" not in screen_text(app))
        # log tail follows the selected run and sees appended lines live
        await pilot.press("t")
        selected = main.selected
        assert await wait_for(pilot, lambda: "epoch 2 done" in screen_text(app))
        with open(os.path.join(selected, "train.log"), "a") as log:
            log.write("epoch 3 done: val_loss 0.1\n")
        assert await wait_for(pilot, lambda: "epoch 3 done" in screen_text(app))
        # toggles
        await pilot.press("c", "g", "e")
        assert main.curves.log_y and main.curves.smooth


async def test_progress_of_running_run(runs, app_factory):
    run = make_run(runs, "L1", "L1_live", state="running")
    write_json(run / "status.json", {"state": "running", "pid": os.getpid(), "host": "x", "epoch": 2,
                                     "num_epochs": 3, "step": 7, "steps_per_epoch": 10, "running_loss": 0.321,
                                     "tokens_per_s": 2500.0, "eta_s": 75, "device": "cpu", "error": None})
    app = app_factory()
    async with app.run_test(size=(120, 30)) as pilot:
        assert await wait_for(pilot, lambda: "step 7/10" in screen_text(app))
        text = screen_text(app)
        assert "epoch 2/3" in text and "loss 0.3210" in text and "2.5k tok/s" in text and "ETA 1m15s" in text


async def test_notification_when_run_finishes_and_a_bell_only_when_asked(runs, app_factory):
    for bell in (False, True):
        run = make_run(runs, "L1", f"L1_fin_{bell}", state="running")
        app = app_factory(bell=bell)
        bells = []
        async with app.run_test(size=(100, 30)) as pilot:
            app.bell = lambda: bells.append(1)
            assert await wait_for(pilot, lambda: str(run) in app.main.leaderboard.rows)
            write_json(run / "status.json", {"state": "diverged", "error": "loss is NaN at epoch 3"})
            assert await wait_for(pilot, lambda: any("diverged" in n.message for n in app._notifications))
            assert bool(bells) is bell


async def test_live_updates_widen_columns_and_move_the_best_highlight(runs, app_factory):
    """Columns have fixed widths computed from the text (cells are not measured by the table):
    a longer value widens its column, and the best-value highlight follows a live improvement."""
    a = make_run(runs, "L1", "L1_a", start=1.0)
    b = make_run(runs, "L1", "L1_b", start=0.5, state="running")
    app = app_factory()
    from textual.widgets.data_table import ColumnKey

    async with app.run_test(size=(160, 40)) as pilot:
        assert await wait_for(pilot, lambda: rows(app) == 2)
        table = app.main.leaderboard.table
        width = lambda key: table.columns[ColumnKey(key)].width  # noqa: E731
        assert width("run") == len("L1_a") and width("level") == len("level")
        best = lambda path: "reverse" in table.get_cell(path, "best_val_loss").style  # noqa: E731
        assert best(str(b)) and not best(str(a))
        # a beats b: the highlight moves
        write_json(a / "history.json", {"val_loss": [0.1], "val_cos_sim": [0.9]})
        assert await wait_for(pilot, lambda: best(str(a)) and not best(str(b)))
        # b fails with a long error: the state cell says failed, the message goes to the tooltip and details
        write_json(b / "status.json", {"state": "failed", "error": "CUDA out of memory while allocating"})
        assert await wait_for(pilot, lambda: str(table.get_cell(str(b), "state")) == "failed!")
        assert width("state") == len("failed!"), width("state")
        app.main.leaderboard.select_path(str(b))
        assert await wait_for(pilot, lambda: "CUDA out of memory" in str(table.tooltip))

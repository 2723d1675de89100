"""The watcher: atomic writes (moves) reach the plot; new run directories appear; --poll works."""

from __future__ import annotations

import pytest

import support

from tui_support import history, make_run, wait_for
from common.fileio import write_json


@pytest.mark.parametrize("poll", [False, True], ids=["inotify", "poll"])
async def test_atomic_history_write_reaches_the_plot(runs, app_factory, poll):
    run = make_run(runs, "L1", "L1_watch", epochs_done=1, state="running")
    app = app_factory(poll=poll)
    async with app.run_test(size=(120, 36)) as pilot:
        curves = app.main.curves
        assert await wait_for(pilot, lambda: len(curves.drawn_history.get("val_loss", [])) == 1)
        redraws = curves.redraws
        write_json(run / "history.json", history(3))  # tmp file + os.replace: arrives as a move
        assert await wait_for(pilot, lambda: len(curves.drawn_history.get("val_loss", [])) == 3)
        assert curves.redraws > redraws
        assert app.main.leaderboard.rows[str(run)].epochs_done == 3


async def test_new_run_directory_appears_live(runs, app_factory):
    make_run(runs, "L1", "L1_first")
    app = app_factory()
    async with app.run_test(size=(120, 36)) as pilot:
        assert await wait_for(pilot, lambda: app.main.leaderboard.table.row_count == 1)
        make_run(runs, "L4", "L4_new", state="running")  # a new level directory too
        assert await wait_for(pilot, lambda: app.main.leaderboard.table.row_count == 2)
        assert any(r.level == "L4" for r in app.main.leaderboard.rows.values())


async def test_burst_of_writes_is_debounced(runs, app_factory):
    run = make_run(runs, "L1", "L1_burst", epochs_done=1, state="running")
    app = app_factory()
    async with app.run_test(size=(120, 36)) as pilot:
        curves = app.main.curves
        assert await wait_for(pilot, lambda: len(curves.drawn_history.get("val_loss", [])) == 1)
        before = curves.redraws
        for n in range(2, 22):
            write_json(run / "history.json", history(n))
        assert await wait_for(pilot, lambda: len(curves.drawn_history.get("val_loss", [])) == 21)
        assert curves.redraws - before < 10  # capped at ~4/s, never one per write


def test_observer_stops_on_exit(runs, app_factory):
    import asyncio

    app = app_factory()

    async def run():
        async with app.run_test(size=(80, 24)) as pilot:
            assert await wait_for(pilot, lambda: app.watcher.observer.is_alive())

    asyncio.run(run())
    assert not app.watcher.observer.is_alive()


def test_reading_run_files_posts_nothing(runs):
    """The observer asks inotify for writes, moves, creates and deletes only: the TUI reading
    1,000 run directories must not flood it with open/close events."""
    from engine.rundir.run import read_run
    from tui.watcher import RunsWatcher

    paths = [make_run(runs, "L1", f"L1_{i}") for i in range(20)]
    messages = []
    watcher = RunsWatcher(runs, messages.append)
    watcher.start()

    def posted_for(path):  # inotify delivers in order: a later write's message follows any earlier one
        return lambda: any(m.run_dir == str(path) for m in messages)

    try:
        write_json(paths[1] / "history.json", history(2))  # the watch is live once this arrives
        support.wait_for(posted_for(paths[1]))
        messages.clear()
        for path in paths:
            read_run(path)
        write_json(paths[0] / "history.json", history(3))
        support.wait_for(posted_for(paths[0]))
        assert {m.run_dir for m in messages} == {str(paths[0])}  # reading posted nothing before it
    finally:
        watcher.stop()

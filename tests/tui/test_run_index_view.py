"""The app lists runs through the run index, and what its watcher re-reads keeps the index
current: a second start reads no run file, and shows what the files say."""

from __future__ import annotations

from common.fileio import write_json
from engine.rundir import index as run_index
from engine.rundir.layout import RUN_INDEX
from engine.rundir.summary import load_runs
from tui_support import history, make_run, wait_for


async def test_a_second_start_reads_only_what_changed_and_the_watcher_keeps_the_index_current(
        runs, app_factory, monkeypatch):
    paths = [make_run(runs, "L1", f"L1_2025010{i}_000000", start=1.0 - i / 10) for i in range(3)]
    reads = []
    real = run_index.summarize
    monkeypatch.setattr(run_index, "summarize", lambda path: reads.append(path) or real(path))
    app = app_factory()
    async with app.run_test(size=(120, 40)) as pilot:
        board = app.main.leaderboard
        assert await wait_for(pilot, lambda: board.table.row_count == 3)
        assert sorted(reads) == sorted(map(str, paths)) and (runs / RUN_INDEX).is_file()
        write_json(paths[0] / "history.json", history(3, 0.2))  # a live write, seen by the watcher
        assert await wait_for(pilot, lambda: board.rows[str(paths[0])].epochs_done == 3)
    reads.clear()
    app = app_factory()
    async with app.run_test(size=(120, 40)) as pilot:
        board = app.main.leaderboard
        assert await wait_for(pilot, lambda: board.table.row_count == 3)
        assert reads == []  # every row from the index, the changed run's too
        files = {r.path: r.as_dict() for r in load_runs(runs)}
        assert {path: row.as_dict() for path, row in board.rows.items()} == files
        await pilot.press("ctrl+r")  # a full rescan reads every run again
        assert await wait_for(pilot, lambda: len(reads) == 3)

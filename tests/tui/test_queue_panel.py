"""Queue panel: jobs with states, worker status, and every job action through the queue API."""

from __future__ import annotations

from tui_support import screen_text, wait_for


async def test_queue_actions(runs, app_factory, backend):
    q = backend.queue
    q.add_many([("L1", {"num_epochs": 3}), ("L2", {"num_epochs": 4}), ("L3", {"num_epochs": 5})])
    q.job_list[0].state, q.job_list[0].position, q.job_list[0].run_dir = "failed", None, str(runs / "L1" / "L1_x")
    q.job_list[0].error = "CUDA out of memory"
    q._renumber()
    app = app_factory()
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.press("3")
        panel = app.main.queue_panel
        assert await wait_for(pilot, lambda: panel.query_one("#jobs").row_count == 3)
        text = screen_text(app)
        assert "worker: alive · pid 4242" in text and "failed" in text and "queued #1" in text
        assert "CUDA out of memory" in text
        # job 1 (failed) is highlighted: retry and retry with resume
        await pilot.press("r")
        assert await wait_for(pilot, lambda: ("retry", 1, False) in q.calls)
        await pilot.press("R")
        assert await wait_for(pilot, lambda: ("retry", 1, True) in q.calls)
        # move job 3 up, cancel job 2, remove job 3
        panel.query_one("#jobs").move_cursor(row=2)
        await pilot.press("K")
        assert await wait_for(pilot, lambda: ("move", 3, 1) in q.calls)
        panel.query_one("#jobs").move_cursor(row=1)
        await pilot.press("x")
        assert await wait_for(pilot, lambda: ("cancel", [2]) in q.calls)
        await pilot.press("d")
        assert await wait_for(pilot, lambda: ("remove", [2]) in q.calls)
        await pilot.press("w")
        assert await wait_for(pilot, lambda: backend.workers_started >= 1)
        assert await wait_for(pilot, lambda: panel.query_one("#jobs").row_count == 2)


async def test_queue_unavailable_is_shown_not_fatal(runs, app_factory, backend):
    class Broken:
        def jobs(self):
            raise RuntimeError("database is locked")

    backend.queue = Broken()
    app = app_factory()
    async with app.run_test(size=(100, 24)) as pilot:
        await pilot.press("3")
        assert await wait_for(pilot, lambda: "queue unavailable" in screen_text(app))
        assert app.is_running


async def test_gpus_and_nproc_of_each_job(runs, app_factory, backend):
    q = backend.queue
    q.add_many([("L1", {"num_epochs": 3}), ("L2", {"num_epochs": 4}), ("L3", {"num_epochs": 5}),
                ("L4", {"num_epochs": 2})])
    one, ddp, done, cpu = q.job_list
    one.state, one.position, one.gpus = "running", None, "2"
    ddp.state, ddp.position, ddp.gpus, ddp.nproc = "running", None, "0,1", 2
    done.state, done.position, done.gpus = "done", None, "3"
    cpu.nproc = "garbage"
    q._renumber()
    q.worker_gpus = "0,1,2,3"
    app = app_factory()
    async with app.run_test(size=(140, 30)) as pilot:
        await pilot.press("3")
        panel = app.main.queue_panel
        table = panel.query_one("#jobs")
        assert await wait_for(pilot, lambda: table.row_count == 4)
        cells = {int(key.value): table.get_row(key) for key in table.rows}
        column = {name: i for i, name in enumerate(("id", "state", "level", "dataset", "epochs", "nproc", "gpus"))}
        assert [str(cells[i][column["gpus"]]) for i in (1, 2, 3, 4)] == ["2", "0,1", "3", "—"]
        assert [str(cells[i][column["nproc"]]) for i in (1, 2, 3, 4)] == ["1", "2", "1", "1"]
        assert "bold" in str(cells[2][column["gpus"]].style) and "dim" in str(cells[3][column["gpus"]].style)
        text = screen_text(app)
        assert "nproc" in text and "gpus" in text and "0,1" in text
        # the worker line says which of its GPUs are free (3 is held by nothing running)
        assert "gpus 0,1,2,3 (free: 3)" in text


async def test_an_extraction_job_shows_its_progress(runs, app_factory, backend, tmp_path):
    from common.fileio import write_json
    from engine.extract.options import STATUS

    out = tmp_path / "extracted"
    out.mkdir()
    write_json(out / STATUS, {"state": "running", "samples_done": 37, "samples_total": 500, "alignment_rate": 0.81})
    q = backend.queue
    q.add_many([("extract", {"kind": "extract", "options": {"out": str(out)}})])
    q.job_list[0].state, q.job_list[0].position = "running", None
    app = app_factory()
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.press("3")
        assert await wait_for(pilot, lambda: "37/500 samples, 81% aligned" in screen_text(app))
        write_json(out / STATUS, {"state": "running", "samples_done": 480, "samples_total": 500, "alignment_rate": 0.8})
        app.main.queue_panel.load()
        assert await wait_for(pilot, lambda: "480/500 samples" in screen_text(app))

"""The Queue tab against a real queue.db that a worker changes under it: one row per job, always,
and a refresh that fails keeps the rows it had."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from tui_support import screen_text, wait_for

from engine.queue import JobQueue
from tui.backend import Backend


class ClaimingWorker(threading.Thread):
    """What the queue's worker does to queue.db, without training: it claims the head of the
    queue, gives the job a run directory with a last.pt, and ends it when it is cancelled."""

    def __init__(self, runs: Path) -> None:
        super().__init__(daemon=True)
        self.runs, self.stop = runs, threading.Event()
        self.pid = os.getpid()

    def run(self) -> None:
        with JobQueue(self.runs) as q:
            q.heartbeat(self.pid, starting=True)
            while not self.stop.wait(0.01):
                q.heartbeat(self.pid)
                running = [j.id for j in q.jobs() if j.state == "running"]
                for job_id in q.cancel_requests(running):
                    q.finish(job_id, "cancelled", -15, "cancelled")
                    running.remove(job_id)
                if not running and (job := q.claim_next(self.pid, 1, 1)) is not None:
                    run_dir = self.runs / job.level / f"{job.level}_20261205_00000{job.id}"
                    run_dir.mkdir(parents=True, exist_ok=True)
                    (run_dir / "last.pt").write_bytes(b"")
                    q.set_run_dir(job.id, str(run_dir))


class LiveBackend(Backend):
    def __init__(self, runs: Path, worker: ClaimingWorker) -> None:
        super().__init__(runs, None)
        self.worker = worker

    def ensure_worker(self):
        return self.worker.pid


def table_rows(app) -> list[tuple[int, str]]:
    table = app.main.queue_panel.query_one("#jobs")
    return [(int(key.value), str(table.get_row(key)[1]).split()[0]) for key in table.rows]


def queue_rows(runs: Path) -> list[tuple[int, str]]:
    with JobQueue(runs) as q:
        return sorted((j.id, j.state) for j in q.jobs())


async def test_cancel_retry_resume_and_move_while_a_worker_claims(runs, app_factory):
    with JobQueue(runs) as q:  # the preset `all`: one job per level
        q.add_many([(level, {"num_epochs": 3}) for level in ("L1", "L2", "L3", "L4", "L5", "B1", "L5F")])
    worker = ClaimingWorker(runs)
    app = app_factory(backend=LiveBackend(runs, worker), poll=True)
    worker.start()
    try:
        async with app.run_test(size=(140, 30)) as pilot:
            await pilot.press("3")
            table = lambda: app.main.queue_panel.query_one("#jobs")  # noqa: E731
            for round_ in range(3):  # each round: the running job is cancelled, retried with resume, moved up
                assert await wait_for(pilot, lambda: any(s == "running" for _, s in table_rows(app)))
                running = next(i for i, s in table_rows(app) if s == "running")
                table().move_cursor(row=table().get_row_index(str(running)), animate=False)
                await pilot.press("x")
                assert await wait_for(pilot, lambda: dict(table_rows(app)).get(running) == "cancelled")
                table().move_cursor(row=table().get_row_index(str(running)), animate=False)
                await pilot.press("R")
                assert await wait_for(pilot, lambda: dict(table_rows(app)).get(running) == "queued")
                table().move_cursor(row=table().get_row_index(str(running)), animate=False)
                await pilot.press("K")
                # the view converges on the queue, one row per job, while the worker goes on claiming
                assert await wait_for(pilot, lambda: sorted(table_rows(app)) == queue_rows(runs))
                assert len({i for i, _ in table_rows(app)}) == table().row_count == 7
            assert app.is_running
    finally:
        worker.stop.set()
        worker.join()


async def test_a_job_listed_twice_gets_one_row(runs, app_factory, backend):
    backend.queue.add_many([("L1", {}), ("L2", {})])
    listed_twice = backend.queue.jobs
    backend.queue.jobs = lambda: listed_twice() + listed_twice()[:1]
    app = app_factory()
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.press("3")
        assert await wait_for(pilot, lambda: app.main.queue_panel.query_one("#jobs").row_count == 2)
        assert app.is_running


async def test_a_refresh_that_fails_keeps_the_rows_and_says_so(runs, app_factory, backend):
    backend.queue.add_many([("L1", {}), ("L2", {})])
    app = app_factory()
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.press("3")
        panel = app.main.queue_panel
        assert await wait_for(pilot, lambda: panel.query_one("#jobs").row_count == 2)

        def broken(*args, **kwargs):
            raise RuntimeError("a row that cannot be drawn")

        panel.table.set_jobs = broken
        panel.load()
        assert await wait_for(pilot, lambda: any("the Queue tab not refreshed (RuntimeError: a row that cannot be drawn)"
                                                  in n.message for n in app._notifications))
        assert app.is_running and panel.query_one("#jobs").row_count == 2
        del panel.table.set_jobs
        backend.queue.jobs = lambda: (_ for _ in ()).throw(RuntimeError("database is locked"))
        panel.load()
        assert await wait_for(pilot, lambda: "queue unavailable: RuntimeError: database is locked" in screen_text(app))
        assert panel.query_one("#jobs").row_count == 2  # the last rows read stay

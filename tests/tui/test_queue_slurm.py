"""The Queue tab with jobs on Slurm: the worker's cluster, each job's Slurm id, state and node,
and the selected Slurm job's train.log tail (the app cannot see a process on another node)."""

from __future__ import annotations

from tui_support import screen_text, wait_for


async def test_slurm_jobs_show_their_slurm_id_state_node_and_log_tail(runs, app_factory, backend):
    q = backend.queue
    q.add_many([("L1", {"num_epochs": 3}), ("L2", {"num_epochs": 4})])
    on_slurm, local = q.job_list
    run = runs / "L1" / "L1_20261205_101010"
    run.mkdir(parents=True)
    (run / "train.log").write_text("epoch 1 loss 0.9\nepoch 2 loss 0.5 on the cluster\n")
    on_slurm.state, on_slurm.position, on_slurm.run_dir = "running", None, str(run)
    on_slurm.slurm_id, on_slurm.slurm_state, on_slurm.slurm_node = "4242", "RUNNING", "gpu07"
    q._renumber()
    status = q.worker_status
    q.worker_status = lambda: _slurm_status(status())
    app = app_factory()
    async with app.run_test(size=(160, 30)) as pilot:
        await pilot.press("3")
        panel = app.main.queue_panel
        table = panel.query_one("#jobs")
        assert await wait_for(pilot, lambda: table.row_count == 2 and "slurm" in table.columns_shown)
        text = screen_text(app)
        assert "4242 RUNNING gpu07" in text and "Slurm cluster adapterlocal" in text
        table.move_cursor(row=[r.value for r in table.rows].index("1"))
        assert await wait_for(pilot, lambda: "on the cluster" in screen_text(app))
        table.move_cursor(row=[r.value for r in table.rows].index("2"))  # a local job: no Slurm log pane
        assert await wait_for(pilot, lambda: not panel.has_class("-slurm-log"))
        local.state = "done"
        q.job_list.remove(on_slurm)  # no job on Slurm left: the table drops the column
        panel.load()
        assert await wait_for(pilot, lambda: "slurm" not in table.columns_shown)


def _slurm_status(status):
    status.backend, status.cluster = "slurm", "adapterlocal"
    return status

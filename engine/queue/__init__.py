"""The job queue: RUNS/queue.db plus one detached worker per runs directory. Torch-free, so the
app can use it.

    storage     the database: schema, migrations, jobs as rows (add, order, remove)
    lifecycle   what happens to a job (claim, start, finish, cancel, retry, recover) and the
                worker's own row; every pid checked with its start before it is trusted
    plan        levels and settings into jobs (`queue add` and the app)
    worker      the loop that runs the jobs
    spawn       starting a worker in the background

    from engine.queue import JobQueue, ensure_worker
    with JobQueue(Path("runs")) as q:
        q.add_many(plan_jobs(["L1"], dataset="demo").jobs)
    ensure_worker(Path("runs"))
"""

from engine.queue.lifecycle import JobQueue, WorkerStatus
from engine.queue.plan import Plan, plan_jobs
from engine.queue.spawn import ensure_worker, start_detached
from engine.queue.storage import Job
from engine.queue.worker import Worker, trainer_command

__all__ = ["Job", "JobQueue", "WorkerStatus", "Worker", "ensure_worker", "start_detached", "trainer_command",
           "Plan", "plan_jobs"]

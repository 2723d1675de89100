"""The job queue (SPEC §8): runs/queue.db plus one detached worker per runs directory.
Torch-free, so the TUI can use it.

    from engine.queue import JobQueue, Job, WorkerStatus, ensure_worker
    q = JobQueue(Path("runs"))
    q.add("L1", {"train_data": "...", "num_epochs": 2})
    ensure_worker(Path("runs"))
"""

from engine.queue.db import Job, JobQueue, WorkerStatus
from engine.queue.plan import Plan, plan_jobs
from engine.queue.worker import Worker, ensure_worker, start_detached, trainer_command

__all__ = ["Job", "JobQueue", "WorkerStatus", "Worker", "ensure_worker", "start_detached", "trainer_command",
           "Plan", "plan_jobs"]

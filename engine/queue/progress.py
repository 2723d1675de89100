"""What a job that is not a training has done, read from the files it writes: an extraction's
samples (its extract_status.json), a speculation's prompts and running τ (its
speculate_status.json). Torch-free: `queue ls` and the app's Queue tab use it."""

from __future__ import annotations

from typing import Any

from engine.extract.options import job_progress as extraction_progress
from engine.speculate.options import job_progress as speculation_progress


def job_progress(settings: Any) -> str | None:
    """The job's progress ("" before it reports), or None for a training job."""
    for reader in (extraction_progress, speculation_progress):
        progress = reader(settings)
        if progress is not None:
            return progress
    return None

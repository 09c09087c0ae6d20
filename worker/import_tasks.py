"""Celery task for CSV imports too large to run inside a web request."""
from __future__ import annotations

from celery import shared_task

from preference_center import imports


@shared_task(name="worker.tasks.import_csv")
def import_csv(job_id: int) -> str | None:
    """Import a queued ImportJob chunk by chunk; progress lives on the job row."""
    job = imports.run(job_id)
    return job.status if job is not None else None

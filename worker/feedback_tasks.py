"""Celery tasks for provider feedback and retention: thin wrappers that call the domain with ids."""
from __future__ import annotations

from celery import shared_task

from preference_center import feedback, retention


@shared_task(name="worker.tasks.process_webhook_events")
def process_webhook_events(event_ids: list[int]) -> dict:
    """Apply stored SendGrid events; ids already processed are skipped."""
    return dict(feedback.process(list(event_ids)).outcomes)


@shared_task(name="worker.tasks.sweep_webhook_events")
def sweep_webhook_events() -> dict:
    """Every minute: process stored events whose task was lost or failed."""
    return dict(feedback.process(feedback.stale_event_ids()).outcomes)


@shared_task(name="worker.tasks.retention")
def run_retention(dry_run: bool = False) -> dict:
    """Daily: erase long-inactive contacts without a basis; fold old deliveries into statistics."""
    report = retention.plan() if dry_run else retention.apply()
    return report.as_dict()

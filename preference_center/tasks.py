"""Celery tasks: thin wrappers that call the domain with ids, and `enqueue`, the one way work reaches the broker.

The database is the source of truth, not the broker: callers commit, then
enqueue. A hand-off that fails (broker down) is logged and dropped, and the
scheduler finds the work again: `tick` every PC_TICK_SECONDS starts due
campaigns, plans campaigns without a planner, re-queues lost batches, system
messages and CSV imports; `sweep_webhook_events` every minute picks up stored
provider events.
"""
from __future__ import annotations

import logging

from celery import shared_task
from flask import current_app

from . import campaigns, feedback, first_contact, imports, logs, metrics, optouts, provider_erasure, retention, sending

__all__ = [
    "dispatch_campaign", "enqueue", "import_csv", "process_webhook_events", "run_retention", "send_batch",
    "deliver_webhooks", "push_to_sendgrid", "send_message", "settle_opt_outs", "sweep_webhook_events", "tick",
]

log = logging.getLogger(__name__)


def enqueue(name: str, *args, countdown: float | None = None) -> bool:
    """Send a task by name through the Flask app's Celery app; False (and a warning) if the broker refused.

    Every caller has committed its change first, and the scheduler re-queues
    work whose message never arrived, so a broker outage must not turn a
    committed change into an error.
    """
    try:
        current_app.extensions["celery"].send_task(f"preference_center.tasks.{name}", args=args, countdown=countdown,
                                                   headers=logs.task_headers())
    except Exception as exc:  # noqa: BLE001 - broker down or unreachable: the scheduler recovers the work
        log.warning("could not queue %s%r (%s: %s); the scheduler will pick it up", name, args,
                    type(exc).__name__, exc)
        return False
    return True


# -- campaigns, batches and system messages ---------------------------------------

@shared_task(name="preference_center.tasks.tick")
def tick() -> None:
    """Every few seconds: start due campaigns, keep planners going, recover lost work."""
    campaigns.start_due()
    for campaign_id in sending.campaigns_to_plan():
        enqueue("dispatch_campaign", campaign_id)
    lost = sending.lost_batches()
    sending.mark_requeued(lost)
    for batch_id in lost:
        log.warning("re-queueing batch %s (broker message lost or worker died)", batch_id)
        enqueue("send_batch", batch_id)
        metrics.BATCHES_QUEUED.inc()
    for campaign_id in sending.sending_campaigns():
        sending.finish_campaign_if_done(campaign_id)
    sending.abandon_stuck_system_sends()
    stale = sending.stale_system_deliveries()
    sending.touch(stale)
    for delivery_id in stale:
        enqueue("send_message", delivery_id)
    provider_erasure.run_pending()  # erased addresses the mail provider has not accepted yet
    first_contact.send_due()  # Art. 14 notices still due
    for job_id in imports.requeue_lost():
        log.warning("re-queueing import %s (broker message lost)", job_id)
        enqueue("import_csv", job_id)


@shared_task(name="preference_center.tasks.settle_opt_outs")
def settle_opt_outs() -> int:
    """Every PC_SETTLE_SECONDS: chain waiting one-click opt-outs into the ledger."""
    return optouts.settle_all()


@shared_task(name="preference_center.tasks.dispatch_campaign")
def dispatch_campaign(campaign_id: int) -> int:
    """Plan a campaign's audience chunk by chunk; queue one batch task per chunk."""
    planned = 0
    if not sending.take_planning_lease(campaign_id):
        return planned
    size = current_app.config["PC_BATCH_SIZE"]
    while True:
        batch_id = sending.plan_chunk(campaign_id, size)
        if batch_id is None:
            break
        enqueue("send_batch", batch_id)
        metrics.BATCHES_QUEUED.inc()
        planned += 1
        sending.take_planning_lease(campaign_id, renew=True)
    sending.release_planning_lease(campaign_id)
    sending.finish_campaign_if_done(campaign_id)
    return planned


@shared_task(name="preference_center.tasks.send_batch")
def send_batch(batch_id: int) -> dict:
    outcome = sending.send_batch(batch_id)
    metrics.recipients_handled(outcome.sent, outcome.skipped, outcome.failed, outcome.unknown)
    if outcome.retry_in is not None:
        enqueue("send_batch", batch_id, countdown=outcome.retry_in)
    return outcome.__dict__


@shared_task(name="preference_center.tasks.send_message")
def send_message(delivery_id: int) -> str:
    try:
        return sending.send_system(delivery_id)
    except sending.RetryLater as later:
        enqueue("send_message", delivery_id, countdown=later.seconds)
        return "retrying"


# -- provider feedback and retention -------------------------------------------------

@shared_task(name="preference_center.tasks.process_webhook_events")
def process_webhook_events(event_ids: list[int]) -> dict:
    """Apply stored SendGrid events; ids already processed are skipped."""
    return dict(feedback.process(list(event_ids)).outcomes)


@shared_task(name="preference_center.tasks.sweep_webhook_events")
def sweep_webhook_events() -> dict:
    """Every minute: process stored events whose task was lost or failed."""
    return dict(feedback.process(feedback.stale_event_ids()).outcomes)


@shared_task(name="preference_center.tasks.retention")
def run_retention(dry_run: bool = False) -> dict:
    """Daily: erase long-inactive contacts without a basis; fold old deliveries into statistics."""
    report = retention.plan() if dry_run else retention.apply()
    return report.as_dict()


# -- outgoing webhooks -------------------------------------------------------------------

@shared_task(name="preference_center.tasks.deliver_webhooks")
def deliver_webhooks() -> dict:
    """Every PC_WEBHOOK_TICK_SECONDS, and after each change that wrote the outbox: deliver what is due."""
    from .outbound import delivery

    run = delivery.run()
    return {"delivered": run.delivered, "failed": run.failed, "disabled": run.disabled}


@shared_task(name="preference_center.tasks.push_to_sendgrid")
def push_to_sendgrid() -> dict:
    """Every PC_SENDGRID_SYNC_SECONDS (with PC_SENDGRID_SYNC=1): push queued opt-outs and suppressions."""
    from .outbound import sendgrid_sync

    if not sendgrid_sync.enabled():
        return {}
    result = sendgrid_sync.push()
    return {"pushed": result.pushed, "calls": result.calls, "failed": result.failed}


# -- CSV imports ------------------------------------------------------------------------

@shared_task(name="preference_center.tasks.import_csv")
def import_csv(job_id: int) -> str | None:
    """Import a queued ImportJob chunk by chunk; progress lives on the job row."""
    job = imports.run(job_id)
    return job.status if job is not None else None

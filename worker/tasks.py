"""Celery tasks: thin wrappers that call the sending engine with ids."""
from __future__ import annotations

import logging

from celery import shared_task
from flask import current_app

from preference_center import campaigns, optouts, sending

log = logging.getLogger(__name__)


def enqueue(name: str, *args, countdown: float | None = None) -> None:
    """Send a task by name through the Flask app's Celery app."""
    current_app.extensions["celery"].send_task(f"worker.tasks.{name}", args=args, countdown=countdown)


@shared_task(name="worker.tasks.tick")
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
    for campaign_id in sending.sending_campaigns():
        sending.finish_campaign_if_done(campaign_id)
    sending.abandon_stuck_system_sends()
    stale = sending.stale_system_deliveries()
    sending.touch(stale)
    for delivery_id in stale:
        enqueue("send_message", delivery_id)


@shared_task(name="worker.tasks.settle_opt_outs")
def settle_opt_outs() -> int:
    """Every PC_SETTLE_SECONDS: chain waiting one-click opt-outs into the ledger."""
    return optouts.settle_all()


@shared_task(name="worker.tasks.dispatch_campaign")
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
        planned += 1
        sending.take_planning_lease(campaign_id, renew=True)
    sending.release_planning_lease(campaign_id)
    sending.finish_campaign_if_done(campaign_id)
    return planned


@shared_task(name="worker.tasks.send_batch")
def send_batch(batch_id: int) -> dict:
    outcome = sending.send_batch(batch_id)
    if outcome.retry_in is not None:
        enqueue("send_batch", batch_id, countdown=outcome.retry_in)
    return outcome.__dict__


@shared_task(name="worker.tasks.send_message")
def send_message(delivery_id: int) -> str:
    try:
        return sending.send_system(delivery_id)
    except sending.RetryLater as later:
        enqueue("send_message", delivery_id, countdown=later.seconds)
        return "retrying"

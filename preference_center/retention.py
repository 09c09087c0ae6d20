"""The retention policy: erase long-inactive contacts without a basis; keep only anonymous delivery counts.

- A contact is erased (personal data removed, suppression hash kept, ledger
  chain intact) when it has had no interaction for its relationship's
  retention period (PC_RETENTION_<RELATIONSHIP>_DAYS, else PC_RETENTION_DAYS) and no
  active basis. "No active basis" is deliberately simple and conservative:
  status `active` (restricted contacts are kept: restriction exists to
  preserve data), relationship `prospect` or `candidate`, or a customer,
  partner or supplier (who have a contract or business relationship) who
  opted out of all marketing and got no service mail in the period either;
  no subscription `subscribed` or `pending`, and no open data request.
- Delivery rows older than PC_DELIVERY_RETENTION_DAYS are counted into
  `DailyStat` (day, campaign, topic, status, reason) and deleted, with the
  content of the system messages they carried.
- Engagement rows (the provider's delivered, open, click... events and our own
  unsubscribes) older than PC_DELIVERY_RETENTION_DAYS are folded into anonymous
  per-campaign, per-hour `EngagementStat` counts that the campaign report adds
  back (`engagement.fold`: all of a delivery's rows together, so each recipient
  still counts once), and deleted.
- Stored webhook events (they hold addresses) go after a week; SendGrid stops
  retrying after a day, so de-duplication no longer needs them.
- Uploaded CSV files (they hold addresses) of imports that never ran, or
  failed, are deleted after PC_UPLOAD_RETENTION_DAYS and their jobs marked
  discarded; so are files in the uploads folder that no job refers to (an
  upload whose request failed half-way).

`plan` reports what `apply` would do and changes nothing.
"""
from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import click
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy import and_, delete, exists, false, func, or_, select

from . import actors, audit, engagement, imports, optouts
from .commands import people
from .extensions import db
from .models import (
    RELATIONSHIPS,
    Campaign,
    Contact,
    DailyStat,
    DataRequest,
    Delivery,
    EngagementEvent,
    ImportJob,
    Subscription,
    SystemMessage,
    WebhookEvent,
    utcnow,
)

ACTOR = actors.system("retention")
SOURCE = ACTOR.source
NO_BASIS_RELATIONSHIPS = ("prospect", "candidate")
WEBHOOK_EVENT_DAYS = 7
# Imports whose file is only waiting: a queued or running import still needs it.
UNUSED_IMPORTS = ("uploaded", "previewed", "failed")


@dataclass
class Report:
    """What a retention run did, or (dry run) would do."""

    dry_run: bool
    now: dt.datetime
    contact_cutoff: dt.datetime
    delivery_cutoff: dt.datetime
    contacts_erased: int = 0
    deliveries_aggregated: int = 0
    engagement_events_folded: int = 0
    system_messages_deleted: int = 0
    webhook_events_deleted: int = 0
    uploads_deleted: int = 0
    daily_stats_written: int | None = None  # unknown in a dry run

    def as_dict(self) -> dict:
        return {k: v.isoformat() if isinstance(v, dt.datetime) else v for k, v in asdict(self).items()}


def _report(now: dt.datetime | None, dry_run: bool) -> Report:
    now = now or utcnow()
    config = current_app.config
    return Report(dry_run=dry_run, now=now,
                  contact_cutoff=now - dt.timedelta(days=config["PC_RETENTION_DAYS"]),
                  delivery_cutoff=now - dt.timedelta(days=config["PC_DELIVERY_RETENTION_DAYS"]))


def retention_days(relationship: str) -> int:
    """Days after which a contact of `relationship` without a basis is erased (0: never)."""
    config = current_app.config
    days = config.get(f"PC_RETENTION_{relationship.upper()}_DAYS")
    return config["PC_RETENTION_DAYS"] if days is None else days


def cutoffs(now: dt.datetime) -> dict[str, dt.datetime]:
    """Per relationship, the last-interaction time before which the policy erases (relationships kept forever
    are left out)."""
    return {r: now - dt.timedelta(days=retention_days(r)) for r in RELATIONSHIPS if retention_days(r) > 0}


def _inactive_contacts(cutoff: dt.datetime | dict[str, dt.datetime]):
    """SELECT of the ids of contacts the policy erases.

    Prospects and candidates: no interaction since their cutoff. Customers, partners and suppliers have a
    contract or business relationship: only once they opted out of all marketing (or objected) and nothing,
    not even service mail, has happened since their cutoff.
    """
    per_relationship = cutoff if isinstance(cutoff, dict) else {r: cutoff for r in NO_BASIS_RELATIONSHIPS}
    live_subscription = exists().where(Subscription.contact_id == Contact.id,
                                       Subscription.state.in_(("subscribed", "pending")))
    open_request = exists().where(DataRequest.contact_id == Contact.id, DataRequest.status == "open")
    branches = []
    for relationship, when in per_relationship.items():
        branch = and_(Contact.relationship == relationship, Contact.last_interaction_at < when)
        if relationship not in NO_BASIS_RELATIONSHIPS:
            recent_service_mail = exists().where(Delivery.contact_id == Contact.id,
                                                 Delivery.system_message_id.is_not(None), Delivery.created_at >= when)
            branch = and_(branch, Contact.marketing_opt_out_event_id.is_not(None), ~recent_service_mail)
        branches.append(branch)
    return select(Contact.id).where(
        Contact.status == "active",
        or_(*branches) if branches else false(),
        ~live_subscription,
        ~open_request,
    )


def _count(query) -> int:
    return db.session.scalar(select(func.count()).select_from(query.subquery())) or 0


def plan(now: dt.datetime | None = None) -> Report:
    """Dry run: count what `apply` would erase, aggregate and delete; change nothing."""
    report = _report(now, dry_run=True)
    report.contacts_erased = _count(_inactive_contacts(cutoffs(report.now)))
    report.deliveries_aggregated = _count(select(Delivery.id).where(Delivery.created_at < report.delivery_cutoff))
    report.engagement_events_folded = _count(select(EngagementEvent.id).where(EngagementEvent.delivery_id.in_(
        select(EngagementEvent.delivery_id).where(EngagementEvent.occurred_at < report.delivery_cutoff))))
    report.system_messages_deleted = _count(select(Delivery.id).where(
        Delivery.created_at < report.delivery_cutoff, Delivery.system_message_id.is_not(None)))
    report.webhook_events_deleted = _count(select(WebhookEvent.id).where(
        WebhookEvent.received_at < report.now - dt.timedelta(days=WEBHOOK_EVENT_DAYS)))
    jobs, orphans = _stale_uploads(report.now)
    report.uploads_deleted = len(jobs) + len(orphans)
    db.session.rollback()
    return report


def apply(now: dt.datetime | None = None, chunk: int = 500) -> Report:
    """Run the policy, one transaction per chunk; the ledger chain keeps verifying."""
    report = _report(now, dry_run=False)
    optouts.settle_all()  # inactivity counts the latest one-click opt-outs too
    report.contacts_erased = _erase_inactive(cutoffs(report.now), chunk)
    report.daily_stats_written = 0
    _fold_engagement(report, chunk)
    _fold_deliveries(report, chunk)
    result = db.session.execute(delete(WebhookEvent).where(
        WebhookEvent.received_at < report.now - dt.timedelta(days=WEBHOOK_EVENT_DAYS)))
    report.webhook_events_deleted = result.rowcount or 0
    db.session.commit()
    jobs, orphans = _stale_uploads(report.now)
    for job in jobs:
        imports.delete_file(job)
        job.status = "discarded"
        job.error = f"the uploaded file was deleted by the retention policy after {_upload_days()} days unused"
        audit.record(ACTOR, "import.discard", target_type="import", target_id=job.id, detail={"why": "retention"})
    for path in orphans:
        path.unlink(missing_ok=True)
    db.session.commit()
    report.uploads_deleted = len(jobs) + len(orphans)
    return report


def _upload_days() -> int:
    return current_app.config["PC_UPLOAD_RETENTION_DAYS"]


def _stale_uploads(now: dt.datetime) -> tuple[list[ImportJob], list[Path]]:
    """Import jobs whose file waits unused past the limit, and old files no job refers to."""
    cutoff = now - dt.timedelta(days=_upload_days())
    jobs = list(db.session.scalars(select(ImportJob).where(
        ImportJob.stored_path.is_not(None), ImportJob.status.in_(UNUSED_IMPORTS), ImportJob.created_at < cutoff)))
    referenced = set(db.session.scalars(select(ImportJob.stored_path).where(ImportJob.stored_path.is_not(None))))
    orphans = [path for path in imports.uploads_folder().glob("*.csv")
               if str(path) not in referenced
               and dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC) < cutoff]
    return jobs, orphans


def _erase_inactive(cutoff: dict[str, dt.datetime], chunk: int) -> int:
    erased, after = 0, 0
    while True:
        # Selected in the transaction that erases them: someone who came back
        # a moment ago is no longer selected.
        ids = db.session.scalars(
            _inactive_contacts(cutoff).where(Contact.id > after).order_by(Contact.id).limit(chunk)
        ).all()
        if not ids:
            return erased
        for contact in db.session.scalars(select(Contact).where(Contact.id.in_(ids))):
            people.erase(ACTOR, contact)
        db.session.commit()
        erased += len(ids)
        after = ids[-1]


def _fold_engagement(report: Report, chunk: int) -> None:
    while True:
        ids = db.session.scalars(engagement.deliveries_to_fold(report.delivery_cutoff, chunk)).all()
        if not ids:
            return
        report.engagement_events_folded += engagement.fold(list(ids))
        db.session.commit()


def _fold_deliveries(report: Report, chunk: int) -> None:
    while True:
        rows = db.session.execute(
            select(Delivery.id, Delivery.created_at, Delivery.campaign_id, Delivery.system_message_id,
                   func.coalesce(Campaign.topic_id, SystemMessage.topic_id).label("topic_id"),
                   Delivery.status, Delivery.reason)
            .outerjoin(Campaign, Campaign.id == Delivery.campaign_id)
            .outerjoin(SystemMessage, SystemMessage.id == Delivery.system_message_id)
            .where(Delivery.created_at < report.delivery_cutoff)
            .order_by(Delivery.id).limit(chunk)
        ).all()
        if not rows:
            return
        counts = Counter(
            (row.created_at.astimezone(dt.UTC).date(), row.campaign_id, row.topic_id,
             row.status, row.reason or "")
            for row in rows
        )
        for key, count in counts.items():
            _add_to_stat(key, count)
        report.daily_stats_written += len(counts)
        db.session.execute(delete(Delivery).where(Delivery.id.in_([row.id for row in rows])))
        messages = [row.system_message_id for row in rows if row.system_message_id is not None]
        if messages:
            db.session.execute(delete(SystemMessage).where(SystemMessage.id.in_(messages)))
        db.session.commit()
        report.deliveries_aggregated += len(rows)
        report.system_messages_deleted += len(messages)


def _add_to_stat(key: tuple, count: int) -> None:
    day, campaign_id, topic_id, status, reason = key
    # campaign_id is NULL for system messages, and NULLs never collide in a
    # unique constraint: look the row up instead of relying on ON CONFLICT.
    row = db.session.scalar(select(DailyStat).where(
        DailyStat.day == day, DailyStat.campaign_id == campaign_id, DailyStat.topic_id == topic_id,
        DailyStat.status == status, DailyStat.reason == reason))
    if row is None:
        db.session.add(DailyStat(day=day, campaign_id=campaign_id, topic_id=topic_id,
                                 status=status, reason=reason, count=count))
    else:
        row.count += count
    db.session.flush()


@click.command("retention")
@click.option("--dry-run", is_flag=True, help="Only report what would be erased and deleted.")
@with_appcontext
def retention_command(dry_run: bool) -> None:
    """Apply the retention policy (daily in the worker's schedule)."""
    report = plan() if dry_run else apply()
    click.echo(("dry run: nothing changed\n" if dry_run else "") + "\n".join(
        f"{key}: {value}" for key, value in report.as_dict().items() if key != "dry_run"))

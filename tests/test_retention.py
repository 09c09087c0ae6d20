"""The retention policy: who is erased, what becomes anonymous statistics, and that a dry run changes nothing."""
from __future__ import annotations

import datetime as dt
import io
import os
from pathlib import Path

import pytest
from sqlalchemy import func, select

from preference_center import contacts, imports, ledger, retention
from preference_center.extensions import db
from preference_center.models import (
    Campaign,
    ConsentEvent,
    Contact,
    DailyStat,
    DataRequest,
    Delivery,
    ImportJob,
    LedgerHead,
    Suppression,
    SystemMessage,
    WebhookEvent,
    utcnow,
)
from preference_center.retention import retention_command

from .helpers import factories

NOW = utcnow()
LONG_AGO = NOW - dt.timedelta(days=4 * 365)  # past the default 3-year PC_RETENTION_DAYS
LAST_YEAR = NOW - dt.timedelta(days=500)  # past the default 400-day PC_DELIVERY_RETENTION_DAYS


@pytest.fixture
def topics(ctx):
    news = factories.topic("news")
    tips = factories.topic("tips", basis="legitimate_interest", relationships=["customer"])
    orders = factories.topic("orders", kind="system", basis="contract")
    db.session.commit()
    return news, tips, orders


def person(email: str, relationship: str = "prospect", last_seen: dt.datetime = LONG_AGO) -> Contact:
    contact = factories.contact(email, relationship=relationship)
    db.session.flush()
    # The ledger stamps the interaction time on every event: set it last.
    contact.last_interaction_at = last_seen
    return contact


@pytest.fixture
def population(topics):
    """Contacts on both sides of the policy, by name."""
    news, tips, _ = topics
    people = {
        "old_prospect": person("old-prospect@example.com"),
        "old_candidate": person("old-candidate@example.com", "candidate"),
        "old_unsubscribed": person("old-unsubscribed@example.com"),
        "recent_prospect": person("recent@example.com", last_seen=NOW - dt.timedelta(days=30)),
        "old_customer": person("old-customer@example.com", "customer"),
        "old_subscriber": person("old-subscriber@example.com"),
        "old_pending": person("old-pending@example.com"),
        "old_restricted": person("old-restricted@example.com"),
        "old_with_request": person("old-request@example.com"),
    }
    contacts.record_consent(people["old_unsubscribed"], action="grant", topic=news, source="test", confirmed=True)
    contacts.record_consent(people["old_unsubscribed"], action="withdraw", topic=news, source="test")
    contacts.record_consent(people["old_subscriber"], action="grant", topic=news, source="test", confirmed=True)
    contacts.record_consent(people["old_pending"], action="grant", topic=news, source="test", confirmed=False)
    ledger.append(ledger.RESTRICT, contact=people["old_restricted"], scope=ledger.CONTACT, source="test")
    db.session.add(DataRequest(contact_id=people["old_with_request"].id, kind="export", status="open",
                               requested_at=LONG_AGO, due_at=LONG_AGO + dt.timedelta(days=30)))
    for contact in people.values():
        contact.last_interaction_at = NOW - dt.timedelta(days=30) if contact is people["recent_prospect"] else LONG_AGO
    db.session.commit()
    return people


ERASED = {"old_prospect", "old_candidate", "old_unsubscribed"}


def statuses(people: dict) -> dict[str, str]:
    db.session.expire_all()
    return {name: db.session.get(Contact, c.id).status for name, c in people.items()}


def campaign_on(topic, name: str = "Spring") -> Campaign:
    row = Campaign(name=name, topic_id=topic.id, subject="Hi", text="Hi", status="sent")
    db.session.add(row)
    db.session.flush()
    return row


def delivery(contact, *, campaign=None, message=None, status="sent", reason=None, at=LAST_YEAR) -> Delivery:
    row = Delivery(campaign_id=campaign.id if campaign else None, system_message_id=message.id if message else None,
                   contact_id=contact.id, status=status, reason=reason, created_at=at, updated_at=at)
    db.session.add(row)
    db.session.flush()
    return row


def system_message(contact, topic, at=LAST_YEAR) -> SystemMessage:
    row = SystemMessage(topic_id=topic.id, contact_id=contact.id, request_digest="d" * 64, subject="Invoice 7",
                        text="Your invoice", data={"amount": 12}, created_at=at)
    db.session.add(row)
    db.session.flush()
    return row


def counts() -> dict:
    db.session.rollback()
    return {
        "contacts_with_email": db.session.scalar(select(func.count(Contact.id)).where(Contact.email.is_not(None))),
        "deliveries": db.session.scalar(select(func.count(Delivery.id))),
        "system_messages": db.session.scalar(select(func.count(SystemMessage.id))),
        "daily_stats": db.session.scalar(select(func.count(DailyStat.id))),
        "webhook_events": db.session.scalar(select(func.count(WebhookEvent.id))),
        "ledger_head": db.session.get(LedgerHead, 1).last_hash,
        "suppressions": db.session.scalar(select(func.count(Suppression.id))),
    }


# -- contacts -------------------------------------------------------------------

def test_inactive_contacts_without_an_active_basis_are_erased(population):
    report = retention.apply(chunk=2)
    assert report.contacts_erased == len(ERASED)
    assert {name for name, status in statuses(population).items() if status == "erased"} == ERASED
    for name in ERASED:
        contact = db.session.get(Contact, population[name].id)
        assert contact.email is None and contact.erased_at is not None
        erase = db.session.scalar(select(ConsentEvent).where(
            ConsentEvent.contact_id == contact.id, ConsentEvent.action == "erase"))
        assert erase.source == "retention"
    assert ledger.verify().ok


def test_the_suppression_hash_survives_so_a_reimport_needs_fresh_consent(population, topics):
    retention.apply()
    kept = db.session.scalar(select(Suppression).where(
        Suppression.email_hash == contacts.hash_of("old-prospect@example.com"), Suppression.scope == "all"))
    assert kept.reason == "erased"
    again = factories.contact("old-prospect@example.com", relationship="customer")
    db.session.commit()
    view = {row["topic"]: row["state"] for row in contacts.subscriptions_view(again)}
    assert view == {"news": "unsubscribed", "tips": "unsubscribed", "orders": "unsubscribed"}


def test_erased_contacts_personal_data_is_gone_from_the_ledger(topics):
    news = topics[0]
    gone = person("gone@example.com")
    contacts.record_consent(gone, action="grant", topic=news, source="form", ip="198.51.100.7",
                            user_agent="Firefox", confirmed=True)
    contacts.record_consent(gone, action="withdraw", topic=news, source="link", ip="198.51.100.7")
    gone.last_interaction_at = LONG_AGO
    db.session.commit()
    retention.apply()
    events = db.session.scalars(select(ConsentEvent).where(ConsentEvent.contact_id == gone.id)).all()
    assert {e.action for e in events} >= {"grant", "withdraw", "erase"}
    assert all(e.redacted and e.ip is None and e.user_agent is None and e.personal is None for e in events)
    assert ledger.verify().ok


# -- deliveries -------------------------------------------------------------------

def test_old_deliveries_become_daily_statistics_and_are_deleted(topics):
    news, _, orders = topics
    ann, bob, cy = person("ann@example.com"), person("bob@example.com"), person("cy@example.com")
    spring, autumn = campaign_on(news, "Spring"), campaign_on(news, "Autumn")
    day = LAST_YEAR
    for contact in (ann, bob):
        delivery(contact, campaign=spring, at=day)
    delivery(cy, campaign=spring, status="skipped", reason="unsubscribed", at=day)
    delivery(ann, campaign=autumn, status="failed", at=day + dt.timedelta(days=1))
    invoice = system_message(ann, orders, at=day)
    delivery(ann, message=invoice, at=day)
    recent_campaign = campaign_on(news, "Recent")
    recent = delivery(bob, campaign=recent_campaign, at=NOW - dt.timedelta(days=10))
    # A row from an earlier run for the same day and campaign is added to, not duplicated.
    db.session.add(DailyStat(day=day.date(), campaign_id=spring.id, topic_id=news.id, status="sent",
                             reason="", count=10))
    db.session.commit()

    report = retention.apply(chunk=2)

    assert (report.deliveries_aggregated, report.system_messages_deleted) == (5, 1)
    stats = {(s.day, s.campaign_id, s.topic_id, s.status, s.reason): s.count
             for s in db.session.scalars(select(DailyStat))}
    assert stats == {
        (day.date(), spring.id, news.id, "sent", ""): 12,
        (day.date(), spring.id, news.id, "skipped", "unsubscribed"): 1,
        ((day + dt.timedelta(days=1)).date(), autumn.id, news.id, "failed", ""): 1,
        (day.date(), None, orders.id, "sent", ""): 1,
    }
    assert db.session.scalars(select(Delivery.id)).all() == [recent.id]
    assert db.session.scalar(select(func.count(SystemMessage.id))) == 0
    assert ledger.verify().ok


def test_system_message_statistics_from_two_runs_add_up(topics):
    orders = topics[2]
    ann = person("ann@example.com")
    delivery(ann, message=system_message(ann, orders))
    db.session.commit()
    retention.apply()
    bob = person("bob@example.com", last_seen=NOW)
    delivery(bob, message=system_message(bob, orders))
    db.session.commit()
    retention.apply()
    (stat,) = db.session.scalars(select(DailyStat)).all()
    assert (stat.campaign_id, stat.topic_id, stat.count) == (None, orders.id, 2)


def test_old_webhook_events_are_deleted(ctx):
    db.session.add_all([
        WebhookEvent(provider_event_id="old", event="open", payload={"email": "a@example.com"},
                     received_at=NOW - dt.timedelta(days=8), processed_at=NOW - dt.timedelta(days=8)),
        WebhookEvent(provider_event_id="new", event="open", payload={"email": "a@example.com"}, received_at=NOW),
    ])
    db.session.commit()
    assert retention.plan().webhook_events_deleted == 1
    assert retention.apply().webhook_events_deleted == 1
    assert db.session.scalars(select(WebhookEvent.provider_event_id)).all() == ["new"]


def upload(status: str, days_old: int) -> ImportJob:
    """An import job with its CSV on disk, created `days_old` days ago."""
    job = imports.store(io.BytesIO(b"email\nann@example.com\n"), "people.csv", created_by="staff:mia@example.com")
    job.status = status
    job.created_at = NOW - dt.timedelta(days=days_old)
    db.session.commit()
    return job


def age(path: Path, days: int) -> None:
    old = (NOW - dt.timedelta(days=days)).timestamp()
    os.utime(path, (old, old))


def test_unused_uploads_are_deleted_after_a_week_and_files_still_needed_are_kept(ctx):
    stale = {status: upload(status, days_old=8) for status in ("uploaded", "previewed", "failed")}
    needed = {status: upload(status, days_old=8) for status in ("queued", "running")}
    recent = upload("previewed", days_old=2)
    orphan_old = imports.uploads_folder() / "orphan-old.csv"
    orphan_new = imports.uploads_folder() / "orphan-new.csv"
    for path in (orphan_old, orphan_new):
        path.write_text("email\nbob@example.com\n")
    age(orphan_old, 8)
    paths = {job.id: Path(job.stored_path) for job in [*stale.values(), *needed.values(), recent]}

    assert retention.plan().uploads_deleted == 4  # three stale jobs and the old orphan
    assert all(path.exists() for path in paths.values()) and orphan_old.exists()

    assert retention.apply().uploads_deleted == 4
    for job in stale.values():
        db.session.refresh(job)
        assert (job.status, job.stored_path) == ("discarded", None)
        assert "retention" in job.error and not paths[job.id].exists()
    for job in [*needed.values(), recent]:
        db.session.refresh(job)
        assert job.stored_path is not None and paths[job.id].exists()
    assert not orphan_old.exists() and orphan_new.exists()
    assert retention.apply().uploads_deleted == 0


# -- dry run, idempotence, the command and the task --------------------------------------

def test_a_dry_run_reports_the_counts_and_changes_nothing(population, topics):
    news, _, orders = topics
    spring = campaign_on(news)
    delivery(population["old_prospect"], campaign=spring)
    delivery(population["old_customer"], message=system_message(population["old_customer"], orders))
    db.session.commit()
    before = counts()
    report = retention.plan()
    assert report.dry_run is True
    assert (report.contacts_erased, report.deliveries_aggregated, report.system_messages_deleted) == (3, 2, 1)
    assert counts() == before
    assert ledger.verify().ok
    done = retention.apply()
    assert (done.contacts_erased, done.deliveries_aggregated, done.system_messages_deleted) == (3, 2, 1)


def test_a_second_run_finds_nothing_left_to_do(population):
    retention.apply()
    again = retention.apply()
    assert (again.contacts_erased, again.deliveries_aggregated, again.webhook_events_deleted) == (0, 0, 0)
    assert ledger.verify().ok


def test_the_cli_command_supports_a_dry_run(app, population):
    runner = app.test_cli_runner()
    dry = runner.invoke(retention_command, ["--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "dry run: nothing changed" in dry.output and "contacts_erased: 3" in dry.output
    assert statuses(population)["old_prospect"] == "active"
    real = runner.invoke(retention_command, [])
    assert real.exit_code == 0, real.output
    assert "contacts_erased: 3" in real.output
    assert statuses(population)["old_prospect"] == "erased"


def test_the_daily_task_runs_the_policy(population):
    from preference_center.tasks import run_retention

    assert run_retention(dry_run=True)["contacts_erased"] == 3
    assert statuses(population)["old_prospect"] == "active"
    result = run_retention()
    assert result["contacts_erased"] == 3 and result["dry_run"] is False
    assert statuses(population)["old_prospect"] == "erased"

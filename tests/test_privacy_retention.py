"""Retention per relationship (PC_RETENTION_<RELATIONSHIP>_DAYS), and the campaign report after delivery rows are
folded into anonymous daily statistics."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from preference_center import campaigns, contacts, ledger, retention
from preference_center.extensions import db
from preference_center.models import Campaign, Contact, DailyStat, Delivery, SystemMessage, utcnow

from .helpers import factories

NOW = utcnow()
FOUR_YEARS_AGO = NOW - dt.timedelta(days=4 * 365)


@pytest.fixture
def app_config(app_config):
    # Candidates go after half a year; suppliers are never erased; the rest follow PC_RETENTION_DAYS (3 years).
    return {**app_config, "PC_RETENTION_CANDIDATE_DAYS": 180, "PC_RETENTION_SUPPLIER_DAYS": 0}


@pytest.fixture
def topics(ctx):
    news = factories.topic("news")
    orders = factories.topic("orders", kind="system", basis="contract")
    db.session.commit()
    return news, orders


def person(email: str, relationship: str, *, opted_out: bool = False, last_seen=FOUR_YEARS_AGO) -> Contact:
    contact = factories.contact(email, relationship=relationship)
    if opted_out:
        contacts.record_consent(contact, action=ledger.WITHDRAW, topic=None, source="test")
    db.session.flush()
    contact.last_interaction_at = last_seen  # the ledger stamps every event: set it last
    return contact


def invoice(contact: Contact, orders, at: dt.datetime) -> None:
    message = SystemMessage(topic_id=orders.id, contact_id=contact.id, request_digest="d" * 64, subject="Invoice",
                            text="Invoice", data={}, created_at=at)
    db.session.add(message)
    db.session.flush()
    db.session.add(Delivery(system_message_id=message.id, contact_id=contact.id, status="sent", created_at=at,
                            updated_at=at))


def statuses(people: dict) -> dict[str, str]:
    db.session.expire_all()
    return {name: db.session.get(Contact, c.id).status for name, c in people.items()}


def test_each_relationship_has_its_own_retention(topics):
    _, orders = topics
    people = {
        "customer_opted_out_4y_ago": person("a@example.com", "customer", opted_out=True),
        "customer_opted_out_but_invoiced": person("b@example.com", "customer", opted_out=True),
        "customer_still_reachable": person("c@example.com", "customer"),
        "partner_opted_out": person("d@example.com", "partner", opted_out=True),
        "supplier_opted_out": person("e@example.com", "supplier", opted_out=True),
        "customer_opted_out_last_year": person("f@example.com", "customer", opted_out=True,
                                               last_seen=NOW - dt.timedelta(days=365)),
        "candidate_200_days": person("g@example.com", "candidate", last_seen=NOW - dt.timedelta(days=200)),
        "prospect_200_days": person("h@example.com", "prospect", last_seen=NOW - dt.timedelta(days=200)),
        "prospect_4_years": person("i@example.com", "prospect"),
    }
    invoice(people["customer_opted_out_but_invoiced"], orders, NOW - dt.timedelta(days=20))
    db.session.commit()
    planned = retention.plan()
    assert planned.contacts_erased == 4
    report = retention.apply()
    assert report.contacts_erased == 4
    assert {name for name, status in statuses(people).items() if status == "erased"} == {
        "customer_opted_out_4y_ago", "partner_opted_out", "candidate_200_days", "prospect_4_years"}
    assert ledger.verify().ok


def test_the_retention_periods_come_from_the_settings(app):
    with app.app_context():
        assert retention.retention_days("candidate") == 180
        assert retention.retention_days("supplier") == 0
        assert retention.retention_days("customer") == app.config["PC_RETENTION_DAYS"]
        assert "supplier" not in retention.cutoffs(NOW)


def test_an_old_campaigns_report_counts_its_folded_deliveries(topics):
    news, _ = topics
    campaign = Campaign(name="Old", topic_id=news.id, subject="Hi", text="Hi", status="sent")
    db.session.add(campaign)
    db.session.flush()
    long_ago = NOW - dt.timedelta(days=500)
    for index, (status, reason) in enumerate([("sent", None)] * 3 + [("skipped", "no_consent"), ("failed", None)]):
        contact = factories.contact(f"p{index}@example.com")
        db.session.add(Delivery(campaign_id=campaign.id, contact_id=contact.id, status=status, reason=reason,
                                created_at=long_ago, updated_at=long_ago))
    db.session.commit()
    before = campaigns.report(campaign)
    assert (before["sent"], before["skipped"], before["failed"], before["eligible"]) == (3, {"no_consent": 1}, 1, 5)
    retention.apply()
    assert db.session.scalar(select(func.count(Delivery.id))) == 0
    assert db.session.scalar(select(func.sum(DailyStat.count))) == 5
    after = campaigns.report(db.session.get(Campaign, campaign.id))
    assert {k: after[k] for k in ("sent", "skipped", "failed", "eligible")} == \
        {k: before[k] for k in ("sent", "skipped", "failed", "eligible")}

"""Retention folds old engagement rows into anonymous per-campaign, per-hour counts that the campaign report adds
back (the figures do not change, each recipient still counts once), and an erased contact's engagement rows go."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from preference_center import contacts, engagement, retention
from preference_center.extensions import db
from preference_center.models import Campaign, Delivery, EngagementEvent, EngagementStat, utcnow

from .helpers import factories

NOW = utcnow().replace(minute=30, second=0, microsecond=0)
OLD = (NOW - dt.timedelta(days=500)).replace(hour=9)  # past the default 400-day PC_DELIVERY_RETENTION_DAYS
RECENT = NOW - dt.timedelta(days=3)


@pytest.fixture
def news(ctx):
    topic = factories.topic("news")
    db.session.commit()
    return topic


def campaign_on(topic, name: str) -> Campaign:
    campaign = Campaign(name=name, topic_id=topic.id, subject="S", text="T", html="", status="sent",
                        created_by="t", audience={})
    db.session.add(campaign)
    db.session.flush()
    return campaign


def delivered(contact, campaign: Campaign, at: dt.datetime) -> Delivery:
    row = Delivery(campaign_id=campaign.id, contact_id=contact.id, status="sent", created_at=at, updated_at=at)
    db.session.add(row)
    db.session.flush()
    return row


def happened(delivery: Delivery, kind: str, at: dt.datetime, url: str | None = None) -> None:
    db.session.add(EngagementEvent(campaign_id=delivery.campaign_id, delivery_id=delivery.id, kind=kind, url=url,
                                   occurred_at=at))


@pytest.fixture
def old_campaign(news):
    """Four recipients of a campaign sent long ago, with every kind of event; one of them also recently."""
    campaign = campaign_on(news, "Spring")
    ann, bob, cy, dee = (factories.contact(f"{n}@example.com") for n in ("ann", "bob", "cy", "dee"))
    a, b, c, d = (delivered(p, campaign, OLD) for p in (ann, bob, cy, dee))
    for row in (a, b, c):
        happened(row, "delivered", OLD)
    happened(a, "open", OLD + dt.timedelta(minutes=5))
    happened(a, "open", OLD + dt.timedelta(hours=1, minutes=5))  # opened twice, one hour apart: one opener
    happened(b, "open", OLD + dt.timedelta(hours=1))
    happened(a, "click", OLD + dt.timedelta(minutes=6), url="https://example.com/shop")
    happened(a, "click", OLD + dt.timedelta(minutes=7), url="https://example.com/shop")
    happened(b, "click", OLD + dt.timedelta(hours=1, minutes=1), url="https://example.com/faq")
    happened(d, "bounce", OLD)
    happened(d, "dropped", OLD + dt.timedelta(minutes=1))  # bounced twice over: one bounced recipient
    happened(c, "unsubscribe", OLD + dt.timedelta(minutes=9))
    happened(c, engagement.OWN_UNSUBSCRIBE, OLD + dt.timedelta(minutes=8))  # and through our link: counted once
    happened(b, "spamreport", OLD + dt.timedelta(hours=2))
    db.session.commit()
    return campaign


def test_retention_folds_old_engagement_rows_and_the_report_reads_the_same(old_campaign):
    before = engagement.report(old_campaign.id)
    assert before["unsubscribed"] == 1 and before["bounced"] == 1 and before["opened"] == 2
    planned = retention.plan(NOW)
    assert planned.engagement_events_folded == 14
    assert db.session.scalar(select(func.count(EngagementEvent.id))) == 14  # the dry run changed nothing
    done = retention.apply(NOW, chunk=2)
    assert done.engagement_events_folded == 14
    assert db.session.scalar(select(func.count(EngagementEvent.id))) == 0
    assert engagement.report(old_campaign.id) == before
    # Anonymous: the folded counts name no delivery and no person.
    assert {c.name for c in EngagementStat.__table__.columns} == {"id", "campaign_id", "hour", "name", "url", "count"}


def test_folded_counts_and_new_rows_add_up(old_campaign):
    retention.apply(NOW)
    late = delivered(factories.contact("eve@example.com"), old_campaign, RECENT)
    happened(late, "open", RECENT)
    happened(late, "click", RECENT, url="https://example.com/shop")
    db.session.commit()
    figures = engagement.report(old_campaign.id)
    assert (figures["opened"], figures["clicked"], figures["unsubscribed_by_link"]) == (3, 3, 1)
    assert figures["top_links"][0] == {"url": "https://example.com/shop", "clicks": 2}
    old_hour = (OLD.astimezone(dt.UTC)).strftime("%Y-%m-%d %H:00")
    assert {"hour": old_hour, "opens": 1, "clicks": 2} in figures["over_time"]
    # A second run folds nothing more (the new rows are recent) and changes no figure.
    assert retention.apply(NOW).engagement_events_folded == 0
    assert engagement.report(old_campaign.id) == figures


def test_recent_engagement_rows_stay_as_they_are(news):
    campaign = campaign_on(news, "Now")
    row = delivered(factories.contact("ann@example.com"), campaign, RECENT)
    happened(row, "delivered", RECENT)
    happened(row, "open", RECENT)
    db.session.commit()
    assert retention.apply(NOW).engagement_events_folded == 0
    assert db.session.scalar(select(func.count(EngagementEvent.id))) == 2
    assert db.session.scalar(select(func.count(EngagementStat.id))) == 0


def test_an_erased_contacts_engagement_rows_are_erased_and_the_report_keeps_its_figures(news):
    campaign = campaign_on(news, "Now")
    ann, bob = factories.contact("ann@example.com"), factories.contact("bob@example.com")
    a, b = delivered(ann, campaign, RECENT), delivered(bob, campaign, RECENT)
    for row in (a, b):
        happened(row, "delivered", RECENT)
        happened(row, "open", RECENT)
    happened(a, "click", RECENT, url="https://example.com/shop")
    db.session.commit()
    before = engagement.report(campaign.id)
    contacts.erase(ann, source="test")
    db.session.commit()
    left = db.session.scalars(select(EngagementEvent.delivery_id)).all()
    assert left and set(left) == {b.id}
    assert engagement.report(campaign.id) == before

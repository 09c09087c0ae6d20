"""Engagement per campaign from the provider's events, and open/click tracking only with consent.

Tracking needs both the topic's setting and the recipient's own yes, recorded in the ledger like any
consent; otherwise the provider is told explicitly not to add a pixel or rewrite links.
"""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from preference_center import actors, campaigns, engagement, feedback, ledger, links
from preference_center.commands import tracking
from preference_center.extensions import db
from preference_center.models import AuditLog, ConsentEvent, Delivery

from .helpers import csrf_token, drain, factories, ledger_ok, text_of

# Sent through the real sendgrid client to the fake provider (`fake`, tests/conftest.py).
pytestmark = pytest.mark.sendgrid()


MIA = actors.staff("mia@example.com")


# A contact with confirmed consent to the topic.
subscriber = factories.subscriber


@pytest.fixture
def news(ctx):
    topic = factories.topic("news")
    db.session.commit()
    return topic


def run(topic, html: str = '<p>Hi <a href="https://example.com/shop">shop</a></p>') -> int:
    campaign = campaigns.create({"name": "W", "topic": topic.key, "subject": "Hi", "text": "Hello", "html": html},
                                created_by="t")
    campaigns.schedule(campaign, None)
    db.session.commit()
    drain(campaign.id)
    return campaign.id


def tracking_of(fake) -> dict[str, dict]:
    """Recipient -> the tracking settings of the request that carried them."""
    return {p["to"][0]["email"]: payload["tracking_settings"]
            for payload in fake.payloads for p in payload["personalizations"]}


OFF = {"click_tracking": {"enable": False, "enable_text": False}, "open_tracking": {"enable": False}}
ON = {"click_tracking": {"enable": True, "enable_text": True}, "open_tracking": {"enable": True}}


def test_without_the_recipients_consent_nothing_is_tracked_even_when_the_topic_allows_it(news, fake):
    yes, no, silent = (subscriber(news, f"{n}@example.com") for n in ("yes", "no", "silent"))
    tracking.choose(actors.link("preferences page"), yes, True)
    tracking.choose(actors.link("preferences page"), no, True)
    tracking.choose(actors.link("preferences page"), no, False)  # changed their mind: the latest counts
    tracking.set_topic(MIA, news, True)
    db.session.commit()
    run(news)
    assert tracking_of(fake) == {"yes@example.com": ON, "no@example.com": OFF, "silent@example.com": OFF}
    assert fake.requests == 2  # tracked and untracked recipients go in separate requests


def test_a_topic_that_does_not_track_tracks_nobody_even_those_who_agreed(news, fake):
    yes = subscriber(news, "yes@example.com")
    tracking.choose(actors.link("preferences page"), yes, True)
    db.session.commit()
    run(news)
    assert tracking_of(fake) == {"yes@example.com": OFF}


def test_the_recipients_choice_is_a_ledger_event_from_their_preference_page(news, client):
    ana = subscriber(news, "ana@example.com")
    token = links.make(links.PREFERENCES, ana)
    page = client.get(f"/p/{token}")
    assert 'id="tracking-no" checked' in page.text
    response = client.post(f"/p/{token}/tracking", data={"csrf_token": csrf_token(page.text), "tracking": "yes"},
                           headers={"User-Agent": "Test browser"})
    assert response.status_code == 303
    event = db.session.scalar(select(ConsentEvent).where(ConsentEvent.action == ledger.TRACKING))
    assert (event.contact_id, event.detail, event.scope, event.confirmed) == (ana.id, {"allowed": True}, "contact", True)
    assert event.user_agent == "Test browser"
    assert engagement.agreed([ana.id]) == {ana.id}
    again = client.get(f"/p/{token}")
    assert 'id="tracking-yes" checked' in again.text
    # Saving the same choice again records nothing new.
    client.post(f"/p/{token}/tracking", data={"csrf_token": csrf_token(again.text), "tracking": "yes"})
    assert len(db.session.scalars(select(ConsentEvent).where(ConsentEvent.action == ledger.TRACKING)).all()) == 1
    assert ledger_ok(client.application)
    assert db.session.scalar(select(AuditLog.action).where(AuditLog.action == "consent.tracking"))


def test_staff_turn_a_topics_tracking_on_and_off(news, as_marketer):
    assert "Off" in text_of(as_marketer.get("/admin/topics/news").text)
    as_marketer.post("/admin/topics/news/tracking", {"enabled": "1"})
    assert engagement.topic_tracks(news)
    assert "On for recipients who agreed" in text_of(as_marketer.get("/admin/topics/news").text)
    as_marketer.post("/admin/topics/news/tracking", {"enabled": "0"})
    db.session.expire_all()
    assert not engagement.topic_tracks(news)


def event(delivery: Delivery, kind: str, n: int, **extra) -> dict:
    stamp = int(dt.datetime(2030, 1, 1, 9, tzinfo=dt.UTC).timestamp()) + n * 60
    return {"sg_event_id": f"{kind}-{delivery.id}-{n}", "event": kind, "email": "x@example.com",
            "delivery_id": str(delivery.id), "campaign_id": str(delivery.campaign_id), "timestamp": stamp, **extra}


def test_the_report_counts_engagement_per_campaign_from_provider_events(news, fake, as_marketer):
    people = [subscriber(news, f"p{i}@example.com") for i in range(4)]
    campaign_id = run(news)
    d = {row.contact_id: row for row in db.session.scalars(select(Delivery).where(Delivery.campaign_id == campaign_id))}
    a, b, c, e = (d[p.id] for p in people)
    events = [event(a, "delivered", 0), event(b, "delivered", 0), event(c, "delivered", 0),
              event(a, "open", 1), event(a, "open", 2), event(b, "open", 61),
              event(a, "click", 3, url="https://example.com/shop"), event(b, "click", 62, url="https://example.com/shop"),
              event(b, "click", 63, url="https://example.com/faq"),
              event(e, "bounce", 0, type="bounce"), event(c, "spamreport", 5)]
    receipt = feedback.receive(events)
    feedback.process(receipt.new_ids)
    figures = engagement.report(campaign_id)
    assert {k: figures[k] for k in ("delivered", "opened", "clicked", "bounced", "complained", "unsubscribed")} == \
        {"delivered": 3, "opened": 2, "clicked": 2, "bounced": 1, "complained": 1, "unsubscribed": 0}
    assert figures["top_links"] == [{"url": "https://example.com/shop", "clicks": 2},
                                    {"url": "https://example.com/faq", "clicks": 1}]
    assert figures["over_time"] == [{"hour": "2030-01-01 09:00", "opens": 2, "clicks": 1},
                                    {"hour": "2030-01-01 10:00", "opens": 1, "clicks": 2}]
    # Processing the same events again counts nothing twice.
    feedback.process(receipt.new_ids)
    assert engagement.report(campaign_id)["opened"] == 2
    page = as_marketer.get(f"/admin/campaigns/{campaign_id}/report")
    text = text_of(page.text)
    assert "3 delivered" in text and "2 opened" in text and "2 clicked" in text and "1 complained" in text
    assert "https://example.com/shop 2" in text

"""Safe sending: the live audience count, the confirmation step, and destructive actions that confirm.

The count (API `GET /api/v1/campaigns/<id>/audience`, the compose form, the campaign page and the
confirmation step) is the planner's own audience query with the campaign's filters, so the number staff
confirm is the number of recipients who then get the campaign. Nothing is scheduled, cancelled or retired
on the first post: the next page says how many, when, or what is lost, and asks.
"""
from __future__ import annotations

import datetime as dt
import re

import pytest
from sqlalchemy import select

from preference_center import campaigns, contacts, optouts, sending
from preference_center.extensions import db
from preference_center.models import Campaign, Contact, utcnow

from .helpers import confirm_and_post, csrf_token, factories, text_of

# Sent through the real sendgrid client to the fake provider (`fake`, tests/conftest.py).
pytestmark = pytest.mark.sendgrid(PC_SENDGRID_MAX_ATTEMPTS=2, PC_BATCH_SIZE=100)


@pytest.fixture
def crowd(ctx):
    """A consent topic and a mix: subscribed (en and es), withdrawn, suppressed, pending, a waiting one-click opt-out."""
    news = factories.topic("news")
    factories.topic("tips", basis="legitimate_interest", relationships=["customer"])
    people = {}
    for i in range(7):
        people[f"en{i}"] = factories.contact(f"en{i}@example.com", name=f"En {i}", locale="en")
    for i in range(4):
        people[f"es{i}"] = factories.contact(f"es{i}@example.com", name=f"Es {i}", locale="es", relationship="customer")
    for contact in people.values():
        contacts.record_consent(contact, action="grant", topic=news, source="test", confirmed=True)
    contacts.record_consent(people["en0"], action="withdraw", topic=news, source="test")
    contacts.suppress(people["en1"].email_hash, "all", "hard_bounce", source="test", contact=people["en1"])
    pending = factories.contact("pending@example.com")
    contacts.record_consent(pending, action="grant", topic=news, source="test", confirmed=False)
    db.session.commit()
    # A one-click opt-out taken a moment ago, not yet chained into the ledger.
    assert optouts.take(people["en2"].id, people["en2"].token_version, 0, source="one-click", ip=None, user_agent=None)
    return news


def run(campaign_id: int) -> None:
    campaigns.start_due()
    while (batch := sending.plan_chunk(campaign_id, 3)) is not None:
        sending.send_batch(batch)


def create(api, **fields) -> int:
    body = {"name": "Winter", "topic": "news", "subject": "Hi {{ contact.first_name }}", "text": "Hello", **fields}
    created = api.post("/campaigns", json=body)
    assert created.status_code == 201, created.json
    return created.json["id"]


# -- the API count ---------------------------------------------------------------------------

@pytest.mark.parametrize("audience, expected", [(None, 8), ({"locales": ["es"]}, 4), ({"relationships": ["customer"]}, 4),
                                                ({"locales": ["en"], "relationships": ["prospect"]}, 4)])
def test_the_api_count_equals_the_recipients_who_then_receive_the_campaign(crowd, api, fake, audience, expected):
    campaign_id = create(api, **({"audience": audience} if audience else {}))
    answer = api.get(f"/campaigns/{campaign_id}/audience")
    assert answer.status_code == 200 and answer.json == {"count": expected}
    assert api.post(f"/campaigns/{campaign_id}/schedule", json={"at": None}).status_code == 200
    run(campaign_id)
    assert len({a.to[0] for a in fake.accepted}) == len(fake.accepted) == expected


def test_the_api_count_is_live_and_read_only(crowd, api):
    campaign_id = create(api)
    assert api.get(f"/campaigns/{campaign_id}/audience").json == {"count": 8}
    assert api.get(f"/campaigns/{campaign_id}/audience").json == {"count": 8}  # reading settles nothing
    newcomer = factories.contact("new@example.com")
    contacts.record_consent(newcomer, action="grant", topic=crowd, source="test", confirmed=True)
    db.session.commit()
    assert api.get(f"/campaigns/{campaign_id}/audience").json == {"count": 9}


def test_the_api_count_of_an_unknown_or_started_campaign_is_refused(crowd, api, fake):
    assert api.get("/campaigns/999/audience").status_code == 404
    campaign_id = create(api)
    api.post(f"/campaigns/{campaign_id}/schedule", json={"at": None})
    run(campaign_id)
    refused = api.get(f"/campaigns/{campaign_id}/audience")
    assert refused.status_code == 409 and refused.json["error"]["code"] == "conflict"


def test_the_count_needs_a_token(crowd, client):
    assert client.get("/api/v1/campaigns/1/audience").status_code == 401


# -- the confirmation step --------------------------------------------------------------------

def draft(staff, **fields) -> Campaign:
    page = staff.get("/admin/campaigns/new")
    response = staff.post("/admin/campaigns/new", {
        "csrf_token": csrf_token(page.text), "name": "Winter", "topic": "news", "subject": "Hi {{ contact.name }}",
        "text": "Hello", "html": "", "action": "save", **fields})
    assert response.status_code == 302, response.text
    return db.session.scalar(select(Campaign).order_by(Campaign.id.desc()))


def test_an_empty_time_asks_to_confirm_the_count_and_now_before_anything_is_sent(crowd, as_marketer, fake):
    campaign = draft(as_marketer)
    step = as_marketer.post(f"/admin/campaigns/{campaign.id}/schedule", {"at": "", "zone": "UTC"})
    assert step.status_code == 200
    assert "8 recipients, now" in text_of(step.text)
    assert "Yes, send now to 8 recipients" in text_of(step.text)
    db.session.refresh(campaign)
    assert campaign.status == "draft" and campaign.scheduled_at is None
    done = confirm_and_post(as_marketer, f"/admin/campaigns/{campaign.id}/schedule", {"at": "", "zone": "UTC"})
    assert done.status_code == 302
    run(campaign.id)
    assert len(fake.accepted) == 8


def test_a_time_is_confirmed_in_its_own_zone_with_the_count(crowd, as_marketer):
    campaign = draft(as_marketer, locales="es")
    step = as_marketer.post(f"/admin/campaigns/{campaign.id}/schedule", {"at": "2030-07-01T10:00", "zone": "Europe/Madrid"})
    assert "4 recipients, at 2030-07-01 10:00 Europe/Madrid (08:00 UTC)" in text_of(step.text)
    db.session.refresh(campaign)
    assert campaign.status == "draft"
    confirm_and_post(as_marketer, f"/admin/campaigns/{campaign.id}/schedule",
                     {"at": "2030-07-01T10:00", "zone": "Europe/Madrid"})
    db.session.refresh(campaign)
    assert campaign.status == "scheduled" and campaign.scheduled_at == dt.datetime(2030, 7, 1, 8, 0, tzinfo=dt.UTC)


def test_a_count_that_changed_before_confirming_is_shown_again_and_nothing_is_scheduled(crowd, as_marketer):
    campaign = draft(as_marketer)
    step = as_marketer.post(f"/admin/campaigns/{campaign.id}/schedule", {"at": "", "zone": "UTC"})
    assert 'name="count" value="8"' in step.text
    leaving = db.session.scalar(select(Contact).where(Contact.email == "en3@example.com"))
    contacts.record_consent(leaving, action="withdraw", topic=crowd, source="test")
    db.session.commit()
    again = as_marketer.post(f"/admin/campaigns/{campaign.id}/schedule",
                             {"at": "", "zone": "UTC", "count": "8", "confirm": "1"})
    assert again.status_code == 409
    assert "The audience changed since you looked: it is now 7 recipients" in text_of(again.text)
    db.session.refresh(campaign)
    assert campaign.status == "draft"


def test_rescheduling_starts_from_the_current_time_in_its_zone(crowd, as_marketer):
    campaign = draft(as_marketer)
    confirm_and_post(as_marketer, f"/admin/campaigns/{campaign.id}/schedule",
                     {"at": "2030-07-01T10:00", "zone": "Europe/Madrid"})
    page = as_marketer.get(f"/admin/campaigns/{campaign.id}")
    assert re.search(r'<input[^>]*id="at"[^>]*value="2030-07-01T10:00"', page.text)
    assert re.search(r'<option selected value="Europe/Madrid">|<option value="Europe/Madrid" selected>', page.text)
    # Only the zone changed: the same wall-clock time in the new zone, never "now".
    step = as_marketer.post(f"/admin/campaigns/{campaign.id}/schedule",
                            {"at": "2030-07-01T10:00", "zone": "America/New_York"})
    assert "at 2030-07-01 10:00 America/New_York (14:00 UTC)" in text_of(step.text)


def test_the_campaign_page_shows_the_eligible_count(crowd, as_marketer):
    campaign = draft(as_marketer, relationships="customer")
    assert "Eligible now 4 recipients" in text_of(as_marketer.get(f"/admin/campaigns/{campaign.id}").text)


def test_the_compose_form_counts_live_as_the_filter_changes(crowd, as_marketer):
    page = as_marketer.get("/admin/campaigns/new")
    assert "Eligible now: 8" in text_of(page.text) and "admin-audience.js" in page.text
    url = "/admin/campaigns/audience-count"
    assert as_marketer.get(url, query_string={"topic": "news"}).json == {"count": 8}
    assert as_marketer.get(url, query_string={"topic": "news", "locales": "es, en"}).json == {"count": 8}
    assert as_marketer.get(url, query_string={"topic": "news", "relationships": ["customer"]}).json == {"count": 4}
    assert as_marketer.get(url, query_string={"topic": "tips"}).json == {"count": 4}  # customers, legitimate interest
    bad = as_marketer.get(url, query_string={"topic": "news", "locales": "english"})
    assert bad.status_code == 422 and "locale" in bad.json["error"]
    assert as_marketer.get(url, query_string={"topic": "nope"}).status_code == 422


# -- destructive actions confirm ----------------------------------------------------------------

def test_cancel_asks_first(crowd, as_marketer):
    campaign = draft(as_marketer)
    step = as_marketer.post(f"/admin/campaigns/{campaign.id}/cancel")
    assert step.status_code == 200 and "Yes, cancel the campaign" in step.text
    db.session.refresh(campaign)
    assert campaign.status == "draft"
    assert confirm_and_post(as_marketer, f"/admin/campaigns/{campaign.id}/cancel").status_code == 302
    db.session.refresh(campaign)
    assert campaign.status == "cancelled"


def test_retire_asks_first(crowd, as_marketer):
    step = as_marketer.post("/admin/topics/news/retire")
    assert step.status_code == 200 and "Yes, retire it" in step.text
    db.session.refresh(crowd)
    assert not crowd.retired
    assert confirm_and_post(as_marketer, "/admin/topics/news/retire").status_code == 302
    db.session.refresh(crowd)
    assert crowd.retired


def test_a_scheduled_campaign_keeps_its_time_until_confirmed(crowd, as_marketer):
    campaign = draft(as_marketer)
    confirm_and_post(as_marketer, f"/admin/campaigns/{campaign.id}/schedule", {"at": "2030-07-01T10:00", "zone": "UTC"})
    as_marketer.post(f"/admin/campaigns/{campaign.id}/schedule", {"at": "", "zone": "UTC"})  # not confirmed
    db.session.refresh(campaign)
    assert campaign.scheduled_at == dt.datetime(2030, 7, 1, 10, 0, tzinfo=dt.UTC) > utcnow()

"""Audience filters beyond relationship and locale: company, source, creation and last-interaction days.

They narrow the planner's own audience query (they never add anyone), so the live count, the API's
count and the recipients who then get the campaign agree; a filter of the wrong shape is refused at
every door and changes nothing.
"""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select, update

from preference_center import campaigns, contacts
from preference_center.extensions import db
from preference_center.models import Campaign, Contact

from .helpers import csrf_token, drain, factories, text_of

# Sent through the real sendgrid client to the fake provider (`fake`, tests/conftest.py).
pytestmark = pytest.mark.sendgrid()


PEOPLE = (  # email, company, source of their grant, created, last interaction
    ("ana@example.com", "Acme", "import:7", "2026-01-10", "2026-06-01"),
    ("bo@example.com", "ACME", "form", "2026-03-05", "2026-03-05"),
    ("cy@example.com", "Umbrella", "import:7", "2026-05-20", "2026-11-01"),
    ("di@example.com", None, "form", "2025-12-31", "2026-01-02"),
)


@pytest.fixture
def people(ctx):
    news = factories.topic("news")
    for email, company, source, created, seen in PEOPLE:
        person = factories.contact(email, company=company)
        contacts.record_consent(person, action="grant", topic=news, source=source, confirmed=True)
        db.session.flush()
        db.session.execute(update(Contact).where(Contact.id == person.id).values(
            created_at=dt.datetime.fromisoformat(created + "T12:00:00+00:00"),
            last_interaction_at=dt.datetime.fromisoformat(seen + "T12:00:00+00:00")))
    db.session.commit()


@pytest.mark.parametrize("audience, expected", [
    ({"companies": ["acme"]}, {"ana@example.com", "bo@example.com"}),
    ({"sources": ["import:7"]}, {"ana@example.com", "cy@example.com"}),
    ({"created_after": "2026-01-10"}, {"ana@example.com", "bo@example.com", "cy@example.com"}),
    ({"created_before": "2026-01-10"}, {"di@example.com"}),
    ({"interacted_after": "2026-06-01", "interacted_before": "2026-11-01"}, {"ana@example.com"}),
    ({"companies": ["Acme", "Umbrella"], "sources": ["import:7"], "created_after": "2026-02-01"}, {"cy@example.com"}),
])
def test_each_filter_narrows_and_the_count_equals_who_receives_it(people, api, fake, audience, expected):
    created = api.post("/campaigns", json={"name": "W", "topic": "news", "subject": "Hi", "text": "Hello",
                                           "audience": audience})
    assert created.status_code == 201, created.json
    assert created.json["audience"] == audience
    campaign_id = created.json["id"]
    assert api.get(f"/campaigns/{campaign_id}/audience").json == {"count": len(expected)}
    api.post(f"/campaigns/{campaign_id}/schedule", json={"at": None})
    drain(campaign_id)
    assert {a.to[0] for a in fake.accepted} == expected


@pytest.mark.parametrize("audience", [
    {"created_after": "2026-02-30"}, {"created_after": "yesterday"}, {"interacted_before": ["2026-01-01"]},
    {"companies": "Acme"}, {"companies": [""]}, {"sources": ["x" * 201]}, {"companies": ["a"] * 51},
])
def test_a_filter_of_the_wrong_shape_is_refused_and_nothing_is_stored(people, api, audience):
    response = api.post("/campaigns", json={"name": "W", "topic": "news", "subject": "Hi", "text": "Hello",
                                            "audience": audience})
    assert response.status_code == 422, response.json
    assert response.json["error"]["field"].startswith("audience")
    with pytest.raises(campaigns.ValidationError):
        campaigns.create({"name": "W", "topic": "news", "subject": "Hi", "text": "Hello", "audience": audience},
                         created_by="t")
    db.session.rollback()
    assert db.session.scalar(select(func.count(Campaign.id))) == 0


def test_staff_set_the_filters_in_the_compose_form_and_the_live_count_follows(people, as_marketer):
    url = "/admin/campaigns/audience-count"
    assert as_marketer.get(url, query_string={"topic": "news", "companies": "acme"}).json == {"count": 2}
    assert as_marketer.get(url, query_string={"topic": "news", "created_before": "2026-01-10"}).json == {"count": 1}
    page = as_marketer.get("/admin/campaigns/new")
    response = as_marketer.post("/admin/campaigns/new", {
        "csrf_token": csrf_token(page.text), "name": "W", "topic": "news", "subject": "Hi", "text": "Hello",
        "html": "", "companies": "Acme, Umbrella", "sources": "import:7", "interacted_after": "2026-06-01",
        "action": "save"})
    assert response.status_code == 302, response.text
    campaign = db.session.scalar(select(Campaign))
    assert campaign.audience == {"companies": ["Acme", "Umbrella"], "sources": ["import:7"],
                                 "interacted_after": "2026-06-01"}
    edit = as_marketer.get(f"/admin/campaigns/{campaign.id}/edit")
    assert 'value="Acme, Umbrella"' in edit.text and 'value="2026-06-01"' in edit.text
    page = text_of(as_marketer.get(f"/admin/campaigns/{campaign.id}").text)
    assert "Eligible now 2 recipients" in page and "interacted after: 2026-06-01" in page

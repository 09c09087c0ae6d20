"""Saved segments: a topic and audience filters under a name, with a live count, copied into a campaign."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from preference_center import contacts
from preference_center.extensions import db
from preference_center.models import AuditLog, Campaign, Segment

from .helpers import csrf_token, factories, text_of


@pytest.fixture
def news(ctx):
    topic = factories.topic("news")
    for email, company, relationship in (("ana@example.com", "Acme", "customer"), ("bo@example.com", "Acme", "prospect"),
                                         ("cy@example.com", "Umbrella", "customer")):
        person = factories.contact(email, company=company, relationship=relationship)
        contacts.record_consent(person, action="grant", topic=topic, source="test", confirmed=True)
    db.session.commit()
    return topic


def test_a_segment_is_saved_with_its_count_and_audited(news, as_marketer):
    response = as_marketer.post("/admin/segments/new", {"name": "Acme customers", "topic": "news",
                                                        "relationships": "customer", "companies": "acme"})
    assert response.status_code == 302
    segment = db.session.scalar(select(Segment))
    assert segment.filters == {"relationships": ["customer"], "companies": ["acme"]}
    listing = text_of(as_marketer.get("/admin/segments").text)
    assert "Acme customers News 1" in listing
    assert db.session.scalar(select(AuditLog.action).where(AuditLog.action == "segment.create"))
    edit = as_marketer.get(f"/admin/segments/{segment.id}")
    assert 'value="acme"' in edit.text and "Eligible now: 1" in text_of(edit.text)


def test_a_bad_segment_is_a_form_error_and_nothing_is_stored(news, as_marketer):
    response = as_marketer.post("/admin/segments/new", {"name": "Bad", "topic": "news", "locales": "english"})
    assert response.status_code == 422 and "locale" in text_of(response.text)
    as_marketer.post("/admin/segments/new", {"name": "Twin", "topic": "news"})
    twin = as_marketer.post("/admin/segments/new", {"name": "Twin", "topic": "news"})
    assert twin.status_code == 409 and "another segment has this name" in text_of(twin.text)
    assert db.session.scalar(select(func.count(Segment.id))) == 1


def test_using_a_segment_copies_its_topic_and_filters_into_the_campaign(news, as_marketer):
    as_marketer.post("/admin/segments/new", {"name": "Acme customers", "topic": "news",
                                             "relationships": "customer", "companies": "acme"})
    segment = db.session.scalar(select(Segment))
    page = as_marketer.get("/admin/campaigns/new")
    filled = as_marketer.post("/admin/campaigns/new", {"csrf_token": csrf_token(page.text), "name": "",
                                                       "segment": str(segment.id), "action": "apply_segment"})
    assert filled.status_code == 200
    assert 'value="acme"' in filled.text and "Eligible now: 1" in text_of(filled.text)
    saved = as_marketer.post("/admin/campaigns/new", {
        "csrf_token": csrf_token(filled.text), "name": "W", "topic": "news", "subject": "Hi", "text": "Hello",
        "html": "", "relationships": "customer", "companies": "acme", "action": "save"})
    assert saved.status_code == 302
    assert db.session.scalar(select(Campaign.audience)) == {"relationships": ["customer"], "companies": ["acme"]}

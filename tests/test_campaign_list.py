"""The campaign list and its housekeeping: search, status filter and pages; duplicate; delete a draft;
pause and resume a sending campaign between batches, with nobody lost and nobody sent twice."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from preference_center import actors, campaigns, contacts, sending
from preference_center.admin import campaign_queries
from preference_center.commands import campaigns as campaign_commands
from preference_center.extensions import db
from preference_center.models import AuditLog, Campaign, CampaignBatch, Delivery

from .helpers import confirm_and_post, factories, text_of

# Sent through the real sendgrid client to the fake provider (`fake`, tests/conftest.py).
pytestmark = pytest.mark.sendgrid(PC_BATCH_SIZE=10)


MIA = actors.staff("mia@example.com")


@pytest.fixture
def news(ctx):
    topic = factories.topic("news")
    db.session.commit()
    return topic


def new(name: str, subject: str = "Hi") -> Campaign:
    campaign = campaign_commands.create(MIA, {"name": name, "topic": "news", "subject": subject, "text": "Hello"})
    db.session.commit()
    return campaign


def names_on(html: str) -> list[str]:
    return re.findall(r'<a href="/admin/campaigns/\d+">([^<]+)</a>', html)


def test_the_list_searches_name_and_subject_filters_by_status_and_pages(news, as_marketer):
    for i in range(30):
        new(f"Weekly {i:02d}", subject="News of the week")
    new("Black Friday", subject="50% OFF everything")
    scheduled = new("Spring launch")
    campaigns.schedule(scheduled, None)
    db.session.commit()
    first = as_marketer.get("/admin/campaigns")
    assert "32 campaigns" in text_of(first.text) and len(names_on(first.text)) == campaign_queries.PAGE
    assert names_on(first.text)[0] == "Spring launch"
    cursor = re.search(r'before=(\d+)" rel="next"', first.text).group(1)
    second = as_marketer.get("/admin/campaigns", query_string={"before": cursor})
    assert len(set(names_on(first.text) + names_on(second.text))) == 32
    assert names_on(as_marketer.get("/admin/campaigns", query_string={"q": "friday"}).text) == ["Black Friday"]
    assert names_on(as_marketer.get("/admin/campaigns", query_string={"q": "50%"}).text) == ["Black Friday"]
    assert names_on(as_marketer.get("/admin/campaigns", query_string={"q": "WEEK 0"}).text) == []
    assert names_on(as_marketer.get("/admin/campaigns", query_string={"status": "scheduled"}).text) == ["Spring launch"]
    assert as_marketer.get("/admin/campaigns", query_string={"status": "zombie"}).status_code == 422


def test_duplicate_makes_a_new_draft_with_the_same_content(news, as_marketer):
    original = new("Winter", subject="Hi {{ contact.first_name }}")
    response = as_marketer.post(f"/admin/campaigns/{original.id}/duplicate")
    assert response.status_code == 303
    copy = db.session.scalar(select(Campaign).where(Campaign.id != original.id))
    assert (copy.name, copy.subject, copy.text, copy.status, copy.topic_id) == \
        ("Copy of Winter", original.subject, original.text, "draft", original.topic_id)
    assert response.headers["Location"].endswith(f"/admin/campaigns/{copy.id}/edit")
    assert db.session.scalar(select(AuditLog.detail).where(AuditLog.target_id == str(copy.id))) == \
        {"name": "Copy of Winter", "copied_from": original.id}


def test_a_draft_is_deleted_after_confirming_and_nothing_else_can_be(news, as_marketer):
    draft, scheduled = new("Draft"), new("Scheduled")
    campaigns.schedule(scheduled, None)
    db.session.commit()
    step = as_marketer.post(f"/admin/campaigns/{draft.id}/delete")
    assert step.status_code == 200 and "Yes, delete the draft" in step.text
    assert db.session.get(Campaign, draft.id) is not None
    assert confirm_and_post(as_marketer, f"/admin/campaigns/{draft.id}/delete").status_code == 303
    db.session.expire_all()
    assert db.session.get(Campaign, draft.id) is None
    refused = as_marketer.post(f"/admin/campaigns/{scheduled.id}/delete", {"confirm": "1"}, follow_redirects=True)
    assert "only a draft can be deleted" in text_of(refused.text)
    assert db.session.get(Campaign, scheduled.id).status == "scheduled"
    assert "campaign.delete" in db.session.scalars(select(AuditLog.action)).all()


def test_pause_and_resume_between_batches_loses_and_doubles_nobody(news, as_marketer, fake):
    people = [factories.contact(f"p{i:02d}@example.com") for i in range(35)]
    for person in people:
        contacts.record_consent(person, action="grant", topic=news, source="test", confirmed=True)
    db.session.commit()
    campaign = new("Big")
    campaigns.schedule(campaign, None)
    db.session.commit()
    campaigns.start_due()
    first, second = sending.plan_chunk(campaign.id, 10), sending.plan_chunk(campaign.id, 10)
    assert sending.send_batch(first).sent == 10
    assert as_marketer.post(f"/admin/campaigns/{campaign.id}/pause").status_code == 303
    db.session.expire_all()
    assert db.session.get(Campaign, campaign.id).status == "paused"
    # Paused: the planned batch is handed back untouched, nothing new is planned, nothing is re-queued.
    assert sending.send_batch(second).sent == 0
    assert db.session.get(CampaignBatch, second).status == "queued"
    assert sending.plan_chunk(campaign.id, 10) is None
    assert second not in sending.lost_batches()
    assert len(fake.accepted) == 10
    assert "paused" in text_of(as_marketer.get(f"/admin/campaigns/{campaign.id}").text)
    assert as_marketer.post(f"/admin/campaigns/{campaign.id}/resume").status_code == 303
    db.session.expire_all()
    assert db.session.get(Campaign, campaign.id).status == "sending"
    sending.send_batch(second)
    while (batch := sending.plan_chunk(campaign.id, 10)) is not None:
        sending.send_batch(batch)
    sending.finish_campaign_if_done(campaign.id)
    got = [a.to[0] for a in fake.accepted]
    assert sorted(got) == sorted(p.email for p in people) and len(got) == len(set(got)) == 35
    db.session.expire_all()
    assert db.session.get(Campaign, campaign.id).status == "sent"
    assert db.session.scalar(select(func.count(Delivery.id)).where(Delivery.status == "sent")) == 35
    assert db.session.get(CampaignBatch, second).attempts == 1  # the paused claim did not count


def test_only_a_sending_campaign_pauses_and_only_a_paused_one_resumes(news, as_marketer):
    draft = new("Draft")
    refused = as_marketer.post(f"/admin/campaigns/{draft.id}/pause", follow_redirects=True)
    assert "only a sending campaign can be paused" in text_of(refused.text)
    refused = as_marketer.post(f"/admin/campaigns/{draft.id}/resume", follow_redirects=True)
    assert "only a paused campaign can be resumed" in text_of(refused.text)


def test_a_paused_campaign_can_be_cancelled(news, as_marketer, api):
    campaign = new("Big")
    campaigns.schedule(campaign, None)
    db.session.commit()
    campaigns.start_due()
    campaign_commands.pause(MIA, campaign)
    db.session.commit()
    assert api.get(f"/campaigns/{campaign.id}").json["status"] == "paused"
    assert confirm_and_post(as_marketer, f"/admin/campaigns/{campaign.id}/cancel").status_code == 302
    db.session.expire_all()
    assert db.session.get(Campaign, campaign.id).status == "cancelled"

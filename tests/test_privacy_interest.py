"""Legitimate interest done right: a recorded, versioned assessment per topic; its mails and the preference page say
why we write and offer a one-click objection."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from preference_center import links
from preference_center.extensions import db
from preference_center.models import AuditLog, InterestAssessment, Topic

from .helpers import csrf_token, drain, events, make_contact, outbox, path_of, states, text_of, token

PURPOSE = "news about the products you bought from us, and offers for them"
TEXT = "Purpose: keep customers informed. Necessity: email is how they asked to hear from us. Balance: ..."


def _record(staff, purpose=PURPOSE, text=TEXT, key="tips"):
    return staff.post(f"/admin/topics/{key}/assessment", {"purpose": purpose, "text": text})


def test_an_admin_records_versions_of_an_assessment_that_never_change(app, as_admin, topics):
    assert "No assessment is recorded" in as_admin.get("/admin/topics/tips/assessment").get_data(as_text=True)
    assert "/admin/topics/tips/assessment" in as_admin.get("/admin/topics").get_data(as_text=True)
    assert _record(as_admin).status_code == 303
    assert _record(as_admin, purpose="tips for the products you use", text=TEXT + " v2").status_code == 303
    rows = db.session.scalars(select(InterestAssessment).order_by(InterestAssessment.version)).all()
    assert [(r.version, r.approved_by) for r in rows] == [(1, "staff:boss@example.com"), (2, "staff:boss@example.com")]
    words = text_of(as_admin.get("/admin/topics/tips/assessment").get_data(as_text=True))
    assert "Version 2 (current)" in words and "Version 1" in words and PURPOSE in words
    assert len(db.session.scalars(select(AuditLog).where(AuditLog.action == "topic.assessment")).all()) == 2
    rows[0].text = "rewritten"
    with pytest.raises(ValueError, match="cannot change"):
        db.session.commit()
    db.session.rollback()


@pytest.mark.parametrize("form, status", [({"purpose": "", "text": TEXT}, 422), ({"purpose": PURPOSE, "text": ""}, 422),
                                          ({"purpose": PURPOSE, "text": "ask ann@example.com"}, 422)])
def test_a_bad_assessment_is_refused_and_records_nothing(app, as_admin, topics, form, status):
    assert _record(as_admin, **form).status_code == status
    assert db.session.scalar(select(InterestAssessment.id)) is None


def test_only_admins_approve_and_only_legitimate_interest_topics_have_one(app, as_marketer, topics):
    assert as_marketer.get("/admin/topics/tips/assessment").status_code == 200
    assert _record(as_marketer).status_code == 403
    assert as_marketer.get("/admin/topics/news/assessment").status_code == 404
    assert as_marketer.get("/admin/topics/orders/assessment").status_code == 404
    assert db.session.scalar(select(InterestAssessment.id)) is None


def _run(api, topic: str) -> None:
    campaign = api.post("/campaigns", json={"name": "C", "topic": topic, "subject": "Hi", "text": "Hello",
                                            "html": "<p>Hello</p>"}).json["id"]
    assert api.post(f"/campaigns/{campaign}/schedule", json={"at": None}).status_code == 200
    drain(campaign)


def test_a_legitimate_interest_mail_says_why_we_write_and_offers_a_one_click_objection(app, api, as_admin, topics):
    ann = make_contact(app, "ann@example.com", relationship="customer")
    _record(as_admin)
    _run(api, "tips")
    (mail,) = [m for m in outbox(app) if m["To"] == "ann@example.com"]
    text = mail.get_body(preferencelist=("plain",)).get_content()
    html = mail.get_body(preferencelist=("html",)).get_content()
    assert f"We write to you because you are our customer: {PURPOSE}." in text
    assert "You may object to these emails at any time, in one click." in text
    assert "subscribed to" not in text
    assert "Object in one click: https://prefs.example.test/u/" in text and "Object in one click</a>" in html
    objection = path_of(text.split("Object in one click: ")[1].split()[0])
    assert _unsubscribes(app, objection) == (ann, _topic_id("tips"))
    one_click = app.test_client(use_cookies=False).post(objection, data={"List-Unsubscribe": "One-Click"})
    assert one_click.status_code == 200 and states(app, ann)["tips"] == "unsubscribed"


def test_a_consent_mail_still_says_the_person_subscribed(app, api, topics, ctx):
    make_contact(app, "ann@example.com", relationship="customer")
    api.post("/contacts/ann@example.com/consents", json={"topic": "news", "action": "grant", "source": "form",
                                                         "confirmed": True})
    _run(api, "news")
    (mail,) = [m for m in outbox(app) if m["To"] == "ann@example.com"]
    assert "You get this because you are subscribed to News." in mail.get_body(preferencelist=("plain",)).get_content()
    assert "We write to you because" not in mail.get_body(preferencelist=("plain",)).get_content()


def test_the_preference_page_says_why_we_write_and_objects_in_one_click(app, client, as_admin, topics):
    ann = make_contact(app, "ann@example.com", relationship="customer")
    _record(as_admin)
    page = client.get(f"/p/{token(app, links.PREFERENCES, ann)}").get_data(as_text=True)
    assert f"We write to you because you are our customer: {PURPOSE}." in text_of(page)
    action = page.split('id="object-tips" method="post" action="')[1].split('"')[0]
    assert _unsubscribes(app, path_of(action)) == (ann, _topic_id("tips"))
    before = len(events(app, ann))
    answer = client.post(path_of(action), data={"csrf_token": csrf_token(page)})
    assert answer.status_code == 200
    assert states(app, ann)["tips"] == "unsubscribed" and len(events(app, ann)) == before + 1
    assert "We write to you because" not in text_of(client.get(f"/p/{token(app, links.PREFERENCES, ann)}").get_data(
        as_text=True)), "once objected, the page no longer offers the objection"


def _unsubscribes(app, path: str) -> tuple[int, int]:
    """(contact id, topic id) of an unsubscribe link's path (tokens signed in another second differ in text)."""
    with app.app_context():
        contact_id, _, topic = links.verify(links.UNSUBSCRIBE, path.removeprefix("/u/"))
    return contact_id, topic


def _topic_id(key: str) -> int:
    return db.session.scalar(select(Topic.id).where(Topic.key == key))

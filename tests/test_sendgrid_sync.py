"""SendGrid sync against the fake SendGrid: our opt-outs and suppressions pushed into unsubscribe groups and the
global list (batched, retried, idempotent), and SendGrid's own lists imported once with source sendgrid-import."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from preference_center import actors, contacts
from preference_center.commands import consent, people
from preference_center.extensions import db
from preference_center.models import ConsentEvent, Contact, SendGridSync, Suppression, Topic, utcnow
from preference_center.outbound import sendgrid_sync

from .fake_sendgrid import FakeSendGrid
from .helpers import states

STAFF = actors.staff("boss@example.com")


@pytest.fixture
def fake():
    with FakeSendGrid(api_key="SG.test-key") as fake:
        yield fake


@pytest.fixture
def app_config(app_config, fake):
    return {**app_config, "PC_SENDGRID_SYNC": True, "PC_SENDGRID_API_KEY": "SG.test-key",
            "PC_SENDGRID_API_HOST": fake.url, "PC_SENDGRID_TIMEOUT": 2.0}


@pytest.fixture
def groups(api, topics):
    assert api.put("/topics/news", json={"sendgrid_group_id": 7}).status_code == 200
    assert api.put("/topics/tips", json={"sendgrid_group_id": 8}).status_code == 200
    assert api.put("/topics/orders", json={"sendgrid_group_id": 9}).status_code == 200  # system: never an opt-out


def push(app, now=None):
    with app.app_context():
        return sendgrid_sync.push(now)


def contact(email: str) -> Contact:
    return db.session.scalar(select(Contact).where(Contact.email == email))


def test_opt_outs_and_suppressions_land_in_the_matching_groups_and_the_global_list(app, api, groups, fake):
    for email in ("ann@example.com", "bob@example.com", "cy@example.com", "dee@example.com", "eve@example.com"):
        api.put(f"/contacts/{email}", json={"relationship": "customer"})
    api.post("/contacts/ann@example.com/consents", json={"topic": "news", "action": "withdraw", "source": "crm"})
    api.post("/contacts/bob@example.com/consents", json={"action": "withdraw", "source": "crm"})
    api.delete("/contacts/eve@example.com")
    with app.app_context():
        people.suppress(STAFF, "all", "hard_bounce", contact=contact("cy@example.com"))
        people.suppress(STAFF, "marketing", "spam", contact=contact("dee@example.com"))
        db.session.commit()
    result = push(app)
    assert result.failed == 0
    assert fake.group(7) == {"ann@example.com", "bob@example.com", "dee@example.com"}
    assert fake.group(8) == {"bob@example.com", "dee@example.com"}
    assert fake.group(9) == set()
    assert fake.global_unsubscribes == {"cy@example.com", "eve@example.com"}
    assert result.calls == 3, "one call per group and one for the global list"
    with app.app_context():
        rows = db.session.scalars(select(SendGridSync)).all()
        assert rows and all(r.status == "done" and r.email is None for r in rows), "pushed rows keep no address"
    calls = len(fake.suppression_calls)
    assert push(app).calls == 0 and len(fake.suppression_calls) == calls


def test_pushes_are_batched(app, api, groups, fake, monkeypatch):
    monkeypatch.setattr(sendgrid_sync, "BATCH", 3)
    for i in range(7):
        api.post(f"/contacts/p{i}@example.com/consents", json={"topic": "news", "action": "withdraw",
                                                               "source": "crm"})
    assert push(app).calls == 3
    assert [len(body["recipient_emails"]) for _, _, body in fake.suppression_calls] == [3, 3, 1]
    assert len(fake.group(7)) == 7


def test_a_failed_push_is_retried_later_and_a_repeat_changes_nothing(app, api, groups, fake):
    api.post("/contacts/ann@example.com/consents", json={"topic": "news", "action": "withdraw", "source": "crm"})
    fake.script([(500, {}), (503, {})])
    now = utcnow()
    first = push(app, now)
    assert first.failed == 1 and fake.group(7) == set()
    with app.app_context():
        (row,) = db.session.scalars(select(SendGridSync)).all()
        assert row.status == "pending" and row.attempts == 1 and "500" in row.last_error
        assert row.next_attempt_at == now + dt.timedelta(seconds=30)
    assert push(app, now).calls == 0, "not before its backoff"
    assert push(app, now + dt.timedelta(seconds=31)).failed == 1
    with app.app_context():
        assert db.session.scalar(select(SendGridSync.next_attempt_at)) == now + dt.timedelta(seconds=31 + 60)
    assert push(app, now + dt.timedelta(seconds=200)).pushed == 1
    assert fake.group(7) == {"ann@example.com"}
    # A worker that died after SendGrid took the call pushes the same again: SendGrid's set does not change.
    with app.app_context():
        db.session.execute(SendGridSync.__table__.update().values(status="pending", email="ann@example.com"))
        db.session.commit()
    assert push(app, now + dt.timedelta(seconds=300)).pushed == 1 and fake.group(7) == {"ann@example.com"}


def test_nothing_is_queued_while_the_sync_is_off(app, api, groups, fake):
    app.config["PC_SENDGRID_SYNC"] = False
    api.post("/contacts/ann@example.com/consents", json={"topic": "news", "action": "withdraw", "source": "crm"})
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(SendGridSync)) == 0


def test_pull_imports_sendgrids_lists_once_with_source_sendgrid_import(app, api, groups, fake, runner, monkeypatch):
    monkeypatch.setattr(sendgrid_sync, "PAGE", 2)  # the lists come page by page
    for email in ("ann@example.com", "bob@example.com", "kim@example.com"):
        api.put(f"/contacts/{email}", json={"relationship": "customer"})
        api.post(f"/contacts/{email}/consents", json={"topic": "news", "action": "grant", "source": "crm",
                                                      "confirmed": True})
    fake.seed_lists(bounces=["ann@example.com", "gone1@example.com", "gone2@example.com", "gone3@example.com",
                             "not an address"],
                    spam_reports=["bob@example.com"], unsubscribes=["kim@example.com", "stranger@example.com"],
                    groups={7: ["ann@example.com", "bob@example.com", "nobody@example.com"]})
    result = runner.invoke(args=["sendgrid", "pull"])
    assert result.exit_code == 0, result.output
    assert "read 4 bounces" not in result.output and "read 5 bounces" in result.output
    with app.app_context():
        ids = {e: contact(e).id for e in ("ann@example.com", "bob@example.com", "kim@example.com")}
        scopes = dict(db.session.execute(select(Suppression.email_hash, Suppression.scope)).all())
        for email, scope in [("gone1@example.com", "all"), ("ann@example.com", "all"),
                             ("bob@example.com", "marketing"), ("stranger@example.com", "marketing"),
                             ("kim@example.com", "marketing")]:
            assert scopes.get(contacts.hash_of(email)) == scope, email
        imported = db.session.scalars(select(ConsentEvent).where(ConsentEvent.source == "sendgrid-import")).all()
        assert {e.action for e in imported} == {"suppress", "withdraw"}
        events = db.session.scalar(select(func.count()).select_from(ConsentEvent))
        pushed_back = db.session.scalar(select(func.count()).select_from(SendGridSync))
    assert pushed_back == 0, "what came from SendGrid is not pushed back"
    assert states(app, ids["kim@example.com"])["news"] == "unsubscribed"  # opted out of all marketing
    assert states(app, ids["bob@example.com"])["news"] == "unsubscribed"  # spam, and group 7
    again = runner.invoke(args=["sendgrid", "pull"])
    assert again.exit_code == 0 and "unchanged" in again.output
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(ConsentEvent)) == events, "a second run adds nothing"


def test_a_group_unsubscribe_is_a_withdrawal_from_that_topic_only(app, api, groups, fake, runner):
    api.put("/contacts/ann@example.com", json={"relationship": "customer"})
    for topic in ("news", "tips"):
        api.post("/contacts/ann@example.com/consents", json={"topic": topic, "action": "grant", "source": "crm",
                                                             "confirmed": True})
    fake.seed_lists(groups={8: ["ann@example.com"]})
    assert runner.invoke(args=["sendgrid", "pull"]).exit_code == 0
    with app.app_context():
        ann_id = contact("ann@example.com").id
        withdrawn = db.session.scalars(select(ConsentEvent).where(ConsentEvent.source == "sendgrid-import")).all()
        assert [(e.action, db.session.get(Topic, e.topic_id).key) for e in withdrawn] == [("withdraw", "tips")]
        assert consent.withdraw(STAFF, contact("ann@example.com"), None) is not None  # live, otherwise untouched
        db.session.rollback()
    assert states(app, ann_id) == {"news": "subscribed", "tips": "unsubscribed", "orders": "subscribed"}

"""Outgoing webhooks: admin-managed endpoints, an outbox written with each change, signed at-least-once
delivery in per-contact ledger order, backoff for days, and endpoints that fail for 3 days disabled."""
from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from sqlalchemy import func, select

from preference_center import actors, change_feed, ledger, tokens
from preference_center.commands import people
from preference_center.extensions import db
from preference_center.models import AuditLog, ConsentEvent, Contact, WebhookEndpoint, WebhookMessage, utcnow
from preference_center.outbound import delivery

from .helpers import Api, grant, make_contact
from .webhook_receiver import Receiver

ALL_LEDGER = list(change_feed.LEDGER_TYPES)


@pytest.fixture
def app_config(app_config):
    return {**app_config, "PC_WEBHOOK_ALLOW_PRIVATE": True, "PC_WEBHOOK_TIMEOUT_SECONDS": 0.3}


@pytest.fixture
def admin_api(app, client):
    with app.app_context():
        _, plaintext = tokens.create("ops", admin=True)
        db.session.commit()
    return Api(client, plaintext)


@pytest.fixture
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.close()


def subscribe(admin_api, receiver, name="crm", events=ALL_LEDGER) -> str:
    created = admin_api.put(f"/webhooks/{name}", json={"url": receiver.url, "events": events})
    assert created.status_code == 201, created.json
    receiver.secret = created.json["secret"]
    return created.json["secret"]


def deliver(app, now=None) -> delivery.Run:
    with app.app_context():
        return delivery.run(now)


def messages(app) -> list[WebhookMessage]:
    with app.app_context():
        rows = db.session.scalars(select(WebhookMessage).order_by(WebhookMessage.id)).all()
        db.session.expunge_all()
        return rows


# -- managing endpoints -----------------------------------------------------------------------

def test_only_admins_manage_webhooks_and_the_secret_is_shown_once(app, api, admin_api, receiver):
    body = {"url": receiver.url, "events": ["consent.granted"]}
    assert api.put("/webhooks/crm", json=body).status_code == 403
    assert api.get("/webhooks").status_code == 403
    created = admin_api.put("/webhooks/crm", json=body)
    assert created.status_code == 201
    assert created.json["secret"].startswith("whsec_") and len(created.json["secret"]) > 30
    shown = admin_api.get("/webhooks/crm").json
    assert "secret" not in shown and shown["events"] == ["consent.granted"] and shown["enabled"] is True
    changed = admin_api.put("/webhooks/crm", json={**body, "events": ["consent.withdrawn"]})
    assert changed.status_code == 200 and "secret" not in changed.json
    assert [w["name"] for w in admin_api.get("/webhooks").json["webhooks"]] == ["crm"]
    assert admin_api.delete("/webhooks/crm").status_code == 200
    assert admin_api.get("/webhooks/crm").status_code == 404
    with app.app_context():
        actions = db.session.scalars(select(AuditLog.action).where(AuditLog.target_type == "webhook")
                                     .order_by(AuditLog.id)).all()
        assert actions == ["webhook.create", "webhook.update", "webhook.delete"]
        assert created.json["secret"] not in str(db.session.scalars(select(AuditLog.detail)).all())


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8080/hooks", "http://localhost/hooks", "http://10.1.2.3/", "http://192.168.0.1/",
    "http://172.16.5.4/", "http://169.254.169.254/latest/meta-data", "http://[::1]/", "http://[::ffff:127.0.0.1]/",
    "http://[fd00::1]/", "http://0.0.0.0/", "http://100.64.0.1/",
])
def test_loopback_and_private_targets_are_refused(app, admin_api, url):
    app.config["PC_WEBHOOK_ALLOW_PRIVATE"] = False
    refused = admin_api.put("/webhooks/crm", json={"url": url, "events": ["consent.granted"]})
    assert refused.status_code == 422 and refused.json["error"]["field"] == "url", refused.json
    assert "private" in refused.json["error"]["message"] or "resolve" in refused.json["error"]["message"]
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(WebhookEndpoint)) == 0


@pytest.mark.parametrize("url", ["ftp://93.184.215.14/", "https://user:pw@93.184.215.14/", "not a url",
                                 "https://no-such-host.invalid/"])
def test_other_unusable_targets_are_refused(app, admin_api, url):
    refused = admin_api.put("/webhooks/crm", json={"url": url, "events": ["consent.granted"]})
    assert refused.status_code == 422 and refused.json["error"]["field"] == "url", refused.json


def test_a_name_that_resolves_to_a_private_address_is_refused_when_sending_too(app, admin_api, receiver, api,
                                                                             topics):
    subscribe(admin_api, receiver, events=["consent.granted"])
    app.config["PC_WEBHOOK_ALLOW_PRIVATE"] = False  # as if the name now pointed inside
    api.post("/contacts/ann@example.com/consents", json={"topic": "news", "action": "grant", "source": "f",
                                                         "confirmed": True})
    assert deliver(app).delivered == 0
    (message,) = messages(app)
    assert message.status == "pending" and "private" in message.last_error
    assert receiver.requests == []


# -- the outbox -----------------------------------------------------------------------------

def test_messages_are_written_with_the_change_and_roll_back_with_it(ctx, admin_api, receiver):
    subscribe(admin_api, receiver, events=["contact.restricted"])
    contact = Contact(email="ann@example.com", email_hash="h1", relationship="customer", status="active")
    db.session.add(contact)
    db.session.flush()
    ledger.append(ledger.RESTRICT, contact=contact, scope=ledger.CONTACT, source="t")
    assert db.session.scalar(select(func.count()).select_from(WebhookMessage)) == 1
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(WebhookMessage)) == 0
    assert db.session.scalar(select(func.count()).select_from(ConsentEvent)) == 0


def test_deliveries_are_signed_and_carry_ids_and_the_address_but_an_erasure_only_the_hash(
        app, api, admin_api, receiver, topics):
    subscribe(admin_api, receiver)
    ann = make_contact(app, "ann@example.com", relationship="customer")
    grant(app, ann, "news")
    with app.app_context():
        people.restrict(actors.staff("boss@example.com"), db.session.get(Contact, ann))
        db.session.commit()
    assert api.delete("/contacts/ann@example.com").status_code == 200
    run = deliver(app)
    assert run.failed == 0 and receiver.refused == []
    payloads = receiver.payloads()
    types = [p["type"] for p in payloads]
    assert types[-3:] == ["contact.restricted", "contact.erased", "suppression.added"]
    granted = next(p for p in payloads if p["type"] == "consent.granted")
    assert granted["data"]["topic"] == "news" and granted["data"]["contact_id"] == ann
    erased = next(p for p in payloads if p["type"] == "contact.erased")
    assert "email" not in erased["data"] and len(erased["data"]["email_hash"]) == 64
    assert "ann@example.com" not in str(payloads[-2:])
    for payload in payloads:
        assert "ip" not in payload["data"] and "user_agent" not in payload["data"]
    with app.app_context():
        ids = db.session.scalars(select(ConsentEvent.id).where(ConsentEvent.contact_id == ann)
                                 .order_by(ConsentEvent.id)).all()
    assert [p["data"]["id"] for p in payloads] == ids


def test_an_erasure_blanks_the_address_in_messages_not_yet_sent(app, api, admin_api, receiver, topics):
    subscribe(admin_api, receiver)
    receiver.plan = [503]  # the first message fails, so everything of ann's waits behind it
    make_contact(app, "ann@example.com")
    api.post("/contacts/ann@example.com/consents", json={"topic": "news", "action": "grant", "source": "f",
                                                         "confirmed": True})
    deliver(app)
    assert api.delete("/contacts/ann@example.com").status_code == 200
    assert all(m.email is None for m in messages(app))
    deliver(app, utcnow() + dt.timedelta(hours=1))
    assert "ann@example.com" not in str(receiver.payloads())


# -- at least once, exactly once after de-duplication, in order per contact -------------------------

def test_every_change_arrives_once_in_order_per_contact_across_5xx_timeouts_and_a_killed_worker(
        app, api, admin_api, receiver, topics, monkeypatch):
    subscribe(admin_api, receiver)
    emails = [f"p{i}@example.com" for i in range(4)]
    for email in emails:
        api.put(f"/contacts/{email}", json={"relationship": "customer"})
        api.post(f"/contacts/{email}/consents", json={"topic": "news", "action": "grant", "source": "f",
                                                      "confirmed": True})
        api.post(f"/contacts/{email}/consents", json={"topic": "tips", "action": "withdraw", "source": "f"})
    api.post(f"/contacts/{emails[0]}/consents", json={"action": "withdraw", "source": "call"})
    api.delete(f"/contacts/{emails[1]}")
    receiver.plan = [500, "slow", 502, "ok", 500, "slow", "ok", 503]
    # The worker dies right after one request reached the receiver, before it could record the answer.
    real_post, killed = delivery.post, []

    def dies_once(*args, **kwargs):
        status = real_post(*args, **kwargs)
        if not killed:
            killed.append(status)
            raise SystemExit("SIGKILL")
        return status

    monkeypatch.setattr(delivery, "post", dies_once)
    now = utcnow()
    with pytest.raises(SystemExit):
        deliver(app, now)
    monkeypatch.setattr(delivery, "post", real_post)
    with app.app_context():
        db.session.remove()
    for step in range(60):  # the clock moves on: backoffs and the dead worker's lease run out
        deliver(app, now + dt.timedelta(minutes=5 * step))
        if all(m.status == "delivered" for m in messages(app)):
            break
    sent = messages(app)
    assert sent and all(m.status == "delivered" for m in sent), [(m.id, m.contact_id, m.status, m.attempts, m.last_error, m.next_attempt_at, m.lease_until) for m in sent if m.status != "delivered"]
    assert len(receiver.requests) > len(set(receiver.requests)), "retries made duplicates to de-duplicate"
    assert sorted(receiver.kept) == sorted(m.message_id for m in sent), "every change, once after de-duplication"
    by_contact: dict[int, list[int]] = {}
    for payload in receiver.payloads():
        by_contact.setdefault(payload["data"]["contact_id"], []).append(payload["data"]["id"])
    for contact_id, ids in by_contact.items():
        assert ids == sorted(ids), f"contact {contact_id} told out of ledger order"
    # And nothing of a contact reached the receiver before that contact's previous message was acknowledged.
    first_seen = {m: i for i, m in reversed(list(enumerate(receiver.requests)))}
    for contact_id in by_contact:
        mine = [m for m in sent if m.contact_id == contact_id]
        for before, after in zip(mine, mine[1:], strict=False):
            last_try_of_before = max(i for i, r in enumerate(receiver.requests) if r == before.message_id)
            assert first_seen[after.message_id] > last_try_of_before


def test_backoff_grows_exponentially_for_over_a_day_and_three_days_of_failure_disable_the_endpoint(
        app, api, admin_api, receiver, topics, as_admin):
    subscribe(admin_api, receiver, events=["consent.granted"])
    receiver.plan = [500] * 1000
    api.post("/contacts/ann@example.com/consents", json={"topic": "news", "action": "grant", "source": "f",
                                                         "confirmed": True})
    start = utcnow()
    now, attempts_at = start, []
    while now - start < dt.timedelta(days=4):
        before = len(receiver.requests)
        deliver(app, now)
        if len(receiver.requests) > before:
            attempts_at.append(now)
        (message,) = messages(app)
        with app.app_context():
            endpoint = db.session.scalar(select(WebhookEndpoint))
            if not endpoint.enabled:
                break
        now = max(message.next_attempt_at, now + dt.timedelta(seconds=1))
    gaps = [(b - a).total_seconds() for a, b in zip(attempts_at, attempts_at[1:], strict=False)]
    assert gaps[:5] == [5, 10, 20, 40, 80]
    assert max(gaps) == 6 * 3600
    assert attempts_at[-1] - attempts_at[0] >= dt.timedelta(hours=72)
    assert any(t - start >= dt.timedelta(hours=24) for t in attempts_at), "still retried after a day"
    assert not endpoint.enabled and "every attempt failed since" in endpoint.disabled_reason
    assert "500" in endpoint.disabled_reason
    page = as_admin.get("/admin/webhooks")
    assert page.status_code == 200 and "every attempt failed since" in page.text
    # Enabled again by an admin, the waiting message goes out.
    receiver.plan = []
    with app.app_context():
        endpoint_id = db.session.scalar(select(WebhookEndpoint.id))
    assert as_admin.post(f"/admin/webhooks/{endpoint_id}/enable").status_code == 302
    deliver(app, now)
    assert [m.status for m in messages(app)] == ["delivered"]


def test_a_success_resets_the_failure_clock(app, api, admin_api, receiver, topics):
    subscribe(admin_api, receiver, events=["consent.granted", "consent.withdrawn"])
    receiver.plan = [500]
    api.post("/contacts/ann@example.com/consents", json={"topic": "news", "action": "grant", "source": "f",
                                                         "confirmed": True})
    start = utcnow()
    deliver(app, start)
    deliver(app, start + dt.timedelta(days=2))
    receiver.plan = [500]
    api.post("/contacts/ann@example.com/consents", json={"topic": "news", "action": "withdraw", "source": "f"})
    deliver(app, start + dt.timedelta(days=3, hours=1))
    with app.app_context():
        endpoint = db.session.scalar(select(WebhookEndpoint))
        assert endpoint.enabled and endpoint.failing_since is not None


# -- the staff pages --------------------------------------------------------------------------

@pytest.mark.parametrize("who", ["as_marketer", "as_viewer"])
def test_only_admin_staff_see_the_webhook_pages(request, who):
    staff = request.getfixturevalue(who)
    assert staff.get("/admin/webhooks").status_code == 403
    assert staff.post("/admin/webhooks", {"name": "crm", "url": "http://127.0.0.1/", "events": ["consent.granted"]}
                      ).status_code == 403


def test_admins_add_a_webhook_see_its_log_and_retry_a_message(app, as_admin, api, receiver, topics):
    refused = as_admin.post("/admin/webhooks", {"name": "crm", "url": "ftp://x/", "events": ["consent.granted"]})
    assert refused.status_code == 422 and "https://" in refused.text
    page = as_admin.post("/admin/webhooks", {"name": "crm", "url": receiver.url, "events": ["consent.granted"]})
    assert page.status_code == 200 and "shown only this once" in page.text
    with app.app_context():
        endpoint = db.session.scalar(select(WebhookEndpoint))
        receiver.secret = endpoint.secret
        assert endpoint.secret in page.text
    assert endpoint.secret not in as_admin.get("/admin/webhooks").text
    receiver.plan = [500]
    api.post("/contacts/ann@example.com/consents", json={"topic": "news", "action": "grant", "source": "f",
                                                         "confirmed": True})
    deliver(app)
    log = as_admin.get(f"/admin/webhooks/{endpoint.id}")
    assert log.status_code == 200 and "the receiver answered 500" in log.text and "Retry now" in log.text
    (message,) = messages(app)
    assert message.next_attempt_at > utcnow()
    retried = as_admin.post(f"/admin/webhooks/{endpoint.id}/messages/{message.id}/retry")
    assert retried.status_code == 302
    deliver(app)
    assert [m.status for m in messages(app)] == ["delivered"]
    assert as_admin.post(f"/admin/webhooks/{endpoint.id}/delete").status_code == 302
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(WebhookMessage)) == 0
        assert db.session.scalars(select(AuditLog.action).where(AuditLog.target_type == "webhook")
                                  .order_by(AuditLog.id)).all() == ["webhook.create", "webhook.retry",
                                                                     "webhook.delete"]


WORKER = """
import json, sys
from preference_center import create_app
from preference_center.outbound import delivery
app = create_app(json.loads(sys.argv[1]))
with app.app_context():
    print("delivering", flush=True)
    delivery.run()
"""


@pytest.mark.slow
def test_a_worker_killed_mid_delivery_loses_nothing_and_the_retry_is_a_duplicate_to_drop(
        app, app_config, api, admin_api, receiver, topics):
    subscribe(admin_api, receiver, events=["consent.granted", "consent.withdrawn"])
    api.post("/contacts/ann@example.com/consents", json={"topic": "news", "action": "grant", "source": "f",
                                                         "confirmed": True})
    api.post("/contacts/ann@example.com/consents", json={"topic": "news", "action": "withdraw", "source": "f"})
    receiver.plan, receiver.slow_seconds = ["slow"], 30.0  # the receiver has it, the worker waits for the answer
    settings = {**app_config, "PC_WEBHOOK_TIMEOUT_SECONDS": 60.0}
    worker = subprocess.Popen([sys.executable, "-c", WORKER, json.dumps(settings)], stdout=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not receiver.requests and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(receiver.requests) == 1
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(10)
    finally:
        if worker.poll() is None:
            worker.kill()
    first, second = messages(app)
    assert first.status == "pending" and first.lease_until is not None and first.attempts == 1
    assert second.attempts == 0, "the second change waits for the first"
    assert deliver(app).delivered == 0, "the dead worker's lease still holds the message"
    deliver(app, first.lease_until + dt.timedelta(seconds=1))
    assert [m.status for m in messages(app)] == ["delivered", "delivered"]
    assert receiver.requests == [first.message_id, first.message_id, second.message_id]
    assert [p["type"] for p in receiver.payloads()] == ["consent.granted", "consent.withdrawn"]


def test_an_endpoint_deleted_while_its_message_is_under_way_ends_quietly(app, api, admin_api, receiver, topics,
                                                                         monkeypatch):
    subscribe(admin_api, receiver, events=["consent.granted"])
    api.post("/contacts/ann@example.com/consents", json={"topic": "news", "action": "grant", "source": "f",
                                                         "confirmed": True})
    real_post = delivery.post

    def deleted_meanwhile(*args, **kwargs):
        status = real_post(*args, **kwargs)
        assert admin_api.delete("/webhooks/crm").status_code == 200
        return status

    monkeypatch.setattr(delivery, "post", deleted_meanwhile)
    deliver(app)
    assert messages(app) == [] and len(receiver.kept) == 1


def test_delivery_outcomes_are_told_with_the_delivery_and_topic(app, api, admin_api, receiver, topics):
    from preference_center import sending

    from .fake_sendgrid import FakeSendGrid

    subscribe(admin_api, receiver, events=["delivery.sent", "delivery.failed"])
    with FakeSendGrid() as fake:
        app.config.update(PC_MAIL_TRANSPORT="sendgrid", PC_SENDGRID_API_KEY="SG.x", PC_SENDGRID_API_HOST=fake.url)
        body = {"topic": "orders", "subject": "Order", "text": "Thanks"}
        first = api.post("/messages", json={**body, "to": "ann@example.com"}).json["delivery_id"]
        second = api.post("/messages", json={**body, "to": "bob@example.com"}).json["delivery_id"]
        fake.script([(400, {})])  # SendGrid refuses the first
        with app.app_context():
            assert sending.send_system(first) == "failed"
            assert sending.send_system(second) == "sent"
    deliver(app)
    told = {p["data"]["delivery_id"]: p for p in receiver.payloads()}
    assert told[first]["type"] == "delivery.failed" and told[second]["type"] == "delivery.sent"
    assert (told[second]["data"]["email"], told[second]["data"]["topic"]) == ("bob@example.com", "orders")
    assert told[second]["data"]["provider_message_id"]

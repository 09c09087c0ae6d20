"""The SendGrid Event Webhook: signature checks, de-duplication, and what each event does."""
from __future__ import annotations

import base64
import datetime as dt
import itertools
import json
import time

import pytest
from celery.contrib.testing.worker import start_worker
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import func, select

from preference_center import contacts, feedback, ledger
from preference_center.extensions import db
from preference_center.models import Campaign, ConsentEvent, Contact, Delivery, Suppression, WebhookEvent, utcnow
from preference_center.webhooks import Refused, check_signature

from .helpers import factories

SIGNATURE = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP = "X-Twilio-Email-Event-Webhook-Timestamp"

# SendGrid's own test vector (sendgrid-python, test/unit/test_eventwebhook.py).
SG_PUBLIC_KEY = ("MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw+"
                 "2fNNRaINXvVpiglSI8eNEc6wEA3F+g==")
SG_SIGNATURE = "MEUCIGHQVtGj+Y3LkG9fLcxf3qfI10QysgDWmMOVmxG0u6ZUAiEAyBiXDWzM+uOe5W0JuG+luQAbPIqHh89M15TluLtEZtM="
SG_TIMESTAMP = "1600112502"
SG_PAYLOAD = json.dumps([{
    "email": "hello@world.com",
    "event": "dropped",
    "reason": "Bounced Address",
    "sg_event_id": "ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA",
    "sg_message_id": "LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0",
    "smtp-id": "<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>",
    "timestamp": 1600112492,
}], sort_keys=True, separators=(",", ":")) + "\r\n"

_ids = itertools.count(1)


# -- helpers --------------------------------------------------------------------

@pytest.fixture(scope="module")
def signing_key():
    return ec.generate_private_key(ec.SECP256R1())


def public_text(private_key) -> str:
    """The key as SendGrid shows it: base64 of the DER SubjectPublicKeyInfo."""
    der = private_key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


def sign(private_key, body: bytes, timestamp: str) -> str:
    return base64.b64encode(private_key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))).decode()


@pytest.fixture
def app_config(app_config, signing_key):
    app_config["PC_SENDGRID_WEBHOOK_PUBLIC_KEY"] = public_text(signing_key)
    app_config["PC_SOFT_BOUNCE_LIMIT"] = 3
    return app_config


def event(kind: str, email: str, **fields) -> dict:
    return {"event": kind, "email": email, "sg_event_id": f"sg-{next(_ids)}", "timestamp": int(time.time()),
            "sg_message_id": "msg.filter", **fields}


def post(client, body, key, *, timestamp: str | None = None, headers: dict | None = None):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    timestamp = str(int(time.time())) if timestamp is None else timestamp
    sent = {SIGNATURE: sign(key, raw, timestamp), TIMESTAMP: timestamp, "Content-Type": "application/json"}
    sent.update(headers or {})
    return client.post("/webhooks/sendgrid", data=raw, headers={k: v for k, v in sent.items() if v is not None})


def stored() -> int:
    db.session.rollback()
    return db.session.scalar(select(func.count(WebhookEvent.id)))


def feed(*events) -> dict:
    """Store and process events as the view and the task would."""
    receipt = feedback.receive(list(events))
    db.session.commit()
    return dict(feedback.process(receipt.new_ids).outcomes)


def webhook_events(contact: Contact | None = None) -> list[ConsentEvent]:
    query = select(ConsentEvent).where(ConsentEvent.source == "webhook:sendgrid").order_by(ConsentEvent.id)
    if contact is not None:
        query = query.where(ConsentEvent.contact_id == contact.id)
    return db.session.scalars(query).all()


def suppression(email: str, scope: str) -> Suppression | None:
    return db.session.scalar(select(Suppression).where(
        Suppression.email_hash == contacts.hash_of(email), Suppression.scope == scope))


def states(contact: Contact) -> dict[str, str]:
    db.session.expire_all()
    return {row["topic"]: row["state"] for row in contacts.subscriptions_view(db.session.get(Contact, contact.id))}


def delivery_for(contact: Contact, topic) -> Delivery:
    campaign = Campaign(name="Spring", topic_id=topic.id, subject="Hi", text="Hi", status="sent")
    db.session.add(campaign)
    db.session.flush()
    row = Delivery(campaign_id=campaign.id, contact_id=contact.id, status="sent", provider_message_id="msg")
    db.session.add(row)
    db.session.commit()
    return row


@pytest.fixture
def world(ctx):
    """Topics (news on SendGrid group 101, a system topic) and one subscribed contact."""
    news = factories.topic("news")
    news.sendgrid_group_id = 101
    tips = factories.topic("tips", basis="legitimate_interest", relationships=["customer"])
    tips.sendgrid_group_id = 102
    factories.topic("orders", kind="system", basis="contract")
    ann = factories.contact("ann@example.com", relationship="customer")
    contacts.record_consent(ann, action="grant", topic=news, source="test", confirmed=True)
    db.session.commit()
    return {"news": news, "tips": tips, "ann": ann}


# -- signatures -----------------------------------------------------------------

def test_sendgrids_published_test_vector_verifies_and_detects_tampering():
    body = SG_PAYLOAD.encode()
    signed_at = int(SG_TIMESTAMP)
    check_signature(SG_PUBLIC_KEY, body, SG_SIGNATURE, SG_TIMESTAMP, now=signed_at + 5)
    with pytest.raises(Refused):
        check_signature(SG_PUBLIC_KEY, body.replace(b"dropped", b"dropper"), SG_SIGNATURE, SG_TIMESTAMP,
                        now=signed_at + 5)
    with pytest.raises(Refused):
        check_signature(SG_PUBLIC_KEY, body, SG_SIGNATURE, str(signed_at + 1), now=signed_at + 5)
    with pytest.raises(Refused, match="too old"):
        check_signature(SG_PUBLIC_KEY, body, SG_SIGNATURE, SG_TIMESTAMP)


def test_a_genuine_but_old_sendgrid_request_is_refused_as_a_replay(client, app):
    app.config["PC_SENDGRID_WEBHOOK_PUBLIC_KEY"] = SG_PUBLIC_KEY
    response = client.post("/webhooks/sendgrid", data=SG_PAYLOAD.encode(), content_type="application/json",
                           headers={SIGNATURE: SG_SIGNATURE, TIMESTAMP: SG_TIMESTAMP})
    assert response.status_code == 403
    with app.app_context():
        assert stored() == 0


def test_a_correctly_signed_batch_is_accepted_and_stored(client, app, signing_key):
    events = [event("delivered", "ann@example.com"), event("open", "ann@example.com")]
    response = post(client, events, signing_key)
    assert response.status_code == 200
    assert response.json == {"received": 2, "new": 2, "duplicates": 0, "invalid": 0}
    with app.app_context():
        assert stored() == 2


@pytest.mark.parametrize("attack", [
    "tampered_body", "wrong_key", "no_signature", "no_timestamp", "stale", "future", "garbage_signature",
    "timestamp_not_signed",
])
def test_requests_that_sendgrid_did_not_sign_are_refused_and_store_nothing(client, app, signing_key, attack):
    events = [event("bounce", "ann@example.com", type="bounce")]
    raw = json.dumps(events).encode()
    now = int(time.time())
    if attack == "tampered_body":
        headers = {SIGNATURE: sign(signing_key, raw, str(now)), TIMESTAMP: str(now)}
        raw = raw.replace(b"ann@", b"bob@")
        response = client.post("/webhooks/sendgrid", data=raw, headers=headers)
    elif attack == "wrong_key":
        response = post(client, raw, ec.generate_private_key(ec.SECP256R1()))
    elif attack == "no_signature":
        response = post(client, raw, signing_key, headers={SIGNATURE: None})
    elif attack == "no_timestamp":
        response = post(client, raw, signing_key, headers={TIMESTAMP: None})
    elif attack == "stale":
        response = post(client, raw, signing_key, timestamp=str(now - 11 * 60))
    elif attack == "future":
        response = post(client, raw, signing_key, timestamp=str(now + 5 * 60))
    elif attack == "garbage_signature":
        response = post(client, raw, signing_key, headers={SIGNATURE: "not base64 at all!"})
    else:
        response = post(client, raw, signing_key, headers={TIMESTAMP: str(now - 1)})
    assert response.status_code == 403
    assert response.json["error"]["code"] == "invalid_signature"
    with app.app_context():
        assert stored() == 0
        assert db.session.scalar(select(func.count(Suppression.id))) == 0


def test_production_without_a_key_refuses_unsigned_webhooks_unless_allowed(client, app):
    app.config.update(PC_ENV="production", PC_SENDGRID_WEBHOOK_PUBLIC_KEY=None)
    events = [event("delivered", "ann@example.com")]
    refused = client.post("/webhooks/sendgrid", json=events)
    assert refused.status_code == 503
    assert "PC_SENDGRID_WEBHOOK_PUBLIC_KEY" in refused.json["error"]["message"]
    with app.app_context():
        assert stored() == 0
    app.config["PC_SENDGRID_WEBHOOK_ALLOW_UNSIGNED"] = True
    assert client.post("/webhooks/sendgrid", json=events).status_code == 200


def test_a_broken_configured_key_is_reported_not_silently_accepted(client, app, signing_key):
    app.config["PC_SENDGRID_WEBHOOK_PUBLIC_KEY"] = "not-a-key"
    response = post(client, [event("delivered", "ann@example.com")], signing_key)
    assert response.status_code == 503
    assert response.json["error"]["code"] == "webhook_misconfigured"


def test_development_without_a_key_accepts_unsigned_webhooks(client, app):
    app.config.update(PC_ENV="development", PC_SENDGRID_WEBHOOK_PUBLIC_KEY=None)
    assert client.post("/webhooks/sendgrid", json=[event("delivered", "ann@example.com")]).status_code == 200


# -- the body -------------------------------------------------------------------

@pytest.mark.parametrize("raw", [b"{not json", b'{"event": "bounce"}', b'"a string"', b"\xff\xfe"])
def test_a_malformed_body_is_a_400_json_error(client, app, signing_key, raw):
    response = post(client, raw, signing_key)
    assert response.status_code == 400
    assert response.json["error"]["code"] == "malformed_json"
    with app.app_context():
        assert stored() == 0


def test_an_oversized_body_is_refused_with_413(client, app, signing_key):
    app.config["MAX_CONTENT_LENGTH"] = 2000
    response = post(client, [event("open", f"p{i}@example.com") for i in range(40)], signing_key)
    assert response.status_code == 413
    assert response.json["error"]["code"] == "payload_too_large"


def test_bad_items_are_skipped_and_counted_while_the_rest_is_stored(client, app, signing_key):
    events = [event("open", "ann@example.com"), {"event": "open", "email": "x@example.com"}, "junk",
              {"sg_event_id": 42, "event": "open"}, {"sg_event_id": "ok-but-no-kind"}]
    response = post(client, events, signing_key)
    assert response.status_code == 200
    assert response.json == {"received": 5, "new": 1, "duplicates": 0, "invalid": 4}


def test_a_retried_batch_is_stored_and_processed_once(client, app, world, signing_key):
    batch = [event("unsubscribe", "ann@example.com"), event("bounce", "ann@example.com", type="bounce")]
    first = post(client, batch + [batch[0]], signing_key)  # a duplicate inside the batch too
    again = post(client, batch, signing_key)
    assert first.json == {"received": 3, "new": 2, "duplicates": 1, "invalid": 0}
    assert again.json == {"received": 2, "new": 0, "duplicates": 2, "invalid": 0}
    ids = db.session.scalars(select(WebhookEvent.id)).all()
    assert feedback.process(ids).outcomes == {"applied": 2}
    assert feedback.process(ids).outcomes == {"already_processed": 2}
    assert [(e.action, e.detail.get("scope")) for e in webhook_events(world["ann"])] == [
        ("withdraw", None), ("suppress", "marketing"), ("suppress", "all")]
    assert ledger.verify().ok


def test_a_batch_of_500_events_is_accepted_in_one_request(client, app, signing_key, capsys):
    events = [event(("processed", "delivered", "open")[i % 3], f"r{i}@example.com") for i in range(500)]
    started = time.perf_counter()
    response = post(client, events, signing_key)
    elapsed = time.perf_counter() - started
    assert response.status_code == 200 and response.json["new"] == 500
    with app.app_context():
        assert stored() == 500
    with capsys.disabled():
        print(f"\n500-event webhook batch accepted in {elapsed * 1000:.0f} ms")


# -- what each event does ---------------------------------------------------------

def test_a_hard_bounce_suppresses_everything_through_the_ledger(world):
    ann = world["ann"]
    assert feed(event("bounce", "ann@example.com", type="bounce", reason="550 no such user")) == {"applied": 1}
    assert suppression("ann@example.com", "all").reason == "hard_bounce"
    (recorded,) = webhook_events(ann)
    assert recorded.action == "suppress" and recorded.detail == {"scope": "all", "reason": "hard_bounce"}
    assert states(ann) == {"news": "unsubscribed", "tips": "unsubscribed", "orders": "unsubscribed"}
    assert ledger.verify().ok


def test_a_bounce_without_type_is_hard_and_a_blocked_bounce_is_soft(world):
    bob = factories.contact("bob@example.com")
    db.session.commit()
    feed(event("bounce", "ann@example.com"), event("bounce", "bob@example.com", type="blocked"))
    assert suppression("ann@example.com", "all").reason == "hard_bounce"
    assert suppression("bob@example.com", "all") is None
    assert db.session.get(Contact, bob.id).soft_bounces == 1


def test_soft_bounces_suppress_at_the_limit_counting_each_message_once(world):
    ann, news = world["ann"], world["news"]
    first, second, third = (delivery_for(ann, news) for _ in range(3))
    # Deferred at each of SendGrid's retries of one message: one soft bounce.
    feed(*[event("deferred", "ann@example.com", delivery_id=str(first.id)) for _ in range(4)])
    assert db.session.get(Contact, ann.id).soft_bounces == 1
    feed(event("blocked", "ann@example.com", delivery_id=str(second.id)))
    assert suppression("ann@example.com", "all") is None
    feed(event("bounce", "ann@example.com", type="blocked", delivery_id=str(third.id)))
    assert db.session.get(Contact, ann.id).soft_bounces == 3
    assert suppression("ann@example.com", "all").reason == "soft_bounce_limit"
    assert webhook_events(ann)[-1].detail == {"scope": "all", "reason": "soft_bounce_limit"}
    assert ledger.verify().ok


def test_a_delivery_resets_the_soft_bounce_count(world):
    ann, news = world["ann"], world["news"]
    feed(event("deferred", "ann@example.com"), event("deferred", "ann@example.com"))
    assert db.session.get(Contact, ann.id).soft_bounces == 2
    feed(event("delivered", "ann@example.com", delivery_id=str(delivery_for(ann, news).id)))
    assert db.session.get(Contact, ann.id).soft_bounces == 0


def test_a_spam_report_suppresses_marketing_and_withdraws_all_marketing(world):
    ann = world["ann"]
    feed(event("spamreport", "ann@example.com"))
    assert suppression("ann@example.com", "marketing").reason == "spam_complaint"
    assert suppression("ann@example.com", "all") is None
    actions = [(e.action, e.scope) for e in webhook_events(ann)]
    assert actions == [("suppress", "contact"), ("withdraw", "all_marketing")]
    # System mail still goes out: a complaint is about marketing.
    assert states(ann) == {"news": "unsubscribed", "tips": "unsubscribed", "orders": "subscribed"}
    assert ledger.verify().ok


def test_an_unsubscribe_withdraws_all_marketing_with_the_recipients_proof(world):
    ann = world["ann"]
    feed(event("unsubscribe", "ann@example.com", ip="203.0.113.9", useragent="Mail/1.0"))
    (withdrawal, suppressed) = webhook_events(ann)
    assert (withdrawal.action, withdrawal.scope) == ("withdraw", "all_marketing")
    assert (withdrawal.ip, withdrawal.user_agent) == ("203.0.113.9", "Mail/1.0")
    assert suppressed.detail == {"scope": "marketing", "reason": "opt_out"}
    assert db.session.get(Contact, ann.id).marketing_opt_out_event_id == withdrawal.id
    assert states(ann) == {"news": "unsubscribed", "tips": "unsubscribed", "orders": "subscribed"}


def test_group_unsubscribe_and_resubscribe_follow_the_topic_of_the_group(world):
    ann = world["ann"]
    feed(event("group_unsubscribe", "ann@example.com", asm_group_id=101))
    assert states(ann)["news"] == "unsubscribed"
    assert states(ann)["tips"] == "subscribed"  # legitimate interest for customers, untouched
    feed(event("group_unsubscribe", "ann@example.com", asm_group_id=102))
    assert states(ann)["tips"] == "unsubscribed"
    feed(event("group_resubscribe", "ann@example.com", asm_group_id=101))
    # The provider reports it, but only the person's own confirmation ends their withdrawal: it asks them.
    assert states(ann)["news"] == "unsubscribed"
    ask = webhook_events(ann)[-1]
    assert (ask.action, ask.topic_id, ask.confirmed) == ("grant", world["news"].id, False)
    assert [e.action for e in webhook_events(ann)] == ["withdraw", "withdraw", "grant"]
    assert ledger.verify().ok


def test_a_group_resubscribe_with_nothing_in_the_way_is_a_confirmed_grant(world):
    bob = factories.contact("bob@example.com")
    db.session.commit()
    feed(event("group_resubscribe", "bob@example.com", asm_group_id=101))
    assert [(e.action, e.topic_id, e.confirmed) for e in webhook_events(bob)] == [("grant", world["news"].id, True)]
    assert states(bob)["news"] == "subscribed"


def test_unsubscribe_then_resubscribe_in_one_batch_applies_in_the_recipients_order(world):
    ann = world["ann"]
    now = int(time.time())
    feed(event("group_resubscribe", "ann@example.com", asm_group_id=101, timestamp=now),
         event("group_unsubscribe", "ann@example.com", asm_group_id=101, timestamp=now - 30))
    # Withdrawn first, then asked to confirm the resubscription (an unconfirmed grant after the withdrawal).
    assert [(e.action, e.confirmed) for e in webhook_events(ann)] == [("withdraw", False), ("grant", False)]
    assert states(ann)["news"] == "unsubscribed"


def test_an_unknown_group_is_ignored_and_counted(world):
    assert feed(event("group_unsubscribe", "ann@example.com", asm_group_id=999)) == {"ignored": 1}
    assert webhook_events() == []


def test_engagement_events_move_the_delivery_status_forward_only(world):
    ann, news = world["ann"], world["news"]
    delivery = delivery_for(ann, news)
    ref = {"delivery_id": str(delivery.id)}
    feed(event("processed", "ann@example.com", **ref))
    assert db.session.get(Delivery, delivery.id).provider_status == "processed"
    feed(event("delivered", "ann@example.com", **ref), event("open", "ann@example.com", **ref))
    assert db.session.get(Delivery, delivery.id).provider_status == "open"
    feed(event("click", "ann@example.com", **ref))
    feed(event("processed", "ann@example.com", **ref))  # arriving late changes nothing
    found = db.session.get(Delivery, delivery.id)
    assert (found.status, found.provider_status) == ("sent", "click")
    assert webhook_events() == []


def test_opening_or_clicking_counts_as_an_interaction_for_retention(world):
    ann = world["ann"]
    ann.last_interaction_at = utcnow() - dt.timedelta(days=1000)
    db.session.commit()
    feed(event("open", "ann@example.com"))
    assert utcnow() - db.session.get(Contact, ann.id).last_interaction_at < dt.timedelta(minutes=1)


def test_a_dropped_message_keeps_its_status_and_records_the_provider_status(world):
    ann, news = world["ann"], world["news"]
    delivery = delivery_for(ann, news)
    feed(event("dropped", "ann@example.com", delivery_id=str(delivery.id), reason="Bounced Address"))
    found = db.session.get(Delivery, delivery.id)
    assert (found.status, found.provider_status) == ("sent", "dropped")


def test_the_delivery_id_custom_arg_finds_the_contact_before_the_address(world):
    ann, news = world["ann"], world["news"]
    delivery = delivery_for(ann, news)
    feed(event("group_unsubscribe", "forwarded-to@elsewhere.example", asm_group_id=101, delivery_id=str(delivery.id)))
    assert states(ann)["news"] == "unsubscribed"


def test_events_for_an_erased_contact_only_touch_the_suppression_hash(world):
    ann, news = world["ann"], world["news"]
    delivery = delivery_for(ann, news)
    contacts.erase(ann, source="test")
    db.session.commit()
    before = db.session.scalar(select(func.count(ConsentEvent.id)))
    outcome = feed(event("spamreport", "ann@example.com", delivery_id=str(delivery.id)),
                   event("unsubscribe", "ann@example.com"),
                   event("group_unsubscribe", "ann@example.com", asm_group_id=101))
    assert outcome == {"applied": 2, "ignored": 1}
    assert suppression("ann@example.com", "marketing").reason == "spam_complaint"
    assert suppression("ann@example.com", "all").reason == "erased"
    added = db.session.scalars(select(ConsentEvent).where(ConsentEvent.id > before)).all()
    assert [(e.action, e.contact_id) for e in added] == [("suppress", None)]
    assert db.session.get(Contact, ann.id).email is None
    assert ledger.verify().ok


def test_a_hard_bounce_of_an_unknown_address_blocks_a_later_import(world):
    feed(event("bounce", "Stranger@Example.com", type="bounce"))
    assert suppression("stranger@example.com", "all").reason == "hard_bounce"
    stranger = factories.contact("stranger@example.com", relationship="customer")
    db.session.commit()
    assert states(stranger)["orders"] == "unsubscribed"
    assert ledger.verify().ok


def test_processing_repeated_ids_applies_each_event_once(world):
    receipt = feedback.receive([event("spamreport", "ann@example.com")])
    db.session.commit()
    first = feedback.process(receipt.new_ids + receipt.new_ids)
    second = feedback.process(receipt.new_ids)
    assert first.outcomes == {"applied": 1} and second.outcomes == {"already_processed": 1}
    assert len(webhook_events(world["ann"])) == 2


def test_the_sweep_processes_events_whose_task_was_lost(world):
    from preference_center.tasks import sweep_webhook_events

    now = utcnow()
    lost, fresh, ancient = (event("unsubscribe", "ann@example.com") for _ in range(3))
    db.session.add_all([
        WebhookEvent(provider_event_id=lost["sg_event_id"], event="unsubscribe", payload=lost,
                     received_at=now - dt.timedelta(minutes=5)),
        WebhookEvent(provider_event_id=fresh["sg_event_id"], event="unsubscribe", payload=fresh, received_at=now),
        WebhookEvent(provider_event_id=ancient["sg_event_id"], event="unsubscribe", payload=ancient,
                     received_at=now - dt.timedelta(days=2)),
    ])
    db.session.commit()
    assert sweep_webhook_events() == {"applied": 1}
    assert db.session.scalars(select(WebhookEvent.provider_event_id)
                              .where(WebhookEvent.processed_at.is_not(None))).all() == [lost["sg_event_id"]]
    assert states(world["ann"])["news"] == "unsubscribed"


# -- end to end with a real worker -------------------------------------------------

@pytest.mark.slow
def test_a_signed_batch_is_processed_by_a_real_celery_worker(world, client, app, signing_key):
    celery = app.extensions["celery"]
    if celery.conf.broker_url.startswith("redis"):
        celery.control.purge()
    ann, news = world["ann"], world["news"]
    delivery = delivery_for(ann, news)
    factories.contact("bob@example.com", relationship="customer")
    db.session.commit()
    events = [event("delivered", "ann@example.com", delivery_id=str(delivery.id)),
              event("group_unsubscribe", "ann@example.com", asm_group_id=101, delivery_id=str(delivery.id)),
              event("bounce", "bob@example.com", type="bounce"),
              event("spamreport", "carol@example.com")]
    with start_worker(celery, pool="threads", concurrency=2, perform_ping_check=False,
                      shutdown_timeout=20, loglevel="WARNING"):
        assert post(client, events, signing_key).json["new"] == 4
        deadline = time.time() + 60
        while time.time() < deadline:
            db.session.rollback()
            if db.session.scalar(select(func.count(WebhookEvent.id)).where(WebhookEvent.processed_at.is_(None))) == 0:
                break
            time.sleep(0.2)
        else:
            raise AssertionError("the worker did not process the events")
    assert db.session.get(Delivery, delivery.id).provider_status == "group_unsubscribe"
    assert states(ann)["news"] == "unsubscribed"
    assert suppression("bob@example.com", "all").reason == "hard_bounce"
    assert suppression("carol@example.com", "marketing").reason == "spam_complaint"
    assert {e.source for e in webhook_events()} == {"webhook:sendgrid"}
    assert ledger.verify().ok

"""Erasure that leaves nothing: a person who touched every table is erased, and a full dump of the database and
every file of the instance (SQLite's own files and WAL included) holds neither their address, name nor phone."""
from __future__ import annotations

import io
import json
import logging
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select, text

from preference_center import erasure, feedback, imports, links, privacy_logging, provider_erasure, sending
from preference_center.actors import staff as staff_actor
from preference_center.commands import DomainError
from preference_center.commands import imports as import_commands
from preference_center.extensions import db
from preference_center.models import (
    Contact,
    DataRequest,
    Delivery,
    ImportJob,
    ProviderErasure,
    SystemMessage,
    WebhookEvent,
)

from .fake_sendgrid import FakeSendGrid
from .helpers import IP, PG_URL, UA, csrf_token, drain, outbox, settle, token

EMAIL = "zeb.quattlebaum@example.org"
NAME = "Zebulon Quattlebaum"
PHONE = "+44 7700 900461"
ATTRIBUTE = "Quattlebaum-Platinum-7731"  # a custom attribute's value
BYSTANDER = "amy.bystander@example.org"


@pytest.fixture
def fake_sendgrid():
    with FakeSendGrid() as fake:
        yield fake


@pytest.fixture
def transport(request) -> str:
    """The mail transport: outbox unless a test asks for another (indirect parametrisation)."""
    return getattr(request, "param", "outbox")


@pytest.fixture
def app_config(app_config, transport, fake_sendgrid):
    config = {**app_config, "PC_SUBSCRIBE_MIN_SECONDS": 0}
    if transport == "sendgrid":
        config |= {"PC_MAIL_TRANSPORT": "sendgrid", "PC_SENDGRID_API_KEY": "SG.test",
                   "PC_SENDGRID_API_HOST": fake_sendgrid.url, "PC_SENDGRID_MAX_ATTEMPTS": 1}
    return config


def _upload(rows: list[str], name: str) -> ImportJob:
    body = "email,name,phone,relationship\n" + "\n".join(rows) + "\n"
    job = import_commands.upload(staff_actor("boss@example.com"), io.BytesIO(body.encode()), name)
    import_commands.preview(staff_actor("boss@example.com"), job, imports.Settings(
        mapping={"email": 0, "name": 1, "phone": 2, "relationship": 3}, legal_basis="legitimate_interest",
        source_text="trade fair 2026 sign-up sheet"))
    db.session.commit()
    return job


def _live_a_full_life(app, client, api, as_admin, fake_sendgrid) -> int:
    """Every door and table: two imports (one run, one left previewed), the API, one-click, a system message,
    a campaign, provider events, the data page, staff pages."""
    fake_sendgrid.add_marketing_contact(EMAIL)
    job = _upload([f"{EMAIL},{NAME},{PHONE},customer", f"{BYSTANDER},Amy Bystander,,customer"], "fair.csv")
    import_commands.start(staff_actor("boss@example.com"), job)
    db.session.commit()
    assert imports.run(job.id).status == "done"
    resting = _upload([f"{BYSTANDER},Amy Bystander,,customer", f"{EMAIL.upper()},{NAME},{PHONE},customer"],
                      f"{EMAIL}.csv")
    assert resting.status == "previewed" and EMAIL in json.dumps(resting.preview)
    assert api.put(f"/contacts/{EMAIL}", json={"company": "Quattlebaum Holdings", "title": "Owner",
                                               "attributes": {"tier": ATTRIBUTE, "seats": 7}}).status_code == 200
    assert api.post(f"/contacts/{EMAIL}/consents", json={
        "topic": "news", "action": "grant", "source": "crm-signup", "confirmed": True, "ip": IP,
        "user_agent": UA}).status_code == 201
    contact_id = db.session.scalar(select(Contact.id).where(Contact.email == EMAIL))
    one_click = app.test_client(use_cookies=False).post(
        f"/u/{token(app, links.UNSUBSCRIBE, contact_id, _topic_id('news'))}", data={"List-Unsubscribe": "One-Click"})
    assert one_click.status_code == 200
    settle(app)
    sent = api.post("/messages", json={"topic": "orders", "to": EMAIL, "subject": "Order for {{ data.who }}",
                                       "text": "Hello {{ data.who }}, we call you on {{ data.phone }}.",
                                       "data": {"who": NAME, "phone": PHONE}},
                    headers={"Idempotency-Key": "order-1"})
    assert sent.status_code == 202
    assert sending.send_system(sent.json["delivery_id"]) == "sent"
    campaign = api.post("/campaigns", json={"name": "Tips", "topic": "tips", "subject": "Tips for {{ contact.name }}",
                                            "text": "Hi {{ contact.name }} ({{ contact.attributes.tier }})"}).json["id"]
    assert api.post(f"/campaigns/{campaign}/schedule", json={"at": None}).status_code == 200
    drain(campaign)
    delivered = db.session.scalar(select(Delivery).where(Delivery.campaign_id == campaign,
                                                         Delivery.contact_id == contact_id))
    assert delivered.status == "sent"
    events = [{"event": kind, "email": EMAIL, "sg_event_id": f"ev-{kind}", "timestamp": int(time.time()),
               "ip": IP, "useragent": UA, "sg_message_id": f"{delivered.provider_message_id}.filter"}
              for kind in ("delivered", "open")]
    assert client.post("/webhooks/sendgrid", json=events).status_code in (200, 202, 204)
    feedback.process(list(db.session.scalars(select(WebhookEvent.id))))
    preferences = f"/p/{token(app, links.PREFERENCES, contact_id)}"
    data_page = client.get(f"{preferences}/data").get_data(as_text=True)
    assert client.post(f"{preferences}/data/export", data={"csrf_token": csrf_token(data_page)}).status_code == 200
    client.post(f"{preferences}/data/restrict", data={"csrf_token": csrf_token(data_page)},
                headers={"User-Agent": UA}, environ_base={"REMOTE_ADDR": IP})
    assert as_admin.get(f"/admin/contacts?q={EMAIL}").status_code == 200
    refused = as_admin.post(f"/admin/contacts/{contact_id}/suppress", {"scope": "all",
                                                                       "reason": f"asked by {EMAIL} on the phone"})
    assert refused.status_code == 422 and "must not contain an email address" in refused.get_data(as_text=True)
    assert as_admin.post(f"/admin/contacts/{contact_id}/suppress",
                         {"scope": "marketing", "reason": "asked by phone on 3 March"}).status_code == 302
    return contact_id


def _topic_id(key: str) -> int:
    return db.session.scalar(text("SELECT id FROM topics WHERE key = :k"), {"k": key})


def _dump() -> str:
    """Every column of every row of every table, as text (lower case)."""
    db.session.expire_all()
    parts = []
    for table in db.metadata.sorted_tables:
        for row in db.session.execute(select(table)):
            parts.append(json.dumps([str(value) for value in row], ensure_ascii=False))
    return "\n".join(parts).lower()


def _files(folder: Path) -> dict[str, bytes]:
    return {str(path): path.read_bytes().lower() for path in folder.rglob("*") if path.is_file()}


NEEDLES = [EMAIL, NAME.lower(), PHONE, EMAIL.replace("@", "%40"), ATTRIBUTE.lower()]


def _found_in_files(folder: Path) -> list[str]:
    return [f"{needle!r} in {path}" for path, data in _files(folder).items() for needle in NEEDLES
            if needle.encode() in data or needle.encode("utf-16-le") in data]


@pytest.mark.parametrize("transport", ["outbox", "sendgrid"], indirect=True)
def test_an_erased_person_who_touched_every_table_leaves_no_trace_but_the_keyed_hash(
        app, client, api, topics, as_admin, fake_sendgrid, transport, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    contact_id = _live_a_full_life(app, client, api, as_admin, fake_sendgrid)
    before = _dump()
    assert all(needle.lower() in before for needle in (EMAIL, NAME, PHONE, ATTRIBUTE)), "the life left traces to erase"
    if transport == "outbox":
        assert any(m["To"] == EMAIL for m in outbox(app)), "mail was written to the outbox"
    assert api.delete(f"/contacts/{EMAIL}").status_code == 200

    dump = _dump()
    left = [needle for needle in NEEDLES if needle.lower() in dump]
    assert left == [], f"{left} survived the erasure in the database"
    folder = tmp_path if not PG_URL else Path(app.config["PC_INSTANCE_PATH"])
    assert _found_in_files(folder) == []
    erased = db.session.get(Contact, contact_id)
    assert erased.status == "erased" and erased.email is None and erased.email_hash in dump
    # The bystander in the same files is untouched; the resting import lost only the erased row.
    resting = db.session.scalar(select(ImportJob).where(ImportJob.status.in_(erasure.RESTING_IMPORTS)))
    assert resting.total == 1 and resting.filename == erasure.ERASED and resting.status == "uploaded"
    assert BYSTANDER.encode() in Path(resting.stored_path).read_bytes()
    # Provider payloads keep their ids (a replay is still recognised), nothing of the person.
    assert {row.payload["erased"] for row in db.session.scalars(select(WebhookEvent))} == {True}
    if transport == "sendgrid":
        assert fake_sendgrid.global_suppressions == [EMAIL]
        assert EMAIL not in fake_sendgrid.marketing_contacts
        assert db.session.scalar(select(ProviderErasure.id)) is None
    # Log lines carry ids, never addresses: the API paths and the staff search included.
    assert EMAIL not in caplog.text and EMAIL.replace("@", "%40") not in caplog.text


def test_a_system_message_to_an_erased_address_is_skipped_without_recreating_a_contact(app, api, topics, ctx):
    assert api.put(f"/contacts/{EMAIL}", json={"name": NAME}).status_code == 201
    assert api.delete(f"/contacts/{EMAIL}").status_code == 200
    count = db.session.scalar(text("SELECT count(*) FROM contacts"))
    body = {"topic": "orders", "to": EMAIL, "subject": "Invoice for {{ data.who }}", "text": "Dear {{ data.who }}",
            "data": {"who": NAME}}
    answer = api.post("/messages", json=body, headers={"Idempotency-Key": "inv-1"})
    assert answer.status_code == 202, answer.json
    assert (answer.json["status"], answer.json["reason"], answer.json["replayed"]) == ("skipped", "erased", False)
    again = api.post("/messages", json=body, headers={"Idempotency-Key": "inv-1"})
    assert again.status_code == 200 and again.json["id"] == answer.json["id"]
    db.session.expire_all()
    assert db.session.scalar(text("SELECT count(*) FROM contacts")) == count
    assert db.session.scalar(select(Contact.id).where(Contact.email == EMAIL)) is None
    message = db.session.get(SystemMessage, answer.json["id"])
    assert (message.subject, message.text, message.data) == ("[erased]", "", {})
    assert api.get(f"/messages/{answer.json['id']}").json["status"] == "skipped"
    assert NAME.lower() not in _dump()


def test_a_later_signup_of_the_erased_address_is_a_new_contact_again(app, api, topics, ctx):
    api.put(f"/contacts/{EMAIL}", json={"name": NAME})
    api.delete(f"/contacts/{EMAIL}")
    assert api.put(f"/contacts/{EMAIL}", json={"name": "Zeb"}).status_code == 201
    sent = api.post("/messages", json={"topic": "orders", "to": EMAIL, "subject": "Hi", "text": "Hi"})
    assert sent.json["status"] == "queued"


@pytest.mark.parametrize("door", ["suppress", "lift", "api", "import"])
def test_free_text_that_outlives_an_erasure_refuses_an_address(app, api, topics, as_admin, door):
    api.put(f"/contacts/{EMAIL}", json={"name": NAME})
    contact_id = db.session.scalar(select(Contact.id).where(Contact.email == EMAIL))
    if door == "suppress":
        answer = as_admin.post(f"/admin/contacts/{contact_id}/suppress", {"scope": "all", "reason": f"per {EMAIL}"})
        assert answer.status_code == 422
    elif door == "lift":
        as_admin.post(f"/admin/contacts/{contact_id}/suppress", {"scope": "all", "reason": "spam trap"})
        answer = as_admin.post(f"/admin/contacts/{contact_id}/lift-suppression",
                               {"scope": "all", "why": f"{EMAIL} says it works"})
        assert answer.status_code == 422
    elif door == "api":
        answer = api.post(f"/contacts/{EMAIL}/consents", json={"action": "withdraw", "source": f"mail from {EMAIL}"})
        assert answer.status_code == 422 and answer.json["error"]["field"] == "source"
    else:
        job = import_commands.upload(staff_actor("boss@example.com"), io.BytesIO(f"email\n{EMAIL}\n".encode()), "a.csv")
        with pytest.raises(DomainError, match="must not contain an email address"):
            import_commands.preview(staff_actor("boss@example.com"), job, imports.Settings(
                mapping={"email": 0}, legal_basis="legitimate_interest", source_text=f"list from {EMAIL}"))
        db.session.rollback()
    assert f"per {EMAIL}" not in _dump() and f"{EMAIL} says" not in _dump() and f"from {EMAIL}" not in _dump()


def test_the_log_filter_masks_addresses_and_tokens(app):
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(self.format(record))

    logger = logging.getLogger("werkzeug")
    handler = Keep()
    logger.addHandler(handler)
    try:
        logger.warning('"GET /api/v1/contacts/%s HTTP/1.1" 200 -', EMAIL)
        logger.warning('"GET /admin/contacts?q=Zeb.Q%%40Example.org HTTP/1.1" 200 -')
        logger.warning('"POST /u/%s HTTP/1.1" 200 -', "WzEsMSwwXQ.Zx1y2z.abcdefghijklmnop")
        logger.warning('"GET /p/%s/data/confirm/%s HTTP/1.1" 200', "WzEsMSwwXQ.Zx1y2z.abcdefgh", "WzIsMV0.aa.bbbbbbbbbb")
        logger.warning("Authorization: Bearer %s", "pc_abcdefghijklmnopqrstuvwxyz")
    finally:
        logger.removeHandler(handler)
    assert records == [
        '"GET /api/v1/contacts/***@*** HTTP/1.1" 200 -',
        '"GET /admin/contacts?q=***@*** HTTP/1.1" 200 -',
        '"POST /u/*** HTTP/1.1" 200 -',
        '"GET /p/***/data/confirm/*** HTTP/1.1" 200',
        "Authorization: Bearer ***",
    ]


def test_the_masking_filter_also_masks_exception_text():
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed for %s", (EMAIL,), None)
    try:
        raise ValueError(f"550 <{EMAIL}> unknown user")
    except ValueError:
        record.exc_info = sys.exc_info()
    privacy_logging.MaskingFilter().filter(record)
    assert record.getMessage() == "failed for ***@***" and EMAIL not in record.exc_text
    assert "550 <***@***> unknown user" in record.exc_text


@pytest.mark.parametrize("transport", ["sendgrid"], indirect=True)
def test_a_provider_that_refuses_keeps_the_erasure_waiting_until_it_accepts(app, api, topics, ctx, fake_sendgrid,
                                                                           transport):
    api.put(f"/contacts/{EMAIL}", json={"name": NAME})
    fake_sendgrid.script([(500, {})])
    assert api.delete(f"/contacts/{EMAIL}").status_code == 200
    row = db.session.scalars(select(ProviderErasure)).one()
    assert row.attempts == 1 and EMAIL not in (row.last_error or "")
    assert fake_sendgrid.global_suppressions == []
    assert provider_erasure.run_pending() == 1
    db.session.expire_all()
    assert db.session.scalar(select(ProviderErasure.id)) is None
    assert fake_sendgrid.global_suppressions == [EMAIL]


def test_every_api_erasure_leaves_a_completed_data_request(app, api, topics, ctx):
    api.put(f"/contacts/{EMAIL}", json={"name": NAME})
    contact_id = db.session.scalar(select(Contact.id).where(Contact.email == EMAIL))
    assert api.delete(f"/contacts/{EMAIL}").status_code == 200
    db.session.expire_all()
    (request,) = db.session.scalars(select(DataRequest).where(DataRequest.contact_id == contact_id)).all()
    assert (request.kind, request.status, request.detail["erased_by"]) == ("erasure", "completed", "api:tests")
    assert request.completed_at is not None

"""The consent proof (SPEC section 8): every event of one person with the wording it cites, its hashes, its place
in the chain and its check, the chain's verification and the ledger head hash of the moment; by API and for staff."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import select, text

from preference_center import ledger, links, proof
from preference_center.actors import system
from preference_center.commands import wordings
from preference_center.extensions import db
from preference_center.models import AuditLog, ConsentText, Topic

from .helpers import IP, UA, csrf_token, mailed_link, make_contact, text_of, token

WORDING_2 = "Version two: email me about the topics I ticked, and about events near me. I can leave at any time."


@pytest.fixture
def app_config(app_config):
    # Forms posted by tests come back at once.
    return {**app_config, "PC_SUBSCRIBE_MIN_SECONDS": 0}


def _subscribe(client, email, topics):
    page = client.get("/subscribe").get_data(as_text=True)
    started = (re.search(r'name="started"[^>]*value="([^"]+)"', page)
               or re.search(r'value="([^"]+)"[^>]*name="started"', page))
    version = re.search(r'id="consent_version"[^>]*value="([^"]*)"', page)
    data = {"csrf_token": csrf_token(page), "email": email, "name": "Pat Proof", "topics": list(topics),
            "started": started.group(1), "consent_version": version.group(1), "website": ""}
    response = client.post("/subscribe", data=data, headers={"User-Agent": UA}, environ_base={"REMOTE_ADDR": IP})
    assert response.status_code == 200


def _confirm(client, app, email):
    link = mailed_link(app, email)
    page = client.get(link).get_data(as_text=True)
    done = client.post(link, data={"csrf_token": csrf_token(page)}, headers={"User-Agent": UA},
                       environ_base={"REMOTE_ADDR": IP})
    assert done.status_code == 200 and "Subscription confirmed" in done.get_data(as_text=True)


@pytest.fixture
def pat(app, client, api, topics) -> int:
    """A person's whole life: a double opt-in (wording 1), a topic change (a second topic under wording 2, the
    first one dropped on the preference page), an objection on the data page, and an erasure through the API."""
    assert api.put("/topics/events", json={"name": "Events", "kind": "marketing",
                                           "legal_basis": "consent"}).status_code == 201
    _subscribe(client, "Pat@Example.com", ["news"])
    _confirm(client, app, "pat@example.com")
    with app.app_context():
        wordings.publish(system("test"), "en", "2", WORDING_2)
        db.session.commit()
    _subscribe(client, "pat@example.com", ["events"])
    _confirm(client, app, "pat@example.com")
    with app.app_context():
        contact_id = db.session.scalar(text("SELECT id FROM contacts WHERE email = 'pat@example.com'"))
    preferences = f"/p/{token(app, links.PREFERENCES, contact_id)}"
    page = client.get(preferences).get_data(as_text=True)
    saved = client.post(preferences, data={"csrf_token": csrf_token(page), "topics": ["events"]},
                        headers={"User-Agent": UA}, environ_base={"REMOTE_ADDR": IP})
    assert saved.status_code == 303
    data_page = client.get(f"{preferences}/data").get_data(as_text=True)
    client.post(f"{preferences}/data/object", data={"csrf_token": csrf_token(data_page)},
                headers={"User-Agent": UA}, environ_base={"REMOTE_ADDR": IP})
    assert api.delete("/contacts/pat@example.com").status_code == 200
    return contact_id


def _wording_text(app, version: str) -> str:
    with app.app_context():
        return db.session.scalar(select(ConsentText.text).where(ConsentText.version == version,
                                                                ConsentText.locale == "en"))


def test_the_proof_of_a_whole_life_shows_every_step_with_its_wording_and_verifies(app, api, pat):
    answer = api.get("/contacts/PAT@example.com/proof")
    assert answer.status_code == 200, answer.json
    doc = answer.json
    steps = [(e["action"], e["topic"], e["confirmed"], e["consent_text_version"]) for e in doc["events"]]
    assert steps == [
        ("relationship", None, False, None),
        ("grant", "news", False, "1"), ("grant", "news", True, "1"),          # double opt-in, wording 1
        ("grant", "events", False, "2"), ("grant", "events", True, "2"),      # the new topic, wording 2
        ("withdraw", "news", False, None),                                    # dropped on the preference page
        ("object", None, False, None), ("suppress", None, False, None),       # objection stops all marketing
        ("erase", None, False, None), ("suppress", None, False, None),        # erasure keeps the address blocked
    ]
    assert [e["source"] for e in doc["events"]][1:7] == [
        "subscribe-form", "subscribe-confirm", "subscribe-form", "subscribe-confirm", "preferences-page",
        "data-rights-page"]
    assert doc["events"][-2]["source"] == "api:tests"
    # Every grant carries the exact text of the wording it cites, with its hash.
    for event in doc["events"]:
        if event["action"] == "grant":
            wording = event["wording"]
            assert wording["text"] == _wording_text(app, event["consent_text_version"])
            assert wording["hash"] == wording["current_hash"] == event["wording_hash"] == \
                ledger.wording_hash(wording["text"])
        else:
            assert event["wording"] is None
    assert doc["events"][3]["wording"]["text"] == WORDING_2
    # Hashes and their chain: each event's hash is what the ledger holds, and each follows its predecessor.
    events = {e.id: e for e in _events(app)}
    for event in doc["events"]:
        assert event["hash"] == events[event["id"]].hash and event["chain_position"] == event["id"]
        assert event["prev_hash"] == (events[event["id"] - 1].hash if event["id"] > 1 else ledger.GENESIS)
        assert event["verified"] and event["problems"] == []
    # Erased: the IP and user agent kept with the grants are gone, the proof still verifies.
    assert all(e["ip"] is None and e["user_agent"] is None and e["personal_data_erased"] for e in doc["events"])
    assert doc["verification"] == {"ok": True, "chain_ok": True, "events_ok": True,
                                   "checked": len(events), "problems": []}
    with app.app_context():
        head = ledger.verify()
    assert doc["head"] == {"event_id": len(events), "hash": head.head_hash}
    assert [c["status"] for c in doc["contacts"]] == ["erased"] and doc["email"] == "pat@example.com"
    assert {(s["scope"], s["reason"]) for s in doc["suppressions"]} == {("marketing", "opt_out"), ("all", "erased")}
    assert doc["digest"] == proof.digest(doc)
    with app.app_context():
        entry = db.session.scalars(select(AuditLog).where(AuditLog.action == "contact.proof")).one()
        assert (entry.actor, entry.target_id) == ("api:tests", str(pat))


def _events(app):
    with app.app_context():
        rows = db.session.scalars(select(ledger.ConsentEvent).order_by(ledger.ConsentEvent.id)).all()
        db.session.expunge_all()
        return rows


def test_the_proof_keeps_the_ip_and_user_agent_of_a_live_person(app, api, topics, client):
    _subscribe(client, "lee@example.com", ["news"])
    doc = api.get("/contacts/lee@example.com/proof").json
    grant = next(e for e in doc["events"] if e["action"] == "grant")
    assert (grant["ip"], grant["user_agent"], grant["personal_data_erased"]) == (IP, UA, False)
    assert doc["verification"]["ok"]


def test_a_wording_changed_behind_the_ledgers_back_shows_in_the_proof(app, api, pat):
    with app.app_context():
        db.session.execute(text("UPDATE consent_texts SET text = 'We never said that.' WHERE version = '2'"))
        db.session.commit()
    doc = api.get("/contacts/pat@example.com/proof").json
    broken = [e for e in doc["events"] if not e["verified"]]
    assert [(e["action"], e["consent_text_version"]) for e in broken] == [("grant", "2"), ("grant", "2")]
    assert all("wording" in problem for e in broken for problem in e["problems"])
    assert broken[0]["wording"]["current_hash"] != broken[0]["wording_hash"]
    assert doc["verification"]["ok"] is False and doc["verification"]["chain_ok"] is False


def test_an_event_edited_in_the_database_fails_its_own_check(app, api, topics, client):
    _subscribe(client, "lee@example.com", ["news"])
    with app.app_context():
        db.session.execute(text("UPDATE consent_events SET source = 'staff:someone' WHERE action = 'grant'"))
        db.session.commit()
    doc = api.get("/contacts/lee@example.com/proof").json
    grant = next(e for e in doc["events"] if e["action"] == "grant")
    assert grant["verified"] is False and any("edited" in p for p in grant["problems"])
    assert doc["verification"]["ok"] is False


def test_a_changed_copy_of_the_proof_no_longer_matches_its_digest(app, api, pat):
    doc = api.get("/contacts/pat@example.com/proof").json
    doc["events"][2]["occurred_at"] = "2020-01-01T00:00:00+00:00"
    assert proof.digest(doc) != doc["digest"]


def test_no_proof_for_an_address_that_was_never_a_contact_or_is_no_address(app, api, topics):
    before = _audit_count(app)
    missing = api.get("/contacts/nobody@example.com/proof")
    assert missing.status_code == 404 and missing.json["error"]["code"] == "not_found"
    invalid = api.get("/contacts/not-an-address/proof")
    assert invalid.status_code == 422 and invalid.json["error"]["field"] == "email"
    assert _audit_count(app) == before


def _audit_count(app) -> int:
    with app.app_context():
        return len(db.session.scalars(select(AuditLog.id)).all())


def test_the_proof_needs_a_token(client, topics):
    assert client.get("/api/v1/contacts/pat@example.com/proof").status_code == 401


# -- the staff page ---------------------------------------------------------------------

@pytest.mark.parametrize("role", ["as_admin", "as_marketer", "as_viewer"])
def test_staff_who_read_the_contact_print_its_proof_with_wordings_and_hashes(app, request, pat, role):
    staff = request.getfixturevalue(role)
    contact_page = staff.get(f"/admin/contacts/{pat}").get_data(as_text=True)
    assert f"/admin/contacts/{pat}/proof" in contact_page
    page = staff.get(f"/admin/contacts/{pat}/proof")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    words = text_of(html)
    assert "Consent proof" in words and "Verification verified" in words and "NOT verified" not in words
    assert "the whole chain (10 events) verifies" in words
    assert WORDING_2 in words and _wording_text(app, "1") in words
    assert words.count("✓ verifies") == 10 and "does not verify" not in words
    with app.app_context():
        assert ledger.verify().head_hash in words
    download = staff.get(f"/admin/contacts/{pat}/proof?format=json")
    assert download.status_code == 200 and "attachment" in download.headers["Content-Disposition"]
    assert download.json["verification"]["ok"] and len(download.json["events"]) == 10
    with app.app_context():
        actors = db.session.scalars(select(AuditLog.actor).where(AuditLog.action == "contact.proof")).all()
    assert len(actors) == 2 and set(actors) == {f"staff:{staff_email(role)}"}


def staff_email(role: str) -> str:
    return {"as_admin": "boss@example.com", "as_marketer": "mia@example.com", "as_viewer": "vic@example.com"}[role]


def test_the_staff_proof_page_needs_a_signed_in_user(app, client, topics):
    contact_id = make_contact(app, "kim@example.com")
    response = client.get(f"/admin/contacts/{contact_id}/proof")
    assert response.status_code == 302 and "/admin/login" in response.headers["Location"]
    assert client.get(f"/admin/contacts/{contact_id + 1000}/proof").status_code == 302


def test_the_staff_page_shows_a_failing_event(app, as_admin, topics):
    contact_id = make_contact(app, "kim@example.com")
    with app.app_context():
        db.session.execute(text("UPDATE consent_events SET source = 'forged' WHERE contact_id = :c"),
                           {"c": contact_id})
        db.session.commit()
    words = text_of(as_admin.get(f"/admin/contacts/{contact_id}/proof").get_data(as_text=True))
    assert "NOT verified" in words and "does not verify" in words
    assert as_admin.get(f"/admin/contacts/{contact_id + 1000}/proof").status_code == 404


def test_topics_of_the_proof_are_named(app, api, pat):
    doc = api.get("/contacts/pat@example.com/proof").json
    with app.app_context():
        names = {row.key: row.name for row in db.session.execute(select(Topic.key, Topic.name))}
    assert {e["topic"]: e["topic_name"] for e in doc["events"] if e["topic"]} == \
        {k: names[k] for k in ("news", "events")}

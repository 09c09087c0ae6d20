"""API part one: topics, contacts, consents, errors that change nothing."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from preference_center import ledger
from preference_center.extensions import db
from preference_center.models import AuditLog, ConsentEvent, Contact, Suppression, Topic

from .helpers import path_of


def counts(app):
    with app.app_context():
        return tuple(db.session.scalar(select(func.count()).select_from(m))
                     for m in (Contact, Topic, ConsentEvent, Suppression))


def test_topics_are_created_updated_and_listed(api, topics):
    listed = api.get("/topics").json["topics"]
    assert [t["key"] for t in listed] == ["news", "orders", "tips"]
    tips = next(t for t in listed if t["key"] == "tips")
    assert tips == {"key": "tips", "name": "Tips", "kind": "marketing", "legal_basis": "legitimate_interest",
                    "default_relationships": ["customer"], "description": "", "retired": False,
                    "sendgrid_group_id": None}
    updated = api.put("/topics/tips", json={"description": "Product tips", "default_relationships": []})
    assert updated.status_code == 200
    assert updated.json["default_relationships"] == [] and updated.json["description"] == "Product tips"
    assert updated.json["legal_basis"] == "legitimate_interest"


def test_a_system_topic_defaults_to_contract(api):
    response = api.put("/topics/outage", json={"name": "Outages", "kind": "system"})
    assert response.status_code == 201 and response.json["legal_basis"] == "contract"


@pytest.mark.parametrize("body, field", [
    ({"name": "X", "kind": "weekly", "legal_basis": "consent"}, "kind"),
    ({"name": "X", "kind": "marketing"}, "legal_basis"),
    ({"name": "X", "kind": "marketing", "legal_basis": "contract"}, "legal_basis"),
    ({"name": "X", "kind": "system", "legal_basis": "consent"}, "legal_basis"),
    ({"kind": "marketing", "legal_basis": "consent"}, "name"),
    ({"name": 5, "kind": "marketing", "legal_basis": "consent"}, "name"),
    ({"name": "X", "kind": "marketing", "legal_basis": "legitimate_interest", "default_relationships": "customer"},
     "default_relationships"),
    ({"name": "X", "kind": "marketing", "legal_basis": "legitimate_interest", "default_relationships": ["friend"]},
     "default_relationships"),
    ({"name": "X", "kind": "marketing", "legal_basis": "consent", "default_relationships": ["customer"]},
     "default_relationships"),
])
def test_bad_topics_are_refused_and_change_nothing(app, api, body, field):
    before = counts(app)
    response = api.put("/topics/new-topic", json=body)
    assert response.status_code == 422
    assert response.json["error"]["field"] == field
    assert counts(app) == before


def test_a_topic_cannot_change_kind(api, topics):
    response = api.put("/topics/news", json={"kind": "system"})
    assert response.status_code == 409
    assert api.get("/topics/news").json["kind"] == "marketing"


def test_bad_topic_key_is_refused(api):
    assert api.put("/topics/Bad Key!", json={"name": "x", "kind": "system"}).status_code in (404, 422)
    assert api.put("/topics/UPPER", json={"name": "x", "kind": "system"}).status_code == 422


def test_contact_upsert_normalises_and_reports_subscriptions_and_links(api, topics):
    created = api.put("/contacts/Ann.Lee@EXAMPLE.com",
                      json={"name": "Ann Lee", "relationship": "customer", "locale": "es"})
    assert created.status_code == 201
    body = created.json
    assert body["email"] == "ann.lee@example.com"
    assert body["status"] == "active"
    states = {s["topic"]: (s["state"], s["basis"]) for s in body["subscriptions"]}
    assert states == {"news": ("unsubscribed", "consent"), "tips": ("subscribed", "legitimate_interest"),
                      "orders": ("subscribed", "contract")}
    assert body["links"]["preferences"].startswith("https://prefs.example.test/p/")
    assert body["links"]["unsubscribe_all"].startswith("https://prefs.example.test/u/")
    again = api.put("/contacts/ann.lee@example.com", json={"company": "ACME"})
    assert again.status_code == 200 and again.json["company"] == "ACME" and again.json["name"] == "Ann Lee"
    assert api.get("/contacts/ANN.LEE@example.com").json["company"] == "ACME"


def test_contact_changes_are_ledger_events(app, api, topics):
    api.put("/contacts/a@example.com", json={"relationship": "prospect"})
    api.put("/contacts/a@example.com", json={"relationship": "customer", "name": "A"})
    with app.app_context():
        actions = db.session.scalars(select(ConsentEvent.action).order_by(ConsentEvent.id)).all()
        assert actions == ["relationship", "rectify", "relationship"]
        assert db.session.scalar(select(func.count(AuditLog.id)).where(AuditLog.action.like("contact.%"))) == 2


def test_consent_grant_with_proof_then_withdrawal(app, api, topics):
    api.put("/contacts/b@example.com", json={})
    granted = api.post("/contacts/b@example.com/consents", json={
        "topic": "news", "action": "grant", "legal_basis": "consent", "source": "signup-form",
        "consent_text_version": "v3", "ip": "203.0.113.9", "user_agent": "Mozilla/5.0", "confirmed": True})
    assert granted.status_code == 201
    event = granted.json["event"]
    assert event["action"] == "grant" and event["topic"] == "news" and event["confirmed"] is True
    assert event["consent_text_version"] == "v3" and len(event["hash"]) == 64
    state = {s["topic"]: s["state"] for s in api.get("/contacts/b@example.com").json["subscriptions"]}
    assert state["news"] == "subscribed"
    with app.app_context():
        row = db.session.get(ConsentEvent, event["id"])
        assert row.ip == "203.0.113.9" and row.user_agent == "Mozilla/5.0"
    api.post("/contacts/b@example.com/consents", json={"topic": "news", "action": "withdraw", "source": "crm"})
    state = {s["topic"]: s["state"] for s in api.get("/contacts/b@example.com").json["subscriptions"]}
    assert state["news"] == "unsubscribed"


def test_unconfirmed_grant_does_not_subscribe(api, topics):
    api.post("/contacts/c@example.com/consents", json={"topic": "news", "action": "grant", "source": "form"})
    subs = {s["topic"]: s for s in api.get("/contacts/c@example.com").json["subscriptions"]}
    assert subs["news"]["state"] == "unsubscribed" and subs["news"]["pending_confirmation"] is True


def test_withdrawing_all_marketing_keeps_system_mail(api, topics):
    api.put("/contacts/d@example.com", json={"relationship": "customer"})
    api.post("/contacts/d@example.com/consents", json={"action": "withdraw", "source": "call-centre"})
    subs = {s["topic"]: s["state"] for s in api.get("/contacts/d@example.com").json["subscriptions"]}
    assert subs == {"news": "unsubscribed", "tips": "unsubscribed", "orders": "subscribed"}
    # An API client cannot assert the way back: only the person's own confirmation lifts the opt-out.
    refused = api.post("/contacts/d@example.com/consents", json={"action": "grant", "source": "form",
                                                                 "confirmed": True})
    assert refused.status_code == 409 and refused.json["error"]["code"] == "needs_confirmation"
    subs = {s["topic"]: s["state"] for s in api.get("/contacts/d@example.com").json["subscriptions"]}
    assert subs["tips"] == "unsubscribed"


@pytest.mark.parametrize("body, status, code", [
    ({"topic": "nope", "action": "grant", "source": "x"}, 422, "unknown_topic"),
    ({"topic": "news", "action": "maybe", "source": "x"}, 422, "validation_error"),
    ({"topic": "news", "action": "grant"}, 422, "validation_error"),
    ({"topic": "news", "action": "grant", "source": "x", "confirmed": "yes"}, 422, "validation_error"),
    ({"topic": "news", "action": "grant", "source": "x", "legal_basis": "whim"}, 422, "validation_error"),
    ({"topic": "orders", "action": "withdraw", "source": "x"}, 422, "system_topic"),
    ({"topic": ["news"], "action": "grant", "source": "x"}, 422, "validation_error"),
])
def test_bad_consents_are_refused_and_change_nothing(app, api, topics, body, status, code):
    api.put("/contacts/e@example.com", json={})
    before = counts(app)
    response = api.post("/contacts/e@example.com/consents", json=body)
    assert (response.status_code, response.json["error"]["code"]) == (status, code)
    assert counts(app) == before


@pytest.mark.parametrize("email", ["not-an-email", "a@b", "a@@example.com", "a b@example.com"])
def test_invalid_emails_are_refused(app, api, topics, email):
    before = counts(app)
    response = api.put(f"/contacts/{email}", json={"name": "x"})
    assert response.status_code == 422 and response.json["error"]["code"] == "invalid_email"
    assert counts(app) == before


@pytest.mark.parametrize("to", ["not-an-email", "a@@example.com", "a b@example.com"])
def test_a_system_message_to_an_invalid_address_names_the_field_to(app, api, topics, to):
    before = counts(app)
    response = api.post("/messages", json={"topic": "orders", "to": to, "subject": "Order", "text": "Thanks"})
    assert response.status_code == 422
    assert (response.json["error"]["code"], response.json["error"]["field"]) == ("invalid_email", "to")
    assert counts(app) == before


def test_a_method_the_route_does_not_take_is_a_405_that_names_the_allowed_ones(api, topics):
    response = api.patch("/topics/news", json={})
    assert response.status_code == 405 and response.json["error"]["code"] == "method_not_allowed"
    assert {"GET", "PUT"} <= {m.strip() for m in response.headers["Allow"].split(",")}
    assert response.content_type.startswith("application/json")


@pytest.mark.parametrize("body", [
    {"relationship": "friend"}, {"name": 3}, {"locale": "english!"}, {"phone": "1" * 51}, {"shoe_size": 44},
])
def test_bad_contact_fields_are_refused(app, api, body):
    before = counts(app)
    response = api.put("/contacts/f@example.com", json=body)
    assert response.status_code == 422 and "error" in response.json
    assert counts(app) == before


def test_malformed_json_is_a_400(app, api):
    before = counts(app)
    response = api.put("/contacts/g@example.com", data="{not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and response.json["error"]["code"] == "malformed_json"
    response = api.put("/contacts/g@example.com", json=["a", "list"])
    assert response.status_code == 400
    assert counts(app) == before


def test_oversized_body_is_a_413(app, api):
    before = counts(app)
    response = api.put("/contacts/h@example.com", json={"name": "x" * 300_000})
    assert response.status_code == 413 and response.json["error"]["code"] == "payload_too_large"
    assert counts(app) == before


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer pc_wrong", "Basic dXNlcjpwYXNz", "pc_token"])
def test_missing_or_wrong_token_is_a_401(app, client, header):
    before = counts(app)
    headers = {"Authorization": header} if header else {}
    response = client.put("/api/v1/topics/x", json={"name": "X", "kind": "system"}, headers=headers)
    assert response.status_code == 401 and response.json["error"]["code"] == "unauthorized"
    assert counts(app) == before


def test_revoked_tokens_stop_working(app, api, api_token):
    from preference_center import tokens

    assert api.get("/topics").status_code == 200
    with app.app_context():
        assert tokens.revoke("tests")
        db.session.commit()
    assert api.get("/topics").status_code == 401


def test_tokens_are_stored_hashed(app, api_token):
    from preference_center.models import ApiToken

    with app.app_context():
        stored = db.session.scalars(select(ApiToken)).one()
        assert api_token not in (stored.token_hash, stored.prefix)
        assert len(stored.token_hash) == 64


def test_erasing_a_contact_keeps_the_suppression_and_the_chain(app, api, topics):
    api.put("/contacts/erase.me@example.com", json={"name": "Erin", "relationship": "customer"})
    links = api.get("/contacts/erase.me@example.com").json["links"]
    response = api.delete("/contacts/erase.me@example.com")
    assert response.status_code == 200 and response.json["status"] == "erased"
    assert api.get("/contacts/erase.me@example.com").status_code == 404
    assert api.delete("/contacts/erase.me@example.com").status_code == 404
    # A re-import cannot quietly bring them back into marketing.
    again = api.put("/contacts/erase.me@example.com", json={"relationship": "customer"}).json
    assert {s["topic"]: s["reason"] for s in again["subscriptions"]}["tips"] == "suppressed_all"
    with app.app_context():
        assert db.session.scalar(select(func.count(Contact.id)).where(Contact.name == "Erin")) == 0
        assert ledger.verify().ok
    assert path_of(links["preferences"]).startswith("/p/")


def test_unknown_contact_is_a_404(api):
    response = api.get("/contacts/nobody@example.com")
    assert response.status_code == 404 and response.json["error"]["code"] == "not_found"


def test_openapi_describes_every_api_route(app, client):
    doc = client.get("/api/v1/openapi.json").json
    assert doc["openapi"].startswith("3.")
    def shape(path):
        return re.sub(r"\{[^}]*\}|<[^>]*>", "{}", path)

    documented = {(shape(p), m) for p, ops in doc["paths"].items() for m in ops if m != "parameters"}
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/v1/"):
            path = shape(rule.rule.removeprefix("/api/v1"))
            for method in rule.methods - {"HEAD", "OPTIONS"}:
                assert (path, method.lower()) in documented, f"{method} {path} is not in openapi.json"


def test_healthz_reports_database_and_broker(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok", "database": "ok", "broker": "ok"}


@pytest.mark.slow
def test_healthz_reports_an_unreachable_broker(app_config):
    from preference_center import create_app

    app = create_app({**app_config, "PC_BROKER_URL": "redis://127.0.0.1:1/0"})
    response = app.test_client().get("/healthz")
    assert response.status_code == 503 and response.json["broker"].startswith("error")

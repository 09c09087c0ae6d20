"""SPEC section 7, door by door: each invariant is refused at every door with a clear error, and nothing changes."""
from __future__ import annotations

import datetime as dt
import io

import pytest
from sqlalchemy import func, select, text, update

from preference_center import contacts, ledger, links, optouts, retention, rights
from preference_center.extensions import db
from preference_center.models import AuditLog, ConsentEvent, ConsentText, Contact, DataRequest, Suppression

from .helpers import IP, UA, csrf_token, mailed_link, outbox

NEEDS = "needs_confirmation"


# -- helpers --------------------------------------------------------------------------

def counts(app) -> tuple[int, int, int]:
    """(ledger events, audit entries, suppressions): what a refused request must not change."""
    with app.app_context():
        number = lambda model: db.session.scalar(select(func.count()).select_from(model))  # noqa: E731
        return number(ConsentEvent), number(AuditLog), number(Suppression)


def audit_rows(app, after: int = 0) -> list[tuple[str, str, str]]:
    with app.app_context():
        return [(a.actor_kind, a.actor, a.action) for a in db.session.scalars(
            select(AuditLog).where(AuditLog.id > after).order_by(AuditLog.id))]


def last_audit_id(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.max(AuditLog.id))) or 0


def state(api, email: str) -> dict[str, str]:
    return {s["topic"]: s["state"] for s in api.get(f"/contacts/{email}").json["subscriptions"]}


def contact_id(app, email: str) -> int:
    with app.app_context():
        return contacts.find(email).id


def page_token(app, email: str, purpose: str = links.PREFERENCES, argument=0) -> str:
    with app.app_context():
        return links.make(purpose, contacts.find(email), argument)


def person_posts(client, path: str, data: dict | None = None, page: str | None = None):
    """A recipient posts a form of our pages, with the CSRF token of the page they are on."""
    token = csrf_token(client.get(page or path).text)
    return client.post(path, data={"csrf_token": token, **(data or {})},
                       headers={"User-Agent": UA}, environ_base={"REMOTE_ADDR": IP})


def grant(api, email: str, topic: str | None, confirmed: bool = True, **extra):
    body = {"action": "grant", "source": "crm", "confirmed": confirmed, **extra}
    if topic:
        body["topic"] = topic
    return api.post(f"/contacts/{email}/consents", json=body)


@pytest.fixture
def ann(api, topics):
    """A customer subscribed to news (through the API's asserted double opt-in) and, by default, to tips."""
    assert api.put("/contacts/ann@example.com", json={"name": "Ann", "relationship": "customer"}).status_code == 201
    assert grant(api, "ann@example.com", "news").status_code == 201
    assert state(api, "ann@example.com") == {"news": "subscribed", "tips": "subscribed", "orders": "subscribed"}
    return "ann@example.com"


# -- invariant 1: no return to marketing without the person's own confirmation -------

def _object_on_data_page(app, client, email):
    token = page_token(app, email)
    assert person_posts(client, f"/p/{token}/data/object", page=f"/p/{token}/data").status_code == 303


def _unsubscribe_all_on_preference_page(app, client, email):
    token = page_token(app, email)
    assert person_posts(client, f"/p/{token}/unsubscribe-all", page=f"/p/{token}").status_code == 303


def _withdraw_news_on_preference_page(app, client, email):
    token = page_token(app, email)
    assert person_posts(client, f"/p/{token}", {"topics": ["tips"]}, page=f"/p/{token}").status_code == 303


def _one_click_all(app, client, email):
    token = page_token(app, email, links.UNSUBSCRIBE)
    assert client.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"}).status_code == 200
    with app.app_context():
        optouts.settle_all()


def _spam_complaint(app, client, email):
    response = client.post("/webhooks/sendgrid", json=[{"email": email, "event": "spamreport",
                                                        "sg_event_id": f"spam-{email}", "timestamp": 1700000000}])
    assert response.status_code in (200, 202)
    from preference_center import feedback

    with app.app_context():
        feedback.process(feedback.stale_event_ids(older_than=dt.timedelta(0)))


STOPS = {
    "objection on the data page": (_object_on_data_page, None),
    "unsubscribe from all on the preference page": (_unsubscribe_all_on_preference_page, None),
    "one-click from all marketing": (_one_click_all, None),
    "spam complaint": (_spam_complaint, None),
    "withdrawal from the topic": (_withdraw_news_on_preference_page, "news"),
}


@pytest.mark.parametrize("stop, topic", [(stop, topic) for stop, (_, only) in STOPS.items()
                                         for topic in ("news", None) if not (only and topic is None)])
def test_an_api_client_cannot_assert_a_return_to_marketing(app, client, api, ann, stop, topic):
    do, _ = STOPS[stop]
    do(app, client, ann)
    before, sent = state(api, ann), counts(app)
    response = grant(api, ann, topic)
    assert response.status_code == 409
    assert response.json["error"]["code"] == NEEDS
    assert counts(app) == sent and state(api, ann) == before
    assert state(api, ann)["news"] == "unsubscribed"


def test_an_erased_address_added_again_stays_blocked_until_the_person_confirms(app, client, api, topics, ann):
    assert api.delete(f"/contacts/{ann}").status_code == 200
    assert api.put(f"/contacts/{ann}", json={"relationship": "customer"}).status_code == 201
    assert state(api, ann) == {"news": "unsubscribed", "tips": "unsubscribed", "orders": "unsubscribed"}
    refused = grant(api, ann, "news")
    assert refused.status_code == 409 and refused.json["error"]["code"] == NEEDS
    # Asking is allowed: a pending grant, and the confirmation mail goes to the address.
    assert grant(api, ann, "news", confirmed=False).status_code == 201
    assert state(api, ann)["news"] == "unsubscribed"
    link = mailed_link(app, ann)
    assert link.startswith("/confirm/")
    assert person_posts(client, link).status_code == 200
    assert state(api, ann)["news"] == "subscribed"


def test_the_person_confirming_the_mailed_link_returns_after_an_objection(app, client, api, ann):
    _object_on_data_page(app, client, ann)
    assert grant(api, ann, None, confirmed=False).status_code == 201
    assert grant(api, ann, "news", confirmed=False).status_code == 201
    assert state(api, ann)["news"] == "unsubscribed"
    assert person_posts(client, mailed_link(app, ann)).status_code == 200
    assert state(api, ann)["news"] == "subscribed"


def test_the_person_may_come_back_on_their_own_preference_page(app, client, api, ann):
    _unsubscribe_all_on_preference_page(app, client, ann)
    assert state(api, ann)["news"] == "unsubscribed"
    token = page_token(app, ann)
    assert person_posts(client, f"/p/{token}", {"topics": ["news"]}).status_code == 303
    assert state(api, ann)["news"] == "subscribed"
    # ...after which an API client's asserted grant is accepted again (nothing stands in the way).
    assert grant(api, ann, None).status_code == 201


def test_an_asserted_grant_for_an_address_without_history_is_recorded_as_the_clients(app, api, topics):
    response = grant(api, "new@example.com", "news", ip="198.51.100.4")
    assert response.status_code == 201
    assert response.json["event"]["source"] == "api:tests:crm" and response.json["event"]["confirmed"] is True
    assert state(api, "new@example.com")["news"] == "subscribed"


def test_a_provider_resubscribe_after_the_persons_withdrawal_only_asks_the_person(app, client, api, ann):
    assert api.put("/topics/news", json={"sendgrid_group_id": 42}).status_code == 200
    _withdraw_news_on_preference_page(app, client, ann)
    mails = len(outbox(app))
    client.post("/webhooks/sendgrid", json=[{"email": ann, "event": "group_resubscribe", "asm_group_id": 42,
                                              "sg_event_id": "resub-1", "timestamp": 1700000001}])
    from preference_center import feedback

    with app.app_context():
        feedback.process(feedback.stale_event_ids(older_than=dt.timedelta(0)))
    assert state(api, ann)["news"] == "unsubscribed"
    assert len(outbox(app)) == mails + 1 and mailed_link(app, ann).startswith("/confirm/")


def test_a_staff_member_lifting_a_complaint_does_not_bring_marketing_back(app, client, api, ann, as_admin):
    _spam_complaint(app, client, ann)
    cid = contact_id(app, ann)
    response = as_admin.post(f"/admin/contacts/{cid}/lift-suppression", {"scope": "marketing", "why": "asked by phone"})
    assert response.status_code in (302, 303)
    assert state(api, ann)["news"] == "unsubscribed" and state(api, ann)["tips"] == "unsubscribed"


def test_an_import_cannot_resubscribe_anyone_with_a_stop(app, client, api, ann, as_admin):
    _withdraw_news_on_preference_page(app, client, ann)
    api.put("/contacts/bob@example.com", json={"relationship": "customer"})
    _object_on_data_page(app, client, "bob@example.com")
    csv = "email,name\nann@example.com,Ann\nbob@example.com,Bob\n"
    as_admin.post("/admin/imports", {"file": (io.BytesIO(csv.encode()), "c.csv")}, content_type="multipart/form-data")
    with app.app_context():
        from preference_center.imports import jobs

        job_id = jobs()[0].id
    as_admin.post(f"/admin/imports/{job_id}/preview", {
        "has_header": "y", "map_email": "0", "map_name": "1", "legal_basis": "consent", "source_text": "fair",
        "topic": "news", "consent_collected": "y", "confirmed_opt_in": "y"})
    as_admin.post(f"/admin/imports/{job_id}/run")
    assert state(api, ann)["news"] == "unsubscribed"
    assert state(api, "bob@example.com")["news"] == "unsubscribed"


# -- invariant 2: legitimate interest reaches customers only; marketing bases ---------

@pytest.mark.parametrize("relationships", [["prospect"], ["customer", "partner"], ["supplier"], ["candidate"]])
def test_legitimate_interest_beyond_customers_is_refused_by_the_api(app, api, topics, relationships):
    sent = counts(app)
    response = api.put("/topics/tips", json={"default_relationships": relationships})
    assert response.status_code == 422 and response.json["error"]["field"] == "default_relationships"
    response = api.put("/topics/more", json={"name": "More", "kind": "marketing",
                                             "legal_basis": "legitimate_interest",
                                             "default_relationships": relationships})
    assert response.status_code == 422
    assert counts(app) == sent
    assert api.get("/topics/more").status_code == 404


@pytest.mark.parametrize("topic", ["news", None])
@pytest.mark.parametrize("confirmed", [True, False])
def test_a_grant_cannot_claim_legitimate_interest_on_consent_or_all_marketing(app, api, topics, topic, confirmed):
    assert api.put("/contacts/lee@example.com", json={"relationship": "customer"}).status_code == 201
    before, sent = state(api, "lee@example.com"), counts(app)
    response = grant(api, "lee@example.com", topic, confirmed=confirmed, legal_basis="legitimate_interest")
    assert response.status_code == 422 and response.json["error"]["field"] == "legal_basis"
    assert state(api, "lee@example.com") == before and counts(app) == sent
    # On a topic whose own basis is legitimate interest, the grant may name it.
    assert grant(api, "lee@example.com", "tips", legal_basis="legitimate_interest").status_code in (200, 201)


def test_legitimate_interest_beyond_customers_is_refused_by_the_staff_pages(app, as_admin, topics):
    response = as_admin.post("/admin/topics/new", {"key": "promo", "name": "Promo", "kind": "marketing",
                                                   "legal_basis": "legitimate_interest",
                                                   "default_relationships": ["prospect"]})
    assert response.status_code == 422
    with app.app_context():
        from preference_center import topics as topic_rules

        assert topic_rules.get("promo") is None


def test_a_stored_topic_naming_prospects_still_reaches_only_customers(app, api, topics):
    with app.app_context():
        db.session.execute(text("UPDATE topics SET default_relationships = :r WHERE key = 'tips'"),
                           {"r": '["customer", "prospect"]'})
        db.session.commit()
    api.put("/contacts/pat@example.com", json={"relationship": "prospect"})
    assert state(api, "pat@example.com")["tips"] == "unsubscribed"


def test_a_marketing_grant_on_the_contract_basis_is_refused(app, api, topics):
    response = grant(api, "c@example.com", "news", legal_basis="contract")
    assert response.status_code == 422 and response.json["error"]["field"] == "legal_basis"
    response = api.post("/contacts/c@example.com/consents", json={"topic": "orders", "action": "grant",
                                                                  "source": "x"})
    assert response.status_code == 422


# -- invariant 3: data requests end by doing them, by a refusal, or extended once -----

def open_request(app, email: str, kind: str, received: dt.datetime | None = None) -> int:
    with app.app_context():
        request = rights.open_request(contacts.find(email), kind, received=received)
        db.session.commit()
        return request.id


def test_completing_an_erasure_request_erases_the_contact(app, api, ann, as_admin):
    request_id = open_request(app, ann, "erasure")
    response = as_admin.post(f"/admin/requests/{request_id}/complete")
    assert response.status_code in (302, 303)
    with app.app_context():
        request = db.session.get(DataRequest, request_id)
        contact = db.session.get(Contact, request.contact_id)
        assert (request.status, contact.status, contact.email) == ("completed", "erased", None)


def test_an_access_request_cannot_be_marked_done_without_the_copy(app, api, ann, as_admin):
    request_id = open_request(app, ann, "portability")
    as_admin.post(f"/admin/requests/{request_id}/complete")
    with app.app_context():
        assert db.session.get(DataRequest, request_id).status == "open"
    # Sending the link again keeps it open; the person's download completes it.
    as_admin.post(f"/admin/requests/{request_id}/resend")
    with app.app_context():
        assert db.session.get(DataRequest, request_id).status == "open"


def test_a_refusal_needs_a_reason_that_the_person_is_shown_and_mailed(app, client, api, ann, as_admin):
    request_id = open_request(app, ann, "erasure")
    sent = counts(app)
    assert as_admin.post(f"/admin/requests/{request_id}/refuse", {"reason": "  "}).status_code == 422
    assert counts(app) == sent
    mails = len(outbox(app))
    assert as_admin.post(f"/admin/requests/{request_id}/refuse",
                         {"reason": "We must keep invoices for 10 years"}).status_code in (302, 303)
    with app.app_context():
        request = db.session.get(DataRequest, request_id)
        assert (request.status, request.refusal_reason) == ("refused", "We must keep invoices for 10 years")
    assert len(outbox(app)) == mails + 1
    token = page_token(app, ann)
    assert "We must keep invoices for 10 years" in client.get(f"/p/{token}/data").text


def test_a_deadline_is_extended_once_by_at_most_two_months_with_a_reason(app, api, ann, as_admin):
    request_id = open_request(app, ann, "portability",
                              received=dt.datetime(2026, 1, 31, 12, tzinfo=dt.UTC))
    with app.app_context():
        assert db.session.get(DataRequest, request_id).due_at.date() == dt.date(2026, 2, 28)
    assert as_admin.post(f"/admin/requests/{request_id}/extend", {"months": "3", "reason": "x"}).status_code == 422
    assert as_admin.post(f"/admin/requests/{request_id}/extend", {"months": "2", "reason": ""}).status_code == 422
    assert as_admin.post(f"/admin/requests/{request_id}/extend",
                         {"months": "2", "reason": "Many archives to search"}).status_code in (302, 303)
    assert as_admin.post(f"/admin/requests/{request_id}/extend",
                         {"months": "1", "reason": "Still searching"}).status_code == 409
    with app.app_context():
        request = db.session.get(DataRequest, request_id)
        assert request.due_at.date() == dt.date(2026, 4, 28)
        assert request.extension_reason == "Many archives to search" and request.status == "open"


def test_a_leap_year_deadline_is_the_29th_of_february(app, api, ann):
    request_id = open_request(app, ann, "access", received=dt.datetime(2028, 1, 31, tzinfo=dt.UTC))
    with app.app_context():
        assert db.session.get(DataRequest, request_id).due_at.date() == dt.date(2028, 2, 29)


def test_a_marketer_cannot_end_a_data_request(app, api, ann, as_marketer):
    request_id = open_request(app, ann, "erasure")
    assert as_marketer.post(f"/admin/requests/{request_id}/complete").status_code == 403
    with app.app_context():
        assert db.session.get(DataRequest, request_id).status == "open"


# -- invariant 4: consent wordings are immutable, published versions -----------------

def test_staff_publish_a_wording_and_the_ledger_reports_it_changed_behind_our_back(app, client, api, topics,
                                                                                   as_admin):
    response = as_admin.post("/admin/consent-texts", {"locale": "en", "version": "7",
                                                      "text": "Yes, email me news. I can unsubscribe any time."})
    assert response.status_code in (302, 303)
    again = as_admin.post("/admin/consent-texts", {"locale": "en", "version": "7", "text": "Something else"})
    assert again.status_code == 409
    page = client.get("/subscribe")
    assert "Yes, email me news." in page.text
    assert grant(api, "w@example.com", "news", consent_text_version="7").json["event"]["consent_text_version"] == "7"
    with app.app_context():
        assert ledger.verify().ok
        wording = db.session.scalar(select(ConsentText).where(ConsentText.version == "7"))
        wording.text = "Changed through the ORM"
        with pytest.raises(ValueError, match="cannot change"):
            db.session.flush()
        db.session.rollback()
        db.session.execute(update(ConsentText).where(ConsentText.version == "7").values(text="Edited with SQL"))
        db.session.commit()
        result = ledger.verify()
        assert not result.ok and any("wording" in p for p in result.problems)


# -- invariant 5: one audit entry of one shape, whichever door -----------------------

def test_every_door_writes_one_audit_entry_of_one_shape(app, client, api, topics, runner):
    start = last_audit_id(app)
    api.put("/contacts/eve@example.com", json={"relationship": "customer"})
    assert [kind for kind, _, _ in audit_rows(app, start)] == ["api"]
    start = last_audit_id(app)
    token = page_token(app, "eve@example.com")
    assert person_posts(client, f"/p/{token}", {"topics": []}).status_code == 303  # drops tips
    assert audit_rows(app, start) == [("link", "link:preferences-page", "preferences.save")]
    start = last_audit_id(app)
    _one_click_all(app, client, "eve@example.com")
    assert audit_rows(app, start) == [("link", "link:one-click", "consent.withdraw")]
    api.put("/contacts/fay@example.com", json={"relationship": "customer"})
    start = last_audit_id(app)
    _spam_complaint(app, client, "fay@example.com")
    assert {kind for kind, _, _ in audit_rows(app, start)} == {"webhook"}
    start = last_audit_id(app)
    result = runner.invoke(args=["create-token", "ops"])
    assert result.exit_code == 0
    assert audit_rows(app, start) == [("cli", "cli", "token.create")]
    with app.app_context():
        db.session.execute(update(Contact).values(relationship="prospect",
                                                  last_interaction_at=dt.datetime(2000, 1, 1, tzinfo=dt.UTC)))
        db.session.commit()
    start = last_audit_id(app)
    with app.app_context():
        retention.apply()
    assert audit_rows(app, start) == [("system", "system:retention", "contact.erase")] * 2  # eve and fay


def test_a_refused_request_writes_no_audit_entry(app, api, topics):
    sent = counts(app)
    assert api.put("/topics/bad", json={"name": "Bad", "kind": "marketing", "legal_basis": "contract"}
                   ).status_code == 422
    assert grant(api, "x@example.com", "nope").status_code == 422
    assert counts(app) == sent



def test_staff_may_ask_and_only_the_persons_confirmation_brings_them_back(app, client, api, ann, as_marketer):
    _object_on_data_page(app, client, ann)
    cid = contact_id(app, ann)
    sent = counts(app)
    response = as_marketer.post(f"/admin/contacts/{cid}/ask", {"topic": "news"})
    assert response.status_code == 303
    events, audits, _ = counts(app)
    assert (events, audits) == (sent[0] + 1, sent[1] + 1)  # one unconfirmed grant, one audit entry
    assert state(api, ann)["news"] == "unsubscribed"
    link = mailed_link(app, ann)
    assert link.startswith("/confirm/") and person_posts(client, link).status_code == 200
    assert state(api, ann)["news"] == "subscribed"

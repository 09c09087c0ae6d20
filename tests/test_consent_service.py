"""Consent as a service, ask and poll: eligibility answers the send-time rule; the change feed is the ledger."""
from __future__ import annotations

import random
import threading
import time

import pytest
from sqlalchemy import select

from preference_center import change_feed, ledger, links, rules
from preference_center.extensions import db
from preference_center.models import ConsentEvent, Contact, Topic

from .helpers import IP, UA, grant, make_contact, token, topic_id

ONE_CLICK = {"List-Unsubscribe": "One-Click"}


def one_click(app, contact_id: int, topic_key: str | None):
    argument = topic_id(app, topic_key) if topic_key else 0
    gmail = app.test_client(use_cookies=False)
    response = gmail.post(f"/u/{token(app, links.UNSUBSCRIBE, contact_id, argument)}", data=ONE_CLICK,
                          environ_base={"REMOTE_ADDR": IP}, headers={"User-Agent": UA})
    assert response.status_code == 200


def ask(api, email: str, topic: str):
    return api.get("/eligibility", query_string={"email": email, "topic": topic})


# -- eligibility ----------------------------------------------------------------------------

def test_eligibility_answers_send_with_the_authorising_event(app, api, topics):
    ann = make_contact(app, "ann@example.com")
    grant(app, ann, "news")
    answer = ask(api, "Ann@Example.com", "news")
    assert answer.status_code == 200, answer.json
    with app.app_context():
        event_id = db.session.scalar(select(ConsentEvent.id).where(ConsentEvent.contact_id == ann)
                                     .order_by(ConsentEvent.id.desc()).limit(1))
    assert answer.json == {"email": "Ann@Example.com", "topic": "news", "send": True, "reason": "consent",
                           "event_id": event_id}


def test_a_one_click_opt_out_not_yet_settled_already_says_no(app, api, topics):
    ann = make_contact(app, "ann@example.com")
    grant(app, ann, "news")
    one_click(app, ann, "news")  # taken into the inbox; no worker has settled it
    answer = ask(api, "ann@example.com", "news").json
    assert (answer["send"], answer["reason"], answer["event_id"]) == (False, "unsubscribed", None)


def test_unknown_addresses_are_asked_of_the_rule_too(app, api, topics):
    assert ask(api, "nobody@example.com", "news").json["reason"] == "no_consent"
    system = ask(api, "nobody@example.com", "orders").json
    assert (system["send"], system["reason"]) == (True, "contract")


def test_an_erased_address_stays_blocked_even_for_system_mail(app, api, topics):
    make_contact(app, "gone@example.com")
    assert api.delete("/contacts/gone@example.com").status_code == 200
    for topic in ("news", "orders"):
        answer = ask(api, "gone@example.com", topic).json
        assert (answer["send"], answer["reason"]) == (False, "suppressed_all")


def test_unknown_topics_and_bad_addresses_are_a_422_naming_the_field(app, api, topics):
    for response, field in [
        (ask(api, "ann@example.com", "nope"), "topic"),
        (ask(api, "not-an-address", "news"), "email"),
        (api.get("/eligibility", query_string={"email": "ann@example.com"}), "topic"),
        (api.get("/eligibility?email=a@example.com&email=b@example.com&topic=news"), "email"),
        (api.get("/eligibility", query_string={"email": "a@example.com", "topic": "news", "x": "1"}), "x"),
        (api.post("/eligibility", json={"topic": "nope", "emails": ["a@example.com"]}), "topic"),
        (api.post("/eligibility", json={"topic": "news", "emails": ["a@example.com", "bad"]}), "emails"),
        (api.post("/eligibility", json={"topic": "news", "emails": []}), "emails"),
        (api.post("/eligibility", json={"topic": "news", "emails": ["a@example.com"] * 1001}), "emails"),
    ]:
        assert response.status_code == 422, response.json
        assert response.json["error"]["field"] == field, response.json
    bad = api.post("/eligibility", json={"topic": "news", "emails": ["a@example.com", "bad"]}).json
    assert "emails[1]" in bad["error"]["message"]


def test_bulk_eligibility_agrees_with_the_send_time_recheck_for_everyone(app, api, topics):
    rng = random.Random(15)
    emails = [f"p{i}@example.com" for i in range(60)]
    for email in emails[:50]:
        relationship = rng.choice(["customer", "prospect", "partner"])
        assert api.put(f"/contacts/{email}", json={"relationship": relationship}).status_code in (200, 201)
        choice = rng.random()
        if choice < 0.3:
            api.post(f"/contacts/{email}/consents", json={"topic": "news", "action": "grant", "source": "t",
                                                          "confirmed": True})
        elif choice < 0.4:
            api.post(f"/contacts/{email}/consents", json={"action": "withdraw", "source": "t"})
        elif choice < 0.5:
            api.post(f"/contacts/{email}/consents", json={"topic": "tips", "action": "withdraw", "source": "t"})
        elif choice < 0.55:
            api.delete(f"/contacts/{email}")
    for key in topics:
        answers = api.post("/eligibility", json={"topic": key, "emails": emails}).json["results"]
        assert [a["email"] for a in answers] == emails
        with app.app_context():
            topic = db.session.scalar(select(Topic).where(Topic.key == key))
            people = dict(db.session.execute(select(Contact.email, Contact.id)).all())
            decided = rules.decide(topic, list(people.values()))
            if topic.kind == "marketing":
                audience = {r.email for chunk in rules.audience(topic) for r in chunk}
        for answer in answers:
            if answer["email"] in people:
                expected = decided[people[answer["email"]]][1]
                assert (answer["send"], answer["reason"], answer["event_id"]) == \
                    (expected.send, expected.reason, expected.event_id)
            if topic.kind == "marketing":
                assert answer["send"] == (answer["email"] in audience)


# -- the change feed -----------------------------------------------------------------------------

def read_feed(api, after: str | None = None, limit: int = 3) -> tuple[list[dict], str]:
    seen = []
    while True:
        query = {"limit": limit} | ({"after": after} if after is not None else {})
        page = api.get("/events", query_string=query)
        assert page.status_code == 200, page.json
        seen += page.json["events"]
        if page.json["next"] == (after or "0") and not page.json["events"]:
            return seen, after or "0"
        after = page.json["next"]


def test_the_feed_is_the_ledger_once_in_order_without_ip_or_user_agent(app, api, topics):
    ann = make_contact(app, "ann@example.com")
    grant(app, ann, "news")
    one_click(app, ann, "news")
    api.post("/contacts/bob@example.com/consents", json={"topic": "news", "action": "grant", "source": "form",
                                                         "ip": "198.51.100.9", "user_agent": "Secret/1.0"})
    first, cursor = read_feed(api)
    with app.app_context():
        ids = db.session.scalars(select(ConsentEvent.id).order_by(ConsentEvent.id)).all()
    assert [e["id"] for e in first] == ids and ids
    text = str(first)
    assert "198.51.100.9" not in text and "Secret/1.0" not in text and IP not in text
    types = [e["type"] for e in first]
    assert {"consent.granted", "consent.withdrawn", "consent.requested"} <= set(types)
    withdrawn = next(e for e in first if e["type"] == "consent.withdrawn")
    assert (withdrawn["email"], withdrawn["topic"]) == ("ann@example.com", "news")
    # A consumer restarting from its cursor sees only what is new, once.
    again, same = read_feed(api, cursor)
    assert again == [] and same == cursor
    api.post("/contacts/ann@example.com/consents", json={"action": "withdraw", "source": "call"})
    new, _ = read_feed(api, cursor)
    assert [(e["type"], e["topic"], e.get("suppression_scope")) for e in new] == [
        ("consent.withdrawn", None, None), ("suppression.added", None, "marketing")]
    assert all(e["id"] > int(cursor) for e in new)


def test_the_address_is_null_in_the_feed_once_erased(app, api, topics):
    make_contact(app, "ann@example.com")
    api.post("/contacts/ann@example.com/consents", json={"topic": "news", "action": "grant", "source": "f",
                                                         "confirmed": True})
    api.delete("/contacts/ann@example.com")
    events, _ = read_feed(api, limit=100)
    assert events and all(e["email"] is None for e in events)
    assert [e["type"] for e in events][-2:] == ["contact.erased", "suppression.added"]
    assert "ann@example.com" not in str(events)


def test_bad_cursors_and_limits_are_a_422(app, api, topics):
    for query, field in [({"after": "abc"}, "after"), ({"after": "-1"}, "after"), ({"after": str(2**63)}, "after"), ({"after": "9" * 19}, "after"),
                         ({"limit": "0"}, "limit"),
                         ({"limit": "1001"}, "limit"), ({"limit": "x"}, "limit")]:
        response = api.get("/events", query_string=query)
        assert response.status_code == 422 and response.json["error"]["field"] == field, (query, response.json)


def test_a_page_stops_at_a_missing_id_so_nothing_is_ever_skipped(ctx):
    # An event id that is not visible yet (as if its transaction had not committed) holds the page there.
    contact = Contact(email="x@example.com", email_hash="h", relationship="customer", status="active")
    db.session.add(contact)
    db.session.flush()
    for _ in range(3):
        ledger.append(ledger.RELATIONSHIP, contact=contact, scope=ledger.CONTACT, source="t",
                      detail={"relationship": "customer"})
    db.session.commit()
    db.session.execute(ConsentEvent.__table__.delete().where(ConsentEvent.id == 2))
    page = change_feed.page(0, 10)
    assert [e["id"] for e in page.events] == [1] and page.next == "1"
    db.session.rollback()


@pytest.mark.slow
def test_a_reader_polling_while_writers_commit_concurrently_sees_every_event_once(app, api, topics):
    emails = [f"w{i}@example.com" for i in range(4)]
    for email in emails:
        make_contact(app, email)
    seen, done, errors = [], threading.Event(), []

    def writer(email):
        try:
            with app.app_context():
                contact = db.session.scalar(select(Contact).where(Contact.email == email))
                for _ in range(15):
                    ledger.append(ledger.RELATIONSHIP, contact=contact, scope=ledger.CONTACT, source="t",
                                  detail={"relationship": "customer"})
                    time.sleep(0.003)  # the transaction stays open after taking its id
                    db.session.commit()
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def reader():
        cursor = "0"
        with app.app_context():
            while True:
                finished = done.is_set()
                page = change_feed.page(int(cursor), 5)
                db.session.rollback()
                seen.extend(e["id"] for e in page.events)
                cursor = page.next
                if finished and not page.events:
                    return

    threads = [threading.Thread(target=writer, args=(e,)) for e in emails]
    polling = threading.Thread(target=reader)
    polling.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    polling.join(30)
    assert errors == []
    with app.app_context():
        everything = db.session.scalars(select(ConsentEvent.id).order_by(ConsentEvent.id)).all()
    assert seen == everything and len(everything) >= 60

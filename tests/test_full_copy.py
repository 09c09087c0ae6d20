"""Done when: a second system keeps a full copy of consent state from the change feed alone, or from the
webhooks alone. Both copies are replayed into dictionaries and asked the sending rule (`rules.may_send`) for
every (contact, topic); the answers must be the service's own, event ids included."""
from __future__ import annotations

import random
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from preference_center import actors, change_feed, rules, tokens
from preference_center.commands import consent, people
from preference_center.extensions import db
from preference_center.models import Contact, Topic
from preference_center.outbound import delivery

from .helpers import Api, settle
from .webhook_receiver import Receiver


class Mirror:
    """What a consumer keeps: per contact id, the facts the sending rule reads, folded from change events."""

    def __init__(self):
        self.people: dict[int, dict] = {}

    def person(self, contact_id: int) -> dict:
        return self.people.setdefault(contact_id, {
            "status": "active", "relationship": "prospect", "relationship_event_id": None,
            "marketing_opt_out_event_id": None, "topics": {}, "suppressions": {}})

    def apply(self, e: dict) -> None:
        """One change, in the order received (per contact, that is ledger order)."""
        if e["contact_id"] is None:
            return
        p = self.person(e["contact_id"])
        kind, topic, scope = e["type"], e["topic"], e["scope"]
        current = p["topics"].get(topic, (None, None))[0]
        if scope == "topic" and topic is not None:
            if kind == change_feed.CONSENT_GRANTED:
                p["topics"][topic] = ("subscribed", e["id"])
            elif kind == change_feed.CONSENT_REQUESTED and current != "subscribed":
                p["topics"][topic] = ("pending", e["id"])
            elif kind in (change_feed.CONSENT_WITHDRAWN, change_feed.CONTACT_OBJECTED):
                p["topics"][topic] = ("unsubscribed", e["id"])
        elif scope == "all_marketing":
            if kind in (change_feed.CONSENT_WITHDRAWN, change_feed.CONTACT_OBJECTED):
                p["marketing_opt_out_event_id"] = e["id"]
            elif kind == change_feed.CONSENT_GRANTED:
                # The person's own confirmation ends the opt-out and lifts the suppression it made.
                p["marketing_opt_out_event_id"] = None
                p["suppressions"] = {s: r for s, r in p["suppressions"].items() if r not in ("opt_out", "erased")}
        if kind == change_feed.CONTACT_RELATIONSHIP:
            p["relationship"], p["relationship_event_id"] = e["relationship"], e["id"]
        elif kind == change_feed.CONTACT_RESTRICTED and p["status"] != "erased":
            p["status"] = "restricted"
        elif kind == change_feed.CONTACT_RESTRICTION_LIFTED and p["status"] != "erased":
            p["status"] = "active"
        elif kind == change_feed.CONTACT_ERASED:
            p["status"] = "erased"
        elif kind == change_feed.SUPPRESSION_ADDED:
            p["suppressions"].setdefault(e["suppression_scope"], e["suppression_reason"])
        elif kind == change_feed.SUPPRESSION_LIFTED:
            p["suppressions"].pop(e["suppression_scope"], None)

    def decide(self, topic: dict, contact_id: int) -> tuple:
        p = self.person(contact_id)
        facts = SimpleNamespace(status=p["status"], relationship=p["relationship"],
                                relationship_event_id=p["relationship_event_id"],
                                marketing_opt_out_event_id=p["marketing_opt_out_event_id"])
        state = p["topics"].get(topic["key"])
        sub = SimpleNamespace(state=state[0], event_id=state[1]) if state else None
        decision = rules.may_send(SimpleNamespace(**topic), facts, sub, set(p["suppressions"]))
        return decision.send, decision.reason, decision.event_id


def churn(app, api, rng: random.Random, emails: list[str], steps: int, erased: set[str]) -> None:
    """Random changes through every kind of door: the API, the person's own pages, staff, one-click.

    An erased address is never used again: a new contact for it would be another contact id, whose fresh
    consent lifts the address's erasure block without a change of the old contact's (see docs/integration.md).
    """
    for _ in range(steps):
        email = rng.choice([e for e in emails if e not in erased])
        roll = rng.random()
        if roll < 0.12:
            api.put(f"/contacts/{email}", json={"relationship": rng.choice(["customer", "prospect", "partner"])})
        elif roll < 0.32:
            api.post(f"/contacts/{email}/consents", json={"topic": rng.choice(["news", "tips"]), "action": "grant",
                                                          "source": "crm", "confirmed": rng.random() < 0.7})
        elif roll < 0.44:
            topic = rng.choice(["news", "tips", None])
            api.post(f"/contacts/{email}/consents", json={"action": "withdraw", "source": "crm"}
                     | ({"topic": topic} if topic else {}))
        elif roll < 0.52:
            api.post(f"/contacts/{email}/consents", json={"action": "grant", "source": "crm", "confirmed": False})
        else:
            with app.app_context():
                contact = people.find(email)
                if contact is None:
                    continue
                staff = actors.staff("boss@example.com")
                try:
                    if roll < 0.60:
                        people.restrict(staff, contact)
                    elif roll < 0.67:
                        people.lift_restriction(staff, contact)
                    elif roll < 0.72:
                        people.object_to_marketing(staff, contact)
                    elif roll < 0.74:
                        people.suppress(actors.Actor(actors.ActorKind.WEBHOOK, "sendgrid"),
                                        "all" if rng.random() < 0.3 else "marketing",
                                        rng.choice(["hard_bounce", "spam"]), contact=contact)
                    elif roll < 0.90:
                        # The person confirms on their own page: the only way back after an opt-out.
                        topic = db.session.scalar(select(Topic).where(Topic.key == rng.choice(["news", "tips"])))
                        consent.grant(actors.link("preferences-page"), contact,
                                      topic if rng.random() < 0.5 else None, confirmed=True)
                    elif roll < 0.98:
                        consent.withdraw(actors.link("one-click"), contact, None)
                    else:
                        people.erase(staff, contact)
                        erased.add(email)
                except Exception as exc:  # noqa: BLE001 - a refusal (DomainError) changes nothing
                    db.session.rollback()
                    assert type(exc).__name__ == "DomainError", exc
                else:
                    db.session.commit()


def truth(app) -> tuple[list[dict], dict[tuple[int, str], tuple]]:
    settle(app)
    with app.app_context():
        topics = db.session.scalars(select(Topic)).all()
        ids = db.session.scalars(select(Contact.id)).all()
        answers = {}
        for topic in topics:
            for contact_id, (_, decision) in rules.decide(topic, ids).items():
                answers[(contact_id, topic.key)] = (decision.send, decision.reason, decision.event_id)
        shown = [{"key": t.key, "kind": t.kind, "legal_basis": t.legal_basis,
                  "default_relationships": t.default_relationships, "retired": t.retired} for t in topics]
        return shown, answers


@pytest.fixture
def app_config(app_config):
    return {**app_config, "PC_WEBHOOK_ALLOW_PRIVATE": True, "PC_WEBHOOK_TIMEOUT_SECONDS": 1.0}


@pytest.mark.parametrize("seed", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_a_second_system_keeps_a_full_copy_from_the_feed_or_the_webhooks_alone(app, client, api, topics, seed):
    receiver = Receiver()
    try:
        with app.app_context():
            _, admin_token = tokens.create("ops", admin=True)
            db.session.commit()
        hook = Api(client, admin_token).put("/webhooks/copy", json={"url": receiver.url,
                                                                    "events": list(change_feed.LEDGER_TYPES)})
        receiver.secret = hook.json["secret"]
        rng = random.Random(seed)
        emails = [f"p{i}@example.com" for i in range(20)]
        feed_copy, hook_copy, cursor, erased = Mirror(), Mirror(), None, set()
        for _ in range(3):  # the consumers catch up between bursts of changes, as real ones do
            churn(app, api, rng, emails, 50, erased)
            while True:
                page = api.get("/events", query_string={"limit": 7} | ({"after": cursor} if cursor else {})).json
                for event in page["events"]:
                    feed_copy.apply(event)
                if not page["events"]:
                    break
                cursor = page["next"]
            with app.app_context():
                delivery.run()
        for payload in receiver.payloads():
            hook_copy.apply(payload["data"])
        topic_facts, answers = truth(app)
        assert len(answers) == 3 * len({c for c, _ in answers}) >= 3 * 15
        assert len({a[1] for a in answers.values()}) >= 6, "the churn reached most of the rule's branches"
        sends = sum(1 for a in answers.values() if a[0])
        assert 0 < sends < len(answers), "the churn left a mix of yes and no"
        for copy in (feed_copy, hook_copy):
            for topic in topic_facts:
                for (contact_id, key), expected in answers.items():
                    if key == topic["key"]:
                        assert copy.decide(topic, contact_id) == expected, (contact_id, key, copy.people[contact_id])
        assert receiver.refused == []
    finally:
        receiver.close()

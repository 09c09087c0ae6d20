"""The sending rule (SPEC section 3) and the audience query built from it."""
from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete

from preference_center import rules
from preference_center.extensions import db
from preference_center.models import Contact, Subscription, Suppression

from .helpers import factories


@dataclass
class T:
    kind: str = "marketing"
    legal_basis: str = "consent"
    default_relationships: list = field(default_factory=list)
    retired: bool = False


@dataclass
class C:
    status: str = "active"
    relationship: str = "prospect"
    marketing_opt_out_event_id: int | None = None
    relationship_event_id: int | None = 1


@dataclass
class S:
    state: str
    event_id: int = 99


CONSENT = T()
LI = T(legal_basis="legitimate_interest", default_relationships=["customer"])
SYSTEM = T(kind="system", legal_basis="contract")


# The SPEC table, row by row.
@pytest.mark.parametrize("topic, contact, sub, suppressed, send, reason", [
    (CONSENT, C(), S("subscribed"), {"all"}, False, "suppressed_all"),
    (SYSTEM, C(), None, {"all"}, False, "suppressed_all"),
    (CONSENT, C(), S("subscribed"), {"marketing"}, False, "suppressed_marketing"),
    (SYSTEM, C(), None, {"marketing"}, True, "contract"),
    (CONSENT, C(status="restricted"), S("subscribed"), (), False, "restricted"),
    (SYSTEM, C(status="restricted"), None, (), True, "contract"),
    (CONSENT, C(marketing_opt_out_event_id=5), S("subscribed"), (), False, "opted_out_all"),
    (LI, C(relationship="customer", marketing_opt_out_event_id=5), None, (), False, "opted_out_all"),
    (SYSTEM, C(marketing_opt_out_event_id=5), None, (), True, "contract"),
    (LI, C(relationship="customer"), S("unsubscribed"), (), False, "unsubscribed"),
    (SYSTEM, C(), S("unsubscribed"), (), True, "contract"),
    (CONSENT, C(), S("subscribed"), (), True, "consent"),
    (CONSENT, C(), None, (), False, "no_consent"),
    (CONSENT, C(), S("pending"), (), False, "unconfirmed"),
    (CONSENT, C(), S("unsubscribed"), (), False, "unsubscribed"),
    (LI, C(relationship="customer"), None, (), True, "legitimate_interest"),
    (LI, C(relationship="prospect"), None, (), False, "relationship_not_covered"),
    (LI, C(relationship="prospect"), S("subscribed"), (), True, "consent"),
    (SYSTEM, C(), None, (), True, "contract"),
    (CONSENT, C(status="erased"), S("subscribed"), (), False, "erased"),
    (SYSTEM, C(status="erased"), None, (), False, "erased"),
    (T(retired=True), C(), S("subscribed"), (), False, "topic_retired"),
])
def test_rule_table(topic, contact, sub, suppressed, send, reason):
    decision = rules.may_send(topic, contact, sub, suppressed)
    assert (decision.send, decision.reason) == (send, reason)


def test_a_send_names_the_event_that_authorises_it():
    assert rules.may_send(CONSENT, C(), S("subscribed", 42)).event_id == 42
    assert rules.may_send(LI, C(relationship="customer", relationship_event_id=7), None).event_id == 7
    assert rules.may_send(SYSTEM, C(relationship_event_id=3), None).event_id == 3
    assert rules.may_send(CONSENT, C(), None).event_id is None


ALL_TOPICS = [CONSENT, LI, SYSTEM, T(legal_basis="legitimate_interest", default_relationships=[]), T(retired=True)]
ALL_CONTACTS = [
    C(status=s, relationship=r, marketing_opt_out_event_id=o)
    for s, r, o in itertools.product(("active", "restricted", "erased"), ("prospect", "customer"), (None, 9))
]
ALL_SUBS = [None, S("subscribed"), S("pending"), S("unsubscribed")]
ALL_SUPPRESSIONS = [(), ("marketing",), ("all",), ("all", "marketing")]
EVERY_CASE = list(itertools.product(ALL_TOPICS, ALL_CONTACTS, ALL_SUBS, ALL_SUPPRESSIONS))


def test_every_combination_obeys_the_invariants():
    assert len(EVERY_CASE) == 5 * 12 * 4 * 4
    for topic, contact, sub, suppressed in EVERY_CASE:
        decision = rules.may_send(topic, contact, sub, suppressed)
        if "all" in suppressed or contact.status == "erased":
            assert not decision.send
        elif topic.kind == "system":
            assert decision.send and decision.reason == "contract"
            continue
        if topic.kind == "marketing" and decision.send:
            # A marketing send needs every one of these to hold.
            assert not suppressed
            assert contact.status == "active"
            assert contact.marketing_opt_out_event_id is None
            assert sub is None or sub.state != "unsubscribed"
            assert not topic.retired
            if topic.legal_basis == "consent":
                assert sub is not None and sub.state == "subscribed"
            assert decision.event_id is not None
        if not decision.send:
            assert decision.reason in rules.SKIP_REASONS
            assert decision.event_id is None


# -- the query and the function never disagree ---------------------------------

RELATIONSHIPS = ["prospect", "customer", "partner"]
person = st.fixed_dictionaries({
    "relationship": st.sampled_from(RELATIONSHIPS),
    "status": st.sampled_from(["active", "active", "restricted", "erased"]),
    "opted_out": st.booleans(),
    "subs": st.lists(st.sampled_from([None, "subscribed", "pending", "unsubscribed"]), min_size=3, max_size=3),
    "suppressed": st.sampled_from([(), (), ("marketing",), ("all",), ("all", "marketing")]),
    "locale": st.sampled_from(["en", "es", None]),
})


def _populate(topics, people) -> list[Contact]:
    rows = []
    for i, p in enumerate(people):
        email = f"u{i}@example.com"
        row = Contact(email=email, email_hash=f"h{i}", relationship=p["relationship"], status=p["status"],
                      marketing_opt_out_event_id=1000 + i if p["opted_out"] else None,
                      relationship_event_id=2000 + i, locale=p["locale"], token_version=1)
        rows.append(row)
    db.session.add_all(rows)
    db.session.flush()
    for row, p in zip(rows, people, strict=True):
        for topic, state in zip(topics, p["subs"], strict=True):
            if state is not None:
                db.session.add(Subscription(contact_id=row.id, topic_id=topic.id, state=state, event_id=3000 + row.id))
        for scope in p["suppressed"]:
            db.session.add(Suppression(email_hash=row.email_hash, scope=scope, reason="test", source="test"))
    db.session.flush()
    return rows


def _expected(topic, rows, filters=None):
    decisions = rules.decide(topic, [r.id for r in rows])
    keep = {}
    for cid, (contact, decision) in decisions.items():
        if filters and filters.get("relationships") and contact.relationship not in filters["relationships"]:
            continue
        if filters and filters.get("locales") and contact.locale not in filters["locales"]:
            continue
        if decision.send:
            keep[cid] = (decision.event_id, decision.reason)
    return keep


def _actual(topic, chunk, filters=None):
    found = {}
    for recipients in rules.audience(topic, chunk=chunk, filters=filters):
        assert len(recipients) <= chunk
        for r in recipients:
            assert r.contact_id not in found, "a contact appeared twice"
            found[r.contact_id] = (r.event_id, r.reason)
    return found


def _clear():
    for model in (Subscription, Suppression, Contact):
        db.session.execute(delete(model))
    db.session.flush()


@pytest.fixture
def three_topics(ctx):
    topics = [
        factories.topic("consent-topic"),
        factories.topic("li-topic", basis="legitimate_interest", relationships=["customer", "partner"]),
        factories.topic("li-none", basis="legitimate_interest", relationships=[]),
    ]
    db.session.commit()
    return topics


@pytest.mark.slow
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(people=st.lists(person, min_size=0, max_size=60), chunk=st.integers(1, 25))
def test_audience_query_agrees_with_the_rule(three_topics, people, chunk):
    _clear()
    rows = _populate(three_topics, people)
    for topic in three_topics:
        assert _actual(topic, chunk) == _expected(topic, rows)
    db.session.rollback()


@pytest.mark.slow
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(people=st.lists(person, max_size=40),
       filters=st.fixed_dictionaries({"relationships": st.lists(st.sampled_from(RELATIONSHIPS), max_size=2),
                                      "locales": st.lists(st.sampled_from(["en", "es"]), max_size=1)}))
def test_audience_filters_only_narrow_the_rule(three_topics, people, filters):
    _clear()
    rows = _populate(three_topics, people)
    for topic in three_topics:
        assert _actual(topic, 7, filters) == _expected(topic, rows, filters)
    db.session.rollback()


@pytest.mark.slow
def test_audience_agrees_with_the_rule_on_five_thousand_random_contacts(three_topics):
    rng = random.Random(2026)
    people = [{
        "relationship": rng.choice(RELATIONSHIPS),
        "status": rng.choice(["active"] * 6 + ["restricted", "erased"]),
        "opted_out": rng.random() < 0.1,
        "subs": [rng.choice([None, None, "subscribed", "pending", "unsubscribed"]) for _ in range(3)],
        "suppressed": rng.choice([()] * 8 + [("marketing",), ("all",)]),
        "locale": rng.choice(["en", "es"]),
    } for _ in range(5000)]
    rows = _populate(three_topics, people)
    for topic in three_topics:
        expected = _expected(topic, rows)
        assert _actual(topic, 1000) == expected
    # The population is varied enough to matter.
    assert 200 < len(_expected(three_topics[1], rows)) < 4000


def test_audience_refuses_system_topics(ctx):
    system = factories.topic("orders", kind="system", basis="contract")
    with pytest.raises(ValueError):
        list(rules.audience(system))

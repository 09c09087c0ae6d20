"""The consent ledger: hash chain, tamper detection, erasure, derived state."""
from __future__ import annotations

import datetime as dt
import random
import threading

import pytest
from sqlalchemy import func, select, text, update

from preference_center import contacts, ledger
from preference_center.extensions import db
from preference_center.models import ConsentEvent, Contact, LedgerHead, Subscription

from .helpers import factories


@pytest.fixture
def filled(ctx):
    """A small real ledger: contacts, grants, withdrawals, an erasure."""
    news = factories.topic("news")
    tips = factories.topic("tips", basis="legitimate_interest", relationships=["customer"])
    ann = factories.contact("ann@example.com", "customer", name="Ann")
    bob = factories.contact("bob@example.com")
    contacts.record_consent(ann, action="grant", topic=news, source="form", confirmed=True,
                            ip="203.0.113.7", user_agent="Firefox", consent_text_version="1")
    contacts.record_consent(bob, action="grant", topic=news, source="form", confirmed=False, ip="198.51.100.1")
    contacts.record_consent(ann, action="withdraw", topic=tips, source="link")
    contacts.record_consent(bob, action="withdraw", topic=None, source="one-click")
    db.session.commit()
    return {"news": news, "tips": tips, "ann": ann, "bob": bob}


def tamper(sql: str, **params) -> None:
    db.session.execute(text(sql), params)
    db.session.commit()


def test_a_real_ledger_verifies(filled):
    result = ledger.verify()
    assert result.ok, result.problems
    assert result.checked == db.session.scalar(select(func.count(ConsentEvent.id))) > 5


def test_events_chain_each_to_the_previous_hash(filled):
    events = db.session.scalars(select(ConsentEvent).order_by(ConsentEvent.id)).all()
    assert events[0].prev_hash == ledger.GENESIS
    for before, after in zip(events, events[1:], strict=False):
        assert after.prev_hash == before.hash
        assert after.id == before.id + 1


def test_an_edited_action_is_detected(filled):
    tamper("UPDATE consent_events SET action = 'grant' WHERE id = 5")
    result = ledger.verify()
    assert not result.ok
    assert any("event 5" in p and "edited" in p for p in result.problems)


def test_an_edited_time_is_detected(filled):
    event = db.session.get(ConsentEvent, 3)
    db.session.execute(update(ConsentEvent).where(ConsentEvent.id == 3)
                       .values(occurred_at=event.occurred_at.replace(year=2020)))
    db.session.commit()
    assert not ledger.verify().ok


def test_an_edited_ip_is_detected(filled):
    event_id = db.session.scalar(select(ConsentEvent.id).where(ConsentEvent.ip == "203.0.113.7"))
    tamper("UPDATE consent_events SET ip = '192.0.2.1' WHERE id = :i", i=event_id)
    result = ledger.verify()
    assert any(f"event {event_id}" in p and "personal" in p for p in result.problems)


def test_an_edit_with_a_recomputed_hash_breaks_the_next_link(filled):
    event = db.session.get(ConsentEvent, 4)
    event.source = "forged"
    event.hash = ledger.event_hash(event)
    db.session.commit()
    result = ledger.verify()
    assert any("event 5" in p and "predecessor" in p for p in result.problems)


def test_a_deleted_event_in_the_middle_is_detected(filled):
    tamper("DELETE FROM consent_events WHERE id = 3")
    result = ledger.verify()
    assert any("expected id 3" in p for p in result.problems)


def test_a_deleted_last_event_is_detected(filled):
    last = db.session.scalar(select(func.max(ConsentEvent.id)))
    tamper("DELETE FROM consent_events WHERE id = :i", i=last)
    result = ledger.verify()
    assert not result.ok
    assert any("head" in p for p in result.problems)


def test_deleting_the_whole_ledger_is_detected(filled):
    tamper("UPDATE contacts SET marketing_opt_out_event_id = NULL, relationship_event_id = NULL")
    tamper("DELETE FROM consent_events")
    assert not ledger.verify().ok


def test_reordered_events_are_detected(filled):
    # Swap the contents of events 3 and 4, keeping ids in sequence.
    a, b = db.session.get(ConsentEvent, 3), db.session.get(ConsentEvent, 4)
    fields = ("contact_id", "topic_id", "scope", "action", "legal_basis", "source", "confirmed",
              "detail", "ip", "user_agent", "personal", "pii_digest", "occurred_at", "prev_hash", "hash")
    values_a = {f: getattr(a, f) for f in fields}
    values_b = {f: getattr(b, f) for f in fields}
    db.session.execute(update(ConsentEvent).where(ConsentEvent.id == 3).values(**{**values_b, "hash": "swap"}))
    db.session.execute(update(ConsentEvent).where(ConsentEvent.id == 4).values(**values_a))
    db.session.execute(update(ConsentEvent).where(ConsentEvent.id == 3).values(hash=values_b["hash"]))
    db.session.commit()
    assert not ledger.verify().ok


def test_an_inserted_event_is_detected(filled):
    last = db.session.get(ConsentEvent, db.session.scalar(select(func.max(ConsentEvent.id))))
    forged = ConsentEvent(
        id=last.id + 1, contact_id=last.contact_id, topic_id=None, scope="all_marketing", action="grant",
        legal_basis="consent", source="forged", confirmed=True, detail={}, pii_digest=last.pii_digest,
        occurred_at=last.occurred_at, prev_hash=last.hash, hash="f" * 64,
    )
    db.session.add(forged)
    db.session.commit()
    result = ledger.verify()
    assert not result.ok


def test_a_forged_event_with_a_correct_hash_still_disagrees_with_the_head(filled):
    last = db.session.get(ConsentEvent, db.session.scalar(select(func.max(ConsentEvent.id))))
    forged = ConsentEvent(
        id=last.id + 1, contact_id=last.contact_id, topic_id=None, scope="all_marketing", action="grant",
        legal_basis="consent", source="forged", confirmed=True, detail={}, pii_digest=last.pii_digest,
        occurred_at=last.occurred_at, prev_hash=last.hash, redacted=True,
    )
    forged.hash = ledger.event_hash(forged)
    db.session.add(forged)
    db.session.commit()
    result = ledger.verify()
    assert any("head" in p for p in result.problems)


def test_erasure_removes_personal_data_and_the_chain_still_verifies(filled):
    ann = filled["ann"]
    contacts.erase(ann, source="test")
    db.session.commit()
    events = db.session.scalars(select(ConsentEvent).where(ConsentEvent.contact_id == ann.id)).all()
    assert events and all(e.ip is None and e.user_agent is None and e.personal is None and e.redacted for e in events)
    row = db.session.get(Contact, ann.id)
    assert row.email is None and row.name is None and row.status == "erased"
    assert ledger.verify().ok


def test_putting_data_back_into_an_erased_event_is_detected(filled):
    contacts.erase(filled["ann"], source="test")
    db.session.commit()
    event_id = db.session.scalar(select(func.min(ConsentEvent.id)).where(ConsentEvent.contact_id == filled["ann"].id))
    tamper("UPDATE consent_events SET ip = '203.0.113.7' WHERE id = :i", i=event_id)
    assert not ledger.verify().ok


def test_cli_verify_exits_nonzero_on_tampering(filled, runner):
    ok = runner.invoke(args=["ledger", "verify"])
    assert ok.exit_code == 0 and "ledger OK" in ok.output
    tamper("UPDATE consent_events SET source = 'x' WHERE id = 2")
    broken = runner.invoke(args=["ledger", "verify"])
    assert broken.exit_code == 1
    assert "event 2" in broken.output


def test_the_head_points_at_the_last_event(filled):
    head = db.session.get(LedgerHead, 1)
    last = db.session.get(ConsentEvent, head.last_id)
    assert last.hash == head.last_hash


@pytest.mark.slow
def test_derived_state_always_equals_a_replay_of_the_ledger(ctx):
    rng = random.Random(7)
    topics = [factories.topic("t1"), factories.topic("t2", basis="legitimate_interest", relationships=["customer"])]
    people = [factories.contact(f"p{i}@example.com", rng.choice(["customer", "prospect"])) for i in range(12)]
    for _ in range(300):
        person = rng.choice(people)
        if person.status == "erased":
            continue
        move = rng.random()
        if move < 0.5:
            contacts.record_consent(person, action=rng.choice(["grant", "withdraw"]), topic=rng.choice(topics + [None]),
                                    source="random", confirmed=rng.random() < 0.6)
        elif move < 0.6:
            ledger.append(rng.choice([ledger.RESTRICT, ledger.LIFT_RESTRICTION]), contact=person,
                          scope=ledger.CONTACT, source="random")
        elif move < 0.7:
            contacts.upsert(person.email, {"relationship": rng.choice(["customer", "partner"])}, source="random")
        elif move < 0.72:
            contacts.erase(person, source="random")
        else:
            contacts.record_consent(person, action="object", topic=None, source="random")
    db.session.commit()
    for person in people:
        assert ledger.state_of(person) == ledger.replay(person.id), person.id
    assert ledger.verify().ok


def run_concurrent_writers(app, write, writers: int = 4) -> None:
    """Give each of `writers` threads its own contact and the news topic; fail on any error."""
    with app.app_context():
        factories.topic("news")
        for i in range(writers):
            factories.contact(f"c{i}@example.com")
        db.session.commit()
    errors = []

    def writer(n: int):
        with app.app_context():
            try:
                write(n, contacts.find(f"c{n}@example.com"), factories.get_topic("news"))
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


@pytest.mark.slow
def test_concurrent_appends_keep_one_unbroken_chain(app):
    def write(n, person, topic):
        for j in range(15):
            contacts.record_consent(person, action="grant" if j % 2 else "withdraw", topic=topic,
                                    source=f"thread-{n}", confirmed=True)
            db.session.commit()

    run_concurrent_writers(app, write)
    with app.app_context():
        result = ledger.verify()
        assert result.ok, result.problems
        assert result.checked == 4 + 60


# -- append_many: many events under one head lock -------------------------------------

EVENT_FIELDS = ("id", "contact_id", "topic_id", "scope", "action", "legal_basis", "source", "consent_text_version",
                "confirmed", "detail", "ip", "user_agent", "redacted", "occurred_at")


def random_specs(rng: random.Random, people: list, topic_ids: list[int], n: int, start) -> list[dict]:
    """A mix of every kind of event, several per contact, with fixed times."""
    specs = []
    for i in range(n):
        person = rng.choice(people + [None]) if i % 7 == 0 else rng.choice(people)
        action = rng.choice([ledger.GRANT, ledger.GRANT, ledger.WITHDRAW, ledger.OBJECT, ledger.RESTRICT,
                             ledger.LIFT_RESTRICTION, ledger.RELATIONSHIP, ledger.RECTIFY, ledger.SUPPRESS,
                             ledger.ERASE if rng.random() < 0.1 else ledger.EXPORT])
        scope = rng.choice([ledger.TOPIC, ledger.TOPIC, ledger.ALL_MARKETING]) \
            if action in (ledger.GRANT, ledger.WITHDRAW, ledger.OBJECT) else ledger.CONTACT
        spec = {"action": action, "contact": person, "source": f"src-{i % 3}", "scope": scope,
                "occurred_at": start + dt.timedelta(seconds=i), "confirmed": rng.random() < 0.5,
                "detail": {"n": i}}
        if scope == ledger.TOPIC:
            spec["topic_id"] = rng.choice(topic_ids)
            spec["legal_basis"] = "consent"
        if rng.random() < 0.3:
            spec.update(ip=f"198.51.100.{i % 250}", user_agent="Agent " * rng.randint(0, 120),
                        personal={"note": f"n{i}"}, consent_text_version="2")
        specs.append(spec)
    return specs


def snapshot(people: list) -> dict:
    """Every event (minus salts and hashes) and every contact's materialised state."""
    db.session.expire_all()
    events = []
    for e in db.session.scalars(select(ConsentEvent).order_by(ConsentEvent.id)):
        row = {f: getattr(e, f) for f in EVENT_FIELDS}
        row["personal"] = {k: v for k, v in (e.personal or {}).items() if k != "salt"}
        events.append(row)
    states = {}
    for person in people:
        contact = db.session.get(Contact, person.id)
        subs = db.session.execute(select(Subscription.topic_id, Subscription.state, Subscription.event_id,
                                         Subscription.updated_at).where(Subscription.contact_id == person.id)
                                  .order_by(Subscription.topic_id)).all()
        states[person.id] = (ledger.state_of(contact), contact.last_interaction_at, [tuple(s) for s in subs])
    return {"events": events, "states": states}


@pytest.mark.slow
def test_append_many_equals_single_appends_field_by_field(ctx):
    rng = random.Random(11)
    topic_ids = [factories.topic("a").id, factories.topic("b").id]
    people = [factories.contact(f"m{i}@example.com") for i in range(6)]
    contacts.record_consent(people[0], action="grant", topic=factories.get_topic("a"), source="seed", confirmed=True)
    db.session.commit()
    specs = random_specs(rng, people, topic_ids, 80, dt.datetime(2026, 1, 2, tzinfo=dt.UTC))
    base = db.session.get(LedgerHead, 1).last_id

    for spec in specs:
        ledger.append(**spec)
    db.session.flush()
    one_by_one = snapshot(people)
    db.session.rollback()

    people = [db.session.get(Contact, p.id) for p in people]
    events = ledger.append_many([{**s, "contact": db.session.get(Contact, s["contact"].id) if s["contact"] else None}
                                 for s in specs])
    db.session.commit()
    assert [e.id for e in events] == list(range(base + 1, base + 81))
    assert len(one_by_one["events"]) == base + 80
    assert snapshot(people) == one_by_one
    result = ledger.verify()
    assert result.ok, result.problems
    assert result.checked == base + 80
    head = db.session.get(LedgerHead, 1)
    assert (head.last_id, head.last_hash) == (base + 80, events[-1].hash)


def test_append_many_chains_onto_single_appends_and_an_empty_list_is_nothing(ctx):
    news = factories.topic("news")
    ann = factories.contact("ann@example.com")
    contacts.record_consent(ann, action="grant", topic=news, source="form", confirmed=True)
    assert ledger.append_many([]) == []
    batch = ledger.append_many([{"action": "withdraw", "contact": ann, "topic_id": news.id, "source": "x"},
                                {"action": "export", "contact": None, "scope": "contact", "source": "x"}])
    contacts.record_consent(ann, action="grant", topic=news, source="form", confirmed=True)
    db.session.commit()
    events = db.session.scalars(select(ConsentEvent).order_by(ConsentEvent.id)).all()
    assert [e.action for e in events] == ["relationship", "grant", "withdraw", "export", "grant"]
    assert events[2].prev_hash == events[1].hash and events[4].prev_hash == batch[-1].hash
    assert ledger.state_of(ann) == ledger.replay(ann.id)
    assert ledger.verify().ok
    with pytest.raises(ValueError):
        ledger.append_many([{"action": "grant", "contact": ann, "source": "x"}, {"action": "nope", "source": "x"}])


@pytest.mark.slow
def test_derived_state_after_append_many_equals_a_replay(ctx):
    rng = random.Random(5)
    topic_ids = [factories.topic("t1").id, factories.topic("t2").id, factories.topic("t3").id]
    people = [factories.contact(f"r{i}@example.com", rng.choice(["customer", "prospect"])) for i in range(15)]
    db.session.commit()
    start = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    for round_ in range(6):
        # Interleave batches with single appends so batches start from stored state.
        ledger.append_many(random_specs(rng, people, topic_ids, 60, start + dt.timedelta(hours=round_)))
        contacts.record_consent(rng.choice(people), action="grant", topic=None, source="single")
        db.session.commit()
    for person in people:
        assert ledger.state_of(person) == ledger.replay(person.id), person.id
    assert ledger.verify().ok


@pytest.mark.slow
def test_concurrent_append_and_append_many_keep_one_unbroken_chain(app):
    def write(n, person, topic):
        for j in range(10):
            if n % 2:
                contacts.record_consent(person, action="grant" if j % 2 else "withdraw", topic=topic,
                                        source=f"thread-{n}", confirmed=True)
            else:
                ledger.append_many([{"action": "grant" if k % 2 else "withdraw", "contact": person,
                                     "topic_id": topic.id, "confirmed": True, "source": f"thread-{n}"}
                                    for k in range(5)])
            db.session.commit()

    run_concurrent_writers(app, write)
    with app.app_context():
        result = ledger.verify()
        assert result.ok, result.problems
        assert result.checked == 4 + 2 * 10 + 2 * 50
        for i in range(4):
            person = contacts.find(f"c{i}@example.com")
            assert ledger.state_of(person) == ledger.replay(person.id)

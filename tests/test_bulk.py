"""Bulk writes (COPY on PostgreSQL, INSERT elsewhere) store what the row-by-row path stores."""
from __future__ import annotations

import datetime as dt
import io

import pytest
from sqlalchemy import func, select, text

from preference_center import bulk, contacts, directory, imports, ledger
from preference_center.extensions import db
from preference_center.models import ConsentEvent, Contact, Delivery, Subscription

from .helpers import factories


@pytest.fixture
def news(ctx):
    topic = factories.topic("news")
    db.session.commit()
    return topic


def _import(rows: list[str]):
    csv = "email,name,relationship\n" + "".join(rows)
    job = imports.store(io.BytesIO(csv.encode()), "bulk.csv", created_by="test")
    imports.configure(job, imports.Settings(
        mapping={"email": 0, "name": 1, "relationship": 2}, legal_basis="consent",
        source_text="bulk test sheet", topic_key="news", consent_collected=True, confirmed_opt_in=True))
    imports.preview(job)
    imports.start(job)
    db.session.commit()
    return imports.run(job.id)


def test_an_import_big_enough_for_copy_stores_what_small_upserts_store(news):
    contacts.upsert("known@example.com", {"name": "Known", "relationship": "customer"}, source="test")
    db.session.commit()
    many = bulk.COPY_FROM * 3
    rows = [f"Person{i}@Example.com,Person {i},{'customer' if i % 3 == 0 else 'prospect'}\n" for i in range(many)]
    rows.insert(7, "known@example.com,Known Again,customer\n")
    job = _import(rows)
    assert job.status == "done" and job.created_count == many and job.updated_count == 1
    db.session.expire_all()
    people = db.session.scalars(select(Contact).where(Contact.email.like("person%"))).all()
    assert len(people) == many
    first = next(p for p in people if p.email == "person0@example.com")
    assert (first.name, first.relationship, first.status, first.token_version, first.soft_bounces) == \
        ("Person 0", "customer", "active", 1, 0)
    assert first.created_at is not None and first.created_at.tzinfo is not None
    assert first.email_hash == contacts.hash_of("person0@example.com")
    # Every new contact has its relationship event and a confirmed grant, chained.
    subscribed = db.session.scalar(select(func.count()).select_from(Subscription).where(
        Subscription.topic_id == news.id, Subscription.state == "subscribed"))
    assert subscribed == many + 1
    assert all(p.relationship_event_id for p in people)
    assert ledger.verify().ok
    # The contacts written in bulk are ordinary rows afterwards.
    again, created = contacts.upsert("person1@example.com", {"name": "Renamed"}, source="test")
    db.session.commit()
    db.session.expire_all()
    assert not created and db.session.get(Contact, again.id).name == "Renamed"


def test_copied_json_and_null_values_match_an_insert(news):
    contact, _ = contacts.upsert("json@example.com", {"relationship": "customer"}, source="test")
    db.session.flush()
    specs = [dict(action=ledger.WITHDRAW if i % 2 else ledger.GRANT, contact=contact, source="test",
                  topic_id=news.id, legal_basis="consent", confirmed=True, detail={"n": i, "nested": {"ü": [1]}})
             for i in range(bulk.COPY_FROM + 5)]
    events = ledger.append_many(specs)
    db.session.commit()
    db.session.expire_all()
    stored = db.session.scalars(select(ConsentEvent).where(ConsentEvent.id.in_([e.id for e in events]))
                                .order_by(ConsentEvent.id)).all()
    assert [s.detail for s in stored] == [{"n": i, "nested": {"ü": [1]}} for i in range(len(specs))]
    assert all(s.personal and "salt" in s.personal for s in stored)
    assert [s.hash for s in stored] == [e.hash for e in events]
    assert all(ledger.event_hash(s) == s.hash for s in stored)
    assert ledger.verify().ok


def test_contacts_written_in_bulk_hold_what_one_by_one_upserts_write(news):
    many = bulk.COPY_FROM * 2
    rows = [(f"Bulk{i}@Example.com", {"name": f"Zoë {i}", "company": "Peña Ltd", "relationship": "customer"})
            for i in range(many)]

    def grant(index, contact):
        return [contacts.consent_spec(contact, action=ledger.GRANT, topic=news, source="sheet", confirmed=True)]

    results = contacts.upsert_many(rows, source="sheet", then=grant)
    for i in range(3):
        one, _ = contacts.upsert(f"single{i}@example.com", rows[i][1], source="sheet")
        contacts.record_consent(one, action=ledger.GRANT, topic=news, source="sheet", confirmed=True)
    db.session.commit()
    assert all(created for _, created in results)
    db.session.expire_all()
    columns = ("company", "relationship", "status", "token_version", "soft_bounces", "marketing_opt_out_event_id")
    single = contacts.find("single0@example.com")
    for address in ("bulk0@example.com", f"bulk{many - 1}@example.com"):
        person = contacts.find(address)
        assert [getattr(person, c) for c in columns] == [getattr(single, c) for c in columns]
        assert person.name == "Zoë " + address[4:address.index("@")]
        assert person.search_text == "bulk" + address[4:] + " | zoe " + address[4:address.index("@")] + " | pena ltd"
        events = db.session.scalars(select(ConsentEvent).where(ConsentEvent.contact_id == person.id)
                                    .order_by(ConsentEvent.id)).all()
        assert [e.action for e in events] == ["relationship", "grant"]
        assert person.relationship_event_id == events[0].id
        assert person.last_interaction_at == events[-1].occurred_at
        assert person.created_at.tzinfo is not None and person.updated_at.tzinfo is not None
        assert ledger.state_of(person) == ledger.replay(person.id)
    # Found by name in the contact list, as any contact is.
    assert directory.count(directory.Filters(q="zoe 77 pena")) == 1
    assert ledger.verify().ok


def test_a_copy_leaves_the_callers_own_planning_setting_as_it_found_it(news):
    # COPY has its rows' foreign-key checks use their cached plans; the import plans its own lookups afresh.
    if db.session.connection().dialect.name != "postgresql":
        pytest.skip("COPY and plan_cache_mode are PostgreSQL's")
    contact, _ = contacts.upsert("plans@example.com", {"relationship": "customer"}, source="test")
    db.session.flush()
    db.session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))
    ledger.append_many([dict(action=ledger.GRANT, contact=contact, source="test", topic_id=news.id,
                             legal_basis="consent", confirmed=True) for _ in range(bulk.COPY_FROM)])
    assert db.session.scalar(text("SHOW plan_cache_mode")) == "force_custom_plan"
    db.session.commit()
    assert db.session.scalar(text("SHOW plan_cache_mode")) == "auto", "only for the transaction"
    assert ledger.verify().ok


def test_copied_text_escapes_nulls_booleans_and_times_are_stored_as_an_insert_stores_them(news):
    # COPY's text format writes values itself for plain types: the characters it escapes, NULL, and text that
    # looks like an escape must arrive as they were given, as through an INSERT.
    contact, _ = contacts.upsert("copytext@example.com", {"relationship": "customer"}, source="test")
    db.session.flush()
    tricky = ["tab\there", "line\nbreak", "carriage\rreturn", "back\\slash", "\\N", "\\\\N\t\n", "", "plain é ✓"]
    at = dt.datetime(2026, 12, 6, 12, 34, 56, 789012, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30)))
    many = bulk.COPY_FROM + len(tricky)
    rows = [{"contact_id": contact.id, "campaign_id": None, "system_message_id": None, "batch_id": None,
             "attempts": i, "status": "failed", "reason": None if i % 2 else "r", "event_id": None,
             "provider_message_id": None, "provider_status": None, "error": tricky[i % len(tricky)],
             "created_at": at, "updated_at": at + dt.timedelta(microseconds=i)} for i in range(many)]
    # One call with everything per row, one with most of it shared (the campaign's shape).
    bulk.insert_rows(Delivery.__table__, rows)
    shared = {"contact_id": contact.id, "status": "sent", "error": "shared\tvalue\\", "created_at": at,
              "updated_at": at, "campaign_id": None, "system_message_id": None, "batch_id": None,
              "provider_status": None, "reason": None, "provider_message_id": None}
    bulk.insert_rows(Delivery.__table__, [{"attempts": i, "event_id": None if i % 3 else i,
                                           "provider_message_id": tricky[i % len(tricky)]} for i in range(many)],
                     {k: v for k, v in shared.items() if k != "provider_message_id"})
    db.session.commit()
    db.session.expire_all()
    stored = db.session.scalars(select(Delivery).where(Delivery.contact_id == contact.id).order_by(Delivery.id)).all()
    first, second = stored[:many], stored[many:]
    assert [(d.attempts, d.reason, d.error, d.created_at, d.updated_at) for d in first] == \
        [(r["attempts"], r["reason"], r["error"], at, r["updated_at"]) for r in rows]
    assert [(d.attempts, d.event_id, d.provider_message_id, d.error, d.status, d.created_at) for d in second] == \
        [(i, None if i % 3 else i, tricky[i % len(tricky)], "shared\tvalue\\", "sent", at) for i in range(many)]

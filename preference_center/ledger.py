"""The consent ledger: append hash-chained events, derive state, verify the chain.

Each event's hash covers its id, the previous hash, every non-personal field
and a salted digest of the personal fields (IP, user agent, personal detail).
Erasure blanks the personal fields and their salt but keeps the digest, so the
chain still verifies while the data is gone for good. Every appended event is
handed to the outgoing webhooks' outbox and the SendGrid sync queue in the
caller's transaction (`outbound`), so other systems hear of exactly what commits.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
from dataclasses import dataclass, field
from types import SimpleNamespace

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from . import bulk
from .characters import printable
from .extensions import db
from .models import ConsentEvent, ConsentText, Contact, LedgerHead, NewContact, Subscription, contact_row, utcnow
from .sqlutil import chunked, one_of

GENESIS = "0" * 64

# Actions, in the product's words.
GRANT = "grant"
WITHDRAW = "withdraw"
OBJECT = "object"
RESTRICT = "restrict"
LIFT_RESTRICTION = "lift_restriction"
RECTIFY = "rectify"
ERASE = "erase"
EXPORT = "export"
SUPPRESS = "suppress"
LIFT_SUPPRESSION = "lift_suppression"
RELATIONSHIP = "relationship"
# The person's choice about open and click tracking (detail {"allowed": bool}); it changes no subscription.
TRACKING = "tracking"
ACTIONS = (GRANT, WITHDRAW, OBJECT, RESTRICT, LIFT_RESTRICTION, RECTIFY, ERASE, EXPORT, SUPPRESS, LIFT_SUPPRESSION,
           RELATIONSHIP, TRACKING)

# Scopes: one topic, all marketing, or the contact as a whole.
TOPIC = "topic"
ALL_MARKETING = "all_marketing"
CONTACT = "contact"


def _canonical(value) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def _timestamp(moment: dt.datetime) -> str:
    # The characters of strftime("%Y-%m-%dT%H:%M:%S.%fZ") for every year from 1000, at about half its cost
    # (hashed with every event written and verified).
    utc = moment if moment.tzinfo is dt.UTC else moment.astimezone(dt.UTC)
    return utc.isoformat(timespec="microseconds")[:-6] + "Z"  # "+00:00" -> "Z"


_NO_PERSONAL_DATA = _canonical([None, None, {}])  # most events (imports, campaigns' own events) carry none


def pii_digest(salt: str, ip: str | None, user_agent: str | None, personal: dict | None) -> str:
    """Digest of the personal fields; the random salt stops guessing an IP back."""
    body = {k: v for k, v in (personal or {}).items() if k != "salt"}
    fields = _NO_PERSONAL_DATA if ip is None and user_agent is None and not body else \
        _canonical([ip, user_agent, body])
    return hashlib.sha256(salt.encode() + fields).hexdigest()


def event_hash(event: ConsentEvent) -> str:
    """The chain hash of an event, from its stored fields and its predecessor."""
    body = [
        event.id,
        event.prev_hash,
        event.contact_id,
        event.topic_id,
        event.scope,
        event.action,
        event.legal_basis,
        event.source,
        event.consent_text_version,
        bool(event.confirmed),
        event.detail or {},
        _timestamp(event.occurred_at),
        event.pii_digest,
    ]
    if event.wording_hash is not None:
        # The wording an event cites is part of what it proves (events from
        # before wordings were hashed have none, and keep their hashes).
        body.append(event.wording_hash)
    return hashlib.sha256(_canonical(body)).hexdigest()


def wording_hash(text: str) -> str:
    """The hash of a consent wording, as events that cite it carry it."""
    return hashlib.sha256(text.encode()).hexdigest()


def ensure_head() -> None:
    """Create the ledger head row on an empty database (migrations do it too)."""
    if db.session.get(LedgerHead, 1) is None:
        db.session.add(LedgerHead(id=1, last_id=0, last_hash=GENESIS))
        db.session.flush()


SPEC_KEYS = ("action", "contact", "source", "scope", "topic_id", "legal_basis", "consent_text_version",
             "consent_text", "confirmed", "ip", "user_agent", "personal", "detail", "occurred_at")


def _check(spec: dict) -> None:
    if spec.get("action") not in ACTIONS:
        raise ValueError(f"unknown ledger action {spec.get('action')!r}")
    unknown = set(spec) - set(SPEC_KEYS)
    if unknown:
        raise TypeError(f"unknown ledger event fields {sorted(unknown)}")
    if not isinstance(spec.get("source"), str):
        raise TypeError("a ledger event needs a source")


class Appended(SimpleNamespace):
    """A just-appended event: the column values of the row written (not an ORM object)."""


def _build(spec: dict, event_id: int, prev_hash: str) -> Appended:
    """The one definition of how an event is built, digested and chained onto prev_hash."""
    contact = spec.get("contact")
    ip, user_agent = spec.get("ip"), spec.get("user_agent")
    salt = secrets.token_hex(16)
    personal = dict(spec.get("personal") or {})
    wording = spec.get("consent_text")
    event = Appended(
        id=event_id,
        contact_id=contact.id if contact is not None else None,
        topic_id=spec.get("topic_id"),
        scope=spec.get("scope", TOPIC),
        action=spec["action"],
        legal_basis=spec.get("legal_basis"),
        source=spec["source"][:200],
        consent_text_version=spec.get("consent_text_version") or (wording.version if wording else None),
        consent_text_id=wording.id if wording is not None else None,
        wording_hash=wording.text_hash if wording is not None else None,
        confirmed=bool(spec.get("confirmed", False)),
        detail=spec.get("detail") or {},
        # Whatever door they came through (a provider's event, an API client's proof), the
        # proof fields hold no control characters: PostgreSQL refuses NUL, logs and CSV break on the rest.
        ip=(ip and printable(ip)[:64]) or None,
        user_agent=(user_agent and printable(user_agent)[:512]) or None,
        personal={**personal, "salt": salt},
        redacted=False,
        occurred_at=spec.get("occurred_at") or utcnow(),
        prev_hash=prev_hash,
    )
    event.pii_digest = pii_digest(salt, event.ip, event.user_agent, personal)
    event.hash = event_hash(event)
    return event


def _take_ids(n: int) -> tuple[int, str]:
    """Reserve n event ids under the head row's write lock: (first id, hash to chain onto).

    Taking the head row's write lock first serialises appenders, so the chain
    never forks; the lock is held until the caller commits.
    """
    row = db.session.execute(
        update(LedgerHead)
        .where(LedgerHead.id == 1)
        .values(last_id=LedgerHead.last_id + n)
        .returning(LedgerHead.last_id, LedgerHead.last_hash)
        .execution_options(synchronize_session=False)
    ).one_or_none()
    if row is None:
        ensure_head()
        return _take_ids(n)
    last_id, prev_hash = row
    return last_id - n + 1, prev_hash


def lock_head() -> None:
    """Take the head row's write lock (held until commit) without appending."""
    _take_ids(0)


def _settle_waiting_opt_outs(contact_ids: list[int]) -> None:
    """Chain these contacts' waiting one-click opt-outs first, so the ledger keeps the order people acted in."""
    from . import optouts  # optouts builds on this module

    optouts.settle(contact_ids)


def _set_head_hash(last_hash: str) -> None:
    db.session.execute(
        update(LedgerHead).where(LedgerHead.id == 1).values(last_hash=last_hash)
        .execution_options(synchronize_session=False)
    )


def append(
    action: str,
    *,
    contact: Contact | None,
    source: str,
    scope: str = TOPIC,
    topic_id: int | None = None,
    legal_basis: str | None = None,
    consent_text_version: str | None = None,
    consent_text: ConsentText | None = None,
    confirmed: bool = False,
    ip: str | None = None,
    user_agent: str | None = None,
    personal: dict | None = None,
    detail: dict | None = None,
    occurred_at: dt.datetime | None = None,
) -> ConsentEvent:
    """Append one event and apply it to the derived state, in the caller's transaction."""
    spec = dict(action=action, contact=contact, source=source, scope=scope, topic_id=topic_id,
                legal_basis=legal_basis, consent_text_version=consent_text_version, consent_text=consent_text,
                confirmed=confirmed,
                ip=ip, user_agent=user_agent, personal=personal, detail=detail, occurred_at=occurred_at)
    _check(spec)
    if contact is not None:
        _settle_waiting_opt_outs([contact.id])
    event_id, prev_hash = _take_ids(1)
    event = ConsentEvent(**vars(_build(spec, event_id, prev_hash)))
    db.session.add(event)
    _set_head_hash(event.hash)
    if contact is not None:
        apply(contact, event)
    _tell([(contact, event)])
    return event


def append_many(specs: list[dict], new_contacts: list[NewContact] = ()) -> list[Appended]:
    """Append several events in order, as `append` would one by one, under a single head lock.

    Each spec holds `append`'s arguments by name (`action`, `contact`, `source`, ...).
    The events are hashed in order, inserted in one statement, and applied to the
    derived state in one pass. The returned events carry the stored values; they
    are not ORM objects (load them by id to change them).

    `new_contacts` are contacts created in this transaction (`NewContact`
    records) that have their ids but no rows yet: each row is written once,
    with the state its events give it, before the events (rather than
    inserted, then updated).
    """
    specs = list(specs)
    for spec in specs:
        _check(spec)
    if not specs:
        _write_new_contacts(new_contacts)
        return []
    fresh = {contact.id for contact in new_contacts}
    # A contact without a row has no opt-out waiting.
    _settle_waiting_opt_outs([spec["contact"].id for spec in specs
                              if spec.get("contact") is not None and spec["contact"].id not in fresh])
    first_id, prev_hash = _take_ids(len(specs))
    events = []
    for offset, spec in enumerate(specs):
        event = _build(spec, first_id + offset, prev_hash)
        prev_hash = event.hash
        events.append(event)
    pairs = [(spec.get("contact"), event) for spec, event in zip(specs, events, strict=False)]
    state = _derive(pairs, fresh)
    _write_new_contacts(new_contacts)
    # Core, not the ORM bulk path: COPY on PostgreSQL, one multi-row INSERT elsewhere.
    bulk.insert_rows(ConsentEvent.__table__, [vars(event) for event in events])
    _set_head_hash(prev_hash)
    _write_state(*state)
    _tell(pairs)
    return events


def _write_new_contacts(new_contacts: list[NewContact]) -> None:
    """Insert the rows of contacts that have ids but no rows yet."""
    if new_contacts:
        bulk.insert_rows(Contact.__table__, [contact_row(contact) for contact in new_contacts])


def _tell(pairs: list) -> None:
    """Write the outgoing webhook messages and SendGrid pushes of just-appended events, in this transaction."""
    from .outbound import outbox, sendgrid_sync  # both build on this module

    outbox.ledger_events(pairs)
    sendgrid_sync.ledger_events(pairs)


# -- derived state ----------------------------------------------------------

@dataclass
class State:
    """What the ledger says about one contact, folded from its events."""

    topics: dict[int, tuple[str, int]] = field(default_factory=dict)  # topic -> (state, event id)
    marketing_opt_out_event_id: int | None = None
    relationship_event_id: int | None = None
    status: str = "active"


def fold(state: State, event: ConsentEvent) -> State:
    """Apply one event to a contact's state: the single definition of derivation."""
    action, scope = event.action, event.scope
    if scope == TOPIC and event.topic_id is not None:
        current = state.topics.get(event.topic_id, (None, None))[0]
        if action == GRANT:
            if event.confirmed:
                state.topics[event.topic_id] = ("subscribed", event.id)
            elif current != "subscribed":
                state.topics[event.topic_id] = ("pending", event.id)
        elif action in (WITHDRAW, OBJECT):
            state.topics[event.topic_id] = ("unsubscribed", event.id)
    elif scope == ALL_MARKETING:
        if action in (WITHDRAW, OBJECT):
            state.marketing_opt_out_event_id = event.id
        elif action == GRANT and event.confirmed:
            # Only a confirmed grant ends an opt-out; asking (unconfirmed) changes nothing yet.
            state.marketing_opt_out_event_id = None
    if action == RELATIONSHIP:
        state.relationship_event_id = event.id
    elif action == RESTRICT and state.status != "erased":
        state.status = "restricted"
    elif action == LIFT_RESTRICTION and state.status != "erased":
        state.status = "active"
    elif action == ERASE:
        state.status = "erased"
    return state


def state_of(contact: Contact) -> State:
    """The stored (materialised) state of a contact, in the same shape as fold's."""
    subs = db.session.execute(
        select(Subscription.topic_id, Subscription.state, Subscription.event_id)
        .where(Subscription.contact_id == contact.id)
    ).all()
    return State(
        topics={t: (s, e) for t, s, e in subs},
        marketing_opt_out_event_id=contact.marketing_opt_out_event_id,
        relationship_event_id=contact.relationship_event_id,
        status=contact.status,
    )


def replay(contact_id: int) -> State:
    """Recompute a contact's state from its ledger events alone."""
    state = State()
    events = db.session.scalars(
        select(ConsentEvent).where(ConsentEvent.contact_id == contact_id).order_by(ConsentEvent.id)
    )
    for event in events:
        fold(state, event)
    return state


def apply(contact: Contact, event: ConsentEvent) -> None:
    """Write the effect of a just-appended event onto the materialised state."""
    before = state_of(contact)
    after = fold(State(dict(before.topics), before.marketing_opt_out_event_id,
                       before.relationship_event_id, before.status), event)
    for topic_id, (state, event_id) in after.topics.items():
        if before.topics.get(topic_id) != (state, event_id):
            sub = db.session.get(Subscription, (contact.id, topic_id))
            if sub is None:
                db.session.add(Subscription(contact_id=contact.id, topic_id=topic_id,
                                            state=state, event_id=event_id, updated_at=event.occurred_at))
            else:
                sub.state, sub.event_id, sub.updated_at = state, event_id, event.occurred_at
    contact.marketing_opt_out_event_id = after.marketing_opt_out_event_id
    contact.relationship_event_id = after.relationship_event_id
    contact.status = after.status
    contact.last_interaction_at = event.occurred_at
    db.session.flush()


def apply_many(pairs: list[tuple[Contact | None, ConsentEvent]]) -> None:
    """`apply` for many just-appended events (in ledger order): one read, Core writes.

    Gives the same materialised state as calling `apply` for each pair in turn.
    Writes go straight to the tables (executemany), and the ORM objects the
    session already holds get the new values as committed ones, so nothing
    reads a stale state and nothing is flushed twice.
    """
    _write_state(*_derive(pairs, set()))


def _derive(pairs: list[tuple[Contact | None, object]], fresh: set[int]) -> tuple[list, list, list]:
    """The state changes events make (fold), as rows to write; contacts get their new values.

    Contacts in `fresh` have no rows yet: none are read for them, and their
    new values are simply set, to be inserted with the row.
    """
    by_contact: dict[int, tuple[Contact, list]] = {}
    for contact, event in pairs:
        if contact is not None:
            by_contact.setdefault(contact.id, (contact, []))[1].append(event)
    if not by_contact:
        return [], [], []
    db.session.flush()
    subs = Subscription.__table__
    topics_of: dict[int, dict[int, tuple[str, int]]] = {}
    for part in chunked([contact_id for contact_id in by_contact if contact_id not in fresh]):
        for contact_id, topic_id, state, event_id in db.session.execute(
                select(subs.c.contact_id, subs.c.topic_id, subs.c.state, subs.c.event_id)
                .where(one_of(subs.c.contact_id, part))):
            topics_of.setdefault(contact_id, {})[topic_id] = (state, event_id)
    changed, added, people = [], [], []
    now = utcnow()
    for contact_id, (contact, events) in by_contact.items():
        before = topics_of.get(contact_id, {})
        after = State(dict(before), contact.marketing_opt_out_event_id, contact.relationship_event_id,
                      contact.status)
        for event in events:
            fold(after, event)
        when = {event.id: event.occurred_at for event in events}
        for topic_id, (state, event_id) in after.topics.items():
            if before.get(topic_id) == (state, event_id):
                continue
            # The last event that changed a topic is the one its state names.
            row = {"b_contact": contact_id, "b_topic": topic_id, "state": state, "event_id": event_id,
                   "updated_at": when[event_id]}
            (changed if topic_id in before else added).append(row)
        values = {"marketing_opt_out_event_id": after.marketing_opt_out_event_id,
                  "relationship_event_id": after.relationship_event_id, "status": after.status,
                  "last_interaction_at": events[-1].occurred_at, "updated_at": now}
        if contact_id in fresh:
            for key, value in values.items():
                setattr(contact, key, value)
            continue
        people.append({"b_id": contact_id, **values})
        for key, value in values.items():
            set_committed_value(contact, key, value)
    return changed, added, people


def _write_state(changed: list, added: list, people: list) -> None:
    """Write the rows `_derive` gave; ORM objects the session holds get the new values as committed ones."""
    subs = Subscription.__table__
    if changed:
        db.session.execute(
            update(subs).where(subs.c.contact_id == bindparam("b_contact"), subs.c.topic_id == bindparam("b_topic")),
            changed)
    if added:
        bulk.insert_rows(subs, [{"contact_id": r["b_contact"], "topic_id": r["b_topic"],
                                 **{k: r[k] for k in ("state", "event_id", "updated_at")}} for r in added])
    if people:
        contacts = Contact.__table__
        db.session.execute(update(contacts).where(contacts.c.id == bindparam("b_id")), people)
    for row in changed + added:
        held = db.session.identity_map.get(Subscription.__mapper__.identity_key_from_primary_key(
            (row["b_contact"], row["b_topic"])))
        if held is not None:
            for key in ("state", "event_id", "updated_at"):
                set_committed_value(held, key, row[key])


def redact(contact_id: int) -> int:
    """Blank the personal fields of a contact's events; the chain keeps verifying."""
    result = db.session.execute(
        update(ConsentEvent)
        .where(ConsentEvent.contact_id == contact_id, ConsentEvent.redacted.is_(False))
        .values(ip=None, user_agent=None, personal=None, redacted=True)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount or 0


# -- verification -----------------------------------------------------------

@dataclass
class Verification:
    ok: bool
    checked: int
    problems: list[str]
    head_hash: str


def verify(chunk: int = 5000, max_problems: int = 50) -> Verification:
    """Walk the whole committed chain; report every edited, deleted, inserted or reordered event."""
    with Session(db.engine) as session:
        return _verify(session, chunk, max_problems)


def _verify(session: Session, chunk: int, max_problems: int) -> Verification:
    problems: list[str] = []
    # The hash each published wording has now; an event citing it must carry the same.
    wordings = {row.id: wording_hash(row.text) for row in session.execute(select(ConsentText.id, ConsentText.text))}
    expected_id, running = 1, GENESIS
    checked = 0
    last_id = 0
    while True:
        events = session.scalars(
            select(ConsentEvent).where(ConsentEvent.id > last_id).order_by(ConsentEvent.id).limit(chunk)
        ).all()
        if not events:
            break
        for event in events:
            checked += 1
            if event.id != expected_id:
                problems.append(f"event {event.id}: expected id {expected_id} (events missing or renumbered)")
            if event.prev_hash != running:
                problems.append(f"event {event.id}: does not follow its predecessor (deleted, inserted or reordered)")
            if event_hash(event) != event.hash:
                problems.append(f"event {event.id}: contents do not match its hash (edited)")
            if event.consent_text_id is not None and wordings.get(event.consent_text_id) != event.wording_hash:
                problems.append(f"event {event.id}: the consent wording it cites (version "
                                f"{event.consent_text_version}) was changed or removed after it was given")
            if event.redacted:
                if event.ip is not None or event.user_agent is not None or event.personal is not None:
                    problems.append(f"event {event.id}: marked erased but holds personal data")
            else:
                salt = (event.personal or {}).get("salt", "")
                if pii_digest(salt, event.ip, event.user_agent, event.personal) != event.pii_digest:
                    problems.append(f"event {event.id}: personal fields do not match their digest (edited)")
            running = event.hash
            expected_id = event.id + 1
            last_id = event.id
        session.expunge_all()
        if len(problems) >= max_problems:
            break
    head = session.get(LedgerHead, 1)
    head_id, head_hash = (head.last_id, head.last_hash) if head else (0, GENESIS)
    if not problems and (head_id != last_id or head_hash != running):
        problems.append(
            f"ledger ends at event {last_id} but its head records event {head_id}: "
            "events were removed from the end or the head was altered"
        )
    return Verification(ok=not problems, checked=checked, problems=problems, head_hash=running)

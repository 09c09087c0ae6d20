"""Ledger-level operations on contacts, used by the commands (commands/): no actor, no audit, no rules of who may.

Each state change is a ledger event in the caller's transaction. Doors never
call these directly; they call the commands, which check the invariants.
"""
from __future__ import annotations

import datetime as dt
import re

from flask import current_app
from sqlalchemy import delete, select, text, update

from . import attributes, bulk, characters, engagement, erasure, ledger
from .emails import email_hash, normalize
from .errors import N_, ValidationError
from .extensions import db
from .models import RELATIONSHIPS, Contact, NewContact, Subscription, Suppression, SystemMessage, Topic, utcnow
from .rules import Decision, may_send
from .sqlutil import chunked

PROFILE_FIELDS = ("name", "company", "title", "phone", "locale")
# What a correction may change: the profile and the custom attributes (attributes.py).
EDITABLE_FIELDS = (*PROFILE_FIELDS, "attributes")
LOCALE = re.compile(r"^[a-z]{2,3}([-_][A-Za-z0-9]{2,8})?$")
FIELD_LIMITS = {"name": 200, "company": 200, "title": 200, "phone": 50, "locale": 16}

# Suppressions that fresh, confirmed consent lifts. Hard bounces and spam
# complaints stay until staff remove them by hand.
LIFTED_BY_CONSENT = ("erased", "opt_out")


def hash_of(normalized_email: str) -> str:
    return email_hash(current_app.config["PC_SUPPRESSION_KEY"], normalized_email)


def find(email: str) -> Contact | None:
    """The live contact for an address (erased contacts have no address)."""
    return db.session.scalar(select(Contact).where(Contact.email == normalize(email)))


def erased_row(email: str) -> Contact | None:
    """The newest erased contact row of an address with no live contact (found by its keyed hash)."""
    return db.session.scalar(select(Contact).where(Contact.email_hash == hash_of(normalize(email)),
                                                   Contact.status == "erased").order_by(Contact.id.desc()).limit(1))


def clean_profile(fields: dict) -> dict:
    """Validate profile fields (and relationship, and attributes: the whole object, replacing the stored one);
    return only what was given."""
    cleaned = {}
    for name in PROFILE_FIELDS:
        if name not in fields:
            continue
        value = fields[name]
        if value is not None and not isinstance(value, str):
            raise ValidationError(N_("%(field)s must be a string or null", field=name), name)
        problem = value and characters.refused(value)
        if problem:
            # One line of text: a subject or a greeting built from it cannot break, whichever door stored it.
            raise ValidationError(N_("%(field)s must be one line of text; it holds %(problem)s", field=name,
                                     problem=problem), name)
        value = (value or "").strip() or None
        if value is not None and len(value) > FIELD_LIMITS[name]:
            raise ValidationError(N_("%(field)s is longer than %(limit)s characters", field=name,
                                     limit=FIELD_LIMITS[name]), name)
        if name == "locale" and value is not None:
            if not LOCALE.match(value):
                raise ValidationError(N_("locale must look like 'en' or 'es-MX'"), name)
            value = value.replace("_", "-")
        cleaned[name] = value
    if "relationship" in fields:
        if fields["relationship"] not in RELATIONSHIPS:
            raise ValidationError(N_("relationship must be one of %(relationships)s", relationships=', '.join(RELATIONSHIPS)),
                                  "relationship")
        cleaned["relationship"] = fields["relationship"]
    if "attributes" in fields:
        cleaned["attributes"] = attributes.clean(fields["attributes"])
    return cleaned


def _changes(contact: Contact, created: bool, profile: dict, *, source: str, ip: str | None,
             user_agent: str | None) -> list[dict]:
    """Set a contact's changed fields; return the ledger events (as specs) the change needs."""
    profile = dict(profile)
    relationship = profile.pop("relationship", None)
    # A contact stored before attributes existed has None where a new one has {}: the same thing.
    changed = [k for k, v in profile.items() if (getattr(contact, k) or ({} if k == "attributes" else None)) != v]
    for key in changed:
        setattr(contact, key, profile[key])
    specs = []
    if not created and changed:
        specs.append(dict(action=ledger.RECTIFY, contact=contact, scope=ledger.CONTACT, source=source,
                          ip=ip, user_agent=user_agent, detail={"fields": sorted(changed)}))
    if created or (relationship and relationship != contact.relationship):
        contact.relationship = relationship or contact.relationship
        specs.append(dict(action=ledger.RELATIONSHIP, contact=contact, scope=ledger.CONTACT, source=source,
                          legal_basis="legitimate_interest", ip=ip, user_agent=user_agent,
                          detail={"relationship": contact.relationship}))
    return specs


def _new_contact(address: str) -> Contact:
    return Contact(email=address, email_hash=hash_of(address), relationship="prospect", status="active",
                   token_version=1)


def upsert(email: str, fields: dict, *, source: str, ip: str | None = None,
           user_agent: str | None = None) -> tuple[Contact, bool]:
    """Create or update a contact; relationship changes and corrections are ledger events."""
    address = normalize(email)
    profile = clean_profile(fields)
    contact = db.session.scalar(select(Contact).where(Contact.email == address))
    if contact is None:
        # Lock order: the ledger head before the new row, as every other writer takes it; two requests
        # creating the same address then queue on the head instead of deadlocking on the row and the head.
        ledger.lock_head()
        contact = db.session.scalar(select(Contact).where(Contact.email == address))
    created = contact is None
    if created:
        contact = _new_contact(address)
        db.session.add(contact)
        db.session.flush()
    for spec in _changes(contact, created, profile, source=source, ip=ip, user_agent=user_agent):
        ledger.append(**spec)
    if created and _erased_before(contact):
        # The address was erased: it comes back opted out of all marketing, which only the
        # person's own confirmation ends (legitimate interest included).
        ledger.append(ledger.WITHDRAW, contact=contact, scope=ledger.ALL_MARKETING, source="system:erased-before",
                      detail={"why": "the address was erased before"})
    return contact, created


def _erased_before(contact: Contact) -> bool:
    """Whether another row of this address was erased (its events and hash stay)."""
    return db.session.scalar(select(Contact.id).where(
        Contact.email_hash == contact.email_hash, Contact.id != contact.id, Contact.status == "erased").limit(1)
    ) is not None


def upsert_many(rows: list[tuple[str, dict]], *, source: str, ip: str | None = None,
                user_agent: str | None = None, then=None, cleaned: bool = False,
                known: dict[str, Contact] | None = None,
                hashes: dict[str, str] | None = None) -> list[tuple[Contact | NewContact, bool]]:
    """`upsert` for many (email, fields) rows at once, with one ledger append for all of them.

    `then(index, contact)` may return more ledger event specs (e.g. from
    `consent_spec`) to append right after row `index`'s own events, so the
    ledger reads exactly as if each row were upserted and followed up one by one.
    Contacts have their ids when `then` is called. `known`: the live contacts of
    these addresses by address, when the caller looked them up itself after
    taking the ledger head's lock (`ledger.lock_head`); otherwise they are read here.
    `hashes`: `hash_of` of these addresses, when the caller has them already.

    Many new contacts on PostgreSQL are written in bulk, each row once with its
    final state, and come back as `NewContact` records of their rows rather than
    ORM objects (load them by id to change them).
    """
    # `cleaned`: the caller already ran each row through `normalize` and `clean_profile` (the import does).
    prepared = rows if cleaned else [(normalize(email), clean_profile(fields)) for email, fields in rows]
    ledger.lock_head()  # before any new row: the lock order of `upsert`
    if known is None:
        known = {}
        for part in chunked(address for address, _ in prepared):
            for contact in db.session.scalars(select(Contact).where(Contact.email.in_(part))):
                known[contact.email] = contact
    else:
        known = dict(known)
    in_bulk = db.session.connection().dialect.name == "postgresql" and \
        len({address for address, _ in prepared if address not in known}) >= bulk.COPY_FROM
    results: list[tuple[Contact | NewContact, bool]] = []
    per_row: list[list[dict]] = []
    fresh: list = []
    for address, profile in prepared:
        contact = known.get(address)
        created = contact is None
        if created:
            contact = known[address] = NewContact.of(
                email=address, email_hash=hashes[address] if hashes else hash_of(address)) if in_bulk \
                else _new_contact(address)
            fresh.append(contact)
        per_row.append(_changes(contact, created, profile, source=source, ip=ip, user_agent=user_agent))
        results.append((contact, created))
    if in_bulk:  # ids from the sequence; the ledger writes the rows, with their state, before their events
        ids = db.session.scalars(text("SELECT nextval(pg_get_serial_sequence('contacts', 'id')) "
                                      "FROM generate_series(1, :n)"), {"n": len(fresh)}).all()
        for contact, contact_id in zip(fresh, ids, strict=True):
            contact.id = contact_id
    elif fresh:
        db.session.add_all(fresh)
        db.session.flush()
    specs: list[dict] = []
    for index, ((contact, _), own) in enumerate(zip(results, per_row, strict=False)):
        specs += own
        if then is not None:
            specs += then(index, contact) or []
    ledger.append_many(specs, new_contacts=fresh if in_bulk else [])
    return results


def suppression_rows(contact: Contact) -> list[Suppression]:
    """The suppressions of a contact's address, with their reasons."""
    return list(db.session.scalars(select(Suppression).where(Suppression.email_hash == contact.email_hash)
                                   .order_by(Suppression.scope)))


def suppressions_of(contact: Contact) -> set[str]:
    return set(db.session.scalars(select(Suppression.scope).where(Suppression.email_hash == contact.email_hash)))


def suppress(contact_hash: str, scope: str, reason: str, *, source: str, contact: Contact | None = None,
             ip: str | None = None, user_agent: str | None = None) -> Suppression:
    """Add (or keep) a suppression of an address hash, recorded in the ledger."""
    existing = db.session.scalar(
        select(Suppression).where(Suppression.email_hash == contact_hash, Suppression.scope == scope)
    )
    if existing is not None:
        return existing
    event = ledger.append(ledger.SUPPRESS, contact=contact, scope=ledger.CONTACT, source=source,
                          ip=ip, user_agent=user_agent, detail={"scope": scope, "reason": reason})
    row = Suppression(email_hash=contact_hash, scope=scope, reason=reason, source=source[:200], event_id=event.id)
    db.session.add(row)
    db.session.flush()
    return row


# Suppressions staff may not lift: the person's own opt-out (only their fresh
# consent lifts it) and erasure (the address stays blocked for good).
KEPT_FOR_THE_PERSON = {"opt_out": N_("the person opted out of marketing themselves; only their own fresh consent "
                                      "lifts it"), "erased": N_("the person's data was erased; the address stays blocked")}


def lift_suppression(contact: Contact, scope: str, *, why: str, source: str, ip: str | None = None) -> Suppression:
    """Remove a suppression staff may lift (a bounce, a complaint, a manual block), recorded in the ledger."""
    if contact.status == "erased":
        raise ValidationError(N_("this contact has been erased"), code="erased")
    row = db.session.scalar(select(Suppression).where(Suppression.email_hash == contact.email_hash,
                                                      Suppression.scope == scope))
    if row is None:
        raise ValidationError(N_("this address has no %(scope)r suppression", scope=scope), "scope")
    if row.reason in KEPT_FOR_THE_PERSON:
        raise ValidationError(N_("this suppression cannot be lifted: %(why)s", why=KEPT_FOR_THE_PERSON[row.reason]),
                              "scope",
                              code="conflict")
    why = (why or "").strip()
    if not why:
        raise ValidationError(N_("say why the suppression is lifted"), "why")
    ledger.append(ledger.LIFT_SUPPRESSION, contact=contact, scope=ledger.CONTACT, source=source, ip=ip,
                  detail={"scope": scope, "reason": row.reason, "why": why[:200]})
    db.session.delete(row)
    db.session.flush()
    return row


def consent_spec(contact: Contact, *, action: str, topic: Topic | None, source: str,
                 legal_basis: str | None = None, consent_text_version: str | None = None,
                 consent_text=None, confirmed: bool = False, ip: str | None = None, user_agent: str | None = None,
                 detail: dict | None = None, occurred_at: dt.datetime | None = None) -> dict:
    """Check a grant or withdrawal and describe its ledger event (for `ledger.append(**spec)`)."""
    if action not in (ledger.GRANT, ledger.WITHDRAW, ledger.OBJECT):
        raise ValidationError(N_("action must be grant or withdraw"), "action")
    if contact.status == "erased":
        raise ValidationError(N_("this contact has been erased"), code="erased")
    if topic is not None and topic.kind == "system" and action != ledger.GRANT:
        raise ValidationError(N_("system topics cannot be unsubscribed from; they are part of the service"),
                              "topic", code="system_topic")
    scope = ledger.TOPIC if topic is not None else ledger.ALL_MARKETING
    basis = legal_basis or (topic.legal_basis if topic is not None else None)
    return dict(action=action, contact=contact, scope=scope, topic_id=topic.id if topic else None,
                legal_basis=basis, source=source, consent_text_version=consent_text_version,
                consent_text=consent_text, confirmed=confirmed, ip=ip, user_agent=user_agent, detail=detail, occurred_at=occurred_at)


def lift_suppressions_after_grant(email_hashes: list[str], topic: Topic | None) -> None:
    """Fresh confirmed consent lifts the suppressions it may lift, for each address hash."""
    reasons = LIFTED_BY_CONSENT if topic is None else ("erased",)
    for part in chunked(email_hashes):
        db.session.execute(delete(Suppression).where(
            Suppression.email_hash.in_(part), Suppression.reason.in_(reasons)))


def record_consent(contact: Contact, *, action: str, topic: Topic | None, source: str,
                   legal_basis: str | None = None, consent_text_version: str | None = None,
                   consent_text=None, confirmed: bool = False, ip: str | None = None,
                   user_agent: str | None = None, detail: dict | None = None,
                   occurred_at: dt.datetime | None = None, lift: bool = False) -> ledger.ConsentEvent:
    """Record a grant or withdrawal for one topic, or for all marketing when topic is None.

    `lift`: the grant is the person's own confirmation, which lifts their own
    opt-out and an earlier erasure of the address (commands decide that).
    """
    event = ledger.append(**consent_spec(
        contact, action=action, topic=topic, source=source, legal_basis=legal_basis,
        consent_text_version=consent_text_version, consent_text=consent_text, confirmed=confirmed, ip=ip,
        user_agent=user_agent, detail=detail, occurred_at=occurred_at))
    if topic is None and action in (ledger.WITHDRAW, ledger.OBJECT):
        suppress(contact.email_hash, "marketing", "opt_out", source=source, contact=contact)
    if action == ledger.GRANT and confirmed and lift:
        lift_suppressions_after_grant([contact.email_hash], topic)
    return event


def erase(contact: Contact, *, source: str, ip: str | None = None, user_agent: str | None = None) -> ledger.ConsentEvent:
    """Erase a contact's personal data everywhere; keep the suppression hash and the chain."""
    traces = erasure.traces_of(contact)  # read before the row is blanked
    event = ledger.append(ledger.ERASE, contact=contact, scope=ledger.CONTACT, source=source)
    suppress(contact.email_hash, "all", "erased", source=source, contact=contact)
    ledger.redact(contact.id)
    for name in PROFILE_FIELDS:
        setattr(contact, name, None)
    contact.attributes = None
    contact.email = None
    contact.token_version += 1
    contact.erased_at = utcnow()
    db.session.execute(
        update(SystemMessage).where(SystemMessage.contact_id == contact.id)
        .values(subject="[erased]", text="", html="", data={})
        .execution_options(synchronize_session=False)
    )
    erasure.scrub(traces)
    # What the provider told us about their mail becomes anonymous per-campaign counts (the reports keep adding up).
    engagement.fold_contact(contact.id)
    db.session.flush()
    return event


def subscriptions_view(contact: Contact, topics: list[Topic] | None = None,
                       scopes: set[str] | None = None) -> list[dict]:
    """Each live topic (or each of `topics`) with the state the sending rule gives it now.

    `scopes` are the address's suppression scopes, when the caller has them already.
    """
    topics = topics if topics is not None else db.session.scalars(
        select(Topic).where(Topic.retired.is_(False)).order_by(Topic.kind, Topic.key)).all()
    subs = {s.topic_id: s for s in db.session.scalars(
        select(Subscription).where(Subscription.contact_id == contact.id))}
    scopes = suppressions_of(contact) if scopes is None else scopes
    view = []
    for topic in topics:
        decision: Decision = may_send(topic, contact, subs.get(topic.id), scopes)
        sub = subs.get(topic.id)
        view.append({
            "topic": topic.key,
            "name": topic.name,
            "kind": topic.kind,
            "state": "subscribed" if decision.send else "unsubscribed",
            "basis": topic.legal_basis,
            "reason": decision.reason,
            "pending_confirmation": sub is not None and sub.state == "pending",
        })
    return view

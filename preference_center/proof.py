"""Consent proof: one person's ledger events, each with the wording it cites, its hashes and its check.

The proof of an address covers every contact row that ever held it (found by
the keyed hash, which survives erasure), so it still shows, after an
erasure, what the person agreed to and when they left. Each event carries
its own check (its hash recomputed, the link to its predecessor, the wording
and the personal-field digest); the document carries the whole chain's
verification and the ledger head hash of the moment, which anyone can later
find in the chain: the proof cannot be back-dated or trimmed unnoticed.
Reading only: the command in commands/proof.py audits who pulled a proof.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from sqlalchemy import select

from . import contacts, ledger
from .extensions import db
from .models import ConsentEvent, ConsentText, Contact, Suppression, Topic, utcnow
from .sqlutil import chunked, one_of

FORMAT = "preference-center/consent-proof/1"


@dataclass
class Subject:
    """Whose proof: the address as asked for (None when asked by contact id) and its keyed hash."""

    email: str | None
    email_hash: str


def rows_of(email_hash: str) -> list[Contact]:
    """Every contact row that held the address (erased ones too), oldest first."""
    return list(db.session.scalars(select(Contact).where(Contact.email_hash == email_hash).order_by(Contact.id)))


def _wording(text: ConsentText | None) -> dict | None:
    if text is None:
        return None
    return {"id": text.id, "version": text.version, "locale": text.locale, "text": text.text,
            "hash": text.text_hash, "current_hash": ledger.wording_hash(text.text),
            "published_by": text.published_by, "published_at": text.created_at.isoformat()}


def _check(event: ConsentEvent, predecessor_hash: str | None, wording: ConsentText | None) -> list[str]:
    """What is wrong with one event on its own and against its predecessor (empty: it verifies)."""
    problems = []
    if ledger.event_hash(event) != event.hash:
        problems.append("its contents do not match its hash (edited)")
    expected_prev = ledger.GENESIS if event.id == 1 else predecessor_hash
    if event.prev_hash != expected_prev:
        problems.append("it does not follow the event before it in the chain")
    if event.consent_text_id is not None and (wording is None or ledger.wording_hash(wording.text)
                                              != event.wording_hash):
        problems.append("the wording it cites was changed or removed after it was given")
    if event.redacted:
        if event.ip is not None or event.user_agent is not None or event.personal is not None:
            problems.append("marked erased but holds personal data")
    else:
        salt = (event.personal or {}).get("salt", "")
        if ledger.pii_digest(salt, event.ip, event.user_agent, event.personal) != event.pii_digest:
            problems.append("its IP or user agent do not match their digest (edited)")
    return problems


def build(subject: Subject) -> dict:
    """The proof document of one address (see the module docstring); JSON-ready."""
    people = rows_of(subject.email_hash)
    ids = [p.id for p in people]
    events: list[ConsentEvent] = []
    for part in chunked(ids):
        events += db.session.scalars(select(ConsentEvent).where(one_of(ConsentEvent.contact_id, part)))
    events.sort(key=lambda e: e.id)
    predecessors: dict[int, str] = {}
    for part in chunked([e.id - 1 for e in events if e.id > 1]):
        predecessors.update((row.id, row.hash) for row in db.session.execute(
            select(ConsentEvent.id, ConsentEvent.hash).where(one_of(ConsentEvent.id, part))))
    wordings = {w.id: w for w in db.session.scalars(select(ConsentText))}
    topics = {t.id: t for t in db.session.scalars(select(Topic))}
    chain = ledger.verify()
    entries = []
    for position, event in enumerate(events, 1):
        wording = wordings.get(event.consent_text_id) if event.consent_text_id is not None else None
        problems = _check(event, predecessors.get(event.id - 1), wording)
        topic = topics.get(event.topic_id)
        entries.append({
            "position": position,
            "id": event.id,
            "chain_position": event.id,
            "contact_id": event.contact_id,
            "action": event.action,
            "scope": event.scope,
            "topic": topic.key if topic else None,
            "topic_name": topic.name if topic else None,
            "legal_basis": event.legal_basis,
            "source": event.source,
            "confirmed": bool(event.confirmed),
            "detail": event.detail or {},
            "occurred_at": event.occurred_at.isoformat(),
            "ip": event.ip,
            "user_agent": event.user_agent,
            "personal_data_erased": bool(event.redacted),
            "consent_text_version": event.consent_text_version,
            "wording": _wording(wording),
            "wording_hash": event.wording_hash,
            "pii_digest": event.pii_digest,
            "prev_hash": event.prev_hash,
            "hash": event.hash,
            "verified": not problems,
            "problems": problems,
        })
    suppressions = db.session.scalars(select(Suppression).where(Suppression.email_hash == subject.email_hash)
                                      .order_by(Suppression.id))
    body = {
        "format": FORMAT,
        "email": subject.email,
        "email_hash": subject.email_hash,
        "generated_at": utcnow().isoformat(),
        "contacts": [{"id": p.id, "status": p.status, "relationship": p.relationship,
                      "created_at": p.created_at.isoformat(),
                      "erased_at": p.erased_at.isoformat() if p.erased_at else None} for p in people],
        "events": entries,
        "suppressions": [{"scope": s.scope, "reason": s.reason, "event_id": s.event_id,
                          "since": s.created_at.isoformat()} for s in suppressions],
        "verification": {"ok": chain.ok and all(e["verified"] for e in entries),
                         "chain_ok": chain.ok, "events_ok": all(e["verified"] for e in entries),
                         "checked": chain.checked, "problems": chain.problems},
        "head": {"event_id": chain.checked, "hash": chain.head_hash},
    }
    # The digest seals the document: a copy whose events or head were changed no longer matches it.
    body["digest"] = digest(body)
    return body


def digest(document: dict) -> str:
    """SHA-256 of the document's canonical JSON without its own digest."""
    sealed = {k: v for k, v in document.items() if k != "digest"}
    return hashlib.sha256(json.dumps(sealed, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                                     default=str).encode()).hexdigest()


def subject_of_address(email: str) -> Subject:
    """The subject for an address (InvalidEmail if it is none)."""
    address = contacts.normalize(email)
    return Subject(address, contacts.hash_of(address))


def subject_of_contact(contact: Contact) -> Subject:
    return Subject(contact.email, contact.email_hash)

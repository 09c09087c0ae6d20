"""The ledger as a change feed for other systems, and the names of the changes it carries.

Guarantee: a consumer that keeps the `next` cursor of each page and asks again
from it sees every ledger event once, in ledger order. Why this holds: event
ids are taken under the ledger head's row lock (`ledger._take_ids`), held until
the appender commits, so the next appender can only take an id once the
previous one is committed and visible; a rolled-back append gives its ids back.
The committed events are therefore always ids 1..N with no hole, and a reader
never sees id n+1 without n. The page is still cut at the first missing id, so
even a hole the lock did not prevent could only delay an event, never skip it.

What leaves: ids, the change, the topic key, basis, source and time, the
contact's address while it is not erased (read when the page is served, so an
erased person's address is gone from every page served after the erasure), and
never the IP or user agent.
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from . import ledger, optouts
from .extensions import db
from .models import ConsentEvent, Contact, Topic

PAGE_MAX = 1000

# Change types, shared by the feed and the outgoing webhooks.
CONSENT_GRANTED = "consent.granted"
CONSENT_REQUESTED = "consent.requested"
CONSENT_WITHDRAWN = "consent.withdrawn"
CONTACT_OBJECTED = "contact.objected"
CONTACT_RESTRICTED = "contact.restricted"
CONTACT_RESTRICTION_LIFTED = "contact.restriction_lifted"
CONTACT_RECTIFIED = "contact.rectified"
CONTACT_ERASED = "contact.erased"
CONTACT_EXPORTED = "contact.exported"
CONTACT_RELATIONSHIP = "contact.relationship_set"
SUPPRESSION_ADDED = "suppression.added"
SUPPRESSION_LIFTED = "suppression.lifted"
DELIVERY_SENT = "delivery.sent"
DELIVERY_FAILED = "delivery.failed"

_BY_ACTION = {
    ledger.WITHDRAW: CONSENT_WITHDRAWN,
    ledger.OBJECT: CONTACT_OBJECTED,
    ledger.RESTRICT: CONTACT_RESTRICTED,
    ledger.LIFT_RESTRICTION: CONTACT_RESTRICTION_LIFTED,
    ledger.RECTIFY: CONTACT_RECTIFIED,
    ledger.ERASE: CONTACT_ERASED,
    ledger.EXPORT: CONTACT_EXPORTED,
    ledger.RELATIONSHIP: CONTACT_RELATIONSHIP,
    ledger.SUPPRESS: SUPPRESSION_ADDED,
    ledger.LIFT_SUPPRESSION: SUPPRESSION_LIFTED,
}
LEDGER_TYPES = (CONSENT_GRANTED, CONSENT_REQUESTED, *_BY_ACTION.values())
TYPES = (*LEDGER_TYPES, DELIVERY_SENT, DELIVERY_FAILED)


def type_of(action: str, confirmed: bool) -> str:
    """The change type of a ledger event."""
    if action == ledger.GRANT:
        return CONSENT_GRANTED if confirmed else CONSENT_REQUESTED
    return _BY_ACTION[action]


def facts(event: ConsentEvent, topic_key: str | None) -> dict:
    """The non-personal part of a ledger event as other systems see it (no address, IP or user agent)."""
    detail = event.detail or {}
    shown = {"id": event.id, "type": type_of(event.action, event.confirmed), "contact_id": event.contact_id,
             "topic": topic_key, "scope": event.scope, "action": event.action, "confirmed": bool(event.confirmed),
             "legal_basis": event.legal_basis, "source": event.source,
             "occurred_at": event.occurred_at.isoformat()}
    if event.action == ledger.RELATIONSHIP:
        shown["relationship"] = detail.get("relationship")
    if event.action in (ledger.SUPPRESS, ledger.LIFT_SUPPRESSION):
        shown["suppression_scope"] = detail.get("scope")
        shown["suppression_reason"] = detail.get("reason")
    return shown


@dataclass(frozen=True)
class Page:
    events: list[dict]
    next: str


def parse_cursor(cursor: str | None) -> int:
    """The last event id a cursor names (None or "" for the start); ValueError if it is not one of ours."""
    if cursor in (None, ""):
        return 0
    if not cursor.isascii() or not cursor.isdigit() or len(cursor) > 19 or int(cursor) > 2**63 - 1:
        # (19 digits reach past the largest event id the database can hold)
        raise ValueError("after must be a cursor from an earlier page's next (or absent to start)")
    return int(cursor)


def page(after: int, limit: int) -> Page:
    """The events after `after`, at most `limit`, oldest first, cut at the first missing id.

    Waiting one-click opt-outs are settled first (committed), as every reader of consent state does.
    """
    limit = max(1, min(limit, PAGE_MAX))
    if optouts.settle():
        db.session.commit()  # one-click opt-outs taken so far are changes too: chained before the page is read
    rows = db.session.execute(
        select(ConsentEvent, Contact.email, Contact.status, Topic.key)
        .outerjoin(Contact, Contact.id == ConsentEvent.contact_id)
        .outerjoin(Topic, Topic.id == ConsentEvent.topic_id)
        .where(ConsentEvent.id > after).order_by(ConsentEvent.id).limit(limit)
    ).all()
    events, last = [], after
    for event, email, status, topic_key in rows:
        if event.id != last + 1:
            break
        events.append({**facts(event, topic_key), "email": None if status == "erased" else email})
        last = event.id
    return Page(events, str(last))

"""The outbox: webhook messages written in the same transaction as the change they tell of.

Two hooks, one place each: the ledger calls `ledger_events` for every event it
appends (consent changes, objections, restrictions, erasures, suppressions and
their lifting all are ledger events), and the sending engine calls
`delivery_outcomes` where it records a delivery sent or failed. A change that
rolls back takes its messages with it; one that commits has them, so nothing
is told that did not happen and nothing that happened goes untold.

Each endpoint gets its own row per change it asked for. The address travels in
its own column, filled in when the message is sent: an erasure blanks it in
every message of that person (sent or not), and the erasure message itself
carries only the keyed hash of the address.
"""
from __future__ import annotations

import uuid

from sqlalchemy import insert, select, update

from .. import change_feed
from ..extensions import db
from ..models import Campaign, Contact, Delivery, SystemMessage, Topic, WebhookEndpoint, WebhookMessage, utcnow
from ..sqlutil import chunked, one_of


def _subscribers() -> list[tuple[int, set[str]]]:
    return [(endpoint_id, set(events or ()))
            for endpoint_id, events in db.session.execute(select(WebhookEndpoint.id, WebhookEndpoint.events))]


def _message_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


def _write(rows: list[dict]) -> None:
    if not rows:
        return
    db.session.execute(insert(WebhookMessage.__table__), rows)
    _kick_after_commit()


def _kick() -> None:
    from ..tasks import enqueue  # tasks import the domain

    enqueue("deliver_webhooks")


def _kick_after_commit() -> None:
    """Ask a worker to deliver once the change commits (the scheduler asks every few seconds anyway)."""
    from ..commands import _tx  # the command layer builds on the ledger, which calls this module

    if _kick not in db.session.info.get(_tx._KEY, ()):
        _tx.after_commit(_kick)


def ledger_events(pairs: list[tuple[Contact | None, object]]) -> None:
    """Outbox rows for just-appended ledger events (contacts already carry the state after them)."""
    subscribers = _subscribers()
    if not pairs or not subscribers:
        return
    topic_ids = {event.topic_id for _, event in pairs if event.topic_id is not None}
    keys = dict(db.session.execute(select(Topic.id, Topic.key).where(Topic.id.in_(topic_ids))).all()) if topic_ids else {}
    now = utcnow()
    rows, erased = [], []
    for contact, event in pairs:
        kind = change_feed.type_of(event.action, event.confirmed)
        data = change_feed.facts(event, keys.get(event.topic_id))
        gone = contact is None or contact.status == "erased"
        if kind == change_feed.CONTACT_ERASED and contact is not None:
            data["email_hash"] = contact.email_hash
            erased.append(contact.id)
        for endpoint_id, wanted in subscribers:
            if kind in wanted:
                rows.append({"endpoint_id": endpoint_id, "message_id": _message_id(), "event_type": kind,
                             "contact_id": event.contact_id, "ledger_event_id": event.id, "delivery_id": None,
                             "payload": {"type": kind, "timestamp": event.occurred_at.isoformat(), "data": data},
                             "email": None if gone else contact.email, "status": "pending", "attempts": 0,
                             "next_attempt_at": now, "created_at": now})
    _write(rows)
    for part in chunked(erased):
        db.session.execute(update(WebhookMessage).where(one_of(WebhookMessage.contact_id, part))
                           .values(email=None).execution_options(synchronize_session=False))


def delivery_outcomes(delivery_ids: list[int], status: str) -> None:
    """Outbox rows for deliveries just marked sent or failed (delivery.sent, delivery.failed)."""
    kind = {"sent": change_feed.DELIVERY_SENT, "failed": change_feed.DELIVERY_FAILED}.get(status)
    subscribers = [(e, wanted) for e, wanted in _subscribers() if kind in wanted]
    if kind is None or not delivery_ids or not subscribers:
        return
    now = utcnow()
    rows = []
    for part in chunked(delivery_ids):
        found = db.session.execute(
            select(Delivery.id, Delivery.contact_id, Delivery.campaign_id, Delivery.system_message_id,
                   Delivery.reason, Delivery.provider_message_id, Contact.email, Contact.status,
                   Campaign.topic_id, SystemMessage.topic_id)
            .join(Contact, Contact.id == Delivery.contact_id)
            .outerjoin(Campaign, Campaign.id == Delivery.campaign_id)
            .outerjoin(SystemMessage, SystemMessage.id == Delivery.system_message_id)
            .where(one_of(Delivery.__table__.c.id, part))
        ).all()
        topic_ids = {row[8] or row[9] for row in found}
        keys = dict(db.session.execute(select(Topic.id, Topic.key).where(Topic.id.in_(topic_ids))).all())
        for (delivery_id, contact_id, campaign_id, message_id, reason, provider_id, email, contact_status,
             campaign_topic, message_topic) in found:
            data = {"delivery_id": delivery_id, "contact_id": contact_id, "campaign_id": campaign_id,
                    "system_message_id": message_id, "topic": keys.get(campaign_topic or message_topic),
                    "status": status, "reason": reason, "provider_message_id": provider_id,
                    "occurred_at": now.isoformat()}
            for endpoint_id, _ in subscribers:
                rows.append({"endpoint_id": endpoint_id, "message_id": _message_id(), "event_type": kind,
                             "contact_id": contact_id, "ledger_event_id": None, "delivery_id": delivery_id,
                             "payload": {"type": kind, "timestamp": now.isoformat(), "data": data},
                             "email": None if contact_status == "erased" else email, "status": "pending",
                             "attempts": 0, "next_attempt_at": now, "created_at": now})
    _write(rows)

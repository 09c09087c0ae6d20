"""Provider feedback: store SendGrid events once, then turn each into ledger events and suppressions.

`receive` de-duplicates a webhook batch by `sg_event_id` and stores the new
events; `process` claims stored events and applies them one by one with
`apply`. Claiming sets `processed_at` in the same transaction as the effects,
so running `process` twice on the same ids does nothing twice.
"""
from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from dataclasses import dataclass, field

from flask import current_app
from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite

from . import actors, contacts, engagement
from .commands import DomainError, consent, people
from .emails import InvalidEmail, normalize
from .extensions import db
from .models import Contact, Delivery, Subscription, Topic, WebhookEvent, utcnow

log = logging.getLogger(__name__)

ACTOR = actors.webhook("sendgrid")
SOURCE = ACTOR.source

# A later event never overwrites a later stage of the same message: SendGrid
# does not promise order, and "processed" may arrive after "delivered".
PROVIDER_STAGES = {
    "processed": 1, "deferred": 2,
    "delivered": 3, "bounce": 3, "blocked": 3, "dropped": 3,
    "open": 4, "click": 5,
    "spamreport": 6, "unsubscribe": 6, "group_unsubscribe": 6, "group_resubscribe": 6,
}
SOFT_FAILURES = ("deferred", "blocked")

# Outcomes counted by `process`.
APPLIED, IGNORED, FAILED, ALREADY_DONE = "applied", "ignored", "failed", "already_processed"


# -- receiving ------------------------------------------------------------------

@dataclass
class Receipt:
    """What a webhook batch contained."""

    new_ids: list[int]
    received: int
    duplicates: int
    invalid: int


def _valid(item) -> bool:
    return (isinstance(item, dict)
            and isinstance(item.get("sg_event_id"), str) and 0 < len(item["sg_event_id"]) <= 200
            and isinstance(item.get("event"), str) and 0 < len(item["event"]) <= 32)


def receive(events: list) -> Receipt:
    """Store the events not seen before (one INSERT .. ON CONFLICT DO NOTHING); return their ids."""
    fresh: dict[str, dict] = {}
    invalid = 0
    for item in events:
        if _valid(item):
            fresh.setdefault(item["sg_event_id"], item)
        else:
            invalid += 1
    new_ids: list[int] = []
    if fresh:
        dialect = postgresql if db.engine.dialect.name == "postgresql" else sqlite
        now = utcnow()
        statement = (
            dialect.insert(WebhookEvent)
            .on_conflict_do_nothing(index_elements=["provider_event_id"])
            .returning(WebhookEvent.id)
        )
        rows = [{"provider_event_id": key, "event": item["event"], "payload": item, "received_at": now}
                for key, item in fresh.items()]
        new_ids = sorted(db.session.scalars(statement, rows).all())
    valid = len(events) - invalid
    return Receipt(new_ids=new_ids, received=len(events), duplicates=valid - len(new_ids), invalid=invalid)


def stale_event_ids(older_than: dt.timedelta = dt.timedelta(minutes=2),
                    give_up_after: dt.timedelta = dt.timedelta(days=1), limit: int = 5000) -> list[int]:
    """Stored events nobody processed (broker message lost, or processing failed) within a day."""
    now = utcnow()
    return list(db.session.scalars(
        select(WebhookEvent.id)
        .where(WebhookEvent.processed_at.is_(None),
               WebhookEvent.received_at < now - older_than,
               WebhookEvent.received_at > now - give_up_after)
        .order_by(WebhookEvent.id).limit(limit)
    ))


# -- processing -----------------------------------------------------------------

@dataclass
class Summary:
    outcomes: Counter = field(default_factory=Counter)


def process(event_ids: list[int], chunk: int = 200) -> Summary:
    """Claim and apply stored events, committing per chunk; a failed event is left for a retry."""
    summary = Summary()
    for start in range(0, len(event_ids), chunk):
        ids = event_ids[start:start + chunk]
        claimed = set(db.session.scalars(
            update(WebhookEvent)
            .where(WebhookEvent.id.in_(ids), WebhookEvent.processed_at.is_(None))
            .values(processed_at=utcnow())
            .returning(WebhookEvent.id)
            .execution_options(synchronize_session=False)
        ))
        if skipped := len(set(ids) - claimed):
            summary.outcomes[ALREADY_DONE] += skipped
        events = db.session.scalars(select(WebhookEvent).where(WebhookEvent.id.in_(claimed))).all()
        # Apply in the order the recipient acted, so unsubscribe-then-resubscribe ends subscribed.
        for event in sorted(events, key=lambda e: (_timestamp(e.payload), e.id)):
            try:
                with db.session.begin_nested():
                    summary.outcomes[apply(event.payload)] += 1
            except Exception:  # noqa: BLE001 - one bad event must not block the batch
                log.exception("webhook event %s (%s) failed; left for a retry", event.id, event.provider_event_id)
                db.session.execute(update(WebhookEvent).where(WebhookEvent.id == event.id)
                                   .values(processed_at=None).execution_options(synchronize_session=False))
                summary.outcomes[FAILED] += 1
        db.session.commit()
    return summary


def _timestamp(payload: dict) -> int:
    value = payload.get("timestamp")
    return value if isinstance(value, int) else 0


def apply(payload: dict) -> str:
    """Apply one SendGrid event to deliveries, consent and suppressions; return the outcome."""
    kind = payload.get("event")
    if kind == "bounce" and payload.get("type") == "blocked":
        kind = "blocked"
    delivery = _delivery_of(payload)
    engagement.record(payload, delivery)
    contact = _contact_of(payload, delivery)
    previous_stage = delivery.provider_status if delivery is not None else None
    if delivery is not None and kind in PROVIDER_STAGES:
        if PROVIDER_STAGES[kind] >= PROVIDER_STAGES.get(previous_stage or "", 0):
            delivery.provider_status = kind
            delivery.updated_at = utcnow()

    address_hash = _address_hash(payload, contact)
    live = contact if contact is not None and contact.status != "erased" else None
    detail = {"sg_event_id": payload.get("sg_event_id"), "event": payload.get("event")}
    if delivery is not None:
        detail["delivery_id"] = delivery.id

    if kind == "bounce":
        if address_hash is None:
            return IGNORED
        people.suppress(ACTOR, "all", "hard_bounce", contact=live, email_hash=address_hash)
        return APPLIED
    if kind in SOFT_FAILURES:
        return _soft_failure(live, address_hash, already_counted=previous_stage in SOFT_FAILURES)
    if kind == "delivered" and live is not None:
        # The limit counts consecutive soft failures: a delivery proves the mailbox works.
        live.soft_bounces = 0
    if kind in ("open", "click") and live is not None:
        # Reading our mail is an interaction: it keeps the retention clock from running out.
        live.last_interaction_at = utcnow()
    if kind == "spamreport":
        if address_hash is None:
            return IGNORED
        # Suppress first so the complaint, which fresh consent does not lift, is the reason on file.
        people.suppress(ACTOR, "marketing", "spam_complaint", contact=live, email_hash=address_hash)
        _withdraw_all(live, payload, detail)
        return APPLIED
    if kind == "unsubscribe":
        if live is None:
            if address_hash is None:
                return IGNORED
            people.suppress(ACTOR, "marketing", "opt_out", email_hash=address_hash)
            return APPLIED
        _withdraw_all(live, payload, detail)
        return APPLIED
    if kind in ("group_unsubscribe", "group_resubscribe"):
        return _group_change(kind, live, payload, detail)
    if kind in PROVIDER_STAGES:
        return APPLIED if delivery is not None or live is not None else IGNORED
    return IGNORED


def _soft_failure(contact: Contact | None, address_hash: str | None, already_counted: bool) -> str:
    # SendGrid reports "deferred" at every retry of one message: count a message once.
    if contact is None or already_counted:
        return IGNORED
    contact.soft_bounces = (contact.soft_bounces or 0) + 1
    if contact.soft_bounces >= current_app.config["PC_SOFT_BOUNCE_LIMIT"]:
        people.suppress(ACTOR, "all", "soft_bounce_limit", contact=contact,
                        email_hash=address_hash or contact.email_hash)
    return APPLIED


def _withdraw_all(contact: Contact | None, payload: dict, detail: dict) -> None:
    if contact is None or contact.marketing_opt_out_event_id is not None:
        return
    consent.withdraw(ACTOR, contact, None, ip=_text(payload.get("ip"), 64),
                     user_agent=_text(payload.get("useragent"), 512), detail=detail)


def _group_change(kind: str, contact: Contact | None, payload: dict, detail: dict) -> str:
    group = payload.get("asm_group_id")
    topic = db.session.scalar(select(Topic).where(Topic.sendgrid_group_id == group)) \
        if isinstance(group, int) and not isinstance(group, bool) else None
    if contact is None or topic is None or topic.kind != "marketing":
        return IGNORED
    current = db.session.get(Subscription, (contact.id, topic.id))
    state = current.state if current is not None else None
    proof = {"ip": _text(payload.get("ip"), 64), "user_agent": _text(payload.get("useragent"), 512)}
    if kind == "group_unsubscribe":
        if state == "unsubscribed":
            return IGNORED
        consent.withdraw(ACTOR, contact, topic, detail=detail, **proof)
    else:
        if state == "subscribed":
            return IGNORED
        # Resubscribing on SendGrid's page is the recipient's act, but reported by the provider: a
        # confirmed grant where nothing stands in the way, otherwise a request for their own confirmation.
        try:
            with db.session.begin_nested():
                consent.grant(ACTOR, contact, topic, confirmed=True, detail=detail, **proof)
        except DomainError as refused:
            if refused.code != "needs_confirmation":
                raise
            consent.grant(ACTOR, contact, topic, confirmed=False, detail=detail, **proof)
    return APPLIED


# -- lookups --------------------------------------------------------------------

def _delivery_of(payload: dict) -> Delivery | None:
    raw = payload.get("delivery_id")
    if isinstance(raw, int) and not isinstance(raw, bool):
        delivery_id = raw
    elif isinstance(raw, str) and raw.isdigit() and len(raw) < 19:
        delivery_id = int(raw)
    else:
        return None
    return db.session.get(Delivery, delivery_id)


def _contact_of(payload: dict, delivery: Delivery | None) -> Contact | None:
    if delivery is not None:
        return db.session.get(Contact, delivery.contact_id)
    email = payload.get("email")
    try:
        return contacts.find(email) if isinstance(email, str) else None
    except InvalidEmail:
        return None


def _address_hash(payload: dict, contact: Contact | None) -> str | None:
    """The suppression key: the contact's, or (erased or unknown contact) the event address's."""
    if contact is not None and contact.status != "erased":
        return contact.email_hash
    email = payload.get("email")
    if isinstance(email, str):
        try:
            return contacts.hash_of(normalize(email))
        except InvalidEmail:
            pass
    return contact.email_hash if contact is not None else None


def _text(value, limit: int) -> str | None:
    return value[:limit] if isinstance(value, str) and value else None

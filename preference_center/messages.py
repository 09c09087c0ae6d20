"""System messages: one address, a system topic, idempotent on Idempotency-Key (each API token has its own keys)."""
from __future__ import annotations

import hashlib
import json

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from . import compose, contacts
from .actors import ActorKind, from_label
from .emails import InvalidEmail, normalize
from .errors import Code, DomainError, ValidationError
from .extensions import db
from .mail import TemplateError, check
from .models import ApiToken, Delivery, SystemMessage, Topic
from .rules import SKIP_ERASED


class IdempotencyConflict(DomainError):
    """The key was used before with a different request."""

    def __init__(self, message: str):
        super().__init__(message, "Idempotency-Key", code=Code.IDEMPOTENCY_CONFLICT)


def digest(data: dict) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def sender_token_id(created_by: str) -> int | None:
    """The API token behind an "api:<token name>" actor label (token names are unique); None for other doors."""
    actor = from_label(created_by)
    if actor.kind != ActorKind.API:
        return None
    return db.session.scalar(select(ApiToken.id).where(ApiToken.name == actor.name))


def existing(key: str | None, token_id: int | None = None) -> tuple[SystemMessage, Delivery] | None:
    """The message this token (None: no token) sent with `key`, and its delivery; another token's never."""
    if not key:
        return None
    sender = SystemMessage.api_token_id == token_id if token_id is not None else SystemMessage.api_token_id.is_(None)
    message = db.session.scalar(select(SystemMessage).where(SystemMessage.idempotency_key == key, sender))
    if message is None:
        return None
    return message, db.session.scalar(select(Delivery).where(Delivery.system_message_id == message.id))


def create(data: dict, *, key: str | None, created_by: str) -> tuple[SystemMessage, Delivery, bool]:
    """Store a system message and its queued delivery; (message, delivery, created)."""
    request_digest = digest(data)
    token_id = sender_token_id(created_by)
    found = existing(key, token_id)
    if found is not None:
        if found[0].request_digest != request_digest:
            raise IdempotencyConflict("this Idempotency-Key was used with a different request")
        return found[0], found[1], False
    topic_key = data.get("topic")
    topic = db.session.scalar(select(Topic).where(Topic.key == topic_key)) if isinstance(topic_key, str) else None
    if topic is None:
        raise ValidationError(f"unknown topic {topic_key!r}", "topic", code="unknown_topic")
    if topic.kind != "system":
        raise ValidationError("only system topics can be sent this way; marketing goes out as campaigns",
                              "topic", code="marketing_topic")
    fields = {}
    for name, required, limit in (("subject", True, 500), ("text", False, 200_000), ("html", False, 200_000)):
        value = data.get(name)
        if value is None and not required:
            fields[name] = ""
            continue
        if not isinstance(value, str) or not value.strip() or len(value) > limit:
            raise ValidationError(f"{name} must be a non-empty string of at most {limit} characters", name)
        fields[name] = value
    if not fields["text"].strip() and not fields["html"].strip():
        raise ValidationError("a message needs text or html", "text")
    payload = data.get("data") or {}
    if not isinstance(payload, dict):
        raise ValidationError("data must be an object", "data")
    for name in ("subject", "text", "html"):
        try:
            check(fields[name])
        except TemplateError as exc:
            raise ValidationError(f"{name}: {exc}", name) from exc
    try:  # rendered with its own data, as the worker will: a message that cannot be rendered is refused now
        compose.check_system(topic, fields["subject"], fields["html"], fields["text"], payload)
    except TemplateError as exc:
        raise ValidationError(f"{exc.field or 'text'}: {exc}", exc.field or "text") from exc
    if not isinstance(data.get("to"), str):
        raise ValidationError("to must be an email address", "to", code="invalid_email")
    try:
        normalize(data["to"])
    except InvalidEmail as exc:
        raise ValidationError(f"to: invalid email address: {exc}", "to", code="invalid_email") from exc
    contact = contacts.find(data["to"])
    erased = None if contact is not None else contacts.erased_row(data["to"])
    if erased is not None:
        # An erased address is skipped without becoming a contact again: the message hangs on the erased row
        # and keeps nothing of what it said (SKIP_ERASED, the sending rule's reason for erased people).
        contact, fields, payload = erased, {"subject": "[erased]", "text": "", "html": ""}, {}
    elif contact is None:
        contact, _ = contacts.upsert(data["to"], {}, source=created_by)
    message = SystemMessage(topic_id=topic.id, contact_id=contact.id, idempotency_key=key, api_token_id=token_id,
                            request_digest=request_digest, data=payload, created_by=created_by, **fields)
    db.session.add(message)
    try:
        db.session.flush()
    except IntegrityError:
        # Two identical calls raced; the first one's row wins.
        db.session.rollback()
        found = existing(key, token_id)
        if found is None or found[0].request_digest != request_digest:
            raise IdempotencyConflict("this Idempotency-Key was used with a different request") from None
        return found[0], found[1], False
    delivery = Delivery(system_message_id=message.id, contact_id=contact.id, status="queued", attempts=0)
    if erased is not None:
        delivery.status, delivery.reason = "skipped", SKIP_ERASED
    db.session.add(delivery)
    db.session.flush()
    return message, delivery, True

"""System-message command: store one message and its queued delivery (idempotent per key)."""
from __future__ import annotations

from .. import audit, messages
from ..actors import Actor
from ..models import Delivery, SystemMessage


def send(actor: Actor, data: dict, *, key: str | None) -> tuple[SystemMessage, Delivery, bool]:
    """(message, delivery, created); a replay of an Idempotency-Key changes nothing and writes no audit entry."""
    message, delivery, created = messages.create(data, key=key, created_by=actor.label)
    if created:
        audit.record(actor, "message.create", target_type="system_message", target_id=message.id,
                     detail={"topic": data.get("topic")})
    return message, delivery, created

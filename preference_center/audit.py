"""The audit log: one entry of one shape for every change, whichever door it came through.

Shape: actor kind and name, action ('consent.grant', 'topic.update', ...),
target (type and id), detail, IP, time. Commands write it in the caller's
transaction, next to the change itself.
"""
from __future__ import annotations

from .actors import Actor, from_label
from .extensions import db
from .models import AuditLog, utcnow


def record(actor: Actor | str, action: str, *, target_type: str | None = None, target_id=None,
           detail: dict | None = None, ip: str | None = None) -> AuditLog:
    """Add an audit entry to the caller's transaction."""
    if isinstance(actor, str):
        actor = from_label(actor)
    entry = AuditLog(actor_kind=str(actor.kind), actor=actor.label[:200], action=action, target_type=target_type,
                     target_id=None if target_id is None else str(target_id)[:64],
                     detail=detail or {}, ip=ip or actor.ip, created_at=utcnow())
    db.session.add(entry)
    return entry


def record_many(rows: list[tuple[Actor, str, str, object, dict]]) -> None:
    """Several entries at once (actor, action, target type, target id, detail): one INSERT."""
    if not rows:
        return
    now = utcnow()
    db.session.execute(AuditLog.__table__.insert(), [
        {"actor_kind": str(actor.kind), "actor": actor.label[:200], "action": action, "target_type": target_type,
         "target_id": None if target_id is None else str(target_id)[:64], "detail": detail or {},
         "ip": actor.ip, "created_at": now}
        for actor, action, target_type, target_id, detail in rows])

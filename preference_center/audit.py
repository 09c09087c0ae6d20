"""The audit log: who changed what, when (staff, API tokens, the CLI)."""
from __future__ import annotations

from .extensions import db
from .models import AuditLog


def record(actor: str, action: str, *, target_type: str | None = None, target_id=None,
           detail: dict | None = None, ip: str | None = None) -> AuditLog:
    """Add an audit entry to the caller's transaction."""
    entry = AuditLog(actor=actor[:200], action=action, target_type=target_type,
                     target_id=None if target_id is None else str(target_id),
                     detail=detail or {}, ip=ip)
    db.session.add(entry)
    return entry

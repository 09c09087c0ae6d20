"""The audit log, newest first, a hundred entries a page."""
from __future__ import annotations

from flask import render_template

from ... import inputs
from ...models import AuditLog
from .. import bp, queries


@bp.get("/audit")
def audit_log():
    before = inputs.query_id("before", AuditLog.id)
    entries = queries.audit_entries(before)
    return render_template("admin/audit.html", entries=entries,
                           older=entries[-1].id if len(entries) == 100 else None)

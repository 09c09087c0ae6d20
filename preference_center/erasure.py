"""Erasure that leaves nothing: the traces of a person outside their contact row, found and removed.

`contacts.erase` blanks the contact, its ledger events' personal fields and its
system messages; `scrub` (called by it, in the same transaction) removes the
rest, wherever the address, or the name or phone next to it, was written:

- outbox `.eml` files addressed to or naming the address (development mail);
- stored provider webhook payloads naming the address (only the event kind
  and the provider's id stay, for de-duplication);
- import jobs: rows of not-yet-run uploaded files that hold the address are
  cut from the file, previews and file names that name it are blanked;
- delivery error texts (a provider's refusal quotes the address), audit and
  data-request details, suppression reasons and sources that name it;
- with SendGrid, a pending provider erasure (`ProviderErasure`, the one row
  that holds the address until the provider confirmed it; see provider_erasure.py).

On SQLite, deleted content is overwritten (`secure_delete`) and the WAL is
checkpointed and truncated after the erasure commits, so no old page image
keeps the address on disk. Only the keyed hash (suppression list, contact
row) remains. Ledger events are hash-chained and never rewritten: sources and
reasons refuse free text that holds an address (`refuse_addresses`).
"""
from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from flask import current_app
from sqlalchemy import Text, cast, event, or_, select, update
from sqlalchemy.engine import Engine

from . import provider_erasure
from .errors import N_, DomainError
from .extensions import db
from .models import AuditLog, Contact, DataRequest, Delivery, ImportJob, Suppression, WebhookEvent, utcnow

log = logging.getLogger(__name__)
ERASED = "[erased]"
# Imports whose file no worker reads right now: rows can be cut from them safely.
RESTING_IMPORTS = ("uploaded", "previewed", "failed")
ADDRESS = re.compile(r"[^\s<>()\[\]\"',;:@]+@[^\s<>()\[\]\"',;:@]+\.[^\s<>()\[\]\"',;:@]+")


@dataclass(frozen=True)
class Traces:
    """What identifies the person in free text, read before the contact row is blanked."""

    contact_id: int
    email: str | None
    name: str | None
    phone: str | None

    @property
    def needles(self) -> list[str]:
        """The strings that must not survive (lower case), the address first."""
        return [v.lower() for v in (self.email, self.name, self.phone) if v and len(v.strip()) >= 3]


def traces_of(contact: Contact) -> Traces:
    return Traces(contact.id, contact.email, contact.name, contact.phone)


def refuse_addresses(text: str | None, field: str) -> None:
    """Sources and reasons are codes or plain words: an email address in one would outlive an erasure."""
    if text and ADDRESS.search(text):
        raise DomainError(N_("%(field)s must not contain an email address: it is kept after the person's data is "
                              "erased (use the contact's id, or describe the case without the address)", field=field), field)


# -- the scrub ----------------------------------------------------------------------------

def scrub(traces: Traces) -> dict[str, int]:
    """Remove the person's traces outside their contact row (see the module docstring); counts per kind."""
    done = {"deliveries": _deliveries(traces), "webhook_events": 0, "imports": 0, "audit": 0, "requests": 0,
            "suppressions": 0, "outbox_files": 0}
    if traces.email:
        provider_erasure.queue(traces.email)
        done["webhook_events"] = _webhook_events(traces.email)
        done["imports"] = _imports(traces)
        done["audit"] = _audit(traces.email)
        done["suppressions"] = _suppressions(traces.email)
        done["outbox_files"] = _outbox(traces.email)
    done["requests"] = _requests(traces)
    _checkpoint_after_commit()
    return done


def _like(column, needle: str):
    """`column` (as text) contains `needle`, also as JSON writes it (non-ASCII escaped)."""
    text = cast(column, Text)
    escaped = json.dumps(needle)[1:-1]
    forms = {needle, escaped}
    return or_(*(text.ilike(f"%{_escape_like(form)}%", escape="\\") for form in forms))


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _names(value, needles: list[str]) -> bool:
    """Whether a JSON-like value holds any needle (case-insensitive)."""
    text = json.dumps(value, ensure_ascii=False, default=str).lower() if not isinstance(value, str) else value.lower()
    return any(n in text for n in needles)


def _blank(value, needles: list[str]):
    """The value with every list item naming a needle dropped and every string naming one blanked."""
    if isinstance(value, dict):
        return {k: _blank(v, needles) for k, v in value.items()}
    if isinstance(value, list):
        return [_blank(item, needles) for item in value
                if not (isinstance(item, (dict, list)) and _names(item, needles))]
    if isinstance(value, str) and _names(value, needles):
        return ERASED
    return value


def _deliveries(traces: Traces) -> int:
    result = db.session.execute(update(Delivery).where(Delivery.contact_id == traces.contact_id,
                                                       Delivery.error.is_not(None))
                                .values(error=ERASED).execution_options(synchronize_session=False))
    return result.rowcount or 0


def _webhook_events(address: str) -> int:
    rows = db.session.scalars(select(WebhookEvent).where(_like(WebhookEvent.payload, address))).all()
    now = utcnow()
    for row in rows:
        # The provider's id stays (a replay is still recognised); what the event said about the person goes.
        row.payload = {"event": row.event, "erased": True}
        row.processed_at = row.processed_at or now
    return len(rows)


def _audit(address: str) -> int:
    rows = db.session.scalars(select(AuditLog).where(or_(_like(AuditLog.detail, address),
                                                         AuditLog.target_id.ilike(f"%{_escape_like(address)}%",
                                                                                  escape="\\")))).all()
    for row in rows:
        row.detail = _blank(row.detail or {}, [address])
        if row.target_id and address in row.target_id.lower():
            row.target_id = ERASED
    return len(rows)


def _requests(traces: Traces) -> int:
    rows = db.session.scalars(select(DataRequest).where(DataRequest.contact_id == traces.contact_id)).all()
    changed = 0
    for row in rows:
        for name in ("detail", "refusal_reason", "extension_reason"):
            value = getattr(row, name)
            if value and _names(value, traces.needles):
                setattr(row, name, _blank(value, traces.needles))
                changed += 1
    return changed


def _suppressions(address: str) -> int:
    rows = db.session.scalars(select(Suppression).where(or_(
        Suppression.reason.ilike(f"%{_escape_like(address)}%", escape="\\"),
        Suppression.source.ilike(f"%{_escape_like(address)}%", escape="\\")))).all()
    for row in rows:
        row.reason = ERASED if address in row.reason.lower() else row.reason
        row.source = ERASED if address in row.source.lower() else row.source
    return len(rows)


def _imports(traces: Traces) -> int:
    address = traces.email.lower()
    jobs = db.session.scalars(select(ImportJob).where(or_(
        _like(ImportJob.preview, address), ImportJob.filename.ilike(f"%{_escape_like(address)}%", escape="\\"),
        ImportJob.stored_path.is_not(None)))).all()
    changed = 0
    for job in jobs:
        touched = False
        if job.preview and _names(job.preview, [address]):
            job.preview = _blank(job.preview, traces.needles)
            touched = True
        if address in (job.filename or "").lower():
            job.filename = ERASED
            touched = True
        if job.stored_path and job.status in RESTING_IMPORTS:
            removed = _cut_rows(job, address)
            if removed:
                job.total = max(0, (job.total or 0) - removed)
                if job.status == "previewed":
                    # Its counts included the person: the import is previewed again before it runs.
                    job.status, job.preview = "uploaded", {}
                touched = True
        changed += touched
    return changed


def _cut_rows(job: ImportJob, address: str) -> int:
    """Rewrite a resting import's file without the rows holding `address`; the number of rows cut."""
    path = Path(job.stored_path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return 0
    if address.encode() not in raw.lower():
        return 0
    text = raw.decode("utf-8-sig")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=job.delimiter)
    out = io.StringIO()
    writer = csv.writer(out, delimiter=job.delimiter, lineterminator="\n")
    removed, data_rows, header_pending = 0, 0, job.has_header
    for cells in reader:
        blank = not any(c.strip() for c in cells)
        if not blank and header_pending:
            header_pending = False
        elif not blank:
            data_rows += 1
            if any(address in c.lower() for c in cells):
                removed += 1
                if data_rows <= (job.processed or 0):
                    job.processed -= 1
                continue
        writer.writerow(cells)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
    with os.fdopen(fd, "wb") as fh:
        fh.write(out.getvalue().encode())
    os.replace(tmp, path)
    return removed


def _outbox(address: str) -> int:
    """Delete development mail to or naming the address (the outbox page lists what is left)."""
    folder = Path(current_app.config["PC_INSTANCE_PATH"]) / "outbox"
    if not folder.is_dir():
        return 0
    needle = address.encode()
    removed = 0
    for path in folder.glob("*.eml"):
        try:
            if needle in path.read_bytes().lower():
                path.unlink()
                removed += 1
        except FileNotFoundError:
            continue
    return removed


# -- SQLite: no old copy on disk -----------------------------------------------------------

@event.listens_for(Engine, "connect")
def _sqlite_secure_delete(dbapi_connection, connection_record):
    # Deleted and overwritten content is zeroed in the file instead of lingering in free pages.
    if type(dbapi_connection).__module__.startswith("sqlite3"):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA secure_delete=ON")
        cursor.close()


def checkpoint(engine) -> None:
    """Copy SQLite's WAL into the database file and truncate it (no-op on other databases)."""
    if engine.dialect.name != "sqlite":
        return
    with engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")


def _checkpoint_after_commit() -> None:
    from .commands._tx import after_commit

    engine = db.engine
    if engine.dialect.name == "sqlite":
        after_commit(lambda: checkpoint(engine))

"""Data-subject rights: the request log, its deadlines, and the copy of what we hold (JSON/CSV).

Each request is a DataRequest row due one calendar month after it was
received (31 January -> 28/29 February), extendable once by up to two more
months; the commands in commands/people.py and commands/requests.py carry
the rights out and end the requests.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import json

from dateutil.relativedelta import relativedelta
from sqlalchemy import select

from . import attributes, contacts, ledger
from .extensions import db
from .models import ConsentEvent, Contact, DataRequest, Topic, utcnow
from .states import RequestKind, RequestStatus

KINDS = tuple(str(k) for k in RequestKind)
EXPORT_FORMATS = ("json", "csv", "zip")

# Spreadsheet programs run cells that start like a formula; a leading quote disarms them.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


# -- the request log ------------------------------------------------------------

def due_date(received: dt.datetime, months: int = 1) -> dt.datetime:
    """`months` calendar months after `received` (the last day of a shorter month when the day is missing)."""
    return received + relativedelta(months=months)


def open_request(contact: Contact, kind: str, *, detail: dict | None = None,
                 received: dt.datetime | None = None) -> DataRequest:
    """Log a data-subject request, due one calendar month after it was received."""
    if kind not in KINDS:
        raise ValueError(f"unknown data request kind {kind!r}")
    received = received or utcnow()
    request = DataRequest(contact_id=contact.id, kind=str(kind), status=RequestStatus.OPEN, requested_at=received,
                          due_at=due_date(received), detail=detail or {})
    db.session.add(request)
    db.session.flush()
    return request


def complete(request: DataRequest, *, detail: dict | None = None) -> DataRequest:
    """Mark a request done; callers do the thing first (see commands/requests.py)."""
    request.status = RequestStatus.COMPLETED
    request.completed_at = utcnow()
    if detail:
        request.detail = {**(request.detail or {}), **detail}
    return request


def latest_open(contact: Contact, kinds) -> DataRequest | None:
    """The newest open request of these kinds (one kind or a tuple of them)."""
    kinds = (kinds,) if isinstance(kinds, str) else tuple(kinds)
    return db.session.scalar(select(DataRequest).where(
        DataRequest.contact_id == contact.id, DataRequest.kind.in_(kinds), DataRequest.status == RequestStatus.OPEN)
        .order_by(DataRequest.id.desc()).limit(1))


def done(contact: Contact, kind: str, detail: dict) -> DataRequest:
    """Log a request that is fulfilled on the spot, or complete the one already open."""
    request = latest_open(contact, kind) or open_request(contact, kind, detail=detail)
    return complete(request, detail=detail)


def has_objected(contact: Contact) -> bool:
    event_id = contact.marketing_opt_out_event_id
    return event_id is not None and db.session.get(ConsentEvent, event_id).action == ledger.OBJECT


# -- what we hold -------------------------------------------------------------------

def consent_history(contact: Contact) -> list[dict]:
    """The contact's ledger events, oldest first, in plain fields."""
    names = {t.id: (t.key, t.name) for t in db.session.scalars(select(Topic))}
    events = db.session.scalars(select(ConsentEvent).where(ConsentEvent.contact_id == contact.id)
                                .order_by(ConsentEvent.id))
    history = []
    for event in events:
        key, name = names.get(event.topic_id, (None, None))
        history.append({
            "id": event.id,
            "occurred_at": event.occurred_at.isoformat(),
            "action": event.action,
            "scope": event.scope,
            "topic": key,
            "topic_name": name,
            "legal_basis": event.legal_basis,
            "confirmed": bool(event.confirmed),
            "source": event.source,
            "consent_text_version": event.consent_text_version,
            "ip": event.ip,
            "user_agent": event.user_agent,
            "detail": {k: v for k, v in (event.detail or {}).items()},
        })
    return history


def holdings(contact: Contact) -> dict:
    """Everything we hold about a contact, as one dict (the copy they may download)."""
    requests = db.session.scalars(select(DataRequest).where(DataRequest.contact_id == contact.id)
                                  .order_by(DataRequest.id))
    return {
        "profile": {
            "email": contact.email,
            **{name: getattr(contact, name) for name in contacts.PROFILE_FIELDS},
            "relationship": contact.relationship,
            "status": contact.status,
            "created_at": contact.created_at.isoformat(),
            "last_interaction_at": contact.last_interaction_at.isoformat(),
        },
        # Custom attributes staff, imports or our systems keep about the person (attributes.py).
        "attributes": attributes.of(contact),
        "subscriptions": [
            {k: v[k] for k in ("topic", "name", "kind", "state", "basis", "reason")}
            for v in contacts.subscriptions_view(contact)
        ],
        "consent_history": consent_history(contact),
        "data_requests": [
            {"kind": r.kind, "status": r.status, "requested_at": r.requested_at.isoformat(),
             "due_at": r.due_at.isoformat(), "completed_at": r.completed_at.isoformat() if r.completed_at else None,
             "refusal_reason": r.refusal_reason, "extension_reason": r.extension_reason}
            for r in requests
        ],
        "exported_at": utcnow().isoformat(),
    }


def to_json(data: dict) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False, sort_keys=False)


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        value = json.dumps(value, ensure_ascii=False, sort_keys=True)
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


CSV_COLUMNS = ("section", "field", "value", "occurred_at", "action", "scope", "topic", "legal_basis",
               "confirmed", "source", "consent_text_version", "ip", "user_agent", "detail")


def to_csv(data: dict) -> str:
    """One table: profile fields, subscriptions, then every consent event, one per row."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for field, value in data["profile"].items():
        writer.writerow(["profile", field, _cell(value)] + [""] * (len(CSV_COLUMNS) - 3))
    for key, value in data.get("attributes", {}).items():
        writer.writerow(["attribute", key, _cell(attributes.as_text(value))] + [""] * (len(CSV_COLUMNS) - 3))
    for sub in data["subscriptions"]:
        writer.writerow(["subscription", _cell(sub["topic"]), sub["state"], "", "", "", _cell(sub["topic"]),
                         sub["basis"], "", "", "", "", "", _cell({"reason": sub["reason"]})])
    for event in data["consent_history"]:
        writer.writerow(["consent_event", event["id"], "", event["occurred_at"], event["action"], event["scope"],
                         _cell(event["topic"]), _cell(event["legal_basis"]), event["confirmed"],
                         _cell(event["source"]), _cell(event["consent_text_version"]), _cell(event["ip"]),
                         _cell(event["user_agent"]), _cell(event["detail"])])
    for request in data["data_requests"]:
        writer.writerow(["data_request", request["kind"], request["status"], request["requested_at"]]
                        + [""] * (len(CSV_COLUMNS) - 5) + [_cell({"due_at": request["due_at"],
                                                                  "completed_at": request["completed_at"]})])
    return out.getvalue()


# The rights themselves are commands: see commands/people.py and commands/requests.py.

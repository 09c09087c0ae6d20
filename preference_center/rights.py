"""Data-subject rights: copy (JSON/CSV), rectification, restriction, objection, erasure.

Each request is a DataRequest row due one month after it was made, completed
when done; each change is a ledger event in the caller's transaction.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import json

from sqlalchemy import select

from . import contacts, ledger
from .extensions import db
from .models import ConsentEvent, Contact, DataRequest, Topic, utcnow

DUE_AFTER = dt.timedelta(days=30)
KINDS = ("access", "erasure", "restriction", "objection", "rectification", "portability")
EXPORT_FORMATS = ("json", "csv")

# Spreadsheet programs run cells that start like a formula; a leading quote disarms them.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


# -- the request log ------------------------------------------------------------

def open_request(contact: Contact, kind: str, *, detail: dict | None = None) -> DataRequest:
    """Log a data-subject request, due one month from now."""
    if kind not in KINDS:
        raise ValueError(f"unknown data request kind {kind!r}")
    now = utcnow()
    request = DataRequest(contact_id=contact.id, kind=kind, status="open", requested_at=now,
                          due_at=now + DUE_AFTER, detail=detail or {})
    db.session.add(request)
    db.session.flush()
    return request


def complete_request(request: DataRequest, *, detail: dict | None = None) -> DataRequest:
    request.status = "completed"
    request.completed_at = utcnow()
    if detail:
        request.detail = {**(request.detail or {}), **detail}
    return request


def latest_open_request(contact: Contact, kind: str) -> DataRequest | None:
    return db.session.scalar(select(DataRequest).where(
        DataRequest.contact_id == contact.id, DataRequest.kind == kind, DataRequest.status == "open")
        .order_by(DataRequest.id.desc()).limit(1))


def _done(contact: Contact, kind: str, detail: dict) -> DataRequest:
    """Log a request that is fulfilled on the spot, or complete the one already open."""
    request = latest_open_request(contact, kind) or open_request(contact, kind, detail=detail)
    return complete_request(request, detail=detail)


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
        "subscriptions": [
            {k: v[k] for k in ("topic", "name", "kind", "state", "basis", "reason")}
            for v in contacts.subscriptions_view(contact)
        ],
        "consent_history": consent_history(contact),
        "data_requests": [
            {"kind": r.kind, "status": r.status, "requested_at": r.requested_at.isoformat(),
             "due_at": r.due_at.isoformat(), "completed_at": r.completed_at.isoformat() if r.completed_at else None}
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


# -- the rights -------------------------------------------------------------------

def request_export(contact: Contact) -> DataRequest:
    """Log a request for a portable copy (fulfilled once the emailed link is used)."""
    return latest_open_request(contact, "portability") or open_request(contact, "portability")


def export(contact: Contact, fmt: str, *, source: str, ip: str | None = None,
           user_agent: str | None = None) -> str:
    """The contact's data as JSON or CSV text; records the export in the ledger."""
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"format must be one of {', '.join(EXPORT_FORMATS)}")
    ledger.append(ledger.EXPORT, contact=contact, scope=ledger.CONTACT, source=source, ip=ip,
                  user_agent=user_agent, detail={"format": fmt})
    _done(contact, "portability", {"format": fmt})
    data = holdings(contact)
    return to_json(data) if fmt == "json" else to_csv(data)


def rectify(contact: Contact, fields: dict, *, source: str, ip: str | None = None,
            user_agent: str | None = None) -> list[str]:
    """Correct profile fields; returns the names of those that changed (none: nothing is logged)."""
    wanted = contacts.clean_profile({k: v for k, v in fields.items() if k in contacts.PROFILE_FIELDS})
    changed = sorted(k for k, v in wanted.items() if getattr(contact, k) != v)
    if changed:
        contacts.upsert(contact.email, {k: wanted[k] for k in changed}, source=source, ip=ip, user_agent=user_agent)
        _done(contact, "rectification", {"fields": changed})
    return changed


def restrict(contact: Contact, *, source: str, ip: str | None = None, user_agent: str | None = None) -> bool:
    """Art. 18: stop marketing processing until lifted. False if already restricted."""
    if contact.status != "active":
        return False
    ledger.append(ledger.RESTRICT, contact=contact, scope=ledger.CONTACT, source=source, ip=ip, user_agent=user_agent)
    _done(contact, "restriction", {"restricted": True})
    return True


def lift_restriction(contact: Contact, *, source: str, ip: str | None = None, user_agent: str | None = None) -> bool:
    """End a restriction. False if there was none."""
    if contact.status != "restricted":
        return False
    ledger.append(ledger.LIFT_RESTRICTION, contact=contact, scope=ledger.CONTACT, source=source, ip=ip,
                  user_agent=user_agent)
    _done(contact, "restriction", {"restricted": False})
    return True


def has_objected(contact: Contact) -> bool:
    event_id = contact.marketing_opt_out_event_id
    return event_id is not None and db.session.get(ConsentEvent, event_id).action == ledger.OBJECT


def object_to_marketing(contact: Contact, *, source: str, ip: str | None = None,
                        user_agent: str | None = None) -> bool:
    """Art. 21(2): object to direct marketing (stops all of it). False if already objected."""
    if has_objected(contact):
        return False
    contacts.record_consent(contact, action=ledger.OBJECT, topic=None, legal_basis="legitimate_interest",
                            source=source, ip=ip, user_agent=user_agent)
    _done(contact, "objection", {})
    return True


def request_erasure(contact: Contact) -> DataRequest:
    """Log an erasure request (carried out once the emailed link is used)."""
    return latest_open_request(contact, "erasure") or open_request(contact, "erasure")


def erase(contact: Contact, *, source: str, ip: str | None = None, user_agent: str | None = None) -> ledger.ConsentEvent:
    """Art. 17: erase personal data (contacts.erase) and close the request."""
    event = contacts.erase(contact, source=source, ip=ip, user_agent=user_agent)
    _done(contact, "erasure", {})
    return event

"""A contact's ledger as sentences a staff member can read out to the person."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select

from ..extensions import db
from ..models import ConsentEvent, Contact, Topic

SOURCES = {
    "preferences-page": "via the preferences page",
    "unsubscribe-page": "via the unsubscribe page",
    "one-click": "via the one-click unsubscribe of their email program",
    "unsubscribe-undo": "by undoing an unsubscribe",
    "subscribe-form": "via the public subscription form",
    "subscribe-confirm": "by opening the confirmation link",
    "data-rights-page": "via the data rights page",
    "cli": "from the command line",
    "test": "by a test",
}


@dataclass
class Entry:
    event_id: int
    at: dt.datetime
    sentence: str
    action: str
    hash: str


def when(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def how(source: str) -> str:
    """Where a change came from, in words."""
    if source in SOURCES:
        return SOURCES[source]
    kind, _, rest = source.partition(":")
    if kind == "import":
        job, _, text = rest.partition(":")
        return f"via CSV import #{job}" + (f" ({text})" if text else "")
    if kind == "staff":
        return f"by staff member {rest}"
    if kind == "api":
        token, _, text = rest.partition(":")
        return f"via the API (token {token})" + (f", {text}" if text else "")
    if kind in ("sendgrid", "webhook", "provider"):
        return f"reported by the mail provider ({rest or kind})"
    return f"via {source}"


def _what(event: ConsentEvent, topic: Topic | None) -> str:
    name = topic.name if topic else "a topic"
    detail = event.detail or {}
    action, scope = event.action, event.scope
    if action == "grant" and scope == "topic":
        verb = "granted consent to" if event.legal_basis == "consent" else "subscribed to"
        return f"{verb} {name}" + ("" if event.confirmed else " (not confirmed yet)")
    if action == "grant":
        return "allowed marketing email again"
    if action == "withdraw" and scope == "topic":
        return f"unsubscribed from {name}"
    if action == "withdraw":
        return "unsubscribed from all marketing"
    if action == "object":
        return f"objected to {name}" if scope == "topic" else "objected to direct marketing"
    if action == "restrict":
        return "asked us to restrict processing"
    if action == "lift_restriction":
        return "restriction of processing lifted"
    if action == "rectify":
        return "details corrected: " + ", ".join(detail.get("fields") or [])
    if action == "erase":
        return "personal data erased"
    if action == "export":
        return "a copy of the data was downloaded"
    if action == "suppress":
        scope_words = "all mail" if detail.get("scope") == "all" else "marketing mail"
        return f"address blocked from {scope_words} ({detail.get('reason', 'no reason given')})"
    if action == "lift_suppression":
        scope_words = "all mail" if detail.get("scope") == "all" else "marketing mail"
        return (f"block from {scope_words} ({detail.get('reason', 'no reason given')}) lifted: "
                f"{detail.get('why', 'no reason given')}")
    if action == "relationship":
        return f"relationship recorded as {detail.get('relationship', 'unknown')}"
    if action == "tracking":
        return "agreed to open and click tracking" if detail.get("allowed") else "refused open and click tracking"
    return action


def sentence(event: ConsentEvent, topic: Topic | None) -> str:
    """'2026-11-25 14:03 UTC — granted consent to News via preferences page (IP 203.0.113.7), consent text v1'."""
    text = f"{when(event.occurred_at)} — {_what(event, topic)} {how(event.source)}"
    if event.ip:
        text += f" (IP {event.ip})"
    if event.consent_text_version:
        text += f", consent text v{event.consent_text_version}"
    if event.redacted:
        text += " [personal details erased]"
    return text


def timeline(contact: Contact) -> list[Entry]:
    """Every ledger event of the contact, newest first, as sentences."""
    topics = {t.id: t for t in db.session.scalars(select(Topic))}
    events = db.session.scalars(select(ConsentEvent).where(ConsentEvent.contact_id == contact.id)
                                .order_by(ConsentEvent.id.desc()))
    return [Entry(e.id, e.occurred_at, sentence(e, topics.get(e.topic_id)), e.action, e.hash) for e in events]

"""A contact's ledger as sentences a staff member can read out to the person."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from ..extensions import db
from ..models import ConsentEvent, Contact, Topic
from .labels import label

# Each is a whole phrase that follows what was done ("unsubscribed from News" + "via the unsubscribe page").
SOURCES = {
    "preferences-page": _l("via the preferences page"),
    "unsubscribe-page": _l("via the unsubscribe page"),
    "one-click": _l("via the one-click unsubscribe of their email program"),
    "unsubscribe-undo": _l("by undoing an unsubscribe"),
    "subscribe-form": _l("via the public subscription form"),
    "subscribe-confirm": _l("by opening the confirmation link"),
    "data-rights-page": _l("via the data rights page"),
    "cli": _l("from the command line"),
    "test": _l("by a test"),
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
    """Where a change came from, in words (in the language of the request)."""
    if source in SOURCES:
        return str(SOURCES[source])
    kind, _sep, rest = source.partition(":")
    if kind == "import":
        job, _sep, text = rest.partition(":")
        if text:
            return _("via CSV import #%(job)s (%(text)s)", job=job, text=text)
        return _("via CSV import #%(job)s", job=job)
    if kind == "staff":
        return _("by staff member %(who)s", who=rest)
    if kind == "api":
        token, _sep, text = rest.partition(":")
        if text:
            return _("via the API (token %(token)s), %(text)s", token=token, text=text)
        return _("via the API (token %(token)s)", token=token)
    if kind in ("sendgrid", "webhook", "provider"):
        return _("reported by the mail provider (%(name)s)", name=rest or kind)
    return _("via %(source)s", source=source)


def _what(event: ConsentEvent, topic: Topic | None) -> str:
    name = topic.name if topic else _("a topic")
    detail = event.detail or {}
    action, scope = event.action, event.scope
    everything = detail.get("scope") == "all"
    reason = detail.get("reason") or _("no reason given")
    if action == "grant" and scope == "topic":
        if event.legal_basis == "consent":
            if event.confirmed:
                return _("granted consent to %(topic)s", topic=name)
            return _("granted consent to %(topic)s (not confirmed yet)", topic=name)
        if event.confirmed:
            return _("subscribed to %(topic)s", topic=name)
        return _("subscribed to %(topic)s (not confirmed yet)", topic=name)
    if action == "grant":
        return _("allowed marketing email again")
    if action == "withdraw" and scope == "topic":
        return _("unsubscribed from %(topic)s", topic=name)
    if action == "withdraw":
        return _("unsubscribed from all marketing")
    if action == "object":
        return _("objected to %(topic)s", topic=name) if scope == "topic" else _("objected to direct marketing")
    if action == "restrict":
        return _("asked us to restrict processing")
    if action == "lift_restriction":
        return _("restriction of processing lifted")
    if action == "rectify":
        return _("details corrected: %(fields)s", fields=", ".join(detail.get("fields") or []))
    if action == "erase":
        return _("personal data erased")
    if action == "export":
        return _("a copy of the data was downloaded")
    if action == "suppress":
        if everything:
            return _("address blocked from all mail (%(reason)s)", reason=reason)
        return _("address blocked from marketing mail (%(reason)s)", reason=reason)
    if action == "lift_suppression":
        why = detail.get("why") or _("no reason given")
        if everything:
            return _("block from all mail (%(reason)s) lifted: %(why)s", reason=reason, why=why)
        return _("block from marketing mail (%(reason)s) lifted: %(why)s", reason=reason, why=why)
    if action == "relationship":
        return _("relationship recorded as %(relationship)s",
                 relationship=label(detail.get("relationship"), "relationship") or _("unknown"))
    if action == "tracking":
        return _("agreed to open and click tracking") if detail.get("allowed") else _("refused open and click tracking")
    return action


def sentence(event: ConsentEvent, topic: Topic | None) -> str:
    """'2026-11-25 14:03 UTC — granted consent to News via the preferences page (IP 203.0.113.7), consent text v1'."""
    text = _("%(when)s — %(what)s %(how)s", when=when(event.occurred_at), what=_what(event, topic),
             how=how(event.source))
    if event.ip:
        text += _(" (IP %(ip)s)", ip=event.ip)
    if event.consent_text_version:
        text += _(", consent text v%(version)s", version=event.consent_text_version)
    if event.redacted:
        text += _(" [personal details erased]")
    return text


def timeline(contact: Contact) -> list[Entry]:
    """Every ledger event of the contact, newest first, as sentences."""
    topics = {t.id: t for t in db.session.scalars(select(Topic))}
    events = db.session.scalars(select(ConsentEvent).where(ConsentEvent.contact_id == contact.id)
                                .order_by(ConsentEvent.id.desc()))
    return [Entry(e.id, e.occurred_at, sentence(e, topics.get(e.topic_id)), e.action, e.hash) for e in events]

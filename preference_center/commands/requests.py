"""Data-request commands: receive, carry out, refuse, extend (SPEC section 7, invariant 3).

A request ends only by doing it (an erasure erases the contact; an access or
portability request ends when the person downloads their copy through the
link mailed to them), or refused with a reason the person is shown and
mailed, or extended once by up to two months with a reason. The deadline is
one calendar month from receipt.
"""
from __future__ import annotations

import datetime as dt

from flask_babel import force_locale
from flask_babel import gettext as _

from .. import audit, erasure, notify, rights
from ..actors import Actor
from ..errors import N_, Code, DomainError, word
from ..extensions import db
from ..models import Contact, DataRequest, utcnow
from ..states import ContactStatus, RequestKind, RequestStatus
from . import people

REASON_MAX = 2000
# Requests the person starts through a link that must confirm who they are.
STEP_UP_KINDS = {"export": RequestKind.PORTABILITY, "erase": RequestKind.ERASURE}


def receive(actor: Actor, contact: Contact, kind: str) -> DataRequest:
    """Log a request (or return the one of that kind still open); the step-up link that fulfils it goes out."""
    if contact.status == ContactStatus.ERASED:
        raise DomainError(N_("this contact has been erased"), code=Code.ERASED)
    request = rights.latest_open(contact, kind)
    if request is None:
        request = rights.open_request(contact, kind)
        audit.record(actor, "data_request.receive", target_type="data_request", target_id=request.id,
                     detail={"kind": str(kind), "due_at": request.due_at.isoformat()})
    return request


def _open(request: DataRequest) -> Contact | None:
    if request.status != RequestStatus.OPEN:
        raise DomainError(N_("this request is already %(status)s", status=word(request.status)), "status",
                          code=Code.CONFLICT)
    return db.session.get(Contact, request.contact_id) if request.contact_id else None


def _reason(reason: str | None, what: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise DomainError(N_("say why the request is refused: the person is shown the reason") if what == "refused"
                          else N_("say why the request is extended: the person is shown the reason"), "reason")
    if len(reason) > REASON_MAX:
        raise DomainError(N_("the reason is longer than %(limit)s characters", limit=REASON_MAX), "reason")
    return reason


def carry_out(actor: Actor, request: DataRequest) -> DataRequest:
    """End a request by doing it: erase the contact, or check that what was asked holds already.

    Access and portability are delivered by the person's own download (their
    link); staff cannot mark them done without it.
    """
    contact = _open(request)
    if contact is None:
        raise DomainError(N_("the request has no contact any more"), code=Code.CONFLICT)
    kind = request.kind
    if kind == RequestKind.ERASURE:
        if contact.status == ContactStatus.ERASED:
            rights.complete(request, detail={"completed_by": actor.label})
        else:
            people.erase(actor, people.settled(contact))  # completes this request
        return request
    if kind in (RequestKind.ACCESS, RequestKind.PORTABILITY):
        raise DomainError(N_("a copy is delivered when the person downloads it through the link mailed to them; "
                          "send the link again, or refuse the request with a reason"), "status",
                          code=Code.CONFLICT)
    holds = {RequestKind.RESTRICTION: contact.status == ContactStatus.RESTRICTED,
             RequestKind.OBJECTION: rights.has_objected(contact),
             RequestKind.RECTIFICATION: False}.get(kind, False)
    if not holds:
        raise DomainError(N_("the %(kind)s has not been carried out: do it first (the person's data page or the "
                              "contact page), or refuse the request with a reason", kind=word(kind)), "status",
                          code=Code.CONFLICT)
    rights.complete(request, detail={"completed_by": actor.label})
    audit.record(actor, "data_request.complete", target_type="data_request", target_id=request.id,
                 detail={"kind": kind})
    return request


def resend_link(actor: Actor, request: DataRequest) -> DataRequest:
    """Mail the person a fresh link that fulfils their access, portability or erasure request."""
    contact = _open(request)
    if contact is None or contact.status == ContactStatus.ERASED:
        raise DomainError(N_("the contact is erased; nothing can be sent"), code=Code.CONFLICT)
    action = {RequestKind.ERASURE: "erase"}.get(request.kind, "export" if request.kind in (
        RequestKind.ACCESS, RequestKind.PORTABILITY) else None)
    if action is None:
        raise DomainError(N_("a %(kind)s request has no link to send", kind=word(request.kind)), "status",
                          code=Code.CONFLICT)
    contact_id = contact.id
    notify.later_step_up(contact, action)
    audit.record(actor, "data_request.resend_link", target_type="data_request", target_id=request.id,
                 detail={"kind": request.kind, "contact_id": contact_id})
    return request


def refuse(actor: Actor, request: DataRequest, reason: str) -> DataRequest:
    """End a request as refused, with the reason the person is shown on their data page and mailed."""
    contact = _open(request)
    reason = _reason(reason, "refused")
    request.status = RequestStatus.REFUSED
    request.refusal_reason = reason
    request.completed_at = utcnow()
    if contact is not None and contact.status != ContactStatus.ERASED:
        with force_locale(notify.locale_for(contact)):
            subject = _("About your data request")
            text = _("We could not carry out your %(kind)s request, for this reason:", kind=_(request.kind)) + \
                "\n\n" + reason
        notify.later(notify.request_outcome(contact, subject, text))
    audit.record(actor, "data_request.refuse", target_type="data_request", target_id=request.id,
                 detail={"kind": request.kind, "reason": reason})
    return request


def extend(actor: Actor, request: DataRequest, months: int, reason: str) -> DataRequest:
    """Extend the deadline once, by one or two months from the original one, with a reason the person is told."""
    contact = _open(request)
    if request.extended_at is not None:
        raise DomainError(N_("a request can be extended only once"), "months", code=Code.CONFLICT)
    if months not in (1, 2):
        raise DomainError(N_("a deadline can be extended by one or two months"), "months")
    reason = _reason(reason, "extended")
    request.due_at = rights.due_date(request.due_at, months)
    request.extension_reason = reason
    request.extended_at = utcnow()
    if contact is not None and contact.status != ContactStatus.ERASED:
        with force_locale(notify.locale_for(contact)):
            subject = _("About your data request")
            text = _("We need more time for your %(kind)s request; we will answer by %(date)s, because:",
                     kind=_(request.kind), date=request.due_at.date().isoformat()) + "\n\n" + reason
        notify.later(notify.request_outcome(contact, subject, text))
    audit.record(actor, "data_request.extend", target_type="data_request", target_id=request.id,
                 detail={"kind": request.kind, "months": months, "due_at": request.due_at.isoformat(),
                         "reason": reason})
    return request


# -- requests received by phone, letter or in person (issue 14) ---------------------------------

CHANNELS = {"phone": "by phone", "letter": "by letter", "email": "by email to staff", "in_person": "in person"}
NOTE_MAX = 500


def log_received(actor: Actor, contact: Contact, kind: str, channel: str, received: dt.datetime,
                 note: str | None = None) -> DataRequest:
    """Log a request staff received outside the links (phone, letter…): due one month after it was received."""
    if contact.status == ContactStatus.ERASED:
        raise DomainError(N_("this contact has been erased"), code=Code.ERASED)
    if kind not in rights.KINDS:
        raise DomainError(N_("kind must be one of %(kinds)s", kinds=', '.join(rights.KINDS)), "kind")
    if channel not in CHANNELS:
        raise DomainError(N_("channel must be one of %(channels)s", channels=', '.join(CHANNELS)), "channel")
    if received.tzinfo is None:
        raise DomainError(N_("the time of receipt needs a time zone"), "received")
    if received > utcnow() + dt.timedelta(minutes=5):
        raise DomainError(N_("a request cannot be received in the future"), "received")
    note = (note or "").strip()
    if len(note) > NOTE_MAX:
        raise DomainError(N_("the note is longer than %(limit)s characters", limit=NOTE_MAX), "note")
    erasure.refuse_addresses(note, "note")
    if rights.latest_open(contact, kind) is not None:
        raise DomainError(N_("an %(kind)s request of this person is open already: answer that one", kind=word(kind)),
                          "kind",
                          code=Code.CONFLICT)
    request = rights.open_request(contact, kind, received=received,
                                  detail={"channel": channel, "note": note, "logged_by": actor.label})
    audit.record(actor, "data_request.log", target_type="data_request", target_id=request.id,
                 detail={"kind": str(kind), "channel": channel, "received_at": received.isoformat(),
                         "due_at": request.due_at.isoformat()})
    return request

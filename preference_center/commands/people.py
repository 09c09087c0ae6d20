"""Contact commands: load, upsert, rectify, restrict, object, erase, suppress and lift, export.

`load` and `find` are the one way a door gets a contact to act on or show:
they settle the contact's waiting one-click opt-outs first, so nothing
decides on a state that misses them. Every change writes its ledger events
and one audit entry in the caller's transaction.
"""
from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select

from .. import access_copy, audit, contacts, erasure, ledger, links, notify, optouts, rights
from ..actors import Actor, ActorKind
from ..emails import normalize
from ..errors import N_, Code, DomainError
from ..extensions import db
from ..models import ConsentEvent, Contact, DataRequest, Suppression, utcnow
from ..states import ContactStatus, RequestKind, RequestStatus, SuppressionReason, SuppressionScope

# -- loading --------------------------------------------------------------------------

def settled(contact: Contact) -> Contact:
    """`contact`, with its waiting one-click opt-outs chained into the ledger and committed.

    Doors load before they act, so the commit holds nothing but the settling
    (which stands on its own: the opt-outs were taken already).
    """
    if optouts.settle([contact.id]):
        db.session.commit()
    return contact


def find(email: str) -> Contact | None:
    """The live contact for an address, settled; None if there is none (InvalidEmail if it is no address)."""
    contact = contacts.find(email)
    return settled(contact) if contact is not None else None


def get(contact_id: int) -> Contact | None:
    """A contact by id (erased ones too), settled."""
    contact = db.session.get(Contact, contact_id) if 0 < contact_id < 2**63 else None
    return settled(contact) if contact is not None else None


def require(email: str) -> Contact:
    contact = find(email)
    if contact is None:
        raise DomainError(N_("no contact with that email address"), "email", code=Code.NOT_FOUND)
    return contact


# -- profile --------------------------------------------------------------------------

def upsert(actor: Actor, email: str, fields: dict, *, audited: bool = True) -> tuple[Contact, bool]:
    """Create or update a contact; corrections and relationship changes are ledger events."""
    address = normalize(email)
    before = db.session.scalar(select(ConsentEvent.id).order_by(ConsentEvent.id.desc()).limit(1))
    existing = contacts.find(address)
    if existing is not None:
        settled(existing)
    contact, created = contacts.upsert(address, fields, source=actor.source, ip=actor.ip,
                                       user_agent=actor.user_agent)
    after = db.session.scalar(select(ConsentEvent.id).order_by(ConsentEvent.id.desc()).limit(1))
    if audited and (created or after != before):
        audit.record(actor, "contact.create" if created else "contact.update", target_type="contact",
                     target_id=contact.id, detail={"fields": sorted(k for k in fields if k != "email")})
    return contact, created


def note_created(actor: Actor, contact: Contact) -> None:
    """The audit entry of a contact a command created in passing when that command itself changed nothing else."""
    audit.record(actor, "contact.create", target_type="contact", target_id=contact.id, detail={"fields": []})


def rectify(actor: Actor, contact: Contact, fields: dict) -> list[str]:
    """Correct profile fields; the names of those that changed (none: nothing is recorded)."""
    _live(contact)
    wanted = contacts.clean_profile({k: v for k, v in fields.items() if k in contacts.EDITABLE_FIELDS})
    changed = sorted(k for k, v in wanted.items()
                     if (getattr(contact, k) or ({} if k == "attributes" else None)) != v)
    if changed:
        contacts.upsert(contact.email, {k: wanted[k] for k in changed}, source=actor.source, ip=actor.ip,
                        user_agent=actor.user_agent)
        if actor.is_the_person:
            rights.done(contact, RequestKind.RECTIFICATION, {"fields": changed})
        audit.record(actor, "contact.rectify", target_type="contact", target_id=contact.id,
                     detail={"fields": changed})
    return changed


def _live(contact: Contact) -> None:
    if contact.status == ContactStatus.ERASED:
        raise DomainError(N_("this contact has been erased"), code=Code.ERASED)


# -- rights ---------------------------------------------------------------------------

def restrict(actor: Actor, contact: Contact) -> bool:
    """Art. 18: stop marketing processing until lifted. False if already restricted."""
    _live(contact)
    if contact.status != ContactStatus.ACTIVE:
        return False
    event = ledger.append(ledger.RESTRICT, contact=contact, scope=ledger.CONTACT, source=actor.source, ip=actor.ip,
                          user_agent=actor.user_agent)
    rights.done(contact, RequestKind.RESTRICTION, {"restricted": True})
    audit.record(actor, "contact.restrict", target_type="contact", target_id=contact.id,
                 detail={"event_id": event.id})
    return True


def lift_restriction(actor: Actor, contact: Contact) -> bool:
    """End a restriction. False if there was none."""
    _live(contact)
    if contact.status != ContactStatus.RESTRICTED:
        return False
    event = ledger.append(ledger.LIFT_RESTRICTION, contact=contact, scope=ledger.CONTACT, source=actor.source,
                          ip=actor.ip, user_agent=actor.user_agent)
    rights.done(contact, RequestKind.RESTRICTION, {"restricted": False})
    audit.record(actor, "contact.lift_restriction", target_type="contact", target_id=contact.id,
                 detail={"event_id": event.id})
    return True


def object_to_marketing(actor: Actor, contact: Contact) -> bool:
    """Art. 21(2): object to direct marketing (stops all of it). False if already objected."""
    _live(contact)
    if rights.has_objected(contact):
        return False
    event = contacts.record_consent(contact, action=ledger.OBJECT, topic=None, legal_basis="legitimate_interest",
                                    source=actor.source, ip=actor.ip, user_agent=actor.user_agent)
    rights.done(contact, RequestKind.OBJECTION, {})
    audit.record(actor, "contact.object", target_type="contact", target_id=contact.id,
                 detail={"event_id": event.id})
    return True


def erase(actor: Actor, contact: Contact) -> ConsentEvent:
    """Art. 17: erase the personal data (keep the suppression hash and the chain) and close the request."""
    _live(contact)
    open_request = rights.latest_open(contact, RequestKind.ERASURE)
    event = contacts.erase(contact, source=actor.source, ip=actor.ip, user_agent=actor.user_agent)
    if open_request is not None or actor.is_the_person or actor.kind == ActorKind.API:
        # The person's own erasure is their request, done on the spot; an API client passes one on (the
        # request reached another system first), so it is logged done too; others close one that is open.
        rights.complete(open_request or rights.open_request(contact, RequestKind.ERASURE),
                        detail={"erased_by": actor.label})
    audit.record(actor, "contact.erase", target_type="contact", target_id=contact.id, detail={"event_id": event.id})
    return event


def export(actor: Actor, contact: Contact, fmt: str) -> str | bytes:
    """The contact's data as JSON or CSV text or a ZIP of both (bytes); records the export and completes the open
    access request. JSON and ZIP are the complete copy (access_copy.complete)."""
    _live(contact)
    if fmt not in rights.EXPORT_FORMATS:
        raise DomainError(N_("format must be one of %(formats)s", formats=', '.join(rights.EXPORT_FORMATS)), "format")
    event = ledger.append(ledger.EXPORT, contact=contact, scope=ledger.CONTACT, source=actor.source, ip=actor.ip,
                          user_agent=actor.user_agent, detail={"format": fmt})
    request = rights.latest_open(contact, (RequestKind.ACCESS, RequestKind.PORTABILITY))
    rights.complete(request or rights.open_request(contact, RequestKind.PORTABILITY),
                    detail={"format": fmt, "delivered_to": "the person, through their link"})
    audit.record(actor, "contact.export", target_type="contact", target_id=contact.id,
                 detail={"event_id": event.id, "format": fmt})
    if fmt == "csv":
        return rights.to_csv(rights.holdings(contact))
    data = access_copy.complete(contact)
    return rights.to_json(data) if fmt == "json" else access_copy.to_zip(data)


def handover_link(actor: Actor, contact: Contact) -> str:
    """A one-time token to the person's complete copy, for them to hand to another company (Art. 20(2)).

    Valid PC_PORTABILITY_LINK_DAYS; the portability request stays open until the copy is fetched through it.
    A new link replaces the previous one.
    """
    _live(contact)
    request = rights.latest_open(contact, RequestKind.PORTABILITY) or rights.open_request(
        contact, RequestKind.PORTABILITY)
    nonce = secrets.token_urlsafe(16)
    request.detail = {**(request.detail or {}), "handover": {
        "nonce_hash": hashlib.sha256(nonce.encode()).hexdigest(), "made_at": utcnow().isoformat(), "used_at": None}}
    audit.record(actor, "contact.handover_link", target_type="contact", target_id=contact.id,
                 detail={"request_id": request.id})
    return links.make(links.HANDOVER, contact, [request.id, nonce])


def hand_over(actor: Actor, contact: Contact, argument) -> bytes:
    """The complete copy (ZIP) through a one-time link; the link is spent and the request completed."""
    _live(contact)
    request_id, nonce = argument if isinstance(argument, list) and len(argument) == 2 else (None, None)
    request = db.session.get(DataRequest, request_id) if isinstance(request_id, int) and 0 < request_id < 2**63 \
        else None
    handover = (request.detail or {}).get("handover") if request is not None else None
    if (request is None or request.contact_id != contact.id or not handover or not isinstance(nonce, str)
            or handover.get("nonce_hash") != hashlib.sha256(nonce.encode()).hexdigest()):
        raise DomainError(N_("this link is not valid"), code=Code.NOT_FOUND)
    if handover.get("used_at") is not None:
        raise DomainError(N_("this link was used already: ask the person for a new one"), code=Code.CONFLICT)
    event = ledger.append(ledger.EXPORT, contact=contact, scope=ledger.CONTACT, source=actor.source, ip=actor.ip,
                          user_agent=actor.user_agent, detail={"format": "zip", "handover": True})
    request.detail = {**request.detail, "handover": {**handover, "used_at": utcnow().isoformat()}}
    if request.status == RequestStatus.OPEN:
        rights.complete(request, detail={"format": "zip", "delivered_to": "another company, through the person's "
                                                                          "one-time link"})
    audit.record(actor, "contact.export", target_type="contact", target_id=contact.id,
                 detail={"event_id": event.id, "format": "zip", "handover": True})
    return access_copy.to_zip(access_copy.complete(contact))


# -- suppressions ---------------------------------------------------------------------

def suppress(actor: Actor, scope: str, reason: str, *, contact: Contact | None = None,
             email_hash: str | None = None) -> Suppression | None:
    """Block an address (scope `all` or `marketing`); None when it was already blocked with that scope."""
    if scope not in tuple(SuppressionScope):
        raise DomainError(N_("scope must be 'all' or 'marketing'"), "scope")
    reason = (reason or "").strip()
    if not reason:
        raise DomainError(N_("say why the address is suppressed"), "reason")
    erasure.refuse_addresses(reason, "reason")
    address_hash = email_hash or (contact.email_hash if contact is not None else None)
    if address_hash is None:
        raise DomainError(N_("nothing to suppress"), "email")
    live = contact if contact is not None and contact.status != ContactStatus.ERASED else None
    exists_already = db.session.scalar(select(Suppression.id).where(
        Suppression.email_hash == address_hash, Suppression.scope == scope))
    if exists_already is not None:
        return None
    row = contacts.suppress(address_hash, scope, reason[:64], source=actor.source, contact=live,
                            ip=actor.ip, user_agent=actor.user_agent)
    audit.record(actor, "contact.suppress", target_type="contact" if live else "address",
                 target_id=live.id if live else address_hash[:16], detail={"scope": scope, "reason": reason[:64]})
    return row


def lift_suppression(actor: Actor, contact: Contact, scope: str, why: str) -> Suppression:
    """Lift a bounce, complaint or manual block (never a person's own opt-out or an erasure), with a reason."""
    erasure.refuse_addresses(why, "why")
    row = contacts.lift_suppression(contact, scope, why=why, source=actor.source, ip=actor.ip)
    audit.record(actor, "contact.lift_suppression", target_type="contact", target_id=contact.id,
                 detail={"scope": row.scope, "reason": row.reason, "why": (why or "").strip()[:200]})
    return row


KEPT_FOR_THE_PERSON = contacts.KEPT_FOR_THE_PERSON
SPAM_COMPLAINT = SuppressionReason.SPAM_COMPLAINT


# -- change of address (issue 14) ------------------------------------------------------

def ask_address_change(actor: Actor, contact: Contact, new_email: str) -> str:
    """Mail a confirmation link to the new address (after the commit); nothing changes until it is opened.

    The answer is the same whether or not the new address is known (no enumeration); the normalised address.
    """
    _live(contact)
    address = normalize(new_email)  # InvalidEmail for what is no address
    if address == contact.email:
        raise DomainError(N_("that is the address we already have"), "email")
    change = links.make(links.CHANGE_ADDRESS, contact, address)
    url = links.url("/p/", links.make(links.PREFERENCES, contact)) + "/data/address/" + change
    notify.later((address, "Confirm your new email address",
                  f"Please confirm that we should write to this address from now on:\n\n{url}\n\n"
                  "If you did not ask for this, ignore this email: nothing changes.\n"))
    audit.record(actor, "contact.address_change_asked", target_type="contact", target_id=contact.id)
    return address


def change_address(actor: Actor, contact: Contact, new_email: str) -> ConsentEvent:
    """Move the contact to the confirmed new address: a rectify event, every old link revoked."""
    _live(contact)
    address = normalize(new_email)
    if address == contact.email:
        raise DomainError(N_("the address is changed already"), "email", code=Code.CONFLICT)
    if contacts.find(address) is not None:
        raise DomainError(N_("another contact has that address: erase one of them first"), "email", code=Code.CONFLICT)
    new_hash = contacts.hash_of(address)
    event = ledger.append(ledger.RECTIFY, contact=contact, scope=ledger.CONTACT, source=actor.source, ip=actor.ip,
                          user_agent=actor.user_agent, detail={"fields": ["email"]},
                          personal={"old_email_hash": contact.email_hash, "new_email_hash": new_hash})
    contact.email, contact.email_hash = address, new_hash
    contact.token_version += 1  # links in mail to the old address stop working
    db.session.flush()
    if actor.is_the_person:
        rights.done(contact, RequestKind.RECTIFICATION, {"fields": ["email"]})
    audit.record(actor, "contact.rectify", target_type="contact", target_id=contact.id,
                 detail={"fields": ["email"], "event_id": event.id})
    return event

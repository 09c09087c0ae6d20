"""Staff commands on the contact list: add and edit one contact, act on many, export.

Each acts through the person-level commands (`people`, `consent`), so every change writes its own ledger
events and audit entry exactly as it would one by one; a contact the action cannot apply to (erased, already
suppressed, a retired topic...) is counted as skipped, never half-done. An export of the list is itself an
audit entry: personal data left the system.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select

from .. import audit, contacts, directory
from ..actors import Actor
from ..emails import InvalidEmail, normalize
from ..errors import N_, Code, DomainError
from ..extensions import db
from ..models import Contact, Topic
from ..states import ContactStatus, Relationship
from . import consent, people

# At most this many contacts per bulk action (the page says so; filter further for more).
BULK_LIMIT = 5000


@dataclass
class BulkOutcome:
    done: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, why: str) -> None:
        self.skipped[why] = self.skipped.get(why, 0) + 1


def _address(email: str) -> str:
    try:
        return normalize(email)
    except InvalidEmail as exc:
        raise DomainError(exc.args[0], "email") from exc


def _relationship(value: str | None) -> str | None:
    if value in (None, ""):
        return None
    if value not in tuple(Relationship):
        raise DomainError(N_("relationship must be one of %(relationships)s", relationships=', '.join(Relationship)),
                          "relationship")
    return value


def add(actor: Actor, email: str, fields: dict) -> Contact:
    """Create one contact (profile and relationship); refused if the address is a contact already."""
    address = _address(email)
    if contacts.find(address) is not None:
        raise DomainError(N_("a contact with this address exists already: edit it instead"), "email",
                          code=Code.CONFLICT)
    relationship = _relationship(fields.get("relationship"))
    profile = {k: (fields.get(k) or None) for k in contacts.PROFILE_FIELDS if k in fields}
    if "attributes" in fields:
        profile["attributes"] = fields["attributes"]
    contact, _ = people.upsert(actor, address, {**profile, **({"relationship": relationship} if relationship else {})})
    return contact


def edit(actor: Actor, contact: Contact, fields: dict) -> list[str]:
    """Correct one contact's profile, attributes and relationship; the names of the fields that changed."""
    if contact.status == ContactStatus.ERASED:
        raise DomainError(N_("this contact has been erased"), code=Code.ERASED)
    relationship = _relationship(fields.get("relationship"))
    changed = people.rectify(actor, contact, {k: (fields.get(k) or None) for k in contacts.EDITABLE_FIELDS
                                              if k in fields})
    if relationship and relationship != contact.relationship:
        people.upsert(actor, contact.email, {"relationship": relationship})
        changed.append("relationship")
    return changed


def _targets(contact_ids: list[int]) -> list[Contact]:
    if not contact_ids:
        raise DomainError(N_("choose at least one contact"), "contacts")
    if len(contact_ids) > BULK_LIMIT:
        raise DomainError(N_("at most %(limit)s contacts at once: narrow the filter", limit=format(BULK_LIMIT, ",")),
                          "contacts")
    found = list(db.session.scalars(select(Contact).where(Contact.id.in_(contact_ids)).order_by(Contact.id)))
    return [people.settled(contact) for contact in found]


def suppress_many(actor: Actor, contact_ids: list[int], scope: str, reason: str) -> BulkOutcome:
    """Suppress each chosen contact's address (one ledger event and audit entry each)."""
    outcome = BulkOutcome()
    for contact in _targets(contact_ids):
        if contact.status == ContactStatus.ERASED:
            outcome.skip("erased")
        elif people.suppress(actor, scope, reason, contact=contact) is None:
            outcome.skip("already suppressed")
        else:
            outcome.done += 1
    return outcome


def ask_many(actor: Actor, contact_ids: list[int], topic: Topic | None) -> BulkOutcome:
    """Ask each chosen contact to confirm a consent topic: a pending grant and the double opt-in mail."""
    if topic is None or topic.kind != "marketing" or topic.legal_basis != "consent" or topic.retired:
        raise DomainError(N_("choose a live consent topic"), "topic")
    outcome = BulkOutcome()
    for contact in _targets(contact_ids):
        try:
            with db.session.begin_nested():  # a contact refused leaves nothing behind
                consent.grant(actor, contact, topic, confirmed=False)
        except DomainError as exc:
            outcome.skip(exc.message)
        else:
            outcome.done += 1
    return outcome


def note_export(actor: Actor, filters: directory.Filters) -> int:
    """Record that staff exported the list with these filters; how many rows it holds."""
    total = directory.count(filters)
    audit.record(actor, "contact.export_list", target_type="contacts", target_id=None,
                 detail={"filters": filters.query_args(), "rows": total})
    return total

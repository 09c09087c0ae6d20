"""Importing SendGrid's own lists on first setup: suppressions and ledger events with source `sendgrid-import`.

Bounces block the address for all mail, spam reports for marketing; a global
unsubscribe is an opt-out from all marketing (a contact's withdrawal, or a
marketing block for an address we do not hold); a group unsubscribe is a
withdrawal from the topics mapped to that group. What already holds is left
alone, so running the import twice changes nothing the second time.
"""
from __future__ import annotations

from collections import Counter

from sqlalchemy import select

from .. import contacts
from ..actors import Actor, ActorKind
from ..emails import InvalidEmail, normalize
from ..extensions import db
from ..models import Topic
from . import consent, people

SOURCE = "sendgrid-import"
ACTOR = Actor(ActorKind.SYSTEM, SOURCE)


def import_lists(lists) -> Counter:
    """Apply pulled lists (`outbound.sendgrid_sync.Lists`); counts of what changed, per kind."""
    counts: Counter = Counter()
    for kind, emails, scope, reason in (("bounce", lists.bounces, "all", "hard_bounce"),
                                        ("spam_report", lists.spam_reports, "marketing", "spam")):
        for email in emails:
            address = _address(email, counts)
            if address is None:
                continue
            contact = contacts.find(address)
            done = people.suppress(ACTOR, scope, reason, contact=contact,
                                   email_hash=None if contact else contacts.hash_of(address))
            counts[kind if done is not None else "unchanged"] += 1
    for email in lists.unsubscribes:
        address = _address(email, counts)
        if address is None:
            continue
        contact = contacts.find(address)
        if contact is not None:
            done = consent.withdraw(ACTOR, contact, None)
        else:
            done = people.suppress(ACTOR, "marketing", "opt_out", email_hash=contacts.hash_of(address))
        counts["unsubscribe" if done is not None else "unchanged"] += 1
    for group, emails in lists.groups.items():
        topics = db.session.scalars(select(Topic).where(Topic.sendgrid_group_id == group,
                                                        Topic.kind == "marketing")).all()
        for email in emails:
            address = _address(email, counts)
            contact = contacts.find(address) if address else None
            if contact is None:
                counts["group_unknown_address"] += 1 if address else 0
                continue
            for topic in topics:
                done = consent.withdraw(ACTOR, contact, topic)
                counts["group_unsubscribe" if done is not None else "unchanged"] += 1
    return counts


def _address(email: object, counts: Counter) -> str | None:
    try:
        return normalize(email)
    except InvalidEmail:
        counts["invalid"] += 1
        return None

"""What the recipient pages show: topics on offer, the preference page's view, what a link names.

Read-only: every change a recipient makes goes through the commands
(commands/consent.py, commands/people.py), with the person as the actor.
"""
from __future__ import annotations

from sqlalchemy import select

from .. import contacts
from ..commands import consent
from ..extensions import db
from ..links import LinkError
from ..models import Contact, Topic
from ..states import LinkSource

PREFERENCES_PAGE = LinkSource.PREFERENCES_PAGE
UNSUBSCRIBE_PAGE = LinkSource.UNSUBSCRIBE_PAGE
ONE_CLICK = LinkSource.ONE_CLICK
UNDO = LinkSource.UNDO
SUBSCRIBE_FORM = LinkSource.SUBSCRIBE_FORM
SUBSCRIBE_CONFIRM = LinkSource.SUBSCRIBE_CONFIRM


# -- topics -------------------------------------------------------------------

def live_topics() -> tuple[list[Topic], list[Topic]]:
    """Live (marketing, system) topics, each in a stable order, in one query."""
    topics = db.session.scalars(select(Topic).where(Topic.retired.is_(False)).order_by(Topic.name, Topic.key)).all()
    return [t for t in topics if t.kind == "marketing"], [t for t in topics if t.kind == "system"]


def marketing_topics() -> list[Topic]:
    """Live marketing topics, in a stable order."""
    return live_topics()[0]


def system_topics() -> list[Topic]:
    return live_topics()[1]


def consent_topics() -> list[Topic]:
    """Topics a public form may offer: live marketing topics that need consent."""
    return [t for t in marketing_topics() if t.legal_basis == "consent"]


def unsubscribe_target(argument) -> Topic | None:
    """The topic an unsubscribe link names (None = all marketing); LinkError if it names no marketing topic."""
    if argument == 0:
        return None
    topic = db.session.get(Topic, argument) if isinstance(argument, int) and not isinstance(argument, bool) else None
    if topic is None or topic.kind != "marketing":
        raise LinkError("invalid")
    return topic


# -- the preference page --------------------------------------------------------

def preferences(contact: Contact) -> dict:
    """What the preference page shows: marketing topics with their state, system topics, blocks."""
    marketing, system = live_topics()
    scopes = contacts.suppressions_of(contact)
    view = {v["topic"]: v for v in contacts.subscriptions_view(contact, marketing + system, scopes=scopes)}
    return {
        "topics": marketing,
        "marketing": [(t, view[t.key]) for t in marketing],
        "system": [(t, view[t.key]) for t in system],
        "subscribed": [t.key for t in marketing if view[t.key]["state"] == "subscribed"],
        "opted_out_all": contact.marketing_opt_out_event_id is not None,
        "restricted": contact.status == "restricted",
        "complained": "marketing" in scopes and contact.marketing_opt_out_event_id is None,
    }


# -- the public consent form (double opt-in) ------------------------------------

def topics_to_confirm(contact: Contact, argument) -> list[Topic]:
    """The topics a confirmation link is about."""
    ids = [e.topic_id for e in consent.pending_events(contact, argument)]
    return [t for t in marketing_topics() if t.id in ids]

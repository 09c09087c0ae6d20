"""Tracking commands: the person's choice about open and click tracking (a ledger event), a topic's setting."""
from __future__ import annotations

from .. import audit, engagement, ledger
from ..actors import Actor
from ..errors import N_, Code, DomainError
from ..models import Contact, Topic
from ..states import ContactStatus


def choose(actor: Actor, contact: Contact, allowed: bool) -> bool:
    """Record the person's yes or no to tracking when it changes; True if it did."""
    if contact.status == ContactStatus.ERASED:
        raise DomainError(N_("this contact has been erased"), code=Code.ERASED)
    if (contact.id in engagement.agreed([contact.id])) == allowed:
        return False
    event = ledger.append(ledger.TRACKING, contact=contact, scope=ledger.CONTACT, source=actor.source,
                          confirmed=actor.is_the_person, ip=actor.ip, user_agent=actor.user_agent,
                          detail={"allowed": allowed})
    audit.record(actor, "consent.tracking", target_type="contact", target_id=contact.id,
                 detail={"allowed": allowed, "event_id": event.id})
    return True


def set_topic(actor: Actor, topic: Topic, enabled: bool) -> bool:
    """Let a topic's campaigns track opens and clicks of recipients who agreed (or stop it)."""
    if enabled and topic.kind != "marketing":
        raise DomainError(N_("tracking is for marketing topics"), "tracking")
    changed = engagement.set_topic_tracking(topic, enabled)
    if changed:
        audit.record(actor, "topic.tracking", target_type="topic", target_id=topic.key, detail={"enabled": enabled})
    return changed

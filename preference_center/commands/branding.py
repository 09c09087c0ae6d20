"""Branding commands: the organisation's name, logo, colour, links, address and sender; topic translations."""
from __future__ import annotations

from .. import audit, branding
from ..actors import Actor
from ..models import Topic


def save(actor: Actor, fields: dict, *, logo_data: bytes | None = None, logo_content_type: str | None = None,
         remove_logo: bool = False) -> list[str]:
    """Change the branding; one audit entry naming what changed (none when nothing did)."""
    changed = branding.save(fields, logo_data=logo_data, logo_content_type=logo_content_type,
                            remove_logo=remove_logo, by=actor.label)
    if changed:
        audit.record(actor, "branding.update", target_type="branding", target_id=1, detail={"fields": changed})
    return changed


def translate_topic(actor: Actor, topic: Topic, locale: str, name: str, description: str) -> bool:
    """Set a topic's name and description in one language (an empty name removes the translation)."""
    changed = branding.translate(topic, locale, name, description)
    if changed:
        audit.record(actor, "topic.translate", target_type="topic", target_id=topic.key,
                     detail={"locale": locale, "name": (name or "").strip()})
    return changed

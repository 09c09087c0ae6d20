"""Layout commands: create and change reusable mail layouts (one audit entry each)."""
from __future__ import annotations

from .. import audit, layouts
from ..actors import Actor
from ..models import MailTemplate


def save(actor: Actor, name: str, html: str, layout: MailTemplate | None = None) -> MailTemplate:
    created = layout is None
    layout = layouts.save(name, html, layout=layout, by=actor.label)
    audit.record(actor, "layout.create" if created else "layout.update", target_type="layout", target_id=layout.id,
                 detail={"name": layout.name})
    return layout

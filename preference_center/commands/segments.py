"""Segment commands: create and change saved audiences (one audit entry each)."""
from __future__ import annotations

from .. import audit, segments
from ..actors import Actor
from ..models import Segment


def save(actor: Actor, name: str, topic_key: str, filters: dict, segment: Segment | None = None) -> Segment:
    created = segment is None
    segment = segments.save(name, topic_key, filters, segment=segment, by=actor.label)
    audit.record(actor, "segment.create" if created else "segment.update", target_type="segment",
                 target_id=segment.id, detail={"name": segment.name, "topic": topic_key, "filters": segment.filters})
    return segment


def delete(actor: Actor, segment: Segment) -> None:
    """Remove a segment (campaigns keep the filters they copied)."""
    segment_id, name = segment.id, segment.name
    segments.delete(segment)
    audit.record(actor, "segment.delete", target_type="segment", target_id=segment_id, detail={"name": name})

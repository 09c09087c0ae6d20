"""Saved segments: a marketing topic and audience filters under a name, with their live count.

A segment is the same audience filter a campaign carries (checked by `rules.check_audience`); using one in
the compose form copies its topic and filters into the campaign, so a campaign never changes when its
segment does later.
"""
from __future__ import annotations

from sqlalchemy import select

from . import audiences, characters, rules
from .errors import N_, Code, DomainError
from .extensions import db
from .models import Segment, Topic


def all_segments() -> list[tuple[Segment, Topic]]:
    return [(s, t) for s, t in db.session.execute(
        select(Segment, Topic).join(Topic, Topic.id == Segment.topic_id).order_by(Segment.name))]


def get(segment_id: int) -> Segment | None:
    return db.session.get(Segment, segment_id) if 0 < segment_id < 2**31 else None


def by_name(name: str) -> Segment | None:
    """The segment of that name (as saved: without surrounding spaces)."""
    return db.session.scalar(select(Segment).where(Segment.name == (name or "").strip()))


def delete(segment: Segment) -> None:
    """Remove a saved segment; campaigns that used it keep their own copy of its filters."""
    db.session.delete(segment)
    db.session.flush()


def save(name: str, topic_key: str, filters: dict, *, segment: Segment | None, by: str) -> Segment:
    """Create or change a segment; DomainError naming the field if something is wrong."""
    name = (name or "").strip()
    if not name or len(name) > 200 or characters.refused(name):
        raise DomainError(N_("a segment needs a one-line name of at most 200 characters"), "name")
    topic = db.session.scalar(select(Topic).where(Topic.key == topic_key))
    if topic is None or topic.kind != "marketing":
        raise DomainError(N_("choose a marketing topic"), "topic")
    filters = rules.check_audience(filters)
    taken = db.session.scalar(select(Segment.id).where(Segment.name == name))
    if taken is not None and (segment is None or taken != segment.id):
        raise DomainError(N_("another segment has this name"), "name", code=Code.CONFLICT)
    if segment is None:
        segment = Segment(name=name, topic_id=topic.id, filters=filters, updated_by=by)
        db.session.add(segment)
    else:
        segment.name, segment.topic_id, segment.filters, segment.updated_by = name, topic.id, filters, by
    db.session.flush()
    return segment


def count(segment: Segment) -> int:
    return audiences.count(db.session.get(Topic, segment.topic_id), segment.filters or {})

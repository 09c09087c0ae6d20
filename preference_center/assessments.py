"""Legitimate-interest assessments (issue 14): each legitimate-interest topic carries a recorded, versioned
assessment (the balancing test, who approved it, when) and the purpose recipients are told: why we write."""
from __future__ import annotations

from sqlalchemy import func, select

from . import links
from .extensions import db
from .models import Contact, InterestAssessment, Topic


def history(topic: Topic) -> list[InterestAssessment]:
    """Every version of a topic's assessment, newest first."""
    return list(db.session.scalars(select(InterestAssessment).where(InterestAssessment.topic_id == topic.id)
                                   .order_by(InterestAssessment.version.desc())))


def latest_by_topic() -> dict[int, InterestAssessment]:
    """The current assessment of every topic that has one."""
    newest = select(InterestAssessment.topic_id, func.max(InterestAssessment.version).label("version")) \
        .group_by(InterestAssessment.topic_id).subquery()
    rows = db.session.scalars(select(InterestAssessment).join(
        newest, (InterestAssessment.topic_id == newest.c.topic_id) & (InterestAssessment.version == newest.c.version)))
    return {row.topic_id: row for row in rows}


def why_we_write(topic: Topic, assessment: InterestAssessment | None) -> str:
    """The sentence a legitimate-interest mail and the preference page show."""
    purpose = assessment.purpose if assessment is not None else (topic.description or topic.name)
    return f"We write to you because you are our customer: {purpose.rstrip('. ')}"


def for_page(contact: Contact, topics: list[Topic]) -> dict[str, dict]:
    """Per legitimate-interest topic key: why we write, and the one-click objection link."""
    latest = latest_by_topic()
    return {t.key: {"why": why_we_write(t, latest.get(t.id)), "object_url": links.unsubscribe_url(contact, t.id)}
            for t in topics if t.kind == "marketing" and t.legal_basis == "legitimate_interest"}

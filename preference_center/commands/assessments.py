"""The legitimate-interest assessment command: record a new version, approved by the staff member who records it."""
from __future__ import annotations

import hashlib

from sqlalchemy import func, select

from .. import audit, erasure
from ..actors import Actor
from ..errors import N_, DomainError
from ..extensions import db
from ..models import InterestAssessment, Topic

PURPOSE_MAX = 300
TEXT_MAX = 20_000


def record(actor: Actor, topic: Topic, purpose: str, text: str) -> InterestAssessment:
    """A new version of `topic`'s assessment (legitimate-interest marketing topics only), approved by `actor`."""
    if topic.kind != "marketing" or topic.legal_basis != "legitimate_interest":
        raise DomainError(N_("only legitimate-interest marketing topics carry an assessment"), "topic")
    purpose, text = (purpose or "").strip(), (text or "").strip()
    if not purpose or len(purpose) > PURPOSE_MAX or "\n" in purpose:
        raise DomainError(N_("say in one line of at most %(limit)s characters why we write (recipients read it)",
                              limit=PURPOSE_MAX), "purpose")
    if not text or len(text) > TEXT_MAX:
        raise DomainError(N_("the assessment (purpose, necessity, balance, safeguards) is required, at most "
                              "%(limit)s characters", limit=TEXT_MAX), "text")
    erasure.refuse_addresses(text, "text")
    version = (db.session.scalar(select(func.max(InterestAssessment.version))
                                 .where(InterestAssessment.topic_id == topic.id)) or 0) + 1
    row = InterestAssessment(topic_id=topic.id, version=version, purpose=purpose, text=text,
                             text_hash=hashlib.sha256(text.encode()).hexdigest(), approved_by=actor.label[:200])
    db.session.add(row)
    db.session.flush()
    audit.record(actor, "topic.assessment", target_type="topic", target_id=topic.key,
                 detail={"version": version, "hash": row.text_hash})
    return row

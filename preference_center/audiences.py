"""How many people a campaign would reach: the count staff confirm before anything is sent.

Built on `rules.audience_query`, the query the planner turns into delivery rows, with the campaign's own
filters; people whose one-click opt-out is still waiting in the inbox are left out, as the send-time
re-check will leave them out. So the number shown while composing, in the API and on the confirmation step
is the number of recipients who get the campaign if nothing changes in between. Read-only.
"""
from __future__ import annotations

from sqlalchemy import func, or_, select

from . import rules
from .extensions import db
from .models import Campaign, OptOutInbox, Topic


def count(topic: Topic, filters: dict | None = None) -> int:
    """Eligible recipients of a marketing topic narrowed by audience filters (checked: DomainError if bad)."""
    if topic.kind != "marketing":
        return 0
    eligible = rules.audience_query(topic, filters=rules.check_audience(filters)).subquery()
    leaving = select(OptOutInbox.contact_id).where(or_(OptOutInbox.topic_id.is_(None),
                                                       OptOutInbox.topic_id == topic.id))
    return db.session.scalar(select(func.count()).select_from(eligible)
                             .where(eligible.c.id.not_in(leaving))) or 0


def of_campaign(campaign: Campaign) -> int:
    """The live eligible count of a campaign's topic and audience."""
    return count(db.session.get(Topic, campaign.topic_id), campaign.audience or {})

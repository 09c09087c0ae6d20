"""The campaign list: search by name or subject, filter by status, keyset pages (newest first) with a total."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, or_, select

from ..extensions import db
from ..models import Campaign, Topic
from ..states import CampaignStatus

PAGE = 25
STATUSES = tuple(str(s) for s in CampaignStatus)


@dataclass
class CampaignPage:
    rows: list[tuple[Campaign, Topic]]
    total: int
    before: int | None


def page(q: str = "", status: str = "", before: int | None = None, size: int = PAGE) -> CampaignPage:
    """Campaigns whose name or subject contains `q` (any case), of one status if given, newest first."""
    conditions = []
    q = q.strip().lower()
    if q:
        conditions.append(or_(func.lower(Campaign.name).contains(q, autoescape=True),
                              func.lower(Campaign.subject).contains(q, autoescape=True)))
    if status in STATUSES:
        conditions.append(Campaign.status == status)
    total = db.session.scalar(select(func.count(Campaign.id)).where(*conditions)) or 0
    query = select(Campaign, Topic).join(Topic, Topic.id == Campaign.topic_id).where(*conditions)
    if before is not None:
        query = query.where(Campaign.id < before)
    rows = [(c, t) for c, t in db.session.execute(query.order_by(Campaign.id.desc()).limit(size + 1))]
    more = len(rows) > size
    rows = rows[:size]
    return CampaignPage(rows, total, rows[-1][0].id if more and rows else None)

"""Read-only questions the staff pages ask: searches, queues, lists and the delivery chart."""
from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

from sqlalchemy import func, or_, select

from ..emails import InvalidEmail, normalize
from ..extensions import db
from ..models import ApiToken, AuditLog, Campaign, Contact, DataRequest, Delivery, StaffUser, Topic, utcnow

PAGE = 50


def search_contacts(q: str, limit: int = PAGE) -> list[Contact]:
    """Contacts whose email or name contains `q` (an exact address first)."""
    q = (q or "").strip()
    if not q:
        return list(db.session.scalars(select(Contact).where(Contact.email.is_not(None))
                                       .order_by(Contact.id.desc()).limit(limit)))
    try:
        exact = normalize(q)
    except InvalidEmail:
        exact = None
    like = f"%{q.lower().replace('%', '').replace('_', '')}%"
    query = (select(Contact)
             .where(or_(Contact.email.like(like), func.lower(Contact.name).like(like),
                        Contact.email == exact if exact else False))
             .order_by((Contact.email == exact).desc() if exact else Contact.id, Contact.id)
             .limit(limit))
    return list(db.session.scalars(query))


@dataclass
class QueuedRequest:
    request: DataRequest
    email: str | None
    overdue: bool
    days: int  # whole days left, or whole days overdue


def data_requests(status: str = "open") -> list[QueuedRequest]:
    """The data-subject requests, oldest due date first, with overdue ones marked."""
    now = utcnow()
    query = select(DataRequest, Contact.email).outerjoin(Contact, Contact.id == DataRequest.contact_id)
    if status in ("open", "completed", "refused"):
        query = query.where(DataRequest.status == status)
    query = query.order_by(DataRequest.due_at, DataRequest.id).limit(500)
    rows = []
    for request, email in db.session.execute(query):
        overdue = request.status == "open" and request.due_at < now
        days = (now - request.due_at).days if overdue else (request.due_at - now).days
        rows.append(QueuedRequest(request, email, overdue, days))
    return rows


def audit_entries(before: int | None = None, limit: int = 100) -> list[AuditLog]:
    query = select(AuditLog).order_by(AuditLog.id.desc()).limit(limit)
    if before:
        query = query.where(AuditLog.id < before)
    return list(db.session.scalars(query))


def campaign_list(limit: int = 200) -> list[tuple[Campaign, Topic]]:
    return list(db.session.execute(select(Campaign, Topic).join(Topic, Topic.id == Campaign.topic_id)
                                   .order_by(Campaign.id.desc()).limit(limit)).all())


def staff_users() -> list[StaffUser]:
    return list(db.session.scalars(select(StaffUser).order_by(StaffUser.email)))


def api_tokens() -> list[ApiToken]:
    return list(db.session.scalars(select(ApiToken).order_by(ApiToken.revoked_at.is_not(None), ApiToken.name)))


def counts() -> dict:
    return {
        "contacts": db.session.scalar(select(func.count()).select_from(Contact).where(Contact.email.is_not(None))),
        "topics": db.session.scalar(select(func.count()).select_from(Topic).where(Topic.retired.is_(False))),
        "campaigns_open": db.session.scalar(select(func.count()).select_from(Campaign)
                                            .where(Campaign.status.in_(("draft", "scheduled", "sending")))),
        "requests_open": db.session.scalar(select(func.count()).select_from(DataRequest)
                                           .where(DataRequest.status == "open")),
        "requests_overdue": db.session.scalar(select(func.count()).select_from(DataRequest).where(
            DataRequest.status == "open", DataRequest.due_at < utcnow())),
    }


# -- the delivery chart ----------------------------------------------------------------

CHART_STATUSES = ("sent", "skipped", "failed", "unknown", "pending")
MAX_BARS = 60


@dataclass
class Bar:
    start: dt.datetime
    counts: dict

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def _minute_expression():
    if db.engine.dialect.name == "postgresql":
        return func.to_char(func.date_trunc("minute", Delivery.updated_at), "YYYY-MM-DD HH24:MI")
    return func.strftime("%Y-%m-%d %H:%M", Delivery.updated_at)


def deliveries_over_time(campaign: Campaign) -> tuple[list[Bar], int]:
    """Deliveries per time bucket by status (from Delivery.updated_at); bucket width in minutes."""
    minute = _minute_expression()
    rows = db.session.execute(
        select(minute, Delivery.status, func.count()).where(Delivery.campaign_id == campaign.id)
        .group_by(minute, Delivery.status).order_by(minute)
    ).all()
    if not rows:
        return [], 1
    per_minute: dict[dt.datetime, dict] = {}
    for label, status, n in rows:
        moment = dt.datetime.strptime(label, "%Y-%m-%d %H:%M").replace(tzinfo=dt.UTC)
        bucket = per_minute.setdefault(moment, {s: 0 for s in CHART_STATUSES})
        key = status if status in CHART_STATUSES else "pending"
        bucket[key] += n
    first, last = min(per_minute), max(per_minute)
    span = int((last - first).total_seconds() // 60) + 1
    width = max(1, math.ceil(span / MAX_BARS))
    bars = [Bar(first + dt.timedelta(minutes=i * width), {s: 0 for s in CHART_STATUSES})
            for i in range(math.ceil(span / width))]
    for moment, bucket in per_minute.items():
        bar = bars[int((moment - first).total_seconds() // 60) // width]
        for status, n in bucket.items():
            bar.counts[status] += n
    return bars, width


def chart(bars: list[Bar], width_px: int = 640, height_px: int = 200) -> dict:
    """Geometry for a server-rendered SVG of stacked bars (the template draws it)."""
    top = max((b.total for b in bars), default=0) or 1
    plot_h = height_px - 30
    left = 34  # room for the scale label
    # A few bars stay bar-shaped instead of stretching across the whole chart.
    slot = (width_px - left) / max(len(bars), 20)
    drawn = []
    for i, bar in enumerate(bars):
        y = plot_h
        segments = []
        for status in CHART_STATUSES:
            n = bar.counts[status]
            if not n:
                continue
            h = max(1.0, n / top * (plot_h - 10))
            y -= h
            segments.append({"status": status, "n": n, "x": round(left + i * slot + 1, 1), "y": round(y, 1),
                             "w": round(max(slot - 2, 1), 1), "h": round(h, 1)})
        drawn.append({"bar": bar, "segments": segments, "label_x": round(left + i * slot + slot / 2, 1)})
    labels = [d for i, d in enumerate(drawn) if i in (0, len(drawn) - 1) or (len(drawn) > 6 and i == len(drawn) // 2)]
    return {"width": width_px, "height": height_px, "plot_h": plot_h, "left": left, "top": top, "bars": drawn,
            "labels": labels}

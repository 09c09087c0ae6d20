"""Engagement per campaign from the provider's events, and open/click tracking only with consent.

Tracking is off unless both hold: the campaign's topic allows it (`TopicTracking`, off by default) and the
recipient agreed, recorded in the ledger like any consent (action `tracking`, detail {"allowed": bool}; the
latest such event of the contact decides). Without that, the provider is told explicitly not to rewrite
links or add a pixel (SendGrid's account default could be on). So opens and clicks are only ever counted
for recipients who agreed; the report says so.

Provider events about campaign deliveries (delivered, open, click, bounce, blocked, dropped, spam report,
unsubscribe) are kept as `EngagementEvent` rows as they are processed; the report counts distinct
deliveries per outcome, the most clicked links, and opens and clicks per hour.
"""
from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict

from sqlalchemy import func, select

from . import ledger
from .extensions import db
from .models import ConsentEvent, Delivery, EngagementEvent, Topic, TopicTracking, utcnow
from .sqlutil import chunked, one_of

KINDS = ("delivered", "open", "click", "bounce", "blocked", "dropped", "spamreport", "unsubscribe",
         "group_unsubscribe")
GROUPS = {"delivered": ("delivered",), "opened": ("open",), "clicked": ("click",),
          "bounced": ("bounce", "blocked", "dropped"), "complained": ("spamreport",),
          "unsubscribed": ("unsubscribe", "group_unsubscribe")}


# -- tracking consent ---------------------------------------------------------------------

def topic_tracks(topic: Topic) -> bool:
    row = db.session.get(TopicTracking, topic.id)
    return bool(row and row.enabled)


def set_topic_tracking(topic: Topic, enabled: bool) -> bool:
    """Allow (or stop) tracking for a topic's campaigns; True if it changed."""
    row = db.session.get(TopicTracking, topic.id)
    if bool(row and row.enabled) == enabled:
        return False
    if row is None:
        db.session.add(TopicTracking(topic_id=topic.id, enabled=enabled))
    else:
        row.enabled = enabled
    return True


def agreed(contact_ids: list[int]) -> set[int]:
    """The contacts whose latest tracking choice in the ledger is yes."""
    latest: dict[int, bool] = {}
    for part in chunked(list(contact_ids)):
        for contact_id, detail in db.session.execute(
                select(ConsentEvent.contact_id, ConsentEvent.detail)
                .where(ConsentEvent.action == ledger.TRACKING, one_of(ConsentEvent.contact_id, part))
                .order_by(ConsentEvent.id)):
            latest[contact_id] = bool((detail or {}).get("allowed"))
    return {contact_id for contact_id, allowed in latest.items() if allowed}


def tracked(topic: Topic, contact_ids: list[int]) -> set[int]:
    """Of these recipients of a topic's campaign, those whose mail may track opens and clicks."""
    return agreed(contact_ids) if topic_tracks(topic) else set()


# -- events and the report -------------------------------------------------------------------

def record(payload: dict, delivery: Delivery | None) -> None:
    """Keep a provider event about a campaign delivery (called while the event is processed)."""
    kind = payload.get("event")
    if delivery is None or delivery.campaign_id is None or kind not in KINDS:
        return
    if kind == "bounce" and payload.get("type") == "blocked":
        kind = "blocked"
    stamp = payload.get("timestamp")
    when = dt.datetime.fromtimestamp(stamp, dt.UTC) if isinstance(stamp, int) and stamp > 0 else utcnow()
    url = payload.get("url") if kind == "click" and isinstance(payload.get("url"), str) else None
    db.session.add(EngagementEvent(campaign_id=delivery.campaign_id, delivery_id=delivery.id, kind=kind,
                                   url=url[:2000] if url else None, occurred_at=when))


def report(campaign_id: int, top: int = 10) -> dict:
    """Distinct deliveries per outcome, the most clicked links, and opens and clicks per hour."""
    counts = dict(db.session.execute(
        select(EngagementEvent.kind, func.count(func.distinct(EngagementEvent.delivery_id)))
        .where(EngagementEvent.campaign_id == campaign_id).group_by(EngagementEvent.kind)).all())
    figures = {name: sum(counts.get(kind, 0) for kind in kinds) for name, kinds in GROUPS.items()}
    links = db.session.execute(
        select(EngagementEvent.url, func.count(func.distinct(EngagementEvent.delivery_id)).label("n"))
        .where(EngagementEvent.campaign_id == campaign_id, EngagementEvent.kind == "click",
               EngagementEvent.url.is_not(None))
        .group_by(EngagementEvent.url).order_by(func.count(func.distinct(EngagementEvent.delivery_id)).desc(),
                                                EngagementEvent.url).limit(top)).all()
    hours: dict[str, Counter] = defaultdict(Counter)
    for kind, when in db.session.execute(
            select(EngagementEvent.kind, EngagementEvent.occurred_at)
            .where(EngagementEvent.campaign_id == campaign_id, EngagementEvent.kind.in_(("open", "click")))):
        hours[when.astimezone(dt.UTC).strftime("%Y-%m-%d %H:00")][kind] += 1
    return {**figures, "top_links": [{"url": url, "clicks": n} for url, n in links],
            "over_time": [{"hour": hour, "opens": c["open"], "clicks": c["click"]} for hour, c in sorted(hours.items())]}

"""Engagement per campaign from the provider's events, and open/click tracking only with consent.

Tracking is off unless both hold: the campaign's topic allows it (`TopicTracking`, off by default) and the
recipient agreed, recorded in the ledger like any consent (action `tracking`, detail {"allowed": bool}; the
latest such event of the contact decides). Without that, the provider is told explicitly not to rewrite
links or add a pixel (SendGrid's account default could be on). So opens and clicks are only ever counted
for recipients who agreed; the report says so.

Provider events about campaign deliveries (delivered, open, click, bounce, blocked, dropped, spam report,
unsubscribe) are kept as `EngagementEvent` rows as they are processed; the report counts distinct
deliveries per outcome, the most clicked links, and opens and clicks per hour.

Our own unsubscribes count too: a campaign's unsubscribe link carries its delivery (`?d=<id>`, see
`compose.CampaignMail.envelope`), and an opt-out through it (RFC 8058 one-click or the unsubscribe page)
that withdraws something is kept as a `link_unsubscribe` row (`note_own_unsubscribe`), only when that
delivery is a campaign delivery of the very contact the signed link is for. "Unsubscribed" counts
distinct deliveries (one per person and campaign) over the provider's and our own events, so someone
who did both counts once.
"""
from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict

from sqlalchemy import case, delete, func, select

from . import inputs, ledger
from .extensions import db
from .models import ConsentEvent, Delivery, EngagementEvent, EngagementStat, Topic, TopicTracking, utcnow
from .sqlutil import chunked, one_of

KINDS = ("delivered", "open", "click", "bounce", "blocked", "dropped", "spamreport", "unsubscribe",
         "group_unsubscribe")
# An opt-out through our own unsubscribe link in the campaign's mail (not a provider event).
OWN_UNSUBSCRIBE = "link_unsubscribe"
PROVIDER_UNSUBSCRIBES = ("unsubscribe", "group_unsubscribe")
GROUPS = {"delivered": ("delivered",), "opened": ("open",), "clicked": ("click",),
          "bounced": ("bounce", "blocked", "dropped"), "complained": ("spamreport",),
          "unsubscribed": (*PROVIDER_UNSUBSCRIBES, OWN_UNSUBSCRIBE)}


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


def note_own_unsubscribe(contact_id: int, delivery_id: int | None, when: dt.datetime | None = None) -> bool:
    """Count an opt-out through the unsubscribe link of a campaign's mail on that campaign (in the caller's
    transaction); nothing unless `delivery_id` is a campaign delivery to this contact. True if counted."""
    if delivery_id is None or not inputs.fits(delivery_id, Delivery.id):
        return False
    delivery = db.session.execute(select(Delivery.campaign_id, Delivery.contact_id)
                                  .where(Delivery.id == delivery_id)).first()
    if delivery is None or delivery.campaign_id is None or delivery.contact_id != contact_id:
        return False
    db.session.add(EngagementEvent(campaign_id=delivery.campaign_id, delivery_id=delivery_id, kind=OWN_UNSUBSCRIBE,
                                   occurred_at=when or utcnow()))
    return True


FIGURES = {**GROUPS, "unsubscribed_by_link": (OWN_UNSUBSCRIBE,), "unsubscribed_at_provider": PROVIDER_UNSUBSCRIBES}
# Folded counts of events per hour (the report's "opens and clicks per hour").
HOURLY_EVENTS = {"open": "open_events", "click": "click_events"}
FOLDED_LINK = "link"


def report(campaign_id: int, top: int = 10) -> dict:
    """Distinct deliveries per outcome, the most clicked links, and opens and clicks per hour, live rows and
    folded counts (`fold`) added up; "unsubscribed" counts a person once whether they unsubscribed at the
    provider, through our link, or both."""
    # One pass: per figure, the distinct deliveries that have any of its kinds.
    row = db.session.execute(select(*(
        func.count(func.distinct(case((EngagementEvent.kind.in_(kinds), EngagementEvent.delivery_id)))).label(name)
        for name, kinds in FIGURES.items())).where(EngagementEvent.campaign_id == campaign_id)).one()
    figures = {name: row._mapping[name] or 0 for name in FIGURES}
    clicks: Counter = Counter(dict(db.session.execute(
        select(EngagementEvent.url, func.count(func.distinct(EngagementEvent.delivery_id)))
        .where(EngagementEvent.campaign_id == campaign_id, EngagementEvent.kind == "click",
               EngagementEvent.url.is_not(None))
        .group_by(EngagementEvent.url)).all()))
    hours: dict[str, Counter] = defaultdict(Counter)
    for kind, when in db.session.execute(
            select(EngagementEvent.kind, EngagementEvent.occurred_at)
            .where(EngagementEvent.campaign_id == campaign_id, EngagementEvent.kind.in_(("open", "click")))):
        hours[_hour_label(when)][kind] += 1
    event_of = {name: kind for kind, name in HOURLY_EVENTS.items()}
    for name, url, hour, count in db.session.execute(
            select(EngagementStat.name, EngagementStat.url, EngagementStat.hour, EngagementStat.count)
            .where(EngagementStat.campaign_id == campaign_id)):
        if name in figures:
            figures[name] += count
        elif name == FOLDED_LINK and url is not None:
            clicks[url] += count
        elif name in event_of:
            hours[_hour_label(hour)][event_of[name]] += count
    links = sorted(clicks.items(), key=lambda item: (-item[1], item[0]))[:top]
    return {**figures, "top_links": [{"url": url, "clicks": n} for url, n in links],
            "over_time": [{"hour": hour, "opens": c["open"], "clicks": c["click"]} for hour, c in sorted(hours.items())]}


def _hour_label(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%d %H:00")


def _hour(when: dt.datetime) -> dt.datetime:
    return when.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)


# -- folding (retention, erasure) ------------------------------------------------------------

def fold(delivery_ids: list[int]) -> int:
    """Fold every engagement row of these deliveries into anonymous per-campaign, per-hour counts
    (`EngagementStat`) and delete the rows, in the caller's transaction; how many rows went.

    A delivery's rows are folded together, so the report's "each recipient once" stays exact: per figure,
    the delivery counts once, in the hour of its first event of that figure; opens and clicks are counted per
    hour as events; each clicked link once per delivery.
    """
    rows = []
    for part in chunked(list(delivery_ids)):
        rows += db.session.execute(
            select(EngagementEvent.id, EngagementEvent.campaign_id, EngagementEvent.delivery_id, EngagementEvent.kind,
                   EngagementEvent.url, EngagementEvent.occurred_at)
            .where(one_of(EngagementEvent.delivery_id, part))).all()
    if not rows:
        return 0
    counts: Counter = Counter()
    first: dict[tuple, dt.datetime] = {}  # (campaign, delivery, figure name, url) -> earliest event
    for row in rows:
        when = row.occurred_at
        if row.kind in HOURLY_EVENTS:
            counts[(row.campaign_id, _hour(when), HOURLY_EVENTS[row.kind], None)] += 1
        names = [name for name, kinds in FIGURES.items() if row.kind in kinds]
        if row.kind == "click" and row.url:
            names.append((FOLDED_LINK, row.url[:2000]))
        for name in names:
            name, url = name if isinstance(name, tuple) else (name, None)
            key = (row.campaign_id, row.delivery_id, name, url)
            if key not in first or when < first[key]:
                first[key] = when
    for (campaign_id, _, name, url), when in first.items():
        counts[(campaign_id, _hour(when), name, url)] += 1
    for (campaign_id, hour, name, url), count in counts.items():
        stat = db.session.scalar(select(EngagementStat).where(
            EngagementStat.campaign_id == campaign_id, EngagementStat.hour == hour, EngagementStat.name == name,
            EngagementStat.url.is_(None) if url is None else EngagementStat.url == url))
        if stat is None:
            db.session.add(EngagementStat(campaign_id=campaign_id, hour=hour, name=name, url=url, count=count))
        else:
            stat.count += count
        db.session.flush()
    for part in chunked([row.id for row in rows]):
        db.session.execute(delete(EngagementEvent).where(one_of(EngagementEvent.id, part)))
    return len(rows)


def fold_contact(contact_id: int) -> int:
    """Fold the engagement rows of one contact's deliveries (erasure); how many rows went."""
    return fold(list(db.session.scalars(select(Delivery.id).where(Delivery.contact_id == contact_id,
                                                                  Delivery.campaign_id.is_not(None)))))


def deliveries_to_fold(cutoff: dt.datetime, limit: int):
    """SELECT of the deliveries (at most `limit`, oldest ids first) that have an engagement row older than
    `cutoff`: retention folds all of each one's rows."""
    return (select(EngagementEvent.delivery_id).where(EngagementEvent.occurred_at < cutoff)
            .group_by(EngagementEvent.delivery_id).order_by(EngagementEvent.delivery_id).limit(limit))

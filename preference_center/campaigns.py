"""Campaign lifecycle: create, schedule, start, cancel, report."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, func, select, update

from . import compose, rules
from .contacts import ValidationError
from .errors import N_, word
from .extensions import db
from .mail import TemplateError, check
from .models import Campaign, CampaignBatch, DailyStat, Delivery, Topic, utcnow
from .sending import RENDER_FAILED
from .states import CampaignStatus

OPEN = ("draft", "scheduled", "sending", "paused")


EDITABLE = ("draft", "scheduled")


def _fields(data: dict) -> dict:
    """Check a campaign's name, topic, subject, bodies and audience; return the model's fields."""
    def text(key, required=True, limit=200_000):
        value = data.get(key)
        if value is None and not required:
            return ""
        if not isinstance(value, str) or (required and not value.strip()):
            raise ValidationError(N_("%(field)s is required and must be a string", field=key), key)
        if len(value) > limit:
            raise ValidationError(N_("%(field)s is longer than %(limit)s characters", field=key, limit=limit), key)
        return value

    name, subject = text("name", limit=200), text("subject", limit=500)
    html, body = text("html", required=False), text("text", required=False)
    if not html.strip() and not body.strip():
        raise ValidationError(N_("a campaign needs a text or an HTML body"), "text")
    for key, source in (("subject", subject), ("html", html), ("text", body)):
        try:
            check(source)
        except TemplateError as exc:
            raise ValidationError(f"{key}: {exc}", key) from exc
    topic = db.session.scalar(select(Topic).where(Topic.key == data.get("topic"))) if isinstance(data.get("topic"), str) else None
    if topic is None:
        raise ValidationError(N_("unknown topic %(topic)r", topic=data.get('topic')), "topic", code="unknown_topic")
    if topic.kind != "marketing":
        raise ValidationError(N_("campaigns go to marketing topics; send system messages with /messages"),
                              "topic", code="system_topic")
    if topic.retired:
        raise ValidationError(N_("this topic is retired"), "topic")
    audience = rules.check_audience(data.get("audience"))
    _check_rendering(topic, subject, html, body)
    return dict(name=name, topic_id=topic.id, subject=subject, html=html, text=body, audience=audience)


def _check_rendering(topic: Topic, subject: str, html: str, text: str) -> None:
    """Render the campaign as the worker will, for a sample recipient; a failure names the part."""
    try:
        compose.check_campaign(topic, subject, html, text)
    except TemplateError as exc:
        field = exc.field or "text"
        raise ValidationError(f"{field}: {exc}", field) from exc


def create(data: dict, *, created_by: str) -> Campaign:
    """Validate and store a draft campaign."""
    campaign = Campaign(**_fields(data), status="draft", created_by=created_by)
    db.session.add(campaign)
    db.session.flush()
    return campaign


def edit(campaign: Campaign, data: dict) -> Campaign:
    """Change a draft or scheduled campaign (a scheduled one keeps its time); never one that started."""
    fields = _fields(data)
    if campaign.status not in EDITABLE:
        raise ValidationError(N_("a %(status)s campaign cannot be changed", status=word(campaign.status)), "status",
                              code="conflict")
    # Conditional: if the scheduler started it a moment ago, the change does not apply.
    result = db.session.execute(update(Campaign).where(Campaign.id == campaign.id, Campaign.status.in_(EDITABLE))
                                .values(**fields))
    if not result.rowcount:
        db.session.refresh(campaign)
        raise ValidationError(N_("a %(status)s campaign cannot be changed", status=word(campaign.status)), "status",
                              code="conflict")
    db.session.refresh(campaign)
    return campaign


def parse_time(value) -> dt.datetime | None:
    """ISO-8601 with a zone (or naive = UTC); None means now."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError(N_("at must be an ISO-8601 time or null"), "at")
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValidationError(N_("at must be an ISO-8601 time such as 2026-12-01T09:00:00+01:00"), "at") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC)


def schedule(campaign: Campaign, at: dt.datetime | None) -> Campaign:
    """Schedule a draft (or move a scheduled campaign); its templates and audience are checked again first."""
    if campaign.status not in ("draft", "scheduled"):
        raise ValidationError(N_("a %(status)s campaign cannot be scheduled", status=word(campaign.status)), "status",
                              code="conflict")
    # A campaign saved before today's checks existed must not reach the worker unchecked.
    rules.check_audience(campaign.audience)
    _check_rendering(db.session.get(Topic, campaign.topic_id), campaign.subject, campaign.html, campaign.text)
    campaign.status = "scheduled"
    campaign.scheduled_at = at or utcnow()
    return campaign


def cancel(campaign: Campaign) -> Campaign:
    """Stop a campaign; batches not yet sent are skipped as cancelled."""
    if campaign.status not in OPEN:
        raise ValidationError(N_("a %(status)s campaign cannot be cancelled", status=word(campaign.status)), "status",
                              code="conflict")
    db.session.execute(update(Campaign).where(Campaign.id == campaign.id, Campaign.status.in_(OPEN))
                       .values(status="cancelled", cancelled_at=utcnow()))
    db.session.refresh(campaign)
    return campaign


def start_due(now: dt.datetime | None = None) -> list[int]:
    """Move due scheduled campaigns to sending; return their ids."""
    now = now or utcnow()
    due = db.session.scalars(select(Campaign.id).where(Campaign.status == "scheduled", Campaign.scheduled_at <= now)).all()
    started = []
    for campaign_id in due:
        result = db.session.execute(update(Campaign).where(Campaign.id == campaign_id, Campaign.status == "scheduled")
                                    .values(status="sending", started_at=now))
        if result.rowcount:
            started.append(campaign_id)
    db.session.commit()
    return started


def report(campaign: Campaign) -> dict:
    """Counts by outcome: eligible (planned), sent, skipped by reason, failed, unknown, pending; and the error."""
    rows = db.session.execute(
        select(Delivery.status, Delivery.reason, func.count()).where(Delivery.campaign_id == campaign.id)
        .group_by(Delivery.status, Delivery.reason)
    ).all()
    # Deliveries past retention live on as anonymous daily counts: the report adds them back.
    rows += [(status, reason or None, int(n)) for status, reason, n in db.session.execute(
        select(DailyStat.status, DailyStat.reason, func.sum(DailyStat.count)).where(DailyStat.campaign_id == campaign.id)
        .group_by(DailyStat.status, DailyStat.reason))]
    counts = {"sent": 0, "failed": 0, "unknown": 0, "pending": pending(campaign.id)}
    skipped: dict[str, int] = {}
    eligible = counts["pending"]
    for status, reason, n in rows:
        eligible += n
        if status == "skipped":
            skipped[reason or "unknown"] = skipped.get(reason or "unknown", 0) + n
        elif status in ("queued", "sending"):
            counts["pending"] += n
        else:
            counts[status] = counts.get(status, 0) + n
    return {
        "id": campaign.id,
        "status": campaign.status,
        "eligible": eligible,
        "sent": counts["sent"],
        "skipped": skipped,
        "failed": counts["failed"],
        "unknown": counts["unknown"],
        "pending": counts["pending"],
        "started_at": campaign.started_at.isoformat() if campaign.started_at else None,
        "finished_at": campaign.finished_at.isoformat() if campaign.finished_at else None,
        "error": failure(campaign, any(s == "failed" and r == RENDER_FAILED for s, r, _ in rows)),
    }


def pending(campaign_id: int) -> int:
    """Recipients planned but without a delivery row yet: the open batches' size less their rows written."""
    open_batches = select(CampaignBatch.id).where(CampaignBatch.campaign_id == campaign_id,
                                                  CampaignBatch.status != "done")
    planned = db.session.scalar(select(func.coalesce(func.sum(CampaignBatch.size), 0))
                                .where(CampaignBatch.id.in_(open_batches))) or 0
    if not planned:
        return 0
    written = db.session.scalar(select(func.count()).select_from(Delivery)
                                .where(Delivery.batch_id.in_(open_batches))) or 0
    return int(planned) - written


def failure(campaign: Campaign, render_failed: bool = True) -> str | None:
    """Why the campaign (or some of its deliveries) could not be rendered, or why it failed; None otherwise."""
    error = db.session.scalar(select(Delivery.error).where(
        Delivery.campaign_id == campaign.id, Delivery.status == "failed", Delivery.reason == RENDER_FAILED)
        .order_by(Delivery.id).limit(1)) if render_failed else None
    if error is None and campaign.status == CampaignStatus.FAILED:
        try:
            rules.check_audience(campaign.audience)
        except ValidationError as exc:  # the planner stopped on an audience saved before it was checked
            return exc.message
        return "the campaign could not be sent"
    return error


# -- staff housekeeping: duplicate, delete a draft, pause and resume -------------------------

def duplicate(campaign: Campaign, *, created_by: str) -> Campaign:
    """A new draft with the same topic, content and audience (checked again, as any new draft)."""
    topic = db.session.get(Topic, campaign.topic_id)
    name = f"Copy of {campaign.name}"[:200]
    return create({"name": name, "topic": topic.key, "subject": campaign.subject, "html": campaign.html,
                   "text": campaign.text, "audience": campaign.audience or None}, created_by=created_by)


def delete_draft(campaign: Campaign) -> None:
    """Remove a draft (nothing was ever planned for it); any other status is refused."""
    result = db.session.execute(delete(Campaign).where(Campaign.id == campaign.id,
                                                       Campaign.status == CampaignStatus.DRAFT)
                                .execution_options(synchronize_session=False))
    if not result.rowcount:
        raise ValidationError(N_("only a draft can be deleted; this campaign is %(status)s",
                                 status=word(campaign.status)), "status",
                              code="conflict")
    db.session.expunge(campaign)


def pause(campaign: Campaign) -> Campaign:
    """Stop a sending campaign between batches: no new batch is planned or sent until it resumes.

    A batch a worker is sending finishes; the others stay queued, their rows untouched, so resuming
    sends each recipient once, nobody twice.
    """
    _move(campaign, CampaignStatus.SENDING, CampaignStatus.PAUSED, "paused")
    return campaign


def resume(campaign: Campaign) -> list[int]:
    """Let a paused campaign go on; the ids of its queued batches (the caller hands them to the broker)."""
    _move(campaign, CampaignStatus.PAUSED, CampaignStatus.SENDING, "resumed")
    return list(db.session.scalars(select(CampaignBatch.id).where(CampaignBatch.campaign_id == campaign.id,
                                                                  CampaignBatch.status == "queued")))


def _move(campaign: Campaign, from_status: str, to_status: str, verb: str) -> None:
    result = db.session.execute(update(Campaign).where(Campaign.id == campaign.id, Campaign.status == from_status)
                                .values(status=to_status).execution_options(synchronize_session=False))
    db.session.refresh(campaign)
    if not result.rowcount:
        status = word(campaign.status)
        raise ValidationError(N_("only a sending campaign can be paused; this one is %(status)s", status=status)
                              if verb == "paused"
                              else N_("only a paused campaign can be resumed; this one is %(status)s", status=status),
                              "status", code="conflict")

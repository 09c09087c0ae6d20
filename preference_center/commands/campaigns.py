"""Campaign commands: create, edit, schedule, cancel, test send, duplicate, delete a draft, pause and resume;
the lifecycle rules live in `campaigns`."""
from __future__ import annotations

import datetime as dt

from .. import audit, campaigns
from ..actors import Actor
from ..models import Campaign


def create(actor: Actor, data: dict) -> Campaign:
    """Validate and store a draft."""
    campaign = campaigns.create(data, created_by=actor.label)
    audit.record(actor, "campaign.create", target_type="campaign", target_id=campaign.id,
                 detail={"name": campaign.name, "topic": data.get("topic")})
    return campaign


def edit(actor: Actor, campaign: Campaign, data: dict) -> Campaign:
    """Change a draft or scheduled campaign (never one the scheduler has started)."""
    campaigns.edit(campaign, data)
    audit.record(actor, "campaign.update", target_type="campaign", target_id=campaign.id,
                 detail={"name": campaign.name, "topic": data.get("topic")})
    return campaign


def schedule(actor: Actor, campaign: Campaign, at: dt.datetime | None, zone: str | None = None) -> Campaign:
    """Schedule at `at` (None: now), in a time zone shown to staff."""
    campaigns.schedule(campaign, at)
    if zone:
        campaign.timezone = zone
    audit.record(actor, "campaign.schedule", target_type="campaign", target_id=campaign.id,
                 detail={"at": campaign.scheduled_at.isoformat(), "zone": campaign.timezone})
    return campaign


def cancel(actor: Actor, campaign: Campaign) -> Campaign:
    """Stop a campaign; batches not yet sent are skipped as cancelled."""
    campaigns.cancel(campaign)
    audit.record(actor, "campaign.cancel", target_type="campaign", target_id=campaign.id)
    return campaign


def record_test_send(actor: Actor, campaign: Campaign, to: str, message_id: str | None) -> None:
    """Note a test send in the audit log (the mail itself goes out through the preview)."""
    audit.record(actor, "campaign.test_send", target_type="campaign", target_id=campaign.id,
                 detail={"to": to, "message_id": message_id})


def duplicate(actor: Actor, campaign: Campaign) -> Campaign:
    """A new draft copied from a campaign."""
    copy = campaigns.duplicate(campaign, created_by=actor.label)
    audit.record(actor, "campaign.create", target_type="campaign", target_id=copy.id,
                 detail={"name": copy.name, "copied_from": campaign.id})
    return copy


def delete_draft(actor: Actor, campaign: Campaign) -> None:
    """Remove a draft."""
    campaign_id, name = campaign.id, campaign.name
    campaigns.delete_draft(campaign)
    audit.record(actor, "campaign.delete", target_type="campaign", target_id=campaign_id, detail={"name": name})


def pause(actor: Actor, campaign: Campaign) -> Campaign:
    """Stop a sending campaign between batches."""
    campaigns.pause(campaign)
    audit.record(actor, "campaign.pause", target_type="campaign", target_id=campaign.id)
    return campaign


def resume(actor: Actor, campaign: Campaign) -> list[int]:
    """Let a paused campaign go on; its queued batch ids, for the broker after the commit."""
    queued = campaigns.resume(campaign)
    audit.record(actor, "campaign.resume", target_type="campaign", target_id=campaign.id)
    return queued

"""Models of consent as a service (SPEC 8): eligibility, the change feed and outgoing webhooks.

Same rules as `schemas`: inputs strict and closed, outputs open. Query strings
arrive as text, so query models read numbers from text (and nothing else).
"""
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, StringConstraints

from .. import change_feed, eligibility
from ..outbound import endpoints
from .schemas import ONE_LINE, Email, Input, Output, TopicKey

CURSOR = r"^[0-9]{1,19}$"
WEBHOOK_NAME = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
EventType = Literal[change_feed.TYPES]


class Query(Input):
    """A query string: closed like every input, but numbers come as text."""

    model_config = ConfigDict(strict=False, extra="forbid")


# -- eligibility ------------------------------------------------------------------------

class EligibilityQuery(Query):
    email: Email = Field(description="the address to ask about", json_schema_extra={"format": "email"},
                         examples=["ann@example.com"])
    topic: TopicKey = Field(description="the topic's key", examples=["news"])


class EligibilityInput(Input):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"topic": "news", "emails": ["ann@example.com", "bob@example.com"]}]})

    topic: TopicKey
    emails: Annotated[list[Email], Field(min_length=1, max_length=eligibility.BULK_MAX)] = Field(
        description=f"1 to {eligibility.BULK_MAX} addresses; answers come back in the same order")


class Eligibility(Output):
    email: str = Field(description="the address as asked")
    topic: str
    send: bool = Field(description="whether a message on this topic may be sent to the address now")
    reason: str = Field(description="the basis that authorises a send (consent, legitimate_interest, contract) "
                                    "or why not (suppressed_all, opted_out_all, unsubscribed, no_consent, ...)")
    event_id: int | None = Field(description="the ledger event that authorises a send; null for a skip")


class EligibilityList(Output):
    results: list[Eligibility]


# -- the change feed ---------------------------------------------------------------------

class EventsQuery(Query):
    after: Annotated[str, StringConstraints(pattern=CURSOR)] | None = Field(
        None, description="the `next` of the previous page (absent: from the beginning)")
    limit: Annotated[int, Field(ge=1, le=change_feed.PAGE_MAX)] = Field(
        100, description=f"events per page, 1 to {change_feed.PAGE_MAX} (100 by default)")


class FeedEvent(Output):
    id: int = Field(description="the ledger event's id (ascending, no gaps)")
    type: str = Field(description="consent.granted, consent.requested, consent.withdrawn, contact.objected, "
                                  "contact.restricted, contact.restriction_lifted, contact.erased, "
                                  "suppression.added, ...")
    email: str | None = Field(description="null once the person is erased")
    topic: str | None = Field(description="null for all marketing or the contact as a whole")
    legal_basis: str | None
    source: str
    occurred_at: str = Field(json_schema_extra={"format": "date-time"})
    contact_id: int | None
    scope: str = Field(description="topic, all_marketing or contact")
    action: str = Field(description="the ledger's own action name")
    confirmed: bool
    relationship: str | None = Field(None, description="contact.relationship_set only")
    suppression_scope: str | None = Field(None, description="suppression events only: all or marketing")
    suppression_reason: str | None = Field(None, description="suppression events only: hard_bounce, spam, "
                                                             "opt_out, erased, manual, ...")


class EventPage(Output):
    events: list[FeedEvent]
    next: str = Field(description="the cursor to ask with next time (the same one when nothing was new)")


# -- outgoing webhooks -----------------------------------------------------------------

class WebhookNamePath(Input):
    name: Annotated[str, StringConstraints(pattern=WEBHOOK_NAME, max_length=64)] = Field(
        description="1-64 of a-z, 0-9, '_', '.', '-', starting with a letter or digit", examples=["crm"])


class WebhookInput(Input):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"url": "https://crm.example.com/hooks/consent", "events": ["consent.granted", "consent.withdrawn"]}]})

    url: Annotated[str, StringConstraints(min_length=1, max_length=endpoints.URL_MAX, pattern=ONE_LINE)] = Field(
        description="http(s) URL; loopback and private addresses are refused unless PC_WEBHOOK_ALLOW_PRIVATE=1")
    events: Annotated[list[EventType], Field(min_length=1, max_length=len(change_feed.TYPES))]


class Webhook(Output):
    name: str
    url: str
    events: list[str]
    enabled: bool
    disabled_reason: str | None
    created_at: str = Field(json_schema_extra={"format": "date-time"})


class WebhookCreated(Webhook):
    secret: str = Field(description="whsec_…: shown in this answer only; verify signatures with it")


class WebhookList(Output):
    webhooks: list[Webhook]


class WebhookDeleted(Output):
    name: str
    deleted: bool

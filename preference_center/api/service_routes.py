"""API views of consent as a service (SPEC 8): ask (eligibility), poll (the change feed), be told (webhooks)."""
from __future__ import annotations

from flask import g

from .. import change_feed, eligibility, tokens
from ..commands import webhooks as webhook_commands
from ..extensions import db
from ..outbound import endpoints
from . import service_schemas as schemas
from .errors import ApiError
from .operations import Answer, operation

# -- ask -----------------------------------------------------------------------------------


@operation("GET", "/eligibility", summary="May this address be sent a message on this topic now?",
           tag="Consent as a service", query=schemas.EligibilityQuery,
           answers={200: Answer("The sending rule's answer", schemas.Eligibility)})
def get_eligibility(query: schemas.EligibilityQuery):
    """The same rule, through the same code, as the worker's re-check right before sending (one-click opt-outs
    received so far count). An unknown topic or an invalid address is a 422 naming the field."""
    topic = eligibility.topic_by_key(query.topic)
    (answer,) = eligibility.check(topic, [query.email], field="email")
    return answer.as_dict()


@operation("POST", "/eligibility", summary=f"The same for up to {eligibility.BULK_MAX} addresses",
           tag="Consent as a service", body=schemas.EligibilityInput,
           answers={200: Answer("One answer per address, in the order asked", schemas.EligibilityList)})
def post_eligibility(body: schemas.EligibilityInput):
    """Read-only: nothing is recorded (a 409 is only a lost race of the one-click opt-outs being settled)."""
    topic = eligibility.topic_by_key(body.topic)
    return {"results": [answer.as_dict() for answer in eligibility.check(topic, body.emails)]}


# -- poll ----------------------------------------------------------------------------------

@operation("GET", "/events", summary="The consent ledger as a change feed", tag="Consent as a service",
           query=schemas.EventsQuery, answers={200: Answer("A page of events, oldest first", schemas.EventPage)})
def get_events(query: schemas.EventsQuery):
    """Keep `next` and ask again with `after=<next>`: every event comes once, in ledger order, none skipped.
    No IP or user agent; `email` is null once the person is erased."""
    try:
        after = change_feed.parse_cursor(query.after)
    except ValueError as exc:
        raise ApiError(422, "validation_error", str(exc), "after") from None
    page = change_feed.page(after, query.limit)
    return {"events": page.events, "next": page.next}


# -- be told ---------------------------------------------------------------------------------

ADMIN_ONLY = "Webhooks are managed with an admin token (preference-center create-token --admin)"


def _admin() -> None:
    if not tokens.is_admin(g.api_token):
        raise ApiError(403, "forbidden", "only an admin token manages webhooks")


def _endpoint_or_404(name: str):
    endpoint = endpoints.get(name)
    if endpoint is None:
        raise ApiError(404, "not_found", f"no webhook named {name!r}")
    return endpoint


@operation("GET", "/webhooks", summary="List outgoing webhooks", tag="Consent as a service",
           forbidden=ADMIN_ONLY, answers={200: Answer("Every endpoint (secrets are never shown again)",
                                                      schemas.WebhookList)})
def list_webhooks():
    _admin()
    return {"webhooks": [endpoints.as_dict(e) for e in endpoints.all_endpoints()]}


@operation("GET", "/webhooks/{name}", summary="Read an outgoing webhook", tag="Consent as a service",
           params=schemas.WebhookNamePath, forbidden=ADMIN_ONLY, not_found="No webhook with that name",
           answers={200: Answer("The endpoint", schemas.Webhook)})
def get_webhook(name: str):
    _admin()
    return endpoints.as_dict(_endpoint_or_404(name))


@operation("PUT", "/webhooks/{name}", summary="Create or change an outgoing webhook", tag="Consent as a service",
           params=schemas.WebhookNamePath, body=schemas.WebhookInput, forbidden=ADMIN_ONLY,
           answers={200: Answer("Changed (the secret stays as it was, and is not shown)", schemas.Webhook),
                    201: Answer("Created: the secret is in this answer only", schemas.WebhookCreated)})
def put_webhook(name: str, body: schemas.WebhookInput):
    """Messages follow Standard Webhooks (webhook-id, webhook-timestamp, webhook-signature) and are retried
    with exponential backoff for days, in ledger order per contact. A URL on a loopback or private address is
    a 422 unless PC_WEBHOOK_ALLOW_PRIVATE=1."""
    _admin()
    endpoint, secret = webhook_commands.put(g.actor, name, body.url, list(body.events))
    db.session.commit()
    if secret is None:
        return endpoints.as_dict(endpoint)
    return {**endpoints.as_dict(endpoint), "secret": secret}, 201


@operation("DELETE", "/webhooks/{name}", summary="Delete an outgoing webhook and its undelivered messages",
           tag="Consent as a service", params=schemas.WebhookNamePath, forbidden=ADMIN_ONLY,
           not_found="No webhook with that name", answers={200: Answer("Deleted", schemas.WebhookDeleted)})
def delete_webhook(name: str):
    _admin()
    webhook_commands.delete(g.actor, _endpoint_or_404(name))
    db.session.commit()
    return {"name": name, "deleted": True}

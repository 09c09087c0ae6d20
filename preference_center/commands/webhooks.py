"""Outgoing webhook commands: create or change, delete, enable, retry; each audited (never with the secret)."""
from __future__ import annotations

from .. import audit
from ..actors import Actor
from ..errors import N_, Code, DomainError
from ..extensions import db
from ..models import WebhookEndpoint, WebhookMessage, utcnow
from ..outbound import delivery, endpoints


def put(actor: Actor, name: str, url: str, events: list[str]) -> tuple[WebhookEndpoint, str | None]:
    """Create an endpoint (its secret returned, to show once) or change its URL and events (secret None)."""
    url = endpoints.check_url(url)
    events = endpoints.check_events(events)
    endpoint = endpoints.get(name)
    if endpoint is None:
        secret = endpoints.new_secret()
        endpoint = WebhookEndpoint(name=name, url=url, events=events, secret=secret, enabled=True)
        db.session.add(endpoint)
        db.session.flush()
        audit.record(actor, "webhook.create", target_type="webhook", target_id=name,
                     detail={"url": url, "events": events})
        return endpoint, secret
    changed = [k for k, v in (("url", url), ("events", events)) if getattr(endpoint, k) != v]
    if changed:
        endpoint.url, endpoint.events = url, events
        audit.record(actor, "webhook.update", target_type="webhook", target_id=name,
                     detail={"changed": changed, "url": url, "events": events})
    return endpoint, None


def delete(actor: Actor, endpoint: WebhookEndpoint) -> None:
    """Remove an endpoint and the messages it had not received."""
    db.session.query(WebhookMessage).filter(WebhookMessage.endpoint_id == endpoint.id).delete(
        synchronize_session=False)
    db.session.delete(endpoint)
    audit.record(actor, "webhook.delete", target_type="webhook", target_id=endpoint.name)


def enable(actor: Actor, endpoint: WebhookEndpoint) -> bool:
    """Enable a disabled endpoint again; its waiting messages become due now. False if it was enabled."""
    if endpoint.enabled:
        return False
    endpoint.enabled, endpoint.disabled_reason, endpoint.failing_since = True, None, None
    db.session.query(WebhookMessage).filter(WebhookMessage.endpoint_id == endpoint.id,
                                            WebhookMessage.status == delivery.PENDING).update(
        {"next_attempt_at": utcnow()}, synchronize_session=False)
    audit.record(actor, "webhook.enable", target_type="webhook", target_id=endpoint.name)
    return True


def retry(actor: Actor, endpoint: WebhookEndpoint, message_id: int) -> WebhookMessage:
    """Attempt one waiting message again now (after the contact's earlier ones, as always)."""
    message = db.session.get(WebhookMessage, message_id)
    if message is None or message.endpoint_id != endpoint.id:
        raise DomainError(N_("no such message for this webhook"), "message", code=Code.NOT_FOUND)
    if message.status != delivery.PENDING:
        raise DomainError(N_("this message was delivered already"), "message", code=Code.CONFLICT)
    delivery.retry(message)
    audit.record(actor, "webhook.retry", target_type="webhook", target_id=endpoint.name,
                 detail={"message_id": message.message_id})
    return message

"""Delivering the outbox: signed (Standard Webhooks), at least once, in ledger order per contact.

- A message is claimed with one conditional UPDATE that also holds it for a
  lease (the timeout and a margin): a worker killed mid-delivery lets it go when
  the lease runs out, and the next worker sends it again. Receivers de-duplicate
  by `webhook-id`, which is the same on every attempt.
- Per endpoint, a contact's message goes out only once every earlier message of
  that contact succeeded (the claim itself checks it), so a receiver sees each
  person's changes in ledger order even across failures and retries.
- A failure (no 2xx, a timeout, a refused address) is retried with exponential
  backoff (PC_WEBHOOK_RETRY_BASE_SECONDS doubling up to
  PC_WEBHOOK_RETRY_MAX_SECONDS). An endpoint whose attempts have all failed for
  PC_WEBHOOK_DISABLE_AFTER_HOURS (72) is disabled with the reason; its
  messages wait, and go out in order once an admin enables it again.

Signature: `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`
keyed with the base64-decoded part of the endpoint's whsec_ secret.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import http.client
import json
import logging
import socket
import ssl
from dataclasses import dataclass, field

from flask import current_app
from sqlalchemy import and_, exists, or_, select, update
from sqlalchemy.orm import aliased

from ..extensions import db
from ..models import WebhookEndpoint, WebhookMessage, utcnow
from . import endpoints

log = logging.getLogger(__name__)
PENDING, DELIVERED = "pending", "delivered"
LEASE_MARGIN_SECONDS = 30


def sign(secret: str, message_id: str, timestamp: int, body: str) -> str:
    """The webhook-signature header value for one attempt."""
    key = base64.b64decode(secret.removeprefix(endpoints.SECRET_PREFIX))
    digest = hmac.new(key, f"{message_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def body_of(message: WebhookMessage) -> str:
    """The JSON body: the stored payload with the address as it is now (null once erased)."""
    payload = json.loads(json.dumps(message.payload))
    if message.event_type != "contact.erased":
        payload.setdefault("data", {})["email"] = message.email
    return json.dumps(payload, separators=(",", ":"), sort_keys=True)


class _PinnedHTTPS(http.client.HTTPSConnection):
    """HTTPS to an address checked beforehand, with the certificate checked for the host name."""

    def __init__(self, host: str, port: int, address: str, **kwargs):
        super().__init__(host, port, **kwargs)
        self._address = address

    def connect(self):
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def post(url: str, body: str, headers: dict, timeout: float) -> int:
    """POST to a checked address of the URL's host; the status (redirects are not followed)."""
    scheme, host, port, path = endpoints.target(url)
    address = endpoints.resolve(host, port)[0]
    if scheme == "https":
        connection = _PinnedHTTPS(host, port, address, timeout=timeout, context=ssl.create_default_context())
    else:
        connection = http.client.HTTPConnection(address, port, timeout=timeout)
    default_port = 443 if scheme == "https" else 80
    host_header = host if port == default_port else f"{host}:{port}"
    if ":" in host and not host.startswith("["):
        host_header = f"[{host}]" if port == default_port else f"[{host}]:{port}"
    try:
        connection.request("POST", path, body=body.encode(), headers={
            **headers, "Host": host_header, "Content-Type": "application/json",
            "User-Agent": "preference-center-webhooks/1"})
        response = connection.getresponse()
        response.read(65536)
        return response.status
    finally:
        connection.close()


@dataclass
class Run:
    delivered: int = 0
    failed: int = 0
    disabled: list[str] = field(default_factory=list)


def _blocked_by_earlier():
    earlier = aliased(WebhookMessage)
    return exists().where(earlier.endpoint_id == WebhookMessage.endpoint_id,
                          earlier.contact_id == WebhookMessage.contact_id,
                          earlier.id < WebhookMessage.id, earlier.status == PENDING)


def _free(now: dt.datetime):
    return or_(WebhookMessage.lease_until.is_(None), WebhookMessage.lease_until < now)


def due(now: dt.datetime | None = None, limit: int = 100) -> list[int]:
    """Messages that may be attempted now: due, not held, endpoint enabled, nothing earlier of theirs waiting."""
    now = now or utcnow()
    return list(db.session.scalars(
        select(WebhookMessage.id)
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookMessage.endpoint_id)
        .where(WebhookMessage.status == PENDING, WebhookMessage.next_attempt_at <= now, _free(now),
               WebhookEndpoint.enabled.is_(True), ~_blocked_by_earlier())
        .order_by(WebhookMessage.id).limit(limit)))


def claim(message_id: int, now: dt.datetime) -> bool:
    """Hold one message for this worker (committed); False if another has it, or it is not its turn."""
    lease = now + dt.timedelta(seconds=_timeout() + LEASE_MARGIN_SECONDS)
    claimed = db.session.execute(
        update(WebhookMessage)
        .where(WebhookMessage.id == message_id, WebhookMessage.status == PENDING, _free(now),
               ~_blocked_by_earlier())
        .values(lease_until=lease, attempts=WebhookMessage.attempts + 1)
        .execution_options(synchronize_session=False)
    ).rowcount == 1
    db.session.commit()
    return claimed


def _timeout() -> float:
    return float(current_app.config["PC_WEBHOOK_TIMEOUT_SECONDS"])


def backoff(attempts: int) -> float:
    """Seconds before the next attempt after `attempts` failed ones."""
    config = current_app.config
    base, cap = float(config["PC_WEBHOOK_RETRY_BASE_SECONDS"]), float(config["PC_WEBHOOK_RETRY_MAX_SECONDS"])
    return min(cap, base * 2 ** min(max(attempts - 1, 0), 40))


def attempt(message_id: int, now: dt.datetime | None = None) -> str | None:
    """Claim, sign, send and record one message; its status, or None if it was not ours to send."""
    now = now or utcnow()
    if not claim(message_id, now):
        return None
    message = db.session.get(WebhookMessage, message_id, populate_existing=True)
    endpoint = db.session.get(WebhookEndpoint, message.endpoint_id, populate_existing=True) if message else None
    if endpoint is None or not endpoint.enabled:
        if message is not None:
            _release(message_id)
        return None
    body = body_of(message)
    timestamp = int(utcnow().timestamp())  # the real moment of sending, whatever clock schedules
    headers = {"webhook-id": message.message_id, "webhook-timestamp": str(timestamp),
               "webhook-signature": sign(endpoint.secret, message.message_id, timestamp, body)}
    db.session.commit()  # no transaction stays open across the call
    status, error = None, None
    try:
        status = post(endpoint.url, body, headers, _timeout())
        if not 200 <= status < 300:
            error = f"the receiver answered {status}"
    except endpoints.Refused as exc:
        error = f"refused: {exc}"
    except (OSError, http.client.HTTPException) as exc:
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return record(message_id, status, error, now)


def _release(message_id: int) -> None:
    db.session.execute(update(WebhookMessage).where(WebhookMessage.id == message_id)
                       .values(lease_until=None, attempts=WebhookMessage.attempts - 1))
    db.session.commit()


def record(message_id: int, status: int | None, error: str | None, now: dt.datetime) -> str:
    """Record an attempt's result on the message and its endpoint (committed); the message's status."""
    message = db.session.get(WebhookMessage, message_id, populate_existing=True)
    if message is None:  # its endpoint was deleted while the call was under way
        db.session.commit()
        return "deleted"
    endpoint = db.session.get(WebhookEndpoint, message.endpoint_id, populate_existing=True)
    message.last_status, message.lease_until = status, None
    if error is None:
        message.status, message.delivered_at, message.last_error = DELIVERED, utcnow(), None
        endpoint.failing_since = None
    else:
        message.last_error = error[:2000]
        message.next_attempt_at = now + dt.timedelta(seconds=backoff(message.attempts))
        if endpoint.failing_since is None:
            endpoint.failing_since = now
        limit = dt.timedelta(hours=float(current_app.config["PC_WEBHOOK_DISABLE_AFTER_HOURS"]))
        if endpoint.enabled and now - endpoint.failing_since >= limit:
            endpoint.enabled = False
            endpoint.disabled_reason = (
                f"disabled at {now.isoformat(timespec='seconds')}: every attempt failed since "
                f"{endpoint.failing_since.isoformat(timespec='seconds')}; last error: {error}")[:2000]
            log.warning("webhook %s disabled: %s", endpoint.name, endpoint.disabled_reason)
    db.session.commit()
    return message.status


def run(now: dt.datetime | None = None, limit: int = 100) -> Run:
    """Attempt every message that is due, round after round, until none is (the worker's task)."""
    result = Run()
    seen: set[int] = set()
    while True:
        ids = [i for i in due(now, limit) if i not in seen]
        if not ids:
            return result
        for message_id in ids:
            seen.add(message_id)
            status = attempt(message_id, now)
            if status == DELIVERED:
                result.delivered += 1
            elif status is not None:
                result.failed += 1
        result.disabled = [e.name for e in db.session.scalars(
            select(WebhookEndpoint).where(WebhookEndpoint.enabled.is_(False)))]


def retry(message: WebhookMessage) -> None:
    """Make a waiting message due now (the staff page's retry); the caller commits."""
    message.next_attempt_at = utcnow()


def pending_count(endpoint_id: int) -> int:
    from sqlalchemy import func

    return db.session.scalar(select(func.count()).select_from(WebhookMessage).where(
        and_(WebhookMessage.endpoint_id == endpoint_id, WebhookMessage.status == PENDING))) or 0

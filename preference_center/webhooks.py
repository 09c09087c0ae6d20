"""Provider webhooks: `POST /webhooks/sendgrid` takes SendGrid Event Webhook batches.

The view reads the body with the one body reader (`bodies`: size limit on
chunked bodies too, UTF-8, depth, NUL, lone surrogates, number range), checks
the signed-webhook signature on those exact bytes, stores the new events (one
statement, de-duplicated by `sg_event_id`), answers at once and leaves the
work to the `process_webhook_events` task.
"""
from __future__ import annotations

import binascii
import functools
import logging
import time

from cryptography.exceptions import InvalidSignature
from flask import Blueprint, current_app, jsonify, request
from sendgrid.helpers.eventwebhook import EventWebhook
from sendgrid.helpers.eventwebhook.eventwebhook_header import EventWebhookHeader

from worker.tasks import enqueue

from . import bodies, feedback
from .extensions import db

log = logging.getLogger(__name__)

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")

# A signed request older than this is a replay; SendGrid signs each attempt afresh.
MAX_AGE_SECONDS = 10 * 60
# Clocks differ a little; a timestamp further in the future is forged.
MAX_CLOCK_SKEW_SECONDS = 60


class Refused(Exception):
    """The request is not from SendGrid (or cannot be shown to be)."""


@functools.lru_cache(maxsize=4)
def _public_key(text: str):
    return EventWebhook().convert_public_key_to_ecdsa(text.strip())


def check_signature(public_key: str, body: bytes, signature: str | None, timestamp: str | None,
                    now: float | None = None) -> None:
    """Raise Refused unless `signature` signs timestamp + body with `public_key` and the timestamp is fresh."""
    if not signature or not timestamp:
        raise Refused("the signature or timestamp header is missing")
    try:
        signed_at = int(timestamp)
    except ValueError:
        raise Refused("the timestamp header is not a Unix time") from None
    age = (time.time() if now is None else now) - signed_at
    if age > MAX_AGE_SECONDS or age < -MAX_CLOCK_SKEW_SECONDS:
        raise Refused("the signature timestamp is too old or in the future")
    try:
        payload = body.decode("utf-8")
        valid = EventWebhook().verify_signature(payload, signature, timestamp, _public_key(public_key))
    except (UnicodeDecodeError, binascii.Error, ValueError, InvalidSignature):
        valid = False
    if not valid:
        raise Refused("the signature does not match the body")


def _error(status: int, code: str, message: str):
    return jsonify({"error": {"code": code, "message": message}}), status


@bp.post("/sendgrid")
def sendgrid():
    try:
        body = bodies.read_bytes(current_app.config["MAX_CONTENT_LENGTH"])
        body.decode("utf-8")
    except bodies.BodyError as refused:
        return _error(refused.status, refused.code, refused.message)
    except UnicodeDecodeError:
        return _error(400, "malformed_json", "the request body is not UTF-8")
    refusal = _authenticate(body)
    if refusal is not None:
        return refusal
    try:
        events = bodies.parse(body)
    except bodies.BodyError as refused:
        return _error(refused.status, refused.code, refused.message)
    if not isinstance(events, list):
        return _error(400, "malformed_json", "the request body must be a JSON array of events")
    receipt = feedback.receive(events)
    db.session.commit()
    if receipt.new_ids:
        _hand_over(receipt.new_ids)
    return jsonify({"received": receipt.received, "new": len(receipt.new_ids),
                    "duplicates": receipt.duplicates, "invalid": receipt.invalid}), 200


def _authenticate(body: bytes):
    """None when the request may be accepted, else the error response."""
    config = current_app.config
    public_key = config.get("PC_SENDGRID_WEBHOOK_PUBLIC_KEY")
    if not public_key:
        if config["PC_ENV"] == "production" and not config.get("PC_SENDGRID_WEBHOOK_ALLOW_UNSIGNED"):
            return _error(503, "webhook_unsigned", "unsigned webhooks are refused in production: set "
                          "PC_SENDGRID_WEBHOOK_PUBLIC_KEY (or PC_SENDGRID_WEBHOOK_ALLOW_UNSIGNED=1)")
        return None
    try:
        _public_key(public_key)
    except ValueError:
        log.error("PC_SENDGRID_WEBHOOK_PUBLIC_KEY is not a valid base64 ECDSA public key")
        return _error(503, "webhook_misconfigured", "the webhook verification key is not valid")
    try:
        check_signature(public_key, body, request.headers.get(EventWebhookHeader.SIGNATURE),
                        request.headers.get(EventWebhookHeader.TIMESTAMP))
    except Refused as refused:
        return _error(403, "invalid_signature", str(refused))
    return None


def _hand_over(event_ids: list[int]) -> None:
    try:
        enqueue("process_webhook_events", event_ids)
    except Exception:  # noqa: BLE001 - the events are stored; the sweep task picks them up
        log.exception("could not queue %d webhook events; the sweep will process them", len(event_ids))

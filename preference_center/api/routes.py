"""API views: parse and check input, call one command, answer JSON."""
from __future__ import annotations

from flask import current_app, g, jsonify, request
from sqlalchemy import select

from .. import actors, campaigns, contacts, ledger, links, tokens
from ..commands import DomainError, consent, people
from ..commands import campaigns as campaign_commands
from ..commands import messages as message_commands
from ..commands import topics as topic_commands
from ..emails import InvalidEmail
from ..extensions import db
from ..models import LEGAL_BASES, Campaign, Contact, Delivery, SystemMessage, Topic, utcnow
from ..tasks import enqueue
from . import bp
from .errors import ApiError
from .openapi import spec

# -- plumbing -----------------------------------------------------------------

@bp.before_request
def authenticate():
    if request.endpoint == "api.openapi":
        return None
    limit = current_app.config["PC_API_MAX_BODY_BYTES"]
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, "payload_too_large", f"request body is larger than {limit} bytes")
    header = request.headers.get("Authorization", "")
    scheme, _, plaintext = header.partition(" ")
    if scheme.lower() != "bearer" or not plaintext.strip():
        raise ApiError(401, "unauthorized", "send 'Authorization: Bearer <token>' (make one with preference-center create-token)")
    token = tokens.authenticate(plaintext.strip())
    if token is None:
        raise ApiError(401, "unauthorized", "the API token is unknown or revoked")
    g.api_token = token
    g.actor = actors.api(token.name, request.remote_addr)


@bp.errorhandler(ApiError)
def api_error(error: ApiError):
    db.session.rollback()
    return error.response()


@bp.errorhandler(DomainError)
def domain_error(error: DomainError):
    db.session.rollback()
    return ApiError(error.status, error.code, str(error), error.field).response()


@bp.errorhandler(InvalidEmail)
def invalid_email(error: InvalidEmail):
    db.session.rollback()
    return ApiError(422, "invalid_email", f"invalid email address: {error}", "email").response()


def body() -> dict:
    """The request's JSON object, or a 400/413 error."""
    limit = current_app.config["PC_API_MAX_BODY_BYTES"]
    raw = request.get_data(cache=True)
    if len(raw) > limit:
        raise ApiError(413, "payload_too_large", f"request body is larger than {limit} bytes")
    if not request.is_json:
        raise ApiError(415, "unsupported_media_type", "send a JSON body with Content-Type: application/json")
    data = request.get_json(silent=True)
    if data is None:
        raise ApiError(400, "malformed_json", "the request body is not valid JSON")
    if not isinstance(data, dict):
        raise ApiError(400, "malformed_json", "the request body must be a JSON object")
    return data


def text(data: dict, key: str, *, required: bool = False, max_length: int = 200, default=None):
    value = data.get(key, default)
    if value is None:
        if required:
            raise ApiError(422, "validation_error", f"{key} is required", key)
        return default
    if not isinstance(value, str):
        raise ApiError(422, "validation_error", f"{key} must be a string", key)
    if len(value) > max_length:
        raise ApiError(422, "validation_error", f"{key} is longer than {max_length} characters", key)
    return value


def choice(data: dict, key: str, options, *, required: bool = False, default=None):
    value = data.get(key, default)
    if value is None and not required:
        return default
    if value not in options:
        raise ApiError(422, "validation_error", f"{key} must be one of: {', '.join(options)}", key)
    return value


def contact_or_404(email: str) -> Contact:
    contact = people.find(email)
    if contact is None:
        raise ApiError(404, "not_found", "no contact with that email address")
    return contact


def topic_or_error(key, status: int = 422) -> Topic:
    topic = db.session.scalar(select(Topic).where(Topic.key == key)) if isinstance(key, str) else None
    if topic is None:
        raise ApiError(status, "unknown_topic", f"unknown topic {key!r}", "topic")
    return topic


# -- topics -------------------------------------------------------------------

def topic_json(topic: Topic) -> dict:
    return {
        "key": topic.key,
        "name": topic.name,
        "kind": topic.kind,
        "legal_basis": topic.legal_basis,
        "default_relationships": list(topic.default_relationships or []),
        "description": topic.description or "",
        "retired": topic.retired,
        "sendgrid_group_id": topic.sendgrid_group_id,
    }


@bp.get("/openapi.json")
def openapi():
    return jsonify(spec(current_app.config["PC_BASE_URL"]))


@bp.get("/topics")
def list_topics():
    topics = db.session.scalars(select(Topic).order_by(Topic.key)).all()
    return jsonify({"topics": [topic_json(t) for t in topics]})


@bp.get("/topics/<key>")
def get_topic(key: str):
    return jsonify(topic_json(topic_or_error(key, 404)))


@bp.put("/topics/<key>")
def put_topic(key: str):
    topic, created = topic_commands.put(g.actor, key, body())
    db.session.commit()
    return jsonify(topic_json(topic)), 201 if created else 200


# -- contacts -----------------------------------------------------------------

def contact_json(contact: Contact) -> dict:
    return {
        "email": contact.email,
        "name": contact.name,
        "company": contact.company,
        "title": contact.title,
        "phone": contact.phone,
        "locale": contact.locale,
        "relationship": contact.relationship,
        "status": contact.status,
        "created_at": contact.created_at.isoformat(),
        "subscriptions": contacts.subscriptions_view(contact),
        "links": {
            "preferences": links.preferences_url(contact),
            "unsubscribe_all": links.unsubscribe_url(contact),
        },
    }


@bp.put("/contacts/<email>")
def put_contact(email: str):
    data = body()
    unknown = set(data) - set(contacts.PROFILE_FIELDS) - {"relationship", "email"}
    if unknown:
        raise ApiError(422, "validation_error", f"unknown field(s): {', '.join(sorted(unknown))}", sorted(unknown)[0])
    contact, created = people.upsert(g.actor, email, data)
    db.session.commit()
    return jsonify(contact_json(contact)), 201 if created else 200


@bp.get("/contacts/<email>")
def get_contact(email: str):
    contact = contact_or_404(email)
    db.session.commit()  # keeps opt-outs settled while reading
    return jsonify(contact_json(contact))


@bp.delete("/contacts/<email>")
def delete_contact(email: str):
    event = people.erase(g.actor, contact_or_404(email))
    db.session.commit()
    return jsonify({"status": "erased", "event_id": event.id})


def event_json(event: ledger.ConsentEvent, topic: Topic | None) -> dict:
    return {
        "id": event.id,
        "action": event.action,
        "topic": topic.key if topic else None,
        "scope": event.scope,
        "legal_basis": event.legal_basis,
        "source": event.source,
        "consent_text_version": event.consent_text_version,
        "confirmed": event.confirmed,
        "occurred_at": event.occurred_at.isoformat(),
        "hash": event.hash,
    }


@bp.post("/contacts/<email>/consents")
def post_consent(email: str):
    data = body()
    topic = topic_or_error(data["topic"]) if data.get("topic") is not None else None
    action = choice(data, "action", ("grant", "withdraw"), required=True)
    basis = choice(data, "legal_basis", LEGAL_BASES)
    source = text(data, "source", required=True)
    version = text(data, "consent_text_version", max_length=32)
    ip = text(data, "ip", max_length=64)
    user_agent = text(data, "user_agent", max_length=512)
    confirmed = data.get("confirmed", False)
    if not isinstance(confirmed, bool):
        raise ApiError(422, "validation_error", "confirmed must be true or false", "confirmed")
    contact = people.find(email)
    if contact is None:
        contact, _ = people.upsert(g.actor, email, {}, audited=False)
    # The client's own source is kept with its name: what it asserted, and who asserted it.
    proof = {"source": f"{g.actor.label}:{source}", "ip": ip, "user_agent": user_agent}
    if action == "grant":
        event = consent.grant(g.actor, contact, topic, confirmed=confirmed, legal_basis=basis,
                              consent_text_version=version, **proof)
    else:
        event = consent.withdraw(g.actor, contact, topic, **proof)
    db.session.commit()
    return jsonify({"event": event_json(event, topic) if event is not None else None,
                    "subscriptions": contacts.subscriptions_view(contact)}), 201 if event is not None else 200


@bp.get("/ledger/verify")
def verify_ledger():
    result = ledger.verify()
    return jsonify({"ok": result.ok, "checked": result.checked, "problems": result.problems,
                    "head_hash": result.head_hash, "at": utcnow().isoformat()})


# -- campaigns ------------------------------------------------------------------

def campaign_json(campaign: Campaign) -> dict:
    topic = db.session.get(Topic, campaign.topic_id)
    return {
        "id": campaign.id,
        "name": campaign.name,
        "topic": topic.key,
        "subject": campaign.subject,
        "html": campaign.html,
        "text": campaign.text,
        "audience": campaign.audience or {},
        "status": campaign.status,
        "scheduled_at": campaign.scheduled_at.isoformat() if campaign.scheduled_at else None,
        "created_at": campaign.created_at.isoformat(),
    }


def campaign_or_404(campaign_id: int) -> Campaign:
    campaign = db.session.get(Campaign, campaign_id)
    if campaign is None:
        raise ApiError(404, "not_found", "no campaign with that id")
    return campaign


@bp.post("/campaigns")
def create_campaign():
    campaign = campaign_commands.create(g.actor, body())
    db.session.commit()
    return jsonify(campaign_json(campaign)), 201


@bp.get("/campaigns/<int:campaign_id>")
def get_campaign(campaign_id: int):
    return jsonify(campaign_json(campaign_or_404(campaign_id)))


@bp.post("/campaigns/<int:campaign_id>/schedule")
def schedule_campaign(campaign_id: int):
    campaign = campaign_or_404(campaign_id)
    data = body() if request.get_data() else {}
    campaign_commands.schedule(g.actor, campaign, campaigns.parse_time(data.get("at")))
    db.session.commit()
    if campaign.scheduled_at <= utcnow():
        enqueue("tick")
    return jsonify(campaign_json(campaign))


@bp.post("/campaigns/<int:campaign_id>/cancel")
def cancel_campaign(campaign_id: int):
    campaign = campaign_commands.cancel(g.actor, campaign_or_404(campaign_id))
    db.session.commit()
    return jsonify(campaign_json(campaign))


@bp.get("/campaigns/<int:campaign_id>/report")
def campaign_report(campaign_id: int):
    return jsonify(campaigns.report(campaign_or_404(campaign_id)))


# -- system messages --------------------------------------------------------------

@bp.post("/messages")
def send_message():
    data = body()
    key = request.headers.get("Idempotency-Key")
    if key is not None and not (0 < len(key) <= 200):
        raise ApiError(422, "validation_error", "Idempotency-Key must be 1-200 characters", "Idempotency-Key")
    message, delivery, created = message_commands.send(g.actor, data, key=key)
    if created:
        db.session.commit()
        enqueue("send_message", delivery.id)
    return jsonify({"id": message.id, "status": delivery.status, "delivery_id": delivery.id,
                    "reason": delivery.reason, "replayed": not created}), 202 if created else 200


@bp.get("/messages/<int:message_id>")
def get_message(message_id: int):
    message = db.session.get(SystemMessage, message_id)
    if message is None:
        raise ApiError(404, "not_found", "no message with that id")
    delivery = db.session.scalar(select(Delivery).where(Delivery.system_message_id == message.id))
    return jsonify({"id": message.id, "status": delivery.status, "reason": delivery.reason,
                    "provider_message_id": delivery.provider_message_id, "delivery_id": delivery.id})

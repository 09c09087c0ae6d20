"""API views: each is declared with its models (operations.operation), calls one command, and answers."""
from __future__ import annotations

from pathlib import Path

from flask import current_app, g, jsonify, request, send_from_directory
from sqlalchemy import select

from .. import (
    actors,
    attributes,
    audiences,
    bodies,
    campaigns,
    contacts,
    erasure,
    inputs,
    ledger,
    links,
    segments,
    tokens,
)
from ..commands import DomainError, consent, people
from ..commands import campaigns as campaign_commands
from ..commands import messages as message_commands
from ..commands import segments as segment_commands
from ..commands import topics as topic_commands
from ..emails import InvalidEmail
from ..extensions import db
from ..models import Campaign, Contact, Delivery, Segment, SystemMessage, Topic, utcnow
from ..tasks import enqueue
from . import bp, schemas
from .errors import ApiError
from .openapi import document
from .operations import Answer, operation, public_endpoints

STATIC = Path(__file__).resolve().parent / "static"

# -- plumbing -----------------------------------------------------------------

@bp.before_request
def authenticate():
    if request.endpoint in public_endpoints() or request.endpoint is None:
        return None
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


@bp.errorhandler(bodies.BodyError)
def body_error(error: bodies.BodyError):
    db.session.rollback()
    return ApiError(error.status, error.code, error.message, error.field).response()


@bp.errorhandler(DomainError)
def domain_error(error: DomainError):
    db.session.rollback()
    return ApiError(error.status, error.code, str(error), error.field).response()


@bp.errorhandler(InvalidEmail)
def invalid_email(error: InvalidEmail):
    db.session.rollback()
    return ApiError(422, "invalid_email", f"invalid email address: {error}", "email").response()


def contact_or_404(email: str) -> Contact:
    contact = people.find(email)
    if contact is None:
        raise ApiError(404, "not_found", "no contact with that email address")
    return contact


def topic_or_error(key: str, status: int = 422) -> Topic:
    topic = db.session.scalar(select(Topic).where(Topic.key == key))
    if topic is None:
        raise ApiError(status, "unknown_topic", f"unknown topic {key!r}", "topic")
    return topic


# -- the reference ------------------------------------------------------------------

@operation("GET", "/openapi.json", summary="This document", tag="Reference", public=True,
           answers={200: Answer("The OpenAPI 3.1 document of this API")})
def openapi():
    return jsonify(document(current_app.config["PC_BASE_URL"]))


@operation("GET", "/docs", summary="The API reference, rendered from this document", tag="Reference",
           public=True, answers={200: Answer("An HTML page (its script and style are served below)",
                                             media="text/html")})
def api_docs():
    response = send_from_directory(STATIC, "docs.html", mimetype="text/html")
    # The page's own script renders the document: the app's CSP (script-src 'self') holds.
    return response


@operation("GET", "/docs/docs.js", summary="The reference page's script", tag="Reference", public=True,
           answers={200: Answer("JavaScript", media="text/javascript")})
def api_docs_script():
    return send_from_directory(STATIC, "docs.js", mimetype="text/javascript")


@operation("GET", "/docs/docs.css", summary="The reference page's style sheet", tag="Reference", public=True,
           answers={200: Answer("CSS", media="text/css")})
def api_docs_style():
    return send_from_directory(STATIC, "docs.css", mimetype="text/css")


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


TOPIC_LINKS = {"GetTopic": {"operationId": "get_topic", "parameters": {"key": "$response.body#/key"}}}


@operation("GET", "/topics", summary="List topics", tag="Topics",
           answers={200: Answer("Every topic, retired ones included", schemas.TopicList)})
def list_topics():
    topics = db.session.scalars(select(Topic).order_by(Topic.key)).all()
    return {"topics": [topic_json(t) for t in topics]}


@operation("GET", "/topics/{key}", summary="Read a topic", tag="Topics", params=schemas.TopicKeyPath,
           answers={200: Answer("The topic", schemas.Topic)}, not_found="No topic with that key")
def get_topic(key: str):
    return topic_json(topic_or_error(key, 404))


@operation("PUT", "/topics/{key}", summary="Create or update a topic (its kind never changes)", tag="Topics",
           params=schemas.TopicKeyPath, body=schemas.TopicInput,
           answers={200: Answer("Updated", schemas.Topic, links=TOPIC_LINKS),
                    201: Answer("Created", schemas.Topic, links=TOPIC_LINKS)},
           conflict="The kind would change, or another request created the key first")
def put_topic(key: str, body: schemas.TopicInput):
    """Kind against basis: system topics have basis contract; marketing topics consent or legitimate_interest,
    and only legitimate-interest topics name default relationships, only ["customer"] (422 otherwise)."""
    topic, created = topic_commands.put(g.actor, key, body.model_dump(exclude_unset=True))
    db.session.commit()
    return topic_json(topic), 201 if created else 200


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
        "attributes": attributes.of(contact),
        "subscriptions": contacts.subscriptions_view(contact),
        "links": {
            "preferences": links.preferences_url(contact),
            "unsubscribe_all": links.unsubscribe_url(contact),
        },
    }


CONTACT_LINKS = {
    "GetContact": {"operationId": "get_contact", "parameters": {"email": "$response.body#/email"}},
    "RecordConsent": {"operationId": "post_consent", "parameters": {"email": "$response.body#/email"}},
    "EraseContact": {"operationId": "delete_contact", "parameters": {"email": "$response.body#/email"}},
}


@operation("PUT", "/contacts/{email}", summary="Create or update a contact", tag="Contacts",
           params=schemas.EmailPath, body=schemas.ContactInput,
           answers={200: Answer("Updated", schemas.Contact, links=CONTACT_LINKS),
                    201: Answer("Created", schemas.Contact, links=CONTACT_LINKS)})
def put_contact(email: str, body: schemas.ContactInput):
    contact, created = people.upsert(g.actor, email, body.model_dump(exclude_unset=True))
    # The answer is read inside the transaction: after the commit, a concurrent erasure could show through.
    answer = contact_json(contact)
    db.session.commit()
    return answer, 201 if created else 200


@operation("GET", "/contacts/{email}", summary="Read a contact with subscriptions and signed links", tag="Contacts",
           params=schemas.EmailPath, answers={200: Answer("The contact", schemas.Contact)},
           not_found="No live contact with that address (never created, or erased)")
def get_contact(email: str):
    contact = contact_or_404(email)
    answer = contact_json(contact)  # as found: a commit first would reload it, perhaps erased meanwhile
    db.session.commit()
    return answer


@operation("DELETE", "/contacts/{email}", summary="Erase a contact (personal data removed, suppression kept)",
           tag="Contacts", params=schemas.EmailPath, answers={200: Answer("Erased", schemas.Erased)},
           not_found="No live contact with that address")
def delete_contact(email: str):
    event = people.erase(g.actor, contact_or_404(email))
    db.session.commit()
    return {"status": "erased", "event_id": event.id}


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


@operation("POST", "/contacts/{email}/consents", summary="Record a grant or withdrawal with its proof", tag="Consent",
           params=schemas.EmailPath, body=schemas.ConsentInput,
           answers={200: Answer("Nothing to record (the withdrawal held already)", schemas.ConsentResult),
                    201: Answer("Recorded", schemas.ConsentResult)},
           conflict="needs_confirmation: only the person can confirm a return to marketing after an erasure, "
                    "objection, opt-out, spam complaint or their own withdrawal (send confirmed: false and a "
                    "confirmation mail goes out); or the contact is erased")
def post_consent(email: str, body: schemas.ConsentInput):
    """An unknown address becomes a contact. `confirmed: true` asserts the client's own double opt-in."""
    topic = topic_or_error(body.topic) if body.topic is not None else None
    erasure.refuse_addresses(body.source, "source")  # it is kept in the ledger after an erasure
    contact = people.find(email)
    created = contact is None
    if created:
        contact, _ = people.upsert(g.actor, email, {}, audited=False)
    # The client's own source is kept with its name: what it asserted, and who asserted it.
    proof = {"source": f"{g.actor.label}:{body.source}", "ip": body.ip, "user_agent": body.user_agent}
    if body.action == "grant":
        event = consent.grant(g.actor, contact, topic, confirmed=body.confirmed, legal_basis=body.legal_basis,
                              consent_text_version=body.consent_text_version, **proof)
    else:
        event = consent.withdraw(g.actor, contact, topic, **proof)
    if created and event is None:
        people.note_created(g.actor, contact)  # the contact is the change: one audit entry still
    answer = {"event": event_json(event, topic) if event is not None else None,
              "subscriptions": contacts.subscriptions_view(contact)}
    db.session.commit()
    return answer, 201 if event is not None else 200


@operation("GET", "/ledger/verify", summary="Verify the consent ledger's hash chain", tag="Ledger",
           answers={200: Answer("The verification", schemas.LedgerVerification)})
def verify_ledger():
    result = ledger.verify()
    return {"ok": result.ok, "checked": result.checked, "problems": result.problems,
            "head_hash": result.head_hash, "at": utcnow().isoformat()}


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
    # Campaign ids are 32-bit on PostgreSQL: a larger (valid 64-bit) id names no campaign, and must not be sent.
    campaign = db.session.get(Campaign, campaign_id) if inputs.fits(campaign_id, Campaign) else None
    if campaign is None:
        raise ApiError(404, "not_found", "no campaign with that id")
    return campaign


CAMPAIGN_LINKS = {name: {"operationId": op, "parameters": {"id": "$response.body#/id"}} for name, op in (
    ("GetCampaign", "get_campaign"), ("ScheduleCampaign", "schedule_campaign"),
    ("CancelCampaign", "cancel_campaign"), ("CampaignReport", "campaign_report"),
    ("PauseCampaign", "pause_campaign"), ("ResumeCampaign", "resume_campaign"),
    ("DuplicateCampaign", "duplicate_campaign"))}
NO_CAMPAIGN = "No campaign with that id"


@operation("POST", "/campaigns", summary="Create a draft campaign", tag="Campaigns", body=schemas.CampaignInput,
           answers={201: Answer("Created", schemas.Campaign, links=CAMPAIGN_LINKS)})
def create_campaign(body: schemas.CampaignInput):
    """The topic must be a live marketing topic; subject and bodies are sandboxed templates."""
    campaign = campaign_commands.create(g.actor, body.model_dump(exclude_unset=True))
    db.session.commit()
    return campaign_json(campaign), 201


@operation("GET", "/campaigns/{id}", summary="Read a campaign", tag="Campaigns", params=schemas.IdPath,
           answers={200: Answer("The campaign", schemas.Campaign)}, not_found=NO_CAMPAIGN)
def get_campaign(id: int):
    return campaign_json(campaign_or_404(id))


@operation("POST", "/campaigns/{id}/schedule", summary="Schedule (at: ISO-8601, or null or no body for now)",
           tag="Campaigns", params=schemas.IdPath, body=schemas.ScheduleInput, body_required=False,
           answers={200: Answer("Scheduled", schemas.Campaign)}, not_found=NO_CAMPAIGN,
           conflict="The campaign is no longer a draft or scheduled")
def schedule_campaign(id: int, body: schemas.ScheduleInput):
    campaign = campaign_or_404(id)
    campaign_commands.schedule(g.actor, campaign, campaigns.parse_time(body.at))
    db.session.commit()
    if campaign.scheduled_at <= utcnow():
        enqueue("tick")
    return campaign_json(campaign)


@operation("POST", "/campaigns/{id}/cancel", summary="Cancel; batches not yet sent are skipped", tag="Campaigns",
           params=schemas.IdPath, answers={200: Answer("Cancelled", schemas.Campaign)}, not_found=NO_CAMPAIGN,
           conflict="The campaign is finished or cancelled already")
def cancel_campaign(id: int):
    campaign = campaign_commands.cancel(g.actor, campaign_or_404(id))
    db.session.commit()
    return campaign_json(campaign)


@operation("POST", "/campaigns/{id}/pause", summary="Pause a sending campaign between batches", tag="Campaigns",
           params=schemas.IdPath, answers={200: Answer("Paused", schemas.Campaign)}, not_found=NO_CAMPAIGN,
           conflict="Only a sending campaign can be paused")
def pause_campaign(id: int):
    """A batch a worker is sending finishes; no other batch is planned or sent until it resumes."""
    campaign = campaign_commands.pause(g.actor, campaign_or_404(id))
    db.session.commit()
    return campaign_json(campaign)


@operation("POST", "/campaigns/{id}/resume", summary="Resume a paused campaign", tag="Campaigns",
           params=schemas.IdPath, answers={200: Answer("Sending again", schemas.Campaign)}, not_found=NO_CAMPAIGN,
           conflict="Only a paused campaign can be resumed")
def resume_campaign(id: int):
    """Sending goes on where it stopped: nobody is lost or sent twice."""
    campaign = campaign_or_404(id)
    queued = campaign_commands.resume(g.actor, campaign)
    db.session.commit()
    for batch_id in queued:
        enqueue("send_batch", batch_id)
    enqueue("tick")  # plans what was not planned yet
    return campaign_json(campaign)


@operation("POST", "/campaigns/{id}/duplicate", summary="A new draft with the same topic, content and audience",
           tag="Campaigns", params=schemas.IdPath,
           answers={201: Answer("The new draft", schemas.Campaign, links=CAMPAIGN_LINKS)}, not_found=NO_CAMPAIGN,
           unprocessable="The copy is refused as a new draft would be: its topic is retired (error.field: topic)")
def duplicate_campaign(id: int):
    """Any campaign can be copied; the copy is checked as any new draft (a retired topic is a 422)."""
    copy = campaign_commands.duplicate(g.actor, campaign_or_404(id))
    db.session.commit()
    return campaign_json(copy), 201


@operation("GET", "/campaigns/{id}/report", summary="Counts: eligible, sent, skipped by reason, failed, unknown",
           tag="Campaigns", params=schemas.IdPath, answers={200: Answer("The report", schemas.Report)},
           not_found=NO_CAMPAIGN)
def campaign_report(id: int):
    return campaigns.report(campaign_or_404(id))


@operation("GET", "/campaigns/{id}/audience", summary="Live eligible count of a draft or scheduled campaign",
           tag="Campaigns", params=schemas.IdPath, answers={200: Answer("The count", schemas.AudienceCount)},
           not_found=NO_CAMPAIGN, conflict="The campaign has started: its report counts who it went to")
def campaign_audience(id: int):
    """Counted with the planner's own audience query and the campaign's filters, as of now."""
    campaign = campaign_or_404(id)
    if campaign.status not in campaigns.EDITABLE:
        raise ApiError(409, "conflict", f"a {campaign.status} campaign has no live audience; read its report")
    return {"count": audiences.of_campaign(campaign)}


# -- segments -----------------------------------------------------------------------

def segment_json(segment: Segment) -> dict:
    return {"name": segment.name, "topic": db.session.get(Topic, segment.topic_id).key,
            "audience": segment.filters or {}, "count": segments.count(segment), "updated_by": segment.updated_by,
            "updated_at": segment.updated_at.isoformat()}


def segment_or_404(name: str) -> Segment:
    segment = segments.by_name(name)
    if segment is None:
        raise ApiError(404, "not_found", "no segment with that name")
    return segment


NO_SEGMENT = "No segment with that name"


@operation("GET", "/segments", summary="Saved segments with their live counts", tag="Segments",
           answers={200: Answer("The segments, by name", schemas.SegmentList)})
def list_segments():
    return {"segments": [segment_json(segment) for segment, _ in segments.all_segments()]}


@operation("GET", "/segments/{name}", summary="Read a segment with its live count", tag="Segments",
           params=schemas.SegmentNamePath, answers={200: Answer("The segment", schemas.Segment)},
           not_found=NO_SEGMENT)
def get_segment(name: str):
    return segment_json(segment_or_404(name))


@operation("PUT", "/segments/{name}", summary="Create or change a segment (a marketing topic and audience filters)",
           tag="Segments", params=schemas.SegmentNamePath, body=schemas.SegmentInput,
           answers={200: Answer("Changed", schemas.Segment), 201: Answer("Created", schemas.Segment)})
def put_segment(name: str, body: schemas.SegmentInput):
    """The same checks as the staff page: a live marketing topic and filters of the right shape (422 naming the
    field). A campaign that used the segment keeps its own copy of the filters."""
    segment = segments.by_name(name)
    audience = body.audience.model_dump(exclude_none=True) if body.audience is not None else {}
    saved = segment_commands.save(g.actor, name, body.topic, audience, segment)
    answer = segment_json(saved)
    db.session.commit()
    return answer, 200 if segment is not None else 201


@operation("DELETE", "/segments/{name}", summary="Delete a segment", tag="Segments", params=schemas.SegmentNamePath,
           answers={200: Answer("Deleted", schemas.Deleted)}, not_found=NO_SEGMENT)
def delete_segment(name: str):
    segment_commands.delete(g.actor, segment_or_404(name))
    db.session.commit()
    return {"deleted": True}


# -- system messages --------------------------------------------------------------

MESSAGE_LINKS = {"GetMessage": {"operationId": "get_message", "parameters": {"id": "$response.body#/id"}}}


@operation("POST", "/messages", summary="Send a system message (system topics only)", tag="Messages",
           headers=schemas.IdempotencyHeader, body=schemas.MessageInput,
           answers={200: Answer("A replay of this token's earlier call with the same key", schemas.MessageAccepted,
                                links=MESSAGE_LINKS),
                    202: Answer("Queued", schemas.MessageAccepted, links=MESSAGE_LINKS)},
           conflict="idempotency_conflict: this token used the Idempotency-Key with another body")
def send_message(headers: schemas.IdempotencyHeader, body: schemas.MessageInput):
    """Sent even to people who opted out of marketing (never to an erased or hard-bounced address)."""
    message, delivery, created = message_commands.send(g.actor, body.model_dump(exclude_unset=True),
                                                       key=headers.idempotency_key)
    if created:
        db.session.commit()
        enqueue("send_message", delivery.id)
    return {"id": message.id, "status": delivery.status, "delivery_id": delivery.id,
            "reason": delivery.reason, "replayed": not created}, 202 if created else 200


@operation("GET", "/messages/{id}", summary="Status of a system message", tag="Messages", params=schemas.IdPath,
           answers={200: Answer("Its delivery", schemas.MessageStatus)},
           not_found="No message with that id sent by this token (admin tokens read every message)")
def get_message(id: int):
    message = db.session.get(SystemMessage, id) if inputs.fits(id, SystemMessage) else None
    if message is None or not tokens.may_read(g.api_token, message):
        raise ApiError(404, "not_found", "no message with that id")
    delivery = db.session.scalar(select(Delivery).where(Delivery.system_message_id == message.id))
    return {"id": message.id, "status": delivery.status, "reason": delivery.reason,
            "provider_message_id": delivery.provider_message_id, "delivery_id": delivery.id}

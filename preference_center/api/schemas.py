"""Request and response models of /api/v1 (pydantic v2): what the server checks is what the document says.

Request models are strict (no type coercion: "5" is no integer, 1 is no boolean) and closed (an unknown key
is a 422 naming it). Strings that become names, headers or ledger sources are bounded and carry no control
characters or line breaks, and multi-line text no control characters but tabs and line breaks (the rule of
`characters`); no string holds NUL (PostgreSQL refuses it; the body reader refuses it first, on every database
alike). Integers stay within the database's 64-bit range. Cross-field rules that depend on stored
state (a topic's kind against its basis, default relationships) stay in the command layer, which answers 422
the same way.

Response models list every field the server sends; the decorator in `operations` validates each answer
through them, so an answer cannot carry a field the document does not describe. They are open (no
`additionalProperties: false`): clients must accept fields added later.
"""
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, field_validator

from .. import attributes, campaigns
from ..contacts import FIELD_LIMITS
from ..models import CONTACT_STATUSES, LEGAL_BASES, RELATIONSHIPS, TOPIC_KINDS
from ..topics import DESCRIPTION_MAX, NAME_MAX

INT64_MAX = 2**63 - 1
# Patterns are anchored JSON Schema (ECMA-262) regexes that Python and the Rust engine read alike; they say what
# `characters.refused` says (a test holds them together): one-line text holds no C0 control, DEL, C1 control or
# line break; multi-line text may hold tabs and line breaks. Neither holds NUL.
ONE_LINE = r"^[^\x00-\x1f\x7f-\x9f\u2028\u2029]*$"
MULTI_LINE = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*$"
TOPIC_KEY = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
LOCALE = r"^[a-z]{2,3}([-_][A-Za-z0-9]{2,8})?$"
IDEMPOTENCY_KEY = r"^[\x21-\x7e]{1,200}$"
# A segment name in a path: one line, no '/' (it would be another path), not only spaces.
SEGMENT_NAME = (r"^[^\x00-\x1f\x7f-\x9f\u2028\u2029/]*[^\x00-\x1f\x7f-\x9f\u2028\u2029/ ]"
                r"[^\x00-\x1f\x7f-\x9f\u2028\u2029/]*$")
BODY_MAX = 200_000
# The API's own part of a ledger source: "api:<token name (<= 100)>:<this>" fits the 200-character column.
SOURCE_MAX = 80
AUDIENCE_CONTACT_IDS_MAX = 1000

Id64 = Annotated[int, Field(ge=1, le=INT64_MAX)]
TopicKey = Annotated[str, StringConstraints(pattern=TOPIC_KEY, max_length=64)]
Relationship = Literal[RELATIONSHIPS]
LegalBasis = Literal[LEGAL_BASES]
TopicKind = Literal[TOPIC_KINDS]
# The command layer validates addresses (email-validator refuses control characters and spaces): no pattern
# here, whose search next to `format: email` would only slow every client that generates examples from it.
Email = Annotated[str, StringConstraints(min_length=1, max_length=320)]


# Type factories, capitalised like the types they make (`name: Name(200)`).
def Name(max_length: int, min_length: int = 0):
    """One line of text, bounded: it becomes a name, a header or a ledger source."""
    return Annotated[str, StringConstraints(min_length=min_length, max_length=max_length, pattern=ONE_LINE)]


def Body(max_length: int):
    """Multi-line text (tabs and line breaks allowed), bounded."""
    return Annotated[str, StringConstraints(max_length=max_length, pattern=MULTI_LINE)]


class Input(BaseModel):
    """A request body or parameter set: strict types, unknown keys refused."""

    model_config = ConfigDict(strict=True, extra="forbid")


class Output(BaseModel):
    """A response: every field the server sends, open to fields added later."""

    model_config = ConfigDict(extra="ignore")


# -- parameters -----------------------------------------------------------------------

class TopicKeyPath(Input):
    key: TopicKey = Field(description="1-64 of a-z, 0-9, '_', '.', '-', starting with a letter or digit",
                          examples=["news"])


class EmailPath(Input):
    email: Email = Field(description="an email address (normalised: case and IDNA do not matter)",
                         json_schema_extra={"format": "email"}, examples=["ann@example.com"])


class IdPath(Input):
    id: Id64 = Field(examples=[1])


class SegmentNamePath(Input):
    name: Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=SEGMENT_NAME)] = Field(
        description="the segment's name (URL-encoded; one line of at most 200 characters, no '/')",
        examples=["Gold customers"])


class IdempotencyHeader(Input):
    idempotency_key: Annotated[str | None, StringConstraints(pattern=IDEMPOTENCY_KEY)] = Field(
        None, alias="Idempotency-Key",
        description="1-200 visible ASCII characters; a retry with the same key and body from the same token "
                    "sends nothing twice (keys are per token)")


# -- topics ---------------------------------------------------------------------------

class TopicInput(Input):
    """PUT body: every field optional on update; `name` and `kind` needed to create."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"name": "Product news", "kind": "marketing", "legal_basis": "consent", "description": "Once a month"},
        {"name": "Tips", "kind": "marketing", "legal_basis": "legitimate_interest",
         "default_relationships": ["customer"]},
        {"name": "Orders", "kind": "system"}]})

    name: Name(NAME_MAX) | None = None
    kind: TopicKind | None = Field(None, description="fixed once the topic exists")
    legal_basis: LegalBasis | None = Field(
        None, description="system topics: contract (the default); marketing: consent or legitimate_interest")
    default_relationships: Annotated[list[Relationship], Field(max_length=len(RELATIONSHIPS))] | None = Field(
        None, description='legitimate-interest topics only, and only ["customer"] (SPEC 7.2)')
    description: Body(DESCRIPTION_MAX) | None = None
    retired: bool | None = None
    sendgrid_group_id: Annotated[int, Field(ge=1, le=2**31 - 1)] | None = None


class Topic(Output):
    key: str
    name: str
    kind: TopicKind
    legal_basis: LegalBasis
    default_relationships: list[str]
    description: str
    retired: bool
    sendgrid_group_id: int | None


class TopicList(Output):
    topics: list[Topic]


# -- contacts -------------------------------------------------------------------------

def _written_with_a_point(value: object) -> object:
    """The float branch takes numbers written as decimals only: an integer past the int branch's bounds must not
    come back rounded to the nearest float (-9007199254740993 would be stored as -9007199254740992)."""
    if isinstance(value, int) and not isinstance(value, bool):
        raise ValueError("an integer must be between the bounds")
    return value


AttributeKey = Annotated[str, StringConstraints(pattern=attributes.KEY.pattern)]
AttributeValue = (Annotated[str, StringConstraints(max_length=attributes.VALUE_MAX, pattern=ONE_LINE)] | bool
                  | Annotated[int, Field(ge=-attributes.NUMBER_MAX, le=attributes.NUMBER_MAX)]
                  | Annotated[float, BeforeValidator(_written_with_a_point),
                              Field(ge=-attributes.NUMBER_MAX, le=attributes.NUMBER_MAX, allow_inf_nan=False)])
Attributes = Annotated[dict[AttributeKey, AttributeValue], Field(
    max_length=attributes.MAX_KEYS, json_schema_extra={"additionalProperties": False})]

class ContactInput(Input):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"name": "Ann Lee", "company": "ACME", "locale": "es", "relationship": "customer",
         "attributes": {"plan": "gold", "seats": 12, "trial": False}}]})

    name: Name(FIELD_LIMITS["name"]) | None = None
    company: Name(FIELD_LIMITS["company"]) | None = None
    title: Name(FIELD_LIMITS["title"]) | None = None
    phone: Name(FIELD_LIMITS["phone"]) | None = None
    locale: Annotated[str, StringConstraints(max_length=FIELD_LIMITS["locale"], pattern=LOCALE)] | None = None
    relationship: Relationship | None = None
    attributes: Attributes | None = Field(
        None, description=f"custom attributes, replacing the stored ones (omit to keep them, {{}} to remove them): "
                          f"at most {attributes.MAX_KEYS} keys matching {attributes.KEY.pattern}, each a text (one "
                          f"line, at most {attributes.VALUE_MAX} characters), a number or true/false; at most "
                          f"{attributes.TOTAL_MAX:,} bytes of JSON in all. Templates read them as "
                          "contact.attributes.<key>")


class Subscription(Output):
    topic: str
    name: str
    kind: TopicKind
    state: Literal["subscribed", "unsubscribed"]
    basis: str
    reason: str = Field(description="why the sending rule sends (the basis) or skips (a skip reason)")
    pending_confirmation: bool


class ContactLinks(Output):
    preferences: str = Field(json_schema_extra={"format": "uri"})
    unsubscribe_all: str = Field(json_schema_extra={"format": "uri"})


class Contact(Output):
    email: str
    name: str | None
    company: str | None
    title: str | None
    phone: str | None
    locale: str | None
    relationship: Relationship
    status: Literal[CONTACT_STATUSES]
    created_at: str = Field(json_schema_extra={"format": "date-time"})
    attributes: dict[str, str | bool | int | float] = Field(description="custom attributes ({} when none)")
    subscriptions: list[Subscription]
    links: ContactLinks


class Erased(Output):
    status: Literal["erased"]
    event_id: int


class ConsentInput(Input):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"topic": "news", "action": "grant", "source": "signup-form", "consent_text_version": "v3",
         "ip": "203.0.113.9", "user_agent": "Mozilla/5.0", "confirmed": True},
        {"action": "withdraw", "source": "call-centre"}]})

    topic: TopicKey | None = Field(None, description="omit (or null) for all marketing")
    action: Literal["grant", "withdraw"]
    legal_basis: LegalBasis | None = Field(None, description="default: the topic's; marketing grants never 'contract'")
    source: Name(SOURCE_MAX, 1) = Field(description="where the client collected it (kept with the token's name)")
    consent_text_version: Name(32) | None = None
    ip: Name(64) | None = None
    user_agent: Name(512) | None = None
    confirmed: bool = Field(False, description="the client ran its own double opt-in; refused with 409 "
                                               "needs_confirmation where only the person may confirm")


class ConsentEvent(Output):
    id: int
    action: str
    topic: str | None
    scope: str
    legal_basis: str | None
    source: str
    consent_text_version: str | None
    confirmed: bool
    occurred_at: str = Field(json_schema_extra={"format": "date-time"})
    hash: str


class ConsentResult(Output):
    event: ConsentEvent | None = Field(description="null when nothing changed (a withdrawal that already held)")
    subscriptions: list[Subscription]


class LedgerVerification(Output):
    ok: bool
    checked: int
    problems: list[str]
    head_hash: str
    at: str = Field(json_schema_extra={"format": "date-time"})


# -- campaigns ------------------------------------------------------------------------

Day = Annotated[str, StringConstraints(pattern=r"^\d{4}-\d{2}-\d{2}$"), Field(examples=["2026-01-31"])]


ATTRIBUTE_FILTERS_MAX = attributes.FILTERS_MAX  # (a field named `attributes` hides the module in a class body)


class AttributeCondition(Input):
    key: AttributeKey
    op: Literal[attributes.OPERATORS]
    value: AttributeValue | None = Field(None, description="needed by equals and not_equals")


class AudienceInput(Input):
    """Narrows a campaign's eligible audience; it never adds anyone."""

    relationships: Annotated[list[Relationship], Field(max_length=len(RELATIONSHIPS))] | None = None
    locales: Annotated[list[Annotated[str, StringConstraints(max_length=16, pattern=LOCALE)]],
                       Field(max_length=50)] | None = None
    contact_ids: Annotated[list[Id64], Field(max_length=AUDIENCE_CONTACT_IDS_MAX)] | None = None
    companies: Annotated[list[Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=ONE_LINE)]],
                         Field(max_length=50)] | None = Field(None, description="company is one of (any case)")
    sources: Annotated[list[Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=ONE_LINE)]],
                       Field(max_length=50)] | None = Field(
        None, description="the contact has a ledger event from one of these sources, e.g. import:12")
    created_after: Day | None = Field(None, description="created on or after this day (UTC)")
    created_before: Day | None = Field(None, description="created before this day (UTC)")
    interacted_after: Day | None = Field(None, description="last interaction on or after this day (UTC)")
    interacted_before: Day | None = Field(None, description="last interaction before this day (UTC)")
    attributes: Annotated[list[AttributeCondition], Field(max_length=ATTRIBUTE_FILTERS_MAX)] | None = Field(
        None, description="custom-attribute conditions, all of which hold: equals / not_equals compare the "
                          "attribute written as text (numbers as written, booleans as true/false; a contact "
                          "without the attribute does not equal), is_set needs no value")


class CampaignInput(Input):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"name": "Spring", "topic": "news", "subject": "Hi {{ contact.name }}", "text": "Spring is here.",
         "audience": {"relationships": ["customer"], "locales": ["en"]}}]})

    name: Name(200, 1)
    topic: TopicKey = Field(description="a marketing topic's key")
    subject: Name(500, 1) = Field(description="a template: {{ contact.name }} and the like")
    html: Body(BODY_MAX) | None = None
    text: Body(BODY_MAX) | None = Field(None, description="text or html (or both) is needed")
    audience: AudienceInput | None = None


class Audience(Output):
    relationships: list[str] | None = None
    locales: list[str] | None = None
    contact_ids: list[int] | None = None
    companies: list[str] | None = None
    sources: list[str] | None = None
    created_after: str | None = None
    created_before: str | None = None
    interacted_after: str | None = None
    interacted_before: str | None = None
    attributes: list[dict[str, str]] | None = None


class Campaign(Output):
    id: int
    name: str
    topic: str
    subject: str
    html: str
    text: str
    audience: Audience
    status: Literal["draft", "scheduled", "sending", "sent", "cancelled", "failed", "paused"]
    scheduled_at: str | None = Field(json_schema_extra={"format": "date-time"})
    created_at: str = Field(json_schema_extra={"format": "date-time"})


class ScheduleInput(Input):
    model_config = ConfigDict(json_schema_extra={"examples": [{"at": "2030-03-01T09:00:00+01:00"}, {"at": None}]})

    # parse_time is the check (ISO-8601 refuses control characters); a pattern beside `format` would only slow
    # clients that generate examples from the document.
    at: Annotated[str, StringConstraints(max_length=64)] | None = Field(
        None, description="ISO-8601 with a zone (naive: UTC); null or absent: now",
        json_schema_extra={"format": "date-time"})

    @field_validator("at")
    @classmethod
    def _a_time(cls, value: str | None) -> str | None:
        try:
            campaigns.parse_time(value)
        except OverflowError:
            raise ValueError("the time is out of range") from None
        return value


class AudienceCount(Output):
    """The live eligible count of a draft or scheduled campaign (the planner's own audience query)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"count": 5135}]})
    count: int = Field(ge=0)


class Report(Output):
    id: int
    status: str
    eligible: int
    sent: int
    skipped: dict[str, int] = Field(description="skip reason -> count")
    failed: int
    unknown: int
    pending: int
    started_at: str | None = Field(json_schema_extra={"format": "date-time"})
    finished_at: str | None = Field(json_schema_extra={"format": "date-time"})
    error: str | None = Field(None, description="why the campaign, or some of its deliveries, could not be sent")


# -- segments -------------------------------------------------------------------------

class SegmentInput(Input):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"topic": "news", "audience": {"relationships": ["customer"],
                                       "attributes": [{"key": "plan", "op": "equals", "value": "gold"}]}}]})

    topic: TopicKey = Field(description="a live marketing topic's key")
    audience: AudienceInput | None = Field(None, description="the filters (omitted or {}: everyone eligible)")


class Segment(Output):
    name: str
    topic: str
    audience: Audience
    count: int = Field(description="how many are eligible now (the planner's own audience query)")
    updated_by: str | None
    updated_at: str = Field(json_schema_extra={"format": "date-time"})


class SegmentList(Output):
    segments: list[Segment]


class Deleted(Output):
    deleted: Literal[True]


# -- system messages ------------------------------------------------------------------

class MessageInput(Input):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"topic": "orders", "to": "ann@example.com", "subject": "Order {{ data.order }}",
         "text": "Thanks {{ contact.name }}, order {{ data.order }} ships today.", "data": {"order": "A-17"}}]})

    topic: TopicKey = Field(description="a system topic's key")
    to: Email = Field(json_schema_extra={"format": "email"})
    subject: Name(500, 1)
    text: Body(BODY_MAX) | None = None
    html: Body(BODY_MAX) | None = None
    data: dict[str, Any] | None = Field(None, description="values for {{ data.x }} in the templates")


class MessageAccepted(Output):
    id: int
    status: str
    delivery_id: int
    reason: str | None
    replayed: bool


class MessageStatus(Output):
    id: int
    status: str
    reason: str | None
    provider_message_id: str | None
    delivery_id: int


# -- errors ---------------------------------------------------------------------------

class ErrorDetail(Output):
    code: str = Field(description="machine-readable: validation_error, malformed_json, not_found, …")
    message: str
    field: str | None = Field(None, description="the request field, path parameter or header at fault")


class Error(Output):
    error: ErrorDetail

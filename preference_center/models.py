"""The data model: contacts, topics, the consent ledger and what hangs off them."""
from __future__ import annotations

import datetime as dt
import functools
from types import SimpleNamespace

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    event,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from .extensions import db
from .states import ContactStatus, LegalBasis, Relationship, SuppressionScope, TopicKind

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets 64-bit ids.
BigId = BigInteger().with_variant(Integer, "sqlite")

# The product's words, declared once in states.py (StrEnums compare equal to their strings).
RELATIONSHIPS = tuple(str(r) for r in Relationship)
CONTACT_STATUSES = tuple(str(s) for s in ContactStatus)
TOPIC_KINDS = tuple(str(k) for k in TopicKind)
LEGAL_BASES = tuple(str(b) for b in LegalBasis)
SUPPRESSION_SCOPES = tuple(str(s) for s in SuppressionScope)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTime(db.TypeDecorator):
    """Timezone-aware UTC datetimes on every database (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given; use aware UTC datetimes")
        return value.astimezone(dt.UTC) if value is not None else None

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value


class Contact(db.Model):
    __tablename__ = "contacts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    email: Mapped[str | None] = mapped_column(String(320), unique=True)
    email_hash: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str | None] = mapped_column(String(200))
    company: Mapped[str | None] = mapped_column(String(200))
    title: Mapped[str | None] = mapped_column(String(200))
    phone: Mapped[str | None] = mapped_column(String(50))
    locale: Mapped[str | None] = mapped_column(String(16))
    relationship: Mapped[str] = mapped_column(String(16), default="prospect")
    status: Mapped[str] = mapped_column(String(16), default="active")
    # Set while the contact has opted out of (or objected to) all marketing:
    # the ledger event that did it.
    marketing_opt_out_event_id: Mapped[int | None] = mapped_column(BigId)
    # The ledger event that recorded the current relationship: what
    # legitimate interest and contract sending rest on.
    relationship_event_id: Mapped[int | None] = mapped_column(BigId)
    token_version: Mapped[int] = mapped_column(Integer, default=1)
    soft_bounces: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    last_interaction_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    erased_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # Email, name and company folded (folding.contact_text): accent- and case-insensitive search.
    search_text: Mapped[str | None] = mapped_column(Text)
    # Custom attributes (attributes.py): {key: text, number or boolean}; None once erased.
    attributes: Mapped[dict | None] = mapped_column(JSON, default=dict)


class Topic(db.Model):
    __tablename__ = "topics"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    legal_basis: Mapped[str] = mapped_column(String(32))
    default_relationships: Mapped[list] = mapped_column(JSON, default=list)
    description: Mapped[str] = mapped_column(Text, default="")
    sendgrid_group_id: Mapped[int | None] = mapped_column(Integer)
    retired: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Subscription(db.Model):
    """Current state of one contact for one topic, derived from the ledger."""

    __tablename__ = "subscriptions"

    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True)
    topic_id: Mapped[int] = mapped_column(ForeignKey("topics.id", ondelete="CASCADE"), primary_key=True)
    # subscribed (confirmed grant), pending (grant awaiting confirmation),
    # unsubscribed (withdrawn or opted out).
    state: Mapped[str] = mapped_column(String(16))
    event_id: Mapped[int] = mapped_column(BigId)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class OptOutInbox(db.Model):
    """An RFC 8058 one-click opt-out, taken and committed, waiting to be chained into the ledger.

    The one-click request writes only this row; `optouts.settle` turns it into
    the ledger's withdraw event (with the time, IP and user agent kept here)
    and deletes it. Every reader of a contact's state settles first.
    """

    __tablename__ = "opt_out_inbox"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"), index=True)
    # None: all marketing.
    topic_id: Mapped[int | None] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(200))
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The campaign delivery whose link was used, as the link said (checked against the contact when settled).
    delivery_id: Mapped[int | None] = mapped_column(BigId)


class ConsentText(db.Model):
    """A versioned wording shown on a consent form; events cite its version."""

    __tablename__ = "consent_texts"
    __table_args__ = (UniqueConstraint("version", "locale"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[str] = mapped_column(String(32))
    locale: Mapped[str] = mapped_column(String(16), default="en")
    text: Mapped[str] = mapped_column(Text)
    # sha256 of the wording, fixed at publication; every event citing the
    # wording carries it inside its own chain hash (`ledger verify` rechecks it).
    text_hash: Mapped[str | None] = mapped_column(String(64))
    published_by: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class ConsentEvent(db.Model):
    """One append-only, hash-chained ledger entry."""

    __tablename__ = "consent_events"
    __table_args__ = (Index("ix_consent_events_contact", "contact_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id"))
    topic_id: Mapped[int | None] = mapped_column(ForeignKey("topics.id"))
    # "all marketing" events have no topic; contact-wide ones (erase, rectify) neither.
    scope: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(32))
    legal_basis: Mapped[str | None] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(200))
    consent_text_version: Mapped[str | None] = mapped_column(String(32))
    # The published wording the event cites, and that wording's hash (part of the chain hash).
    consent_text_id: Mapped[int | None] = mapped_column(ForeignKey("consent_texts.id"))
    wording_hash: Mapped[str | None] = mapped_column(String(64))
    confirmed: Mapped[bool] = mapped_column(Boolean, default=False)
    detail: Mapped[dict] = mapped_column(JSON, default=dict)
    # Personal fields: blanked on erasure; the chain covers their digest.
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    personal: Mapped[dict | None] = mapped_column(JSON)
    pii_digest: Mapped[str] = mapped_column(String(64))
    redacted: Mapped[bool] = mapped_column(Boolean, default=False)
    occurred_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class LedgerHead(db.Model):
    """The single row that serialises appends and pins the end of the chain."""

    __tablename__ = "ledger_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_id: Mapped[int] = mapped_column(BigId, default=0)
    last_hash: Mapped[str] = mapped_column(String(64))


class Suppression(db.Model):
    __tablename__ = "suppressions"
    __table_args__ = (UniqueConstraint("email_hash", "scope"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    email_hash: Mapped[str] = mapped_column(String(64), index=True)
    scope: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(200))
    event_id: Mapped[int | None] = mapped_column(BigId)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class StaffUser(db.Model):
    __tablename__ = "staff_users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class StaffSession(db.Model):
    """A signed-in staff session, held server-side so that signing out ends every copy of the cookie."""

    __tablename__ = "staff_sessions"

    # SHA-256 of the random session id the cookie carries.
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("staff_users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class ApiToken(db.Model):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    # "client" (the default) or "admin": an admin token may read every system message, not only its own.
    role: Mapped[str] = mapped_column(String(16), default="client", server_default="client")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class AuditLog(db.Model):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # One shape for every door: who (kind and name), what, on what, when.
    actor_kind: Mapped[str] = mapped_column(String(16), default="system")
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(64))
    target_type: Mapped[str | None] = mapped_column(String(32))
    target_id: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict] = mapped_column(JSON, default=dict)
    ip: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class Campaign(db.Model):
    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    topic_id: Mapped[int] = mapped_column(ForeignKey("topics.id"))
    subject: Mapped[str] = mapped_column(String(500))
    html: Mapped[str] = mapped_column(Text, default="")
    text: Mapped[str] = mapped_column(Text, default="")
    audience: Mapped[dict] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="draft", index=True)
    scheduled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    # Keyset cursor of the dispatcher: every contact id <= this is in a batch.
    dispatch_cursor: Mapped[int] = mapped_column(BigId, default=0)
    dispatch_done: Mapped[bool] = mapped_column(Boolean, default=False)
    # One planner at a time per campaign; a dead planner's lease runs out.
    dispatch_lease_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    created_by: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    cancelled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class CampaignBatch(db.Model):
    """A chunk of a campaign's audience: the unit handed to one worker task."""

    __tablename__ = "campaign_batches"
    __table_args__ = (UniqueConstraint("campaign_id", "first_contact_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), index=True)
    first_contact_id: Mapped[int] = mapped_column(BigId)
    last_contact_id: Mapped[int] = mapped_column(BigId)
    size: Mapped[int] = mapped_column(Integer)
    # queued -> claimed -> done; a claimed batch whose lease ran out is re-queued.
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    queued_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # The planned recipients, in id order: the batch is the plan (their delivery rows are written once, at
    # send time, with their outcome). None only for batches planned before 0010, whose rows were written then.
    contact_ids: Mapped[list | None] = mapped_column(JSON)
    # The provider request this batch's worker is making, as [delivery id, contact id, authorising event]
    # triples (committed before the call, cleared with the outcome): the claim. Their rows do not exist yet;
    # if the worker dies they are written `unknown` by whoever takes the batch next.
    in_flight: Mapped[list | None] = mapped_column(JSON)


class SystemMessage(db.Model):
    __tablename__ = "system_messages"
    # Idempotency keys are the sending token's own: two tokens using one key send two messages.
    __table_args__ = (UniqueConstraint("api_token_id", "idempotency_key"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    topic_id: Mapped[int] = mapped_column(ForeignKey("topics.id"))
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id"))
    # The API token that sent it (None: another door); only it, or an admin token, may read it back.
    api_token_id: Mapped[int | None] = mapped_column(ForeignKey("api_tokens.id"))
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    request_digest: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(500))
    text: Mapped[str] = mapped_column(Text, default="")
    html: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict] = mapped_column(JSON, default=dict)
    created_by: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


# The system deliveries not yet concluded: the only rows looked up by status.
SYSTEM_OPEN = "system_message_id IS NOT NULL AND status IN ('queued', 'sending')"


class Delivery(db.Model):
    """One row per (campaign or system message, contact): what happened and why."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("campaign_id", "contact_id"),  # at most one delivery per (campaign, contact)
        # Campaign rows are written by the thousand, so they stay out of every index only system messages
        # need (0014): one delivery per system message, and the system sends still open (the scheduler's
        # stale and stuck queries, the queue gauge).
        Index("uq_deliveries_system_message", "system_message_id", unique=True,
              postgresql_where=text("system_message_id IS NOT NULL"), sqlite_where=text("system_message_id IS NOT NULL")),
        Index("ix_deliveries_system_open", "status", "updated_at",
              postgresql_where=text(SYSTEM_OPEN), sqlite_where=text(SYSTEM_OPEN)),
        Index("ix_deliveries_batch", "batch_id"),
        # Campaign rows get their ids before they are written (the ids travel in the provider request):
        # a sequence on PostgreSQL, sqlite_sequence on SQLite, which only AUTOINCREMENT keeps.
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # No foreign keys on campaign_id and contact_id (0014 says why): checking them locked every contact row
    # a campaign wrote to, half the cost of writing the rows.
    campaign_id: Mapped[int | None] = mapped_column(Integer)
    system_message_id: Mapped[int | None] = mapped_column(ForeignKey("system_messages.id"))
    batch_id: Mapped[int | None] = mapped_column(BigId)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    contact_id: Mapped[int] = mapped_column(BigId, index=True)
    # A campaign's row is written once, at send time, with its outcome: sent | failed | unknown, or skipped
    # with a reason (until then the recipient is pending on the batch). A system message's row is
    # queued -> sending (claimed in the database before the provider call) -> sent | failed | unknown.
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(64))
    event_id: Mapped[int | None] = mapped_column(BigId)
    provider_message_id: Mapped[str | None] = mapped_column(String(200))
    provider_status: Mapped[str | None] = mapped_column(String(32))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class DataRequest(db.Model):
    """A data-subject request, with the one-month deadline staff must meet."""

    __tablename__ = "data_requests"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="open")
    requested_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    due_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    completed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # Shown to the person: why a request was refused, or why its deadline was extended (once).
    refusal_reason: Mapped[str | None] = mapped_column(Text)
    extension_reason: Mapped[str | None] = mapped_column(Text)
    extended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    detail: Mapped[dict] = mapped_column(JSON, default=dict)


class WebhookEvent(db.Model):
    """Provider events seen, keyed by the provider's id, for de-duplication."""

    __tablename__ = "webhook_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    provider_event_id: Mapped[str] = mapped_column(String(200), unique=True)
    event: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict] = mapped_column(JSON)
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    processed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class DailyStat(db.Model):
    """Anonymous per-day delivery counts kept after delivery rows expire."""

    __tablename__ = "daily_stats"
    __table_args__ = (UniqueConstraint("day", "campaign_id", "topic_id", "status", "reason"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    day: Mapped[dt.date] = mapped_column(db.Date)
    campaign_id: Mapped[int | None] = mapped_column(Integer)
    topic_id: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(64), default="")
    count: Mapped[int] = mapped_column(BigInteger, default=0)


class RateLimit(db.Model):
    """A send schedule shared by every worker: the next free sending moment."""

    __tablename__ = "rate_limits"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    next_at: Mapped[float] = mapped_column(db.Float, default=0.0)




IMPORT_STATUSES = ("uploaded", "previewed", "queued", "running", "done", "failed", "discarded")


class ImportJob(db.Model):
    """One uploaded CSV file: how to read it, on what basis, and how far its import got."""

    __tablename__ = "import_jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_by: Mapped[str] = mapped_column(String(200))
    filename: Mapped[str] = mapped_column(String(255))
    # Under PC_INSTANCE_PATH/uploads; cleared once the file is deleted.
    stored_path: Mapped[str | None] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(16), default="uploaded", index=True)
    delimiter: Mapped[str] = mapped_column(String(1), default=",")
    has_header: Mapped[bool] = mapped_column(Boolean, default=True)
    columns: Mapped[list] = mapped_column(JSON, default=list)
    # Contact field -> zero-based column index.
    mapping: Mapped[dict] = mapped_column(JSON, default=dict)
    legal_basis: Mapped[str | None] = mapped_column(String(32))
    source_text: Mapped[str | None] = mapped_column(String(150))
    default_relationship: Mapped[str | None] = mapped_column(String(16))
    topic_id: Mapped[int | None] = mapped_column(ForeignKey("topics.id"))
    consent_collected: Mapped[bool] = mapped_column(Boolean, default=False)
    confirmed_opt_in: Mapped[bool] = mapped_column(Boolean, default=False)
    # A list from another company (issue 14): who it is, and the evidence that the people consented to the
    # sharing (required for consent topics). Neither holds an address.
    third_party: Mapped[str | None] = mapped_column(String(200))
    share_evidence: Mapped[str | None] = mapped_column(String(500))
    preview: Mapped[dict] = mapped_column(JSON, default=dict)
    total: Mapped[int] = mapped_column(Integer, default=0)
    # Rows handled so far; committed with each chunk, so a restarted task resumes here.
    processed: Mapped[int] = mapped_column(Integer, default=0)
    created_count: Mapped[int] = mapped_column(Integer, default=0)
    updated_count: Mapped[int] = mapped_column(Integer, default=0)
    unchanged_count: Mapped[int] = mapped_column(Integer, default=0)
    skipped_count: Mapped[int] = mapped_column(Integer, default=0)
    invalid_count: Mapped[int] = mapped_column(Integer, default=0)
    granted_count: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    # When it was last handed to the broker: the scheduler re-queues a job no worker took.
    queued_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    @property
    def percent(self) -> int:
        if not self.total:
            return 100 if self.status == "done" else 0
        return min(100, int(self.processed * 100 / self.total))


@event.listens_for(ConsentText, "before_update")
def _wordings_never_change(mapper, connection, target) -> None:
    # A published wording is what people agreed to: publish a new version instead.
    raise ValueError(f"consent wording {target.version} ({target.locale}) is published and cannot change")


class WebhookEndpoint(db.Model):
    """An outgoing webhook: where other systems are told of consent changes, and how that goes."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    url: Mapped[str] = mapped_column(String(2000))
    # The change types it receives (change_feed.TYPES).
    events: Mapped[list] = mapped_column(JSON, default=list)
    # whsec_<base64>: kept to sign with (shown to the client once, at creation).
    secret: Mapped[str] = mapped_column(String(100))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    # Since when every attempt failed (None: the last attempt succeeded).
    failing_since: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class WebhookMessage(db.Model):
    """The outbox: one message for one endpoint, written in the transaction of the change it tells of."""

    __tablename__ = "webhook_messages"
    __table_args__ = (
        Index("ix_webhook_messages_due", "status", "next_attempt_at"),
        Index("ix_webhook_messages_order", "endpoint_id", "contact_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    # The webhook-id header: the same on every attempt, so receivers de-duplicate by it.
    message_id: Mapped[str] = mapped_column(String(64), unique=True)
    event_type: Mapped[str] = mapped_column(String(40))
    # Messages of one contact go out in order, each after the one before it succeeded.
    contact_id: Mapped[int | None] = mapped_column(BigId)
    ledger_event_id: Mapped[int | None] = mapped_column(BigId)
    delivery_id: Mapped[int | None] = mapped_column(BigId)
    payload: Mapped[dict] = mapped_column(JSON)
    # The personal part, apart so that an erasure can blank what has not gone out yet.
    email: Mapped[str | None] = mapped_column(String(320))
    # pending -> delivered (or dropped when its endpoint is deleted: cascade).
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    # A worker holds the message until then; one that died lets it go when it runs out.
    lease_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class SendGridSync(db.Model):
    """An opt-out or suppression to push into SendGrid (an unsubscribe group, or the global list)."""

    __tablename__ = "sendgrid_sync"
    __table_args__ = (Index("ix_sendgrid_sync_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # "group" (an ASM unsubscribe group, group_id) or "global" (the global unsubscribe list).
    target: Mapped[str] = mapped_column(String(16))
    group_id: Mapped[int | None] = mapped_column(Integer)
    # Blanked once pushed: SendGrid has it, we need not keep a second copy here.
    email: Mapped[str | None] = mapped_column(String(320))
    ledger_event_id: Mapped[int | None] = mapped_column(BigId)
    # pending -> done
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    done_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class ProviderErasure(db.Model):
    """An erased address still to be erased at the mail provider (issue 14).

    The one place an erased address is kept, and only until the provider has
    accepted its erasure and suppression; then the row is deleted.
    """

    __tablename__ = "provider_erasures"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    requested_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Masked (no address): why the last attempt failed.
    last_error: Mapped[str | None] = mapped_column(Text)


class InterestAssessment(db.Model):
    """A recorded legitimate-interest assessment of one marketing topic (issue 14): versioned, never edited.

    `purpose` is what recipients are told (why we write); `text` is the balancing test itself.
    """

    __tablename__ = "interest_assessments"
    __table_args__ = (UniqueConstraint("topic_id", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    topic_id: Mapped[int] = mapped_column(ForeignKey("topics.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    purpose: Mapped[str] = mapped_column(String(300))
    text: Mapped[str] = mapped_column(Text)
    text_hash: Mapped[str] = mapped_column(String(64))
    approved_by: Mapped[str] = mapped_column(String(200))
    approved_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


@event.listens_for(InterestAssessment, "before_update")
def _assessments_never_change(mapper, connection, target) -> None:
    # What was weighed and approved stays as it was: record a new version instead.
    raise ValueError(f"assessment version {target.version} is recorded and cannot change")


class FirstContactNotice(db.Model):
    """Art. 14 (issue 14): a person whose address came from another company is told so before any marketing mail.

    Due from the import that brought the address; `sent_at` once the notice went out.
    """

    __tablename__ = "first_contact_notices"

    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True)
    import_job_id: Mapped[int | None] = mapped_column(Integer)
    third_party: Mapped[str] = mapped_column(String(200))
    legal_basis: Mapped[str] = mapped_column(String(32))
    due_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, index=True)


class Branding(db.Model):
    """The organisation as recipients see it: one row (id 1); empty fields fall back to the PC_* settings."""

    __tablename__ = "branding"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    org_name: Mapped[str | None] = mapped_column(String(200))
    accent: Mapped[str | None] = mapped_column(String(7))  # "#1d4ed8"
    privacy_url: Mapped[str | None] = mapped_column(String(500))
    postal_address: Mapped[str | None] = mapped_column(String(500))
    sender_name: Mapped[str | None] = mapped_column(String(200))
    sender_email: Mapped[str | None] = mapped_column(String(320))
    logo: Mapped[bytes | None] = mapped_column(LargeBinary)
    logo_type: Mapped[str | None] = mapped_column(String(32))
    updated_by: Mapped[str | None] = mapped_column(String(200))
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class TopicTranslation(db.Model):
    """A topic's name and description in one more language (the topic's own are the default language's)."""

    __tablename__ = "topic_translations"
    __table_args__ = (UniqueConstraint("topic_id", "locale"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    topic_id: Mapped[int] = mapped_column(ForeignKey("topics.id", ondelete="CASCADE"))
    locale: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")


class EngagementEvent(db.Model):
    """What the provider reported about one campaign delivery (delivered, open, click, bounce, ...), for the
    campaign's engagement figures; opens and clicks exist only for recipients who agreed to tracking."""

    __tablename__ = "engagement_events"
    __table_args__ = (Index("ix_engagement_events_campaign", "campaign_id", "kind"),
                      # Folding (retention, erasure) and the report's own-unsubscribe check go by delivery.
                      Index("ix_engagement_events_delivery", "delivery_id"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(Integer)
    delivery_id: Mapped[int] = mapped_column(BigId)
    kind: Mapped[str] = mapped_column(String(32))
    url: Mapped[str | None] = mapped_column(String(2000))
    occurred_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class EngagementStat(db.Model):
    """Anonymous per-campaign, per-hour engagement counts kept after engagement rows are folded (retention,
    erasure): `name` is a report figure (recipients whose first such event fell in that hour), `open_events` /
    `click_events` (events in that hour) or `link` (recipients whose first click on `url` fell in that hour)."""

    __tablename__ = "engagement_stats"
    __table_args__ = (Index("ix_engagement_stats_campaign", "campaign_id", "name"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(Integer)
    hour: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    name: Mapped[str] = mapped_column(String(32))
    url: Mapped[str | None] = mapped_column(String(2000))
    count: Mapped[int] = mapped_column(BigInteger, default=0)


class TopicTracking(db.Model):
    """A topic whose campaigns may track opens and clicks, for recipients who agreed (off when absent)."""

    __tablename__ = "topic_tracking"

    topic_id: Mapped[int] = mapped_column(ForeignKey("topics.id", ondelete="CASCADE"), primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=False)


class MailTemplate(db.Model):
    """A reusable HTML layout staff wrap campaign content in: `{{ content }}` marks where the content goes."""

    __tablename__ = "mail_templates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    html: Mapped[str] = mapped_column(Text)
    updated_by: Mapped[str | None] = mapped_column(String(200))
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Segment(db.Model):
    """A saved audience: a marketing topic and audience filters, reused when composing campaigns."""

    __tablename__ = "segments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    topic_id: Mapped[int] = mapped_column(ForeignKey("topics.id"))
    filters: Mapped[dict] = mapped_column(JSON, default=dict)
    updated_by: Mapped[str | None] = mapped_column(String(200))
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


@event.listens_for(Contact, "before_insert")
@event.listens_for(Contact, "before_update")
def _contact_search_text(mapper, connection, target) -> None:
    from .folding import contact_text

    target.search_text = contact_text(target.email, target.name, target.company)



class NewContact(SimpleNamespace):
    """A contact to be written in bulk: every column of its row in a plain record (no ORM object, no session)."""

    @classmethod
    def of(cls, **values) -> NewContact:
        """`values` over every column's default, as the ORM would insert them."""
        constant, computed = _contact_defaults()
        record = dict(constant)  # every column, in the table's order
        for key, make in computed:
            if key not in values:
                record[key] = make(None)
        record.update(values)
        return cls(**record)


@functools.cache
def _contact_defaults() -> tuple[dict, tuple]:
    """Every contact column with its plain default (None for those computed per row), and the computed ones
    (key, function): read once, not per row."""
    constant, computed = {}, []
    for column in Contact.__table__.c:
        default = column.default
        constant[column.key] = None if default is None or default.is_callable else default.arg
        if default is not None and default.is_callable:
            computed.append((column.key, default.arg))
    return constant, tuple(computed)


def contact_row(contact: NewContact) -> dict:
    """The row of a new contact for a bulk insert, with its `search_text` (as the ORM's insert sets it)."""
    _contact_search_text(None, None, contact)
    return dict(vars(contact))

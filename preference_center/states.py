"""States, kinds and sources in the product's words, declared once (StrEnums compare equal to their strings)."""
from __future__ import annotations

from enum import StrEnum


class Relationship(StrEnum):
    PROSPECT = "prospect"
    CUSTOMER = "customer"
    PARTNER = "partner"
    SUPPLIER = "supplier"
    CANDIDATE = "candidate"


class ContactStatus(StrEnum):
    ACTIVE = "active"
    RESTRICTED = "restricted"
    ERASED = "erased"


class TopicKind(StrEnum):
    MARKETING = "marketing"
    SYSTEM = "system"


class LegalBasis(StrEnum):
    CONSENT = "consent"
    LEGITIMATE_INTEREST = "legitimate_interest"
    CONTRACT = "contract"


class SubscriptionState(StrEnum):
    SUBSCRIBED = "subscribed"
    PENDING = "pending"
    UNSUBSCRIBED = "unsubscribed"


class SuppressionScope(StrEnum):
    ALL = "all"
    MARKETING = "marketing"


class SuppressionReason(StrEnum):
    ERASED = "erased"
    OPT_OUT = "opt_out"
    SPAM_COMPLAINT = "spam_complaint"
    HARD_BOUNCE = "hard_bounce"
    SOFT_BOUNCE_LIMIT = "soft_bounce_limit"


class CampaignStatus(StrEnum):
    DRAFT = "draft"
    SCHEDULED = "scheduled"
    SENDING = "sending"
    SENT = "sent"
    CANCELLED = "cancelled"
    FAILED = "failed"
    PAUSED = "paused"  # sending stopped between batches by staff; resumes where it stopped


class RequestKind(StrEnum):
    ACCESS = "access"
    ERASURE = "erasure"
    RESTRICTION = "restriction"
    OBJECTION = "objection"
    RECTIFICATION = "rectification"
    PORTABILITY = "portability"


class RequestStatus(StrEnum):
    OPEN = "open"
    COMPLETED = "completed"
    REFUSED = "refused"


class LinkSource(StrEnum):
    """Ledger sources of what a recipient does through our signed links: the person's own acts."""

    PREFERENCES_PAGE = "preferences-page"
    UNSUBSCRIBE_PAGE = "unsubscribe-page"
    ONE_CLICK = "one-click"
    UNDO = "unsubscribe-undo"
    SUBSCRIBE_FORM = "subscribe-form"
    SUBSCRIBE_CONFIRM = "subscribe-confirm"
    DATA_PAGE = "data-rights-page"


# Only consent and legitimate interest carry marketing; only customers are reached by default.
MARKETING_BASES = (LegalBasis.CONSENT, LegalBasis.LEGITIMATE_INTEREST)
DEFAULT_RELATIONSHIPS_ALLOWED = (Relationship.CUSTOMER,)

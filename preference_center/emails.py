"""Email addresses: validation, normalisation and the keyed suppression hash."""
from __future__ import annotations

import hashlib
import hmac

from email_validator import EmailNotValidError, validate_email

from .errors import N_


class InvalidEmail(ValueError):
    """The text is not a usable email address."""


def normalize(raw: str) -> str:
    """Validate syntax and return the canonical form (IDNA domain, lower case)."""
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidEmail(N_("an email address is required"))
    try:
        result = validate_email(raw.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidEmail(N_("not a valid email address: %(reason)s", reason=str(exc)).with_english(str(exc))) from exc
    # Mailbox names are case-insensitive at every provider we send to; one
    # person must map to one contact and one suppression hash.
    return result.normalized.lower()


def email_hash(key: str, normalized: str) -> str:
    """HMAC-SHA256 of a normalised address: survives erasure, reveals nothing."""
    return hmac.new(key.encode(), normalized.encode(), hashlib.sha256).hexdigest()

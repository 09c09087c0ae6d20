"""Email addresses: validation, normalisation and the keyed suppression hash."""
from __future__ import annotations

import functools
import hashlib
import hmac
import re

from email_validator import EmailNotValidError, validate_email
from email_validator.rfc_constants import DOT_ATOM_TEXT

from .errors import N_


class InvalidEmail(ValueError):
    """The text is not a usable email address."""


# The common case, checked without the full validator: a short ASCII address whose local part is a plain
# dot-atom (the validator's own pattern, which it accepts as is) and whose domain is ASCII letters, digits,
# dots and hyphens. Its domain is checked once by the validator and remembered; anything else (longer,
# non-ASCII, quoted, a domain the validator refuses or turns into Unicode) takes the full validator, so the
# result and the error are always the validator's.
_PLAIN = re.compile(r"([^@]+)@([A-Za-z0-9.-]+)")
_PLAIN_MAX = 100  # far below the validator's 254-character limit, so no length rule can differ


@functools.lru_cache(maxsize=4096)
def _plain_domain(domain: str) -> str | None:
    """The validator's canonical form of an ASCII domain, or None when only the full check may decide."""
    try:
        canonical = validate_email("x@" + domain, check_deliverability=False).domain
    except EmailNotValidError:
        return None
    return canonical if canonical.isascii() else None


def normalize(raw: str) -> str:
    """Validate syntax and return the canonical form (IDNA domain, lower case)."""
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidEmail(N_("an email address is required"))
    text = raw.strip()
    plain = _PLAIN.fullmatch(text) if len(text) <= _PLAIN_MAX and text.isascii() else None
    if plain is not None and DOT_ATOM_TEXT.match(plain[1]):
        domain = _plain_domain(plain[2])
        if domain is not None:
            return f"{plain[1]}@{domain}".lower()
    try:
        result = validate_email(text, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidEmail(N_("not a valid email address: %(reason)s", reason=str(exc)).with_english(str(exc))) from exc
    # Mailbox names are case-insensitive at every provider we send to; one
    # person must map to one contact and one suppression hash.
    return result.normalized.lower()


def email_hash(key: str, normalized: str) -> str:
    """HMAC-SHA256 of a normalised address: survives erasure, reveals nothing."""
    return hmac.new(key.encode(), normalized.encode(), hashlib.sha256).hexdigest()

"""Log lines carry ids, never addresses or tokens: a filter that masks them in every record.

What is masked, wherever it appears in a record's message or arguments (API
paths such as /api/v1/contacts/ann@example.com, staff searches, provider
errors, exception text): email addresses (also URL-encoded, `%40`), the
signed tokens of recipient links (/p/…, /u/…, /confirm/…, /data/confirm/…),
API bearer tokens (pc_…) and Authorization headers. `install()` puts the
filter on the root logger's handlers and wraps the record factory, so
records of every logger (werkzeug, gunicorn, celery, ours) are masked before
any handler, added now or later, formats them.
"""
from __future__ import annotations

import logging
import re

ADDRESS = "[address]"
TOKEN = "[token]"
PATTERNS = (
    # user@host.tld, also inside a URL-encoded query string (user%40host.tld).
    (re.compile(r"[A-Za-z0-9.!#$%&'*+^_`{|}~-]+(?:@|%40)[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}",
                re.IGNORECASE), ADDRESS),
    # Recipient links carry a signed token as a path segment.
    (re.compile(r"(/(?:p|u|confirm|data/confirm|data/address|portability)/)[A-Za-z0-9_.~=-]{8,}"), r"\1" + TOKEN),
    (re.compile(r"\bpc_[A-Za-z0-9_-]{8,}"), "pc_" + TOKEN),
    (re.compile(r"(?i)(authorization:?\s*(?:bearer|basic)?\s*)\S+"), r"\1" + TOKEN),
)


def mask(text: str) -> str:
    """`text` with addresses and tokens replaced."""
    for pattern, replacement in PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class MaskingFilter(logging.Filter):
    """Rewrites a record's message (formatted with its arguments) and exception text, masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        masked_record(record)
        return True


def masked_record(record: logging.LogRecord) -> logging.LogRecord:
    if getattr(record, "_pc_masked", False):
        return record
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a broken format string is logged as it is, masked
        message = str(record.msg)
    record.msg, record.args = mask(message), ()
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = mask(record.exc_text)
    record._pc_masked = True
    return record


_installed = False


def install() -> None:
    """Mask every record from now on (idempotent): the record factory, and the root handlers' filters."""
    global _installed
    root = logging.getLogger()
    for handler in root.handlers:
        if not any(isinstance(f, MaskingFilter) for f in handler.filters):
            handler.addFilter(MaskingFilter())
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args, **kwargs):
        record = previous(*args, **kwargs)
        # Exceptions are formatted later by handlers; the message and its arguments are masked now.
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001
            return record
        record.msg, record.args = mask(message), ()
        return record

    logging.setLogRecordFactory(factory)
    _installed = True

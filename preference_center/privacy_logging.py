"""Log lines carry ids, never addresses or tokens: a filter that masks them in every record.

What is masked, wherever it appears in a record's message or arguments (API
paths such as /api/v1/contacts/ann@example.com, staff searches, provider
errors, exception text): email addresses (also URL-encoded, `%40`), the
signed tokens of recipient links (/p/…, /u/…, /confirm/…, /data/confirm/…),
API bearer tokens (pc_…) and Authorization headers. `install()` puts the
filter on the root logger's handlers and wraps the record factory, so
records of every logger (werkzeug, gunicorn, celery, ours) are masked before
any handler, added now or later, formats them. What counts as an address or a
token is `logs.mask`'s, the same as the log handler's own filter.
"""
from __future__ import annotations

import logging

from .logs import MASKED_MESSAGE, mask


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
        setattr(record, MASKED_MESSAGE, record.msg)  # the handler's filter need not mask it again
        return record

    logging.setLogRecordFactory(factory)
    _installed = True

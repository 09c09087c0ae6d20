"""The one domain error: every command raises it, every door maps it to its own answer.

A door answers with `status` (API: a JSON error; staff pages: a form error or
flash with that status; CLI: exit code 1). Nothing is changed by a command
that raised: the door rolls the transaction back.

A message built with `N_()` is the English text (what `str()`, the API, logs
and the CLI show) and remembers its message id and parameters, so the staff
pages translate it where they show it (`i18n.localized`), never where it is raised.
"""
from __future__ import annotations

from enum import StrEnum


class Code(StrEnum):
    """Machine-readable error codes; the API returns them as `error.code`."""

    VALIDATION = "validation_error"
    CONFLICT = "conflict"
    NEEDS_CONFIRMATION = "needs_confirmation"
    NOT_FOUND = "not_found"
    UNKNOWN_TOPIC = "unknown_topic"
    SYSTEM_TOPIC = "system_topic"
    MARKETING_TOPIC = "marketing_topic"
    ERASED = "erased"
    INVALID_EMAIL = "invalid_email"
    FORBIDDEN = "forbidden"
    IDEMPOTENCY_CONFLICT = "idempotency_conflict"


STATUS = {
    Code.CONFLICT: 409,
    Code.NEEDS_CONFIRMATION: 409,
    Code.ERASED: 409,
    Code.IDEMPOTENCY_CONFLICT: 409,
    Code.NOT_FOUND: 404,
    Code.FORBIDDEN: 403,
}


class Text(str):
    """English text that remembers the message id and parameters it was made from (see `N_`)."""

    def __new__(cls, english: str, msgid: str | None = None, params: dict | None = None):
        self = super().__new__(cls, english)
        self.msgid = msgid  # None: plain English, shown as it is
        self.params = params or {}
        return self

    def with_english(self, english: str) -> Text:
        """This message with another English text (a library's own words the API has always answered)."""
        return Text(english, self.msgid, self.params)


def N_(msgid: str, /, **params) -> Text:
    """A domain message, gettext's N_: marked now, the English `msgid % params`, translated where a page shows it."""
    return Text(msgid % params if params else msgid, msgid, params)


def word(value: str) -> Text:
    """A stored value (a state, a kind) named in a message: English as it is, translated where the catalogue has it."""
    return Text(str(value), str(value))


class DomainError(ValueError):
    """Input or an action the domain refuses; `field` names the culprit, `code` the kind."""

    def __init__(self, message: str, field: str | None = None, code: str = Code.VALIDATION):
        super().__init__(message)
        self.message = message
        self.field = field
        self.code = str(code)

    @property
    def status(self) -> int:
        """The HTTP status a door answers with (422 unless the code says otherwise)."""
        return STATUS.get(self.code, 422)


# The name most of the domain has used so far; one class, two names.
ValidationError = DomainError

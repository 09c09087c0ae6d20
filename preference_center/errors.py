"""The one domain error: every command raises it, every door maps it to its own answer.

A door answers with `status` (API: a JSON error; staff pages: a form error or
flash with that status; CLI: exit code 1). Nothing is changed by a command
that raised: the door rolls the transaction back.
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

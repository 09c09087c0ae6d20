"""The transport interface: what a batch of mail is, what sending it returns, how it fails."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from typing import Protocol

# Set by the transport from the batch itself; allowing them as extra headers
# would produce duplicates or let a caller forge the envelope.
RESERVED_HEADERS = frozenset(
    name.lower()
    for name in (
        "From", "To", "Cc", "Bcc", "Subject", "Date", "Message-ID", "MIME-Version",
        "Content-Type", "Content-Transfer-Encoding", "Received", "DKIM-Signature",
    )
)


@dataclass
class Envelope:
    """One recipient of a batch, with its own placeholder values, headers and ids."""

    to: str
    substitutions: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    custom_args: dict[str, str] = field(default_factory=dict)


@dataclass
class MessageBatch:
    """The same content for every envelope; placeholders are replaced per envelope."""

    from_email: str
    subject: str
    text: str
    html: str | None = None
    envelopes: list[Envelope] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    categories: list[str] = field(default_factory=list)
    # Open and click tracking by the provider: only for recipients who agreed (engagement.py).
    tracking: bool = False


@dataclass
class SendResult:
    """What happened to one envelope."""

    to: str
    ok: bool
    provider_message_id: str | None = None
    error: str | None = None


class TransportError(Exception):
    """The whole request failed; `ambiguous` means the provider may still have accepted it."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        ambiguous: bool = False,
        retry_after: float | None = None,
        sent: list[SendResult] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.ambiguous = ambiguous
        self.retry_after = retry_after
        # Results for envelopes that went out in earlier requests of the same
        # send() call, so a caller never re-sends those. Empty when the batch
        # was no larger than the transport's max_batch.
        self.sent: list[SendResult] = list(sent or [])


class Transport(Protocol):
    """Sends a MessageBatch; one SendResult per envelope, in order."""

    name: str
    max_batch: int

    def send(self, batch: MessageBatch) -> list[SendResult]: ...


def substitute(text: str, substitutions: dict[str, str]) -> str:
    """Replace every placeholder key literally by its value."""
    for key, value in substitutions.items():
        text = text.replace(key, value)
    return text


def envelope_headers(batch: MessageBatch, envelope: Envelope) -> dict[str, str]:
    """Common and per-recipient headers merged (recipient wins), placeholders replaced."""
    merged = {**batch.headers, **envelope.headers}
    return {name: substitute(value, envelope.substitutions) for name, value in merged.items()}


def check_headers(batch: MessageBatch) -> None:
    """Raise ValueError if any extra header is one the transport sets itself."""
    for headers in [batch.headers, *(e.headers for e in batch.envelopes)]:
        for name in headers:
            if name.lower() in RESERVED_HEADERS or name.lower().startswith("x-sg-"):
                raise ValueError(f"header {name!r} is set by the transport and may not be given")


def sender_domain(from_email: str) -> str:
    """The domain of the sender address, for Message-IDs (avoids a slow getfqdn())."""
    address = parseaddr(from_email)[1]
    return address.rpartition("@")[2] or "localhost"


def build_message(batch: MessageBatch, envelope: Envelope) -> EmailMessage:
    """One standard message for one envelope: text (+ html alternative), all headers."""
    subs = envelope.substitutions
    msg = EmailMessage()
    msg["From"] = batch.from_email
    msg["To"] = envelope.to
    msg["Subject"] = substitute(batch.subject, subs)
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = make_msgid(domain=sender_domain(batch.from_email))
    for name, value in envelope_headers(batch, envelope).items():
        msg[name] = value
    msg.set_content(substitute(batch.text, subs))
    if batch.html is not None:
        msg.add_alternative(substitute(batch.html, subs), subtype="html")
    return msg


"""Mail transports behind one interface, chosen by PC_MAIL_TRANSPORT: outbox, smtp or sendgrid."""
from __future__ import annotations

from pathlib import Path

from .base import Envelope, MessageBatch, SendResult, Transport, TransportError
from .outbox import OutboxTransport
from .render import TemplateError, check, render
from .sendgrid import SendGridTransport
from .smtp import SmtpTransport

__all__ = [
    "Envelope", "MessageBatch", "SendResult", "Transport", "TransportError",
    "OutboxTransport", "SmtpTransport", "SendGridTransport",
    "TemplateError", "check", "render", "get_transport", "TRANSPORTS",
]

TRANSPORTS = ("outbox", "smtp", "sendgrid")


def get_transport(config: dict) -> Transport:
    """The transport PC_MAIL_TRANSPORT names, built from the rest of the config."""
    choice = config["PC_MAIL_TRANSPORT"]
    if choice == "outbox":
        return OutboxTransport(Path(config["PC_INSTANCE_PATH"]) / "outbox")
    if choice == "smtp":
        return SmtpTransport(config["PC_SMTP_URL"])
    if choice == "sendgrid":
        return SendGridTransport(
            config["PC_SENDGRID_API_KEY"] or "",
            config["PC_SENDGRID_API_HOST"],
            max_attempts=config["PC_SENDGRID_MAX_ATTEMPTS"],
            timeout=config["PC_SENDGRID_TIMEOUT"],
        )
    raise ValueError(f"PC_MAIL_TRANSPORT must be one of {', '.join(TRANSPORTS)}; got {choice!r}")

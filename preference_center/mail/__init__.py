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
    choice = config.get("PC_MAIL_TRANSPORT", "outbox")
    if choice == "outbox":
        return OutboxTransport(Path(config["PC_INSTANCE_PATH"]) / "outbox")
    if choice == "smtp":
        return SmtpTransport(config["PC_SMTP_URL"])
    if choice == "sendgrid":
        return SendGridTransport(
            config.get("PC_SENDGRID_API_KEY") or "",
            config.get("PC_SENDGRID_API_HOST") or "https://api.sendgrid.com",
            max_attempts=int(config.get("PC_SENDGRID_MAX_ATTEMPTS", 5)),
            timeout=float(config.get("PC_SENDGRID_TIMEOUT", 10.0)),
        )
    raise ValueError(f"PC_MAIL_TRANSPORT must be one of {', '.join(TRANSPORTS)}; got {choice!r}")

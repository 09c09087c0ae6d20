"""SMTP transport: standard library smtplib, one connection per batch."""
from __future__ import annotations

import smtplib
import ssl
from urllib.parse import parse_qs, unquote, urlsplit

from .base import Envelope, MessageBatch, SendResult, TransportError, build_message, check_headers


class SmtpTransport:
    """Sends through an SMTP server given as smtp://user:pass@host:port, smtps://... or ?starttls=1."""

    name = "smtp"
    max_batch = 1000

    def __init__(self, url: str, *, timeout: float = 30.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps"):
            raise ValueError(f"SMTP URL must start with smtp:// or smtps://, got {url!r}")
        if not parts.hostname:
            raise ValueError(f"SMTP URL has no host: {url!r}")
        self.host = parts.hostname
        self.implicit_tls = parts.scheme == "smtps"
        self.port = parts.port or (465 if self.implicit_tls else 25)
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        flag = parse_qs(parts.query).get("starttls", ["0"])[-1].lower()
        self.starttls = flag in ("1", "true", "yes")
        self.timeout = timeout

    def _connect(self) -> smtplib.SMTP:
        context = ssl.create_default_context()
        smtp: smtplib.SMTP
        if self.implicit_tls:
            smtp = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context)
        else:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        try:
            smtp.ehlo()
            if self.starttls:
                smtp.starttls(context=context)
                smtp.ehlo()
            if self.username:
                smtp.login(self.username, self.password or "")
        except BaseException:
            smtp.close()
            raise
        return smtp

    def send(self, batch: MessageBatch) -> list[SendResult]:
        """Deliver each envelope as its own message; refusals fail only that envelope."""
        check_headers(batch)
        try:
            smtp = self._connect()
        except (smtplib.SMTPAuthenticationError, smtplib.SMTPNotSupportedError) as exc:
            # Wrong credentials or a server without AUTH/STARTTLS: retrying won't help.
            raise TransportError(f"SMTP login refused: {exc}", retryable=False) from exc
        except (OSError, smtplib.SMTPException) as exc:
            raise TransportError(f"cannot connect to SMTP server {self.host}:{self.port}: {exc}", retryable=True) from exc
        results: list[SendResult] = []
        try:
            for envelope in batch.envelopes:
                if smtp.sock is None:
                    # smtplib closes the connection itself after a 421 reply;
                    # nothing of the remaining envelopes was sent, so retry is safe.
                    raise TransportError(
                        f"SMTP server closed the connection after {len(results)} of {len(batch.envelopes)} messages",
                        retryable=True, sent=results,
                    )
                results.append(self._send_one(smtp, batch, envelope))
        except OSError as exc:  # includes SMTPServerDisconnected
            # The connection died mid-message: the server may have queued the
            # current one, and we promise at most one delivery.
            raise TransportError(
                f"SMTP connection lost after {len(results)} of {len(batch.envelopes)} messages: {exc}",
                retryable=False, ambiguous=True, sent=results,
            ) from exc
        finally:
            try:
                smtp.quit()
            except (OSError, smtplib.SMTPException):
                smtp.close()
        return results

    def _send_one(self, smtp: smtplib.SMTP, batch: MessageBatch, envelope: Envelope) -> SendResult:
        try:
            msg = build_message(batch, envelope)
        except ValueError as exc:
            return SendResult(envelope.to, ok=False, error=str(exc))
        try:
            smtp.send_message(msg)
        except smtplib.SMTPRecipientsRefused as exc:
            code, reply = next(iter(exc.recipients.values()), (None, b""))
            return SendResult(envelope.to, ok=False, error=f"recipient refused: {code} {_text(reply)}")
        except smtplib.SMTPResponseException as exc:  # sender or data refused: this message only
            return SendResult(envelope.to, ok=False, error=f"refused: {exc.smtp_code} {_text(exc.smtp_error)}")
        return SendResult(envelope.to, ok=True, provider_message_id=msg["Message-ID"])


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)

"""Outbox transport: each message becomes a standard .eml file in a local folder."""
from __future__ import annotations

import os
import secrets
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from .base import MessageBatch, SendResult, build_message, check_headers


class OutboxTransport:
    """Writes one .eml per envelope, so development mail can be read and clicked locally."""

    name = "outbox"
    max_batch = 10_000

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def send(self, batch: MessageBatch) -> list[SendResult]:
        """Write every envelope's message; a message that cannot be built fails alone."""
        check_headers(batch)
        self.folder.mkdir(parents=True, exist_ok=True)
        results = []
        for envelope in batch.envelopes:
            try:
                msg = build_message(batch, envelope)
            except ValueError as exc:  # e.g. a line break substituted into a header
                results.append(SendResult(envelope.to, ok=False, error=str(exc)))
                continue
            self._write(msg.as_bytes())
            results.append(SendResult(envelope.to, ok=True, provider_message_id=msg["Message-ID"]))
        return results

    def _write(self, data: bytes) -> Path:
        # The timestamp prefix makes names sort by age; the random part keeps
        # messages written in the same microsecond apart.
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        target = self.folder / f"{stamp}-{secrets.token_hex(4)}.eml"
        # Write under a name the viewer ignores, then rename: a reader never
        # sees half a message.
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target

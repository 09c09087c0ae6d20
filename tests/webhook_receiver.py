"""A webhook receiver for the tests: verifies every request with the reference Standard Webhooks verifier,
de-duplicates by webhook-id, and can be told to fail (5xx) or answer too late (a timeout) on cue."""
from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


class Receiver:
    def __init__(self):
        self.secret: str | None = None
        self.plan: list = []          # what to do with the next requests: "ok", a status, or "slow"
        self.slow_seconds = 1.0
        self.requests: list[str] = []  # webhook-id of every request, duplicates included
        self.kept: dict[str, dict] = {}  # webhook-id -> payload, first copy only
        self.order: list[str] = []     # webhook-ids in the order first received
        self.refused: list[str] = []   # why a request failed verification
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status = receiver.take(body, dict(self.headers.items()))
                if status == "slow":
                    time.sleep(receiver.slow_seconds)
                    status = 200
                try:
                    self.send_response(status)
                    self.end_headers()
                except OSError:
                    pass  # the sender gave up waiting

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads, self.server.block_on_close = True, False  # a slow answer never holds a test
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks"

    def take(self, body: bytes, headers: dict):
        with self.lock:
            try:
                payload = Webhook(self.secret).verify(body, headers)  # the reference verifier
            except (WebhookVerificationError, TypeError, ValueError) as exc:
                self.refused.append(str(exc))
                return 400
            message_id = headers.get("webhook-id") or headers.get("Webhook-Id")
            self.requests.append(message_id)
            action = self.plan.pop(0) if self.plan else "ok"
            if action == "ok" or action == "slow":
                # Processed: a slow answer was still processed, and its retry is a duplicate.
                if message_id not in self.kept:
                    self.kept[message_id] = payload
                    self.order.append(message_id)
                return 200 if action == "ok" else "slow"
            return int(action)

    def payloads(self) -> list[dict]:
        return [self.kept[m] for m in self.order]

    def close(self):
        self.server.shutdown()
        self.server.server_close()

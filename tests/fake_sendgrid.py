"""A local fake of SendGrid's v3 API: POST /v3/mail/send validating payloads like the real API, the
suppression endpoints the sync calls (unsubscribe groups, the global list, bounces, spam reports), and the calls an
erasure makes (the global list, POST /v3/marketing/contacts/search/emails, DELETE /v3/marketing/contacts).

In tests: `with FakeSendGrid() as fake:` and point PC_SENDGRID_API_HOST at `fake.url`. Standalone (to try the
sendgrid transport by hand, or from another process): `python -m tests.fake_sendgrid --port 8025` serves until
interrupted; `GET /_accepted` lists what it accepted (recipients, subject, headers) as JSON.
"""
from __future__ import annotations

import json
import secrets
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

MAX_PERSONALIZATIONS = 1000
MAX_RECIPIENTS = 1000
MAX_CATEGORIES = 10
MAX_CATEGORY_LENGTH = 255
MAX_BODY_BYTES = 20 * 1024 * 1024
CONTACT_SEARCH = "/v3/marketing/contacts/search/emails"
RESERVED_HEADERS = frozenset(
    h.lower()
    for h in (
        "x-sg-id", "x-sg-eid", "received", "dkim-signature", "content-type", "content-transfer-encoding",
        "to", "from", "subject", "reply-to", "cc", "bcc", "date", "message-id", "mime-version",
    )
)


@dataclass
class Accepted:
    """One personalization SendGrid would deliver, with substitutions applied."""

    to: list[str]
    subject: str
    content: dict[str, str]
    headers: dict[str, str]
    custom_args: dict[str, str]
    categories: list[str]
    message_id: str


class Invalid(Exception):
    """A payload SendGrid would refuse with 400."""

    def __init__(self, message: str, field_name: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field_name


@dataclass
class _State:
    lock: threading.Lock = field(default_factory=threading.Lock)
    script: list[tuple] = field(default_factory=list)
    requests: int = 0
    payloads: list[Any] = field(default_factory=list)
    accepted: list[Accepted] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    # Suppression lists: address sets as SendGrid keeps them (adding one held already changes nothing).
    global_unsubscribes: set[str] = field(default_factory=set)
    groups: dict[int, set[str]] = field(default_factory=dict)
    bounces: list[str] = field(default_factory=list)
    spam_reports: list[str] = field(default_factory=list)
    calls: list[tuple[str, str, Any]] = field(default_factory=list)  # (method, path, body) of suppression calls
    # Marketing contacts (address -> id) and the ids deleted (an erasure's calls).
    marketing_contacts: dict[str, str] = field(default_factory=dict)
    deleted_contact_ids: list[str] = field(default_factory=list)


class FakeSendGrid:
    """Run with `with FakeSendGrid() as fake:` and point the client at `fake.url`."""

    def __init__(self, api_key: str | None = None, port: int = 0) -> None:
        self.api_key = api_key  # None: any Bearer token is accepted
        self.port = port  # 0: any free port
        self._state = _State()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- life cycle --------------------------------------------------------
    def __enter__(self) -> FakeSendGrid:
        fake = self

        class Handler(_Handler):
            owner = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._state.stop.set()  # wake up any scripted hang
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    @property
    def url(self) -> str:
        assert self._server is not None, "use FakeSendGrid as a context manager"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # -- scripting and inspection -----------------------------------------
    def script(self, responses: list[tuple]) -> None:
        """Queue responses given before normal handling: (status, headers[, body]) or ("hang", seconds)."""
        with self._state.lock:
            self._state.script.extend(responses)

    @property
    def requests(self) -> int:
        """Every request received, rejected ones included."""
        with self._state.lock:
            return self._state.requests

    @property
    def accepted(self) -> list[Accepted]:
        """Every accepted personalization, in arrival order."""
        with self._state.lock:
            return list(self._state.accepted)

    def seed_lists(self, *, bounces=(), spam_reports=(), unsubscribes=(), groups=None) -> None:
        """What SendGrid holds before we first talk to it."""
        with self._state.lock:
            self._state.bounces.extend(bounces)
            self._state.spam_reports.extend(spam_reports)
            self._state.global_unsubscribes.update(unsubscribes)
            for group, emails in (groups or {}).items():
                self._state.groups.setdefault(int(group), set()).update(emails)

    @property
    def global_unsubscribes(self) -> set[str]:
        with self._state.lock:
            return set(self._state.global_unsubscribes)

    def group(self, group_id: int) -> set[str]:
        with self._state.lock:
            return set(self._state.groups.get(group_id, set()))

    @property
    def suppression_calls(self) -> list[tuple[str, str, Any]]:
        with self._state.lock:
            return list(self._state.calls)

    def add_marketing_contact(self, email: str) -> str:
        """A Marketing contact SendGrid holds for `email` (as a list upload would make); its id."""
        with self._state.lock:
            return self._state.marketing_contacts.setdefault(email.lower(), secrets.token_hex(8))

    @property
    def global_suppressions(self) -> list[str]:
        """The global unsubscribe list, sorted."""
        with self._state.lock:
            return sorted(self._state.global_unsubscribes)

    @property
    def marketing_contacts(self) -> dict[str, str]:
        with self._state.lock:
            return dict(self._state.marketing_contacts)

    @property
    def payloads(self) -> list[Any]:
        """The parsed JSON body of every request that had one."""
        with self._state.lock:
            return list(self._state.payloads)


class _Handler(BaseHTTPRequestHandler):
    owner: FakeSendGrid
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def do_POST(self) -> None:
        state = self.owner._state
        with state.lock:
            state.requests += 1
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length <= MAX_BODY_BYTES else b""
        try:
            payload = json.loads(raw)
        except ValueError:
            payload = None
        else:
            with state.lock:
                state.payloads.append(payload)
        while True:
            with state.lock:
                step = state.script.pop(0) if state.script else None
            if step is None:
                break
            if step[0] == "hang":
                # Interruptible, so closing the fake does not wait for the hang.
                state.stop.wait(step[1])
                continue
            status, headers, *body = step
            self._answer(status, headers, body[0] if body else _default_body(status))
            return
        if self.path.split("?")[0].startswith("/v3/asm/"):
            self._suppressions("POST", payload)
        elif self.path.split("?")[0] == CONTACT_SEARCH:
            if not self._authorized():
                self._error(401, "The provided authorization grant is invalid, expired, or revoked")
            else:
                self._contact_search(payload)
        elif self.path.split("?")[0] != "/v3/mail/send":
            self._error(404, "not found")
        elif length > MAX_BODY_BYTES:
            self._error(413, "payload too large")
        elif not self._authorized():
            self._error(401, "The provided authorization grant is invalid, expired, or revoked")
        elif payload is None:
            self._error(400, "Bad Request")
        else:
            try:
                accepted = validate(payload)
            except Invalid as exc:
                self._error(400, exc.message, exc.field)
                return
            message_id = secrets.token_urlsafe(16)
            with state.lock:
                state.accepted.extend(
                    Accepted(message_id=message_id, **a) for a in accepted  # type: ignore[arg-type]
                )
            self._answer(202, {"X-Message-Id": message_id}, None)

    def do_GET(self) -> None:
        if self.path == "/_accepted":  # standalone use: what was accepted, as JSON
            self._answer(200, {}, [{"to": a.to, "subject": a.subject, "headers": a.headers,
                                    "message_id": a.message_id} for a in self.owner.accepted])
            return
        state = self.owner._state
        with state.lock:
            state.requests += 1
            step = state.script.pop(0) if state.script else None
        if step is not None and step[0] != "hang":
            status, headers, *body = step
            self._answer(status, headers, body[0] if body else _default_body(status))
            return
        self._suppressions("GET", None)

    def _suppressions(self, method: str, payload: Any) -> None:
        """The suppression endpoints: POST asm group / global additions, GET the lists (limit, offset)."""
        state = self.owner._state
        path, _, query = self.path.partition("?")
        params = dict(part.split("=", 1) for part in query.split("&") if "=" in part)
        if not self._authorized():
            self._error(401, "The provided authorization grant is invalid, expired, or revoked")
            return
        with state.lock:
            state.calls.append((method, path, payload))
        parts = path.strip("/").split("/")
        if method == "POST":
            emails = payload.get("recipient_emails") if isinstance(payload, dict) else None
            if not isinstance(emails, list) or not emails or not all(_is_email(e) for e in emails):
                self._error(400, "recipient_emails must be a non-empty array of email addresses",
                            "recipient_emails")
                return
            with state.lock:
                if parts == ["v3", "asm", "suppressions", "global"]:
                    state.global_unsubscribes.update(emails)
                elif len(parts) == 5 and parts[:3] == ["v3", "asm", "groups"] and parts[4] == "suppressions" \
                        and parts[3].isdigit():
                    state.groups.setdefault(int(parts[3]), set()).update(emails)
                else:
                    self._error(404, "not found")
                    return
            self._answer(201, {}, {"recipient_emails": emails})
            return
        limit, offset = int(params.get("limit", 500)), int(params.get("offset", 0))
        with state.lock:
            if path == "/v3/suppression/bounces":
                rows = [{"created": 1700000000, "email": e, "reason": "550 no such user", "status": "5.1.1"}
                        for e in state.bounces]
            elif path == "/v3/suppression/spam_reports":
                rows = [{"created": 1700000000, "email": e, "ip": "192.0.2.1"} for e in state.spam_reports]
            elif path == "/v3/suppression/unsubscribes":
                rows = [{"created": 1700000000, "email": e} for e in sorted(state.global_unsubscribes)]
            elif len(parts) == 5 and parts[:3] == ["v3", "asm", "groups"] and parts[3].isdigit():
                self._answer(200, {}, sorted(state.groups.get(int(parts[3]), set())))
                return
            else:
                rows = None
        if rows is None:
            self._error(404, "not found")
        else:
            self._answer(200, {}, rows[offset:offset + limit])

    def _contact_search(self, payload: Any) -> None:
        state = self.owner._state
        emails = payload.get("emails") if isinstance(payload, dict) else None
        if not isinstance(emails, list) or not emails:
            self._error(400, "emails must be a non-empty list", "emails")
            return
        with state.lock:
            found = {e: {"contact": {"id": state.marketing_contacts[e.lower()], "email": e}}
                     for e in emails if e.lower() in state.marketing_contacts}
        if not found:
            self._error(404, "No contacts found")
            return
        self._answer(200, {}, {"result": found})

    def do_DELETE(self) -> None:
        state = self.owner._state
        with state.lock:
            state.requests += 1
        path, _, query = self.path.partition("?")
        if path != "/v3/marketing/contacts":
            self._error(404, "not found")
            return
        if not self._authorized():
            self._error(401, "The provided authorization grant is invalid, expired, or revoked")
            return
        ids = [i for part in query.split("&") if part.startswith("ids=") for i in unquote(part[4:]).split(",") if i]
        if not ids:
            self._error(400, "ids are required", "ids")
            return
        with state.lock:
            state.deleted_contact_ids.extend(ids)
            for email, contact_id in list(state.marketing_contacts.items()):
                if contact_id in ids:
                    del state.marketing_contacts[email]
        self._answer(202, {}, {"job_id": secrets.token_hex(8)})

    def _authorized(self) -> bool:
        scheme, _, token = (self.headers.get("Authorization") or "").partition(" ")
        if scheme != "Bearer" or not token.strip():
            return False
        return self.owner.api_key is None or token == self.owner.api_key

    def _error(self, status: int, message: str, field_name: str | None = None) -> None:
        self._answer(status, {}, {"errors": [{"message": message, "field": field_name, "help": None}]})

    def _answer(self, status: int, headers: dict[str, str], body: Any) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        # One request per connection, as urllib does; also keeps an unread
        # oversized body from being taken for the next request.
        self.close_connection = True
        try:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            if data:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:  # the client gave up (e.g. after its timeout)
            pass


def _default_body(status: int) -> dict | None:
    if status < 400:
        return None
    return {"errors": [{"message": f"scripted {status}", "field": None, "help": None}]}


def validate(payload: Any) -> list[dict]:
    """Check a mail/send payload as SendGrid does; return the personalizations it would deliver."""
    if not isinstance(payload, dict):
        raise Invalid("Bad Request")
    personalizations = payload.get("personalizations")
    if not isinstance(personalizations, list) or not personalizations:
        raise Invalid(
            "The personalizations field is required and must have at least one personalization.",
            "personalizations",
        )
    if len(personalizations) > MAX_PERSONALIZATIONS:
        raise Invalid("You may not have more than 1000 personalizations per request.", "personalizations")
    sender = payload.get("from")
    if not isinstance(sender, dict) or not _is_email(sender.get("email")):
        raise Invalid("The from object must be provided for every email send. It is an object that requires "
                      "an email parameter, but may also contain a name parameter.", "from.email")
    top_subject = payload.get("subject")
    content = payload.get("content")
    if not isinstance(content, list) or not content:
        raise Invalid("Unless a valid template_id is provided, the content parameter is required.", "content")
    types = []
    for i, item in enumerate(content):
        if not isinstance(item, dict) or not isinstance(item.get("type"), str) or not item["type"]:
            raise Invalid("The content type must be a string at least one character in length.", f"content.{i}.type")
        if not isinstance(item.get("value"), str) or not item["value"]:
            raise Invalid("The content value must be a string at least one character in length.", f"content.{i}.value")
        types.append(item["type"])
    if "text/html" in types and "text/plain" in types and types.index("text/plain") > types.index("text/html"):
        raise Invalid("If present, text/plain content must be first, followed by text/html, followed by "
                      "any other content.", "content")
    top_headers = _string_map(payload.get("headers"), "headers")
    _check_headers(top_headers, "headers")
    top_args = _string_map(payload.get("custom_args"), "custom_args")
    categories = payload.get("categories", [])
    if not isinstance(categories, list):
        raise Invalid("Categories must be an array of strings.", "categories")
    if len(categories) > MAX_CATEGORIES:
        raise Invalid("Too many categories. You may not have more than 10 categories per email.", "categories")
    for i, category in enumerate(categories):
        if not isinstance(category, str) or len(category) > MAX_CATEGORY_LENGTH:
            raise Invalid("A category must be a string of at most 255 characters.", f"categories.{i}")

    recipients = 0
    accepted = []
    for i, p in enumerate(personalizations):
        where = f"personalizations.{i}"
        if not isinstance(p, dict):
            raise Invalid("Each personalization must be an object.", where)
        to = p.get("to")
        if not isinstance(to, list) or not to or not all(isinstance(t, dict) and _is_email(t.get("email")) for t in to):
            raise Invalid("The to array is required for all personalization objects, and must have at least one "
                          "email object with a valid email address.", f"{where}.to")
        emails = [t["email"].lower() for t in to]
        for key in ("cc", "bcc"):
            extra = p.get(key, [])
            if not isinstance(extra, list) or not all(isinstance(t, dict) and _is_email(t.get("email")) for t in extra):
                raise Invalid(f"The {key} array must contain email objects with valid addresses.", f"{where}.{key}")
            emails += [t["email"].lower() for t in extra]
        if len(set(emails)) != len(emails):
            raise Invalid("Each email address in the personalization block should be unique between to, cc, "
                          "and bcc. We found the first duplicate instance of an email address.", where)
        recipients += len(emails)
        if recipients > MAX_RECIPIENTS:
            raise Invalid("The total number of recipients must be no more than 1000.", "personalizations")
        subject = p.get("subject", top_subject)
        if not isinstance(subject, str) or not subject:
            raise Invalid("The subject is required. You can get around this requirement if you use a template "
                          "with a subject defined or if every personalization has a subject defined.", "subject")
        subs = _string_map(p.get("substitutions"), f"{where}.substitutions")
        headers = _string_map(p.get("headers"), f"{where}.headers")
        _check_headers(headers, f"{where}.headers")
        args = _string_map(p.get("custom_args"), f"{where}.custom_args")
        accepted.append({
            "to": [t["email"] for t in to],
            "subject": _apply(subject, subs),
            "content": {item["type"]: _apply(item["value"], subs) for item in content},
            "headers": {**top_headers, **headers},
            "custom_args": {**top_args, **args},
            "categories": list(categories),
        })
    return accepted


def _is_email(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    local, at, domain = value.rpartition("@")
    return bool(at and local and "." in domain and not any(c.isspace() for c in value))


def _string_map(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Invalid("Invalid type. Expected: object.", where)
    for key, item in value.items():
        if not isinstance(item, str):
            raise Invalid(f"Invalid type. Expected: string, given: {type(item).__name__}.", f"{where}.{key}")
    return value


def _check_headers(headers: dict[str, str], where: str) -> None:
    for name in headers:
        if name.lower() in RESERVED_HEADERS:
            raise Invalid(f"The following header is reserved and cannot be set: {name}", where)


def _apply(text: str, substitutions: dict[str, str]) -> str:
    for key, value in substitutions.items():
        text = text.replace(key, value)
    return text


def main(argv: list[str] | None = None) -> None:
    """Serve the fake on 127.0.0.1 until interrupted (SIGINT or SIGTERM)."""
    import argparse
    import signal

    parser = argparse.ArgumentParser(prog="python -m tests.fake_sendgrid", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="0: any free port (printed)")
    parser.add_argument("--api-key", default=None, help="accept only this key (default: any Bearer token)")
    options = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with FakeSendGrid(options.api_key, options.port) as fake:
        print(fake.url, flush=True)
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()

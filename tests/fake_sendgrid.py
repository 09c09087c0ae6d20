"""A local fake of SendGrid's v3 POST /v3/mail/send that validates payloads like the real API, and of the calls an
erasure makes: POST /v3/asm/suppressions/global, POST /v3/marketing/contacts/search/emails, DELETE
/v3/marketing/contacts."""
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
PRIVACY_PATHS = ("/v3/asm/suppressions/global", "/v3/marketing/contacts/search/emails")
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
    # The privacy endpoints: global suppressions, and Marketing contacts (address -> id) with deletions.
    global_suppressions: list[str] = field(default_factory=list)
    marketing_contacts: dict[str, str] = field(default_factory=dict)
    deleted_contact_ids: list[str] = field(default_factory=list)


class FakeSendGrid:
    """Run with `with FakeSendGrid() as fake:` and point the client at `fake.url`."""

    def __init__(self, api_key: str | None = None) -> None:
        self.api_key = api_key  # None: any Bearer token is accepted
        self._state = _State()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- life cycle --------------------------------------------------------
    def __enter__(self) -> FakeSendGrid:
        fake = self

        class Handler(_Handler):
            owner = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
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

    def add_marketing_contact(self, email: str) -> str:
        """A Marketing contact SendGrid holds for `email` (as a list upload would make); its id."""
        with self._state.lock:
            return self._state.marketing_contacts.setdefault(email.lower(), secrets.token_hex(8))

    @property
    def global_suppressions(self) -> list[str]:
        with self._state.lock:
            return list(self._state.global_suppressions)

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
        if self.path.split("?")[0] in PRIVACY_PATHS:
            if not self._authorized():
                self._error(401, "The provided authorization grant is invalid, expired, or revoked")
            else:
                self._privacy_post(self.path.split("?")[0], payload)
            return
        if self.path.split("?")[0] != "/v3/mail/send":
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

    def _privacy_post(self, path: str, payload: Any) -> None:
        state = self.owner._state
        if path == "/v3/asm/suppressions/global":
            emails = payload.get("recipient_emails") if isinstance(payload, dict) else None
            if not isinstance(emails, list) or not emails or not all(_is_email(e) for e in emails):
                self._error(400, "recipient_emails must be a list of email addresses", "recipient_emails")
                return
            with state.lock:
                state.global_suppressions.extend(e for e in emails if e not in state.global_suppressions)
            self._answer(201, {}, {"recipient_emails": emails})
            return
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

"""Logs an operator can use: one request id per request, JSON lines in production, no addresses or tokens.

- Every request gets an id: the caller's `X-Request-Id` when it is a plain
  token of up to 128 characters, otherwise a new one. It is echoed in the
  response, stamped on every log record of the request, and travels in the
  headers of every task the request enqueues (and of the tasks those enqueue),
  so one id follows a campaign from the API call to the last batch.
- `MaskingFilter` sits on the one root handler and rewrites every record,
  whoever logged it (our code, werkzeug, Celery, gunicorn's error log once
  configured): email addresses, signed link tokens, API tokens, webhook
  secrets, SendGrid keys and bearer credentials never reach the output.
- `RoutineFilter` demotes what the scheduler and worker do every second
  (opt-out settling, the tick, the webhook sweep) to DEBUG.
- `configure` installs that handler: JSON lines (`PC_LOG_FORMAT=json`, the
  default in production) or readable text, at `PC_LOG_LEVEL`.
"""
from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import re
import time
import traceback
import uuid

from flask import Flask, g, has_request_context, request

HEADER = "X-Request-Id"
TASK_HEADER = "pc_request_id"
_ACCEPTED_ID = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")
# The request id outside a request: set while a task runs.
_task_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("pc_request_id", default=None)

# Every task the scheduler runs every few seconds or minutes (a test compares this with the beat schedule).
ROUTINE_TASKS = ("preference_center.tasks.settle_opt_outs", "preference_center.tasks.tick",
                 "preference_center.tasks.sweep_webhook_events", "preference_center.tasks.deliver_webhooks",
                 "preference_center.tasks.push_to_sendgrid")
ROUTINE_LOGGERS = ("celery.app.trace", "celery.worker.strategy", "celery.beat", "celery.worker.request")

_MASKS = [
    # Signed links: the token is the path segment after /p/, /u/ or /confirm/ (and a data page's step).
    (re.compile(r"(/(?:p|u|confirm|address|portability)/)[^/\s?#\"'<>]+"), r"\1***"),
    # itsdangerous tokens elsewhere: payload.timestamp.signature.
    (re.compile(r"\.?\b[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{6}\.[A-Za-z0-9_-]{22,}"), "***token***"),
    (re.compile(r"\bpc_[A-Za-z0-9_-]{16,}"), "pc_***"),
    (re.compile(r"\bwhsec_[A-Za-z0-9+/=_-]{8,}"), "whsec_***"),
    (re.compile(r"\bSG\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+"), "SG.***"),
    (re.compile(r"(?i)\b(bearer\s+)[^\s\"',]+"), r"\1***"),
    (re.compile(r"(?i)\b(authorization:\s*(?:basic\s+)?)(?!bearer\b)[^\s\"',]+"), r"\1***"),
    # Addresses, also URL-encoded (user%40host.tld) in paths and query strings.
    # (No '/', '=' or '?' in the local part here: the path or query before an address stays readable.)
    (re.compile(r"[A-Za-z0-9.!#$%&'*+^_`{|}~-]+(?:@|%40)[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+",
                re.IGNORECASE), "***@***"),
]


def mask(text: str) -> str:
    """`text` with addresses, signed tokens, API tokens, secrets and bearer credentials replaced."""
    for pattern, replacement in _MASKS:
        text = pattern.sub(replacement, text)
    return text


_CONVERTER = re.compile(r"<(?:[^:<>]+:)?([^:<>]+)>")


_LABELS: dict[str, str] = {}  # rule -> label: the app's rules are few and fixed


def route_label() -> str:
    """The request's route rule without converter arguments (`/api/v1/campaigns/<id>/schedule`), never its path."""
    if request.url_rule is None:
        return "(unmatched)"
    rule = request.url_rule.rule
    label = _LABELS.get(rule)
    if label is None:
        label = _LABELS[rule] = _CONVERTER.sub(r"<\1>", rule)
    return label


def current_request_id() -> str | None:
    """The id of the request (or of the task's originating request) being handled, if any."""
    if has_request_context():
        return getattr(g, "request_id", None)
    request_id = _task_request_id.get()
    if request_id is None:
        # Celery's own lines about a task (received, succeeded) are logged around its body, not in it.
        from celery import current_task

        if current_task:  # a proxy: false outside a task
            request_id = request_id_of(current_task.request)
    return request_id


def task_headers() -> dict:
    """Headers that carry the current request id into an enqueued task."""
    request_id = current_request_id()
    return {TASK_HEADER: request_id} if request_id else {}


def run_with_request_id(request_id: str | None, work):
    """Call `work()` with `request_id` as the current id (a task's body)."""
    token = _task_request_id.set(request_id)
    try:
        return work()
    finally:
        _task_request_id.reset(token)


def request_id_of(task_request) -> str | None:
    """The request id a Celery task was sent with (headers end up on the request, or under .headers)."""
    value = getattr(task_request, TASK_HEADER, None)
    if value is None:
        value = (getattr(task_request, "headers", None) or {}).get(TASK_HEADER)
    return value if isinstance(value, str) and _ACCEPTED_ID.match(value) else None


class RequestIdFilter(logging.Filter):
    """Stamp `request_id` on every record (`-` outside requests and tasks)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id() or "-"
        return True


# Set by the record factory of privacy_logging to the message it masked: while `record.msg` is still that very
# object (and there are no arguments), the message needs no second pass.
MASKED_MESSAGE = "_pc_masked_message"
# The ids we make (uuid4 hex) hold nothing any mask matches (no '@', '.', '_', '/', space or '%').
_OWN_ID = re.compile(r"[0-9a-f]{32}")


class MaskingFilter(logging.Filter):
    """Mask addresses and tokens in the message, its arguments and any traceback of every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args or getattr(record, MASKED_MESSAGE, None) is not record.msg:
            try:
                message = record.getMessage()
            except Exception:  # noqa: BLE001 - a bad format string must not lose the record
                message = f"{record.msg!r} {record.args!r}"
            record.msg, record.args = mask(message), None
        request_id = getattr(record, "request_id", None)
        if isinstance(request_id, str) and not _OWN_ID.fullmatch(request_id):
            record.request_id = mask(request_id)  # a caller's own id is as untrusted as any input
        if record.exc_info and not record.exc_text:
            record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        if record.exc_text:
            record.exc_text = mask(record.exc_text)
        if record.stack_info:
            record.stack_info = mask(record.stack_info)
        return True


class RoutineFilter(logging.Filter):
    """What the scheduler runs every few seconds (settling opt-outs, the tick, webhooks, the sync) is DEBUG, not INFO."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.INFO and record.name in ROUTINE_LOGGERS:
            text = record.getMessage()
            if any(name in text for name in ROUTINE_TASKS) or "settle-opt-outs" in text or "due task tick" in text:
                record.levelno, record.levelname = logging.DEBUG, "DEBUG"
                return self.level <= logging.DEBUG
        return True


EXTRA_FIELDS = ("method", "route", "status", "duration_ms", "task")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, and the request's fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
        }
        for name in EXTRA_FIELDS:
            if hasattr(record, name):
                entry[name] = getattr(record, name)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False, default=str)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


def handler_for(config: dict, level: int, stream=None) -> logging.Handler:
    """The one handler: our filters and the configured format."""
    handler = logging.StreamHandler(stream)
    handler.setLevel(level)
    handler.setFormatter(JsonFormatter() if config["PC_LOG_FORMAT"] == "json" else logging.Formatter(TEXT_FORMAT))
    for log_filter in (RoutineFilter(level), RequestIdFilter(), MaskingFilter()):
        handler.addFilter(log_filter)
    return handler


def configure(config: dict, level: str | int | None = None) -> None:
    """Replace the root logger's handlers with ours (processes we start: web, worker, scheduler, CLI)."""
    if not isinstance(level, int):
        level = logging.getLevelName(str(level or config["PC_LOG_LEVEL"]).upper())
        level = level if isinstance(level, int) else logging.INFO
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler_for(config, level))
    root.setLevel(level)
    for name in ("gunicorn.error", "celery", "werkzeug"):
        # Theirs propagate to ours: one format, one set of filters.
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True


requests_log = logging.getLogger("preference_center.requests")


def init_app(app: Flask) -> None:
    """Request ids on every request and, in production, one log line per request."""

    def take_request_id():
        offered = request.headers.get(HEADER, "")
        g.request_id = offered if _ACCEPTED_ID.match(offered) else uuid.uuid4().hex
        g.request_started = time.perf_counter()

    # First of all hooks: a request refused by an earlier hook still gets (and echoes) its id.
    app.before_request_funcs.setdefault(None, []).insert(0, take_request_id)

    @app.after_request
    def echo_request_id(response):
        request_id = getattr(g, "request_id", None)
        if request_id:
            response.headers[HEADER] = request_id
        if app.config["PC_ENV"] == "production" and requests_log.isEnabledFor(logging.INFO):
            took = (time.perf_counter() - g.get("request_started", time.perf_counter())) * 1000
            route = route_label()
            requests_log.info("%s %s %s", request.method, route, response.status_code,
                              extra={"method": request.method, "route": route, "status": response.status_code,
                                     "duration_ms": round(took, 1)})
        return response

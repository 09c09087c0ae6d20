"""Declared API operations: one decorator registers a view, validates what comes in and what goes out.

`@operation(...)` takes the path, the parameter, header and body models and the answers (status -> model) of
one operation. The view it wraps receives validated values only, and whatever it returns is validated through
the declared answer's model before it is sent, so the server cannot answer with a shape or a status the
document does not describe. `openapi.document` builds /api/v1/openapi.json from the same declarations
(`REGISTRY`): the document and the server are one source.

Input is checked in this order: the bearer token (401, in routes), path parameters (404 when a number is out
of range, 422 otherwise), headers (422), then the body: size (413), content type (415), JSON (400), model
(422). Every refusal is `{"error": {"code", "message", "field"}}` and happens before a command runs.
"""
from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from flask import Response, current_app, jsonify, request
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import IntegrityError, OperationalError

from .. import bodies
from ..extensions import db
from . import bp, schemas
from .errors import ApiError

log = logging.getLogger(__name__)
# A write that lost a race (two requests creating one contact: a unique constraint, or PostgreSQL breaking a
# deadlock or a serialization failure) runs again from the top, at most this many more times.
RETRIES = 2
RETRYABLE_SQLSTATES = ("40P01", "40001")
RACE = ("a concurrent request created or changed the same record, and the retries lost too (code conflict): "
        "send the request again")
ERRORS = {
    400: "Malformed body: not UTF-8, not JSON, not an object, or nested deeper than "
         f"{bodies.MAX_DEPTH} levels",
    401: "Missing, unknown or revoked bearer token",
    404: "No such resource (a numeric id out of the 64-bit range is not found either)",
    413: "Body larger than the API limit (PC_API_MAX_BODY_BYTES, 256 KiB by default), chunked or not",
    414: "Request line too long: the HTTP server (gunicorn) refuses request lines over 4,094 bytes with its own "
         "HTML page, before the application sees them (long path or query values)",
    415: "Body not sent as Content-Type: application/json",
    422: "Invalid input: error.field names the field, path parameter or header at fault",
}
PATTERN_MESSAGES = {
    schemas.ONE_LINE: "must be one line of text, without control characters",
    schemas.MULTI_LINE: "must not contain control characters (tabs and line breaks aside)",
    schemas.TOPIC_KEY: "must be 1-64 of a-z, 0-9, '_', '.', '-', starting with a letter or digit",
    schemas.LOCALE: "must look like 'en' or 'es-MX'",
    schemas.IDEMPOTENCY_KEY: "must be 1-200 visible ASCII characters",
}


@dataclass(frozen=True)
class Answer:
    """One successful answer: its description and its model (or the media type of a non-JSON answer)."""

    description: str
    model: type[BaseModel] | None = None
    media: str = "application/json"
    links: dict = field(default_factory=dict)


@dataclass
class Operation:
    operation_id: str
    method: str
    path: str
    summary: str
    tag: str
    answers: dict[int, Answer]
    params: type[schemas.Input] | None = None
    headers: type[schemas.Input] | None = None
    query: type[schemas.Input] | None = None
    body: type[schemas.Input] | None = None
    body_required: bool = True
    public: bool = False
    conflict: str | None = None
    not_found: str | None = None
    forbidden: str | None = None
    # A 422 from the command layer on an operation without a body or text parameter (stored state refuses it).
    unprocessable: str | None = None
    description: str | None = None

    @property
    def errors(self) -> dict[int, str]:
        """The error statuses this operation can answer, with why."""
        found = {}
        if self.body is not None:
            found |= {400: ERRORS[400], 413: ERRORS[413], 415: ERRORS[415], 422: ERRORS[422]}
        if not self.public:
            found[401] = ERRORS[401]
        if self.params is not None:
            found[404] = self.not_found or ERRORS[404]
            if any(f.annotation is str for f in self.params.model_fields.values()):
                found[422] = ERRORS[422]
        elif self.not_found:
            found[404] = self.not_found
        if self.forbidden:
            found[403] = self.forbidden
        if self.unprocessable:
            found[422] = self.unprocessable
        if self.headers is not None or self.query is not None:
            found[422] = ERRORS[422]
        if self.params is not None or self.query is not None:
            found[414] = ERRORS[414]
        if self.conflict or self.writes:
            why = "; or ".join(filter(None, (self.conflict, RACE if self.writes else None)))
            found[409] = why[0].upper() + why[1:]
        return dict(sorted(found.items()))

    @property
    def writes(self) -> bool:
        return self.method != "get"

    @property
    def rule(self) -> str:
        """The Flask rule: `{name}` becomes `<name>`, or a bounded `<int(...):name>` for integers."""
        rule = self.path
        for name, info in (self.params.model_fields.items() if self.params else ()):
            converter = ""
            if info.annotation is not str:
                low = next(m.ge for m in info.metadata if hasattr(m, "ge"))
                high = next(m.le for m in info.metadata if hasattr(m, "le"))
                converter = f"int(min={low}, max={high}):"
            rule = rule.replace("{" + name + "}", f"<{converter}{name}>")
        return rule


REGISTRY: list[Operation] = []


def operation(method: str, path: str, *, summary: str, tag: str, answers: dict[int, Answer], **options):
    """Register the decorated view as one API operation (see the module docstring)."""
    def decorate(view: Callable):
        op = Operation(operation_id=view.__name__, method=method.lower(), path=path, summary=summary, tag=tag,
                       answers=answers, description=inspect.cleandoc(view.__doc__ or "") or None, **options)

        @functools.wraps(view)
        def endpoint(**view_args):
            kwargs: dict = {}
            if op.params is not None:
                kwargs.update(dict(_validated(op.params, view_args)))
            if op.headers is not None:
                given = {alias: request.headers[alias] for alias in _aliases(op.headers) if alias in request.headers}
                kwargs["headers"] = _validated(op.headers, given)
            if op.query is not None:
                kwargs["query"] = _validated(op.query, _query_args())
            if op.body is not None:
                kwargs["body"] = _validated(op.body, _read_body(op))
            for attempt in range(RETRIES + 1 if op.writes else 1):
                try:
                    return _answer(op, view(**kwargs))
                except (IntegrityError, OperationalError) as exc:
                    if not op.writes or not _lost_a_race(exc):
                        raise
                    # The transaction is gone whole (nothing was committed): the view starts again from the top.
                    db.session.rollback()
                    log.warning("%s lost a race (attempt %d): %s", op.operation_id, attempt + 1,
                                str(exc.orig).splitlines()[0])
            raise ApiError(409, "conflict", "a concurrent request changed the same record; send the request again")

        bp.add_url_rule(op.rule, endpoint=op.operation_id, view_func=endpoint, methods=[op.method.upper()])
        REGISTRY.append(op)
        return view

    return decorate


def public_endpoints() -> set[str]:
    return {f"{bp.name}.{op.operation_id}" for op in REGISTRY if op.public}


def _lost_a_race(exc: Exception) -> bool:
    if isinstance(exc, IntegrityError):
        return True
    return getattr(getattr(exc, "orig", None), "sqlstate", None) in RETRYABLE_SQLSTATES


def _read_body(op: Operation) -> dict:
    limit = current_app.config["PC_API_MAX_BODY_BYTES"]
    raw = bodies.read_bytes(limit)
    if not raw and not op.body_required:
        return {}
    if not request.is_json:
        raise bodies.BodyError(415, "unsupported_media_type", "send a JSON body with Content-Type: application/json")
    data = bodies.parse(raw)
    if not isinstance(data, dict):
        raise bodies.BodyError(400, "malformed_json", "the request body must be a JSON object")
    return data


def _query_args() -> dict:
    """The query string as one value per name (a name given twice is refused: which one would count?)."""
    for name, values in request.args.lists():
        if len(values) > 1:
            raise ApiError(422, "validation_error", f"{name} is given more than once", name)
    return request.args.to_dict()


def _validated(model: type[BaseModel], data: dict) -> BaseModel:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise refusal(exc) from None


def refusal(exc: ValidationError) -> ApiError:
    """The first problem pydantic found, as a 422 naming the top-level field (the message has the full path)."""
    problem = exc.errors(include_url=False, include_input=False)[0]
    loc = problem["loc"]
    where = bodies.dotted(loc)
    if problem["type"] == "extra_forbidden":
        message = f"unknown field {where!r}"
    elif problem["type"] == "missing":
        message = f"{where} is required"
    elif problem["type"] == "string_pattern_mismatch":
        pattern = (problem.get("ctx") or {}).get("pattern")
        message = f"{where} {PATTERN_MESSAGES.get(pattern, 'has the wrong form')}"
    else:
        message = f"{where}: {problem['msg']}"
    return ApiError(422, "validation_error", message, bodies.field_of(loc))


def _answer(op: Operation, result):
    if isinstance(result, Response):
        return result
    payload, status = result if isinstance(result, tuple) else (result, min(op.answers))
    answer = op.answers.get(status)
    if answer is None:
        raise RuntimeError(f"{op.operation_id} answered {status}, which it does not declare")
    if answer.model is not None:
        sent = answer.model.model_validate(payload).model_dump(mode="json", exclude_unset=True)
        dropped = _undeclared(payload, sent)
        if dropped:
            # Production drops them (the document is the promise); anywhere else the omission must be fixed.
            if current_app.config["PC_ENV"] != "production":
                raise RuntimeError(f"{op.operation_id} answered {', '.join(dropped)}, which {answer.model.__name__} "
                                   "does not declare: add it to api/schemas.py")
            log.warning("%s: dropped undeclared answer fields %s", op.operation_id, dropped)
        payload = sent
    return jsonify(payload), status


def _undeclared(given, sent, path: str = "") -> list[str]:
    """Keys in `given` (the view's answer) that the model left out of `sent`."""
    if isinstance(given, dict) and isinstance(sent, dict):
        found = [f"{path}{key}" for key in given if key not in sent]
        for key in given:
            if key in sent:
                found += _undeclared(given[key], sent[key], f"{path}{key}.")
        return found
    if isinstance(given, list) and isinstance(sent, list):
        return [key for old, new in zip(given, sent, strict=False) for key in _undeclared(old, new, path)]
    return []


def _aliases(model: type[BaseModel]) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items()]

"""One reader for JSON request bodies, used by every JSON door (the API, the SendGrid webhook; forms later).

Guarantees, the same on SQLite and PostgreSQL and whatever the client sends:

- size: a declared Content-Length over the limit is refused before anything is read; a body without one
  (chunked) is read at most `limit + 1` bytes, so a larger one is refused without being held in memory (413);
- encoding: the bytes must be UTF-8 (400); text must be JSON (400), without NaN/Infinity, nested at most
  `MAX_DEPTH` deep (400, checked before parsing: the parser never recurses further), with no key twice in one
  object (422);
- values: no string (key or value) holds NUL, which PostgreSQL refuses in text, or a lone surrogate such as
  "\\ud800", which is no character at all (422); every number fits a 64-bit integer or a finite double (422).

Errors are `BodyError`s carrying status, code, message and the field they concern (the top-level key, so a
door can name it; the message gives the full path).
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

from flask import request
from werkzeug.exceptions import RequestEntityTooLarge

MAX_DEPTH = 32
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_CHUNK = 64 * 1024
# Strings (skipped whole, escapes included) and the brackets outside them: what nesting depth is made of.
_STRUCTURE = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass
class BodyError(Exception):
    """A request body the reader refuses; nothing has been done with it."""

    status: int
    code: str
    message: str
    field: str | None = None

    def __str__(self) -> str:
        return self.message


def too_large(limit: int) -> BodyError:
    return BodyError(413, "payload_too_large", f"request body is larger than {limit} bytes")


def read_bytes(limit: int) -> bytes:
    """The raw body of the current request, at most `limit` bytes (else 413), chunked or not."""
    if request.content_length is not None and request.content_length > limit:
        raise too_large(limit)
    parts, size = [], 0
    try:
        stream = request.stream
        while size <= limit:
            part = stream.read(min(_CHUNK, limit + 1 - size))
            if not part:
                break
            parts.append(part)
            size += len(part)
    except RequestEntityTooLarge:
        # The app-wide MAX_CONTENT_LENGTH is lower than `limit` and the stream enforced it.
        raise too_large(limit) from None
    if size > limit:
        raise too_large(limit)
    return b"".join(parts)


def read_json(limit: int) -> object:
    """The current request's body as JSON (any JSON value), or a BodyError."""
    return parse(read_bytes(limit))


def read_object(limit: int) -> dict:
    """The current request's body as a JSON object; 415 unless it says it is JSON."""
    if not request.is_json:
        raise BodyError(415, "unsupported_media_type", "send a JSON body with Content-Type: application/json")
    data = read_json(limit)
    if not isinstance(data, dict):
        raise BodyError(400, "malformed_json", "the request body must be a JSON object")
    return data


def parse(raw: bytes, *, max_depth: int = MAX_DEPTH) -> object:
    """Decode, check and parse a JSON document under the module's rules."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BodyError(400, "malformed_json", "the request body is not UTF-8") from None
    depth = 0
    for match in _STRUCTURE.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > max_depth:
                raise BodyError(400, "too_deep", f"the JSON document is nested deeper than {max_depth} levels")
        elif token in "]}":
            depth -= 1
    try:
        value = json.loads(text, parse_int=_int, parse_float=_float, parse_constant=_constant,
                           object_pairs_hook=_object)
    except _Duplicate as duplicate:
        raise BodyError(422, "validation_error", f"key {duplicate.key!r} appears twice in one object",
                        duplicate.key) from None
    except (ValueError, RecursionError):
        raise BodyError(400, "malformed_json", "the request body is not valid JSON") from None
    check(value)
    return value


def check(value: object) -> None:
    """Refuse NUL, lone surrogates and out-of-range numbers anywhere in a parsed document (422)."""
    stack: list[tuple[object, tuple]] = [(value, ())]
    while stack:
        item, path = stack.pop()
        if isinstance(item, dict):
            for key, child in item.items():
                _string(key, path + (key,))
                stack.append((child, path + (key,)))
        elif isinstance(item, list):
            stack.extend((child, path + (index,)) for index, child in enumerate(item))
        elif isinstance(item, str):
            _string(item, path)
        elif isinstance(item, _OutOfRange):
            raise _refusal(path, f"the number {item.text[:30]}{'…' if len(item.text) > 30 else ''} is out of "
                                 "range (integers are 64-bit, numbers finite)")


def field_of(path: tuple) -> str | None:
    """The top-level key a path starts with: the request field a door names."""
    return printable(str(path[0])) if path else None


def dotted(path: tuple) -> str:
    """A path as `a.b.0.c`, for messages."""
    return ".".join(printable(str(part)) for part in path) or "body"


def printable(text: str) -> str:
    """`text` itself, or with its control characters and surrogates escaped, so an error can quote it."""
    if text.isprintable() and not _SURROGATE.search(text):
        return text
    return text.encode("unicode_escape").decode("ascii")


# -- parser hooks ---------------------------------------------------------------------


class _OutOfRange:
    """A number no 64-bit integer or finite double holds; refused by `check` with its place."""

    def __init__(self, text: str):
        self.text = text


class _Duplicate(ValueError):
    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def _int(text: str):
    # Never hand int() thousands of digits: Python refuses them with a ValueError (a 400 for the wrong reason).
    if len(text.lstrip("-")) > 19:
        return _OutOfRange(text)
    value = int(text)
    return value if INT64_MIN <= value <= INT64_MAX else _OutOfRange(text)


def _float(text: str):
    value = float(text)
    return value if math.isfinite(value) else _OutOfRange(text)


def _constant(text: str):
    raise ValueError(f"{text} is not JSON")


def _object(pairs: list[tuple[str, object]]) -> dict:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen = set()
        for key, _ in pairs:
            if key in seen:
                raise _Duplicate(key)
            seen.add(key)
    return result


def _string(text: str, path: tuple) -> None:
    if "\x00" in text:
        raise _refusal(path, "text must not contain NUL characters")
    if _SURROGATE.search(text):
        raise _refusal(path, "text must not contain lone surrogates (\\ud800-\\udfff escapes that are no character)")


def _refusal(path: tuple, message: str) -> BodyError:
    return BodyError(422, "validation_error", f"{dotted(path)}: {message}", field_of(path))

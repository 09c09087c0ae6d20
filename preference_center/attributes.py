"""Custom contact attributes: free keys a marketing team adds to a contact (plan, city, score...).

Guarantees, whichever door writes them (API, CSV import, staff form): a key matches `KEY`
(`[a-z][a-z0-9_]{0,39}`); a contact has at most `MAX_KEYS` of them; a value is a string (one line, at
most `VALUE_MAX` characters, no control characters), a finite number or a boolean; the whole object
serialises to at most `TOTAL_MAX` bytes of JSON. Anything else is a `ValidationError` naming the key,
and nothing is stored. An empty object is kept as `{}`; erasure blanks it (`None`).

Templates see them as `contact.attributes.<key>`; an attribute a contact lacks is undefined, so
`default(...)` applies. Segments filter on them through `matches`, one SQL expression that gives the
same answer on SQLite and PostgreSQL: the value written as text (numbers as written, booleans as
`true` / `false`).
"""
from __future__ import annotations

import json
import math
import re

from sqlalchemy import Text
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ColumnElement, FunctionElement, and_, literal, or_

from . import characters
from .errors import ValidationError

KEY = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
MAX_KEYS = 50
VALUE_MAX = 500
TOTAL_MAX = 8_000
NUMBER_MAX = 2**53  # beyond it a JSON number is no longer exact in every client
FIELD = "attributes"
# Segment filter operators.
EQUALS, NOT_EQUALS, IS_SET = "equals", "not_equals", "is_set"
OPERATORS = (EQUALS, NOT_EQUALS, IS_SET)
FILTERS_MAX = 10


def _problem(key: str, message: str) -> ValidationError:
    return ValidationError(f"attribute {key!r}: {message}", FIELD)


def check_key(key: object) -> str:
    """A valid attribute key, or ValidationError."""
    if not isinstance(key, str) or not KEY.match(key):
        shown = repr(key)[:50]
        raise ValidationError(f"attribute key {shown} must start with a-z and hold only a-z, 0-9 and '_' "
                              f"(at most 40 characters)", FIELD)
    return key


def check_value(key: str, value: object) -> str | int | float | bool:
    """A valid attribute value (integral floats become integers), or ValidationError."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise _problem(key, "a number must be finite")
        if abs(value) > NUMBER_MAX:
            raise _problem(key, f"a number must be between -{NUMBER_MAX} and {NUMBER_MAX}")
        return int(value) if isinstance(value, float) and value.is_integer() else value
    if isinstance(value, str):
        problem = characters.refused(value)
        if problem:
            raise _problem(key, f"a text must be one line; it holds {problem}")
        if len(value) > VALUE_MAX:
            raise _problem(key, f"a text is at most {VALUE_MAX} characters")
        return value
    raise _problem(key, "a value must be a text, a number or true/false")


def clean(attributes: object) -> dict:
    """A contact's attributes, checked; raises ValidationError (field "attributes") naming the problem."""
    if attributes is None:
        return {}
    if not isinstance(attributes, dict):
        raise ValidationError("attributes must be an object of key: value pairs", FIELD)
    if len(attributes) > MAX_KEYS:
        raise ValidationError(f"a contact has at most {MAX_KEYS} attributes ({len(attributes)} given)", FIELD)
    cleaned = {check_key(key): check_value(key, value) for key, value in attributes.items()}
    if len(json.dumps(cleaned, ensure_ascii=False).encode()) > TOTAL_MAX:
        raise ValidationError(f"the attributes take more than {TOTAL_MAX:,} bytes together", FIELD)
    return cleaned


def of(contact) -> dict:
    """A contact's (model or row) attributes, {} when it has none."""
    return dict(getattr(contact, "attributes", None) or {})


def as_text(value) -> str:
    """How an attribute is written out: as a template prints it, but booleans as true/false (filters, CSV)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# -- editing as text (staff form, CSV cells) ------------------------------------------

def parse_value(text: str) -> str | int | float | bool:
    """A value typed by staff or read from a CSV cell: true/false and numbers become themselves, the rest
    stays text ("\"true\"" in double quotes keeps a text that looks like something else)."""
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return text[1:-1]
    if text in ("true", "false"):
        return text == "true"
    if re.fullmatch(r"-?(0|[1-9][0-9]{0,15})", text):
        return int(text)
    if re.fullmatch(r"-?(0|[1-9][0-9]{0,15})\.[0-9]{1,15}", text):
        return float(text)
    return text


def parse_lines(text: str) -> dict:
    """The staff editor's `key = value` lines (blank lines ignored) as attributes; ValidationError names
    the line that is not of that shape. The result still goes through `clean`."""
    parsed: dict = {}
    for number, line in enumerate((text or "").splitlines(), start=1):
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ValidationError(f"line {number}: write each attribute as key = value", FIELD)
        key = check_key(key.strip())
        if key in parsed:
            raise ValidationError(f"line {number}: attribute {key!r} is given twice", FIELD)
        parsed[key] = parse_value(value)
    return parsed


def to_lines(attributes: dict | None) -> str:
    """The editor's text for stored attributes (texts that would read back as something else are quoted)."""
    lines = []
    for key, value in (attributes or {}).items():
        shown = as_text(value)
        if isinstance(value, str) and (parse_value(value) != value or value != value.strip()):
            shown = f'"{value}"'
        lines.append(f"{key} = {shown}")
    return "\n".join(lines)


# -- segments -------------------------------------------------------------------------

def check_filters(filters: object) -> list[dict]:
    """A segment's or campaign's attribute conditions: [{"key", "op", "value"}]; ValidationError
    (field "audience") when one is not of that shape."""
    if not isinstance(filters, list):
        raise ValidationError("audience.attributes must be a list of {key, op, value}", "audience")
    if len(filters) > FILTERS_MAX:
        raise ValidationError(f"audience.attributes has more than {FILTERS_MAX} conditions", "audience")
    checked = []
    for condition in filters:
        if not isinstance(condition, dict) or not set(condition) <= {"key", "op", "value"}:
            raise ValidationError("each of audience.attributes is an object with key, op and value", "audience")
        try:
            key = check_key(condition.get("key"))
        except ValidationError as exc:
            raise ValidationError(f"audience.attributes: {exc}", "audience") from None
        op = condition.get("op")
        if op not in OPERATORS:
            raise ValidationError(f"audience.attributes: op must be one of {', '.join(OPERATORS)}", "audience")
        if op == IS_SET:
            checked.append({"key": key, "op": op})
            continue
        value = condition.get("value")
        try:
            value = check_value(key, value)
        except ValidationError as exc:
            raise ValidationError(f"audience.{exc}", "audience") from None
        checked.append({"key": key, "op": op, "value": as_text(value)})
    return checked


_CONDITION = re.compile(r"^\s*([^\s=!]+)\s*(?:(!=|=)(.*)|\s+is\s+set\s*)$")


def parse_conditions(text: str) -> list[dict]:
    """The staff form's condition lines (`plan = gold`, `plan != gold`, `plan is set`) as filters for
    `check_filters`; ValidationError (field "attribute_filters") names a line of another shape."""
    conditions = []
    for number, line in enumerate((text or "").splitlines(), start=1):
        if not line.strip():
            continue
        found = _CONDITION.match(line)
        if found is None:
            raise ValidationError(f"line {number}: write key = value, key != value or key is set",
                                  "attribute_filters")
        key, op, value = found.groups()
        if op is None:
            conditions.append({"key": key, "op": IS_SET})
        else:
            conditions.append({"key": key, "op": EQUALS if op == "=" else NOT_EQUALS, "value": parse_value(value)})
    return conditions


def conditions_text(conditions: list[dict] | None) -> str:
    """Stored conditions as the staff form's lines."""
    signs = {EQUALS: "=", NOT_EQUALS: "!="}
    return "\n".join(f"{c['key']} is set" if c["op"] == IS_SET else f"{c['key']} {signs[c['op']]} {c['value']}"
                     for c in conditions or [])


class _AttributeText(FunctionElement):
    """One attribute of a JSON column written as text (NULL when absent), alike on SQLite and PostgreSQL."""

    type = Text()
    inherit_cache = True
    name = "attribute_text"


@compiles(_AttributeText)
def _attribute_text_default(element, compiler, **kw):
    column, key = list(element.clauses)
    # PostgreSQL's ->> writes a string as itself, a number as written and a boolean as true/false.
    return f"({compiler.process(column, **kw)} ->> {compiler.process(key, **kw)})"


@compiles(_AttributeText, "sqlite")
def _attribute_text_sqlite(element, compiler, **kw):
    column, key = (compiler.process(c, **kw) for c in element.clauses)
    # json_extract gives booleans as 1/0: json_type tells them apart.
    path = f"'$.' || {key}"
    return (f"(CASE json_type({column}, {path}) WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' "
            f"ELSE CAST(json_extract({column}, {path}) AS TEXT) END)")


def matches(column, condition: dict) -> ColumnElement:
    """The SQL condition for one checked attribute filter on a contact's attributes column."""
    value = _AttributeText(column, literal(condition["key"]))
    if condition["op"] == IS_SET:
        return value.is_not(None)
    if condition["op"] == EQUALS:
        return and_(value.is_not(None), value == condition["value"])
    # An attribute the contact lacks does not equal the value either.
    return or_(value.is_(None), value != condition["value"])

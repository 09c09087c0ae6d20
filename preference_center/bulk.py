"""Many rows into one table in the caller's transaction: COPY on PostgreSQL, executemany elsewhere.

A multi-row INSERT of thousands of rows makes SQLAlchemy build, and psycopg
parse, a statement with tens of thousands of placeholders every time; COPY
streams the rows instead. Values go through each column's own type (a JSON
column's dict is serialised, a UTC datetime is checked), so the stored rows
are the ones the INSERT would store.
"""
from __future__ import annotations

import datetime as dt
import json

from sqlalchemy import JSON, Table, insert

from .extensions import db
from .sqlutil import driver_error

COPY_FROM = 50  # fewer rows than this go in one INSERT


def insert_rows(table: Table, rows: list[dict], same: dict | None = None) -> None:
    """Insert `rows` (dicts with the same keys) into `table` in the session's transaction; `same` holds
    values every row shares (converted once, not per row)."""
    if not rows:
        return
    same = same or {}
    connection = db.session.connection()
    if connection.dialect.name != "postgresql" or len(rows) < COPY_FROM:
        db.session.execute(insert(table), [{**row, **same} for row in rows] if same else rows)
        return
    names = list(rows[0])
    processors = [_processor(table.c[name], connection.dialect) for name in names]
    shared = [p(value) if p else value
              for p, value in ((_processor(table.c[name], connection.dialect), same[name]) for name in same)]
    quoted = ", ".join(connection.dialect.identifier_preparer.quote(n) for n in [*names, *same])
    statement = f"COPY {table.name} ({quoted}) FROM STDIN"
    dbapi = connection.dialect.loaded_dbapi
    cursor = connection.connection.driver_connection.cursor()
    try:
        # The foreign-key checks of the copied rows (one query per row and key) run on their cached plans: a
        # caller that plans its own statements afresh (the import's `plan_cache_mode = force_custom_plan`)
        # would otherwise have every check planned again, a third of an import's time.
        planning = cursor.execute("SELECT current_setting('plan_cache_mode'), "
                                  "set_config('plan_cache_mode', 'auto', true)").fetchone()[0]
        lines = _text_lines(rows, names, processors, shared)
        with cursor.copy(statement) as copy:
            if lines is not None:
                for chunk in range(0, len(lines), _LINES_PER_WRITE):
                    copy.write("".join(lines[chunk:chunk + _LINES_PER_WRITE]))
            else:
                for row in rows:
                    copy.write_row([p(row[n]) if p else row[n] for n, p in zip(names, processors, strict=True)]
                                   + shared)
        if planning != "auto":
            cursor.execute("SELECT set_config('plan_cache_mode', %s, true)", (planning,))
    except dbapi.Error as exc:
        raise driver_error(exc, connection.dialect, connection, connection.connection.dbapi_connection, cursor,
                           statement) from exc
    finally:
        cursor.close()


class _NotPlain(Exception):
    """A value `_text` does not write (psycopg's own formatter does)."""


# COPY's text format: these four characters are written as escapes, NULL as \N (PostgreSQL's COPY documentation).
_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"})
_LINES_PER_WRITE = 1000


def _text(value) -> str:
    """One value in COPY's text format, for the plain types rows carry; `_NotPlain` for any other."""
    kind = type(value)
    if kind is int:
        return str(value)
    if value is None:
        return "\\N"
    if kind is str:
        return value.translate(_ESCAPES) if ("\\" in value or "\n" in value or "\r" in value or "\t" in value) \
            else value
    if kind is bool:
        return "t" if value else "f"
    if kind is dt.datetime and value.tzinfo is not None:
        return value.isoformat()
    raise _NotPlain


def _text_lines(rows: list[dict], names: list[str], processors: list, shared: list) -> list[str] | None:
    """The rows as lines of COPY's text format, the shared values formatted once (a campaign's 5,000 delivery
    rows share ten of their fourteen values); None when a value is not of a plain type: psycopg formats those
    row by row instead (slower, the same stored values)."""
    try:
        tail = "".join("\t" + _text(value) for value in shared) + "\n"
        if any(processors):
            return ["\t".join([_text(p(row[n]) if p else row[n]) for n, p in zip(names, processors, strict=True)])
                    + tail for row in rows]
        if len(names) == 3:  # the usual shape of a campaign's rows: (id, contact, event)
            first, second, third = names
            return [f"{_text(row[first])}\t{_text(row[second])}\t{_text(row[third])}{tail}" for row in rows]
        return ["\t".join([_text(row[n]) for n in names]) + tail for row in rows]
    except _NotPlain:
        return None


def _processor(column, dialect):
    """How `column` turns a Python value into what COPY writes (None: as it is)."""
    if isinstance(column.type, JSON):  # as the INSERT stores it: None is JSON null unless none_as_null
        return (lambda v: None if v is None else json.dumps(v)) if column.type.none_as_null else json.dumps
    return column.type.dialect_impl(dialect).bind_processor(dialect)

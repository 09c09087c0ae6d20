"""Small SQL helpers shared by the hot paths."""
from __future__ import annotations

from collections.abc import Iterable, Iterator

from sqlalchemy import Text, any_, bindparam, cast
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import DBAPIError

from .extensions import db

# Values per IN list: under SQLite's old limit of 999 bind parameters.
IN_CHUNK = 900


def chunked(values: Iterable, size: int = IN_CHUNK) -> Iterator[list]:
    """`values` without duplicates, in order, in lists of at most `size` (one query each)."""
    unique = list(dict.fromkeys(values))
    for start in range(0, len(unique), size):
        yield unique[start:start + size]


def parts_for_one_of(values: Iterable) -> Iterator[list]:
    """`values` without duplicates in lists for `one_of`: one list on PostgreSQL (one array parameter
    whatever its length), lists of at most IN_CHUNK elsewhere."""
    unique = list(dict.fromkeys(values))
    size = max(1, len(unique)) if db.engine.dialect.name == "postgresql" else IN_CHUNK
    for start in range(0, len(unique), size):
        yield unique[start:start + size]


def one_of(column, values):
    """`column IN values` as one array parameter on PostgreSQL, an IN list elsewhere.

    A batch of 1,000 ids as 1,000 bind parameters costs the driver and the
    planner far more than `= ANY(%s)` with one array; SQLite has no arrays.
    Whole numbers (ids) go as the array's text, cast by PostgreSQL: the
    driver's list dumper checks every element for quoting (5 ms of CPU for a
    batch of 5,000 ids, against 1 ms to join them).
    """
    values = list(values)
    if db.engine.dialect.name == "postgresql":
        if values and all(type(value) is int for value in values):
            text = "{" + ",".join(map(str, values)) + "}"
            return column == any_(cast(bindparam(None, text, type_=Text), ARRAY(column.type)))
        return column == any_(bindparam(None, values, type_=ARRAY(column.type)))
    return column.in_(values)


def driver_error(exc: Exception, dialect, owner, dbapi_connection, cursor, statement: str,
                 parameters=None) -> DBAPIError:
    """A driver's error raised past SQLAlchemy's own handling (work done on the driver's cursor), told as
    SQLAlchemy would tell itself: a lost connection invalidated through `owner` (the SQLAlchemy or pooled
    connection it came from), so the caller's rollback and retry get a fresh one, and a DBAPIError to raise."""
    lost = dialect.is_disconnect(exc, dbapi_connection, cursor)
    if lost:
        owner.invalidate(exc)
    return DBAPIError.instance(statement, parameters, exc, dialect.loaded_dbapi.Error, connection_invalidated=lost,
                               dialect=dialect)

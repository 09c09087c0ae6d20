"""Small SQL helpers shared by the hot paths."""
from __future__ import annotations

from collections.abc import Iterable, Iterator

from sqlalchemy import any_, bindparam
from sqlalchemy.dialects.postgresql import ARRAY

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
    """
    values = list(values)
    if db.engine.dialect.name == "postgresql":
        return column == any_(bindparam(None, values, type_=ARRAY(column.type)))
    return column.in_(values)

"""Small SQL helpers shared by the hot paths."""
from __future__ import annotations

from sqlalchemy import any_, bindparam
from sqlalchemy.dialects.postgresql import ARRAY

from .extensions import db


def one_of(column, values):
    """`column IN values` as one array parameter on PostgreSQL, an IN list elsewhere.

    A batch of 1,000 ids as 1,000 bind parameters costs the driver and the
    planner far more than `= ANY(%s)` with one array; SQLite has no arrays.
    """
    values = list(values)
    if db.engine.dialect.name == "postgresql":
        return column == any_(bindparam(None, values, type_=ARRAY(column.type)))
    return column.in_(values)

"""The real worker app, plus a statement counter for the benchmark: `celery -A bench.worker_entry worker`."""
from __future__ import annotations

import os

from celery.signals import worker_shutdown
from sqlalchemy import event
from sqlalchemy.engine import Engine

from worker import app  # noqa: F401  (the product's Celery app, built from PC_* settings)

STATEMENTS = {"count": 0}


@event.listens_for(Engine, "before_cursor_execute")
def _count(conn, cursor, statement, parameters, context, executemany):
    # One cursor execute is one round trip (executemany is pipelined by psycopg 3).
    STATEMENTS["count"] += 1


@worker_shutdown.connect
def _write(**_):
    path = os.environ.get("PC_BENCH_STATS")
    if path:
        with open(path, "w") as out:
            out.write(str(STATEMENTS["count"]))

"""The real worker app, plus a statement counter and timer for the benchmark: `celery -A bench.worker_entry worker`."""
from __future__ import annotations

import json
import os
import re
import time
from collections import defaultdict

from celery.signals import worker_shutdown
from sqlalchemy import event
from sqlalchemy.engine import Engine

from worker import app  # noqa: F401  (the product's Celery app, built from PC_* settings)

STATEMENTS = {"count": 0}
BY_KIND: dict[str, list] = defaultdict(lambda: [0, 0.0])


def _kind(statement: str) -> str:
    words = re.sub(r"\s+", " ", statement).strip().split(" ")
    head = " ".join(words[:3]).lower()
    return head + (" returning" if " RETURNING " in statement.upper() else "")


@event.listens_for(Engine, "before_cursor_execute")
def _count(conn, cursor, statement, parameters, context, executemany):
    # One cursor execute is one round trip (executemany is pipelined by psycopg 3).
    STATEMENTS["count"] += 1
    conn.info["pc_bench_started"] = time.perf_counter()


@event.listens_for(Engine, "after_cursor_execute")
def _time(conn, cursor, statement, parameters, context, executemany):
    entry = BY_KIND[_kind(statement)]
    entry[0] += 1
    entry[1] += time.perf_counter() - conn.info.pop("pc_bench_started", time.perf_counter())


@worker_shutdown.connect
def _write(**_):
    path = os.environ.get("PC_BENCH_STATS")
    if path:
        with open(path, "w") as out:
            json.dump({"count": STATEMENTS["count"], "by_kind": BY_KIND}, out)

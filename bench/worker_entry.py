"""The real worker app, plus a statement counter and timer for the benchmark: `celery -A bench.worker_entry worker`."""
from __future__ import annotations

import gc
import json
import os
import re
import resource
import time
from collections import defaultdict

from celery.signals import worker_ready, worker_shutdown
from sqlalchemy import event
from sqlalchemy.engine import Engine

from worker import app  # noqa: F401  (the product's Celery app, built from PC_* settings)

STATEMENTS = {"count": 0}
COLLECTIONS = {"count": [0, 0, 0], "seconds": [0.0, 0.0, 0.0], "started": 0.0}


def _collected(phase: str, info: dict) -> None:
    """Time in the garbage collector, per generation (every collection of the worker's process)."""
    if phase == "start":
        COLLECTIONS["started"] = time.perf_counter()
    else:
        COLLECTIONS["count"][info["generation"]] += 1
        COLLECTIONS["seconds"][info["generation"]] += time.perf_counter() - COLLECTIONS["started"]


gc.callbacks.append(_collected)
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


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


READY = {"cpu_seconds": 0.0}


@worker_ready.connect
def _ready(**_):
    READY["cpu_seconds"] = _cpu_seconds()  # start-up, not the campaign's


@worker_shutdown.connect
def _write(**_):
    path = os.environ.get("PC_BENCH_STATS")
    if path:
        with open(path, "w") as out:
            json.dump({"count": STATEMENTS["count"], "by_kind": BY_KIND, "gc": COLLECTIONS,
                       "cpu_seconds": _cpu_seconds(), "startup_cpu_seconds": READY["cpu_seconds"]}, out)

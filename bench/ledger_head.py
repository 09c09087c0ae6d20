"""How many events per second the single chained ledger head takes, with 1, 4 and 16 concurrent writers.

    .venv/bin/python -m bench.ledger_head --writers 1 4 16 --seconds 10

PostgreSQL only. Each writer is its own process running the product's own
`ledger.append` (take the head row's lock, build and hash the event, insert
it, apply it to the contact's state, move the head, commit) for contacts of
its own, alternating a grant and a withdrawal on one topic: one event per
transaction, as a preference-page click or an API call appends it. With
`--batch N` each transaction appends N events with `ledger.append_many`, as
the one-click settler and the import do. Afterwards the chain must verify.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from pathlib import Path

from sqlalchemy import func, select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from preference_center import create_app, ledger  # noqa: E402
from preference_center.extensions import db  # noqa: E402
from preference_center.models import ConsentEvent, Contact, Topic  # noqa: E402
from tests.conftest import ensure_postgres_database as ensure_database  # noqa: E402

from .unsubscribe import seed  # noqa: E402

PER_WRITER = 200  # contacts each writer cycles through


def writer(index: int, seconds: float, batch: int, barrier, results) -> None:
    app = create_app()
    with app.app_context():
        topic = db.session.scalar(select(Topic).where(Topic.key == "news"))
        ids = list(range(index * PER_WRITER + 1, (index + 1) * PER_WRITER + 1))
        people = {c.id: c for c in db.session.scalars(select(Contact).where(Contact.id.in_(ids)))}
        db.session.commit()
        barrier.wait()
        started = time.perf_counter()
        events, n, waits = 0, 0, []
        while time.perf_counter() - started < seconds:
            specs = []
            for _ in range(batch):
                contact = people[ids[n % len(ids)]]
                action = ledger.WITHDRAW if (n // len(ids)) % 2 == 0 else ledger.GRANT
                specs.append(dict(action=action, contact=contact, source="bench", scope=ledger.TOPIC,
                                  topic_id=topic.id, legal_basis="consent", confirmed=True))
                n += 1
            t0 = time.perf_counter()
            if batch == 1:
                ledger.append(**specs[0])
            else:
                ledger.append_many(specs)
            db.session.commit()
            waits.append(time.perf_counter() - t0)
            events += batch
        elapsed = time.perf_counter() - started
        waits.sort()
        results.put((events, elapsed, waits[len(waits) // 2], waits[int(len(waits) * 0.99)]))


def run(writers: int, seconds: float, batch: int) -> tuple[float, float, float]:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(writers + 1)
    results = ctx.Queue()
    procs = [ctx.Process(target=writer, args=(i, seconds, batch, barrier, results)) for i in range(writers)]
    for p in procs:
        p.start()
    barrier.wait()
    started = time.perf_counter()
    got = [results.get() for _ in procs]
    wall = time.perf_counter() - started
    for p in procs:
        p.join()
    events = sum(g[0] for g in got)
    return events / wall, max(g[2] for g in got), max(g[3] for g in got)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--writers", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--database", default="postgresql+psycopg://postgres@127.0.0.1:5432/pc_bench_ledger")
    args = parser.parse_args()
    ensure_database(args.database)
    instance = Path("/tmp/pc-bench-ledger")
    instance.mkdir(exist_ok=True)
    os.environ.update({"PC_ENV": "testing", "PC_DATABASE_URL": args.database, "PC_INSTANCE_PATH": str(instance),
                       "PC_SECRET_KEYS": "bench-secret-key-0123456789", "PC_SUPPRESSION_KEY": "bench-suppression-key",
                       "PC_BROKER_URL": "redis://127.0.0.1:6379/8"})
    app = create_app()
    with app.app_context():
        seed(max(args.writers) * PER_WRITER)
        before = db.session.scalar(select(func.count(ConsentEvent.id)))
    rates = {}
    for n in args.writers:
        rate, p50, p99 = run(n, args.seconds, args.batch)
        rates[n] = rate
        print(f"{n:3d} writer(s), {args.batch} event(s) per transaction: {rate:,.0f} events/s "
              f"(transaction p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, slowest writer)", flush=True)
    with app.app_context():
        appended = db.session.scalar(select(func.count(ConsentEvent.id))) - before
        verified = ledger.verify()
    print(f"{appended:,} events appended; chain verifies: {verified.ok}")
    assert verified.ok
    top = max(args.writers)
    print(f"ratio: {top} writers reach {rates[top] / rates[min(args.writers)]:.2f} x one writer's events/s")


if __name__ == "__main__":
    main()

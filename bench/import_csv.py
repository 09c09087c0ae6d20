"""CSV import throughput: rows per second and statements per 1,000 rows.

    .venv/bin/python -m bench.import_csv --rows 100000

Writes a CSV of N new contacts (email, name, relationship) into a fresh
PostgreSQL database with a consent topic, then runs the real import path
(store, configure with a confirmed opt-in, preview, run) in this process, as
the worker would. Afterwards every row must be a contact with a confirmed
subscription, the ledger must hold one relationship and one grant event per
row, and the chain must verify.

Then the import floor (`bench.floor_import`, which imports nothing of the
project: COPY of contacts, subscriptions and the hash-chained ledger events)
loads the same file into the emptied tables; the last line is the ratio of
the product's end-to-end time (upload to done) to the floor's. The peak
resident memory of the import (VmHWM from upload to done) is printed too:
compare two sizes to see that it does not grow with the file.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from sqlalchemy import event, func, select, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from preference_center import create_app, imports, ledger  # noqa: E402
from preference_center.extensions import db  # noqa: E402
from preference_center.models import ConsentEvent, Contact, Subscription, Topic  # noqa: E402
from tests.conftest import ensure_postgres_database as ensure_database  # noqa: E402

from . import floor_import  # noqa: E402


def _reset_peak_memory() -> None:
    """Start VmHWM again from the current resident size (Linux): the peak is then the import's, not the set-up's."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _peak_memory_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--database", default="postgresql+psycopg://postgres@127.0.0.1:5432/pc_bench_import")
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/14")
    args = parser.parse_args()
    ensure_database(args.database)
    instance = Path("/tmp/pc-bench-import")
    instance.mkdir(exist_ok=True)
    os.environ.update({"PC_ENV": "testing", "PC_DATABASE_URL": args.database, "PC_INSTANCE_PATH": str(instance),
                       "PC_SECRET_KEYS": "bench-secret-key-0123456789", "PC_SUPPRESSION_KEY": "bench-suppression-key",
                       "PC_BROKER_URL": args.broker})
    app = create_app()
    with app.app_context():
        db.drop_all()
        db.create_all()
        ledger.ensure_head()
        db.session.add(Topic(key="news", name="News", kind="marketing", legal_basis="consent",
                             default_relationships=[], description=""))
        db.session.commit()
        path = instance / "rows.csv"
        with open(path, "w") as out:
            out.write("email,name,relationship\n")
            for i in range(args.rows):
                out.write(f"person{i}@bench.example.com,Person {i},{'customer' if i % 4 == 0 else 'prospect'}\n")
        topic_id = db.session.scalar(select(Topic.id).where(Topic.key == "news"))
        _reset_peak_memory()
        end_to_end = time.perf_counter()
        with open(path, "rb") as upload:
            job = imports.store(upload, "bench.csv", created_by="bench")
        imports.configure(job, imports.Settings(
            mapping={"email": 0, "name": 1, "relationship": 2}, legal_basis="consent",
            source_text="benchmark sign-up sheet", topic_key="news", consent_collected=True, confirmed_opt_in=True))
        started = time.perf_counter()
        imports.preview(job)
        previewed = time.perf_counter() - started
        imports.start(job)
        db.session.commit()
        statements = {"count": 0}

        kinds: dict[str, list] = {}

        def count(conn, cursor, statement, *_):
            statements["count"] += 1
            conn.info["pc_bench_started"] = time.perf_counter()

        def timed(conn, cursor, statement, *_):
            kind = " ".join(statement.split()[:4])[:60]
            entry = kinds.setdefault(kind, [0, 0.0])
            entry[0] += 1
            entry[1] += time.perf_counter() - conn.info.pop("pc_bench_started", time.perf_counter())

        event.listen(db.engine, "before_cursor_execute", count)
        event.listen(db.engine, "after_cursor_execute", timed)
        started = time.perf_counter()
        job = imports.run(job.id)
        took = time.perf_counter() - started
        end_to_end = time.perf_counter() - end_to_end
        peak = _peak_memory_mib()
        event.remove(db.engine, "before_cursor_execute", count)
        event.remove(db.engine, "after_cursor_execute", timed)
        contacts = db.session.scalar(select(func.count()).select_from(Contact))
        subscribed = db.session.scalar(select(func.count()).select_from(Subscription)
                                       .where(Subscription.state == "subscribed"))
        events = db.session.scalar(select(func.count()).select_from(ConsentEvent))
        verified = ledger.verify()
        status = job.status
        # Empty the tables the floor fills, then run it on the same file.
        db.session.execute(text("TRUNCATE subscriptions, consent_events, contacts RESTART IDENTITY CASCADE"))
        db.session.execute(text("UPDATE ledger_head SET last_id = 0, last_hash = :g"), {"g": ledger.GENESIS})
        db.session.commit()
    started = time.perf_counter()
    floor_rows = floor_import.run(args.database, str(path), topic_id, "bench-suppression-key")
    floor = time.perf_counter() - started
    print(f"\nimport of {args.rows:,} rows: {status}; preview {previewed:.1f} s; run {took:.1f} s = "
          f"{args.rows / took:,.0f} rows/s ({took / args.rows * 1000:.2f} ms per row)")
    print(f"database statements: {statements['count']:,} = {statements['count'] / (args.rows / 1000):.1f} per 1,000 rows "
          "(an executemany counts once)")
    if os.environ.get("PC_BENCH_VERBOSE"):
        for kind, (n, seconds) in sorted(kinds.items(), key=lambda kv: -kv[1][1])[:8]:
            print(f"  {seconds:7.2f} s in {n:5d} x {kind}")
    print(f"checks: {contacts:,} contacts, {subscribed:,} confirmed subscriptions, {events:,} ledger events "
          f"(expected {2 * args.rows:,}), chain verifies: {verified.ok}")
    print(f"end to end (upload, preview, run): {end_to_end:.1f} s = {args.rows / end_to_end:,.0f} rows/s")
    print(f"peak memory of the importing process (VmHWM, upload to done): {peak:,.0f} MiB")
    print(f"import floor (COPY, chain hashed in one process, nothing of the project): {floor_rows:,} rows in "
          f"{floor:.2f} s = {floor_rows / floor:,.0f} rows/s")
    assert status == "done" and contacts == subscribed == args.rows and events == 2 * args.rows and verified.ok
    print(f"ratio to the import floor: {floor / end_to_end:.2f}")


if __name__ == "__main__":
    main()

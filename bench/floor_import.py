"""The physical floor of a CSV import, importing nothing of the project.

    python -m bench.floor_import --database postgresql://postgres@127.0.0.1:5432/pc_bench_import --csv rows.csv

Reads the CSV (email, name, relationship) streaming, in chunks of 10,000 rows:
per row a contact (email hash by HMAC), a `relationship` event and a
confirmed `grant` event, each with its personal-data digest and chained by
SHA-256 over canonical JSON onto the previous event, in one process; the
chunk goes in with COPY (contacts, ledger events, subscriptions), the head
row is moved and the chunk committed. No validation, no duplicate check, no
audit: the least work that leaves the same rows. The tables must be empty.
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import hashlib
import hmac
import json
import secrets
import time

import psycopg

CHUNK = 10_000


def _canonical(value) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def run(database: str, path: str, topic_id: int, suppression_key: str) -> int:
    conninfo = database.replace("postgresql+psycopg://", "postgresql://")
    key = suppression_key.encode()
    rows_done = 0
    with psycopg.connect(conninfo) as conn, open(path, newline="") as f:
        reader = csv.reader(f)
        next(reader)
        cur = conn.cursor()
        while True:
            chunk = [row for _, row in zip(range(CHUNK), reader, strict=False)]
            if not chunk:
                break
            now = dt.datetime.now(dt.UTC)
            stamp = now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            first_contact = cur.execute("SELECT nextval('contacts_id_seq')").fetchone()[0]
            cur.execute("SELECT setval('contacts_id_seq', %s)", (first_contact + len(chunk) - 1,))
            last_id, prev = cur.execute(
                "UPDATE ledger_head SET last_id = last_id + %s WHERE id = 1 RETURNING last_id, last_hash",
                (2 * len(chunk),)).fetchone()
            event_id = last_id - 2 * len(chunk)
            contacts, events, subs = [], [], []
            for offset, (email, name, relationship) in enumerate(chunk):
                contact_id = first_contact + offset
                digest = hmac.new(key, email.lower().encode(), hashlib.sha256).hexdigest()
                ids = []
                for action, topic, basis, confirmed in (("relationship", None, None, False),
                                                        ("grant", topic_id, "consent", True)):
                    event_id += 1
                    salt = secrets.token_hex(16)
                    pii = hashlib.sha256(salt.encode() + _canonical([None, None, {}])).hexdigest()
                    detail = {"relationship": relationship} if topic is None else {"import_job": 1}
                    body = [event_id, prev, contact_id, topic, "topic" if topic else "contact", action, basis,
                            "import", None, confirmed, detail, stamp, pii]
                    digest_hex = hashlib.sha256(_canonical(body)).hexdigest()
                    events.append((event_id, contact_id, topic, body[4], action, basis, "import", confirmed,
                                   json.dumps(detail), json.dumps({"salt": salt}), pii, False, now, prev,
                                   digest_hex))
                    prev = digest_hex
                    ids.append(event_id)
                contacts.append((contact_id, email, digest, name, relationship, "active", ids[0], 1, 0, now, now,
                                 now))
                subs.append((contact_id, topic_id, "subscribed", ids[1], now))
            with cur.copy("COPY contacts (id, email, email_hash, name, relationship, status, relationship_event_id, "
                          "token_version, soft_bounces, created_at, updated_at, last_interaction_at) FROM STDIN") as c:
                for row in contacts:
                    c.write_row(row)
            with cur.copy("COPY consent_events (id, contact_id, topic_id, scope, action, legal_basis, source, "
                          "confirmed, detail, personal, pii_digest, redacted, occurred_at, prev_hash, hash) "
                          "FROM STDIN") as c:
                for row in events:
                    c.write_row(row)
            with cur.copy("COPY subscriptions (contact_id, topic_id, state, event_id, updated_at) FROM STDIN") as c:
                for row in subs:
                    c.write_row(row)
            cur.execute("UPDATE ledger_head SET last_hash = %s WHERE id = 1", (prev,))
            conn.commit()
            rows_done += len(chunk)
    return rows_done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", default="postgresql://postgres@127.0.0.1:5432/pc_bench_import")
    parser.add_argument("--csv", required=True)
    parser.add_argument("--topic", type=int, default=1)
    parser.add_argument("--suppression-key", default="bench-suppression-key")
    args = parser.parse_args()
    started = time.perf_counter()
    n = run(args.database, args.csv, args.topic, args.suppression_key)
    took = time.perf_counter() - started
    print(f"import floor: {n:,} rows in {took:.2f}s = {n / took:,.0f} rows/s")


if __name__ == "__main__":
    main()

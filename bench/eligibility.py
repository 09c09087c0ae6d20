"""Bulk eligibility (POST /api/v1/eligibility) in addresses per second, against the audience query.

    .venv/bin/python -m bench.eligibility --contacts 200000 --database postgresql+psycopg://…/pc_bench

Seeds N contacts in the usual mix (bench/seed.py) into PostgreSQL, then measures
1. the audience query: the whole eligible audience of the topic streamed in
   keyset chunks of 1,000 (rows scanned per second: the floor a set-based
   question reaches);
2. `eligibility.check` on batches of 1,000 random addresses (known and unknown),
   the domain call behind the API;
3. the same through the API (`POST /api/v1/eligibility`, test client: JSON,
   validation, token, answer models);
and checks that both answer exactly as the audience query for every address asked.
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from preference_center import create_app, eligibility, rules, tokens  # noqa: E402
from preference_center.extensions import db  # noqa: E402
from tests.helpers import ensure_postgres_database  # noqa: E402

from .seed import seed  # noqa: E402

KEY = "bench-suppression-key-0123456789"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=200_000)
    parser.add_argument("--batches", type=int, default=20, help="batches of 1,000 addresses per measure")
    parser.add_argument("--database", default="postgresql+psycopg://postgres@127.0.0.1:5432/pc_bench")
    args = parser.parse_args()
    ensure_postgres_database(args.database)
    app = create_app({"PC_ENV": "testing", "SQLALCHEMY_DATABASE_URI": args.database, "PC_SUPPRESSION_KEY": KEY,
                      "PC_INSTANCE_PATH": "/tmp/pc-bench-eligibility", "PC_RATELIMITS_ENABLED": False})
    rng = random.Random(7)
    with app.app_context():
        started = time.perf_counter()
        topic = seed(args.contacts, KEY)
        print(f"seeded {args.contacts:,} contacts in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        audience = {r.email for chunk in rules.audience(topic) for r in chunk}
        took = time.perf_counter() - started
        print(f"audience query: {len(audience):,} eligible of {args.contacts:,} in {took:.2f} s "
              f"= {args.contacts / took:,.0f} contacts scanned/s, {len(audience) / took:,.0f} eligible/s")
        batches = [[f"user{rng.randint(1, int(args.contacts * 1.05))}@bench.example.com" for _ in range(1000)]
                   for _ in range(args.batches)]
        started = time.perf_counter()
        for batch in batches:
            answers = eligibility.check(topic, batch)
            assert all(a.send == (a.email in audience) for a in answers), "eligibility disagrees with audience"
        took = time.perf_counter() - started
        asked = sum(len(b) for b in batches)
        print(f"eligibility.check: {asked:,} addresses in {took:.2f} s = {asked / took:,.0f} addresses/s")
        _, token = tokens.create(f"bench-{time.time_ns()}")
        db.session.commit()
        key = topic.key
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    started = time.perf_counter()
    for batch in batches:
        response = client.post("/api/v1/eligibility", json={"topic": key, "emails": batch}, headers=headers)
        assert response.status_code == 200, response.json
        assert all(r["send"] == (r["email"] in audience) for r in response.json["results"])
    took = time.perf_counter() - started
    print(f"POST /api/v1/eligibility: {asked:,} addresses in {took:.2f} s = {asked / took:,.0f} addresses/s "
          f"({took / len(batches) * 1000:.0f} ms per request of 1,000)")


if __name__ == "__main__":
    main()

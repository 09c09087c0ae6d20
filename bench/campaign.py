"""Campaign throughput, end to end, against the floor.

    .venv/bin/python -m bench.campaign --contacts 1000000 --workers 2

Seeds N contacts (COPY) into PostgreSQL, runs one campaign through real Celery
worker processes on Redis to a local fake SendGrid, checks that every
eligible recipient arrived exactly once and nobody else did, then measures
the floor: one process that reads the same eligible ids and builds and posts
the same payloads to the same fake server with nothing else.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

from sqlalchemy import func, select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from preference_center import campaigns, compose, create_app, rules  # noqa: E402
from preference_center.extensions import db  # noqa: E402
from preference_center.mail import get_transport  # noqa: E402
from preference_center.models import Campaign, Delivery  # noqa: E402
from tests.conftest import ensure_postgres_database as ensure_database  # noqa: E402
from tests.fake_sendgrid import FakeSendGrid  # noqa: E402

from .seed import seed  # noqa: E402


def rss_kb(pid: int, field: str = "VmRSS") -> int:
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--threads", type=int, default=2, help="task threads per worker process")
    parser.add_argument("--database", default="postgresql+psycopg://postgres@127.0.0.1:5432/pc_bench")
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args()

    ensure_database(args.database)
    instance = Path("/tmp/pc-bench")
    instance.mkdir(exist_ok=True)
    with FakeSendGrid() as fake:
        env = {
            "PC_ENV": "testing", "PC_DATABASE_URL": args.database, "PC_BROKER_URL": args.broker,
            "PC_INSTANCE_PATH": str(instance), "PC_SECRET_KEYS": "bench-secret-key-0123456789",
            "PC_SUPPRESSION_KEY": "bench-suppression-key", "PC_BASE_URL": "https://prefs.example.com",
            "PC_MAIL_TRANSPORT": "sendgrid", "PC_SENDGRID_API_KEY": "SG.bench", "PC_SENDGRID_API_HOST": fake.url,
            "PC_BATCH_SIZE": str(args.batch), "PC_TICK_SECONDS": "1", "PC_SENDGRID_TIMEOUT": "60",
        }
        os.environ.update(env)
        app = create_app()
        with app.app_context():
            started = time.perf_counter()
            topic = seed(args.contacts, env["PC_SUPPRESSION_KEY"])
            seeded = time.perf_counter() - started

            started = time.perf_counter()
            eligible: set[str] = set()
            for chunk in rules.audience(topic, chunk=args.batch):
                eligible.update(r.email for r in chunk)
            audience_seconds = time.perf_counter() - started
            print(f"seeded {args.contacts:,} contacts in {seeded:.1f}s; audience query streamed "
                  f"{len(eligible):,} eligible in {audience_seconds:.2f}s", flush=True)

            celery = app.extensions["celery"]
            celery.control.purge()
            workers = []
            for i in range(args.workers):
                stats = instance / f"stats-{i}"
                stats.unlink(missing_ok=True)
                workers.append((subprocess.Popen(
                    [sys.executable, "-m", "celery", "-A", "bench.worker_entry", "worker", "--pool", "threads",
                     "--concurrency", str(args.threads), "--loglevel", "WARNING", "-n", f"bench{i}@%h",
                     "--without-heartbeat", "--without-mingle", "--without-gossip"],
                    cwd=ROOT, env={**os.environ, "PC_BENCH_STATS": str(stats)}), stats))
            time.sleep(4)  # let the workers connect before the clock starts

            campaign = campaigns.create({"name": "bench", "topic": "news", "subject": "Hello {{ contact.name }}",
                                         "html": "<h1>Hello {{ contact.name }}</h1><p>News of the week.</p>",
                                         "text": "Hello {{ contact.name }}\nNews of the week."}, created_by="bench")
            campaigns.schedule(campaign, None)
            db.session.commit()
            campaign_id = campaign.id
            started = time.perf_counter()
            celery.send_task("preference_center.tasks.tick")
            peaks = {w.pid: 0 for w, _ in workers}
            last_tick = time.time()
            while True:
                for w, _ in workers:
                    peaks[w.pid] = max(peaks[w.pid], rss_kb(w.pid))
                db.session.expire_all()
                if db.session.get(Campaign, campaign_id).status == "sent":
                    break
                if time.time() - last_tick > 1:
                    celery.send_task("preference_center.tasks.tick")  # what beat does
                    last_tick = time.time()
                time.sleep(0.1)
            wall = time.perf_counter() - started
            for w, _ in workers:
                peaks[w.pid] = max(peaks[w.pid], rss_kb(w.pid, "VmHWM"))
                w.send_signal(signal.SIGTERM)
            for w, _ in workers:
                w.wait(60)
            statements = sum(int(s.read_text()) for _, s in workers if s.exists())
            report = campaigns.report(db.session.get(Campaign, campaign_id))
            got = [address for a in fake.accepted for address in a.to]
            exact = len(got) == len(set(got)) and set(got) == eligible
            deliveries = db.session.scalar(select(func.count(Delivery.id)).where(Delivery.campaign_id == campaign_id))

        rate = len(eligible) / wall
        print(f"\ncampaign: {len(eligible):,} eligible of {args.contacts:,} sent in {wall:.2f}s "
              f"= {rate:,.0f} recipients/s with {args.workers} workers x {args.threads} threads")
        print(f"report: {report}")
        print(f"correctness: every eligible recipient exactly once, nobody else: {exact} "
              f"({len(got):,} received, {deliveries:,} delivery rows)")
        print("peak RSS per worker: " + ", ".join(f"{kb / 1024:.0f} MiB" for kb in peaks.values()))
        print(f"database statements in the workers: {statements:,} = {statements / (len(eligible) / 1000):.1f} "
              f"per 1,000 recipients")

    # The floor: the same reads, payloads and posts, nothing else.
    with FakeSendGrid() as fake:
        os.environ["PC_SENDGRID_API_HOST"] = fake.url
        app = create_app()
        with app.app_context():
            transport = get_transport(app.config)
            topic = db.session.scalar(select(rules.Topic).where(rules.Topic.key == "news"))
            message = compose.marketing_batch(topic, "Hello {{ contact.name }}",
                                              "<h1>Hello {{ contact.name }}</h1><p>News of the week.</p>",
                                              "Hello {{ contact.name }}\nNews of the week.", 1)
            started = time.perf_counter()
            count = 0
            for chunk in rules.audience(topic, chunk=args.batch):
                people = db.session.execute(
                    select(rules.Contact.id, rules.Contact.email, rules.Contact.name, rules.Contact.token_version)
                    .where(rules.Contact.id.in_([r.contact_id for r in chunk]))).all()
                envelopes = [compose.marketing_envelope(SimpleNamespace(id=p[0], email=p[1], name=p[2],
                                                                        token_version=p[3]), topic, p[0], 1)
                             for p in people]
                transport.send(type(message)(**{**message.__dict__, "envelopes": envelopes}))
                count += len(envelopes)
            floor = time.perf_counter() - started
            assert len(fake.accepted) == count == len(eligible)
    floor_rate = count / floor
    print(f"\nfloor: one process, same reads + payloads + posts: {count:,} in {floor:.2f}s = {floor_rate:,.0f}/s")
    print(f"ratio: {rate / floor_rate:.2f} of the floor")


if __name__ == "__main__":
    main()

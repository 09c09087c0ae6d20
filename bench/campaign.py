"""Campaign throughput, end to end, against the physical floor.

    .venv/bin/python -m bench.campaign --contacts 1000000 --workers 2

Seeds N contacts (COPY) into PostgreSQL, runs one campaign through real Celery
worker processes on Redis to the provider sink (`bench.sink`, its own
process: it appends each raw request body to a file and answers 202), and
runs the physical floor (`bench.floor_campaign`, which imports nothing of the
project) with as many processes as workers, on the same rows and the same
kind of sink, once before the campaign and once after it, each phase after a
CHECKPOINT (none pays for the previous phase's writes): this machine's
speed drifts by a sixth from one minute to the next (the same floor measured
49,600 to 66,200 recipients/s at 1M in one afternoon), and the mean of the
two cancels a steady drift instead of crediting it to one side. After each
clock stops the sink's log is parsed: every eligible recipient exactly once
and nobody else. The last line is the ratio to the floor measured in this
run.
"""
from __future__ import annotations

import argparse
import atexit
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
from sqlalchemy import func, select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from preference_center import campaigns, create_app, rules  # noqa: E402
from preference_center.extensions import db  # noqa: E402
from preference_center.models import Campaign, Delivery  # noqa: E402
from tests.conftest import ensure_postgres_database as ensure_database  # noqa: E402

from . import floor_campaign  # noqa: E402
from .seed import seed  # noqa: E402
from .sink import SinkProcess, recipients  # noqa: E402


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
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--verbose", action="store_true", help="time spent in each kind of statement")
    parser.add_argument("--py-spy", dest="py_spy", help="record each worker with py-spy into DIR (collapsed stacks)")
    args = parser.parse_args()

    ensure_database(args.database)
    instance = Path("/tmp/pc-bench")
    instance.mkdir(exist_ok=True)
    with SinkProcess(str(instance / "sink-campaign.bin")) as sink:
        env = {
            "PC_ENV": "testing", "PC_DATABASE_URL": args.database, "PC_BROKER_URL": args.broker,
            "PC_INSTANCE_PATH": str(instance), "PC_SECRET_KEYS": "bench-secret-key-0123456789",
            "PC_SUPPRESSION_KEY": "bench-suppression-key", "PC_BASE_URL": "https://prefs.example.com",
            "PC_MAIL_TRANSPORT": "sendgrid", "PC_SENDGRID_API_KEY": "SG.bench", "PC_SENDGRID_API_HOST": sink.url,
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

            topic_id = topic.id
            before = _floor(args, instance / "sink-floor-before.bin", topic_id, env, eligible)

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
            # Workers left behind (a failure below, or the run stopped) would take the next run's batches.
            atexit.register(lambda: [w.kill() for w, _ in workers if w.poll() is None])
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
            time.sleep(4)  # let the workers connect before the clock starts
            spies = []
            if args.py_spy:
                Path(args.py_spy).mkdir(parents=True, exist_ok=True)
                spies = [subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(w.pid),
                                           "--format", "raw", "--rate", "200", "--nonblocking",
                                           "-o", f"{args.py_spy}/worker-{i}.txt"], stdout=subprocess.DEVNULL)
                         for i, (w, _) in enumerate(workers)]

            campaign = campaigns.create({"name": "bench", "topic": "news", "subject": "Hello {{ contact.name }}",
                                         "html": "<h1>Hello {{ contact.name }}</h1><p>News of the week.</p>",
                                         "text": "Hello {{ contact.name }}\nNews of the week."}, created_by="bench")
            campaigns.schedule(campaign, None)
            db.session.commit()
            campaign_id = campaign.id
            _checkpoint(args.database)
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
            for spy in spies:
                spy.send_signal(signal.SIGINT)
                spy.wait(60)
            for w, _ in workers:
                peaks[w.pid] = max(peaks[w.pid], rss_kb(w.pid, "VmHWM"))
                w.send_signal(signal.SIGTERM)
            for w, _ in workers:
                w.wait(60)
            stats = [json.loads(s.read_text()) for _, s in workers if s.exists()]
            statements = sum(s["count"] for s in stats)
            by_kind: dict[str, list] = {}
            for s in stats:
                for kind, (n, seconds) in s["by_kind"].items():
                    entry = by_kind.setdefault(kind, [0, 0.0])
                    entry[0] += n
                    entry[1] += seconds
            report = campaigns.report(db.session.get(Campaign, campaign_id))
            deliveries = db.session.scalar(select(func.count(Delivery.id)).where(Delivery.campaign_id == campaign_id))
    got = recipients(sink.log)  # parsed after the clock stopped
    exact = len(got) == len(set(got)) and set(got) == eligible

    rate = len(eligible) / wall
    print(f"\ncampaign: {len(eligible):,} eligible of {args.contacts:,} sent in {wall:.2f}s "
          f"= {rate:,.0f} recipients/s with {args.workers} workers x {args.threads} threads")
    print(f"report: {report}")
    print(f"correctness: every eligible recipient exactly once, nobody else: {exact} "
          f"({len(got):,} received, {deliveries:,} delivery rows)")
    print("peak RSS per worker: " + ", ".join(f"{kb / 1024:.0f} MiB" for kb in peaks.values()))
    print(f"database statements in the workers: {statements:,} = {statements / (len(eligible) / 1000):.1f} "
          f"per 1,000 recipients")
    for i, s in enumerate(stats):
        collections = s.get("gc")
        if collections:
            print(f"worker {i}: {s['cpu_seconds'] - s['startup_cpu_seconds']:.1f} s of CPU once ready "
                  f"({s['startup_cpu_seconds']:.1f} s starting); garbage collector "
                  + ", ".join(f"generation {g}: {n:,} passes, {t:.2f} s"
                              for g, (n, t) in enumerate(zip(collections["count"], collections["seconds"], strict=True))))
    if args.verbose:
        for kind, (n, seconds) in sorted(by_kind.items(), key=lambda kv: -kv[1][1])[:12]:
            print(f"  {seconds:7.2f}s {n:6,} x {kind}")

    after = _floor(args, instance / "sink-floor-after.bin", topic_id, env, eligible)
    floor_rate = (before[0] + after[0]) / 2
    print(f"\nphysical floor ({args.workers} processes, nothing of the project): {before[0]:,.0f}/s before the "
          f"campaign, {after[0]:,.0f}/s after it, mean {floor_rate:,.0f}/s; the floor reached the same recipients "
          f"exactly once: {before[1] and after[1]}")
    print(f"ratio to the physical floor: {rate / floor_rate:.2f} (exactly once: {exact})")


def _checkpoint(database: str) -> None:
    """Dirty pages written out before a measured phase, so that none pays for the previous phase's writes
    (seeding a million contacts leaves hundreds of megabytes for the next checkpoint)."""
    with psycopg.connect(database.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        conn.execute("CHECKPOINT")


def _floor(args, log: Path, topic_id: int, env: dict, eligible: set[str]) -> tuple[float, bool]:
    """The physical floor, same rows, same kind of sink, as many processes as workers: (recipients/s, exactly once)."""
    _checkpoint(args.database)
    with SinkProcess(str(log)) as sink:
        floor_args = floor_campaign.parser().parse_args([
            "--database", args.database, "--sink", sink.url, "--procs", str(args.workers),
            "--topic", str(topic_id), "--secret", env["PC_SECRET_KEYS"], "--base-url", env["PC_BASE_URL"]])
        count, seconds = floor_campaign.measure(floor_args)
    got = recipients(sink.log)
    print(f"physical floor run: {count:,} in {seconds:.2f}s = {count / seconds:,.0f}/s", flush=True)
    return count / seconds, len(got) == len(set(got)) and set(got) == eligible

if __name__ == "__main__":
    main()

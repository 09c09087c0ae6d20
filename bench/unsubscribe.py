"""One-click unsubscribe and the preference page under load, against the floor.

    .venv/bin/python -m bench.unsubscribe --contacts 60000 --seconds 15

gunicorn with the production settings on PostgreSQL, and a Celery worker with
its scheduler settling one-click opt-outs into the ledger as in production;
wrk (Debian package) from outside the process drives RFC 8058 POSTs for
distinct recipients, then GET /p/<token>. Afterwards every answered opt-out
must be in the ledger (and nothing else changed), and the chain must verify.
The floor is a minimal Flask view that inserts one row, on the same gunicorn
settings, measured in the same run; the last line is the ratio of
throughputs and of p99 latencies to the floor's.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import func, select, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from preference_center import create_app, ledger, links  # noqa: E402
from preference_center.extensions import db  # noqa: E402
from preference_center.models import ConsentEvent, Contact, OptOutInbox, Subscription, Topic  # noqa: E402

from .campaign import ensure_database  # noqa: E402

SECRET = "bench-secret-key-0123456789"


def seed(n: int) -> None:
    db.drop_all()
    db.create_all()
    ledger.ensure_head()
    topic = Topic(key="news", name="News", kind="marketing", legal_basis="consent", default_relationships=[],
                  description="")
    db.session.add(topic)
    db.session.commit()
    topic_id = topic.id
    raw = db.session.connection().connection.dbapi_connection
    cur = raw.cursor()
    now = "2026-11-01 00:00:00+00"
    with cur.copy("COPY contacts (id, email, email_hash, name, relationship, status, relationship_event_id, "
                  "token_version, soft_bounces, created_at, updated_at, last_interaction_at) FROM STDIN") as copy:
        for i in range(1, n + 1):
            copy.write_row((i, f"user{i}@bench.example.com", f"{i:064x}", f"User {i}", "prospect", "active",
                            None, 1, 0, now, now, now))
    with cur.copy("COPY subscriptions (contact_id, topic_id, state, event_id, updated_at) FROM STDIN") as copy:
        for i in range(1, n + 1):
            copy.write_row((i, topic_id, "subscribed", 0, now))
    raw.commit()
    db.session.execute(text("SELECT setval('contacts_id_seq', :n)"), {"n": n})
    db.session.execute(text("DROP TABLE IF EXISTS floor_hits"))
    db.session.execute(text("CREATE TABLE floor_hits (id bigserial primary key, token text, body text, "
                            "at timestamptz default now())"))
    db.session.execute(text("ANALYZE"))
    db.session.commit()


def load_arguments(description: str, contacts: int) -> argparse.ArgumentParser:
    """The options every web benchmark takes: population, load, server shape, database."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=contacts)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker")
    parser.add_argument("--database", default="postgresql+psycopg://postgres@127.0.0.1:5432/pc_bench_web")
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--port", type=int, default=0, help="the server's port (default: a free one)")
    return parser


def free_port(port: int = 0) -> int:
    if port:
        return port
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def production_env(database: str, broker: str = "redis://127.0.0.1:6379/14") -> tuple[dict, Path]:
    """PC_* settings of a production deployment on `database`, also put in this process's environment."""
    ensure_database(database)
    instance = Path("/tmp/pc-bench-web")
    instance.mkdir(exist_ok=True)
    env = {**os.environ, "PC_ENV": "production", "PC_DATABASE_URL": database,
           "PC_BROKER_URL": broker, "PC_INSTANCE_PATH": str(instance),
           "PC_SECRET_KEYS": SECRET, "PC_SUPPRESSION_KEY": "bench-suppression-key",
           "PC_BASE_URL": "https://prefs.example.com",
           # One load tool on one address: the per-address page limit would cap it.
           "PC_RATELIMITS_ENABLED": "0"}
    os.environ.update({k: v for k, v in env.items() if k.startswith("PC_")})
    return env, instance


@contextmanager
def seeded(args):
    """A production app on a freshly seeded database: (app, env, instance folder, contacts), in its context."""
    env, instance = production_env(args.database, args.broker)
    app = create_app()
    with app.app_context():
        seed(args.contacts)
        yield app, env, instance, db.session.scalars(select(Contact).order_by(Contact.id)).all()
        db.engine.dispose()


def serve(app_path: str, env: dict, workers: int, threads: int, port: int) -> subprocess.Popen:
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "-w", str(workers), "-k", "gthread", "--threads",
         str(threads), "-b", f"127.0.0.1:{port}", "--log-level", "warning", app_path],
        cwd=ROOT, env=env)
    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
            break
        except Exception:  # noqa: BLE001 - not up yet (the floor app answers 404, which raises too)
            if process.poll() is not None:
                raise SystemExit("gunicorn did not start") from None
            time.sleep(0.2)
    time.sleep(0.5)
    return process


def start_worker(env: dict) -> list[subprocess.Popen]:
    """The production worker and scheduler: `preference-center worker` and `preference-center beat`."""
    cli = str(Path(sys.executable).parent / "preference-center")
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    return [subprocess.Popen([cli, "worker", "--concurrency", "1"], cwd=ROOT, env=env, **quiet),
            subprocess.Popen([cli, "beat"], cwd=ROOT, env=env, **quiet)]


def wait_until_ready(app, seconds: float = 60) -> None:
    """Until the worker answers a ping, and a moment for the scheduler: their start-up is not the load's cost
    (it took a third of a core during the first seconds of the measured window)."""
    started = time.monotonic()
    while not app.extensions["celery"].control.ping(timeout=0.5):
        if time.monotonic() - started > seconds:
            raise SystemExit("the worker did not start")
    time.sleep(2)


def waiting_opt_outs() -> int:
    db.session.rollback()
    return db.session.scalar(select(func.count()).select_from(OptOutInbox))


def load(url: str, paths_file: Path, seconds: int, method: str, connections: int, threads: int) -> dict:
    out = subprocess.run(
        ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "-s", str(ROOT / "bench/wrk_paths.lua"),
         url], capture_output=True, text=True,
        env={**os.environ, "PATHS_FILE": str(paths_file), "METHOD": method, "WRK_THREADS": str(threads)})
    match = re.search(r"RESULT (.*)", out.stdout)
    if not match:
        raise SystemExit(out.stdout + out.stderr)
    return {k: float(v) for k, v in (pair.split("=") for pair in match.group(1).split())}


def main() -> None:
    parser = load_arguments(__doc__, contacts=60000)
    parser.add_argument("--settle-after", action="store_true",
                        help="start the worker only when the load stops, as if it ran on another machine")
    args = parser.parse_args()
    with seeded(args) as (app, env, instance, contacts):
        unsub = instance / "unsubscribe.txt"
        unsub.write_text("".join(f"/u/{links.make(links.UNSUBSCRIBE, c, 1)}\n" for c in contacts))
        prefs = instance / "preferences.txt"
        prefs.write_text("".join(f"/p/{links.make(links.PREFERENCES, c)}\n" for c in contacts[: args.contacts // 2]))
        floor_paths = instance / "floor.txt"
        floor_paths.write_text("".join(f"/u/t{i}\n" for i in range(args.contacts)))
        events_before = db.session.scalar(select(func.count(ConsentEvent.id)))

    port = free_port(args.port)
    subprocess.run([str(Path(sys.executable).parent / "celery"), "-A", "worker", "purge", "-f"], cwd=ROOT, env=env,
                   capture_output=True)
    background = [] if args.settle_after else start_worker(env)
    if background:
        wait_until_ready(app)
    server = serve("wsgi:app", env, args.workers, args.threads, port)
    try:
        one_click = load(f"http://127.0.0.1:{port}", unsub, args.seconds, "POST", args.connections, 2)
        background = background or start_worker(env)
        with app.app_context():
            backlog = waiting_opt_outs()
            started = time.monotonic()
            while waiting_opt_outs() and time.monotonic() - started < 300:
                time.sleep(0.1)
            drained_in = time.monotonic() - started
            left = waiting_opt_outs()
        time.sleep(1)
        pages = load(f"http://127.0.0.1:{port}", prefs, args.seconds, "GET", args.connections, 2)
    finally:
        server.terminate()
        server.wait(30)
        for process in background:
            process.terminate()
            process.wait(30)
    with app.app_context():
        withdrawn = db.session.scalar(select(func.count()).select_from(Subscription).where(Subscription.state == "unsubscribed"))
        events = db.session.scalar(select(func.count(ConsentEvent.id))) - events_before
        wrong = db.session.scalar(select(func.count(ConsentEvent.id)).where(ConsentEvent.action != "withdraw"))
        verified = ledger.verify()
    answered = int(one_click["requests"])
    print(f"\none-click: {one_click['rps']:,.0f} req/s, p50 {one_click['p50_ms']:.1f} ms, p95 {one_click['p95_ms']:.1f} ms, "
          f"p99 {one_click['p99_ms']:.1f} ms ({answered:,} requests, {int(one_click['non2xx'])} non-2xx, "
          f"{int(one_click['errors'])} socket errors)")
    print(f"settling: {backlog:,} opt-outs still waiting for the ledger when the load stopped, "
          f"settled by the worker {drained_in:.1f} s later ({left} left)")
    print(f"ledger: {events:,} withdraw events for {answered:,} answered opt-outs "
          f"(at most {args.connections} more were in flight when wrk stopped); {withdrawn:,} subscriptions now "
          f"unsubscribed; other events: {wrong}; chain verifies: {verified.ok}")
    assert left == 0 and answered <= events <= answered + args.connections and withdrawn == events
    assert wrong == 0 and verified.ok
    print(f"preference page: {pages['rps']:,.0f} req/s, p50 {pages['p50_ms']:.1f} ms, p95 {pages['p95_ms']:.1f} ms, "
          f"p99 {pages['p99_ms']:.1f} ms ({int(pages['non2xx'])} non-2xx)")

    floor_env = {**env}
    server = serve("bench.floor_app:app", floor_env, args.workers, args.threads, port)
    try:
        floor = load(f"http://127.0.0.1:{port}", floor_paths, args.seconds, "POST", args.connections, 2)
    finally:
        server.terminate()
        server.wait(30)
    print(f"floor (Flask view inserting one row): {floor['rps']:,.0f} req/s, p50 {floor['p50_ms']:.1f} ms, "
          f"p99 {floor['p99_ms']:.1f} ms")
    print(f"ratio: one-click at {one_click['rps'] / floor['rps']:.2f} of the floor, "
          f"p99 {one_click['p99_ms'] / floor['p99_ms']:.2f} x the floor's")


if __name__ == "__main__":
    main()

"""Faults: PostgreSQL connections killed and broker connections dropped mid-campaign and mid-import.

These run on PostgreSQL and Redis whatever PC_TEST_DATABASE_URL says (the
faults are theirs to give): each test builds its own database, a real Celery
worker and the fake provider, breaks things while work is in flight, and
checks that everything finishes with nothing lost and nothing sent twice.
"""
from __future__ import annotations

import io
import os
import threading
import time

import pytest
import redis
from celery.contrib.testing.worker import start_worker
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from preference_center import campaigns, contacts, create_app, imports, ledger, rules, tasks
from preference_center.extensions import db
from preference_center.imports import applying
from preference_center.models import Campaign, ConsentEvent, Contact, Delivery, ImportJob, Subscription, Topic

from .fake_sendgrid import FakeSendGrid
from .helpers import SECRETS, ensure_postgres_database, prepare_database

pytestmark = [pytest.mark.slow, pytest.mark.faults]

# Their own database and Redis db, apart from the suite's: `.ci/run` runs the SQLite and PostgreSQL legs
# side by side, and each leg breaks only its own connections (PC_FAULTS_DATABASE_URL / PC_FAULTS_BROKER_URL
# override them, to run beside other suites on the same servers).
_LEG = "pg" if os.environ.get("PC_TEST_DATABASE_URL") else "lite"
PG = os.environ.get("PC_FAULTS_DATABASE_URL", f"postgresql+psycopg://postgres@127.0.0.1:5432/pc_faults_{_LEG}")
REDIS = os.environ.get("PC_FAULTS_BROKER_URL", f"redis://127.0.0.1:6379/{7 if _LEG == 'pg' else 9}")
REDIS_DB = int(REDIS.rsplit("/", 1)[1] or 0)


def _reachable() -> bool:
    try:
        ensure_postgres_database(PG)
        redis.Redis.from_url(REDIS, socket_connect_timeout=2).ping()
        return True
    except Exception:  # noqa: BLE001 - no server here: these tests need both
        return False


requires_servers = pytest.mark.skipif(not _reachable(), reason="needs PostgreSQL and Redis on 127.0.0.1")


@pytest.fixture
def fake():
    with FakeSendGrid() as server:
        yield server


@pytest.fixture
def app(tmp_path, fake):
    app = create_app({
        "PC_ENV": "testing", "TESTING": True, "PC_INSTANCE_PATH": str(tmp_path / "instance"),
        "SQLALCHEMY_DATABASE_URI": PG, "PC_BROKER_URL": REDIS, "PC_SECRET_KEYS": SECRETS,
        "PC_SUPPRESSION_KEY": "test-suppression-key", "PC_BASE_URL": "https://prefs.example.test",
        "PC_RATELIMITS_ENABLED": False, "PC_MAIL_TRANSPORT": "sendgrid", "PC_SENDGRID_API_KEY": "SG.test-key",
        "PC_SENDGRID_API_HOST": fake.url, "PC_SENDGRID_MAX_ATTEMPTS": 2, "PC_BATCH_SIZE": 50,
        "PC_BATCH_LEASE_SECONDS": 3, "PC_REQUEUE_AFTER_SECONDS": 2,
    })
    with app.app_context():
        db.drop_all()
        db.create_all()
        db.session.commit()
    prepare_database(app)
    app.extensions["celery"].control.purge()
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


class Killer(threading.Thread):
    """In the background: terminate every other connection to the test database, `times` times."""

    def __init__(self, times: int, every: float):
        super().__init__(daemon=True)
        self.times, self.every, self.stop, self.killed = times, every, threading.Event(), 0
        self.start()

    def run(self) -> None:
        admin = create_engine(make_url(PG).set(database="postgres"), isolation_level="AUTOCOMMIT")
        for _ in range(self.times):
            if self.stop.wait(self.every):
                break
            with admin.connect() as conn:
                self.killed += sum(conn.execute(text(
                    "SELECT pg_terminate_backend(pid)::int FROM pg_stat_activity "
                    "WHERE datname = :name AND pid <> pg_backend_pid()"), {"name": make_url(PG).database}).scalars())
        admin.dispose()

    def finish(self) -> int:
        self.stop.set()
        self.join(10)
        return self.killed


def drop_broker_connections() -> int:
    """Close every client connection to this test's Redis db (the workers' too): kombu must reconnect, lose nothing."""
    client = redis.Redis.from_url(REDIS)
    mine = client.client_id()
    dropped = 0
    for peer in client.client_list(_type="normal"):
        if int(peer["db"]) == REDIS_DB and int(peer["id"]) != mine:  # this test's broker only
            dropped += client.client_kill_filter(_id=peer["id"])
    client.close()
    return dropped


def wait_until(predicate, timeout: float, tick=None) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if tick:
                tick()
            if predicate():
                return
        except Exception:  # noqa: BLE001 - the connection may have just been killed: try again
            try:
                db.session.rollback()
            except Exception:  # noqa: BLE001 - even the rollback met the dead connection: start afresh
                db.session.remove()
        time.sleep(0.3)
    raise AssertionError("condition not reached in time")


def populate(n: int, topic: Topic) -> set[str]:
    rows = [Contact(email=f"f{i}@example.com", email_hash=contacts.hash_of(f"f{i}@example.com"),
                    relationship="customer", token_version=1, status="active") for i in range(n)]
    db.session.add_all(rows)
    db.session.flush()
    db.session.add_all([Subscription(contact_id=r.id, topic_id=topic.id, state="subscribed", event_id=r.id)
                        for i, r in enumerate(rows) if i % 5])
    db.session.commit()
    return {r.email for r, (_, d) in zip(rows, [rules.decide(topic, [r.id])[r.id] for r in rows], strict=True)
            if d.send}


@requires_servers
@pytest.mark.parametrize("fault", ["database connections killed", "broker connections dropped"])
def test_a_campaign_survives_faults_with_nobody_lost_or_sent_twice(app, fake, fault):
    with app.app_context():
        topic = Topic(key="news", name="News", kind="marketing", legal_basis="consent", default_relationships=[],
                      description="", retired=False)
        db.session.add(topic)
        db.session.commit()
        eligible = populate(600, topic)
        campaign = campaigns.create({"name": "Faults", "topic": "news", "subject": "Hi",
                                     "text": "Hello {{ contact.name }}"}, created_by="test")
        db.session.commit()
        campaign_id = campaign.id
        fake.script([("hang", 0.15)] * 12)  # each provider call takes a moment: faults land mid-campaign
        broken = 0
        with start_worker(app.extensions["celery"], pool="threads", concurrency=2, perform_ping_check=False,
                          shutdown_timeout=30, loglevel="ERROR"):
            campaigns.schedule(db.session.get(Campaign, campaign_id), None)
            db.session.commit()
            tasks.tick()
            if fault == "database connections killed":
                killer = Killer(times=4, every=0.7)
            else:
                for _ in range(3):
                    time.sleep(0.7)
                    broken += drop_broker_connections()
            wait_until(lambda: _status(campaign_id) == "sent", timeout=180, tick=tasks.tick)
            if fault == "database connections killed":
                broken = killer.finish()
        db.session.expire_all()
        statuses = dict(db.session.execute(select(Delivery.status, func.count()).where(
            Delivery.campaign_id == campaign_id).group_by(Delivery.status)).all())
    assert broken > 0, "the fault never hit a connection"
    got = [address for request in fake.accepted for address in request.to]
    assert len(got) == len(set(got)), "a recipient was sent twice"
    assert set(got) == eligible, "an eligible recipient was lost"
    assert set(statuses) <= {"sent", "unknown"}, statuses  # nothing left queued or sending
    assert sum(statuses.values()) == len(eligible)


def _status(campaign_id: int) -> str:
    db.session.expire_all()
    return db.session.get(Campaign, campaign_id).status


@requires_servers
def test_a_csv_import_survives_killed_database_connections_and_imports_each_row_once(app, monkeypatch):
    # Small chunks: many commits, so the import is still running when the connections are killed (3,000 rows
    # in chunks of 2,000 can finish before the first kill).
    monkeypatch.setattr(applying, "CHUNK", 100)
    rows = 6000
    body = "email,name\n" + "".join(f"i{i}@example.com,Person {i}\n" for i in range(rows))
    with app.app_context():
        job = imports.store(io.BytesIO(body.encode()), "big.csv", created_by="test")
        imports.configure(job, imports.Settings(mapping={"email": 0, "name": 1}, legal_basis="legitimate_interest",
                                                source_text="faults"))
        imports.preview(job)
        imports.start(job)
        db.session.commit()
        job_id = job.id
        with start_worker(app.extensions["celery"], pool="threads", concurrency=1, perform_ping_check=False,
                          shutdown_timeout=30, loglevel="ERROR"):
            tasks.enqueue("import_csv", job_id)
            killer = Killer(times=3, every=0.5)

            def finished() -> bool:
                db.session.expire_all()
                found = db.session.get(ImportJob, job_id)
                if found.status == "failed":  # a killed chunk fails the job: staff retry, it resumes
                    imports.retry(found)
                    db.session.commit()
                    tasks.enqueue("import_csv", job_id)
                return found.status == "done"

            wait_until(finished, timeout=180, tick=tasks.tick)
            assert killer.finish() > 0, "the fault never hit a connection"
        db.session.expire_all()
        imported = db.session.scalar(select(func.count()).select_from(Contact).where(Contact.email.like("i%")))
        relationship_events = db.session.scalar(select(func.count(ConsentEvent.id)).where(
            ConsentEvent.action == ledger.RELATIONSHIP, ConsentEvent.source == f"import:{job_id}"))
        job = db.session.get(ImportJob, job_id)
        assert (job.status, job.processed, job.created_count) == ("done", rows, rows)
        assert imported == rows and relationship_events == rows, "a row was lost or imported twice"
        assert ledger.verify().ok

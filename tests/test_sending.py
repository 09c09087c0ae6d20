"""End to end: a real Celery worker, the real sendgrid client, a fake provider.

Runs on SQLite with the embedded broker by default, and on PostgreSQL + Redis
when PC_TEST_DATABASE_URL / PC_TEST_BROKER_URL are set.
"""
from __future__ import annotations

import datetime as dt
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from celery.contrib.testing.worker import start_worker
from sqlalchemy import func, select

from preference_center import campaigns, contacts, ledger, links, optouts, sending
from preference_center.extensions import db
from preference_center.models import (
    Campaign,
    CampaignBatch,
    ConsentEvent,
    Contact,
    Delivery,
    OptOutInbox,
    Subscription,
    Topic,
    utcnow,
)
from worker import tasks

from .helpers import factories, path_of

# Sent through the real sendgrid client to the fake provider (`fake`, tests/conftest.py).
pytestmark = pytest.mark.sendgrid(PC_SENDGRID_MAX_ATTEMPTS=2, PC_BATCH_SIZE=100, PC_BATCH_LEASE_SECONDS=4, PC_REQUEUE_AFTER_SECONDS=2, PC_UNSUBSCRIBE_MAILTO='unsubscribe@example.com')


ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def celery_app(app):
    celery = app.extensions["celery"]
    celery.control.purge() if celery.conf.broker_url.startswith("redis") else None
    return celery


@pytest.fixture
def worker(celery_app):
    """A real Celery worker consuming from the real broker, in this process."""
    with start_worker(celery_app, pool="threads", concurrency=2, perform_ping_check=False,
                      shutdown_timeout=20, loglevel="WARNING"):
        yield


def wait_until(predicate, timeout=60.0, tick=None):
    """Poll until predicate() is true; `tick` (the scheduler's job) runs between polls."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if tick:
            tick()
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError("condition not reached in time")


def populate(n: int, topic: Topic, seed: int = 1) -> set[str]:
    """n contacts in a realistic mix of states; returns the addresses that may be sent."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        rows.append(Contact(email=f"r{i}@example.com", email_hash=contacts.hash_of(f"r{i}@example.com"),
                            relationship=rng.choice(["customer", "prospect"]), token_version=1,
                            status=rng.choice(["active"] * 18 + ["restricted", "erased"]),
                            marketing_opt_out_event_id=1 if rng.random() < 0.05 else None))
    db.session.add_all(rows)
    db.session.flush()
    states = [None, "subscribed", "subscribed", "subscribed", "pending", "unsubscribed"]
    db.session.add_all([
        Subscription(contact_id=row.id, topic_id=topic.id, state=state, event_id=row.id)
        for row in rows if (state := rng.choice(states)) is not None
    ])
    db.session.commit()
    decisions = {cid: d for cid, (c, d) in rules_decide(topic, [r.id for r in rows]).items()}
    return {r.email for r in rows if decisions[r.id].send}


def rules_decide(topic, ids):
    from preference_center import rules

    out = {}
    for start in range(0, len(ids), 900):
        out.update(rules.decide(topic, ids[start:start + 900]))
    return out


def new_campaign(topic_key: str = "news", **extra) -> int:
    campaign = campaigns.create({"name": "Winter", "topic": topic_key, "subject": "Hello {{ contact.name }}",
                                 "html": "<p>Hi {{ contact.name }}</p>", "text": "Hi {{ contact.name }}",
                                 **extra}, created_by="test")
    db.session.commit()
    return campaign.id


def start_now(campaign_id: int) -> None:
    campaigns.schedule(db.session.get(Campaign, campaign_id), None)
    db.session.commit()


def status_of(campaign_id: int) -> str:
    db.session.expire_all()
    return db.session.get(Campaign, campaign_id).status


def report(campaign_id: int) -> dict:
    db.session.expire_all()
    return campaigns.report(db.session.get(Campaign, campaign_id))


def accepted_emails(fake) -> list[str]:
    return [address for a in fake.accepted for address in a.to]


def plan_everything(campaign_id: int) -> list[int]:
    campaigns.start_due()
    batches = []
    while (batch := sending.plan_chunk(campaign_id, 100)) is not None:
        batches.append(batch)
    return batches


@pytest.fixture
def news(ctx):
    topic = factories.topic("news")
    factories.topic("orders", kind="system", basis="contract")
    db.session.commit()
    return topic


@pytest.mark.slow
def test_a_5000_recipient_campaign_reaches_every_eligible_recipient_exactly_once(ctx, news, fake, worker):
    eligible = populate(5000, news)
    campaign_id = new_campaign()
    start_now(campaign_id)
    wait_until(lambda: status_of(campaign_id) == "sent", timeout=240, tick=tasks.tick)
    got = accepted_emails(fake)
    assert len(got) == len(set(got)), "someone got the campaign twice"
    assert set(got) == eligible
    assert 2000 < len(eligible) < 4000
    result = report(campaign_id)
    assert result["sent"] == len(eligible) == result["eligible"]
    assert result["failed"] == result["unknown"] == result["pending"] == 0
    # Every delivery names the ledger event that authorised it and the provider id.
    assert db.session.scalar(select(func.count(Delivery.id)).where(
        Delivery.campaign_id == campaign_id, Delivery.status == "sent",
        (Delivery.event_id.is_(None)) | (Delivery.provider_message_id.is_(None)))) == 0


@pytest.mark.slow
def test_marketing_mail_carries_one_click_headers_links_and_only_opaque_ids(ctx, news, fake, worker, client):
    person = factories.contact("ann@example.com", name="Ann <b>")
    contacts.record_consent(person, action="grant", topic=news, source="test", confirmed=True)
    db.session.commit()
    campaign_id = new_campaign()
    start_now(campaign_id)
    wait_until(lambda: status_of(campaign_id) == "sent", tick=tasks.tick)
    (mail,) = fake.accepted
    assert mail.to == ["ann@example.com"]
    assert mail.subject == "Hello Ann <b>"
    assert mail.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    unsubscribe = mail.headers["List-Unsubscribe"]
    assert unsubscribe.startswith("<https://prefs.example.test/u/") and "mailto:unsubscribe@example.com" in unsubscribe
    html = mail.content["text/html"]
    text = mail.content["text/plain"]
    assert "Ann &lt;b&gt;" in html and "<b>" not in html.split("Hi ")[1][:20]
    for body in (html, text):
        assert "https://prefs.example.test/u/" in body and "https://prefs.example.test/p/" in body
        assert ctx.config["PC_POSTAL_ADDRESS"] in body
    assert set(mail.custom_args) == {"delivery_id", "campaign_id"}
    assert all(v.isdigit() for v in mail.custom_args.values())
    # The one-click URL from the header works as Gmail would use it.
    url = unsubscribe[1:unsubscribe.index(">")]
    response = client.post(url.removeprefix("https://prefs.example.test"), data="List-Unsubscribe=One-Click",
                           content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200
    db.session.expire_all()
    assert optouts.settle_all() == 1
    assert db.session.get(Subscription, (person.id, news.id)).state == "unsubscribed"


@pytest.mark.slow
def test_an_opt_out_between_scheduling_and_sending_stops_the_recipient(ctx, news, fake, worker):
    people = [factories.contact(f"p{i}@example.com") for i in range(5)]
    for person in people:
        contacts.record_consent(person, action="grant", topic=news, source="test", confirmed=True)
    db.session.commit()
    campaign_id = new_campaign()
    campaigns.schedule(db.session.get(Campaign, campaign_id), None)
    db.session.commit()
    contacts.record_consent(people[0], action="withdraw", topic=news, source="one-click")
    contacts.record_consent(people[1], action="withdraw", topic=None, source="preferences")
    db.session.commit()
    wait_until(lambda: status_of(campaign_id) == "sent", tick=tasks.tick)
    assert sorted(accepted_emails(fake)) == ["p2@example.com", "p3@example.com", "p4@example.com"]


@pytest.mark.slow
def test_an_opt_out_after_planning_is_caught_at_send_time(ctx, news, fake, celery_app):
    eligible = populate(400, news, seed=3)
    campaign_id = new_campaign()
    start_now(campaign_id)
    batches = plan_everything(campaign_id)
    assert len(batches) >= 2
    # Mid-campaign: people in the last batch opt out after it was planned.
    last = db.session.get(CampaignBatch, batches[-1]).contact_ids
    clickers, quitters = last[:3], last[3:5]
    gmail = ctx.test_client(use_cookies=False)
    for contact_id in clickers:  # RFC 8058 one-click: waits in the inbox until the send-time re-check settles it
        person = db.session.get(Contact, contact_id)
        path = path_of(links.unsubscribe_url(person, news.id))
        assert gmail.post(path, data={"List-Unsubscribe": "One-Click"}).status_code == 200
        eligible.discard(person.email)
    for contact_id in quitters:
        person = db.session.get(Contact, contact_id)
        contacts.record_consent(person, action="withdraw", topic=news, source="preferences-page")
        eligible.discard(person.email)
    restricted = db.session.get(Contact, last[5])
    ledger.append(ledger.RESTRICT, contact=restricted, scope=ledger.CONTACT, source="data-rights")
    eligible.discard(restricted.email)
    db.session.commit()
    with start_worker(celery_app, pool="threads", concurrency=2, perform_ping_check=False, shutdown_timeout=20):
        for batch_id in batches:
            tasks.enqueue("send_batch", batch_id)
        wait_until(lambda: status_of(campaign_id) == "sent", tick=tasks.tick)
    assert sorted(accepted_emails(fake)) == sorted(eligible)
    result = report(campaign_id)
    assert result["skipped"] == {"unsubscribed": 5, "restricted": 1}
    skipped = db.session.scalars(select(Delivery).where(Delivery.status == "skipped")).all()
    assert all(d.reason and d.provider_message_id is None for d in skipped)
    clicked = db.session.scalars(select(ConsentEvent).where(ConsentEvent.source == "one-click")).all()
    assert sorted(e.contact_id for e in clicked) == sorted(clickers)
    assert db.session.scalar(select(func.count()).select_from(OptOutInbox)) == 0


@pytest.mark.slow
def test_a_broker_message_delivered_twice_sends_nothing_twice(ctx, news, fake, celery_app):
    eligible = populate(300, news, seed=4)
    campaign_id = new_campaign()
    start_now(campaign_id)
    batches = plan_everything(campaign_id)
    with start_worker(celery_app, pool="threads", concurrency=2, perform_ping_check=False, shutdown_timeout=20):
        for batch_id in batches + batches + batches[:1]:
            tasks.enqueue("send_batch", batch_id)
        wait_until(lambda: status_of(campaign_id) == "sent", tick=tasks.tick)
        time.sleep(1.0)  # let the duplicates be consumed too
    got = accepted_emails(fake)
    assert len(got) == len(set(got)) == len(eligible)


@pytest.mark.slow
def test_a_batch_whose_broker_message_was_lost_is_found_and_requeued(ctx, news, fake, worker):
    eligible = populate(250, news, seed=5)
    campaign_id = new_campaign()
    start_now(campaign_id)
    batches = plan_everything(campaign_id)  # planned, committed, never handed to the broker
    queued = select(func.count(CampaignBatch.id)).where(CampaignBatch.status == "queued")
    assert db.session.scalar(queued) == len(batches)
    wait_until(lambda: status_of(campaign_id) == "sent", timeout=60, tick=tasks.tick)
    assert sorted(accepted_emails(fake)) == sorted(eligible)


@pytest.mark.slow
def test_cancel_stops_a_campaign_between_batches(ctx, news, fake, worker):
    populate(300, news, seed=6)
    campaign_id = new_campaign()
    start_now(campaign_id)
    batches = plan_everything(campaign_id)
    campaigns.cancel(db.session.get(Campaign, campaign_id))
    db.session.commit()
    for batch_id in batches:
        tasks.enqueue("send_batch", batch_id)
    wait_until(lambda: report(campaign_id)["pending"] == 0, tick=tasks.tick)
    assert fake.accepted == []
    result = report(campaign_id)
    assert result["status"] == "cancelled" and result["skipped"] == {"cancelled": result["eligible"]}


@pytest.mark.slow
def test_provider_429_then_success_is_retried(ctx, news, fake, worker):
    eligible = populate(150, news, seed=7)
    fake.script([(429, {"X-RateLimit-Reset": str(int(time.time()) + 1)})])
    campaign_id = new_campaign()
    start_now(campaign_id)
    wait_until(lambda: status_of(campaign_id) == "sent", tick=tasks.tick)
    assert sorted(accepted_emails(fake)) == sorted(eligible)
    batches = db.session.scalar(select(func.count(CampaignBatch.id)).where(CampaignBatch.campaign_id == campaign_id))
    assert fake.requests == batches + 1  # one request refused with 429, then retried


@pytest.mark.slow
def test_a_provider_500_storm_is_survived_without_duplicates(ctx, news, fake, worker):
    eligible = populate(250, news, seed=8)
    fake.script([(500, {})] * 5 + [(503, {})] * 2)
    campaign_id = new_campaign()
    start_now(campaign_id)
    wait_until(lambda: status_of(campaign_id) == "sent", timeout=120, tick=tasks.tick)
    got = accepted_emails(fake)
    assert len(got) == len(set(got)) and set(got) == eligible
    assert report(campaign_id)["failed"] == 0


@pytest.mark.slow
def test_a_provider_that_refuses_the_request_marks_deliveries_failed(ctx, news, fake, worker):
    populate(50, news, seed=9)
    fake.script([(401, {})])
    campaign_id = new_campaign()
    start_now(campaign_id)
    wait_until(lambda: status_of(campaign_id) == "sent", tick=tasks.tick)
    result = report(campaign_id)
    assert result["failed"] == result["eligible"] > 0 and result["sent"] == 0
    assert fake.requests == 1


@pytest.mark.slow
def test_the_send_rate_is_shared_by_all_workers(ctx, news, fake, worker, app):
    app.config["PC_SEND_RATE"] = 100.0
    app.config["PC_BATCH_SIZE"] = 20
    populate(200, news, seed=10)
    campaign_id = new_campaign()
    start_now(campaign_id)
    started = time.time()
    wait_until(lambda: status_of(campaign_id) == "sent", tick=tasks.tick)
    sent = report(campaign_id)["sent"]
    # Two worker threads, yet the shared schedule spaces every request.
    assert time.time() - started >= (sent - 20) / 100.0


# -- database faults around the provider call ----------------------------------------

class DatabaseFault:
    """Make the database fail a chosen statement once, the way a killed connection does (an invalidated
    connection raised from the driver layer), in the statement stream of the real engine."""

    def __init__(self, engine, matches):
        from sqlalchemy import event

        self.engine, self.matches, self.fired, self._event = engine, matches, 0, event
        event.listen(engine, "before_cursor_execute", self._before)

    def _before(self, conn, cursor, statement, parameters, context, executemany):
        from sqlalchemy.exc import OperationalError

        if not self.fired and self.matches(" ".join(statement.split()).lower()):
            self.fired += 1
            raise OperationalError(statement, parameters, Exception("server closed the connection unexpectedly"),
                                   connection_invalidated=True)

    def remove(self):
        self._event.remove(self.engine, "before_cursor_execute", self._before)


def _run_batches_to_the_end(campaign_id: int, batches: list[int]) -> None:
    """Run every batch in this process until the campaign ends, as the scheduler would after a lease ran out."""
    for _ in range(5):
        db.session.rollback()
        db.session.execute(CampaignBatch.__table__.update().values(lease_until=None))
        db.session.commit()
        for batch_id in batches:
            db.session.execute(CampaignBatch.__table__.update().where(CampaignBatch.id == batch_id,
                               CampaignBatch.status == "claimed").values(status="queued"))
            db.session.commit()
            sending.send_batch(batch_id)
        if status_of(campaign_id) == "sent":
            return
    raise AssertionError("the campaign did not end")


@pytest.mark.parametrize("requests", [1, 3])
@pytest.mark.parametrize("fault_at", ["reserving the send rate", "claiming the rows", "recording the outcome",
                                      "committing a claim"])
def test_a_database_fault_around_the_provider_call_loses_nobody(ctx, app, news, fake, fault_at, requests,
                                                                 monkeypatch):
    """A recipient is `unknown` only if the provider may have it: a fault before the call leaves nothing claimed
    (sent on the next attempt), a fault while recording the answer is retried on a fresh connection. With
    several requests per batch, a request's outcome is written in the transaction that claims the next one:
    a fault there, even one that loses the answer of a commit that went through, neither loses the outcome
    nor leaves the next request claimed."""
    from preference_center.mail.sendgrid import SendGridTransport

    app.config["PC_SEND_RATE"] = 100000.0
    eligible = populate(150, news, seed=21)
    monkeypatch.setattr(SendGridTransport, "max_batch", -(-len(eligible) // requests) if requests > 1 else 1000)
    campaign_id = new_campaign()
    start_now(campaign_id)
    batches = plan_everything(campaign_id)
    claims = iter(range(requests))
    matches = {
        "reserving the send rate": lambda sql: sql.startswith("update rate_limits"),
        # The last request's claim (with several, it also writes the previous request's outcome).
        "claiming the rows": lambda sql: _is_claim(sql) and next(claims, None) == requests - 1,
        # The transaction that writes the last request's rows with their outcome: it finishes the batch.
        "recording the outcome": lambda sql: sql.startswith("update campaign_batches set status") and
        "in_flight=null" in sql,
    }.get(fault_at)
    if fault_at == "committing a claim":  # the commit goes through, its answer is lost with the connection
        matches = _commit_then_fail(db.engine, requests)
    fault = matches if isinstance(matches, _CommitThenFail) else DatabaseFault(db.engine, matches)
    try:
        try:
            sending.send_batch(batches[0])
        except Exception as exc:  # noqa: BLE001 - the fault surfaces where the task would see it
            assert "server closed the connection" in str(exc)
        assert fault.fired == 1
        _run_batches_to_the_end(campaign_id, batches)
    finally:
        fault.remove()
    statuses = dict(db.session.execute(select(Delivery.status, func.count()).where(
        Delivery.campaign_id == campaign_id).group_by(Delivery.status)).all())
    got = accepted_emails(fake)
    assert len(got) == len(set(got)) == len(eligible), "a recipient was lost or sent twice"
    assert set(got) == eligible
    assert statuses.get("sent") == len(eligible) and "unknown" not in statuses, statuses


class _CommitThenFail:
    """The commit of the `nth` claim goes through, then its connection dies before the answer: the worker sees
    the same error as if it had not (an invalidated connection) and must not lose or resend anything."""

    def __init__(self, engine, nth: int):
        from sqlalchemy import event

        self.engine, self.nth, self.claims, self.armed, self.fired, self._event = engine, nth, 0, False, 0, event
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "commit", self._commit)

    def _before(self, conn, cursor, statement, parameters, context, executemany):
        if _is_claim(" ".join(statement.split()).lower()):
            self.claims += 1
            self.armed = self.claims == self.nth and not self.fired

    def _commit(self, conn):
        from sqlalchemy.exc import OperationalError

        if self.armed:
            self.armed, self.fired = False, self.fired + 1
            conn.connection.dbapi_connection.commit()  # it happened
            conn.invalidate()
            raise OperationalError("COMMIT", {}, Exception("server closed the connection unexpectedly"),
                                   connection_invalidated=True)

    def remove(self):
        self._event.remove(self.engine, "before_cursor_execute", self._before)
        self._event.remove(self.engine, "commit", self._commit)


def _commit_then_fail(engine, nth):
    return _CommitThenFail(engine, nth)


def _is_claim(sql: str) -> bool:
    """A request's claim (not the release of one): its triples written on the batch row."""
    return sql.startswith("update campaign_batches set in_flight=") and \
        not sql.startswith("update campaign_batches set in_flight=null")


def test_a_request_claimed_by_a_worker_that_died_is_unknown_and_the_rest_goes_once(ctx, app, news, fake):
    """The claim unit is the request on its batch row: after the lease, its recipients are `unknown` (never
    resent), every other recipient goes exactly once, and the old worker's attempt can claim nothing more."""
    app.config["PC_SEND_RATE"] = 100000.0
    eligible = populate(150, news, seed=5)
    campaign_id = new_campaign()
    start_now(campaign_id)
    first, *rest = plan_everything(campaign_id)
    assert sending.claim_batch(first)
    planned = db.session.get(CampaignBatch, first).contact_ids
    triples = [(d, c, None) for d, c in zip(sending.new_delivery_ids(9), planned, strict=False)]
    db.session.commit()
    dead = sending._Rows(campaign_id, first, 1)
    held = [d for d, _, _ in triples[:7]]
    assert sending._claim_request(dead, triples[:7])  # committed; then the worker dies before the answer
    db.session.execute(CampaignBatch.__table__.update().where(CampaignBatch.id == first).values(
        lease_until=utcnow() - dt.timedelta(seconds=1)))
    db.session.commit()
    outcome = sending.send_batch(first)
    assert outcome.unknown == len(held)
    assert not sending._claim_request(dead, triples[7:9]), "the dead attempt's claim must fail now"
    for batch_id in rest:
        sending.send_batch(batch_id)
    db.session.expire_all()
    assert status_of(campaign_id) == "sent"
    statuses = dict(db.session.execute(select(Delivery.id, Delivery.status).where(
        Delivery.campaign_id == campaign_id)).all())
    assert {statuses[i] for i in held} == {"unknown"}
    held_emails = set(db.session.scalars(select(Contact.email).where(Contact.id.in_(planned[:7]))))
    got = accepted_emails(fake)
    assert len(got) == len(set(got)), "a recipient was sent twice"
    assert set(got) == eligible - held_emails and not (set(got) & held_emails)
    assert db.session.scalar(select(func.count()).select_from(CampaignBatch).where(
        CampaignBatch.in_flight.is_not(None))) == 0


def test_a_worker_that_rendered_past_its_lease_sends_nothing_once_another_took_the_batch(ctx, app, news, fake,
                                                                                        monkeypatch):
    """Per-recipient rendering outlasted the lease and another worker claimed the batch (its rows still queued,
    that worker rendering in turn): the first worker claims no request and leaves the batch to the new holder,
    which sends every eligible recipient once."""
    app.config["PC_SEND_RATE"] = 100000.0
    eligible = populate(40, news, seed=11)
    campaign_id = new_campaign()
    start_now(campaign_id)
    first, *rest = plan_everything(campaign_id)
    real = sending.compose.CampaignMail.envelope
    calls = []

    def slow_envelope(self, contact, delivery_id, tracking=False, read=None):
        if not calls:  # the lease ran out here and another worker claimed the batch (its attempt, its lease)
            db.session.execute(CampaignBatch.__table__.update().where(CampaignBatch.id == first).values(
                lease_until=utcnow() - dt.timedelta(seconds=1)))
            db.session.commit()
            assert sending.claim_batch(first)
        calls.append(delivery_id)
        return real(self, contact, delivery_id, tracking, read)

    monkeypatch.setattr(sending.compose.CampaignMail, "envelope", slow_envelope)
    outcome = sending.send_batch(first)
    assert outcome.sent == 0 and accepted_emails(fake) == []
    db.session.expire_all()
    batch = db.session.get(CampaignBatch, first)
    assert (batch.status, batch.attempts, batch.in_flight) == ("claimed", 2, None), "the batch is the new holder's"
    monkeypatch.setattr(sending.compose.CampaignMail, "envelope", real)
    db.session.execute(CampaignBatch.__table__.update().where(CampaignBatch.id == first).values(
        lease_until=utcnow() - dt.timedelta(seconds=1)))  # the new holder runs it (here: as the scheduler would)
    db.session.commit()
    for batch_id in [first, *rest]:
        sending.send_batch(batch_id)
    db.session.expire_all()
    assert status_of(campaign_id) == "sent"
    got = accepted_emails(fake)
    assert len(got) == len(set(got)) and set(got) == eligible


# -- a worker killed mid-batch ---------------------------------------------------

def worker_process(app, tmp_path) -> subprocess.Popen:
    config = app.config
    env = {**os.environ,
           "PC_DATABASE_URL": config["SQLALCHEMY_DATABASE_URI"], "PC_BROKER_URL": config["PC_BROKER_URL"],
           "PC_INSTANCE_PATH": config["PC_INSTANCE_PATH"], "PC_SECRET_KEYS": ",".join(config["PC_SECRET_KEYS"]),
           "PC_SUPPRESSION_KEY": config["PC_SUPPRESSION_KEY"], "PC_BASE_URL": config["PC_BASE_URL"],
           "PC_MAIL_TRANSPORT": "sendgrid", "PC_SENDGRID_API_KEY": "SG.test-key",
           "PC_SENDGRID_API_HOST": config["PC_SENDGRID_API_HOST"], "PC_SENDGRID_TIMEOUT": "60",
           "PC_BATCH_LEASE_SECONDS": str(config["PC_BATCH_LEASE_SECONDS"]), "PC_ENV": "testing"}
    log = open(tmp_path / "worker.log", "w")
    return subprocess.Popen([sys.executable, "-m", "celery", "-A", "worker", "worker", "--pool", "threads",
                             "--concurrency", "1", "--loglevel", "INFO"],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


@pytest.mark.slow
def test_a_worker_killed_mid_batch_leaves_nobody_unsent_and_forgotten(ctx, app, news, fake, celery_app, tmp_path):
    eligible = populate(300, news, seed=11)
    campaign_id = new_campaign()
    start_now(campaign_id)
    batches = plan_everything(campaign_id)
    fake.script([("hang", 30)])  # the first provider call never answers in time
    process = worker_process(app, tmp_path)
    try:
        for batch_id in batches:
            tasks.enqueue("send_batch", batch_id)
        wait_until(lambda: fake.requests >= 1, timeout=60)
        time.sleep(0.3)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    db.session.expire_all()
    # The claim of a request in flight is on its batch: its (delivery id, contact, event) triples, no row yet.
    in_flight = [t[0] for triples in db.session.scalars(select(CampaignBatch.in_flight).where(
        CampaignBatch.in_flight.is_not(None))) for t in triples]
    assert in_flight, "the kill should have caught a batch in flight"
    assert db.session.scalar(select(func.count()).select_from(Delivery).where(Delivery.id.in_(in_flight))) == 0
    with start_worker(celery_app, pool="threads", concurrency=2, perform_ping_check=False, shutdown_timeout=20):
        wait_until(lambda: status_of(campaign_id) == "sent", timeout=90, tick=tasks.tick)
    result = report(campaign_id)
    assert result["pending"] == 0
    assert result["unknown"] == len(in_flight)
    assert result["sent"] + result["unknown"] == len(eligible)
    got = accepted_emails(fake)
    assert len(got) == len(set(got)), "a recipient was sent twice"
    sent = set(db.session.scalars(select(Contact.email).join(Delivery, Delivery.contact_id == Contact.id)
                                  .where(Delivery.status == "sent")))
    assert sent <= set(got) and set(got) <= eligible


# -- system messages -------------------------------------------------------------

@pytest.mark.slow
def test_system_messages_bypass_marketing_opt_out_and_are_idempotent(ctx, news, fake, worker, api):
    person = factories.contact("buyer@example.com", name="Bea")
    contacts.record_consent(person, action="withdraw", topic=None, source="one-click")
    db.session.commit()
    body = {"topic": "orders", "to": "buyer@example.com", "subject": "Order {{ data.order }}",
            "text": "Thanks {{ contact.name }}, order {{ data.order }} ships today. {{ preferences_url }}",
            "data": {"order": "A-17"}}
    first = api.post("/messages", json=body, headers={"Idempotency-Key": "order-A-17"})
    again = api.post("/messages", json=body, headers={"Idempotency-Key": "order-A-17"})
    assert first.status_code == 202 and again.status_code == 200
    assert first.json["id"] == again.json["id"] and again.json["replayed"] is True
    conflict = api.post("/messages", json={**body, "subject": "Other"}, headers={"Idempotency-Key": "order-A-17"})
    assert conflict.status_code == 409
    wait_until(lambda: api.get(f"/messages/{first.json['id']}").json["status"] == "sent", tick=tasks.tick)
    time.sleep(0.5)
    (mail,) = fake.accepted
    assert mail.subject == "Order A-17"
    text = mail.content["text/plain"]
    assert "Thanks Bea, order A-17 ships today. https://prefs.example.test/p/" in text
    assert "part of a service you use" in text and "-pc_" not in text
    assert "List-Unsubscribe" not in mail.headers and "List-Unsubscribe-Post" not in mail.headers


@pytest.mark.slow
def test_system_messages_respect_all_scope_suppression(ctx, news, fake, worker, api):
    person = factories.contact("bounced@example.com")
    contacts.suppress(person.email_hash, "all", "hard_bounce", source="webhook:sendgrid", contact=person)
    db.session.commit()
    sent = api.post("/messages", json={"topic": "orders", "to": "bounced@example.com", "subject": "Hi", "text": "x"})
    wait_until(lambda: api.get(f"/messages/{sent.json['id']}").json["status"] == "skipped", tick=tasks.tick)
    assert api.get(f"/messages/{sent.json['id']}").json["reason"] == "suppressed_all"
    assert fake.accepted == []


@pytest.mark.parametrize("body, code", [
    ({"topic": "news", "to": "a@example.com", "subject": "Hi", "text": "x"}, "marketing_topic"),
    ({"topic": "nope", "to": "a@example.com", "subject": "Hi", "text": "x"}, "unknown_topic"),
    ({"topic": "orders", "to": "not-an-email", "subject": "Hi", "text": "x"}, "invalid_email"),
    ({"topic": "orders", "to": "a@example.com", "text": "x"}, "validation_error"),
    ({"topic": "orders", "to": "a@example.com", "subject": "Hi", "text": "{% if %}"}, "validation_error"),
])
def test_bad_system_messages_are_refused_and_send_nothing(ctx, news, api, body, code):
    response = api.post("/messages", json=body)
    assert response.status_code == 422 and response.json["error"]["code"] == code
    assert db.session.scalar(select(func.count(Delivery.id))) == 0


# -- the campaign API ----------------------------------------------------------------

@pytest.mark.slow
def test_campaign_api_create_schedule_report_cancel(ctx, news, api, fake, worker):
    person = factories.contact("c@example.com")
    contacts.record_consent(person, action="grant", topic=news, source="test", confirmed=True)
    db.session.commit()
    created = api.post("/campaigns", json={"name": "N", "topic": "news", "subject": "S", "text": "T"})
    assert created.status_code == 201 and created.json["status"] == "draft"
    later = api.post(f"/campaigns/{created.json['id']}/schedule", json={"at": "2099-01-01T09:00:00+01:00"})
    assert later.json["status"] == "scheduled" and later.json["scheduled_at"].startswith("2099-01-01T08:00:00")
    tasks.tick()
    assert api.get(f"/campaigns/{created.json['id']}/report").json["status"] == "scheduled"
    now = api.post(f"/campaigns/{created.json['id']}/schedule", json={"at": None})
    assert now.status_code == 200
    wait_until(lambda: api.get(f"/campaigns/{created.json['id']}/report").json["status"] == "sent", tick=tasks.tick)
    result = api.get(f"/campaigns/{created.json['id']}/report").json
    assert {k: result[k] for k in ("status", "eligible", "sent", "skipped", "failed", "unknown")} == {
        "status": "sent", "eligible": 1, "sent": 1, "skipped": {}, "failed": 0, "unknown": 0}
    assert api.post(f"/campaigns/{created.json['id']}/cancel").status_code == 409
    assert api.post("/campaigns/9999/cancel").status_code == 404


@pytest.mark.parametrize("body, field", [
    ({"name": "N", "topic": "orders", "subject": "S", "text": "T"}, "topic"),
    ({"name": "N", "topic": "nope", "subject": "S", "text": "T"}, "topic"),
    ({"name": "N", "topic": "news", "text": "T"}, "subject"),
    ({"name": "N", "topic": "news", "subject": "S"}, "text"),
    ({"name": "N", "topic": "news", "subject": "S", "text": "{{ oops"}, "text"),
    ({"name": "N", "topic": "news", "subject": "S", "text": "T", "audience": {"shoe": ["x"]}}, "audience"),
])
def test_bad_campaigns_are_refused(ctx, news, api, body, field):
    response = api.post("/campaigns", json=body)
    assert response.status_code == 422 and response.json["error"]["field"] == field
    assert db.session.scalar(select(func.count(Campaign.id))) == 0


def test_scheduling_with_a_bad_time_is_refused(ctx, news, api):
    created = api.post("/campaigns", json={"name": "N", "topic": "news", "subject": "S", "text": "T"}).json
    response = api.post(f"/campaigns/{created['id']}/schedule", json={"at": "next tuesday"})
    assert response.status_code == 422
    assert api.get(f"/campaigns/{created['id']}").json["status"] == "draft"

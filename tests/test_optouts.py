"""RFC 8058 one-click opt-outs: one INSERT in the request, chained into the ledger by `optouts.settle`."""
from __future__ import annotations

import threading

import pytest
from sqlalchemy import create_engine, event, func, select

from preference_center import contacts, ledger, links, optouts, rules
from preference_center.extensions import db
from preference_center.models import ConsentEvent, Contact, OptOutInbox, Suppression

from .helpers import IP, UA, factories, grant, make_contact, settle, states, token, topic_id

ONE_CLICK = {"List-Unsubscribe": "One-Click"}


@pytest.fixture
def ann(app, topics) -> int:
    contact_id = make_contact(app, "ann@example.com", relationship="customer", name="Ann")
    grant(app, contact_id, "news")
    return contact_id


def click(app, contact_id: int, topic_key: str | None, **environ):
    """Post a one-click opt-out as Gmail does: no cookies, no CSRF token."""
    argument = topic_id(app, topic_key) if topic_key else 0
    gmail = app.test_client(use_cookies=False)
    return gmail.post(f"/u/{token(app, links.UNSUBSCRIBE, contact_id, argument)}", data=ONE_CLICK,
                      environ_base={"REMOTE_ADDR": IP, **environ}, headers={"User-Agent": UA})


def waiting(app) -> list[tuple]:
    with app.app_context():
        return [tuple(row) for row in db.session.execute(
            select(OptOutInbox.contact_id, OptOutInbox.topic_id, OptOutInbox.source).order_by(OptOutInbox.id))]


def withdrawals(app, contact_id: int) -> list[ConsentEvent]:
    with app.app_context():
        rows = db.session.scalars(select(ConsentEvent).where(
            ConsentEvent.contact_id == contact_id, ConsentEvent.action == ledger.WITHDRAW,
        ).order_by(ConsentEvent.id)).all()
        db.session.expunge_all()
        return rows


def statements_during(app, call) -> list[str]:
    """The SQL statements `call` sends to the database."""
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        seen.append(statement)

    with app.app_context():
        engines = {db.engine, optouts._engine()}  # the app's and the one-click pool (one on SQLite)
    for engine in engines:
        event.listen(engine, "before_cursor_execute", record)
    try:
        call()
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", record)
    return seen


# -- the request ----------------------------------------------------------------------

def test_the_one_click_request_is_one_insert_and_leaves_the_ledger_head_alone(app, ann):
    statements = statements_during(app, lambda: click(app, ann, "news"))
    writes = [s for s in statements if not s.lstrip().upper().startswith(("SELECT", "BEGIN", "COMMIT", "SAVEPOINT"))]
    assert len(writes) == 1 and writes[0].lstrip().upper().startswith("INSERT INTO OPT_OUT_INBOX")
    assert not any("ledger_head" in s or "consent_events" in s for s in statements)
    assert waiting(app) == [(ann, topic_id(app, "news"), "one-click")]


def test_the_one_click_opt_out_is_committed_before_the_answer_leaves(app, ann):
    seen_by_another_connection = []
    with app.app_context():
        url = db.engine.url
    other = create_engine(url)

    def look_from_elsewhere(response):
        # Another connection, outside the request's pool: it sees only what is committed.
        with other.connect() as connection:
            seen_by_another_connection.append(connection.execute(
                select(func.count()).select_from(OptOutInbox).where(OptOutInbox.contact_id == ann)).scalar())
        return response

    hooks = app.after_request_funcs.setdefault(None, [])
    hooks.append(look_from_elsewhere)  # the app has served requests: no decorator any more
    try:
        assert click(app, ann, "news").status_code == 200
    finally:
        hooks.remove(look_from_elsewhere)
        other.dispose()
    assert seen_by_another_connection == [1]


def test_a_click_taken_on_a_pooled_connection_the_database_closed_is_still_taken_once(app, ann):
    assert click(app, ann, "news").status_code == 200  # the one-click pool now holds an idle connection
    with app.app_context():
        pool = optouts._engine().pool
    closed = 0
    for record in list(pool._pool.queue):  # as a database restart leaves them: dead, still pooled
        record.dbapi_connection.close()
        closed += 1
    assert closed
    assert click(app, ann, None).status_code == 200
    assert waiting(app) == [(ann, topic_id(app, "news"), "one-click"), (ann, None, "one-click")]


def test_settling_writes_the_withdraw_with_the_clicks_time_ip_and_user_agent(app, ann):
    click(app, ann, "news")
    with app.app_context():
        received = db.session.scalar(select(OptOutInbox.received_at))
    assert settle(app) == 1
    (event_,) = withdrawals(app, ann)
    assert (event_.topic_id, event_.source, event_.ip, event_.user_agent) == (
        topic_id(app, "news"), "one-click", IP, UA)
    assert event_.occurred_at == received
    assert waiting(app) == []
    assert states(app, ann)["news"] == "unsubscribed"
    with app.app_context():
        assert ledger.verify().ok
        assert ledger.state_of(db.session.get(Contact, ann)) == ledger.replay(ann)


@pytest.mark.parametrize("spoil, status", [
    ("revoked", 404),     # "sign out all links" bumped the token version
    ("erased", 404),
    ("system-topic", 404),
    ("tampered", 404),
])
def test_a_link_that_no_longer_holds_stores_nothing(app, ann, spoil, status):
    argument = topic_id(app, "orders") if spoil == "system-topic" else topic_id(app, "news")
    path = f"/u/{token(app, links.UNSUBSCRIBE, ann, argument)}"
    with app.app_context():
        contact = db.session.get(Contact, ann)
        if spoil == "revoked":
            contact.token_version += 1
        elif spoil == "erased":
            contacts.erase(contact, source="test")
        db.session.commit()
    if spoil == "tampered":
        body, _, signature = path.rpartition(".")
        path = f"{body}." + ("A" if signature[0] != "A" else "B") + signature[1:]  # every bit of it counts
    with app.app_context():
        events_before = db.session.scalar(select(func.count()).select_from(ConsentEvent))
    response = app.test_client(use_cookies=False).post(path, data=ONE_CLICK)
    assert response.status_code == status
    assert waiting(app) == []
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(ConsentEvent)) == events_before


@pytest.mark.parametrize("watched", [False, True])  # PostgreSQL: the driver's cursor, or SQLAlchemy's when watched
@pytest.mark.parametrize("spoil", [None, "revoked", "erased", "system-topic"])
def test_the_insert_takes_and_refuses_the_same_clicks_whether_or_not_anyone_watches_the_pool(app, ann, watched,
                                                                                            spoil):
    with app.app_context():
        engine = optouts._engine()
        if spoil in ("revoked", "erased"):
            contact = db.session.get(Contact, ann)
            if spoil == "revoked":
                contact.token_version += 1
            else:
                contacts.erase(contact, source="test")
            db.session.commit()
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        seen.append(statement)

    if watched:
        event.listen(engine, "before_cursor_execute", record)
    try:
        with app.test_request_context():
            taken = optouts.take(ann, 1, topic_id(app, "orders" if spoil == "system-topic" else "news"),
                                 source="one-click", ip="192.0.2.7\x00", user_agent="Mail\nBot", delivery_id=2**63)
    finally:
        if watched:
            event.remove(engine, "before_cursor_execute", record)
    assert bool(seen) == watched
    assert taken is (spoil is None)
    with app.app_context():
        rows = [tuple(r) for r in db.session.execute(select(
            OptOutInbox.contact_id, OptOutInbox.topic_id, OptOutInbox.source, OptOutInbox.ip, OptOutInbox.user_agent,
            OptOutInbox.delivery_id))]
    assert rows == ([(ann, topic_id(app, "news"), "one-click", "192.0.2.7", "MailBot", None)] if spoil is None else [])


# -- settling ---------------------------------------------------------------------------

def test_repeated_clicks_settle_into_one_withdraw_and_nothing_for_what_already_holds(app, ann):
    for _ in range(3):
        assert click(app, ann, "news").status_code == 200
    assert settle(app) == 3
    assert [e.topic_id for e in withdrawals(app, ann)] == [topic_id(app, "news")]
    click(app, ann, "news")  # already unsubscribed: nothing new in the ledger
    assert settle(app) == 1
    assert len(withdrawals(app, ann)) == 1


def test_an_all_marketing_click_also_suppresses_the_address(app, ann):
    click(app, ann, None)
    assert settle(app) == 1
    assert states(app, ann) == {"news": "unsubscribed", "tips": "unsubscribed", "orders": "subscribed"}
    with app.app_context():
        contact = db.session.get(Contact, ann)
        assert contact.marketing_opt_out_event_id == withdrawals(app, ann)[0].id
        assert db.session.scalar(select(Suppression.reason)
                                 .where(Suppression.email_hash == contact.email_hash)) == "opt_out"


def test_a_contact_erased_before_settling_gets_no_event_but_the_click_is_consumed(app, ann):
    click(app, ann, "news")
    with app.app_context():
        contact = db.session.get(Contact, ann)
        # Erasure appends to the ledger, which settles the waiting click first.
        contacts.erase(contact, source="test")
        db.session.commit()
    assert waiting(app) == []
    (withdraw,) = withdrawals(app, ann)
    assert withdraw.redacted and withdraw.ip is None  # recorded, then erased with the rest


def test_anything_appended_for_a_contact_comes_after_its_waiting_clicks(app, ann):
    """Click, then re-subscribe through the API: the ledger must read withdraw, then grant."""
    click(app, ann, "news")
    with app.app_context():
        contact = db.session.get(Contact, ann)
        contacts.record_consent(contact, action=ledger.GRANT, topic=factories.get_topic("news"), source="api",
                                confirmed=True)
        db.session.commit()
        tail = db.session.scalars(select(ConsentEvent).where(ConsentEvent.contact_id == ann)
                                  .order_by(ConsentEvent.id.desc()).limit(2)).all()
        assert [(e.action, e.source) for e in reversed(tail)] == [("withdraw", "one-click"), ("grant", "api")]
    assert waiting(app) == []
    assert states(app, ann)["news"] == "subscribed"


def test_the_pages_and_the_api_show_a_click_at_once(app, ann, api):
    click(app, ann, "news")
    api_view = api.get("/contacts/ann@example.com").get_json()
    assert {s["topic"]: s["state"] for s in api_view["subscriptions"]}["news"] == "unsubscribed"
    assert waiting(app) == []
    click(app, ann, "tips")
    page = app.test_client().get(f"/p/{token(app, links.PREFERENCES, ann)}").get_data(as_text=True)
    assert waiting(app) == []
    assert states(app, ann)["tips"] == "unsubscribed"
    assert 'value="tips"' in page and 'value="tips" checked' not in page


def test_the_send_time_check_settles_its_recipients_first(app, ann):
    click(app, ann, "news")
    with app.app_context():
        news = factories.get_topic("news")
        assert optouts.settle([ann])
        db.session.commit()
        (_, decision), = rules.decide(news, [ann]).values()
        assert (decision.send, decision.reason) == (False, rules.SKIP_UNSUBSCRIBED)


def test_settle_all_works_through_a_backlog_in_batches(app, topics, monkeypatch):
    monkeypatch.setattr(optouts, "BATCH", 7)
    people = [make_contact(app, f"p{i}@example.com") for i in range(23)]
    for person in people:
        grant(app, person, "news")
        assert click(app, person, "news").status_code == 200
    assert settle(app) == 23
    assert waiting(app) == []
    with app.app_context():
        rows = db.session.execute(select(ConsentEvent.contact_id, ConsentEvent.source).where(
            ConsentEvent.action == ledger.WITHDRAW).order_by(ConsentEvent.id)).all()
        assert rows == [(p, "one-click") for p in people]  # the order the clicks came in
        assert ledger.verify().ok


def test_the_worker_task_settles_without_any_reader(app, ann):
    from worker import tasks

    click(app, ann, "news")
    with app.app_context():
        assert tasks.settle_opt_outs.apply().get() == 1
    assert waiting(app) == []
    assert len(withdrawals(app, ann)) == 1


def test_the_cli_settles_waiting_clicks(app, ann, runner):
    click(app, ann, "news")
    result = runner.invoke(args=["ledger", "settle"])
    assert result.exit_code == 0 and "settled 1 one-click opt-out(s)" in result.output
    assert waiting(app) == []


@pytest.mark.slow
def test_clicks_settlers_and_appenders_at_once_keep_one_chain_and_lose_nothing(app, topics):
    """Threads clicking, a settler looping and a writer appending for the same people."""
    people = [make_contact(app, f"c{i}@example.com") for i in range(12)]
    for person in people:
        grant(app, person, "news")
    paths = {p: f"/u/{token(app, links.UNSUBSCRIBE, p, topic_id(app, 'news'))}" for p in people}
    errors: list[Exception] = []
    stop = threading.Event()

    def clicker(mine):
        gmail = app.test_client(use_cookies=False)
        try:
            for person in mine:
                assert gmail.post(paths[person], data=ONE_CLICK).status_code == 200
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def settler():
        with app.app_context():
            try:
                while not stop.is_set():
                    optouts.settle_all()
            except Exception as exc:  # pragma: no cover
                errors.append(exc)
            finally:
                db.session.remove()

    def appender():
        with app.app_context():
            try:
                for person in people:
                    contact = db.session.get(Contact, person)
                    ledger.append(ledger.EXPORT, contact=contact, scope=ledger.CONTACT, source="test")
                    db.session.commit()
            except Exception as exc:  # pragma: no cover
                errors.append(exc)
            finally:
                db.session.remove()

    workers = [threading.Thread(target=clicker, args=(people[i::3],)) for i in range(3)]
    workers += [threading.Thread(target=appender)]
    background = threading.Thread(target=settler)
    background.start()
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    stop.set()
    background.join()
    assert not errors, errors
    settle(app)
    with app.app_context():
        result = ledger.verify()
        assert result.ok, result.problems
        withdrawn = db.session.scalars(select(ConsentEvent.contact_id).where(
            ConsentEvent.action == ledger.WITHDRAW, ConsentEvent.source == "one-click")).all()
        assert sorted(withdrawn) == sorted(people)
        for person in people:
            assert ledger.state_of(db.session.get(Contact, person)) == ledger.replay(person)

"""RFC 8058 one-click opt-outs: taken with one INSERT, chained into the ledger just after.

Mail providers post one-click opt-outs in bursts, and each must be durable
before we answer 200. Appending to the hash-chained ledger takes the ledger
head's lock, so the request does not: `take` checks the link's contact and
topic and inserts one `opt_out_inbox` row in a single statement, and the
caller commits. `settle` turns waiting rows into the ledger's withdraw events
(with the time, IP and user agent of the click), in the order they arrived,
under one head lock per batch, and deletes them.

Nothing reads or changes a contact's state with its opt-outs still waiting:
the ledger settles a contact before appending anything else for it (so the
chain keeps the order people acted in), the send-time re-check settles its
batch (so an opt-out stops the very next batch), and the recipient pages,
the API and the staff pages settle the contact they show. The worker settles
everything every PC_SETTLE_SECONDS.

Locking: whoever settles takes the ledger head's lock before reading the
inbox, so settlers queue on one lock and never deadlock on inbox rows.
"""
from __future__ import annotations

import threading
import weakref

from flask import current_app
from sqlalchemy import (
    BigInteger,
    Engine,
    Integer,
    String,
    bindparam,
    cast,
    create_engine,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import configure_mappers

from . import audit, characters, contacts, engagement, inputs, ledger
from .actors import Actor, ActorKind
from .extensions import db
from .models import Contact, OptOutInbox, Subscription, Topic, UTCDateTime, utcnow
from .sqlutil import chunked, driver_error, one_of, parts_for_one_of

BATCH = 1000
_SETTLING = "pc.settling_opt_outs"
_ENGINE = "pc.one_click_engine"
_ENGINE_LOCK = threading.Lock()
_STATEMENTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _take_statement():
    """INSERT … SELECT of one inbox row, only if the link still holds; built once, cached by SQLAlchemy."""
    topic_holds = or_(bindparam("topic_id") == 0,
                      exists().where(Topic.id == bindparam("topic_id"), Topic.kind == "marketing"))
    row = select(
        Contact.id,
        cast(func.nullif(bindparam("topic_id", type_=Integer()), 0), Integer()),
        bindparam("source", type_=String()),
        bindparam("ip", type_=String()),
        bindparam("user_agent", type_=String()),
        bindparam("received_at", type_=UTCDateTime()),
        bindparam("delivery_id", type_=BigInteger()),
    ).where(Contact.id == bindparam("contact_id"), Contact.token_version == bindparam("version"),
            Contact.status != "erased", topic_holds)
    return (insert(OptOutInbox)
            .from_select(["contact_id", "topic_id", "source", "ip", "user_agent", "received_at", "delivery_id"], row)
            .returning(OptOutInbox.id))


_TAKE = _take_statement()
_PARAMETERS = ("contact_id", "version", "topic_id", "source", "ip", "user_agent", "received_at", "delivery_id")


class _DriverStatement:
    """`_TAKE` compiled once for one engine's dialect, run as driver SQL: no cache key, lookup or compile per click.

    SQLAlchemy derives a cache key from the statement's structure on every
    execution before it finds the compiled form, as much CPU as the rest of the
    request's database work; the statement never changes, so its text, its
    constant parameters and its bind processors are kept, and each click only
    fills in its own values. It runs through `exec_driver_sql` (SQLite, or a
    pool someone listens to) or on the driver's cursor (`_insert_on_driver`).
    """

    def __init__(self, dialect) -> None:
        compiled = _TAKE.compile(dialect=dialect)
        sample = dict.fromkeys(_PARAMETERS)
        self.sql = compiled.string
        self.constants = {k: v for k, v in compiled.construct_params(sample).items() if k not in sample}
        self.processors = {k: p for k, p in compiled._bind_processors.items() if k in sample}
        self.positions = tuple(compiled.positiontup) if compiled.positional else None

    def parameters(self, values: dict):
        """The driver's parameters for one click: a dict, or a tuple for a positional driver (SQLite)."""
        processors = self.processors
        full = {**self.constants, **{k: processors[k](v) if k in processors else v for k, v in values.items()}}
        return tuple(full[name] for name in self.positions) if self.positions is not None else full


def take(contact_id: int, version: int, topic_id: object, *, source: str, ip: str | None,
         user_agent: str | None, delivery_id: int | None = None) -> bool:
    """Record the opt-out of a verified unsubscribe link in one statement; False if the link no longer holds.

    It holds while its contact exists, is not erased and still has that token
    version, and its topic (0 = all marketing) is a marketing topic; ids that no row could have are refused
    before the database sees them, and the IP and user agent lose any control characters. `delivery_id` is the
    campaign delivery the link came in (unchecked here: `engagement.note_own_unsubscribe` checks it). Runs as
    one autocommitted statement on a pooled connection (`_engine`), committed
    before it returns: no ORM session, no ledger lock.
    """
    if not (inputs.fits(contact_id, Contact.id) and inputs.fits(version, Contact.token_version)
            and inputs.fits(topic_id, Topic.id, smallest=0)):
        return False
    # Header text is cleaned, never refused: an opt-out whose User-Agent holds a NUL is still an opt-out.
    ip, user_agent = characters.printable(ip), characters.printable(user_agent)
    params = {"contact_id": contact_id, "version": version, "topic_id": topic_id,
              "source": characters.printable(source)[:200], "ip": ip and ip[:64],
              "user_agent": user_agent and user_agent[:512], "received_at": utcnow(),
              "delivery_id": delivery_id if inputs.fits(delivery_id, OptOutInbox.delivery_id) else None}
    for attempt in range(2):
        try:
            engine = _engine()
            statement = _statement_for(engine)
            # RETURNING, not rowcount: INSERT … SELECT has no reliable rowcount on every driver.
            if engine is not db.engine and not _watched(engine):
                return _insert_on_driver(engine, statement, statement.parameters(params))
            with engine.connect() as connection:
                if engine is db.engine:  # the one-click pool is in autocommit already
                    connection.execution_options(isolation_level="AUTOCOMMIT")
                return connection.exec_driver_sql(statement.sql, statement.parameters(params)).first() is not None
        except DBAPIError as exc:
            # A pooled connection the database had closed (restart, idle timeout): once more on a fresh one.
            # Had the first INSERT committed after all, the click waits twice and settles into one withdraw.
            if attempt or not exc.connection_invalidated:
                raise
    raise AssertionError("unreachable")


def _engine() -> Engine:
    """The engine the one-click INSERT runs on: on PostgreSQL its own pool, without the ping before each checkout.

    Autocommit: one statement on its own is its own transaction, committed
    before the database answers it, so the opt-out is durable when `execute`
    returns, with no BEGIN and COMMIT round trips around it. The app's pool
    pings every connection it hands out, a round trip as long as the INSERT
    itself; here a dead connection fails the statement instead, and `take`
    runs it again on a fresh one. Created once per process and app.
    """
    app = current_app._get_current_object()
    engine = app.extensions.get(_ENGINE)
    if engine is None:
        with _ENGINE_LOCK:
            engine = app.extensions.get(_ENGINE)
            if engine is None:
                engine = db.engine
                if engine.dialect.name == "postgresql":
                    options = {k: v for k, v in app.config["SQLALCHEMY_ENGINE_OPTIONS"].items()
                               if k != "pool_pre_ping"}
                    engine = create_engine(engine.url, **options, pool_pre_ping=False, isolation_level="AUTOCOMMIT")
                app.extensions[_ENGINE] = engine
    return engine


def _watched(engine: Engine) -> bool:
    """Whether anything listens to `engine`'s statements (tests, tracing): they are then run through SQLAlchemy."""
    return bool(engine.dispatch.before_cursor_execute or engine.dispatch.after_cursor_execute)


def _insert_on_driver(engine: Engine, statement: _DriverStatement, parameters) -> bool:
    """Run the INSERT on a pooled connection's own cursor (the one-click pool, autocommit): SQLAlchemy's
    connection, execution context and result objects cost a click more CPU than the driver's whole call.
    Failures reach the caller as SQLAlchemy reports them: a DBAPIError, the connection invalidated when lost."""
    connection = engine.raw_connection()
    cursor = None
    try:
        cursor = connection.dbapi_connection.cursor()
        cursor.execute(statement.sql, parameters)
        return cursor.fetchone() is not None
    except engine.dialect.loaded_dbapi.Error as exc:
        raise driver_error(exc, engine.dialect, connection, connection.dbapi_connection, cursor, statement.sql,
                           parameters) from exc
    finally:
        if cursor is not None:
            cursor.close()
        connection.close()


def _statement_for(engine: Engine) -> _DriverStatement:
    """The one-click INSERT compiled for `engine`, once per engine (kept with the engine's other settings)."""
    statement = _STATEMENTS.get(engine)
    if statement is None:  # two threads may both compile it: the same text, either one is kept
        statement = _STATEMENTS[engine] = _DriverStatement(engine.dialect)
    return statement


def prepare() -> None:
    """Configure the mappers and compile the one-click INSERT now (a web process starting), not in its first
    requests: on two cores a fresh worker's first clicks otherwise wait a few hundred milliseconds for both."""
    configure_mappers()
    _statement_for(_engine())


def dispose_engine(app) -> None:
    """Close the one-click pool's connections (an app that is done, as the tests' are)."""
    engine = app.extensions.pop(_ENGINE, None)
    if engine is not None:
        engine.dispose()


_INBOX = OptOutInbox.__table__


def waiting(contact_ids: list[int] | None = None) -> bool:
    """Whether any opt-out waits (for these contacts); one indexed probe (Core, no ORM), no lock."""
    probe = select(_INBOX.c.id).limit(1)
    connection = db.session.connection()
    if connection.execute(probe).first() is None:  # usually nobody waits at all
        return False
    if contact_ids is None:
        return True
    return any(connection.execute(probe.where(one_of(_INBOX.c.contact_id, part))).first() is not None
               for part in parts_for_one_of(contact_ids))


def settle(contact_ids: list[int] | None = None, *, limit: int = BATCH) -> int:
    """Chain waiting opt-outs into the ledger: all of these contacts', or the oldest `limit` of anyone's.

    Runs in the caller's transaction (the caller commits) and returns how many
    inbox rows it settled; 0, without taking any lock, when none wait.
    """
    session = db.session
    if session.info.get(_SETTLING) or not waiting(contact_ids):
        return 0
    ledger.lock_head()
    query = select(*_INBOX.c).order_by(_INBOX.c.id)
    if contact_ids is None:
        rows = session.execute(query.limit(limit)).all()
    else:
        rows = sorted((row for part in chunked(contact_ids)
                       for row in session.execute(query.where(one_of(_INBOX.c.contact_id, part)))),
                      key=lambda row: row.id)
    if not rows:
        return 0
    session.info[_SETTLING] = True
    try:
        _chain(rows)
    finally:
        session.info.pop(_SETTLING, None)
    return len(rows)


def settle_all() -> int:
    """Settle every waiting opt-out, committing batch by batch (the worker's task)."""
    total = 0
    while True:
        settled = settle()
        db.session.commit()
        total += settled
        if settled < BATCH:
            return total


def _chain(rows: list) -> None:
    """Append the withdraw events that `rows` ask for, skipping what already holds, then drop the rows."""
    for part in chunked(row.id for row in rows):
        db.session.execute(delete(_INBOX).where(one_of(_INBOX.c.id, part)))
    people = _by_id(Contact, {row.contact_id for row in rows})
    topics = _by_id(Topic, {row.topic_id for row in rows if row.topic_id is not None})
    states = _topic_states(rows)
    specs: list[dict] = []
    audited: list[tuple] = []
    done: set[tuple[int, int | None]] = set()
    for row in rows:
        contact = people.get(row.contact_id)
        topic = topics.get(row.topic_id)
        key = (row.contact_id, row.topic_id)
        if contact is None or contact.status == "erased" or key in done:
            continue
        if row.topic_id is not None and (topic is None or topic.kind != "marketing"):
            continue
        done.add(key)
        proof = dict(source=row.source, ip=row.ip, user_agent=row.user_agent, occurred_at=row.received_at)
        person = Actor(ActorKind.LINK, row.source, row.ip, row.user_agent)
        if topic is None:
            if contact.marketing_opt_out_event_id is None:
                # An opt-out from all marketing also suppresses the address: its own path.
                ledger.append_many(specs)
                specs = []
                contacts.record_consent(contact, action=ledger.WITHDRAW, topic=None, **proof)
                audited.append((person, "consent.withdraw", "contact", contact.id, {"topic": None}))
                engagement.note_own_unsubscribe(contact.id, row.delivery_id, row.received_at)
        elif states.get(key) != "unsubscribed":
            specs.append(contacts.consent_spec(contact, action=ledger.WITHDRAW, topic=topic, **proof))
            audited.append((person, "consent.withdraw", "contact", contact.id, {"topic": topic.key}))
            engagement.note_own_unsubscribe(contact.id, row.delivery_id, row.received_at)
    ledger.append_many(specs)
    # The person's one-click is audited when it enters the ledger, one entry per opt-out.
    audit.record_many(audited)


def _by_id(model, ids: set[int]) -> dict:
    return {obj.id: obj for part in chunked(ids)
            for obj in db.session.scalars(select(model).where(one_of(model.__table__.c.id, part)))}


def _topic_states(rows: list) -> dict[tuple[int, int], str]:
    states = {}
    for part in chunked(row.contact_id for row in rows if row.topic_id is not None):
        for contact_id, topic_id, state in db.session.execute(
                select(Subscription.contact_id, Subscription.topic_id, Subscription.state)
                .where(one_of(Subscription.__table__.c.contact_id, part))):
            states[(contact_id, topic_id)] = state
    return states

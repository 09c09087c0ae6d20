"""Helpers shared by the test modules: settings, row builders, page and mail readers, staff and API clients.

Fixtures live in conftest.py; everything a test module calls by name lives here, so test modules never import
from one another.
"""
from __future__ import annotations

import os
import re
import shutil
import time
from email import policy
from email.parser import BytesParser
from html import unescape
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit

from argon2 import PasswordHasher
from flask import g, has_app_context
from jinja2 import BytecodeCache
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from preference_center import contacts, ledger, links, optouts, staff
from preference_center.extensions import db
from preference_center.models import ConsentEvent, Contact, DataRequest, StaffUser, Subscription, Suppression, Topic

# -- test settings ------------------------------------------------------------------

PG_URL = os.environ.get("PC_TEST_DATABASE_URL")
BROKER_URL = os.environ.get("PC_TEST_BROKER_URL")
SECRETS = ["old-test-secret-0000000000", "new-test-secret-1111111111"]

UA = "Mozilla/5.0 (Linux; Android 14) TestPhone"
IP = "203.0.113.7"
LINK = re.compile(r"https://prefs\.example\.test/\S+")

PASSWORD = "correct horse battery"

# Argon2 at its smallest settings: the tests hash and check staff passwords hundreds of times.
CHEAP_PASSWORD_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


# -- databases ----------------------------------------------------------------------

def ensure_postgres_database(url: str) -> None:
    """Create the test database if the server lacks it."""
    parsed = make_url(url)
    admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if not conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": parsed.database}):
            conn.execute(text(f'CREATE DATABASE "{parsed.database}"'))
    admin.dispose()


def _reset_postgres() -> None:
    # DELETE on a handful of rows is much cheaper than TRUNCATE, which has to
    # lock and swap every table's files; sequences restart so ids repeat.
    statements = [f'DELETE FROM "{t.name}"' for t in reversed(db.metadata.sorted_tables)]
    sequences = db.session.scalars(text(
        "SELECT quote_ident(sequence_schema) || '.' || quote_ident(sequence_name) "
        "FROM information_schema.sequences WHERE sequence_schema = current_schema()")).all()
    statements += [f"ALTER SEQUENCE {name} RESTART" for name in sequences]
    db.session.connection().exec_driver_sql("; ".join(statements))
    db.session.commit()


def app_settings(folder: Path) -> dict:
    """The config a test app is built with: its files under `folder`, SQLite and an SQLite broker unless the
    PC_TEST_* variables name PostgreSQL and Redis."""
    return {
        "PC_ENV": "testing",
        "TESTING": True,
        "PC_INSTANCE_PATH": str(folder / "instance"),
        "SQLALCHEMY_DATABASE_URI": PG_URL or f"sqlite:///{folder / 'test.sqlite3'}",
        "PC_BROKER_URL": BROKER_URL or f"sqla+sqlite:///{folder / 'broker.sqlite3'}",
        "PC_SECRET_KEYS": SECRETS,
        "PC_SUPPRESSION_KEY": "test-suppression-key",
        "PC_BASE_URL": "https://prefs.example.test",
        "PC_RATELIMITS_ENABLED": False,
        "PC_MAIL_TRANSPORT": "outbox",
    }


def prepare_database(app, template: Path | None = None) -> None:
    """An empty schema for `app`: emptied tables on PostgreSQL; on SQLite fresh tables, or a copy of `template`
    (an empty schema built once per run) when given and the database file does not exist yet."""
    uri = app.config["SQLALCHEMY_DATABASE_URI"]
    with app.app_context():
        if uri.startswith("postgresql"):
            _reset_postgres()
        elif not (template and _copy_schema(template, uri)):
            db.create_all()
        ledger.ensure_head()
        db.session.commit()


def _copy_schema(template: Path, uri: str) -> bool:
    # A missing file means nothing has connected to it yet, so the copy cannot pull a file from under a connection.
    path = Path(uri.removeprefix("sqlite:///"))
    if not uri.startswith("sqlite:///") or path.exists():
        return False
    shutil.copyfile(template, path)
    return True


class SharedTemplateCache(BytecodeCache):
    """Compiled templates kept in memory for every app of the run (keyed by name, file and source checksum)."""

    def __init__(self):
        self._code: dict[str, bytes] = {}

    def load_bytecode(self, bucket) -> None:
        if bucket.key in self._code:
            bucket.bytecode_from_string(self._code[bucket.key])

    def dump_bytecode(self, bucket) -> None:
        self._code[bucket.key] = bucket.bytecode_to_string()


# -- rows built through the domain functions (inside an app context) -----------------

def _topic(key: str, kind: str = "marketing", basis: str = "consent", relationships=(), retired: bool = False) -> Topic:
    row = Topic(key=key, name=key.title(), kind=kind, legal_basis=basis,
                default_relationships=list(relationships), retired=retired, description="")
    db.session.add(row)
    db.session.flush()
    return row


def _contact(email: str, relationship: str = "prospect", **fields) -> Contact:
    row, _ = contacts.upsert(email, {"relationship": relationship, **fields}, source="test")
    return row


def _get_topic(key: str) -> Topic:
    return db.session.scalar(select(Topic).where(Topic.key == key))


def _subscriber(topic: Topic, email: str, **fields) -> Contact:
    """A contact with confirmed consent to `topic`, committed."""
    row = _contact(email, **fields)
    contacts.record_consent(row, action="grant", topic=topic, source="test", confirmed=True)
    db.session.commit()
    return row


# Used as `factories.topic(...)`, `factories.contact(...)`, `factories.subscriber(...)`, `factories.get_topic(...)`.
factories = SimpleNamespace(topic=_topic, contact=_contact, subscriber=_subscriber, get_topic=_get_topic)


def drain(campaign_id: int, size: int = 100) -> list[int]:
    """Start what is due, then plan and send a campaign batch by batch, as the worker does; the batch ids."""
    from preference_center import campaigns, sending

    campaigns.start_due()
    batches = []
    while (batch := sending.plan_chunk(campaign_id, size)) is not None:
        sending.send_batch(batch)
        batches.append(batch)
    return batches


# -- pages --------------------------------------------------------------------------

def csrf_token(html: str) -> str:
    """The CSRF token of the first form in a page."""
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html) or re.search(
        r'value="([^"]+)"[^>]*name="csrf_token"', html)
    assert match, "page has no CSRF token"
    return match.group(1)


def path_of(url: str) -> str:
    return urlsplit(url).path


def text_of(html: str) -> str:
    """A page's text with tags dropped, entities decoded and white space collapsed."""
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html)))


# -- recipients (each opens its own app context) ------------------------------------

def make_contact(app, email="ann@example.com", **fields) -> int:
    with app.app_context():
        contact = factories.contact(email, **fields)
        db.session.commit()
        return contact.id


def grant(app, contact_id: int, key: str | None, confirmed=True) -> None:
    with app.app_context():
        contact = db.session.get(Contact, contact_id)
        topic = factories.get_topic(key) if key else None
        contacts.record_consent(contact, action=ledger.GRANT, topic=topic, source="test", confirmed=confirmed,
                                legal_basis="consent")
        db.session.commit()


def token(app, purpose: str, contact_id: int, argument=0) -> str:
    with app.app_context():
        return links.make(purpose, db.session.get(Contact, contact_id), argument)


def old_token(monkeypatch, app, purpose: str, contact_id: int, argument, seconds_ago: int) -> str:
    """A genuine token signed `seconds_ago` (itsdangerous reads the clock through its module's `time`)."""
    import itsdangerous.timed

    monkeypatch.setattr(itsdangerous.timed, "time", SimpleNamespace(time=lambda: time.time() - seconds_ago))
    try:
        return token(app, purpose, contact_id, argument)
    finally:
        monkeypatch.undo()


def topic_id(app, key: str) -> int:
    with app.app_context():
        return factories.get_topic(key).id


def settle(app) -> int:
    """Chain waiting one-click opt-outs into the ledger, as the worker does every second."""
    with app.app_context():
        return optouts.settle_all()


def states(app, contact_id: int) -> dict[str, str]:
    """What the sending rule says now, per topic key (waiting one-click opt-outs settled first, as readers do)."""
    settle(app)
    with app.app_context():
        contact = db.session.get(Contact, contact_id)
        return {v["topic"]: v["state"] for v in contacts.subscriptions_view(contact)}


def events(app, contact_id: int | None = None) -> list[ConsentEvent]:
    with app.app_context():
        query = select(ConsentEvent).order_by(ConsentEvent.id)
        if contact_id is not None:
            query = query.where(ConsentEvent.contact_id == contact_id)
        rows = db.session.scalars(query).all()
        db.session.expunge_all()
        return rows


def snapshot(app) -> tuple:
    """Everything a recipient page could change (waiting one-click opt-outs settled first)."""
    settle(app)
    with app.app_context():
        count = lambda model: db.session.scalar(select(func.count()).select_from(model))  # noqa: E731
        subs = db.session.execute(select(Subscription.contact_id, Subscription.topic_id, Subscription.state,
                                         Subscription.event_id).order_by(Subscription.contact_id,
                                                                         Subscription.topic_id)).all()
        people = db.session.execute(select(Contact.id, Contact.email, Contact.name, Contact.status,
                                           Contact.marketing_opt_out_event_id, Contact.token_version)).all()
        return (count(ConsentEvent), count(DataRequest), count(Suppression), tuple(subs), tuple(people))


def ledger_ok(app) -> bool:
    with app.app_context():
        result = ledger.verify()
        assert result.ok, result.problems
        return result.ok


# -- mail ---------------------------------------------------------------------------

def outbox(app) -> list:
    """The messages the outbox transport wrote, oldest first."""
    folder = Path(app.config["PC_INSTANCE_PATH"]) / "outbox"
    messages = []
    for path in sorted(folder.glob("*.eml")):
        with path.open("rb") as fh:
            messages.append(BytesParser(policy=policy.default).parse(fh))
    return messages


def mailed_link(app, to: str) -> str:
    """The path of the link in the last message sent to `to`."""
    mine = [m for m in outbox(app) if m["To"] == to]
    assert mine, f"no mail to {to}"
    body = mine[-1].get_body(preferencelist=("plain",)).get_content()
    return path_of(LINK.search(body).group(0))


# -- clients ------------------------------------------------------------------------

def make_staff(email: str, role: str, password: str = PASSWORD) -> StaffUser:
    user = staff.create_user(email, role, password)
    db.session.commit()
    return user


class Staff:
    """A browser-like client of the staff pages: keeps the session and sends CSRF tokens."""

    def __init__(self, client):
        self.client = client

    @staticmethod
    def _fresh_request() -> None:
        # Requests share the test's app context, where Flask-WTF caches the CSRF
        # token of whichever client asked last and whether it was valid, and
        # Flask-Babel the locale it chose; each request must start without them,
        # as it does in a real server.
        if has_app_context():
            g.pop("csrf_token", None)
            g.pop("csrf_valid", None)
            g.pop("_flask_babel", None)

    def login(self, email: str, password: str = PASSWORD, **kwargs):
        self._fresh_request()
        page = self.client.get("/admin/login")
        self._fresh_request()
        return self.client.post("/admin/login", data={"csrf_token": csrf_token(page.text), "email": email,
                                                      "password": password}, **kwargs)

    def token(self) -> str:
        # Any signed-in page carries the session's token (in the sign-out form); else the sign-in page does.
        self._fresh_request()
        page = self.client.get("/admin/")
        if page.status_code != 200:
            page = self.client.get("/admin/login")
        return csrf_token(page.text)

    def signed_in(self) -> bool:
        self._fresh_request()
        return self.client.get("/admin/").status_code == 200

    def get(self, path: str, **kwargs):
        self._fresh_request()
        return self.client.get(path, **kwargs)

    def post(self, path: str, data: dict | None = None, **kwargs):
        token = self.token()
        self._fresh_request()
        return self.client.post(path, data={"csrf_token": token, **(data or {})}, **kwargs)


class Api:
    """A JSON client with the bearer token set."""

    def __init__(self, client, token):
        self.client, self.headers = client, {"Authorization": f"Bearer {token}"}

    def __getattr__(self, method):
        def call(path, **kwargs):
            headers = {**self.headers, **kwargs.pop("headers", {})}
            return getattr(self.client, method)(f"/api/v1{path}", headers=headers, **kwargs)
        return call


def unlock_details(client, app, contact_id: int) -> None:
    """Open the mailed link that shows and unlocks a person's details on their data page, in `client`'s session."""
    page = f"/p/{token(app, links.PREFERENCES, contact_id)}/data"
    opened = client.get(f"{page}/details/{token(app, links.STEP_UP, contact_id, 'details')}")
    assert opened.status_code == 303, opened.status_code


def confirm_and_post(staff: Staff, path: str, data: dict | None = None):
    """Post a staff form that asks for confirmation first, then confirm what the confirmation step showed."""
    step = staff.post(path, data or {})
    assert step.status_code == 200 and 'name="confirm" value="1"' in step.text, step.text[:2000]
    hidden = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', step.text))
    hidden.pop("csrf_token", None)
    return staff.post(path, {**(data or {}), **{k: unescape(v) for k, v in hidden.items()}})

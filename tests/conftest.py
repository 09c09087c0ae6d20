"""Fixtures: a fresh app and database per test, on SQLite or (PC_TEST_DATABASE_URL) PostgreSQL."""
from __future__ import annotations

import os
import re
from urllib.parse import urlsplit

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from preference_center import create_app, ledger
from preference_center.extensions import db

PG_URL = os.environ.get("PC_TEST_DATABASE_URL")
BROKER_URL = os.environ.get("PC_TEST_BROKER_URL")
SECRETS = ["old-test-secret-0000000000", "new-test-secret-1111111111"]


def ensure_postgres_database(url: str) -> None:
    """Create the test database if the server lacks it."""
    parsed = make_url(url)
    admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if not conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": parsed.database}):
            conn.execute(text(f'CREATE DATABASE "{parsed.database}"'))
    admin.dispose()


@pytest.fixture(scope="session")
def postgres_schema():
    """On PostgreSQL: build the schema once per run; tests truncate between them."""
    if not PG_URL:
        yield None
        return
    ensure_postgres_database(PG_URL)
    app = create_app({"PC_ENV": "testing", "SQLALCHEMY_DATABASE_URI": PG_URL, "PC_INSTANCE_PATH": "/tmp/pc-test-session"})
    with app.app_context():
        db.drop_all()
        db.create_all()
        db.session.execute(text("DROP TABLE IF EXISTS alembic_version"))
        db.session.commit()
        db.engine.dispose()
    yield PG_URL


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


@pytest.fixture
def app_config(tmp_path, postgres_schema):
    """The config a test app is built with; tests may change it before using `app`."""
    return {
        "PC_ENV": "testing",
        "TESTING": True,
        "PC_INSTANCE_PATH": str(tmp_path / "instance"),
        "SQLALCHEMY_DATABASE_URI": postgres_schema or f"sqlite:///{tmp_path / 'test.sqlite3'}",
        "PC_BROKER_URL": BROKER_URL or f"sqla+sqlite:///{tmp_path / 'broker.sqlite3'}",
        "PC_SECRET_KEYS": SECRETS,
        "PC_SUPPRESSION_KEY": "test-suppression-key",
        "PC_BASE_URL": "https://prefs.example.test",
        "PC_RATELIMITS_ENABLED": False,
        "PC_MAIL_TRANSPORT": "outbox",
    }


def prepare_database(app) -> None:
    """An empty schema for `app`: fresh tables on SQLite, emptied tables on PostgreSQL."""
    with app.app_context():
        if app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
            _reset_postgres()
        else:
            db.create_all()
        ledger.ensure_head()
        db.session.commit()


@pytest.fixture
def app(app_config):
    app = create_app(app_config)
    prepare_database(app)
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def ctx(app):
    """An application context for tests that call domain code directly."""
    with app.app_context():
        yield app
        db.session.rollback()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def api_token(app):
    from preference_center import tokens

    with app.app_context():
        _, plaintext = tokens.create("tests")
        db.session.commit()
    return plaintext


class Api:
    """A JSON client with the bearer token set."""

    def __init__(self, client, token):
        self.client, self.headers = client, {"Authorization": f"Bearer {token}"}

    def __getattr__(self, method):
        def call(path, **kwargs):
            headers = {**self.headers, **kwargs.pop("headers", {})}
            return getattr(self.client, method)(f"/api/v1{path}", headers=headers, **kwargs)
        return call


@pytest.fixture
def api(client, api_token):
    return Api(client, api_token)


@pytest.fixture
def topics(api):
    """Three topics: consent-based news, legitimate-interest tips for customers, system orders."""
    assert api.put("/topics/news", json={"name": "News", "kind": "marketing", "legal_basis": "consent"}).status_code == 201
    assert api.put("/topics/tips", json={"name": "Tips", "kind": "marketing", "legal_basis": "legitimate_interest",
                                         "default_relationships": ["customer"]}).status_code == 201
    assert api.put("/topics/orders", json={"name": "Orders", "kind": "system"}).status_code == 201
    return ("news", "tips", "orders")


def csrf_token(html: str) -> str:
    """The CSRF token of the first form in a page."""
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html) or re.search(
        r'value="([^"]+)"[^>]*name="csrf_token"', html)
    assert match, "page has no CSRF token"
    return match.group(1)


def path_of(url: str) -> str:
    return urlsplit(url).path

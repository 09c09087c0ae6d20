"""Fixtures: a fresh app and database per test, on SQLite or (PC_TEST_DATABASE_URL) PostgreSQL.

Only fixtures live here; the helpers they and the tests call are in helpers.py.
"""
from __future__ import annotations

import pytest
from sqlalchemy import text

from preference_center import create_app, optouts
from preference_center.extensions import db

from .fake_sendgrid import FakeSendGrid
from .helpers import (
    CHEAP_PASSWORD_HASHER,
    PG_URL,
    Api,
    SharedTemplateCache,
    Staff,
    app_settings,
    ensure_postgres_database,
    make_staff,
    prepare_database,
)


@pytest.fixture(scope="session", autouse=True)
def cheap_password_hashing():
    """Staff passwords hashed with tiny argon2 settings in tests (production settings are untouched)."""
    from preference_center import staff

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(staff, "_hasher", CHEAP_PASSWORD_HASHER)
        yield


@pytest.fixture(scope="session", autouse=True)
def url_builders_compiled_once():
    """Every test builds its own app, and most of create_app's time is werkzeug compiling two URL builders per
    rule. A builder depends only on the rule's text, parsed parts and default names (rules that fold a default
    into the URL are left alone), so each is compiled once per run. Without that private method: no change."""
    from werkzeug.routing.rules import Rule

    compile_builder = getattr(Rule, "_compile_builder", None)
    if compile_builder is None:
        yield
        return
    built = {}

    def compile_once(self, append_unknown=True):
        defaults = self.defaults or {}
        if any(dynamic and part in defaults for dynamic, part in self._trace):
            return compile_builder(self, append_unknown)
        key = (self.rule, tuple(self._trace), tuple(defaults), append_unknown)
        if key not in built:
            built[key] = compile_builder(self, append_unknown)
        return built[key]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Rule, "_compile_builder", compile_once)
        yield


@pytest.fixture(scope="session")
def template_cache():
    """Templates compiled once per run and shared by every test's app."""
    return SharedTemplateCache()


@pytest.fixture(scope="session")
def postgres_schema():
    """On PostgreSQL: build the schema once per run; tests truncate between them."""
    if not PG_URL:
        yield None
        return
    ensure_postgres_database(PG_URL)
    app = create_app({"PC_ENV": "testing", "SQLALCHEMY_DATABASE_URI": PG_URL,
                      "PC_INSTANCE_PATH": "/tmp/pc-test-session"})
    with app.app_context():
        db.drop_all()
        db.create_all()
        db.session.execute(text("DROP TABLE IF EXISTS alembic_version"))
        db.session.commit()
        db.engine.dispose()
    yield PG_URL


@pytest.fixture(scope="session")
def sqlite_schema(tmp_path_factory, postgres_schema):
    """On SQLite: an empty schema built once per run; each test's database starts as a copy of it."""
    if postgres_schema:
        return None
    folder = tmp_path_factory.mktemp("schema")
    app = create_app(app_settings(folder))
    prepare_database(app)
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
    return folder / "test.sqlite3"


@pytest.fixture
def fake():
    """The fake SendGrid provider (tests/fake_sendgrid.py) on a local port."""
    with FakeSendGrid() as server:
        yield server


@pytest.fixture
def app_config(request, tmp_path, postgres_schema):
    """The config a test app is built with; tests may change it before using `app`.

    Tests marked `@pytest.mark.sendgrid(**settings)` send through the real sendgrid client to `fake`, with those
    settings on top.
    """
    config = app_settings(tmp_path)
    marker = request.node.get_closest_marker("sendgrid")
    if marker is not None:
        config.update({"PC_MAIL_TRANSPORT": "sendgrid", "PC_SENDGRID_API_KEY": "SG.test-key",
                       "PC_SENDGRID_API_HOST": request.getfixturevalue("fake").url, **marker.kwargs})
    return config


@pytest.fixture
def app(app_config, sqlite_schema, template_cache):
    app = create_app(app_config)
    app.jinja_env.bytecode_cache = template_cache
    prepare_database(app, sqlite_schema)
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
    optouts.dispose_engine(app)


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


@pytest.fixture
def api(client, api_token):
    return Api(client, api_token)


@pytest.fixture
def topics(api):
    """Three topics: consent-based news, legitimate-interest tips for customers, system orders."""
    assert api.put("/topics/news", json={"name": "News", "kind": "marketing",
                                         "legal_basis": "consent"}).status_code == 201
    assert api.put("/topics/tips", json={"name": "Tips", "kind": "marketing", "legal_basis": "legitimate_interest",
                                         "default_relationships": ["customer"]}).status_code == 201
    assert api.put("/topics/orders", json={"name": "Orders", "kind": "system"}).status_code == 201
    return ("news", "tips", "orders")


# -- signed-in staff clients --------------------------------------------------------

@pytest.fixture
def as_admin(ctx, client):
    make_staff("boss@example.com", "admin")
    staff_client = Staff(client)
    assert staff_client.login("boss@example.com").status_code == 302
    return staff_client


@pytest.fixture
def as_marketer(ctx, client):
    make_staff("mia@example.com", "marketer")
    staff_client = Staff(client)
    assert staff_client.login("mia@example.com").status_code == 302
    return staff_client


@pytest.fixture
def as_viewer(ctx, client):
    make_staff("vic@example.com", "viewer")
    staff_client = Staff(client)
    assert staff_client.login("vic@example.com").status_code == 302
    return staff_client

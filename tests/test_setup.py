"""Migrations match the models; configuration refuses unsafe production setups."""
from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from preference_center import config, create_app
from preference_center.extensions import db
from preference_center.models import LedgerHead

from .helpers import PG_URL, ensure_postgres_database


@pytest.fixture
def empty_database(tmp_path):
    """A brand-new database with no tables: a SQLite file, or a fresh PostgreSQL database."""
    if not PG_URL:
        yield f"sqlite:///{tmp_path / 'migrated.sqlite3'}"
        return
    ensure_postgres_database(PG_URL)
    name = f"pc_migrate_{uuid.uuid4().hex[:8]}"
    admin = create_engine(make_url(PG_URL).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def test_db_upgrade_builds_a_schema_that_matches_the_models(tmp_path, empty_database):
    app = create_app({"PC_ENV": "testing", "SQLALCHEMY_DATABASE_URI": empty_database,
                      "PC_INSTANCE_PATH": str(tmp_path / "instance")})
    result = app.test_cli_runner().invoke(args=["db", "upgrade"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        with db.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(context, db.metadata)
        assert diff == [], f"migrations and models differ: {diff}"
        head = db.session.get(LedgerHead, 1)
        assert (head.last_id, head.last_hash) == (0, "0" * 64)
        db.engine.dispose()


def test_production_refuses_the_default_secret(monkeypatch, tmp_path):
    monkeypatch.setenv("PC_ENV", "production")
    monkeypatch.delenv("PC_SECRET_KEYS", raising=False)
    with pytest.raises(config.ConfigError, match="PC_SECRET_KEYS"):
        create_app({"PC_INSTANCE_PATH": str(tmp_path)})
    monkeypatch.setenv("PC_SECRET_KEYS", config.DEFAULT_SECRET)
    with pytest.raises(config.ConfigError):
        create_app({"PC_INSTANCE_PATH": str(tmp_path)})
    monkeypatch.setenv("PC_SECRET_KEYS", "short")
    with pytest.raises(config.ConfigError):
        create_app({"PC_INSTANCE_PATH": str(tmp_path)})


SIGNING = "kJ3v9Qx2LmZ8rT4wYp6NbH1cD5fG7sA0"
SUPPRESSION = "Vq8Zr2Lx6Nm4Tb0Wc1Ys3Hd5Kf7Jg9Pu"


@pytest.mark.parametrize("keys, suppression, names", [
    ("aaaaaaaaaaaaaaaaaaaaaaaa", SUPPRESSION, "PC_SECRET_KEYS"),            # long but guessable
    ("abababababababababababab", SUPPRESSION, "PC_SECRET_KEYS"),
    (SIGNING, None, "PC_SUPPRESSION_KEY"),                                 # never derived from the signing keys
    (SIGNING, "0000000000000000000000", "PC_SUPPRESSION_KEY"),
    (SIGNING, SIGNING, "PC_SUPPRESSION_KEY"),                              # would rotate away with them
])
def test_production_refuses_weak_or_missing_secrets(monkeypatch, tmp_path, keys, suppression, names):
    monkeypatch.setenv("PC_ENV", "production")
    monkeypatch.setenv("PC_SECRET_KEYS", keys)
    if suppression is None:
        monkeypatch.delenv("PC_SUPPRESSION_KEY", raising=False)
    else:
        monkeypatch.setenv("PC_SUPPRESSION_KEY", suppression)
    with pytest.raises(config.ConfigError, match=names):
        create_app({"PC_INSTANCE_PATH": str(tmp_path)})


@pytest.mark.slow
def test_a_refused_secret_is_one_line_on_the_command_line_not_a_traceback(tmp_path):
    env = {**os.environ, "PC_ENV": "production", "PC_SECRET_KEYS": "aaaaaaaaaaaaaaaaaaaa",
           "PC_INSTANCE_PATH": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "preference_center.cli", "routes"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("preference-center: PC_ENV=production needs PC_SECRET_KEYS")


def test_production_starts_with_real_secrets(monkeypatch, tmp_path):
    monkeypatch.setenv("PC_ENV", "production")
    monkeypatch.setenv("PC_SECRET_KEYS", f"{SUPPRESSION[::-1]},{SIGNING}")
    monkeypatch.setenv("PC_SUPPRESSION_KEY", SUPPRESSION)
    app = create_app({"PC_INSTANCE_PATH": str(tmp_path)})
    assert app.config["SECRET_KEY"] == SIGNING
    assert app.config["SESSION_COOKIE_SECURE"] is True
    assert "outbox" not in app.blueprints
    assert app.test_client().get("/healthz").headers["Strict-Transport-Security"].startswith("max-age=")


def test_settings_come_from_pc_variables(monkeypatch, tmp_path):
    monkeypatch.setenv("PC_DATABASE_URL", "sqlite:////tmp/elsewhere.sqlite3")
    monkeypatch.setenv("PC_BASE_URL", "https://prefs.example.com/")
    monkeypatch.setenv("PC_MAIL_TRANSPORT", "smtp")
    values = config.load(tmp_path)
    assert values["SQLALCHEMY_DATABASE_URI"] == "sqlite:////tmp/elsewhere.sqlite3"
    assert values["PC_BASE_URL"] == "https://prefs.example.com"
    assert values["PC_MAIL_TRANSPORT"] == "smtp"


def test_defaults_need_no_servers(monkeypatch, tmp_path):
    for name in ("PC_DATABASE_URL", "PC_BROKER_URL", "PC_MAIL_TRANSPORT"):
        monkeypatch.delenv(name, raising=False)
    values = config.load(tmp_path)
    assert values["SQLALCHEMY_DATABASE_URI"].startswith("sqlite:///")
    assert values["PC_BROKER_URL"].startswith("sqla+sqlite:///")
    assert values["PC_MAIL_TRANSPORT"] == "outbox"


def test_bad_numbers_in_settings_are_reported(monkeypatch, tmp_path):
    monkeypatch.setenv("PC_BATCH_SIZE", "lots")
    with pytest.raises(config.ConfigError, match="PC_BATCH_SIZE"):
        config.load(tmp_path)


def test_the_upgrade_to_batches_as_plans_keeps_every_open_batch_recipient_and_its_claim(tmp_path, empty_database):
    """0013_batch_is_the_plan (after revision 0010_engagement_folding): an open batch's recipients move onto the
    batch, its request in flight becomes triples, and the rows still queued go (they are written again when sent);
    rows with an outcome stay."""
    from sqlalchemy import insert, select

    from preference_center.models import Campaign, CampaignBatch, Contact, Delivery, Topic

    app = create_app({"PC_ENV": "testing", "SQLALCHEMY_DATABASE_URI": empty_database,
                      "PC_INSTANCE_PATH": str(tmp_path / "instance")})
    runner = app.test_cli_runner()
    assert runner.invoke(args=["db", "upgrade", "0010_engagement_folding"]).exit_code == 0
    with app.app_context():
        people = [db.session.execute(insert(Contact.__table__).values(email=f"p{i}@example.com", email_hash=f"h{i}")
                                     .returning(Contact.__table__.c.id)).scalar_one() for i in range(3)]
        topic = db.session.execute(insert(Topic.__table__).values(key="news", name="News", kind="marketing",
                                                                  legal_basis="consent", default_relationships=[],
                                                                  description="").returning(Topic.__table__.c.id)
                                   ).scalar_one()
        campaign = db.session.execute(insert(Campaign.__table__).values(
            name="C", topic_id=topic, subject="S", html="", text="T", status="sending", created_by="test")
            .returning(Campaign.__table__.c.id)).scalar_one()
        batches = CampaignBatch.__table__
        batch = db.session.execute(insert(batches).values(
            campaign_id=campaign, first_contact_id=people[0], last_contact_id=people[2], size=3, status="claimed",
            attempts=1).returning(batches.c.id)).scalar_one()
        rows = [db.session.execute(insert(Delivery.__table__).values(
            campaign_id=campaign, batch_id=batch, contact_id=person, status=status, event_id=7, attempts=1)
            .returning(Delivery.__table__.c.id)).scalar_one()
            for person, status in zip(people, ("sent", "queued", "queued"), strict=True)]
        db.session.execute(text("UPDATE campaign_batches SET in_flight = :ids").bindparams(
            db.bindparam("ids", type_=db.JSON)), {"ids": [rows[1]]})
        db.session.commit()
        db.session.remove()
        db.engine.dispose()
    assert runner.invoke(args=["db", "upgrade"]).exit_code == 0
    with app.app_context():
        plan = db.session.get(CampaignBatch, batch)
        assert plan.contact_ids == people
        assert plan.in_flight == [[rows[1], people[1], 7]]
        assert db.session.scalars(select(Delivery.status).where(Delivery.batch_id == batch)).all() == ["sent"]
        db.session.remove()
        db.engine.dispose()


def test_the_lean_deliveries_migration_goes_down_and_up_again_keeping_its_guarantees(tmp_path, empty_database):
    """0014_lean_deliveries: campaign and contact lose their foreign keys (nothing deletes a contact, or a
    campaign that has deliveries) and the downgrade puts them back; campaigns keep one delivery per contact,
    campaign rows (no system message) stay out of the one-per-system-message index, and on SQLite the table
    stays AUTOINCREMENT (delivery ids are taken before rows are written)."""
    from sqlalchemy import insert, inspect
    from sqlalchemy.exc import IntegrityError

    from preference_center.models import Delivery

    app = create_app({"PC_ENV": "testing", "SQLALCHEMY_DATABASE_URI": empty_database,
                      "PC_INSTANCE_PATH": str(tmp_path / "instance")})
    runner = app.test_cli_runner()
    for step in (["upgrade"], ["downgrade", "0010_batch_is_the_plan"], ["upgrade"]):
        result = runner.invoke(args=["db", *step])
        assert result.exit_code == 0, result.output
        with app.app_context():
            names = {fk["name"] for fk in inspect(db.engine).get_foreign_keys("deliveries")}
            assert ("fk_deliveries_contact_id_contacts" in names) is (step[0] == "downgrade")
            assert ("fk_deliveries_campaign_id_campaigns" in names) is (step[0] == "downgrade")
            db.engine.dispose()
    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            assert "AUTOINCREMENT" in db.session.scalar(text("SELECT sql FROM sqlite_master WHERE name = 'deliveries'"))
        row = {"campaign_id": 9, "contact_id": 1, "status": "sent", "attempts": 1}
        db.session.execute(insert(Delivery.__table__), [row, {**row, "contact_id": 2}])
        with pytest.raises(IntegrityError), db.session.begin_nested():
            db.session.execute(insert(Delivery.__table__).values(**row))
        db.session.rollback()
        db.session.remove()
        db.engine.dispose()

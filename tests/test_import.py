"""CSV import: upload, mapping, preview, a ledger-recorded apply, and big files in a real Celery worker."""
from __future__ import annotations

import io
import os
import time
from html import unescape
from pathlib import Path

import pytest
from celery.contrib.testing.worker import start_worker
from sqlalchemy import func, select

import preference_center.tasks  # noqa: F401  (registers preference_center.tasks.import_csv)
from preference_center import contacts, imports, ledger, optouts, rules
from preference_center.extensions import db
from preference_center.models import ConsentEvent, Contact, ImportJob, Subscription

from .helpers import Staff, factories, make_staff, text_of

SOURCE = "Trade fair 2026 sign-up sheet"


@pytest.fixture
def news(ctx):
    topic = factories.topic("news")
    topic.name = "News"
    factories.topic("tips", basis="legitimate_interest", relationships=["customer"])
    db.session.commit()
    return topic


def upload(staff_client: Staff, content: bytes | str, filename: str = "contacts.csv"):
    data = content.encode("utf-8") if isinstance(content, str) else content
    return staff_client.post("/admin/imports", {"file": (io.BytesIO(data), filename)},
                             content_type="multipart/form-data")


def latest_job() -> ImportJob:
    db.session.expire_all()
    return db.session.scalar(select(ImportJob).order_by(ImportJob.id.desc()))


def settings(**overrides) -> dict:
    data = {"has_header": "y", "map_email": "0", "map_name": "1", "map_relationship": "2",
            "legal_basis": "consent", "source_text": SOURCE, "topic": "news", "consent_collected": "y",
            "confirmed_opt_in": "y"}
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def preview(staff_client: Staff, job: ImportJob, **overrides):
    return staff_client.post(f"/admin/imports/{job.id}/preview", settings(**overrides))


def ledger_count() -> int:
    return db.session.scalar(select(func.count(ConsentEvent.id)))


def states(email: str) -> dict:
    db.session.expire_all()
    return {s["topic"]: s["state"] for s in contacts.subscriptions_view(contacts.find(email))}


MIXED = (
    "\ufeffEmail;Name;Relationship\r\n"       # line 1: header, with a byte-order mark
    "new@example.com;New Person;customer\r\n"  # 2: new
    "same@example.com;Same;prospect\r\n"       # 3: existing, unchanged
    "OLD@example.com;Renamed;customer\r\n"     # 4: existing, name and relationship change
    "not-an-address;X;customer\r\n"            # 5: invalid
    "\r\n"                                     # 6: blank, ignored
    "bounced@example.com;B;customer\r\n"       # 7: suppressed (hard bounce)
    "gone@example.com;G;customer\r\n"          # 8: erased earlier
    "new@example.com;Again;customer\r\n"       # 9: duplicate of line 2
    "odd@example.com;Odd;friend\r\n"           # 10: invalid relationship
    ";No Email;customer\r\n"                   # 11: no address
)


@pytest.fixture
def population(news):
    factories.contact("same@example.com", name="Same")
    factories.contact("old@example.com", name="Old")
    bounced = factories.contact("bounced@example.com")
    contacts.suppress(bounced.email_hash, "all", "hard_bounce", source="test", contact=bounced)
    gone = factories.contact("gone@example.com")
    contacts.erase(gone, source="test")
    db.session.commit()


# -- upload and mapping -------------------------------------------------------------

def test_upload_understands_semicolons_a_byte_order_mark_and_the_header(as_marketer, news):
    response = upload(as_marketer, MIXED)
    assert response.status_code == 302
    job = latest_job()
    assert (job.delimiter, job.has_header, job.columns, job.total) == (";", True, ["Email", "Name", "Relationship"], 9)
    assert job.mapping == {"email": 0, "name": 1, "relationship": 2}
    assert Path(job.stored_path).parent == Path(as_marketer.client.application.config["PC_INSTANCE_PATH"]) / "uploads"
    page = as_marketer.get(f"/admin/imports/{job.id}").text
    assert '<option selected value="0">1: Email</option>' in page


def test_a_file_without_a_header_starts_with_data(as_marketer, news):
    upload(as_marketer, "a@example.com,Ann\nb@example.com,Bob\n")
    job = latest_job()
    assert (job.delimiter, job.has_header, job.columns, job.total, job.mapping) == (
        ",", False, ["Column 1", "Column 2"], 2, {})


@pytest.mark.parametrize("content, message", [
    ("Email,Name\n".encode("utf-16"), "not UTF-8"),
    ("Ünïcode,Nämé\n".encode("latin-1"), "not UTF-8"),
    (b"", "the file is empty"),
    (b"\n\n", "the file has no rows"),
])
def test_unreadable_files_are_refused(as_marketer, news, content, message):
    response = upload(as_marketer, content)
    assert response.status_code == 422 and message in unescape(response.text)
    assert latest_job() is None
    uploads = Path(as_marketer.client.application.config["PC_INSTANCE_PATH"]) / "uploads"
    assert not list(uploads.glob("*")) if uploads.exists() else True


def test_an_upload_without_the_csrf_token_is_refused(as_marketer, news):
    as_marketer._fresh_request()
    response = as_marketer.client.post("/admin/imports", data={"file": (io.BytesIO(MIXED.encode()), "x.csv")},
                                       content_type="multipart/form-data")
    assert response.status_code == 422 and "The form has expired" in response.text
    assert latest_job() is None


def test_a_viewer_cannot_upload(as_viewer, news):
    assert upload(as_viewer, MIXED).status_code == 403
    assert latest_job() is None


# -- preview ------------------------------------------------------------------------

def test_the_preview_counts_what_will_happen_and_lists_invalid_lines_without_changing_anything(
        as_marketer, population):
    before = ledger_count()
    upload(as_marketer, MIXED)
    job = latest_job()
    response = preview(as_marketer, job)
    assert response.status_code == 302
    job = latest_job()
    assert job.status == "previewed"
    assert job.preview["counts"] == {"new": 1, "update": 1, "unchanged": 1, "suppressed": 1, "erased": 1,
                                     "duplicate": 1, "invalid": 3, "grants": 3, "kept_opt_out": 0}
    assert [(i["line"], i["value"]) for i in job.preview["invalid"]] == [
        (5, "not-an-address"), (10, "odd@example.com"), (11, "")]
    assert "relationship must be one of" in job.preview["invalid"][1]["error"]
    assert ledger_count() == before and contacts.find("new@example.com") is None
    page = text_of(as_marketer.get(f"/admin/imports/{job.id}").text)
    assert "1 new contact 1 existing contact updated" in page and "3 invalid rows" in page and "1 skipped: erased" in page
    assert "5 not-an-address invalid email address" in page
    assert "Import 3 contacts" in page


@pytest.mark.parametrize("overrides, message", [
    ({"map_email": ""}, "choose the column that holds the email address"),
    ({"legal_basis": ""}, "choose the legal basis"),
    ({"source_text": "  "}, "say where these contacts come from"),
    ({"consent_collected": None, "confirmed_opt_in": None}, "tick the box stating that these people gave"),
    ({"topic": ""}, "choose the topic these people consented to"),
    ({"legal_basis": "legitimate_interest"}, "needs the legal basis 'consent'"),
    ({"legal_basis": "legitimate_interest", "topic": ""}, "consent statements only apply"),
    ({"confirmed_opt_in": "y", "consent_collected": None}, "tick the box stating"),
    ({"map_name": "0"}, "mapped twice"),
])
def test_an_import_needs_an_email_column_a_basis_a_source_and_for_consent_the_staff_statement(
        as_marketer, news, overrides, message):
    upload(as_marketer, MIXED)
    job = latest_job()
    response = preview(as_marketer, job, **overrides)
    assert response.status_code == 422
    assert message in unescape(response.text)
    assert latest_job().status == "uploaded"


# -- applying -----------------------------------------------------------------------

def run_import(staff_client: Staff, content: str, **overrides) -> ImportJob:
    upload(staff_client, content)
    job = latest_job()
    assert preview(staff_client, job, **overrides).status_code == 302
    response = staff_client.post(f"/admin/imports/{job.id}/run")
    assert response.status_code == 302
    return latest_job()


def test_an_import_records_every_change_as_a_ledger_event_from_the_import(as_marketer, population, app):
    before = ledger_count()
    job = run_import(as_marketer, MIXED)
    assert job.status == "done" and job.processed == job.total == 9
    assert (job.created_count, job.updated_count, job.unchanged_count, job.skipped_count, job.invalid_count,
            job.granted_count) == (1, 1, 1, 3, 3, 3)
    new = contacts.find("new@example.com")
    assert (new.name, new.relationship) == ("New Person", "customer")
    old = contacts.find("old@example.com")
    assert (old.name, old.relationship) == ("Renamed", "customer")
    events = db.session.scalars(select(ConsentEvent).where(ConsentEvent.id > before).order_by(ConsentEvent.id)).all()
    assert {e.source for e in events if e.action != "grant"} == {f"import:{job.id}"}
    grants = [e for e in events if e.action == "grant"]
    assert len(grants) == 3 and {e.source for e in grants} == {f"import:{job.id}:{SOURCE}"}
    assert all(e.confirmed and e.legal_basis == "consent" for e in grants)
    assert {e.action for e in events} == {"relationship", "rectify", "grant"}
    assert states("new@example.com")["news"] == "subscribed"
    assert contacts.find("bounced@example.com").name is None, "suppressed rows are not touched"
    assert db.session.scalar(select(func.count(Contact.id)).where(Contact.email_hash == contacts.hash_of(
        "gone@example.com"), Contact.email.is_not(None))) == 0, "an erased person is not brought back"
    assert ledger.verify().ok
    assert job.stored_path is None and not list((Path(app.config["PC_INSTANCE_PATH"]) / "uploads").glob("*"))
    assert all("value" not in i for i in job.preview["invalid"]), "no addresses kept once the file is gone"
    page = text_of(as_marketer.get(f"/admin/imports/{job.id}").text)
    assert "1 new contact " in page and f"source import:{job.id}" in page
    audit = as_marketer.get("/admin/audit").text
    assert "import.start" in audit and "staff:mia@example.com" in audit


def test_without_the_opt_in_affirmation_the_grant_waits_for_confirmation(as_marketer, news):
    job = run_import(as_marketer, "email,name\nann@example.com,Ann\n", map_relationship="", confirmed_opt_in=None)
    assert job.status == "done" and job.granted_count == 1
    grant = db.session.scalar(select(ConsentEvent).where(ConsentEvent.action == "grant"))
    assert not grant.confirmed and grant.source == f"import:{job.id}:{SOURCE}"
    ann = contacts.find("ann@example.com")
    view = {s["topic"]: s for s in contacts.subscriptions_view(ann)}
    assert view["news"]["state"] == "unsubscribed" and view["news"]["reason"] == rules.SKIP_UNCONFIRMED
    assert view["news"]["pending_confirmation"]


def test_a_legitimate_interest_import_sets_relationships_and_records_no_consent(as_marketer, news):
    job = run_import(as_marketer, "email,name,type\ncus@example.com,C,customer\npro@example.com,P,\n",
                     legal_basis="legitimate_interest", topic="", consent_collected=None, confirmed_opt_in=None,
                     default_relationship="partner")
    assert job.status == "done" and job.granted_count == 0
    assert db.session.scalar(select(func.count(ConsentEvent.id)).where(ConsentEvent.action == "grant")) == 0
    assert contacts.find("pro@example.com").relationship == "partner"
    assert states("cus@example.com") == {"news": "unsubscribed", "tips": "subscribed"}


def test_an_import_never_resubscribes_someone_who_unsubscribed(as_marketer, news):
    ann = factories.contact("ann@example.com")
    contacts.record_consent(ann, action="grant", topic=news, source="test", confirmed=True)
    contacts.record_consent(ann, action="withdraw", topic=news, source="test")
    opted_out = factories.contact("out@example.com")
    contacts.record_consent(opted_out, action="withdraw", topic=None, source="test")
    db.session.commit()
    job = run_import(as_marketer, "email,name\nann@example.com,Ann\nout@example.com,Out\n", map_relationship="")
    assert job.preview["counts"]["kept_opt_out"] == 1 and job.preview["counts"]["suppressed"] == 1
    assert job.granted_count == 0
    assert states("ann@example.com")["news"] == "unsubscribed"
    assert states("out@example.com")["news"] == "unsubscribed"


@pytest.mark.parametrize("chunk", [None, 1])
def test_an_import_never_resubscribes_someone_whose_one_click_opt_out_still_waits(ctx, news, chunk):
    ann = factories.contact("ann@example.com")
    contacts.record_consent(ann, action="grant", topic=news, source="test", confirmed=True)
    bob = factories.contact("bob@example.com")
    db.session.commit()
    # Both clicked one-click unsubscribe (ann from news, bob from all marketing); not chained yet.
    assert optouts.take(ann.id, ann.token_version, news.id, source="one-click", ip=None, user_agent=None)
    assert optouts.take(bob.id, bob.token_version, 0, source="one-click", ip=None, user_agent=None)
    job = imports.store(io.BytesIO(b"email\nann@example.com\nbob@example.com\ncat@example.com\n"), "x.csv",
                        created_by="test")
    imports.configure(job, imports.Settings(mapping={"email": 0}, legal_basis="consent", source_text=SOURCE,
                                            topic_key="news", consent_collected=True, confirmed_opt_in=True))
    if chunk is None:  # previewed: the preview already counts them as kept out
        counts = imports.preview(job)["counts"]
        assert (counts["kept_opt_out"], counts["suppressed"], counts["grants"]) == (1, 1, 1)
    else:  # the waiting opt-outs are found when the chunk runs
        job.status = "previewed"
    imports.start(job)
    db.session.commit()
    assert optouts.take(ann.id, ann.token_version, 0, source="one-click", ip=None, user_agent=None)
    job = imports.run(job.id, chunk=chunk)
    assert job.status == "done" and job.granted_count == 1
    assert states("ann@example.com")["news"] == "unsubscribed"
    assert states("bob@example.com")["news"] == "unsubscribed"
    assert states("cat@example.com")["news"] == "subscribed"
    assert not optouts.waiting()
    assert ledger.verify().ok


def test_running_the_same_job_twice_imports_it_once(ctx, news):
    make_staff("mia@example.com", "marketer")
    job = imports.store(io.BytesIO(b"email\na@example.com\nb@example.com\nc@example.com\n"), "x.csv",
                        created_by="staff:mia@example.com")
    imports.configure(job, imports.Settings(mapping={"email": 0}, legal_basis="consent", source_text=SOURCE,
                                            topic_key="news", consent_collected=True, confirmed_opt_in=True))
    imports.preview(job)
    imports.start(job)
    db.session.commit()
    events = ledger_count()
    assert imports.run(job.id, chunk=2).status == "done"
    after_first = ledger_count()
    assert after_first - events == 6  # a relationship event and a grant per contact
    assert imports.run(job.id).status == "done"
    assert ledger_count() == after_first
    assert db.session.get(ImportJob, job.id).processed == 3


DUPLICATES = (
    "email,name,relationship\n"
    "dup@example.com,Dup,friend\n"         # 2: invalid (relationship): its address is not taken yet
    "a@example.com,A,customer\n"           # 3: new
    "dup@example.com,Dup,customer\n"       # 4: new, the first valid row of its address
    "a@example.com,A again,customer\n"     # 5: duplicate of line 3, a chunk earlier
    "b@example.com,B,customer\n"           # 6: new
    "B@example.com,B again,customer\n"     # 7: duplicate of line 6, in the same chunk
    "bounced@example.com,X,customer\n"     # 8: suppressed
    "c@example.com,C,customer\n"           # 9: new
    "bounced@example.com,Y,customer\n"     # 10: duplicate of line 8, a chunk later
)


def test_the_duplicate_check_answers_the_addresses_of_earlier_chunks():
    with imports.Seen() as seen:
        assert seen.add(["a@example.com", "b@example.com", "a@example.com"]) == set()
        assert seen.add(["c@example.com", "b@example.com", "c@example.com"]) == {"b@example.com"}
        assert seen.add([]) == set()
        assert seen.add(["a@example.com", "c@example.com", "d@example.com"]) == {"a@example.com", "c@example.com"}


@pytest.mark.parametrize("resumed", [False, True])
def test_duplicates_are_found_across_chunks_and_after_a_resume_as_in_the_preview(ctx, news, monkeypatch, resumed):
    from preference_center.imports import applying

    bounced = factories.contact("bounced@example.com")
    contacts.suppress(bounced.email_hash, "all", "hard_bounce", source="test", contact=bounced)
    db.session.commit()
    job = imports.store(io.BytesIO(DUPLICATES.encode()), "x.csv", created_by="test")
    imports.configure(job, imports.Settings(mapping={"email": 0, "name": 1, "relationship": 2},
                                            legal_basis="consent", source_text=SOURCE, topic_key="news",
                                            consent_collected=True, confirmed_opt_in=True))
    assert imports.preview(job)["counts"] == {"new": 4, "update": 0, "unchanged": 0, "suppressed": 1, "erased": 0,
                                              "duplicate": 3, "invalid": 1, "grants": 4, "kept_opt_out": 0}
    imports.start(job)
    db.session.commit()
    if resumed:  # the worker dies after the first chunk; the retry reads the committed rows' addresses again
        apply_rows, calls = applying._apply_rows, []

        def dies_on_the_second_chunk(*args):
            calls.append(args)
            if len(calls) == 2:
                raise RuntimeError("worker lost")
            apply_rows(*args)

        monkeypatch.setattr(applying, "_apply_rows", dies_on_the_second_chunk)
        assert imports.run(job.id, chunk=2).status == "failed"
        monkeypatch.setattr(applying, "_apply_rows", apply_rows)
        assert db.session.get(ImportJob, job.id).processed == 2
        imports.retry(job)
        db.session.commit()
    job = imports.run(job.id, chunk=2)
    assert job.status == "done" and job.processed == 9
    assert (job.created_count, job.skipped_count, job.invalid_count, job.granted_count) == (4, 4, 1, 4)
    assert (contacts.find("a@example.com").name, contacts.find("b@example.com").name) == ("A", "B")
    assert contacts.find("dup@example.com").relationship == "customer"
    assert contacts.find("bounced@example.com").name is None
    assert ledger.verify().ok


# -- a big file in the worker -------------------------------------------------------

BIG_ROWS = int(os.environ.get("PC_TEST_IMPORT_ROWS", "3000"))


@pytest.fixture
def worker(app):
    celery = app.extensions["celery"]
    with start_worker(celery, pool="threads", concurrency=2, perform_ping_check=False, shutdown_timeout=60,
                      loglevel="WARNING"):
        yield


def big_csv(rows: int) -> bytes:
    lines = ["email,name,company,relationship"]
    lines += [f"person{i}@example.com,Person {i},Company {i % 97},{'customer' if i % 3 else 'prospect'}"
              for i in range(rows)]
    lines.append("broken-address,Nobody,None,customer")
    return ("\n".join(lines) + "\n").encode()


@pytest.mark.slow
def test_a_large_import_runs_in_a_real_celery_worker_and_reaches_100_percent(as_marketer, news, worker, app,
                                                                              monkeypatch):
    from preference_center.imports import applying

    monkeypatch.setattr(applying, "CHUNK", 250)  # a dozen committed chunks: progress shows between them
    started = time.monotonic()
    upload(as_marketer, big_csv(BIG_ROWS), "big.csv")
    job = latest_job()
    assert job.total == BIG_ROWS + 1
    assert preview(as_marketer, job, map_company="2", map_relationship="3").status_code == 302
    previewed = time.monotonic()
    assert latest_job().preview["counts"]["new"] == BIG_ROWS
    assert as_marketer.post(f"/admin/imports/{job.id}/run").status_code == 302
    queued = latest_job()
    assert queued.status in ("queued", "running", "done")
    page = as_marketer.get(f"/admin/imports/{job.id}").text
    if latest_job().status != "done":
        assert '<meta http-equiv="refresh" content="2">' in page and "<progress" in page
    seen_progress = set()
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        current = latest_job()
        seen_progress.add(current.processed)
        if current.status in ("done", "failed"):
            break
        time.sleep(0.5)
    finished = time.monotonic()
    job = latest_job()
    assert job.status == "done", job.error
    assert job.percent == 100 and job.processed == job.total
    assert job.created_count == BIG_ROWS and job.invalid_count == 1 and job.granted_count == BIG_ROWS
    assert len(seen_progress) > 2, "progress was visible while importing"
    assert db.session.scalar(select(func.count(Subscription.contact_id)).where(
        Subscription.state == "subscribed")) == BIG_ROWS
    assert ledger.verify().ok
    print(f"\nimport of {BIG_ROWS} rows: upload+preview {previewed - started:.1f}s, "
          f"import in worker {finished - previewed:.1f}s")
    assert "100%" in as_marketer.get("/admin/imports").text or "done" in as_marketer.get("/admin/imports").text



def _import_snapshot(after_id: int) -> dict:
    from preference_center.models import Suppression

    db.session.expire_all()
    fields = ("id", "contact_id", "topic_id", "scope", "action", "legal_basis", "source", "consent_text_version",
              "confirmed", "detail", "ip", "user_agent", "redacted")
    # Contacts by address hash: PostgreSQL does not roll its id sequence back.
    who = dict(db.session.execute(select(Contact.id, Contact.email_hash)).all())
    events = [({f: who.get(e.contact_id) if f == "contact_id" else getattr(e, f) for f in fields},
               {k: v for k, v in (e.personal or {}).items() if k != "salt"})
              for e in db.session.scalars(select(ConsentEvent).where(ConsentEvent.id > after_id)
                                          .order_by(ConsentEvent.id))]
    people = db.session.execute(select(
        Contact.email, Contact.email_hash, Contact.name, Contact.company, Contact.relationship,
        Contact.status, Contact.marketing_opt_out_event_id, Contact.relationship_event_id)
        .order_by(Contact.email_hash)).all()
    subs = sorted((who[c], t, st, e) for c, t, st, e in db.session.execute(select(
        Subscription.contact_id, Subscription.topic_id, Subscription.state, Subscription.event_id)))
    supp = db.session.execute(select(Suppression.email_hash, Suppression.scope, Suppression.reason)
                              .order_by(Suppression.email_hash, Suppression.scope)).all()
    return {"events": events, "contacts": [tuple(p) for p in people], "subs": [tuple(s) for s in subs],
            "suppressions": [tuple(s) for s in supp]}


@pytest.mark.parametrize("confirmed", [True, False])
def test_the_bulk_import_writes_the_same_ledger_as_one_row_at_a_time(ctx, population, confirmed):
    news = factories.get_topic("news")
    unsub = factories.contact("unsub@example.com")
    contacts.record_consent(unsub, action="grant", topic=news, source="test", confirmed=True)
    contacts.record_consent(unsub, action="withdraw", topic=news, source="test")
    held = factories.contact("held@example.com", name="Held")
    ledger.append(ledger.RESTRICT, contact=held, scope=ledger.CONTACT, source="test")
    make_staff("mia@example.com", "marketer")
    content = (MIXED + "unsub@example.com;Un Sub;partner\r\nheld@example.com;Held;customer\r\n"
               "same@example.com;X;prospect\r\n")
    job = imports.store(io.BytesIO(content.encode()), "x.csv", created_by="staff:mia@example.com")
    imports.configure(job, imports.Settings(mapping={"email": 0, "name": 1, "relationship": 2},
                                            legal_basis="consent", source_text=SOURCE, topic_key="news",
                                            consent_collected=True, confirmed_opt_in=confirmed))
    imports.preview(job)
    imports.start(job)
    db.session.commit()
    before = ledger_count()

    # The one-row-at-a-time path the import used to take.
    with imports.Seen() as seen:
        for batch in imports._chunks(job, size=3):
            for row in imports.classify(job, batch, seen):
                if row.outcome in (imports.NEW, imports.UPDATE, imports.UNCHANGED):
                    contact, _ = contacts.upsert(row.email, row.fields, source=imports.source_of(job))
                    if row.grant:
                        contacts.record_consent(contact, action=ledger.GRANT, topic=news,
                                                source=imports.consent_source_of(job), legal_basis="consent",
                                                confirmed=job.confirmed_opt_in,
                                                detail={"import_job": job.id, "line": row.line})
    db.session.flush()
    expected = _import_snapshot(before)
    db.session.rollback()

    assert imports.run(job.id, chunk=3).status == "done"
    got = _import_snapshot(before)
    assert len(got["events"]) > 5
    assert got == expected
    assert ledger.verify().ok

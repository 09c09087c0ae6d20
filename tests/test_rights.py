"""Data-subject rights: the data page, rectification, restriction, objection, export and erasure."""
from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re

import pytest
from sqlalchemy import select

from preference_center import contacts, links, rights
from preference_center.extensions import db
from preference_center.models import ConsentEvent, Contact, DataRequest

from .helpers import (
    IP,
    UA,
    csrf_token,
    events,
    factories,
    grant,
    ledger_ok,
    mailed_link,
    make_contact,
    old_token,
    outbox,
    snapshot,
    states,
    token,
    unlock_details,
)


@pytest.fixture
def ann(app, topics) -> int:
    contact_id = make_contact(app, "ann@example.com", relationship="customer", name="Ann", company="=SUM(A1)")
    grant(app, contact_id, "news")
    return contact_id


@pytest.fixture
def data_page(client, app, ann):
    """The data page path and a CSRF token from it, the person's details unlocked (the mailed link opened)."""
    unlock_details(client, app, ann)
    path = f"/p/{token(app, links.PREFERENCES, ann)}/data"
    return path, csrf_token(client.get(path).get_data(as_text=True))


def requests_of(app, contact_id) -> list[DataRequest]:
    with app.app_context():
        rows = db.session.scalars(select(DataRequest).where(DataRequest.contact_id == contact_id)
                                  .order_by(DataRequest.id)).all()
        db.session.expunge_all()
        return rows


def _step_up_link(client, app, path, form_token, action) -> str:
    page = client.post(f"{path}/{action}", data={"csrf_token": form_token})
    assert page.status_code == 200 and "Check your inbox" in page.get_data(as_text=True)
    return mailed_link(app, "ann@example.com")


# -- the page -------------------------------------------------------------------------

def test_data_page_shows_profile_subscriptions_and_readable_consent_history(client, app, ann):
    unlock_details(client, app, ann)
    html = client.get(f"/p/{token(app, links.PREFERENCES, ann)}/data").get_data(as_text=True)
    assert "ann@example.com" in html and "Ann" in html
    assert "News: you receive this" in html
    assert "Subscribed to News" in html and "Relationship with us recorded: customer" in html
    for button in ("Email me a download link", "Restrict processing", "I object to direct marketing",
                   "Email me a link to erase my data", "Save corrections"):
        assert button in html


def test_the_history_tells_of_a_block_and_its_lifting_in_the_persons_language(client, app, ann):
    with app.app_context():
        contact = db.session.get(Contact, ann)
        contacts.suppress(contact.email_hash, "all", "hard_bounce", source="webhook:sendgrid", contact=contact)
        contacts.lift_suppression(contact, "all", why="mailbox works again", source="staff:boss@example.com")
        db.session.commit()
    html = client.get(f"/p/{token(app, links.PREFERENCES, ann)}/data").get_data(as_text=True)
    assert "Address blocked from sending (hard_bounce)" in html and "Block on sending lifted (hard_bounce)" in html
    spanish = client.get(f"/p/{token(app, links.PREFERENCES, ann)}/data?lang=es").get_data(as_text=True)
    assert "Bloqueo de envíos levantado (hard_bounce)" in spanish


def test_rectification_corrects_details_as_a_ledger_event_and_a_completed_request(client, app, ann, data_page):
    path, form_token = data_page
    response = client.post(f"{path}/rectify", headers={"User-Agent": UA}, environ_base={"REMOTE_ADDR": IP},
                           data={"csrf_token": form_token, "name": "Ann Lee", "company": "Acme", "title": "",
                                 "phone": "+34 600 000 000", "locale": "es"})
    assert response.status_code == 303
    with app.app_context():
        contact = db.session.get(Contact, ann)
        assert (contact.name, contact.company, contact.phone, contact.locale) == (
            "Ann Lee", "Acme", "+34 600 000 000", "es")
    event = events(app, ann)[-1]
    assert (event.action, event.source, event.ip, event.user_agent) == ("rectify", "data-rights-page", IP, UA)
    assert event.detail == {"fields": ["company", "locale", "name", "phone"]}
    (request,) = requests_of(app, ann)
    assert (request.kind, request.status) == ("rectification", "completed")
    assert request.due_at == one_calendar_month_after(request.requested_at)
    assert "Sus datos se han actualizado." in client.get(path).get_data(as_text=True), "now in the new language"


def test_rectification_with_nothing_changed_records_nothing(client, app, ann, data_page):
    path, form_token = data_page
    before = snapshot(app)
    client.post(f"{path}/rectify", data={"csrf_token": form_token, "name": "Ann", "company": "=SUM(A1)"})
    assert snapshot(app) == before


def test_rectification_rejects_oversized_values(client, app, ann, data_page):
    path, form_token = data_page
    before = snapshot(app)
    response = client.post(f"{path}/rectify", data={"csrf_token": form_token, "name": "x" * 201})
    assert response.status_code == 400
    assert snapshot(app) == before


def test_restriction_stops_marketing_until_lifted(client, app, ann, data_page):
    path, form_token = data_page
    client.post(f"{path}/restrict", data={"csrf_token": form_token})
    assert states(app, ann) == {"news": "unsubscribed", "tips": "unsubscribed", "orders": "subscribed"}
    assert events(app, ann)[-1].action == "restrict"
    client.post(f"{path}/lift-restriction", data={"csrf_token": form_token})
    assert states(app, ann)["news"] == "subscribed"
    assert events(app, ann)[-1].action == "lift_restriction"
    assert [(r.kind, r.status) for r in requests_of(app, ann)] == [("restriction", "completed")] * 2


def test_objection_stops_all_marketing_once(client, app, ann, data_page):
    path, form_token = data_page
    client.post(f"{path}/object", data={"csrf_token": form_token})
    after = snapshot(app)
    client.post(f"{path}/object", data={"csrf_token": form_token})
    assert snapshot(app) == after
    assert [e.action for e in events(app, ann)][-2:] == ["object", "suppress"]
    assert states(app, ann) == {"news": "unsubscribed", "tips": "unsubscribed", "orders": "subscribed"}
    assert [(r.kind, r.status) for r in requests_of(app, ann)] == [("objection", "completed")]


def test_rights_buttons_require_a_csrf_token(app, ann):
    stranger = app.test_client(use_cookies=False)
    path = f"/p/{token(app, links.PREFERENCES, ann)}/data"
    before = snapshot(app)
    for action in ("restrict", "object", "export", "erase", "rectify"):
        assert stranger.post(f"{path}/{action}", data={"name": "Mallory"}).status_code == 400
    assert snapshot(app) == before and outbox(app) == []


# -- export --------------------------------------------------------------------------

def test_export_needs_the_step_up_link_emailed_to_the_address(client, app, ann, data_page):
    path, form_token = data_page
    before = len(events(app))
    link = _step_up_link(client, app, path, form_token, "export")
    # The mailed link carries a freshly signed preference token (its timestamp may be a second later).
    assert re.fullmatch(r"/p/[^/]+/data/confirm/[^/]+", link)
    with app.app_context():
        assert links.load(links.PREFERENCES, link.split("/")[2]).contact.id == ann
    assert len(events(app)) == before, "asking for the link exports nothing yet"
    (request,) = requests_of(app, ann)
    assert (request.kind, request.status) == ("portability", "open")
    page = client.get(link)
    assert page.status_code == 200 and "Download JSON" in page.get_data(as_text=True)


def test_step_up_link_downloads_json_with_the_consent_history(client, app, ann, data_page):
    path, form_token = data_page
    link = _step_up_link(client, app, path, form_token, "export")
    response = client.post(link, data={"csrf_token": form_token})
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert response.headers["Content-Disposition"] == 'attachment; filename="my-data.json"'
    data = json.loads(response.get_data(as_text=True))
    assert data["profile"]["email"] == "ann@example.com"
    assert any(s["topic"] == "news" and s["state"] == "subscribed" for s in data["subscriptions"])
    actions = [(e["action"], e["topic"]) for e in data["consent_history"]]
    assert ("grant", "news") in actions and ("export", None) in actions
    assert events(app, ann)[-1].action == "export"
    (request,) = requests_of(app, ann)
    assert (request.kind, request.status, request.detail["format"]) == ("portability", "completed", "json")
    assert ledger_ok(app)


def test_step_up_link_downloads_csv_with_the_consent_history(client, app, ann, data_page):
    path, form_token = data_page
    link = _step_up_link(client, app, path, form_token, "export")
    response = client.post(f"{link}?format=csv", data={"csrf_token": form_token})
    assert response.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    profile = {r["field"]: r["value"] for r in rows if r["section"] == "profile"}
    assert profile["email"] == "ann@example.com"
    assert profile["company"] == "'=SUM(A1)", "formulas are disarmed for spreadsheets"
    history = [(r["action"], r["topic"]) for r in rows if r["section"] == "consent_event"]
    assert ("grant", "news") in history and ("export", "") in history


def test_step_up_link_expires(client, app, ann, data_page, monkeypatch):
    path, form_token = data_page
    hours = app.config["PC_STEPUP_MAX_AGE_HOURS"]
    stale = old_token(monkeypatch, app, links.STEP_UP, ann, "export", hours * 3600 + 60)
    before = snapshot(app)
    assert client.get(f"{path}/confirm/{stale}").status_code == 410
    assert client.post(f"{path}/confirm/{stale}", data={"csrf_token": form_token}).status_code == 410
    assert snapshot(app) == before


def test_step_up_needs_a_step_up_token_of_the_same_person(client, app, ann, data_page):
    path, form_token = data_page
    other = make_contact(app, "other@example.com")
    before = snapshot(app)
    for wrong in (token(app, links.STEP_UP, other, "export"),       # someone else's
                  token(app, links.PREFERENCES, ann),               # not a step-up token
                  token(app, links.STEP_UP, ann, "delete-all")):    # unknown action
        assert client.get(f"{path}/confirm/{wrong}").status_code == 404
        assert client.post(f"{path}/confirm/{wrong}", data={"csrf_token": form_token}).status_code == 404
    assert snapshot(app) == before


# -- erasure --------------------------------------------------------------------------

def test_erasure_through_the_step_up_link_removes_personal_data_and_old_links(client, app, ann, data_page):
    path, form_token = data_page
    unsubscribe = f"/u/{token(app, links.UNSUBSCRIBE, ann, 0)}"
    link = _step_up_link(client, app, path, form_token, "erase")
    assert "Erase my data now" in client.get(link).get_data(as_text=True)
    with app.app_context():
        assert db.session.get(Contact, ann).email == "ann@example.com", "showing the page erased nothing"
    goodbye = client.post(link, data={"csrf_token": form_token}, headers={"User-Agent": UA})
    assert goodbye.status_code == 200 and "Your data is erased" in goodbye.get_data(as_text=True)
    with app.app_context():
        contact = db.session.get(Contact, ann)
        assert (contact.email, contact.name, contact.company, contact.status) == (None, None, None, "erased")
        kept = db.session.scalars(select(ConsentEvent).where(ConsentEvent.contact_id == ann)).all()
        assert all(e.ip is None and e.user_agent is None and e.redacted for e in kept)
    assert ledger_ok(app)
    assert [(r.kind, r.status) for r in requests_of(app, ann)] == [("erasure", "completed")]
    before = snapshot(app)
    for old in (path, path.removesuffix("/data"), unsubscribe, link):
        response = client.get(old)
        assert response.status_code == 404 and "This link no longer works" in response.get_data(as_text=True)
    one_click = {"List-Unsubscribe": "One-Click"}
    assert app.test_client(use_cookies=False).post(unsubscribe, data=one_click).status_code == 404
    assert snapshot(app) == before


def test_step_up_mail_is_a_system_mail_without_unsubscribe_headers(client, app, ann, data_page):
    path, form_token = data_page
    _step_up_link(client, app, path, form_token, "erase")
    mail = outbox(app)[-1]
    assert mail["Subject"] == "Confirm the erasure of your data"
    assert "List-Unsubscribe" not in mail
    assert "service email" in mail.get_body(preferencelist=("plain",)).get_content()


# -- the domain functions directly -----------------------------------------------------

def one_calendar_month_after(moment: dt.datetime) -> dt.datetime:
    year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
    for day in (moment.day, 30, 29, 28):  # the last day of a shorter month
        try:
            return moment.replace(year=year, month=month, day=day)
        except ValueError:
            continue
    raise AssertionError(moment)


def test_requests_are_due_one_month_after_they_are_made(ctx):
    contact = factories.contact("dora@example.com")
    request = rights.open_request(contact, "access")
    assert request.due_at == one_calendar_month_after(request.requested_at)
    assert request.status == "open" and request.completed_at is None
    with pytest.raises(ValueError):
        rights.open_request(contact, "wishes")


@pytest.mark.parametrize("received, due", [
    ("2026-11-06 10:00", "2026-12-06 10:00"), ("2026-12-06 10:00", "2027-01-06 10:00"),
    ("2027-01-31 23:59", "2027-02-28 23:59"), ("2028-01-30 08:00", "2028-02-29 08:00"),
    ("2026-03-31 12:00", "2026-04-30 12:00"),
])
def test_one_month_is_a_calendar_month_whatever_the_day_it_starts(received, due):
    utc = dt.UTC
    start = dt.datetime.fromisoformat(received).replace(tzinfo=utc)
    assert rights.due_date(start) == dt.datetime.fromisoformat(due).replace(tzinfo=utc)
    assert rights.due_date(start) == one_calendar_month_after(start)


def test_holdings_include_every_consent_event(ctx):
    contact = factories.contact("eli@example.com", name="Eli")
    news = factories.topic("news")
    from preference_center import contacts, ledger

    contacts.record_consent(contact, action=ledger.GRANT, topic=news, source="form", consent_text_version="3",
                            confirmed=True, ip="192.0.2.1", user_agent="UA")
    data = rights.holdings(contact)
    assert [e["action"] for e in data["consent_history"]] == ["relationship", "grant"]
    grant_event = data["consent_history"][-1]
    assert (grant_event["topic"], grant_event["consent_text_version"], grant_event["ip"]) == ("news", "3", "192.0.2.1")
    assert json.loads(rights.to_json(data))["profile"]["name"] == "Eli"
    assert "consent_event" in rights.to_csv(data)

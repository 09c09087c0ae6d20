"""The complete access copy (Art. 15 and 20): every section with the wordings and the Art. 15(1) information, as
JSON and as a ZIP of JSON and CSV, and the one-time link that hands it to another company."""
from __future__ import annotations

import csv
import io
import json
import zipfile

import pytest
from sqlalchemy import select

from preference_center import links, sending
from preference_center.commands import wordings
from preference_center.extensions import db
from preference_center.models import ConsentText, DataRequest

from .helpers import csrf_token, events, ledger_ok, mailed_link, make_contact, old_token, snapshot, token


@pytest.fixture
def app_config(app_config):
    return {**app_config, "PC_SUPERVISORY_AUTHORITY": "the Agencia Española de Protección de Datos (aepd.es)",
            "PC_PRIVACY_CONTACT": "privacy@example.com", "PC_RETENTION_DAYS": 730}


@pytest.fixture
def ann(app, api, topics) -> int:
    """A customer with a confirmed consent citing wording 1, a system message sent, a marketing opt-out."""
    contact_id = make_contact(app, "ann@example.com", relationship="customer", name="Ann", company="=SUM(A1)")
    with app.app_context():
        wordings.current("en")  # the default wording, version 1, published as the public form would
        db.session.commit()
    assert api.post("/contacts/ann@example.com/consents", json={
        "topic": "news", "action": "grant", "source": "signup", "confirmed": True,
        "consent_text_version": "1"}).status_code == 201
    sent = api.post("/messages", json={"topic": "orders", "to": "ann@example.com", "subject": "Order A-17",
                                       "text": "Thanks"})
    with app.app_context():
        assert sending.send_system(sent.json["delivery_id"]) == "sent"
    assert api.post("/contacts/ann@example.com/consents", json={"action": "withdraw", "source": "call"}).status_code \
        == 201
    return contact_id


@pytest.fixture
def step_up(client, app, ann):
    path = f"/p/{token(app, links.PREFERENCES, ann)}/data"
    form_token = csrf_token(client.get(path).get_data(as_text=True))
    assert client.post(f"{path}/export", data={"csrf_token": form_token}).status_code == 200
    return mailed_link(app, "ann@example.com"), form_token


def _wording(app) -> str:
    with app.app_context():
        return db.session.scalar(select(ConsentText.text).where(ConsentText.version == "1"))


def test_the_json_copy_holds_every_section_and_the_art_15_information(client, app, ann, step_up):
    link, form_token = step_up
    data = client.post(link, data={"csrf_token": form_token}).json
    assert data["profile"]["email"] == "ann@example.com"
    grant = next(e for e in data["consent_history"] if e["action"] == "grant" and e["topic"] == "news")
    assert grant["wording"] == {"version": "1", "locale": "en", "text": _wording(app)} and grant["wording"]["text"]
    assert [(d["kind"], d["topic"], d["status"], d["subject"]) for d in data["deliveries"]] == [
        ("system message", "Orders", "sent", "Order A-17")]
    assert [(s["scope"], s["reason"]) for s in data["suppressions"]] == [("marketing", "opt_out")]
    assert [(r["kind"], r["status"]) for r in data["data_requests"]] == [("portability", "completed")]
    info = data["information"]
    assert {p["topic"]: p["legal_basis"] for p in info["purposes"]} == {
        "News": "consent", "Tips": "legitimate_interest", "Orders": "contract"}
    assert "object" in next(p["purpose"] for p in info["purposes"] if p["topic"] == "Tips")
    assert "nobody" in info["recipients"][0], "the outbox transport sends nothing to a provider"
    assert "730 days" in info["retention"] and "Agencia Española" in info["right_to_complain"]
    assert info["privacy_contact"] == "privacy@example.com"
    assert info["source"] == "you gave us your address" and "none" in info["automated_decisions"]
    assert any(r.startswith("portability") for r in info["your_rights"])
    assert ledger_ok(app)


def test_the_zip_copy_holds_the_json_a_csv_per_section_and_the_information_as_text(client, app, ann, step_up):
    link, form_token = step_up
    response = client.post(f"{link}?format=zip", data={"csrf_token": form_token})
    assert response.status_code == 200 and response.mimetype == "application/zip"
    assert response.headers["Content-Disposition"] == 'attachment; filename="my-data.zip"'
    archive = zipfile.ZipFile(io.BytesIO(response.data))
    assert sorted(archive.namelist()) == sorted([
        "my-data.json", "profile.csv", "attributes.csv", "subscriptions.csv", "consent_history.csv", "deliveries.csv",
        "suppressions.csv", "data_requests.csv", "information.txt"])
    data = json.loads(archive.read("my-data.json"))
    assert data["deliveries"][0]["status"] == "sent"
    profile = {r["field"]: r["value"] for r in csv.DictReader(io.StringIO(archive.read("profile.csv").decode()))}
    assert profile["company"] == "'=SUM(A1)", "formulas are disarmed for spreadsheets"
    history = list(csv.DictReader(io.StringIO(archive.read("consent_history.csv").decode())))
    assert any(_wording(app) in row["wording"] for row in history)
    deliveries = list(csv.DictReader(io.StringIO(archive.read("deliveries.csv").decode())))
    assert [(d["kind"], d["status"]) for d in deliveries] == [("system message", "sent")]
    text = archive.read("information.txt").decode()
    assert "Why we use your data" in text and "supervisory authority" in text and "News" in text
    assert events(app, ann)[-1].detail == {"format": "zip"}


def _handover(client, link, form_token) -> str:
    page = client.post(f"{link}/handover", data={"csrf_token": form_token})
    assert page.status_code == 200
    url = page.get_data(as_text=True).split('id="handover-url">')[1].split("<")[0]
    assert url.startswith("https://prefs.example.test/portability/")
    return url.removeprefix("https://prefs.example.test")


def test_a_one_time_link_hands_the_copy_to_another_company_once(client, app, ann, step_up):
    link, form_token = step_up
    handover = _handover(client, link, form_token)
    with app.app_context():
        request = db.session.scalars(select(DataRequest)).one()
        assert (request.kind, request.status) == ("portability", "open")
    other = app.test_client()  # the other company: no cookies of the person's
    before = snapshot(app)
    page = other.get(handover)
    assert page.status_code == 200 and "Download the ZIP file" in page.get_data(as_text=True)
    assert snapshot(app) == before, "showing the page hands nothing over"
    download = other.post(handover, data={"csrf_token": csrf_token(page.get_data(as_text=True))})
    assert download.status_code == 200 and download.mimetype == "application/zip"
    data = json.loads(zipfile.ZipFile(io.BytesIO(download.data)).read("my-data.json"))
    assert data["profile"]["email"] == "ann@example.com"
    last = events(app, ann)[-1]
    assert (last.action, last.detail, last.source) == ("export", {"format": "zip", "handover": True},
                                                        "portability-link")
    with app.app_context():
        request = db.session.scalars(select(DataRequest)).one()
        assert request.status == "completed" and request.detail["handover"]["used_at"]
    again = other.post(handover, data={"csrf_token": csrf_token(page.get_data(as_text=True))})
    assert again.status_code == 410 and "used already" in again.get_data(as_text=True)
    assert events(app, ann)[-1].id == last.id, "a spent link exports nothing"


def test_a_new_link_replaces_the_old_one(client, app, ann, step_up):
    link, form_token = step_up
    first = _handover(client, link, form_token)
    second = _handover(client, link, form_token)
    other = app.test_client()
    page = other.get(first)
    assert other.post(first, data={"csrf_token": csrf_token(page.get_data(as_text=True))}).status_code == 404
    page = other.get(second)
    assert other.post(second, data={"csrf_token": csrf_token(page.get_data(as_text=True))}).status_code == 200


def test_the_handover_link_expires_after_seven_days(client, app, ann, monkeypatch):
    fresh = old_token(monkeypatch, app, links.HANDOVER, ann, [1, "x"], 6 * 86400)
    stale = old_token(monkeypatch, app, links.HANDOVER, ann, [1, "x"], 8 * 86400)
    assert client.get(f"/portability/{fresh}").status_code == 200
    assert client.get(f"/portability/{stale}").status_code == 410


def test_the_handover_link_needs_the_step_up_of_an_export(client, app, ann):
    path = f"/p/{token(app, links.PREFERENCES, ann)}/data"
    erase_step = token(app, links.STEP_UP, ann, "erase")
    form_token = csrf_token(client.get(path).get_data(as_text=True))
    before = snapshot(app)
    assert client.post(f"{path}/confirm/{erase_step}/handover", data={"csrf_token": form_token}).status_code == 404
    assert client.post(f"/p/{token(app, links.PREFERENCES, ann)}/data/confirm/garbage/handover",
                       data={"csrf_token": form_token}).status_code == 404
    assert snapshot(app) == before

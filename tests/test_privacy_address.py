"""Changing the email address itself: confirmed through a link mailed to the new address; old links revoked."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from preference_center import contacts, links
from preference_center.extensions import db
from preference_center.models import Contact, DataRequest

from .helpers import (
    csrf_token,
    events,
    ledger_ok,
    mailed_link,
    make_contact,
    outbox,
    snapshot,
    text_of,
    token,
    unlock_details,
)


@pytest.fixture
def ann(app, topics) -> int:
    return make_contact(app, "ann@example.com", relationship="customer", name="Ann")


@pytest.fixture
def data_page(client, app, ann):
    unlock_details(client, app, ann)
    path = f"/p/{token(app, links.PREFERENCES, ann)}/data"
    return path, csrf_token(client.get(path).get_data(as_text=True))


def _ask(client, path, form_token, new="ann.lee@example.org"):
    return client.post(f"{path}/address", data={"csrf_token": form_token, "email": new})


def test_the_address_changes_only_through_the_link_mailed_to_the_new_address(client, app, ann, data_page):
    path, form_token = data_page
    before = snapshot(app)
    asked = _ask(client, path, form_token, "Ann.Lee@Example.org")
    assert asked.status_code == 200 and "Check the new inbox" in asked.get_data(as_text=True)
    assert snapshot(app) == before, "asking changes nothing"
    link = mailed_link(app, "ann.lee@example.org")
    assert "/data/address/" in link  # the person's own data page (tokens signed in another second differ in text)
    page = client.get(link)
    assert page.status_code == 200 and "ann.lee@example.org" in page.get_data(as_text=True)
    assert snapshot(app) == before, "showing the page changes nothing"
    done = client.post(link, data={"csrf_token": csrf_token(page.get_data(as_text=True))})
    assert done.status_code == 303
    with app.app_context():
        contact = db.session.get(Contact, ann)
        assert contact.email == "ann.lee@example.org"
        assert contact.email_hash == contacts.hash_of("ann.lee@example.org")
        request = db.session.scalars(select(DataRequest)).one()
        assert (request.kind, request.status) == ("rectification", "completed")
    last = events(app, ann)[-1]
    assert (last.action, last.detail, last.source) == ("rectify", {"fields": ["email"]}, "data-rights-page")
    assert "ann.lee@example.org" in text_of(client.get(done.headers["Location"]).get_data(as_text=True))
    for old in (path, link):
        assert client.get(old).status_code == 404, "links in mail to the old address no longer work"
    assert ledger_ok(app)


def test_an_address_another_contact_holds_is_refused_when_confirmed(client, app, ann, data_page):
    make_contact(app, "bob@example.com")
    path, form_token = data_page
    assert _ask(client, path, form_token, "bob@example.com").status_code == 200  # no hint whether it is known
    link = mailed_link(app, "bob@example.com")
    page = client.get(link)
    before = snapshot(app)
    refused = client.post(link, data={"csrf_token": csrf_token(page.get_data(as_text=True))})
    assert refused.status_code == 409 and "another contact" in refused.get_data(as_text=True)
    assert snapshot(app) == before


@pytest.mark.parametrize("new", ["not an address", "ann@example.com", ""])
def test_a_bad_new_address_is_refused_and_mails_nothing(client, app, ann, data_page, new):
    path, form_token = data_page
    before, mails = snapshot(app), len(outbox(app))
    answer = _ask(client, path, form_token, new)
    assert answer.status_code == 303
    assert "The new address" in text_of(client.get(path).get_data(as_text=True))
    assert snapshot(app) == before and len(outbox(app)) == mails


def test_a_change_link_of_another_person_or_tampered_is_refused(client, app, ann, data_page):
    bob = make_contact(app, "bob@example.com")
    path, form_token = data_page
    forged = token(app, links.CHANGE_ADDRESS, bob, "mine@example.org")
    assert client.get(f"{path}/address/{forged}").status_code == 404
    assert client.get(f"{path}/address/garbage").status_code == 404
    assert client.post(f"{path}/address/{forged}", data={"csrf_token": form_token}).status_code == 404
    with app.app_context():
        assert db.session.get(Contact, ann).email == "ann@example.com"


def test_a_forwarded_link_shows_no_details_and_changes_none(app, ann):
    forwardee = app.test_client()
    path = f"/p/{token(app, links.PREFERENCES, ann)}/data"
    page = forwardee.get(path).get_data(as_text=True)
    words = text_of(page)
    assert "ann@example.com" not in page and "Ann" not in words.replace("Annual", "")
    assert "Email me a link to see and correct my details" in words and "Save corrections" not in words
    before = snapshot(app)
    form_token = csrf_token(page)
    assert forwardee.post(f"{path}/rectify", data={"csrf_token": form_token, "name": "Mallory"}).status_code == 403
    assert forwardee.post(f"{path}/address", data={"csrf_token": form_token,
                                                    "email": "mallory@example.org"}).status_code == 403
    assert snapshot(app) == before and outbox(app) == []


def test_the_mailed_link_unlocks_the_details_in_that_browser_only(app, client, ann):
    path = f"/p/{token(app, links.PREFERENCES, ann)}/data"
    page = client.get(path).get_data(as_text=True)
    asked = client.post(f"{path}/details", data={"csrf_token": csrf_token(page)})
    assert asked.status_code == 200 and "Check the new inbox" not in asked.get_data(as_text=True)
    link = mailed_link(app, "ann@example.com")
    assert "/data/details/" in link
    assert client.get(link).status_code == 303
    assert "ann@example.com" in client.get(path).get_data(as_text=True)
    assert "ann@example.com" not in app.test_client().get(path).get_data(as_text=True), "another browser sees none"
    erase_step = token(app, links.STEP_UP, ann, "erase")
    assert client.get(f"{path}/details/{erase_step}").status_code == 404, "only a details link unlocks"

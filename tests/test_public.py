"""The recipient pages: preferences, unsubscribe (incl. RFC 8058 one-click), subscribe, confirm, bad links."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from preference_center import contacts, ledger, links
from preference_center.extensions import db
from preference_center.models import ConsentText, Contact, OptOutInbox

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
    prepare_database,
    settle,
    snapshot,
    states,
    token,
    topic_id,
)


@pytest.fixture
def app_config(app_config):
    # Forms posted by tests come back at once; the minimum fill time has its own test.
    return {**app_config, "PC_SUBSCRIBE_MIN_SECONDS": 0}


@pytest.fixture
def ann(app, topics) -> int:
    """A customer subscribed to news (consent) and covered by tips (legitimate interest)."""
    contact_id = make_contact(app, "ann@example.com", relationship="customer", name="Ann")
    grant(app, contact_id, "news")
    return contact_id


# -- every GET leaves everything as it was ------------------------------------------

def test_every_page_get_leaves_the_database_unchanged(app, client, ann):
    with app.app_context():
        contact = db.session.get(Contact, ann)
        pending = contacts.record_consent(contact, action=ledger.GRANT, topic=factories.get_topic("news"),
                                          source="subscribe-form", confirmed=False)
        db.session.commit()
        pending_id = pending.id
    p = token(app, links.PREFERENCES, ann)
    pages = [
        f"/p/{p}",
        f"/p/{p}?lang=es",
        f"/u/{token(app, links.UNSUBSCRIBE, ann, topic_id(app, 'news'))}",
        f"/u/{token(app, links.UNSUBSCRIBE, ann, 0)}",
        f"/confirm/{token(app, links.CONFIRM, ann, [pending_id])}",
        f"/p/{p}/data",
        f"/p/{p}/data/confirm/{token(app, links.STEP_UP, ann, 'export')}",
        f"/p/{p}/data/confirm/{token(app, links.STEP_UP, ann, 'erase')}",
        "/subscribe",
    ]
    before = snapshot(app)
    for page in pages:
        response = client.get(page, headers={"User-Agent": UA})
        assert response.status_code == 200, page
        assert 'style="' not in response.get_data(as_text=True), "CSP forbids inline styles"
    assert snapshot(app) == before


def test_recipient_pages_leak_no_token_and_are_not_cached(client, app, ann):
    response = client.get(f"/p/{token(app, links.PREFERENCES, ann)}")
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Cache-Control"] == "no-store"
    assert "<script" not in response.get_data(as_text=True)


SECURITY = ("Referrer-Policy", "X-Content-Type-Options", "X-Frame-Options", "Content-Security-Policy")


def test_every_answer_carries_each_security_header_once_and_a_views_own_cache_control_is_kept(app, ann):
    gmail = app.test_client(use_cookies=False)
    one_click = gmail.post(f"/u/{token(app, links.UNSUBSCRIBE, ann, topic_id(app, 'news'))}",
                           data="List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded")
    answers = {"one-click": one_click, "page": gmail.get(f"/p/{token(app, links.PREFERENCES, ann)}"),
               "bad link": gmail.post("/u/not-a-token", data="List-Unsubscribe=One-Click",
                                      content_type="application/x-www-form-urlencoded"),
               "form": gmail.get("/subscribe"), "nowhere": gmail.get("/nowhere"), "theme": gmail.get("/brand/theme.css")}
    assert (one_click.status_code, answers["bad link"].status_code) == (200, 404)
    for name, response in answers.items():
        for header in SECURITY:
            assert len(response.headers.getlist(header)) == 1, (name, header)
        assert "Strict-Transport-Security" not in response.headers  # not production
    for name in ("one-click", "page", "bad link"):  # tokens in the path
        assert answers[name].headers.getlist("Cache-Control") == ["no-store"], name
    assert "Cache-Control" not in answers["form"].headers
    assert answers["theme"].headers.getlist("Cache-Control") == ["public, max-age=300"]  # the view's own, kept


# -- the preference page -------------------------------------------------------------

def test_preference_page_shows_marketing_state_system_topics_and_rights_link(client, app, ann):
    p = token(app, links.PREFERENCES, ann)
    html = client.get(f"/p/{p}").get_data(as_text=True)
    assert re.search(r'value="news"[^>]*checked', html)
    assert re.search(r'value="tips"[^>]*checked', html), "legitimate interest covers customers by default"
    assert "Orders" in html and "order confirmations" in html and "always sent" in html
    assert 'value="orders"' not in html, "system topics have no checkbox"
    assert "Unsubscribe from all marketing" in html
    assert f"/p/{p}/data" in html


def test_preference_save_records_one_event_per_changed_topic_with_ip_and_user_agent(client, app, topics):
    contact_id = make_contact(app, "bob@example.com", relationship="customer")
    p = token(app, links.PREFERENCES, contact_id)
    page = client.get(f"/p/{p}")
    before = len(events(app))
    # news off -> on (consent), tips on -> off (legitimate interest)
    response = client.post(f"/p/{p}", data={"csrf_token": csrf_token(page.get_data(as_text=True)), "topics": ["news"]},
                           headers={"User-Agent": UA}, environ_base={"REMOTE_ADDR": IP})
    assert response.status_code == 303 and response.headers["Location"].endswith(f"/p/{p}")
    new = events(app)[before:]
    assert [(e.action, e.topic_id, e.confirmed) for e in new] == [
        ("grant", topic_id(app, "news"), True), ("withdraw", topic_id(app, "tips"), False)]
    assert {e.source for e in new} == {"preferences-page"}
    assert {(e.ip, e.user_agent) for e in new} == {(IP, UA)}
    assert states(app, contact_id) == {"news": "subscribed", "tips": "unsubscribed", "orders": "subscribed"}
    assert "Your choices are saved." in client.get(f"/p/{p}").get_data(as_text=True)
    assert ledger_ok(app)


def test_preference_save_without_changes_records_nothing(client, app, ann):
    p = token(app, links.PREFERENCES, ann)
    html = client.get(f"/p/{p}").get_data(as_text=True)
    before = snapshot(app)
    client.post(f"/p/{p}", data={"csrf_token": csrf_token(html), "topics": ["news", "tips"]})
    assert snapshot(app) == before


def test_preference_save_requires_a_csrf_token(client, app, ann):
    p = token(app, links.PREFERENCES, ann)
    before = snapshot(app)
    response = client.post(f"/p/{p}", data={"topics": []})
    assert response.status_code == 400
    assert snapshot(app) == before


def test_preference_save_rejects_unknown_topics(client, app, ann):
    p = token(app, links.PREFERENCES, ann)
    html = client.get(f"/p/{p}").get_data(as_text=True)
    before = snapshot(app)
    response = client.post(f"/p/{p}", data={"csrf_token": csrf_token(html), "topics": ["orders"]})
    assert response.status_code == 400
    assert snapshot(app) == before


def test_ticking_a_topic_after_opting_out_of_everything_grants_all_marketing_first(client, app, ann):
    p = token(app, links.PREFERENCES, ann)
    html = client.get(f"/p/{p}").get_data(as_text=True)
    client.post(f"/p/{p}/unsubscribe-all", data={"csrf_token": csrf_token(html)})
    assert states(app, ann)["news"] == states(app, ann)["tips"] == "unsubscribed"
    before = len(events(app))
    client.post(f"/p/{p}", data={"csrf_token": csrf_token(html), "topics": ["news"]})
    new = events(app)[before:]
    assert (new[0].action, new[0].scope, new[0].confirmed) == ("grant", "all_marketing", True)
    # news was chosen before, so it needs no event; tips was not ticked, so it is withdrawn.
    assert [(e.action, e.topic_id) for e in new[1:]] == [("withdraw", topic_id(app, "tips"))]
    assert states(app, ann) == {"news": "subscribed", "tips": "unsubscribed", "orders": "subscribed"}


def test_ticking_a_pending_topic_on_the_preference_page_confirms_it(client, app, topics):
    contact_id = make_contact(app, "pat@example.com")
    grant(app, contact_id, "news", confirmed=False)
    p = token(app, links.PREFERENCES, contact_id)
    html = client.get(f"/p/{p}").get_data(as_text=True)
    assert "waiting for you to confirm" in html
    client.post(f"/p/{p}", data={"csrf_token": csrf_token(html), "topics": ["news"]})
    assert states(app, contact_id)["news"] == "subscribed"


def test_unsubscribe_from_all_on_the_preference_page_stops_marketing_but_not_system_mail(client, app, ann):
    p = token(app, links.PREFERENCES, ann)
    html = client.get(f"/p/{p}").get_data(as_text=True)
    response = client.post(f"/p/{p}/unsubscribe-all", data={"csrf_token": csrf_token(html)},
                           headers={"User-Agent": UA})
    assert response.status_code == 303
    assert states(app, ann) == {"news": "unsubscribed", "tips": "unsubscribed", "orders": "subscribed"}
    last = events(app, ann)[-2:]
    assert [(e.action, e.scope) for e in last] == [("withdraw", "all_marketing"), ("suppress", "contact")]
    assert "You are unsubscribed from all marketing email." in client.get(f"/p/{p}").get_data(as_text=True)


# -- unsubscribe and RFC 8058 one-click ------------------------------------------------

def test_unsubscribe_page_shows_a_confirm_button_for_the_topic(client, app, ann):
    html = client.get(f"/u/{token(app, links.UNSUBSCRIBE, ann, topic_id(app, 'news'))}").get_data(as_text=True)
    assert "Stop receiving email about News?" in html
    assert '<button type="submit">Unsubscribe</button>' in html


@pytest.mark.parametrize("encoding", ["urlencoded", "multipart"])
def test_one_click_post_unsubscribes_without_cookies(app, ann, encoding):
    gmail = app.test_client(use_cookies=False)
    path = f"/u/{token(app, links.UNSUBSCRIBE, ann, topic_id(app, 'news'))}"
    if encoding == "urlencoded":
        response = gmail.post(path, data="List-Unsubscribe=One-Click",
                              content_type="application/x-www-form-urlencoded")
    else:
        response = gmail.post(path, data={"List-Unsubscribe": "One-Click"}, content_type="multipart/form-data")
    assert response.status_code == 200
    assert "Location" not in response.headers
    assert response.mimetype == "text/plain"
    with app.app_context():  # durable before the 200: committed in the inbox, seen from a new session
        waiting = db.session.scalars(select(OptOutInbox)).all()
        assert [(w.contact_id, w.topic_id, w.source) for w in waiting] == [(ann, topic_id(app, "news"), "one-click")]
    assert settle(app) == 1
    last = events(app, ann)[-1]
    assert (last.action, last.topic_id, last.source) == ("withdraw", topic_id(app, "news"), "one-click")
    assert last.occurred_at == waiting[0].received_at
    assert states(app, ann)["news"] == "unsubscribed"
    assert ledger_ok(app)


@pytest.mark.parametrize("body, content_type, one_click", [
    ("List-Unsubscribe=One-Click", "application/x-www-form-urlencoded", True),
    ("List-Unsubscribe=One-Click", "application/x-www-form-urlencoded; charset=utf-8", True),
    ("List-Unsubscribe=One-Click&utm=x", "application/x-www-form-urlencoded", True),
    ("utm=x&List-Unsubscribe=One-Click", "application/x-www-form-urlencoded", True),
    ("List-Unsubscribe=One-Click", "text/plain", False),
    ("List-Unsubscribe=One-Clock", "application/x-www-form-urlencoded", False),  # as long, not the same
    ("List-Unsubscribe=one-click", "application/x-www-form-urlencoded", False),
    ("List-Unsubscribe=One-Click%00", "application/x-www-form-urlencoded", None),  # refused as hostile input
])
def test_only_a_one_click_body_is_taken_without_a_csrf_token(app, ann, body, content_type, one_click):
    gmail = app.test_client(use_cookies=False)
    response = gmail.post(f"/u/{token(app, links.UNSUBSCRIBE, ann, topic_id(app, 'news'))}", data=body,
                          content_type=content_type)
    with app.app_context():
        taken = db.session.scalar(select(func.count()).select_from(OptOutInbox))
    assert (response.status_code, taken) == ((200, 1) if one_click else (400, 0))


def test_repeated_one_click_posts_are_idempotent(app, ann):
    gmail = app.test_client(use_cookies=False)
    path = f"/u/{token(app, links.UNSUBSCRIBE, ann, topic_id(app, 'news'))}"
    first = gmail.post(path, data="List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded")
    after_first = snapshot(app)
    second = gmail.post(path, data="List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded")
    assert first.status_code == second.status_code == 200
    assert snapshot(app) == after_first


def test_one_click_on_the_all_marketing_link_opts_out_of_all_marketing(app, ann):
    gmail = app.test_client(use_cookies=False)
    response = gmail.post(f"/u/{token(app, links.UNSUBSCRIBE, ann, 0)}", data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200
    assert states(app, ann) == {"news": "unsubscribed", "tips": "unsubscribed", "orders": "subscribed"}
    with app.app_context():
        assert db.session.get(Contact, ann).marketing_opt_out_event_id is not None


def test_unsubscribe_button_without_csrf_token_changes_nothing(app, ann):
    stranger = app.test_client(use_cookies=False)
    before = snapshot(app)
    response = stranger.post(f"/u/{token(app, links.UNSUBSCRIBE, ann, 0)}", data={"confirm": "1"})
    assert response.status_code == 400
    assert snapshot(app) == before


def test_unsubscribe_button_unsubscribes_and_offers_an_undo_that_regrants(client, app, ann):
    path = f"/u/{token(app, links.UNSUBSCRIBE, ann, topic_id(app, 'news'))}"
    page = client.get(path).get_data(as_text=True)
    done = client.post(path, data={"csrf_token": csrf_token(page)}, headers={"User-Agent": UA},
                       environ_base={"REMOTE_ADDR": IP})
    html = done.get_data(as_text=True)
    assert done.status_code == 200 and "We no longer send you email about News." in html
    withdraw = events(app, ann)[-1]
    assert (withdraw.action, withdraw.source, withdraw.ip, withdraw.user_agent) == (
        "withdraw", "unsubscribe-page", IP, UA)
    assert "/p/" in html, "offers a link to manage the other topics"
    assert f'value="{withdraw.id}"' in html
    undone = client.post(f"{path}/undo", data={"csrf_token": csrf_token(html), "event": withdraw.id})
    assert undone.status_code == 200 and "Welcome back" in undone.get_data(as_text=True)
    regrant = events(app, ann)[-1]
    assert (regrant.action, regrant.confirmed, regrant.detail) == ("grant", True, {"undoes": withdraw.id})
    assert states(app, ann)["news"] == "subscribed"
    # A second undo finds nothing to undo.
    before = snapshot(app)
    again = client.post(f"{path}/undo", data={"csrf_token": csrf_token(html), "event": withdraw.id})
    assert "Nothing to undo" in again.get_data(as_text=True)
    assert snapshot(app) == before


def test_undo_cannot_grant_a_topic_the_person_never_had(client, app, topics):
    contact_id = make_contact(app, "cy@example.com")
    path = f"/u/{token(app, links.UNSUBSCRIBE, contact_id, topic_id(app, 'news'))}"
    form_token = csrf_token(client.get(path).get_data(as_text=True))
    html = client.post(path, data={"csrf_token": form_token}).get_data(as_text=True)
    assert "Undo" not in html
    withdraw = events(app, contact_id)[-1]
    client.post(f"{path}/undo", data={"csrf_token": form_token, "event": withdraw.id})
    assert states(app, contact_id)["news"] == "unsubscribed"


def test_unsubscribe_link_for_a_system_topic_is_not_valid(client, app, ann):
    before = snapshot(app)
    path = f"/u/{token(app, links.UNSUBSCRIBE, ann, topic_id(app, 'orders'))}"
    assert client.get(path).status_code == 404
    assert app.test_client(use_cookies=False).post(path, data={"List-Unsubscribe": "One-Click"}).status_code == 404
    assert snapshot(app) == before


# -- the public consent form (double opt-in) -------------------------------------------

def _subscribe(client, email, topics=("news",), name="", **extra):
    page = client.get("/subscribe").get_data(as_text=True)
    started = (re.search(r'name="started"[^>]*value="([^"]+)"', page)
               or re.search(r'value="([^"]+)"[^>]*name="started"', page))
    version = re.search(r'id="consent_version"[^>]*value="([^"]*)"', page)
    data = {"csrf_token": csrf_token(page), "email": email, "name": name, "topics": list(topics),
            "started": started.group(1), "consent_version": version.group(1), "website": "", **extra}
    return client.post("/subscribe", data=data, headers={"User-Agent": UA}, environ_base={"REMOTE_ADDR": IP})


def test_subscribe_form_has_unticked_consent_topics_and_the_versioned_consent_text(client, app, topics):
    with app.app_context():
        factories.topic("retired-news", retired=True)
        db.session.commit()
    html = client.get("/subscribe").get_data(as_text=True)
    assert 'value="news"' in html and "checked" not in html
    assert 'value="tips"' not in html, "legitimate-interest topics are not consent checkboxes"
    assert 'value="retired-news"' not in html
    assert "Consent wording version 1" in html
    with app.app_context():
        text = db.session.scalar(select(ConsentText).where(ConsentText.locale == "en"))
        assert text.version == "1" and text.text in html


def test_subscribe_records_pending_grant_and_confirmation_makes_it_count(client, app, topics):
    response = _subscribe(client, "New.Person@Example.com", name="Nia")
    assert response.status_code == 200 and "Check your inbox" in response.get_data(as_text=True)
    with app.app_context():
        contact = contacts.find("new.person@example.com")
        contact_id = contact.id
        assert contact.name == "Nia"
    pending = events(app, contact_id)[-1]
    assert (pending.action, pending.confirmed, pending.source, pending.consent_text_version) == \
        ("grant", False, "subscribe-form", "1")
    assert (pending.ip, pending.user_agent) == (IP, UA)
    assert states(app, contact_id)["news"] == "unsubscribed", "an unconfirmed grant does not count"

    mail = outbox(app)[-1]
    assert mail["To"] == "new.person@example.com" and "List-Unsubscribe" not in mail
    confirm = mailed_link(app, "new.person@example.com")
    assert confirm.startswith("/confirm/")
    before = snapshot(app)
    page = client.get(confirm)
    assert page.status_code == 200 and "News" in page.get_data(as_text=True)
    assert snapshot(app) == before

    done = client.post(confirm, data={"csrf_token": csrf_token(page.get_data(as_text=True))})
    assert done.status_code == 200 and "Subscription confirmed" in done.get_data(as_text=True)
    confirmed = events(app, contact_id)[-1]
    assert (confirmed.action, confirmed.confirmed, confirmed.consent_text_version, confirmed.source) == \
        ("grant", True, "1", "subscribe-confirm")
    assert confirmed.detail["confirms"] == pending.id
    assert states(app, contact_id)["news"] == "subscribed"
    # Confirming twice changes nothing more.
    after = snapshot(app)
    client.post(confirm, data={"csrf_token": csrf_token(page.get_data(as_text=True))})
    assert snapshot(app) == after
    assert ledger_ok(app)


def test_confirmation_post_requires_a_csrf_token(app, topics):
    client = app.test_client()
    _subscribe(client, "dee@example.com")
    confirm = mailed_link(app, "dee@example.com")
    before = snapshot(app)
    assert app.test_client(use_cookies=False).post(confirm).status_code == 400
    assert snapshot(app) == before


def test_subscribe_answers_the_same_for_known_and_unknown_addresses(client, app, ann):
    known = _subscribe(client, "ann@example.com", name="Mallory")
    unknown = _subscribe(client, "nobody@example.com", name="Mallory")
    assert known.status_code == unknown.status_code == 200
    assert known.get_data() == unknown.get_data()
    with app.app_context():
        assert db.session.get(Contact, ann).name == "Ann", "an unauthenticated form never edits a known profile"
    assert {m["To"] for m in outbox(app)} == {"ann@example.com", "nobody@example.com"}


def test_honeypot_submission_is_ignored_silently(client, app, topics):
    before = snapshot(app)
    response = _subscribe(client, "bot@example.com", website="http://spam.example")
    assert response.status_code == 200 and "Check your inbox" in response.get_data(as_text=True)
    assert snapshot(app) == before
    assert outbox(app) == []


def test_too_fast_submission_is_ignored_silently(client, app, topics):
    app.config["PC_SUBSCRIBE_MIN_SECONDS"] = 30
    before = snapshot(app)
    response = _subscribe(client, "fastbot@example.com")
    assert "Check your inbox" in response.get_data(as_text=True)
    assert snapshot(app) == before and outbox(app) == []


def test_subscribe_with_an_invalid_address_shows_the_error_and_records_nothing(client, app, topics):
    before = snapshot(app)
    response = _subscribe(client, "not-an-address")
    assert response.status_code == 400
    assert "Please enter a valid email address" in response.get_data(as_text=True)
    assert snapshot(app) == before


def test_subscribe_cites_the_consent_text_version_that_was_shown(client, app, topics):
    with app.app_context():
        db.session.add(ConsentText(version="2", locale="en", text="Newer wording about our newsletters."))
        db.session.commit()
    assert "Newer wording" in client.get("/subscribe").get_data(as_text=True)
    _subscribe(client, "eve@example.com")
    assert events(app)[-1].consent_text_version == "2"


def test_confirming_after_opting_out_of_all_marketing_grants_all_marketing_first(client, app, ann):
    gmail = app.test_client(use_cookies=False)
    gmail.post(f"/u/{token(app, links.UNSUBSCRIBE, ann, 0)}", data={"List-Unsubscribe": "One-Click"})
    _subscribe(client, "ann@example.com")
    confirm = mailed_link(app, "ann@example.com")
    client.post(confirm, data={"csrf_token": csrf_token(client.get(confirm).get_data(as_text=True))})
    assert states(app, ann)["news"] == "subscribed"


# -- bad links -------------------------------------------------------------------------

def _bad_links(app, contact_id):
    good = token(app, links.PREFERENCES, contact_id)
    body, _, signature = good.rpartition(".")
    # Change the first character: the last one of a base64 SHA-1 carries bits the decoder drops,
    # so changing it can leave the signature valid.
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    return {
        "tampered": f"{body}.{flipped}",
        "truncated": good[:-6],
        "wrong_purpose": token(app, links.UNSUBSCRIBE, contact_id, 0),
        "garbage": "not-a-token",
    }


@pytest.mark.parametrize("kind", ["tampered", "truncated", "wrong_purpose", "garbage"])
def test_invalid_preference_links_get_a_friendly_404_and_change_nothing(client, app, ann, kind):
    bad = _bad_links(app, ann)[kind]
    form_token = csrf_token(client.get(f"/p/{token(app, links.PREFERENCES, ann)}").get_data(as_text=True))
    before = snapshot(app)
    for response in (client.get(f"/p/{bad}"), client.get(f"/p/{bad}/data"),
                     client.post(f"/p/{bad}", data={"csrf_token": form_token, "topics": []})):
        assert response.status_code == 404
        assert "This link is not valid" in response.get_data(as_text=True)
    assert snapshot(app) == before


def test_tampered_one_click_link_is_rejected_and_changes_nothing(app, ann):
    good = token(app, links.UNSUBSCRIBE, ann, topic_id(app, "news"))
    # Point the payload at another topic while keeping the old signature.
    import base64
    import json
    body, _, rest = good.partition(".")
    forged = base64.urlsafe_b64encode(json.dumps([ann, 1, topic_id(app, "tips")], separators=(",", ":")).encode())
    before = snapshot(app)
    response = app.test_client(use_cookies=False).post(f"/u/{forged.decode().rstrip('=')}.{rest}",
                                                       data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 404
    assert snapshot(app) == before


def test_revoked_links_stop_working_after_the_token_version_is_bumped(client, app, ann):
    p = token(app, links.PREFERENCES, ann)
    with app.app_context():
        db.session.get(Contact, ann).token_version += 1
        db.session.commit()
    before = snapshot(app)
    response = client.get(f"/p/{p}")
    assert response.status_code == 404 and "This link no longer works" in response.get_data(as_text=True)
    assert snapshot(app) == before


def test_expired_confirmation_link_gets_410_and_changes_nothing(client, app, topics, monkeypatch):
    _subscribe(client, "late@example.com")
    with app.app_context():
        contact_id = contacts.find("late@example.com").id
    pending = events(app, contact_id)[-1].id
    hours = app.config["PC_CONFIRM_MAX_AGE_HOURS"]
    stale = old_token(monkeypatch, app, links.CONFIRM, contact_id, [pending], hours * 3600 + 60)
    fresh = old_token(monkeypatch, app, links.CONFIRM, contact_id, [pending], hours * 3600 - 60)
    form_token = csrf_token(client.get(f"/confirm/{fresh}").get_data(as_text=True))
    before = snapshot(app)
    response = client.get(f"/confirm/{stale}")
    assert response.status_code == 410 and "This link has expired" in response.get_data(as_text=True)
    assert client.post(f"/confirm/{stale}", data={"csrf_token": form_token}).status_code == 410
    assert snapshot(app) == before


def test_confirmation_link_cannot_confirm_another_persons_grant(client, app, ann):
    _subscribe(client, "victim@example.com")
    with app.app_context():
        victim = contacts.find("victim@example.com").id
    victims_pending = events(app, victim)[-1].id
    forged = token(app, links.CONFIRM, ann, [victims_pending])
    page = client.get(f"/confirm/{forged}").get_data(as_text=True)
    assert "nothing left to confirm" in page
    form_token = csrf_token(client.get("/subscribe").get_data(as_text=True))
    client.post(f"/confirm/{forged}", data={"csrf_token": form_token})
    assert states(app, victim)["news"] == "unsubscribed"


# -- languages -------------------------------------------------------------------------

def test_pages_switch_to_spanish_with_lang_and_remember_it(client, app, ann):
    p = token(app, links.PREFERENCES, ann)
    response = client.get(f"/p/{p}?lang=es")
    html = response.get_data(as_text=True)
    assert '<html lang="es">' in html and "Sus preferencias de correo" in html
    assert "pc_lang=es" in response.headers["Set-Cookie"]
    assert "Sus preferencias de correo" in client.get(f"/p/{p}").get_data(as_text=True)
    assert "Your email preferences" in client.get(f"/p/{p}?lang=en").get_data(as_text=True)


def test_pages_use_the_contacts_locale(client, app, topics):
    contact_id = make_contact(app, "ines@example.com", locale="es-MX")
    html = client.get(f"/u/{token(app, links.UNSUBSCRIBE, contact_id, 0)}").get_data(as_text=True)
    assert '<html lang="es">' in html and "¿Dejar de recibir todo nuestro correo de marketing?" in html


def test_pages_follow_the_browser_language_and_show_a_switch(client, app, topics):
    html = client.get("/subscribe", headers={"Accept-Language": "es-ES,es;q=0.9,en;q=0.5"}).get_data(as_text=True)
    assert "Suscríbase a nuestro correo" in html
    assert 'href="?lang=en"' in html and 'href="?lang=es"' in html


def test_confirmation_mail_is_written_in_the_language_of_the_form(client, app, topics):
    client.get("/subscribe?lang=es")
    _subscribe(client, "sofia@example.com")
    body = outbox(app)[-1].get_body(preferencelist=("plain",)).get_content()
    assert "Confírmelo abriendo este enlace" in body
    assert outbox(app)[-1]["Subject"] == "Confirme su suscripción"


# -- rate limits -----------------------------------------------------------------------

@pytest.mark.slow
def test_rate_limits_stop_floods_but_leave_room_for_one_click_retries(app_config, extra_app):
    app = extra_app({**app_config, "PC_RATELIMITS_ENABLED": True})
    with app.app_context():
        factories.topic("news")
        db.session.commit()
    client = app.test_client()
    statuses = [client.get("/subscribe").status_code for _ in range(61)]
    assert statuses[:60] == [200] * 60 and statuses[60] == 429
    assert "Retry-After" in client.get("/subscribe").headers
    # A bot that fetches the form first (so its posts pass CSRF) is stopped after 10 posts a minute.
    bot = app.test_client()
    bot_ip = {"REMOTE_ADDR": "198.51.100.9"}
    page = bot.get("/subscribe", environ_base=bot_ip).get_data(as_text=True)
    form = {"csrf_token": csrf_token(page), "email": "flood@example.com", "topics": ["news"], "website": "bot"}
    posts = [bot.post("/subscribe", data=form, environ_base=bot_ip).status_code for _ in range(11)]
    assert posts == [200] * 10 + [429]
    # One-click is limited per link, not per address: a provider posting many
    # recipients' opt-outs from one shared IP is never refused...
    gmail = app.test_client(use_cookies=False)
    google = {"REMOTE_ADDR": "209.85.220.41"}
    paths = [f"/u/{token(app, links.UNSUBSCRIBE, make_contact(app, f'r{i}@example.com'), 0)}" for i in range(100)]
    assert all(gmail.post(path, data={"List-Unsubscribe": "One-Click"}, environ_base=google).status_code == 200
               for path in paths)
    # ...while hammering one link is stopped after 30 a minute.
    again = [gmail.post(paths[0], data={"List-Unsubscribe": "One-Click"}, environ_base=google).status_code
             for _ in range(30)]
    assert again == [200] * 29 + [429]


@pytest.fixture
def extra_app():
    """Build an extra app with a given config (for settings that must be fixed at creation)."""
    from preference_center import create_app

    made = []

    def build(config):
        app = create_app(config)
        prepare_database(app)
        made.append(app)
        return app

    yield build
    for app in made:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def test_token_length_stays_short_enough_for_mail_clients(app, ann):
    preference = token(app, links.PREFERENCES, ann)
    unsubscribe = token(app, links.UNSUBSCRIBE, ann, topic_id(app, "news"))
    assert len(preference) < 80 and len(unsubscribe) < 80


def test_forms_work_over_https_although_browsers_send_no_referer(app, ann):
    # Referrer-Policy is no-referrer, so Flask-WTF's strict HTTPS referer check must be off.
    client = app.test_client()
    p = token(app, links.PREFERENCES, ann)
    html = client.get(f"/p/{p}", base_url="https://prefs.example.test").get_data(as_text=True)
    response = client.post(f"/p/{p}", base_url="https://prefs.example.test",
                           data={"csrf_token": csrf_token(html), "topics": ["news"]})
    assert response.status_code == 303
    assert states(app, ann)["tips"] == "unsubscribed"

"""The staff pages: sign-in, roles, audit, topics, contacts, campaigns and data requests."""
from __future__ import annotations

import datetime as dt
import re
from email import policy
from email.parser import BytesParser
from html import unescape
from pathlib import Path

import pytest
from sqlalchemy import func, select

from preference_center import actors, campaigns, contacts, ledger, rights, sending, topics
from preference_center.commands import people
from preference_center.extensions import db
from preference_center.models import ApiToken, AuditLog, Campaign, ConsentEvent, DataRequest, StaffUser, utcnow

from .helpers import Staff, confirm_and_post, factories, make_staff, text_of

# -- helpers ------------------------------------------------------------------------

@pytest.fixture
def news(ctx):
    topic = factories.topic("news")
    topic.name = "News"
    factories.topic("tips", basis="legitimate_interest", relationships=["customer"])
    factories.topic("orders", kind="system", basis="contract")
    db.session.commit()
    return topic


def audit_actions(actor: str | None = None) -> list[str]:
    query = select(AuditLog.action).order_by(AuditLog.id)
    if actor:
        query = query.where(AuditLog.actor == actor)
    return list(db.session.scalars(query))


# -- signing in ---------------------------------------------------------------------

def test_the_right_password_signs_in_and_opens_the_staff_pages(ctx, client):
    make_staff("boss@example.com", "admin")
    staff_client = Staff(client)
    response = staff_client.login("Boss@Example.com")
    assert response.status_code == 302 and response.headers["Location"].endswith("/admin/")
    home = client.get("/admin/")
    assert home.status_code == 200 and "boss@example.com" in home.text
    user = db.session.scalar(select(StaffUser))
    db.session.refresh(user)
    assert user.last_login_at is not None and user.failed_logins == 0
    assert "staff.login" in audit_actions("staff:boss@example.com")


def test_pages_need_a_session_and_send_people_to_sign_in(client, app):
    response = client.get("/admin/topics")
    assert response.status_code == 302 and "/admin/login?next=/admin/topics" in response.headers["Location"]
    assert client.post("/admin/topics/news/retire").status_code in (400, 401)


def test_a_wrong_password_and_an_unknown_user_get_the_same_answer(ctx, client):
    make_staff("boss@example.com", "admin")
    staff_client = Staff(client)
    wrong = staff_client.login("boss@example.com", "not the password")
    unknown = staff_client.login("nobody@example.com", "not the password")
    assert wrong.status_code == unknown.status_code == 401
    message = "Wrong email or password, or the account is locked after too many attempts."
    assert message in wrong.text and message in unknown.text
    assert text_of(wrong.text) == text_of(unknown.text).replace("nobody@example.com", "boss@example.com")
    assert not staff_client.signed_in()


def test_five_failed_sign_ins_lock_the_account_for_fifteen_minutes(ctx, client):
    make_staff("boss@example.com", "admin")
    staff_client = Staff(client)
    for _ in range(5):
        assert staff_client.login("boss@example.com", "guess").status_code == 401
    user = db.session.scalar(select(StaffUser))
    db.session.refresh(user)
    assert user.locked_until is not None
    assert dt.timedelta(minutes=14) < user.locked_until - utcnow() <= dt.timedelta(minutes=15)
    locked = staff_client.login("boss@example.com")  # even the right password
    assert locked.status_code == 401 and "Wrong email or password" in locked.text
    assert not staff_client.signed_in()
    assert "staff.locked" in audit_actions()
    user.locked_until = utcnow() - dt.timedelta(seconds=1)  # fifteen minutes later
    db.session.commit()
    assert staff_client.login("boss@example.com").status_code == 302


def test_signing_in_starts_a_fresh_permanent_session(ctx, client, app):
    make_staff("boss@example.com", "admin")
    with client.session_transaction() as session:
        session["planted"] = "by an attacker"
    response = Staff(client).login("boss@example.com")
    cookie = response.headers["Set-Cookie"]
    assert "Expires=" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    with client.session_transaction() as session:
        assert "planted" not in session
        assert session.permanent and session["staff_id"]


def test_a_session_older_than_its_lifetime_is_refused(as_admin, client, app):
    with client.session_transaction() as session:
        session["staff_since"] = session["staff_since"] - 9 * 3600
    assert client.get("/admin/").status_code == 302


def test_sign_out_is_a_post_that_ends_the_session(as_admin, client):
    assert client.get("/admin/logout").status_code == 405
    response = as_admin.post("/admin/logout")
    assert response.status_code == 302 and response.headers["Location"].endswith("/admin/login")
    assert client.get("/admin/").status_code == 302
    assert "staff.logout" in audit_actions("staff:boss@example.com")


def test_deactivating_a_user_signs_them_out_everywhere(as_admin, app):
    make_staff("mia@example.com", "marketer")
    other = Staff(app.test_client())
    assert other.login("mia@example.com").status_code == 302 and other.signed_in()
    user = db.session.scalar(select(StaffUser).where(StaffUser.email == "mia@example.com"))
    assert as_admin.post(f"/admin/users/{user.id}/deactivate").status_code == 302
    assert not other.signed_in()
    assert other.login("mia@example.com").status_code == 401


def test_every_admin_form_needs_its_csrf_token(as_admin, client, news):
    response = client.post("/admin/topics/news/retire")
    assert response.status_code == 400
    db.session.expire_all()
    assert not topics.get("news").retired


# -- roles --------------------------------------------------------------------------

def test_a_viewer_reads_every_page_but_every_post_is_refused(as_viewer, news):
    for path in ("/admin/", "/admin/topics", "/admin/contacts", "/admin/imports", "/admin/campaigns",
                 "/admin/requests", "/admin/audit", "/admin/topics/news"):
        assert as_viewer.get(path).status_code == 200, path
    for path, data in (("/admin/topics/news/retire", {}), ("/admin/topics/new", {"key": "x", "name": "X",
                                                                                "kind": "marketing"}),
                       ("/admin/campaigns/new", {"name": "N"}), ("/admin/imports", {})):
        assert as_viewer.post(path, data).status_code == 403, path
    db.session.expire_all()
    assert not topics.get("news").retired and topics.get("x") is None
    assert as_viewer.post("/admin/logout").status_code == 302, "signing out is always allowed"


def test_a_marketer_cannot_open_users_or_api_tokens(as_marketer):
    assert as_marketer.get("/admin/users").status_code == 403
    assert as_marketer.get("/admin/tokens").status_code == 403
    assert as_marketer.post("/admin/users", {"email": "x@example.com", "role": "admin",
                                             "password": "0123456789ab"}).status_code == 403
    assert as_marketer.post("/admin/tokens", {"name": "crm"}).status_code == 403
    assert db.session.scalar(select(func.count(ApiToken.id))) == 0
    assert "Users" not in as_marketer.get("/admin/").text


def test_an_admin_creates_users_and_tokens_and_revokes_them(as_admin):
    created = as_admin.post("/admin/users", {"email": "New@Example.com", "role": "viewer",
                                             "password": "long enough password"})
    assert created.status_code == 302
    assert db.session.scalar(select(StaffUser.role).where(StaffUser.email == "new@example.com")) == "viewer"
    short = as_admin.post("/admin/users", {"email": "x@example.com", "role": "viewer", "password": "short"})
    assert short.status_code == 422
    token_page = as_admin.post("/admin/tokens", {"name": "crm"})
    assert token_page.status_code == 201
    plaintext = re.search(r'id="new-token">([^<]+)<', token_page.text).group(1)
    assert plaintext.startswith("pc_")
    assert plaintext not in as_admin.get("/admin/tokens").text, "the token is shown once"
    token = db.session.scalar(select(ApiToken))
    assert as_admin.post(f"/admin/tokens/{token.id}/revoke").status_code == 302
    db.session.refresh(token)
    assert token.revoked_at is not None
    assert audit_actions("staff:boss@example.com")[-3:] == ["staff.create", "token.create", "token.revoke"]


def test_staff_changes_are_listed_on_the_audit_page(as_marketer, news):
    confirm_and_post(as_marketer, "/admin/topics/news/retire")
    page = as_marketer.get("/admin/audit")
    assert page.status_code == 200
    assert "staff:mia@example.com" in page.text and "topic.retire" in page.text


# -- topics -------------------------------------------------------------------------

def test_topics_are_created_edited_and_retired_with_kind_and_basis_shown(as_marketer):
    response = as_marketer.post("/admin/topics/new", {
        "key": "offers", "name": "Offers", "kind": "marketing", "legal_basis": "legitimate_interest",
        "default_relationships": ["customer"], "description": "Deals for you"})
    assert response.status_code == 302
    offers = topics.get("offers")
    assert (offers.kind, offers.legal_basis, offers.default_relationships) == (
        "marketing", "legitimate_interest", ["customer"])
    listing = text_of(as_marketer.get("/admin/topics").text)
    assert "Offers offers marketing Legitimate interest customer live" in listing

    edit = as_marketer.post("/admin/topics/offers", {"name": "Special offers", "legal_basis": "legitimate_interest",
                                                     "default_relationships": ["customer"], "description": ""})
    assert edit.status_code == 302
    db.session.expire_all()
    assert topics.get("offers").name == "Special offers" and topics.get("offers").default_relationships == ["customer"]

    assert confirm_and_post(as_marketer, "/admin/topics/offers/retire").status_code == 302
    db.session.expire_all()
    assert topics.get("offers").retired
    assert audit_actions("staff:mia@example.com")[-3:] == ["topic.create", "topic.update", "topic.retire"]


def test_a_system_topic_gets_the_contract_basis_whatever_is_posted(as_marketer):
    as_marketer.post("/admin/topics/new", {"key": "invoices", "name": "Invoices", "kind": "system",
                                           "legal_basis": "consent"})
    assert topics.get("invoices").legal_basis == "contract"
    page = as_marketer.get("/admin/topics/invoices").text
    assert "cannot change" in page and 'name="kind"' not in page and 'name="legal_basis"' not in page


@pytest.mark.parametrize("data, message", [
    ({"key": "Bad Key", "name": "X", "kind": "marketing", "legal_basis": "consent"}, "topic keys are"),
    ({"key": "news", "name": "Again", "kind": "marketing", "legal_basis": "consent"}, "exists already"),
    ({"key": "x", "name": "", "kind": "marketing", "legal_basis": "consent"}, "This field is required"),
    ({"key": "x", "name": "X", "kind": "marketing", "legal_basis": "consent",
      "default_relationships": ["customer"]}, "only apply to legitimate-interest topics"),
    ({"key": "x", "name": "X", "kind": "weird", "legal_basis": "consent"}, "Not a valid choice"),
])
def test_bad_topic_input_is_refused_with_a_reason(as_marketer, news, data, message):
    response = as_marketer.post("/admin/topics/new", data)
    assert response.status_code == 422
    assert message in unescape(response.text)
    assert topics.get("x") is None


def test_a_topic_kind_cannot_change(ctx, news):
    with pytest.raises(contacts.ValidationError, match="kind cannot change"):
        topics.update(news, {"kind": "system"})


# -- contacts -----------------------------------------------------------------------

def test_contacts_are_found_by_email_or_name(as_viewer):
    factories.contact("ann@example.com", name="Ann Lee")
    factories.contact("bob@example.org", name="Bob Stone")
    db.session.commit()
    by_email = as_viewer.get("/admin/contacts?q=example.org").text
    assert "bob@example.org" in by_email and "ann@example.com" not in by_email
    by_name = as_viewer.get("/admin/contacts?q=ann+lee").text
    assert "ann@example.com" in by_name and "bob@example.org" not in by_name
    assert "No contacts found" in as_viewer.get("/admin/contacts?q=zed").text


def test_the_contact_page_tells_the_ledger_as_sentences(as_viewer, news):
    ann = factories.contact("ann@example.com", relationship="customer", name="Ann")
    ledger.append(ledger.GRANT, contact=ann, topic_id=news.id, legal_basis="consent", source="preferences-page",
                  consent_text_version="1", confirmed=True, ip="203.0.113.7",
                  occurred_at=dt.datetime(2026, 11, 25, 14, 3, 9, tzinfo=dt.UTC))
    db.session.commit()
    page = text_of(as_viewer.get(f"/admin/contacts/{ann.id}").text)
    assert ("2026-11-25 14:03 UTC — granted consent to News via the preferences page (IP 203.0.113.7), "
            "consent text v1") in page
    assert "relationship recorded as customer" in page
    assert "News marketing Consent subscribed" in page and "Orders system Contract subscribed" in page
    assert ledger.verify().ok


def test_manual_suppression_stops_marketing_and_is_recorded_with_the_staff_source(as_marketer, news):
    ann = factories.contact("ann@example.com", relationship="customer")
    contacts.record_consent(ann, action="grant", topic=news, source="test", confirmed=True)
    db.session.commit()
    response = as_marketer.post(f"/admin/contacts/{ann.id}/suppress", {"scope": "marketing",
                                                                       "reason": "asked by phone"})
    assert response.status_code == 302
    db.session.expire_all()
    states = {s["topic"]: s["state"] for s in contacts.subscriptions_view(ann)}
    assert states == {"news": "unsubscribed", "tips": "unsubscribed", "orders": "subscribed"}
    event = db.session.scalar(select(ConsentEvent).where(ConsentEvent.action == "suppress"))
    assert event.source == "staff:mia@example.com" and event.detail == {"scope": "marketing",
                                                                          "reason": "asked by phone"}
    assert "contact.suppress" in audit_actions("staff:mia@example.com")
    page = text_of(as_marketer.get(f"/admin/contacts/{ann.id}").text)
    assert "address blocked from marketing mail (asked by phone) by staff member mia@example.com" in page
    as_marketer.post(f"/admin/contacts/{ann.id}/suppress", {"scope": "all", "reason": "legal hold"})
    db.session.expire_all()
    assert {s["state"] for s in contacts.subscriptions_view(ann)} == {"unsubscribed"}
    assert ledger.verify().ok


def test_a_suppression_needs_a_reason(as_marketer, news):
    ann = factories.contact("ann@example.com")
    db.session.commit()
    assert as_marketer.post(f"/admin/contacts/{ann.id}/suppress", {"scope": "all", "reason": ""}).status_code == 422
    assert contacts.suppressions_of(ann) == set()


def test_an_admin_lifts_a_bounce_suppression_and_mail_flows_again(as_admin, news):
    ann = factories.contact("ann@example.com", relationship="customer")
    contacts.record_consent(ann, action="grant", topic=news, source="test", confirmed=True)
    contacts.suppress(ann.email_hash, "all", "hard_bounce", source="webhook:sendgrid", contact=ann)
    db.session.commit()
    page = text_of(as_admin.get(f"/admin/contacts/{ann.id}").text)
    assert "all mail : hard bounce" in page and "Lift suppression" in page
    response = as_admin.post(f"/admin/contacts/{ann.id}/lift-suppression",
                             {"scope": "all", "why": "mailbox works again, confirmed by phone"})
    assert response.status_code == 302
    db.session.expire_all()
    assert contacts.suppressions_of(ann) == set()
    assert {s["topic"]: s["state"] for s in contacts.subscriptions_view(ann)}["news"] == "subscribed"
    event = db.session.scalar(select(ConsentEvent).where(ConsentEvent.action == "lift_suppression"))
    assert event.source == "staff:boss@example.com"
    assert event.detail == {"scope": "all", "reason": "hard_bounce", "why": "mailbox works again, confirmed by phone"}
    assert "contact.lift_suppression" in audit_actions("staff:boss@example.com")
    page = text_of(as_admin.get(f"/admin/contacts/{ann.id}").text)
    assert ("block from all mail (hard_bounce) lifted: mailbox works again, confirmed by phone "
            "by staff member boss@example.com") in page
    assert ledger.verify().ok


def test_a_persons_own_opt_out_and_erasure_cannot_be_lifted_by_staff(as_admin, news):
    ann = factories.contact("ann@example.com")
    contacts.record_consent(ann, action="withdraw", topic=None, source="preferences-page")
    db.session.commit()
    before = db.session.scalar(select(func.count()).select_from(ConsentEvent))
    page = text_of(as_admin.get(f"/admin/contacts/{ann.id}").text)
    assert "only their own fresh consent lifts it" in page and "Lift suppression" not in page
    response = as_admin.post(f"/admin/contacts/{ann.id}/lift-suppression", {"scope": "marketing", "why": "CEO asked"})
    assert response.status_code == 409
    assert "only their own fresh consent lifts it" in unescape(response.text)
    db.session.expire_all()
    assert contacts.suppressions_of(ann) == {"marketing"}
    assert db.session.scalar(select(func.count()).select_from(ConsentEvent)) == before
    contacts.erase(ann, source="test")
    with pytest.raises(contacts.ValidationError, match="erased"):
        contacts.lift_suppression(ann, "all", why="mistake", source="test")


@pytest.mark.parametrize("data, status", [
    ({"scope": "all", "why": "no such block"}, 422),
    ({"scope": "marketing", "why": ""}, 422),
    ({"scope": "everything", "why": "bad scope"}, 422),
])
def test_bad_lift_requests_change_nothing(as_admin, news, data, status):
    ann = factories.contact("ann@example.com")
    contacts.suppress(ann.email_hash, "marketing", "spam_complaint", source="webhook:sendgrid", contact=ann)
    db.session.commit()
    assert as_admin.post(f"/admin/contacts/{ann.id}/lift-suppression", data).status_code == status
    db.session.expire_all()
    assert contacts.suppressions_of(ann) == {"marketing"}


def test_only_admins_lift_suppressions(as_marketer, news):
    ann = factories.contact("ann@example.com")
    contacts.suppress(ann.email_hash, "marketing", "spam_complaint", source="webhook:sendgrid", contact=ann)
    db.session.commit()
    assert "Lift suppression" not in as_marketer.get(f"/admin/contacts/{ann.id}").text
    response = as_marketer.post(f"/admin/contacts/{ann.id}/lift-suppression", {"scope": "marketing", "why": "x"})
    assert response.status_code == 403
    db.session.expire_all()
    assert contacts.suppressions_of(ann) == {"marketing"}


# -- campaigns ----------------------------------------------------------------------

COMPOSE = {"name": "Winter", "topic": "news", "subject": "Hello {{ contact.name }}",
           "html": "<h1>Hi {{ contact.name }}</h1><p style=\"color:red\">Snow!</p>",
           "text": "Hi {{ contact.name }}, snow!"}


@pytest.fixture
def ann(news):
    person = factories.contact("ann@example.com", relationship="customer", name="Ann <b>")
    contacts.record_consent(person, action="grant", topic=news, source="test", confirmed=True)
    db.session.commit()
    return person


def test_compose_previews_the_message_as_the_chosen_contact_gets_it(as_marketer, ann):
    response = as_marketer.post("/admin/campaigns/new", {**COMPOSE, "preview_email": "ann@example.com",
                                                         "action": "preview"})
    assert response.status_code == 200
    frame = re.search(r"<iframe[^>]*>", response.text).group(0)
    assert "sandbox" in frame and 'srcdoc="' in frame
    srcdoc = unescape(re.search(r'srcdoc="([^"]*)"', frame).group(1))
    assert "<h1>Hi Ann &lt;b&gt;</h1>" in srcdoc, "the name is escaped in HTML"
    assert "https://prefs.example.test/u/" in srcdoc and "https://prefs.example.test/p/" in srcdoc
    assert "Hello Ann <b>" in unescape(response.text)
    assert "style-src 'self' 'unsafe-inline'" in response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert db.session.scalar(select(func.count(Campaign.id))) == 0, "a preview saves nothing"


def test_a_template_error_is_shown_not_saved(as_marketer, news):
    response = as_marketer.post("/admin/campaigns/new", {**COMPOSE, "text": "{{ oops", "action": "save"})
    assert response.status_code == 422 and "template syntax error" in response.text
    assert db.session.scalar(select(func.count(Campaign.id))) == 0


def save_draft(staff_client, **extra) -> Campaign:
    response = staff_client.post("/admin/campaigns/new", {**COMPOSE, "action": "save", **extra})
    assert response.status_code == 302, response.text
    return db.session.scalar(select(Campaign).order_by(Campaign.id.desc()))


def test_saving_a_draft_keeps_the_audience_filter(as_marketer, ann):
    campaign = save_draft(as_marketer, relationships=["customer"], locales="en, es")
    assert campaign.status == "draft" and campaign.created_by == "staff:mia@example.com"
    assert campaign.audience == {"relationships": ["customer"], "locales": ["en", "es"]}
    page = as_marketer.get(f"/admin/campaigns/{campaign.id}?contact=ann@example.com")
    assert page.status_code == 200 and "Hi Ann &amp;lt;b&amp;gt;" in page.text
    assert "campaign.create" in audit_actions("staff:mia@example.com")


def test_a_test_send_goes_to_the_staff_address_with_a_test_subject(as_marketer, ann, app):
    campaign = save_draft(as_marketer)
    response = as_marketer.post(f"/admin/campaigns/{campaign.id}/test", {"preview_email": "ann@example.com"})
    assert response.status_code == 302
    files = list((Path(app.config["PC_INSTANCE_PATH"]) / "outbox").glob("*.eml"))
    assert len(files) == 1
    with files[0].open("rb") as fh:
        message = BytesParser(policy=policy.default).parse(fh)
    assert message["To"] == "mia@example.com"
    assert message["Subject"] == "[TEST] Hello Ann <b>"
    body = message.get_body(preferencelist=("plain",)).get_content()
    assert "/admin/campaigns/" in body and "/u/" not in body, "test links touch no real subscription"
    assert "List-Unsubscribe" in message
    db.session.refresh(campaign)
    assert campaign.status == "draft"
    assert "campaign.test_send" in audit_actions("staff:mia@example.com")


def test_scheduling_converts_the_local_time_of_the_chosen_zone_to_utc(as_marketer, ann):
    campaign = save_draft(as_marketer)
    response = confirm_and_post(as_marketer, f"/admin/campaigns/{campaign.id}/schedule",
                                {"at": "2030-07-01T09:30", "zone": "Europe/Madrid"})
    assert response.status_code == 302
    db.session.refresh(campaign)
    assert campaign.status == "scheduled"
    assert campaign.scheduled_at == dt.datetime(2030, 7, 1, 7, 30, tzinfo=dt.UTC)
    assert campaign.timezone == "Europe/Madrid"
    confirm_and_post(as_marketer, f"/admin/campaigns/{campaign.id}/schedule",
                     {"at": "2030-01-15T09:30", "zone": "America/New_York"})
    db.session.refresh(campaign)
    assert campaign.scheduled_at == dt.datetime(2030, 1, 15, 14, 30, tzinfo=dt.UTC)


@pytest.mark.parametrize("at, zone, message", [
    ("2030-03-10T02:30", "America/New_York", "does not exist in America/New_York"),
    ("2001-01-01T09:00", "UTC", "that moment has passed"),
    ("2030-01-01T09:00", "Mars/Olympus", "Not a valid choice"),
])
def test_a_bad_schedule_time_is_refused(as_marketer, ann, at, zone, message):
    campaign = save_draft(as_marketer)
    response = as_marketer.post(f"/admin/campaigns/{campaign.id}/schedule", {"at": at, "zone": zone})
    assert response.status_code == 422 and message in unescape(response.text)
    db.session.refresh(campaign)
    assert campaign.status == "draft"


def test_a_scheduled_campaign_can_be_cancelled(as_marketer, ann):
    campaign = save_draft(as_marketer)
    confirm_and_post(as_marketer, f"/admin/campaigns/{campaign.id}/schedule", {"at": "2030-07-01T09:30", "zone": "UTC"})
    assert confirm_and_post(as_marketer, f"/admin/campaigns/{campaign.id}/cancel").status_code == 302
    db.session.refresh(campaign)
    assert campaign.status == "cancelled"
    again = as_marketer.post(f"/admin/campaigns/{campaign.id}/cancel", {"confirm": "1"}, follow_redirects=True)
    assert "cannot be cancelled" in again.text
    assert audit_actions("staff:mia@example.com")[-2:] == ["campaign.schedule", "campaign.cancel"]


def test_a_draft_and_a_scheduled_campaign_can_be_edited(as_marketer, ann):
    campaign = save_draft(as_marketer, relationships=["customer"], locales="en")
    form = as_marketer.get(f"/admin/campaigns/{campaign.id}/edit")
    assert form.status_code == 200 and 'value="Winter"' in form.text and "Save changes" in form.text
    assert f'href="/admin/campaigns/{campaign.id}/edit"' in as_marketer.get(f"/admin/campaigns/{campaign.id}").text
    response = as_marketer.post(f"/admin/campaigns/{campaign.id}/edit",
                                {**COMPOSE, "subject": "Spring {{ contact.name }}", "locales": "es", "action": "save"})
    assert response.status_code == 302
    db.session.refresh(campaign)
    assert (campaign.subject, campaign.status) == ("Spring {{ contact.name }}", "draft")
    assert campaign.audience == {"locales": ["es"]}
    confirm_and_post(as_marketer, f"/admin/campaigns/{campaign.id}/schedule", {"at": "2030-07-01T09:30", "zone": "UTC"})
    assert as_marketer.post(f"/admin/campaigns/{campaign.id}/edit",
                            {**COMPOSE, "name": "Summer", "action": "save"}).status_code == 302
    db.session.refresh(campaign)
    assert (campaign.name, campaign.status) == ("Summer", "scheduled")
    assert campaign.scheduled_at == dt.datetime(2030, 7, 1, 9, 30, tzinfo=dt.UTC)
    assert audit_actions("staff:mia@example.com").count("campaign.update") == 2


def test_a_bad_edit_or_an_edit_of_a_started_campaign_changes_nothing(as_marketer, ann):
    campaign = save_draft(as_marketer)
    response = as_marketer.post(f"/admin/campaigns/{campaign.id}/edit", {**COMPOSE, "html": "{% for %}",
                                                                        "action": "save"})
    assert response.status_code == 422 and "template syntax error" in response.text
    db.session.refresh(campaign)
    assert campaign.html == COMPOSE["html"]
    campaigns.schedule(campaign, None)
    db.session.commit()
    campaigns.start_due()
    refused = as_marketer.get(f"/admin/campaigns/{campaign.id}/edit", follow_redirects=True)
    assert "A sending campaign cannot be changed" in refused.text
    assert as_marketer.post(f"/admin/campaigns/{campaign.id}/edit",
                            {**COMPOSE, "name": "Late", "action": "save"}).status_code == 303
    db.session.refresh(campaign)
    assert campaign.name == "Winter"
    with pytest.raises(contacts.ValidationError, match="sending campaign cannot be changed"):
        campaigns.edit(campaign, {**COMPOSE, "name": "Late"})


def test_the_report_page_counts_outcomes_and_charts_deliveries_per_minute(as_marketer, ann, news):
    factories.contact("pat@example.com", relationship="customer")  # no consent: not in the audience
    blocked = factories.contact("bea@example.com")
    contacts.record_consent(blocked, action="grant", topic=news, source="test", confirmed=True)
    db.session.commit()
    campaign = save_draft(as_marketer)
    assert confirm_and_post(as_marketer, f"/admin/campaigns/{campaign.id}/schedule",
                            {"at": "", "zone": "UTC"}).status_code == 302
    campaigns.start_due()
    batch = sending.plan_chunk(campaign.id, 100)
    contacts.record_consent(blocked, action="withdraw", topic=news, source="test")  # opts out before sending
    db.session.commit()
    sending.send_batch(batch)
    sending.finish_campaign_if_done(campaign.id)
    page = as_marketer.get(f"/admin/campaigns/{campaign.id}/report")
    assert page.status_code == 200
    assert re.search(r'id="n-eligible">2<', page.text) and re.search(r'id="n-sent">1<', page.text)
    assert re.search(r'id="n-skipped">1<', page.text) and "<code>unsubscribed</code>" in page.text
    svg = re.search(r"<svg.*?</svg>", page.text, re.S).group(0)
    assert 'class="seg-sent"' in svg and 'class="seg-skipped"' in svg and "style=" not in svg
    assert "<script" not in page.text


# -- data requests ------------------------------------------------------------------

def test_data_requests_are_listed_oldest_due_first_with_overdue_ones_marked(as_viewer):
    old = factories.contact("old@example.com")
    new = factories.contact("new@example.com")
    done = factories.contact("done@example.com")
    late = rights.open_request(old, "erasure")
    late.requested_at = utcnow() - dt.timedelta(days=40)
    late.due_at = rights.due_date(late.requested_at)
    rights.open_request(new, "access")
    rights.complete(rights.open_request(done, "portability"))
    db.session.commit()
    page = as_viewer.get("/admin/requests").text
    assert page.index("old@example.com") < page.index("new@example.com")
    assert "done@example.com" not in page
    row = re.search(rf'<tr class="overdue" id="request-{late.id}">', page)
    overdue_by = (utcnow() - late.due_at).days
    assert row and f"OVERDUE by {overdue_by} days" in page
    # One calendar month: 28 to 31 days, less the part of today that has passed.
    assert re.search(r"(2[7-9]|3[01]) days left", page)
    completed = as_viewer.get("/admin/requests?status=completed").text
    assert "done@example.com" in completed and "old@example.com" not in completed


def test_an_admin_closes_a_restriction_request_only_once_it_holds(as_admin):
    person = factories.contact("p@example.com")
    request = rights.open_request(person, "restriction")
    db.session.commit()
    assert as_admin.post(f"/admin/requests/{request.id}/complete").status_code == 409
    db.session.refresh(request)
    assert request.status == "open"
    people.restrict(actors.staff("boss@example.com"), person)
    db.session.commit()
    db.session.refresh(request)
    assert request.status == "completed"  # restricting completed the open request
    assert db.session.scalar(select(func.count(DataRequest.id)).where(DataRequest.status == "open")) == 0

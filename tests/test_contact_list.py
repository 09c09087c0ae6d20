"""The staff contact list: search that ignores accents and case, filters, keyset pages with a total,
CSV export whose cells never run as formulas, bulk actions through the commands, adding and editing one
contact, and the mail each contact received."""
from __future__ import annotations

import csv
import io
import re

import pytest
from sqlalchemy import func, select

from preference_center import directory
from preference_center.extensions import db
from preference_center.folding import contact_text, fold
from preference_center.models import AuditLog, ConsentEvent, Contact, Delivery, Subscription, Suppression

from .helpers import confirm_and_post, factories, text_of


@pytest.fixture
def news(ctx):
    topic = factories.topic("news")
    factories.topic("tips", basis="legitimate_interest", relationships=["customer"])
    db.session.commit()
    return topic


def emails_on(page_html: str) -> list[str]:
    return re.findall(r'aria-label="Choose ([^"]+)"', page_html)


@pytest.mark.parametrize("text, folded", [("García", "garcia"), ("GARCIA", "garcia"), ("Straße", "strasse"),
                                          ("Ｚｏë  Ünal", "zoe unal"), ("Œuvre", "œuvre")])
def test_folding_ignores_case_and_accents(text, folded):
    assert fold(text) == folded


def test_search_finds_accented_names_either_way_and_by_company(news, as_marketer):
    factories.contact("ana@example.com", name="Ana García", company="Lácteos Peña")
    factories.contact("jose@example.com", name="JOSÉ Núñez")
    factories.contact("zed@example.com", name="Zed")
    db.session.commit()
    for query, expected in [("Garcia", ["ana@example.com"]), ("garcía", ["ana@example.com"]),
                            ("GARCÍA ana", ["ana@example.com"]), ("nunez", ["jose@example.com"]),
                            ("José", ["jose@example.com"]), ("lacteos pena", ["ana@example.com"]),
                            ("ZED@EXAMPLE.COM", ["zed@example.com"]), ("100%", []), ("a_a", [])]:
        page = as_marketer.get("/admin/contacts", query_string={"q": query})
        assert page.status_code == 200
        assert emails_on(page.text) == expected, query


def test_the_search_column_follows_every_write_and_is_blank_once_erased(news, api):
    api.put("/contacts/ana@example.com", json={"name": "Ana García", "company": "Peña"})
    contact = db.session.scalar(select(Contact).where(Contact.email == "ana@example.com"))
    assert contact.search_text == contact_text("ana@example.com", "Ana García", "Peña") == \
        "ana@example.com | ana garcia | pena"
    api.put("/contacts/ana@example.com", json={"name": "Ana Ölz"})
    db.session.refresh(contact)
    assert "ana olz" in contact.search_text
    assert api.delete("/contacts/ana@example.com").status_code in (200, 202)
    db.session.refresh(contact)
    assert contact.search_text is None


def test_pages_go_newest_first_with_a_total_and_a_cursor(news, as_marketer):
    for i in range(120):
        factories.contact(f"p{i:03d}@example.com", name=f"Person {i}")
    db.session.commit()
    first = as_marketer.get("/admin/contacts")
    assert "120 contacts match" in text_of(first.text)
    shown = emails_on(first.text)
    assert shown[0] == "p119@example.com" and len(shown) == directory.PAGE
    cursor = re.search(r'href="/admin/contacts\?before=(\d+)"', first.text).group(1)
    factories.contact("newer@example.com")  # arrives meanwhile: never shifts the next page
    db.session.commit()
    second = as_marketer.get("/admin/contacts", query_string={"before": cursor})
    assert emails_on(second.text)[0] == f"p{119 - directory.PAGE:03d}@example.com"
    third = as_marketer.get("/admin/contacts", query_string={
        "before": re.search(r'before=(\d+)"[^>]*rel="next"', second.text).group(1)})
    seen = shown + emails_on(second.text) + emails_on(third.text)
    assert len(seen) == len(set(seen)) == 120 and 'rel="next"' not in third.text
    assert as_marketer.get("/admin/contacts", query_string={"before": "x"}).status_code == 404


def test_filters_narrow_by_status_relationship_topic_state_suppression_and_source(news, as_marketer, api):
    ana = factories.contact("ana@example.com", relationship="customer")
    bo = factories.contact("bo@example.com")
    factories.contact("cy@example.com")
    db.session.commit()
    api.post("/contacts/bo@example.com/consents", json={"topic": "news", "action": "grant", "source": "form",
                                                        "confirmed": True})
    api.post("/contacts/cy@example.com/consents", json={"topic": "news", "action": "grant", "source": "form"})
    as_marketer.post(f"/admin/contacts/{ana.id}/suppress", {"scope": "marketing", "reason": "asked by phone"})

    def only(**args):
        return sorted(emails_on(as_marketer.get("/admin/contacts", query_string=args).text))

    assert only(relationship="customer") == ["ana@example.com"]
    assert only(topic="news", topic_state="subscribed") == ["bo@example.com"]
    assert only(topic="news", topic_state="pending") == ["cy@example.com"]
    assert only(topic="news", topic_state="none") == ["ana@example.com"]
    assert only(suppressed="yes") == ["ana@example.com"]
    assert only(suppressed="no") == ["bo@example.com", "cy@example.com"]
    assert only(status="active", relationship="prospect") == ["bo@example.com", "cy@example.com"]
    source = db.session.scalar(select(ConsentEvent.source).where(ConsentEvent.contact_id == bo.id)
                               .order_by(ConsentEvent.id.desc()))
    assert bo.email in only(source=source)
    assert as_marketer.get("/admin/contacts", query_string={"status": "zombie"}).status_code == 422


def test_the_csv_export_escapes_formula_cells_and_is_audited(news, as_marketer):
    factories.contact("ana@example.com", name="=HYPERLINK(\"http://evil\")", company="+1 Corp", title="@boss")
    factories.contact("bo@example.com", name="-2", company="Plain")
    factories.contact("cy@example.com", name="Cy")
    db.session.commit()
    response = as_marketer.get("/admin/contacts/export.csv", query_string={"q": "example.com", "relationship": "prospect"})
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    by_email = {r["email"]: r for r in rows}
    assert set(by_email) == {"ana@example.com", "bo@example.com", "cy@example.com"}
    assert by_email["ana@example.com"]["name"] == "'=HYPERLINK(\"http://evil\")"
    assert by_email["ana@example.com"]["company"] == "'+1 Corp" and by_email["ana@example.com"]["title"] == "'@boss"
    assert by_email["bo@example.com"]["name"] == "'-2" and by_email["bo@example.com"]["company"] == "Plain"
    assert by_email["cy@example.com"]["name"] == "Cy"
    entry = db.session.scalar(select(AuditLog).where(AuditLog.action == "contact.export_list"))
    assert entry.detail == {"filters": {"q": "example.com", "relationship": "prospect"}, "rows": 3}


def test_a_viewer_cannot_export(news, as_viewer):
    assert as_viewer.get("/admin/contacts/export.csv").status_code == 403


def test_bulk_suppress_asks_first_then_writes_one_event_and_audit_entry_each(news, as_marketer):
    people = [factories.contact(f"p{i}@example.com") for i in range(3)]
    db.session.commit()
    ids = [str(p.id) for p in people[:2]]
    step = as_marketer.post("/admin/contacts/bulk", {"action": "suppress_marketing", "reason": "list cleaning",
                                                     "id": ids})
    assert step.status_code == 200 and "Stop marketing mail to 2 contacts?" in text_of(step.text)
    assert db.session.scalar(select(func.count(Suppression.id))) == 0
    done = confirm_and_post(as_marketer, "/admin/contacts/bulk",
                            {"action": "suppress_marketing", "reason": "list cleaning", "id": ids})
    assert done.status_code == 303
    assert db.session.scalar(select(func.count(Suppression.id)).where(Suppression.scope == "marketing")) == 2
    assert db.session.scalar(select(func.count(AuditLog.id)).where(AuditLog.action == "contact.suppress")) == 2
    again = confirm_and_post(as_marketer, "/admin/contacts/bulk",
                             {"action": "suppress_marketing", "reason": "x", "scope": "matching"})
    assert "Done for 1 contact. Skipped: 2 already suppressed." in text_of(
        as_marketer.get(again.headers["Location"]).text)


def test_a_bulk_suppression_needs_a_reason_before_anything_is_asked(news, as_marketer):
    person = factories.contact("p@example.com")
    db.session.commit()
    response = as_marketer.post("/admin/contacts/bulk", {"action": "suppress_all", "reason": " ", "id": [str(person.id)]},
                                follow_redirects=True)
    assert "say why these addresses are suppressed" in text_of(response.text)
    assert db.session.scalar(select(func.count(Suppression.id))) == 0


def test_bulk_ask_sends_the_double_opt_in_to_each_and_leaves_them_pending(news, as_marketer, app):
    people = [factories.contact(f"p{i}@example.com") for i in range(2)]
    db.session.commit()
    confirm_and_post(as_marketer, "/admin/contacts/bulk",
                     {"action": "ask", "topic": "news", "id": [str(p.id) for p in people]})
    states = db.session.scalars(select(Subscription.state)).all()
    assert states == ["pending", "pending"]
    from .helpers import outbox
    assert sorted(m["To"] for m in outbox(app)) == ["p0@example.com", "p1@example.com"]


def test_bulk_ask_refuses_a_topic_that_is_not_consent(news, as_marketer):
    person = factories.contact("p@example.com")
    db.session.commit()
    response = confirm_and_post(as_marketer, "/admin/contacts/bulk", {"action": "ask", "topic": "news",
                                                                      "id": [str(person.id)]})
    assert response.status_code == 303
    step = as_marketer.post("/admin/contacts/bulk", {"action": "ask", "topic": "tips", "id": [str(person.id)],
                                                     "confirm": "1", "ids": str(person.id)})
    assert step.status_code == 303  # tips is not offered: the form refuses the choice
    assert db.session.scalar(select(func.count()).select_from(Subscription)) == 1


def test_adding_a_contact_goes_through_the_commands_and_refuses_a_duplicate(news, as_marketer):
    response = as_marketer.post("/admin/contacts/new", {"email": "New@Example.com", "name": "Nú Ñame",
                                                        "company": "Co", "locale": "es", "relationship": "customer"})
    assert response.status_code == 302
    contact = db.session.scalar(select(Contact).where(Contact.email == "new@example.com"))
    assert (contact.name, contact.company, contact.locale, contact.relationship) == ("Nú Ñame", "Co", "es", "customer")
    assert db.session.scalar(select(AuditLog.action).where(AuditLog.target_id == str(contact.id))) == "contact.create"
    assert db.session.scalar(select(func.count()).select_from(Subscription)) == 0
    again = as_marketer.post("/admin/contacts/new", {"email": "new@example.com", "relationship": "prospect"})
    assert again.status_code == 409 and "exists already" in text_of(again.text)
    bad = as_marketer.post("/admin/contacts/new", {"email": "not-an-address", "relationship": "prospect"})
    assert bad.status_code == 422
    assert db.session.scalar(select(func.count(Contact.id))) == 1


def test_editing_a_contact_records_what_changed(news, as_marketer):
    contact = factories.contact("ana@example.com", name="Ana")
    db.session.commit()
    form = as_marketer.get(f"/admin/contacts/{contact.id}/edit")
    assert form.status_code == 200 and 'value="Ana"' in form.text
    response = as_marketer.post(f"/admin/contacts/{contact.id}/edit", {
        "email": "ignored@example.com", "name": "Ana García", "company": "", "title": "", "phone": "",
        "locale": "es", "relationship": "customer"})
    assert response.status_code == 302
    db.session.refresh(contact)
    assert (contact.email, contact.name, contact.locale, contact.relationship) == \
        ("ana@example.com", "Ana García", "es", "customer")
    actions = db.session.scalars(select(AuditLog.action).where(AuditLog.target_id == str(contact.id))).all()
    assert "contact.rectify" in actions
    bad = as_marketer.post(f"/admin/contacts/{contact.id}/edit", {"name": "x\nBcc: y", "relationship": "customer"})
    assert bad.status_code == 422
    db.session.refresh(contact)
    assert contact.name == "Ana García"


def test_the_contact_page_lists_the_mail_it_received(news, as_marketer, api):
    api.post("/contacts/ana@example.com/consents", json={"topic": "news", "action": "grant", "source": "form",
                                                         "confirmed": True})
    campaign = api.post("/campaigns", json={"name": "Winter news", "topic": "news", "subject": "Hi",
                                            "text": "Hi"}).json["id"]
    api.post(f"/campaigns/{campaign}/schedule", json={"at": None})
    from preference_center import campaigns, sending
    campaigns.start_due()
    batch = sending.plan_chunk(campaign, 100)
    sending.send_batch(batch)
    contact = db.session.scalar(select(Contact).where(Contact.email == "ana@example.com"))
    assert db.session.scalar(select(func.count(Delivery.id)).where(Delivery.contact_id == contact.id)) == 1
    page = text_of(as_marketer.get(f"/admin/contacts/{contact.id}").text)
    assert "Mail sent to this contact" in page and "Winter news sent" in page

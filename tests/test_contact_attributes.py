"""Custom contact attributes: set through the API, the CSV import and the staff form, checked alike at
every door, printed by templates as `contact.attributes.<key>` (in the provider payload, the preview and
the test send alike), filtered on by segments with live counts, and gone after an erasure.
"""
from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from preference_center import actors, attributes, campaigns, compose, contacts
from preference_center.admin import preview
from preference_center.commands import campaigns as campaign_commands
from preference_center.errors import ValidationError
from preference_center.extensions import db
from preference_center.mail import TemplateError
from preference_center.mail.personal import compile_part, contact_values
from preference_center.models import AuditLog, ConsentEvent, Contact, Segment, Topic

from .helpers import drain, factories, text_of

SUBJECT = "Your {{ contact.attributes.plan|default('free') }} plan"
TEXT = ("Seats: {{ contact.attributes.seats }}; trial: {{ contact.attributes['trial'] }}"
        "{% if contact.attributes.city %} in {{ contact.attributes.city|upper }}{% endif %}.")
HTML = "<p>{{ contact.attributes.city }} / {{ contact.attributes.plan or 'none' }}</p>"


# A contact with confirmed consent to the topic.
person = factories.subscriber


@pytest.fixture
def news(ctx):
    topic = factories.topic("news")
    db.session.commit()
    return topic


def send(topic: Topic, subject: str, text: str, html: str = "", audience: dict | None = None) -> int:
    campaign = campaign_commands.create(actors.staff("mia@example.com"), {
        "name": "A", "topic": topic.key, "subject": subject, "text": text, "html": html,
        **({"audience": audience} if audience else {})})
    campaigns.schedule(campaign, None)
    db.session.commit()
    drain(campaign.id)
    return campaign.id


def body(text: str) -> str:
    return text.split("\n\n--\n")[0]


# -- checking ---------------------------------------------------------------------------

@pytest.mark.parametrize("bad, words", [
    ({"Plan": "x"}, "must start with a-z"),
    ({"a" * 41: "x"}, "at most 40 characters"),
    ({"plan": "two\nlines"}, "one line"),
    ({"plan": "\x00"}, "U+0000"),
    ({"plan": "x" * 501}, "at most 500"),
    ({"plan": None}, "a text, a number or true/false"),
    ({"plan": ["gold"]}, "a text, a number or true/false"),
    ({"score": float("nan")}, "finite"),
    ({"score": 2**60}, "between"),
    ({f"k{i}": i for i in range(51)}, "at most 50 attributes"),
    ({f"k{i}": "x" * 400 for i in range(30)}, "bytes together"),
    (["plan"], "an object"),
])
def test_bad_attributes_are_refused_with_a_clear_error(bad, words):
    with pytest.raises(ValidationError) as refused:
        attributes.clean(bad)
    assert words in str(refused.value) and refused.value.field == "attributes"


def test_good_attributes_are_kept_with_their_types():
    assert attributes.clean({"plan": "gold", "seats": 12, "ratio": 2.5, "whole": 3.0, "trial": False}) == {
        "plan": "gold", "seats": 12, "ratio": 2.5, "whole": 3, "trial": False}
    assert attributes.clean(None) == {}


def test_the_staff_editor_text_reads_back_as_what_it_shows():
    stored = {"plan": "gold", "seats": 12, "trial": True, "code": "007", "word": "true", "ratio": 0.5}
    text = attributes.to_lines(stored)
    assert attributes.parse_lines(text) == stored
    with pytest.raises(ValidationError, match="line 2: write each attribute as key = value"):
        attributes.parse_lines("plan = gold\nnonsense")
    with pytest.raises(ValidationError, match="given twice"):
        attributes.parse_lines("plan = gold\nplan = silver")


# -- personalisation --------------------------------------------------------------------

@pytest.mark.sendgrid(PC_SENDGRID_MAX_ATTEMPTS=2, PC_BATCH_SIZE=100)
def test_attributes_reach_each_recipient_in_subject_text_and_html_and_missing_ones_take_the_default(
        news, fake):
    person(news, "ana@example.com", attributes={"plan": "gold", "seats": 12, "trial": True, "city": "Lyon <1>"})
    person(news, "bo@example.com")  # no attributes at all
    person(news, "cy@example.com", attributes={"seats": 0})
    send(news, SUBJECT, TEXT, HTML)
    got = {a.to[0]: a for a in fake.accepted}
    ana, bo, cy = got["ana@example.com"], got["bo@example.com"], got["cy@example.com"]
    assert ana.subject == "Your gold plan"
    assert body(ana.content["text/plain"]) == "Seats: 12; trial: True in LYON <1>."
    assert ana.content["text/html"].startswith("<p>Lyon &lt;1&gt; / gold</p><hr>")
    assert bo.subject == "Your free plan"
    assert body(bo.content["text/plain"]) == "Seats: ; trial: ."
    assert bo.content["text/html"].startswith("<p> / none</p><hr>")
    assert cy.subject == "Your free plan" and body(cy.content["text/plain"]) == "Seats: 0; trial: ."
    for mail in got.values():
        assert "-pc_" not in mail.subject + json.dumps(mail.content)
    assert fake.requests == 1  # still one request for all: the attributes travel as substitutions


def test_a_plain_attribute_is_a_substitution_read_straight_from_the_row(news):
    part = compile_part("text", "Hi {{ contact.attributes.plan }} and {{ contact.attributes['seats'] }}", False)
    assert part.split and [h.field for h in part.holes] == ["attributes.plan", "attributes.seats"]
    mail = compose.CampaignMail(news, "S", "", "{{ contact.attributes.plan }}", 1)
    assert mail.plain  # the fast path: values read from the contact row, no render per recipient


def test_what_the_provider_gets_equals_the_whole_render_for_every_recipient(news):
    people = [person(news, f"p{i}@example.com", attributes=values) for i, values in enumerate(
        [{"plan": "Ünïcode & <b>", "seats": 3}, {}, {"plan": "x" * 500, "trial": False, "city": "Oslo"}])]
    mail = compose.CampaignMail(news, SUBJECT, HTML, TEXT, 1)
    for contact in people:
        message, envelope = mail.envelope(contact, 1)
        context = {"contact": contact_values(contact), "unsubscribe_url": "U", "preferences_url": "P"}
        for name, source, got in (("subject", SUBJECT, message.subject), ("text", TEXT, message.text),
                                  ("html", HTML, message.html)):
            whole = compile_part(name, source, name == "html").render_whole(context, 1e12)
            for key, value in envelope.substitutions.items():
                got = got.replace(key, value)
            assert got.startswith(whole), (name, contact.email)


def test_any_attribute_key_is_valid_when_saving_but_other_contact_fields_are_not(news):
    compose.check_campaign(news, "{{ contact.attributes.anything_at_all|default('x') }}", "",
                           "{{ contact.attributes['other'] }}")
    with pytest.raises(TemplateError, match="contact.shoe_size"):
        compose.check_campaign(news, "S", "", "{{ contact.shoe_size }}")
    # A use that fails for a contact without the attribute is refused at the door, as for a missing company.
    with pytest.raises(TemplateError):
        compose.check_campaign(news, "S", "", "{{ contact.attributes.plan.upper() }}")


def test_preview_and_test_send_show_the_contacts_attributes(news, app):
    ana = person(news, "ana@example.com", attributes={"plan": "gold", "seats": 2})
    shown = preview.render_for(news, SUBJECT, HTML, TEXT, ana)
    assert shown.subject == "Your gold plan" and shown.text.startswith("Seats: 2; trial: .")
    sample = preview.render_for(news, SUBJECT, HTML, TEXT, None)
    assert sample.subject == "Your free plan"
    preview.send_test(news, SUBJECT, HTML, TEXT, to="mia@example.com", contact=ana, campaign_id=None)
    from .helpers import outbox
    sent = outbox(app)[-1]
    assert "Your gold plan" in sent["Subject"]


# -- the API --------------------------------------------------------------------------

def test_the_api_sets_replaces_and_shows_attributes(ctx, api):
    created = api.put("/contacts/ann@example.com", json={"name": "Ann", "attributes": {"plan": "gold", "seats": 3}})
    assert created.status_code == 201 and created.json["attributes"] == {"plan": "gold", "seats": 3}
    kept = api.put("/contacts/ann@example.com", json={"name": "Ann Lee"})
    assert kept.json["attributes"] == {"plan": "gold", "seats": 3}
    replaced = api.put("/contacts/ann@example.com", json={"attributes": {"trial": True}})
    assert replaced.status_code == 200 and replaced.json["attributes"] == {"trial": True}
    assert api.get("/contacts/ann@example.com").json["attributes"] == {"trial": True}
    rectified = db.session.scalars(select(ConsentEvent.detail).where(ConsentEvent.action == "rectify")).all()
    assert {"fields": ["attributes"]} in rectified
    assert api.put("/contacts/ann@example.com", json={"attributes": {}}).json["attributes"] == {}


@pytest.mark.parametrize("bad", [{"Bad Key": 1}, {"plan": "a\nb"}, {"plan": None}, {"plan": {"x": 1}},
                                 {f"k{i}": "x" * 400 for i in range(30)}, ["plan"],
                                 # past ±2**53: refused, not rounded to the nearest float
                                 {"seats": -(2**53) - 1}, {"seats": 2**53 + 1}, {"seats": 10**30}])
def test_bad_attributes_through_the_api_are_a_422_and_change_nothing(ctx, api, bad):
    api.put("/contacts/ann@example.com", json={"attributes": {"plan": "gold"}})
    before = db.session.scalar(select(func.count(ConsentEvent.id)))
    refused = api.put("/contacts/ann@example.com", json={"attributes": bad})
    assert refused.status_code == 422 and "attributes" in json.dumps(refused.json["error"])
    db.session.expire_all()
    assert db.session.scalar(select(func.count(ConsentEvent.id))) == before
    assert db.session.scalar(select(Contact.attributes)) == {"plan": "gold"}


def test_the_openapi_document_describes_attributes(api):
    document = api.get("/openapi.json").json
    schemas = document["components"]["schemas"]
    given = json.dumps(schemas["ContactInput"]["properties"]["attributes"])
    assert "patternProperties" in given and '"maxProperties": 50' in given
    assert "attributes" in schemas["Contact"]["required"]


# -- the CSV import ---------------------------------------------------------------------

def _import(staff, content: str, **settings):
    import io

    from preference_center.models import ImportJob

    staff.post("/admin/imports", {"file": (io.BytesIO(content.encode()), "people.csv")},
               content_type="multipart/form-data")
    job = db.session.scalar(select(ImportJob).order_by(ImportJob.id.desc()))
    form = {"has_header": "y", "map_email": "0", "map_name": "1", "legal_basis": "legitimate_interest",
            "source_text": "CRM export", **settings}
    return job, staff.post(f"/admin/imports/{job.id}/preview", form)


def test_columns_not_otherwise_mapped_can_be_imported_as_attributes(news, as_marketer):
    factories.contact("old@example.com", attributes={"plan": "bronze", "city": "Lyon"})
    db.session.commit()
    job, previewed = _import(as_marketer, "Email,Name,Plan Tier,Seats,Trial\n"
                                          "new@example.com,New,gold,12,true\n"
                                          "old@example.com,Old,silver,,\n",
                             attribute_columns=["2", "3", "4"])
    assert previewed.status_code == 302
    page = as_marketer.get(f"/admin/imports/{job.id}")
    assert "plan_tier" in page.text and 'value="2" checked' in page.text
    assert as_marketer.post(f"/admin/imports/{job.id}/run").status_code == 302
    db.session.expire_all()
    assert contacts.find("new@example.com").attributes == {"plan_tier": "gold", "seats": 12, "trial": True}
    # An empty cell keeps what we know; the file adds to the stored attributes, it removes none.
    assert contacts.find("old@example.com").attributes == {"plan": "bronze", "city": "Lyon", "plan_tier": "silver"}


def test_an_attribute_cell_that_breaks_the_rules_makes_its_row_invalid_and_nothing_else(news, as_marketer):
    job, previewed = _import(as_marketer, "Email,Name,Note\n"
                                          f"long@example.com,Long,{'x' * 501}\n"
                                          "fine@example.com,Fine,ok\n", attribute_columns=["2"])
    assert previewed.status_code == 302
    db.session.expire_all()
    preview_data = db.session.get(type(job), job.id).preview
    assert preview_data["counts"]["invalid"] == 1 and "at most 500" in json.dumps(preview_data["invalid"])
    assert contacts.find("long@example.com") is None


def test_a_column_cannot_be_both_a_field_and_an_attribute(news, as_marketer):
    job, previewed = _import(as_marketer, "Email,Name\na@example.com,A\n", attribute_columns=["1"])
    assert previewed.status_code == 422 and "mapped twice" in text_of(previewed.text)


# -- the staff form ---------------------------------------------------------------------

def test_staff_add_and_edit_attributes_in_the_contact_form(news, as_marketer):
    added = as_marketer.post("/admin/contacts/new", {"email": "ann@example.com", "relationship": "prospect",
                                                     "attributes": "plan = gold\nseats = 3\n\ncode = \"007\""})
    assert added.status_code == 302
    ann = contacts.find("ann@example.com")
    assert ann.attributes == {"plan": "gold", "seats": 3, "code": "007"}
    form = as_marketer.get(f"/admin/contacts/{ann.id}/edit")
    assert ">plan = gold\nseats = 3\ncode = 007</textarea>" in form.text  # 007 reads back as a text
    edited = as_marketer.post(f"/admin/contacts/{ann.id}/edit", {"relationship": "prospect", "attributes": "plan = silver"})
    assert edited.status_code == 302
    db.session.expire_all()
    assert contacts.find("ann@example.com").attributes == {"plan": "silver"}
    assert db.session.scalar(select(AuditLog.detail).where(AuditLog.action == "contact.rectify")) == {
        "fields": ["attributes"]}


@pytest.mark.parametrize("typed, words", [("plan gold", "line 1: write each attribute as key = value"),
                                          ("Plan = gold", "must start with a-z"),
                                          ("plan = " + "x" * 501, "at most 500")])
def test_bad_attribute_lines_are_a_form_error_and_nothing_is_stored(news, as_marketer, typed, words):
    refused = as_marketer.post("/admin/contacts/new", {"email": "ann@example.com", "relationship": "prospect",
                                                       "attributes": typed})
    assert refused.status_code == 422 and words in text_of(refused.text)
    assert contacts.find("ann@example.com") is None


# -- segments and campaign audiences ------------------------------------------------------

@pytest.fixture
def crowd(news):
    for email, values in (("gold@example.com", {"plan": "gold", "seats": 12, "vip": True}),
                          ("silver@example.com", {"plan": "silver", "seats": 3, "vip": False}),
                          ("plain@example.com", None), ("twelve@example.com", {"plan": "12"})):
        person(news, email, **({"attributes": values} if values is not None else {}))
    return news


@pytest.mark.parametrize("condition, who", [
    ({"key": "plan", "op": "equals", "value": "gold"}, {"gold"}),
    ({"key": "plan", "op": "not_equals", "value": "gold"}, {"silver", "plain", "twelve"}),
    ({"key": "plan", "op": "is_set"}, {"gold", "silver", "twelve"}),
    ({"key": "seats", "op": "equals", "value": 12}, {"gold"}),
    ({"key": "seats", "op": "equals", "value": "3"}, {"silver"}),
    ({"key": "plan", "op": "equals", "value": 12}, {"twelve"}),  # compared as written
    ({"key": "vip", "op": "equals", "value": True}, {"gold"}),
    ({"key": "vip", "op": "equals", "value": "false"}, {"silver"}),
    ({"key": "nothing", "op": "is_set"}, set()),
])
def test_an_attribute_condition_narrows_the_audience_alike_on_every_database(crowd, condition, who):
    from preference_center import audiences, rules

    filters = rules.check_audience({"attributes": [condition]})
    chosen = {r.email.split("@")[0] for chunk in rules.audience(crowd, filters=filters) for r in chunk}
    assert chosen == who
    assert audiences.count(crowd, filters) == len(who)


def test_a_segment_with_an_attribute_condition_counts_live_and_carries_it_into_the_campaign(crowd, as_marketer):
    saved = as_marketer.post("/admin/segments/new", {"name": "Gold", "topic": "news",
                                                     "attribute_filters": "plan = gold\nvip is set"})
    assert saved.status_code == 302
    segment = db.session.scalar(select(Segment))
    assert segment.filters == {"attributes": [{"key": "plan", "op": "equals", "value": "gold"},
                                              {"key": "vip", "op": "is_set"}]}
    assert "Gold News 1" in text_of(as_marketer.get("/admin/segments").text)
    person(crowd, "late@example.com", attributes={"plan": "gold", "vip": False})
    assert "Gold News 2" in text_of(as_marketer.get("/admin/segments").text)  # live
    edit = as_marketer.get(f"/admin/segments/{segment.id}")
    assert "plan = gold\nvip is set" in edit.text
    from .helpers import csrf_token

    page = as_marketer.get("/admin/campaigns/new")
    filled = as_marketer.post("/admin/campaigns/new", {"csrf_token": csrf_token(page.text), "name": "",
                                                       "segment": str(segment.id), "action": "apply_segment"})
    assert "plan = gold\nvip is set" in filled.text and "Eligible now: 2" in text_of(filled.text)
    counted = as_marketer.get("/admin/campaigns/audience-count", query_string={
        "topic": "news", "attribute_filters": "plan != gold"})
    assert counted.json == {"count": 3}


@pytest.mark.parametrize("typed, words", [("plan ~ gold", "line 1: write key = value"),
                                          ("Plan = gold", "must start with a-z")])
def test_a_bad_attribute_condition_is_a_form_error(crowd, as_marketer, typed, words):
    refused = as_marketer.post("/admin/segments/new", {"name": "Bad", "topic": "news", "attribute_filters": typed})
    assert refused.status_code == 422 and words in text_of(refused.text)
    assert db.session.scalar(select(func.count(Segment.id))) == 0


def test_the_api_takes_attribute_conditions_in_a_campaign_audience(crowd, api):
    created = api.post("/campaigns", json={"name": "G", "topic": "news", "subject": "Hi", "text": "Hi",
                                          "audience": {"attributes": [{"key": "plan", "op": "equals", "value": "gold"}]}})
    assert created.status_code == 201, created.json
    assert created.json["audience"]["attributes"] == [{"key": "plan", "op": "equals", "value": "gold"}]
    assert api.get(f"/campaigns/{created.json['id']}/audience").json == {"count": 1}
    refused = api.post("/campaigns", json={"name": "G", "topic": "news", "subject": "Hi", "text": "Hi",
                                          "audience": {"attributes": [{"key": "plan", "op": "like", "value": "g"}]}})
    assert refused.status_code == 422


@pytest.mark.sendgrid(PC_SENDGRID_MAX_ATTEMPTS=2, PC_BATCH_SIZE=100)
def test_a_campaign_for_an_attribute_condition_reaches_exactly_those_people(crowd, fake):
    send(crowd, "Hi {{ contact.attributes.plan }}", "x", audience={
        "attributes": [{"key": "plan", "op": "is_set"}, {"key": "plan", "op": "not_equals", "value": "12"}]})
    assert sorted((a.to[0], a.subject) for a in fake.accepted) == [("gold@example.com", "Hi gold"),
                                                                  ("silver@example.com", "Hi silver")]


# -- erasure and the copy ---------------------------------------------------------------

def test_the_access_copy_holds_the_attributes_and_erasure_clears_them(news):
    from preference_center import access_copy, rights

    ann = person(news, "ann@example.com", attributes={"plan": "gold", "seats": 3})
    data = access_copy.complete(ann)
    assert data["attributes"] == {"plan": "gold", "seats": 3}
    assert "attribute,plan,gold" in rights.to_csv(data).replace("\r", "")
    contacts.erase(ann, source="test")
    db.session.commit()
    db.session.expire_all()
    assert db.session.get(Contact, ann.id).attributes is None


def test_a_large_import_stores_attributes_for_new_contacts_and_none_for_the_others(news, as_marketer):
    # 60 new contacts: PostgreSQL writes them with COPY, other databases with INSERT; both store the same.
    rows = "".join(f"p{i}@example.com,P{i},{'gold' if i % 2 else ''}\n" for i in range(60))
    job, previewed = _import(as_marketer, "Email,Name,Plan\n" + rows, attribute_columns=["2"])
    assert previewed.status_code == 302
    assert as_marketer.post(f"/admin/imports/{job.id}/run").status_code == 302
    db.session.expire_all()
    stored = dict(db.session.execute(select(Contact.email, Contact.attributes)).all())
    assert len(stored) == 60
    assert stored["p1@example.com"] == {"plan": "gold"} and stored["p2@example.com"] == {}
    plan_set = attributes.matches(Contact.attributes, {"key": "plan", "op": "is_set"})
    assert db.session.scalar(select(func.count(Contact.id)).where(plan_set)) == 30


def test_the_contact_page_lists_the_attributes(news, as_marketer):
    ann = person(news, "ann@example.com", attributes={"plan": "gold", "trial": False, "seats": 3})
    page = text_of(as_marketer.get(f"/admin/contacts/{ann.id}").text)
    assert "Custom attributes plan gold seats 3 trial false" in page
    bare = person(news, "bo@example.com")
    assert "Custom attributes" not in text_of(as_marketer.get(f"/admin/contacts/{bare.id}").text)

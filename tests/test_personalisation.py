"""Personalisation: every contact field, with Jinja filters and defaults, in subject, text and HTML.

What the provider receives for each recipient (the fake SendGrid applies the substitutions as SendGrid
does) equals the template rendered whole for that recipient; the staff preview and the test send show
the same text; a variable the template may not use is refused when saving, naming the part. Templates
whose uses of the contact are plain `{{ ... }}` pieces still go out as one request per 1,000 recipients.
"""
from __future__ import annotations

import datetime as dt
import json
import re

import pytest
from sqlalchemy import func, select

from preference_center import actors, campaigns, compose, sending
from preference_center.admin import preview
from preference_center.commands import campaigns as campaign_commands
from preference_center.extensions import db
from preference_center.mail import TemplateError
from preference_center.mail.personal import FIELDS, compile_part, contact_values
from preference_center.models import Campaign, CampaignBatch, Delivery, Topic, utcnow

from .helpers import csrf_token, drain, factories, text_of

# Sent through the real sendgrid client to the fake provider (`fake`, tests/conftest.py).
pytestmark = pytest.mark.sendgrid(PC_SENDGRID_MAX_ATTEMPTS=2, PC_BATCH_SIZE=100)


SUBJECT = "{{ contact.first_name|default('Hello') }}, news for {{ contact.company or 'your team' }}"
TEXT = "Dear {{ contact.name|title }}{% if contact.title %} ({{ contact.title|lower }}){% endif %},\nbye"
HTML = "<p>Hi {{ contact.name or 'there' }} at {{ contact.company|upper }}</p>"


# A contact with confirmed consent to the topic.
person = factories.subscriber


@pytest.fixture
def news(ctx):
    topic = factories.topic("news")
    db.session.commit()
    return topic


def send(topic: Topic, subject: str, text: str, html: str = "") -> int:
    """Create through the command layer (the door's checks), schedule now and run every batch."""
    campaign = campaign_commands.create(actors.staff("mia@example.com"),
                                        {"name": "P", "topic": topic.key, "subject": subject, "text": text, "html": html})
    campaigns.schedule(campaign, None)
    db.session.commit()
    drain(campaign.id)
    return campaign.id


def received(fake) -> dict[str, object]:
    return {a.to[0]: a for a in fake.accepted}


def unsigned(text: str) -> str:
    """Text with the signed tokens of our links blanked (they carry the second they were made), and the delivery
    a real mail's unsubscribe link names (`?d=`, for the campaign's report; a preview has no delivery)."""
    return re.sub(r"/(u|p)/[A-Za-z0-9._-]+(\?d=\d+)?", r"/\1/TOKEN", text)


def body(text: str) -> str:
    """A text part without our footer."""
    return text.split("\n\n--\n")[0]


def test_every_field_with_filters_and_defaults_reaches_each_recipient_in_the_provider_payload(ctx, news, fake):
    person(news, "ana@example.com", name="ana garcía", company="Acme <Labs>", title="CTO", locale="en")
    person(news, "bo@example.com")  # no name, no company, no title
    person(news, "cy@example.com", name="CY O'NEIL", company="Umbrella")
    campaign_id = send(news, SUBJECT, TEXT, HTML)
    got = received(fake)
    assert set(got) == {"ana@example.com", "bo@example.com", "cy@example.com"}
    ana, bo, cy = got["ana@example.com"], got["bo@example.com"], got["cy@example.com"]
    assert ana.subject == "ana, news for Acme <Labs>"
    assert body(ana.content["text/plain"]) == "Dear Ana García (cto),\nbye"
    assert ana.content["text/html"].startswith("<p>Hi ana garcía at ACME &lt;LABS&gt;</p><hr>")
    assert bo.subject == "Hello, news for your team"
    assert body(bo.content["text/plain"]) == "Dear ,\nbye"
    assert bo.content["text/html"].startswith("<p>Hi there at </p><hr>")
    assert cy.subject == "CY, news for Umbrella"
    assert body(cy.content["text/plain"]) == "Dear Cy O'neil,\nbye"
    assert cy.content["text/html"].startswith("<p>Hi CY O&#39;NEIL at UMBRELLA</p>")
    for mail in got.values():
        assert "-pc_" not in mail.subject + json.dumps(mail.content) + json.dumps(mail.headers)
    # Plain substitutions: the three recipients shared one request.
    assert fake.requests == 1
    assert db.session.scalar(select(func.count()).where(Delivery.campaign_id == campaign_id,
                                                        Delivery.status == "sent")) == 3


def test_what_the_provider_gets_equals_the_template_rendered_whole_for_each_recipient(ctx, news, fake):
    people = [person(news, f"p{i}@example.com", name=name, company=company, title=title)
              for i, (name, company, title) in enumerate([("Zoë Ünal", "", "Dr"), ("", "Örn & Co", ""),
                                                          ("x" * 150, "c" * 150, "t" * 150)])]
    send(news, SUBJECT, TEXT, HTML)
    got = received(fake)
    for contact in people:
        values = contact_values(contact)
        context = {"contact": values, "unsubscribe_url": "U", "preferences_url": "P"}
        whole = {name: compile_part(name, source, name == "html").render_whole(context, 1e12)
                 for name, source in (("subject", SUBJECT), ("text", TEXT), ("html", HTML))}
        mail = got[contact.email]
        assert mail.subject == whole["subject"]
        assert body(mail.content["text/plain"]) == whole["text"]
        assert mail.content["text/html"].split("<hr>")[0] == whole["html"]


def test_a_template_that_cannot_be_cut_into_pieces_renders_whole_for_each_recipient(ctx, news, fake):
    person(news, "ana@example.com", name="Ana")
    person(news, "bo@example.com")
    text = "{% set greeting = contact.name or 'there' %}Hi {{ greeting }}!"
    assert not compile_part("text", text, False).split
    send(news, "News", text)
    got = received(fake)
    assert body(got["ana@example.com"].content["text/plain"]) == "Hi Ana!"
    assert body(got["bo@example.com"].content["text/plain"]) == "Hi there!"
    assert fake.requests == 2  # one message each


def test_values_too_large_for_provider_substitutions_go_out_rendered_whole(ctx, news, fake):
    long_name = ("Bartholomew Featherstonehaugh " * 6).strip()  # 179 characters
    person(news, "long@example.com", name=long_name)
    person(news, "short@example.com", name="Bo")
    send(news, "Hi", "{% for i in range(60) %}{{ contact.name }}|{% endfor %}")
    got = received(fake)
    assert body(got["long@example.com"].content["text/plain"]) == (long_name + "|") * 60
    assert body(got["short@example.com"].content["text/plain"]) == "Bo|" * 60
    for payload in fake.payloads:  # SendGrid refuses more than 10,000 bytes of substitutions
        for block in payload["personalizations"]:
            assert sum(len(k) + len(v.encode()) for k, v in block.get("substitutions", {}).items()) <= 10_000


@pytest.mark.parametrize("part, template, named", [
    ("subject", "Hi {{ contact.shoe_size }}", "contact.shoe_size"),
    ("text", "Hi {{ first_name }}", "first_name"),
    ("html", "<p>{{ contact['nickname'] }}</p>", "contact.nickname"),
    ("text", "{% for x in items %}{{ x }}{% endfor %}", "items"),
])
def test_an_unknown_variable_is_refused_at_the_api_naming_the_part(ctx, news, api, part, template, named):
    good = {"name": "W", "topic": "news", "subject": "Hi", "text": "Hi", "html": "<p>Hi</p>"}
    response = api.post("/campaigns", json={**good, part: template})
    assert response.status_code == 422, response.json
    assert response.json["error"]["field"] == part
    assert f"unknown variable '{named}'" in response.json["error"]["message"]
    assert db.session.scalar(select(func.count(Campaign.id))) == 0


def test_every_documented_field_is_accepted(ctx, news, api):
    text = " ".join(f"{{{{ contact.{f} }}}}" for f in FIELDS) + " {{ unsubscribe_url }} {{ preferences_url }}"
    response = api.post("/campaigns", json={"name": "W", "topic": "news", "subject": "Hi", "text": text})
    assert response.status_code == 201, response.json


def test_an_unknown_variable_is_a_form_error_for_staff(as_marketer, news):
    page = as_marketer.get("/admin/campaigns/new")
    response = as_marketer.post("/admin/campaigns/new", {
        "csrf_token": csrf_token(page.text), "name": "W", "topic": "news", "subject": "Hi {{ contact.nick }}",
        "text": "Hi", "html": "", "action": "save"})
    assert response.status_code == 422
    assert "unknown variable 'contact.nick'" in text_of(response.text)
    assert db.session.scalar(select(func.count(Campaign.id))) == 0


def test_a_template_broken_for_everyone_fails_the_campaign_not_each_recipient(ctx, news, fake):
    person(news, "ana@example.com", name="Ana")
    row = Campaign(topic_id=news.id, status="scheduled", name="Old", subject="Hi", html="",
                   text="{{ contact.company.upper() }}", audience={}, created_by="legacy",
                   scheduled_at=campaigns.utcnow())
    db.session.add(row)
    db.session.commit()
    campaigns.start_due()
    while (batch := sending.plan_chunk(row.id, 100)) is not None:
        sending.send_batch(batch)
    db.session.expire_all()
    assert db.session.get(Campaign, row.id).status == "failed" and fake.requests == 0


def test_preview_test_send_and_real_mail_show_the_same_personalised_text(ctx, news, fake, app):
    ana = person(news, "ana@example.com", name="ana garcía", company="Acme", title="CTO")
    rendered = preview.render_for(news, SUBJECT, HTML, TEXT, ana)
    preview.send_test(news, SUBJECT, HTML, TEXT, to="mia@example.com", contact=ana, campaign_id=None)
    test_mail = fake.accepted[0]
    send(news, SUBJECT, TEXT, HTML)
    real = received(fake)["ana@example.com"]
    assert rendered.subject == real.subject == test_mail.subject.removeprefix(preview.TEST_PREFIX)
    # The preview even has the recipient's real links (signed, so only their timestamp may differ).
    assert unsigned(rendered.text) == unsigned(real.content["text/plain"])
    assert body(rendered.text) == body(test_mail.content["text/plain"]) == "Dear Ana García (cto),\nbye"
    assert unsigned(rendered.html) == unsigned(real.content["text/html"])
    assert rendered.html.split("<hr>")[0] == test_mail.content["text/html"].split("<hr>")[0]


def test_the_sample_preview_fills_in_every_field(ctx, news):
    rendered = preview.render_for(news, SUBJECT, HTML, TEXT, None)
    assert rendered.subject == "Sample, news for Example Ltd"
    assert body(rendered.text) == "Dear Sample Recipient (head of marketing),\nbye"


def test_a_contact_missing_a_field_is_undefined_so_defaults_apply():
    class Row:
        name, email, company, title, locale, relationship = "  ", "a@example.com", "", None, "es", "customer"
    # The attributes object is always there (empty here), so a missing attribute is undefined too.
    assert contact_values(Row()) == {"email": "a@example.com", "locale": "es", "relationship": "customer",
                                     "attributes": {}}


def test_the_door_check_fills_in_a_recipient_with_no_optional_field(ctx, news):
    # Fine for the sample recipient, fails for anyone without a company: refused when saving.
    with pytest.raises(TemplateError) as refused:
        compose.check_campaign(news, "Hi", "", "{{ contact.company.upper() }}")
    assert refused.value.field == "text"


# -- the recipient's language -------------------------------------------------------------

def test_campaign_footers_are_in_each_recipients_language(ctx, news, fake):
    person(news, "ana@example.com", name="Ana", locale="es-MX")
    person(news, "bo@example.com", name="Bo", locale="en")
    person(news, "cy@example.com", name="Cy", locale="fr")  # not offered: the default language
    send(news, "Hi {{ contact.name }}", "Hi {{ contact.name }}", "<p>Hi {{ contact.name }}</p>")
    got = received(fake)
    spanish = got["ana@example.com"]
    assert "Recibe este correo porque está suscrito a News." in spanish.content["text/plain"]
    assert "Darme de baja: https://" in spanish.content["text/plain"]
    assert ">Gestionar sus preferencias</a>" in spanish.content["text/html"]
    for english in (got["bo@example.com"], got["cy@example.com"]):
        assert "You get this because you are subscribed to News." in english.content["text/plain"]
        assert ">Manage your preferences</a>" in english.content["text/html"]
    assert fake.requests == 2  # one request per language, not per recipient


def test_a_system_message_explains_itself_in_the_recipients_language(ctx, news, fake, api):
    factories.topic("orders", kind="system", basis="contract")
    factories.contact("ana@example.com", name="Ana", locale="es")
    db.session.commit()
    response = api.post("/messages", json={"topic": "orders", "to": "ana@example.com", "subject": "Pedido",
                                           "text": "Hola {{ contact.first_name }}, {{ data.order }}",
                                           "data": {"order": "A-1"}})
    assert response.status_code in (201, 202), response.json
    delivery = db.session.scalar(select(Delivery).where(Delivery.system_message_id.is_not(None)))
    assert sending.send_system(delivery.id) == "sent"
    text = fake.accepted[0].content["text/plain"]
    assert text.startswith("Hola Ana, A-1\n\n--\n")
    assert "porque forma parte de un servicio que utiliza" in text


def test_rows_another_worker_took_while_this_one_rendered_are_not_sent_again(ctx, news, fake, monkeypatch):
    people = [person(news, f"p{i}@example.com", name=f"P{i}") for i in range(3)]
    campaign = campaign_commands.create(actors.staff("mia@example.com"),
                                        {"name": "P", "topic": "news", "subject": "Hi", "text": "{{ contact.name }}"})
    campaigns.schedule(campaign, None)
    db.session.commit()
    campaigns.start_due()
    batch = sending.plan_chunk(campaign.id, 100)
    real = compose.CampaignMail.envelope

    def slow_envelope(self, contact, delivery_id, tracking=False, read=None):
        # Rendering took so long that the lease ran out: another worker took the batch and sent one person.
        if contact.id == people[1].id and sending.claim_batch(batch) is False:
            db.session.execute(CampaignBatch.__table__.update().where(CampaignBatch.id == batch)
                               .values(lease_until=utcnow() - dt.timedelta(seconds=1)))
            db.session.commit()
            assert sending.claim_batch(batch)
            (their_id,) = sending.new_delivery_ids(1)
            sending._Rows(campaign.id, batch, 2).write([(their_id, contact.id, None)], "sent")
            db.session.commit()
        return real(self, contact, delivery_id, tracking, read)

    monkeypatch.setattr(compose.CampaignMail, "envelope", slow_envelope)
    assert sending.send_batch(batch).sent == 0, "the batch is the other worker's now"
    assert fake.accepted == []
    monkeypatch.setattr(compose.CampaignMail, "envelope", real)
    db.session.execute(CampaignBatch.__table__.update().where(CampaignBatch.id == batch)
                       .values(lease_until=utcnow() - dt.timedelta(seconds=1)))  # that worker died in turn
    db.session.commit()
    outcome = sending.send_batch(batch)
    assert outcome.sent == 2
    assert sorted(a.to[0] for a in fake.accepted) == ["p0@example.com", "p2@example.com"]

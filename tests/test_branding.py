"""Branding and language: the organisation's name, logo, colour, privacy link, address and sender on every
recipient page and in every mail; topic names and descriptions per language; the masked address a
preference page is for."""
from __future__ import annotations

import io
import re

import pytest
from sqlalchemy import select

from preference_center import branding, campaigns, contacts, links, sending
from preference_center.extensions import db
from preference_center.models import AuditLog, Branding

from .helpers import factories, text_of

# Sent through the real sendgrid client to the fake provider (`fake`, tests/conftest.py).
pytestmark = pytest.mark.sendgrid()


PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
       b"\x00\x00\x00\rIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\xa7\x35\x81\x84\x00\x00\x00\x00IEND\xaeB`\x82")
SETTINGS = {"org_name": "Lácteos Peña", "accent": "#7a1f5c", "privacy_url": "https://example.com/privacy",
            "postal_address": "Calle Mayor 1, 28013 Madrid", "sender_name": "Peña News",
            "sender_email": "news@pena.example"}


@pytest.fixture
def news(ctx):
    topic = factories.topic("news")
    topic.name, topic.description = "Monthly newsletter", "Product news, once a month."
    db.session.commit()
    return topic


def save(as_admin, **overrides):
    data = {**SETTINGS, **overrides}
    return as_admin.post("/admin/settings/branding", {**data, "logo": (io.BytesIO(PNG), "logo.png", "image/png")},
                         content_type="multipart/form-data")


def preference_page(client, contact, lang=None):
    return client.get(f"/p/{links.make(links.PREFERENCES, contact)}", query_string={"lang": lang} if lang else None)


def test_branding_shows_on_every_recipient_page(news, as_admin, client):
    assert save(as_admin).status_code == 302
    ana = factories.contact("ana@example.com")
    db.session.commit()
    page = preference_page(client, ana)
    text = text_of(page.text)
    assert "Lácteos Peña" in text and "Calle Mayor 1, 28013 Madrid" in text
    assert '<a href="https://example.com/privacy" rel="noopener">Privacy policy</a>' in page.text
    logo_url = re.search(r'<img class="brand-logo" src="([^"]+)"', page.text).group(1)
    logo = client.get(logo_url)
    assert logo.status_code == 200 and logo.mimetype == "image/png" and logo.data == PNG
    theme_url = re.search(r'<link rel="stylesheet" href="(/brand/theme.css[^"]*)"', page.text).group(1)
    assert client.get(theme_url.replace("&amp;", "&")).get_data(as_text=True) == ":root { --accent: #7a1f5c; }\n"
    assert "style=" not in page.text  # the colour comes from a stylesheet
    assert "Lácteos Peña" in text_of(client.get("/subscribe").text)
    entry = db.session.scalar(select(AuditLog).where(AuditLog.action == "branding.update"))
    assert set(entry.detail["fields"]) == set(SETTINGS) | {"logo"}


def test_mail_goes_out_from_the_branded_sender_with_its_address(news, as_admin, fake):
    save(as_admin)
    ana = factories.contact("ana@example.com")
    contacts.record_consent(ana, action="grant", topic=news, source="test", confirmed=True)
    db.session.commit()
    campaign = campaigns.create({"name": "W", "topic": "news", "subject": "Hi", "text": "Hello"}, created_by="t")
    campaigns.schedule(campaign, None)
    db.session.commit()
    campaigns.start_due()
    sending.send_batch(sending.plan_chunk(campaign.id, 100))
    payload = fake.payloads[-1]
    assert payload["from"] == {"email": "news@pena.example", "name": "Peña News"}
    assert "Calle Mayor 1, 28013 Madrid" in fake.accepted[0].content["text/plain"]


@pytest.mark.parametrize("field, value, problem", [
    ("accent", "red", "hex colour"),
    ("privacy_url", "javascript:alert(1)", "web address"),
    ("sender_email", "not an address", "sender address"),
    ("sender_name", "Evil\r\nBcc: x@example.com", "one line"),
])
def test_bad_branding_is_a_form_error_and_changes_nothing(news, as_admin, field, value, problem):
    response = as_admin.post("/admin/settings/branding", {**SETTINGS, field: value})
    assert response.status_code == 422 and problem in text_of(response.text)
    assert db.session.get(Branding, 1) is None


def test_a_logo_must_be_a_raster_image(news, as_admin):
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    response = as_admin.post("/admin/settings/branding",
                             {**SETTINGS, "logo": (io.BytesIO(svg), "logo.png", "image/png")},
                             content_type="multipart/form-data")
    assert response.status_code == 422 and "PNG, JPEG, GIF or WebP" in text_of(response.text)
    too_big = PNG + b"\x00" * branding.LOGO_MAX_BYTES
    response = as_admin.post("/admin/settings/branding",
                             {**SETTINGS, "logo": (io.BytesIO(too_big), "logo.png", "image/png")},
                             content_type="multipart/form-data")
    assert response.status_code == 422 and "200 kB" in text_of(response.text)
    assert db.session.get(Branding, 1) is None


def test_only_admins_change_branding(news, as_marketer):
    assert as_marketer.get("/admin/settings/branding").status_code == 403


def test_without_branding_the_settings_are_used(news, client):
    ana = factories.contact("ana@example.com")
    db.session.commit()
    page = text_of(preference_page(client, ana).text)
    assert "Preference Center" in page and "Example Ltd, 1 Example Street" in page
    assert "Privacy policy" not in page


def test_the_preference_page_says_which_address_it_is_for_masked(news, client):
    ana = factories.contact("ana.garcia@example.com")
    db.session.commit()
    page = preference_page(client, ana)
    assert "For a•••@example.com" in text_of(page.text)
    assert "ana.garcia@example.com" not in page.text
    assert "Para a•••@example.com" in text_of(preference_page(client, ana, "es").text)


def test_topic_names_and_descriptions_follow_the_recipients_language(news, as_marketer, client, fake):
    response = as_marketer.post("/admin/topics/news/translations", {
        "es-name": "Boletín mensual", "es-description": "Novedades del producto, una vez al mes."})
    assert response.status_code == 302
    ana = factories.contact("ana@example.com", locale="es")
    bo = factories.contact("bo@example.com", locale="en")
    for person in (ana, bo):
        contacts.record_consent(person, action="grant", topic=news, source="test", confirmed=True)
    db.session.commit()
    spanish = text_of(preference_page(client, ana).text)
    assert "Boletín mensual" in spanish and "Novedades del producto, una vez al mes." in spanish
    english = text_of(preference_page(client, bo, "en").text)
    assert "Monthly newsletter" in english and "Boletín" not in english
    campaign = campaigns.create({"name": "W", "topic": "news", "subject": "Hi", "text": "Hello"}, created_by="t")
    campaigns.schedule(campaign, None)
    db.session.commit()
    campaigns.start_due()
    sending.send_batch(sending.plan_chunk(campaign.id, 100))
    mails = {a.to[0]: a.content["text/plain"] for a in fake.accepted}
    assert "suscrito a Boletín mensual." in mails["ana@example.com"]
    assert "subscribed to Monthly newsletter." in mails["bo@example.com"]
    assert db.session.scalar(select(AuditLog.action).where(AuditLog.action == "topic.translate")) == "topic.translate"


def test_an_empty_translation_falls_back_and_a_default_language_one_is_refused(news, as_marketer):
    as_marketer.post("/admin/topics/news/translations", {"es-name": "Boletín", "es-description": ""})
    assert branding.topic_name(news, "es") == "Boletín"
    assert branding.topic_description(news, "es") == "Product news, once a month."
    as_marketer.post("/admin/topics/news/translations", {"es-name": "", "es-description": ""})
    db.session.expire_all()
    assert branding.translations_of(news) == {}
    with pytest.raises(Exception, match="translations are for es"):
        branding.translate(news, "en", "News", "")

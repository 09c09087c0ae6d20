"""The campaign side of the staff pages speaks Spanish to staff who ask for it (Accept-Language, or the switch in the
staff frame, remembered in a cookie), and English stays English for everyone else."""
from __future__ import annotations

import re
from html import unescape

import pytest
from sqlalchemy import func, select

from preference_center import campaigns, contacts, sending
from preference_center.extensions import db
from preference_center.i18n import LANG_COOKIE
from preference_center.models import Campaign, Segment

from .helpers import factories, text_of

ES = {"Accept-Language": "es-ES,es;q=0.9"}
COMPOSE = {"name": "Invierno", "topic": "news", "subject": "Hola {{ contact.name }}",
           "html": "<p>Hola {{ contact.name }}</p>", "text": "Hola {{ contact.name }}"}


@pytest.fixture
def news(ctx):
    topic = factories.topic("news")
    for email, relationship in (("ana@example.com", "customer"), ("bea@example.com", "prospect")):
        person = factories.contact(email, relationship=relationship)
        contacts.record_consent(person, action="grant", topic=topic, source="test", confirmed=True)
    db.session.commit()
    return topic


def draft(staff, headers=None) -> Campaign:
    response = staff.post("/admin/campaigns/new", {**COMPOSE, "action": "save"}, headers=headers or {})
    assert response.status_code == 302, response.text
    return db.session.scalar(select(Campaign).order_by(Campaign.id.desc()))


def page_text(response) -> str:
    return text_of(response.text)


def lang_of(response) -> str:
    return re.search(r'<html lang="([^"]+)"', response.text).group(1)


def test_the_dashboard_speaks_spanish_to_a_browser_that_asks_for_it(as_marketer):
    page = as_marketer.get("/admin/", headers=ES)
    text = page_text(page)
    assert page.status_code == 200 and lang_of(page) == "es"
    for spanish in ("Inicio", "Campañas", "Plantillas", "Segmentos", "Escribir una campaña", "Cerrar sesión",
                    "campañas abiertas", "responsable de marketing"):
        assert spanish in text, spanish
    for english in ("Home", "Write a campaign", "Sign out", "open campaigns", "Common tasks", "marketer"):
        assert english not in text, english


def test_the_campaign_list_shows_spanish_labels_and_statuses(as_marketer, news):
    draft(as_marketer)
    page = as_marketer.get("/admin/campaigns", headers=ES)
    text = page_text(page)
    assert "Nueva campaña" in text and "Nombre o asunto" in text and "1 campaña." in text
    assert '<span class="status status-draft">borrador</span>' in page.text, "the status is named, not shown raw"
    assert '<option value="scheduled">programada</option>' in page.text
    for english in ("New campaign", "Name or subject", "report", "Find", "Older"):
        assert not re.search(rf"\b{english}\b", text), english


def test_a_bad_search_flashes_its_error_in_spanish_and_lists_nothing(as_marketer, news):
    page = as_marketer.get("/admin/campaigns?status=bogus", headers=ES)
    assert page.status_code == 422
    assert "Búsqueda: como máximo 200 caracteres y un estado conocido." in page_text(page)
    assert "at most 200 characters" not in page.text


def test_the_compose_form_labels_choices_and_errors_are_spanish(as_marketer, news):
    page = as_marketer.get("/admin/campaigns/new", headers=ES)
    text = page_text(page)
    for spanish in ("Nueva campaña", "Nombre interno", "Asunto", "Cuerpo HTML", "Filtro de audiencia",
                    "posible cliente", "Guardar borrador", "Vista previa", "Cumplen los requisitos ahora:"):
        assert spanish in text, spanish
    for english in ("Internal name", "Subject", "Save draft", "Audience filter", "prospect", "Eligible now"):
        assert english not in text, english
    # A preview for an address nobody has: the field error is Spanish, and nothing is saved.
    response = as_marketer.post("/admin/campaigns/new", {**COMPOSE, "action": "preview",
                                                         "preview_email": "nadie@example.com"}, headers=ES)
    assert response.status_code == 200
    assert "no hay ningún contacto con esa dirección" in page_text(response)
    assert "no contact with that address" not in response.text
    assert db.session.scalar(select(Campaign)) is None
    # Required fields left empty: the form's own messages are Spanish too.
    empty = as_marketer.post("/admin/campaigns/new", {**COMPOSE, "name": "", "action": "save"}, headers=ES)
    assert empty.status_code == 422 and "Este campo es obligatorio." in page_text(empty)
    assert "This field is required." not in empty.text
    assert db.session.scalar(select(Campaign)) is None


def test_a_compose_form_with_a_missing_choice_is_refused_in_spanish(as_marketer, news):
    response = as_marketer.post("/admin/campaigns/new", {**COMPOSE, "action": "apply_layout", "layout": ""},
                                headers=ES)
    assert response.status_code == 422
    assert "elige una plantilla en la que envolver el cuerpo HTML" in page_text(response)
    assert db.session.scalar(select(Campaign)) is None


def test_saving_flashes_in_spanish_and_the_campaign_page_is_spanish(as_marketer, news):
    response = as_marketer.post("/admin/campaigns/new", {**COMPOSE, "action": "save"}, headers=ES,
                                follow_redirects=True)
    text = page_text(response)
    assert "Borrador guardado. Revisa la vista previa, envíate una prueba y luego prográmalo." in text
    for spanish in ("Tema", "Filtro de audiencia", "todos los que permite el tema", "2 destinatarios",
                    "Enviar una prueba", "Programar", "Continuar a la confirmación", "Eliminar borrador", "borrador"):
        assert spanish in text, spanish
    for english in ("Draft saved", "Send a test", "Schedule", "Delete draft", "everyone the topic allows"):
        assert english not in text, english


def test_the_confirmation_step_says_how_many_and_when_in_spanish(as_marketer, news):
    campaign = draft(as_marketer)
    step = as_marketer.post(f"/admin/campaigns/{campaign.id}/schedule", {"at": "", "zone": "UTC"}, headers=ES)
    text = page_text(step)
    assert step.status_code == 200
    assert "Confirmar el envío" in text and "2 destinatarios, ahora" in text
    assert "Sí, enviar ahora a 2 destinatarios" in text and "No, volver" in text
    assert "recipients" not in text and "Confirm sending" not in text
    db.session.refresh(campaign)
    assert campaign.status == "draft", "nothing is scheduled before the confirmation"
    done = as_marketer.post(f"/admin/campaigns/{campaign.id}/schedule", {"at": "", "zone": "UTC", "confirm": "1",
                                                                          "count": "2"}, headers=ES,
                            follow_redirects=True)
    assert "a 2 destinatarios." in page_text(done) and "Programada para ahora" in page_text(done)


def test_a_moment_in_the_past_is_refused_in_spanish(as_marketer, news):
    campaign = draft(as_marketer)
    response = as_marketer.post(f"/admin/campaigns/{campaign.id}/schedule", {"at": "2001-01-01T09:00",
                                                                              "zone": "UTC"}, headers=ES)
    assert response.status_code == 422
    assert "ese momento ya ha pasado" in page_text(response) and "that moment has passed" not in response.text
    db.session.refresh(campaign)
    assert campaign.status == "draft"


def test_the_report_names_statuses_and_skip_reasons_in_spanish(as_marketer, news):
    campaign = draft(as_marketer)
    step = as_marketer.post(f"/admin/campaigns/{campaign.id}/schedule", {"at": "", "zone": "UTC"})
    as_marketer.post(f"/admin/campaigns/{campaign.id}/schedule", {"at": "", "zone": "UTC", "confirm": "1",
                                                                  "count": "2"})
    assert "2 recipients, now" in page_text(step)
    campaigns.start_due()
    batch = sending.plan_chunk(campaign.id, 100)
    bea = contacts.find("bea@example.com")
    contacts.record_consent(bea, action="withdraw", topic=news, source="test")  # opts out before sending
    db.session.commit()
    sending.send_batch(batch)
    sending.finish_campaign_if_done(campaign.id)
    page = as_marketer.get(f"/admin/campaigns/{campaign.id}/report", headers=ES)
    text = page_text(page)
    assert page.status_code == 200
    assert re.search(r'id="n-sent">1</strong> enviados', page.text)
    assert "se dio de baja del tema <code>unsubscribed</code>" in page.text
    assert '<span class="key key-sent">Enviados</span>' in page.text
    for spanish in ("Informe: Invierno", "en la audiencia", "Omitidos, por motivo", "Entregas a lo largo del tiempo",
                    "Interacción", "entregados", "enviado"):
        assert spanish in text, spanish
    for english in ("Report:", "in the audience", "Skipped, by reason", "Engagement", "delivered", "Sent"):
        assert english not in text, english


def test_a_layout_is_written_and_previewed_in_spanish(as_marketer, news):
    page = as_marketer.get("/admin/layouts/new", headers=ES)
    text = page_text(page)
    assert "Nueva plantilla" in text and "Plantilla HTML (pon {{ content }} donde va el contenido" in text
    assert "Aquí va el contenido de tu campaña." in unescape(page.text), "the sample content of the preview frame"
    assert "Hola Sample" in unescape(page.text) and "content goes here" not in page.text
    saved = as_marketer.post("/admin/layouts/new", {"name": "Marco", "html": "<div>{{ content }}</div>",
                                                    "action": "save"}, headers=ES, follow_redirects=True)
    assert "Plantilla “Marco” guardada." in page_text(saved)
    listed = page_text(as_marketer.get("/admin/layouts", headers=ES))
    assert "Marco" in listed and " por staff:mia@example.com" in listed and " by " not in listed


def test_a_segment_is_saved_with_a_spanish_notice_and_a_spanish_form_error(as_marketer, news):
    missing = as_marketer.post("/admin/segments/new", {"name": "", "topic": "news"}, headers=ES)
    assert missing.status_code == 422 and "Este campo es obligatorio." in page_text(missing)
    assert db.session.scalar(select(func.count(Segment.id))) == 0
    saved = as_marketer.post("/admin/segments/new", {"name": "Clientes", "topic": "news",
                                                      "relationships": "customer"}, headers=ES,
                             follow_redirects=True)
    text = page_text(saved)
    assert "Segmento “Clientes” guardado: 1 cumplen los requisitos ahora." in text
    assert "Todavía no hay segmentos." not in text and "Cumplen los requisitos ahora" in text
    form = page_text(as_marketer.get(f"/admin/segments/{db.session.scalar(select(Segment.id))}", headers=ES))
    assert "cliente" in form and "Filtros (cada uno solo puede restringir, nunca añadir)" in form


def test_the_switch_remembers_spanish_in_a_cookie_and_back(as_marketer, news):
    switched = as_marketer.get("/admin/campaigns?lang=es")
    assert lang_of(switched) == "es" and f"{LANG_COOKIE}=es" in switched.headers["Set-Cookie"]
    later = as_marketer.get("/admin/campaigns/new")
    assert lang_of(later) == "es" and "Nueva campaña" in page_text(later)
    back = as_marketer.get("/admin/?lang=en")
    assert lang_of(back) == "en" and "Write a campaign" in page_text(back)
    assert lang_of(as_marketer.get("/admin/")) == "en"


def test_the_switch_is_a_link_in_the_staff_frame_that_keeps_the_page_and_its_query(as_marketer, news):
    page = as_marketer.get("/admin/campaigns?q=Inv&status=draft")
    nav = re.search(r'<nav class="lang" aria-label="Language">(.*?)</nav>', page.text, re.S).group(1)
    links = dict((code, href) for href, code in re.findall(r'<a href="([^"]+)" lang="(\w+)"', nav))
    assert links["es"] == "/admin/campaigns?q=Inv&amp;status=draft&amp;lang=es"
    assert 'aria-current="true">English' in nav and ">Español</a>" in nav


def test_the_sign_in_page_has_the_switch_and_speaks_spanish(client):
    page = client.get("/admin/login", headers=ES)
    text = page_text(page)
    assert lang_of(page) == "es" and "Acceso del personal" in text and "Contraseña" in text
    assert "Staff sign-in" not in text and "Password" not in text
    assert 'href="/admin/login?lang=en"' in page.text


def test_a_failed_sign_in_is_explained_in_spanish(client, ctx):
    from .helpers import Staff, make_staff

    make_staff("mia@example.com", "marketer")
    response = Staff(client).login("mia@example.com", "wrong password", headers=ES)
    assert response.status_code == 401
    assert "Correo o contraseña incorrectos" in page_text(response)


def test_an_unknown_language_changes_nothing(as_marketer):
    page = as_marketer.get("/admin/?lang=xx")
    assert lang_of(page) == "en" and "Write a campaign" in page_text(page)
    assert LANG_COOKIE not in page.headers.get("Set-Cookie", "")


def test_english_stays_english(as_marketer, news):
    campaign = draft(as_marketer)
    for path in ("/admin/", "/admin/campaigns", "/admin/campaigns/new", f"/admin/campaigns/{campaign.id}",
                 f"/admin/campaigns/{campaign.id}/report", "/admin/layouts", "/admin/segments"):
        page = as_marketer.get(path)
        text = page_text(page)
        assert page.status_code == 200 and lang_of(page) == "en", path
        for spanish in ("Campañas", "Inicio", "borrador", "Cerrar sesión", "Tema", "Informe"):
            assert not re.search(rf"\b{spanish}\b", text), (path, spanish)
    step = as_marketer.post(f"/admin/campaigns/{campaign.id}/schedule", {"at": "", "zone": "UTC"})
    assert "2 recipients, now" in page_text(step) and "Yes, send now to 2 recipients" in page_text(step)


def test_counts_are_grouped_the_way_the_page_language_writes_them(app):
    from preference_center.admin.views.common import grouped

    with app.test_request_context("/admin/", headers=ES):
        assert grouped(12345) == "12.345" and grouped(7) == "7"
    with app.test_request_context("/admin/"):
        assert grouped(12345) == "12,345" and grouped(1234) == "1,234"

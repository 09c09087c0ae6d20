"""What the command layer refuses is said in the staff page's language: the message is made in English where it is
raised (the API, logs and the CLI answer it word for word as before) and translated only where a staff page shows it."""
from __future__ import annotations

import pickle

import pytest
from sqlalchemy import func, select

from preference_center import actors, campaigns, change_feed
from preference_center.commands import people
from preference_center.errors import N_, Code, DomainError, Text, word
from preference_center.extensions import db
from preference_center.i18n import localized
from preference_center.models import ApiToken, Campaign, Contact, MailTemplate, Topic

from .helpers import factories, text_of

ES = {"Accept-Language": "es-ES,es;q=0.9"}


@pytest.fixture
def news(ctx):
    topic = factories.topic("news")
    db.session.commit()
    return topic


def cancelled_campaign() -> Campaign:
    campaign = campaigns.create({"name": "Winter", "topic": "news", "subject": "Hi", "text": "Hello"},
                                created_by="test")
    campaigns.cancel(campaign)
    db.session.commit()
    return campaign


# -- the message itself -------------------------------------------------------------

def test_a_message_is_its_english_text_and_remembers_its_id_and_parameters():
    message = N_("the layout needs %(marker)s exactly once, where the campaign's content goes", marker="{{ content }}")
    assert message == "the layout needs {{ content }} exactly once, where the campaign's content goes"
    assert type(str(DomainError(message, "html"))) is str and str(DomainError(message)) == message
    assert (message.msgid, message.params) == (
        "the layout needs %(marker)s exactly once, where the campaign's content goes", {"marker": "{{ content }}"})
    copy = pickle.loads(pickle.dumps(DomainError(message, "html")))  # as a task result or a log handler may carry it
    assert copy.message == message and copy.message.msgid == message.msgid


def test_localized_translates_a_marked_message_and_leaves_plain_text_as_it_is(app):
    nested = N_("url: %(reason)s", reason=N_("the URL has no host"))
    plain = DomainError("a template error from the renderer", "html")
    with app.test_request_context(headers=ES):
        assert localized(DomainError(N_("name is longer than %(limit)s characters", limit=80), "name")) == \
            "el nombre tiene más de 80 caracteres"
        assert localized(DomainError(nested, "url")) == "url: la URL no tiene host"
        assert localized(plain) == "a template error from the renderer"
        assert localized(ValueError(N_("passwords need at least 10 characters"))) == \
            "las contraseñas necesitan al menos 10 caracteres"
        assert localized(N_("a %(status)s campaign cannot be changed", status=word("sending"))) == \
            "una campaña en estado «enviándose» no se puede cambiar"
        assert localized(Text("no id: shown as it is")) == "no id: shown as it is"
    with app.test_request_context():
        assert localized(DomainError(nested)) == "url: the URL has no host"


# -- staff pages in Spanish, English unchanged ---------------------------------------

def test_deleting_a_campaign_that_is_not_a_draft_is_refused_in_spanish(news, as_marketer):
    campaign = cancelled_campaign()
    page = as_marketer.post(f"/admin/campaigns/{campaign.id}/delete", {"confirm": "1"}, headers=ES,
                            follow_redirects=True)
    text = text_of(page.text)
    assert "solo se puede eliminar un borrador; esta campaña está en estado «cancelada»" in text
    assert "only a draft can be deleted" not in text
    assert db.session.get(Campaign, campaign.id).status == "cancelled"
    english = as_marketer.post(f"/admin/campaigns/{campaign.id}/delete", {"confirm": "1"}, follow_redirects=True)
    assert "only a draft can be deleted; this campaign is cancelled" in text_of(english.text)


def test_a_layout_without_the_content_marker_is_refused_in_spanish_next_to_the_field(as_marketer):
    page = as_marketer.post("/admin/layouts/new", {"name": "Plain", "html": "<div>no marker</div>"}, headers=ES)
    assert page.status_code == 422
    assert ("la plantilla necesita {{ content }} exactamente una vez, donde va el contenido de la campaña"
            in text_of(page.text))
    assert "exactly once" not in page.text
    assert db.session.scalar(select(func.count(MailTemplate.id))) == 0
    english = as_marketer.post("/admin/layouts/new", {"name": "Plain", "html": "<div>no marker</div>"})
    assert english.status_code == 422
    assert "the layout needs {{ content }} exactly once, where the campaign's content goes" in text_of(english.text)


def test_a_topic_key_taken_already_is_refused_in_spanish(news, as_admin):
    form = {"key": "news", "name": "Again", "kind": "marketing", "legal_basis": "consent"}
    page = as_admin.post("/admin/topics/new", form, headers=ES)
    assert page.status_code == 422
    assert "ya existe un tema con la clave 'news'" in text_of(page.text)
    assert "exists already" not in page.text
    assert db.session.scalar(select(func.count(Topic.id))) == 1
    assert "a topic with key 'news' exists already" in text_of(as_admin.post("/admin/topics/new", form).text)


def test_a_duplicate_token_name_is_refused_in_spanish(as_admin):
    assert as_admin.post("/admin/tokens", {"name": "crm"}).status_code == 201
    page = as_admin.post("/admin/tokens", {"name": "crm"}, headers=ES)
    assert page.status_code == 422
    assert "ya existe un token llamado 'crm'" in text_of(page.text)
    assert db.session.scalar(select(func.count(ApiToken.id)).where(ApiToken.name == "crm")) == 1
    assert "a token named 'crm' exists already" in text_of(as_admin.post("/admin/tokens", {"name": "crm"}).text)


def test_an_invalid_address_on_the_add_contact_form_is_refused_in_spanish(as_marketer):
    page = as_marketer.post("/admin/contacts/new", {"email": "not-an-address", "relationship": "prospect"},
                            headers=ES)
    assert page.status_code == 422
    text = text_of(page.text)
    # The library's own explanation stays as the library words it; what the page says around it is Spanish.
    assert "no es una dirección de correo electrónico válida: An email address must have an @-sign." in text
    assert db.session.scalar(select(func.count(Contact.id))) == 0
    english = as_marketer.post("/admin/contacts/new", {"email": "not-an-address", "relationship": "prospect"})
    assert "An email address must have an @-sign." in text_of(english.text)
    assert "no es una dirección" not in english.text


def test_a_webhook_url_refused_inside_a_refusal_is_spanish_all_the_way(as_admin):
    form = {"name": "crm", "url": "ftp://hooks.example.com/in", "events": [change_feed.TYPES[0]]}
    page = as_admin.post("/admin/webhooks", form, headers=ES)
    assert page.status_code == 422
    assert "url: la URL debe empezar por https:// (o http://)" in text_of(page.text)
    assert "url: the URL must start with https:// (or http://)" in text_of(as_admin.post("/admin/webhooks", form).text)


def test_a_bulk_action_names_why_it_skipped_a_contact_in_spanish(news, as_marketer):
    live, gone = factories.contact("live@example.com"), factories.contact("gone@example.com")
    db.session.commit()
    people.erase(actors.staff("mia@example.com"), gone)
    db.session.commit()
    form = {"action": "ask", "topic": "news", "confirm": "1", "ids": f"{live.id},{gone.id}"}
    done = as_marketer.post("/admin/contacts/bulk", form, headers=ES, follow_redirects=True)
    text = text_of(done.text)  # (the words around the reason are the directory page's own, translated there)
    assert "1 este contacto se ha suprimido" in text and "has been erased" not in text
    english = as_marketer.post("/admin/contacts/bulk", {**form, "ids": str(gone.id)}, follow_redirects=True)
    assert "Skipped: 1 this contact has been erased." in text_of(english.text)


def test_the_error_page_names_its_status_in_spanish(as_viewer):
    page = as_viewer.get("/admin/users", headers=ES)
    assert page.status_code == 403
    assert "Error 403" in text_of(page.text)  # the same words in both languages, now marked and translated


def test_a_refusal_no_door_mapped_is_a_page_in_its_language_and_english_json(app):
    error = DomainError(N_("this link was used already: ask the person for a new one"), code=Code.CONFLICT)
    with app.test_request_context("/admin/anything", headers=ES):
        page = app.make_response(app.handle_user_exception(error))
        assert page.status_code == 409
        text = text_of(page.get_data(as_text=True))
        assert "No es posible" in text and "este enlace ya se usó: pide a la persona uno nuevo" in text
        assert "Error 409" in text and "used already" not in text
    with app.test_request_context("/api/v1/anything", headers=ES):
        answer = app.make_response(app.handle_user_exception(error))
        assert answer.status_code == 409 and answer.json == {"error": {
            "code": "conflict", "message": "this link was used already: ask the person for a new one"}}


# -- the API answers in English, word for word ----------------------------------------

def test_the_api_answers_the_same_refusals_in_english_whatever_the_browser_asks(api, ctx):
    factories.topic("news")
    db.session.commit()
    campaign = cancelled_campaign()
    cancelled = api.post(f"/campaigns/{campaign.id}/cancel", headers=ES)
    assert cancelled.status_code == 409
    assert cancelled.json["error"]["message"] == "a cancelled campaign cannot be cancelled"
    kind = api.put("/topics/news", json={"name": "News", "kind": "system"}, headers=ES)
    assert kind.status_code == 409
    assert kind.json["error"]["message"] == "a topic's kind cannot change; create a new topic instead"
    unknown = api.post("/campaigns", json={"name": "W", "topic": "nope", "subject": "Hi", "text": "Hello"},
                       headers=ES)
    assert unknown.status_code == 422 and unknown.json["error"]["message"] == "unknown topic 'nope'"
    invalid = api.put("/contacts/not-an-address", json={}, headers=ES)
    assert invalid.status_code == 422
    assert invalid.json["error"]["message"] == "invalid email address: An email address must have an @-sign."

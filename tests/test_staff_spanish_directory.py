"""The directory and administration staff pages speak Spanish to a browser that asks for it, and English otherwise.

Only the content of these pages is checked: the shared layout (navigation, sign-out) is translated separately.
"""
from __future__ import annotations

import io
import re

import pytest
from flask_babel import force_locale

from preference_center import contacts, rights
from preference_center.admin.labels import label
from preference_center.extensions import db

from .helpers import factories, text_of

ES = {"Accept-Language": "es-ES,es;q=0.9,en;q=0.5"}


@pytest.fixture
def admin(as_admin):
    return as_admin


@pytest.fixture
def ann(ctx):
    """A customer who granted consent to News on her preference page: one line of timeline."""
    news = factories.topic("news")
    news.name = "News"
    factories.topic("tips", basis="legitimate_interest", relationships=["customer"])
    factories.topic("orders", kind="system", basis="contract")
    person = factories.contact("ann@example.com", relationship="customer")
    contacts.record_consent(person, action="grant", topic=news, source="preferences-page", confirmed=True,
                            ip="203.0.113.7")
    db.session.commit()
    return person


def spanish(staff, path: str) -> str:
    response = staff.get(path, headers=ES)
    assert response.status_code == 200, response.status_code
    return text_of(response.text)


def assert_reads(page: str, present: list[str], absent: list[str]) -> None:
    assert [text for text in present if text not in page] == []
    assert [text for text in absent if text in page] == []


def test_the_contact_list_is_in_spanish(admin, ann):
    page = spanish(admin, "/admin/contacts")
    assert_reads(page, ["Añadir un contacto", "Buscar correo, nombre o empresa", "Estado en el tema", "Filtrar",
                        "1 contacto coincide.", "Los más recientes primero, 1 en esta página.",
                        "Exportar este contacto como CSV", "el único que coincide con los filtros", "cliente", "activo", "Actuar sobre los contactos",
                        "Dejar de enviar correo de marketing (bloqueo: marketing)", "Continuar…"],
                 ["Add a contact", "contact matches", "Newest first", "Act on contacts", "Stop marketing mail",
                  "customer", "active"])


def test_a_contact_page_reads_its_timeline_in_spanish(admin, ann):
    page = spanish(admin, f"/admin/contacts/{ann.id}")
    assert_reads(page, ["Historial de consentimiento", "Suscripciones actuales", "Consentimiento", "suscrito",
                        "dio su consentimiento para News desde la página de preferencias (IP 203.0.113.7)",
                        "Dejar de enviar correo a esta dirección", "Motivo (se guarda en el registro)",
                        "Registrar una solicitud recibida por teléfono o por carta", "supresión", "por carta"],
                 ["granted consent", "via the preferences page", "Consent history", "Subscriptions now",
                  "Stop mail to this address", "by letter"])


def test_a_suppression_flashes_and_reads_in_the_language_of_each_request(admin, ann):
    response = admin.post(f"/admin/contacts/{ann.id}/suppress", {"scope": "marketing", "reason": "asked by phone"},
                             headers=ES)
    assert response.status_code == 302
    page = spanish(admin, f"/admin/contacts/{ann.id}")
    assert_reads(page, ["Se ha dejado de enviar correo de marketing a esta dirección.", "Bloqueos",
                        "correo de marketing : asked by phone, desde",
                        "dirección bloqueada para el correo de marketing (asked by phone) por el miembro del "
                        "personal boss@example.com"],
                 ["Marketing mail to this address is stopped.", "address blocked", "by staff member"])
    # The same ledger event, read by someone whose browser asks for English.
    english = text_of(admin.get(f"/admin/contacts/{ann.id}").text)
    assert_reads(english, ["address blocked from marketing mail (asked by phone) by staff member boss@example.com",
                           "granted consent to News via the preferences page", "Consent history"],
                 ["dirección bloqueada", "Historial de consentimiento", "Se ha dejado"])


def test_the_contact_form_shows_its_errors_in_spanish_and_adds_nothing(admin, ann):
    page = spanish(admin, "/admin/contacts/new")
    assert_reads(page, ["Añadir un contacto", "Correo", "Cargo", "Relación", "posible cliente",
                        "Su idioma para los correos y las páginas; vacío: el predeterminado.", "Añadir el contacto"],
                 ["Add contact", "Their language", "prospect"])
    before = db.session.scalar(db.select(db.func.count()).select_from(type(ann)))
    response = admin.post("/admin/contacts/new", {"email": "", "relationship": "partner"}, headers=ES)
    assert response.status_code == 422
    assert_reads(text_of(response.text), ["Este campo es obligatorio."], ["This field is required."])
    assert db.session.scalar(db.select(db.func.count()).select_from(type(ann))) == before


def test_adding_a_contact_flashes_in_spanish(admin, ann):
    response = admin.post("/admin/contacts/new", {"email": "bea@example.com", "relationship": "partner"},
                             headers=ES)
    assert response.status_code == 302
    page = spanish(admin, response.headers["Location"])
    assert_reads(page, ["Contacto bea@example.com añadido. No tiene ninguna suscripción: pide el consentimiento "
                        "desde su página.", "socio"],
                 ["It has no subscription"])


def test_an_uploaded_import_is_mapped_in_spanish(admin, ann):
    response = admin.post("/admin/imports", {"file": (io.BytesIO(b"email,name\nbea@example.com,Bea\n"
                                                                    b"cai@example.com,Cai\n"), "people.csv")},
                             content_type="multipart/form-data", headers=ES)
    assert response.status_code == 302
    page = spanish(admin, response.headers["Location"])
    assert_reads(page, ["Importación n.º", "subida", "2 filas de datos, separadas por «,»",
                        "Asignar las columnas e indicar la base", "Dirección de correo (obligatoria)",
                        "— no está en el archivo —", "Base jurídica y origen (obligatorios)", "— elegir —",
                        "Interés legítimo (una relación existente, p. ej. clientes)", "Ver la vista previa de la importación",
                        "Descartar este archivo subido"],
                 ["data rows", "Map the columns", "Legal basis and source", "Preview the import", "uploaded"])
    listing = spanish(admin, "/admin/imports")
    assert_reads(listing, ["Importar contactos", "Importaciones recientes", "people.csv", "subida"],
                 ["Recent imports", "No imports yet."])


def test_topics_read_in_spanish_and_retiring_one_flashes_in_spanish(admin, ann):
    page = spanish(admin, "/admin/topics")
    assert_reads(page, ["Tema nuevo", "Interés legítimo", "Consentimiento", "Contrato", "sistema", "cliente",
                        "Evaluación", "Retirar", "activo", "De qué trata un mensaje."],
                 ["New topic", "Legitimate interest", "Retire", "What a message is about"])
    form = spanish(admin, "/admin/topics/news")
    assert_reads(form, ["Nombre que ven los destinatarios", "(no se puede cambiar: crea un tema nuevo)",
                        "Seguimiento de aperturas y clics", "Desactivado"],
                 ["Name shown to recipients", "cannot change"])
    response = admin.post("/admin/topics/news/retire", {"confirm": "1"}, headers=ES)
    assert response.status_code == 302
    assert_reads(spanish(admin, "/admin/topics"), ["Tema News retirado: ya no se ofrece ni se envía.",
                                                      "retirado", "Restaurar"],
                 ["is no longer offered"])


def test_users_read_in_spanish_and_a_short_password_is_refused_in_spanish(admin, ann):
    page = spanish(admin, "/admin/users")
    assert_reads(page, ["Usuarios del personal", "administrador", "Añadir un usuario",
                        "Contraseña inicial (10 caracteres o más)", "Último inicio de sesión"],
                 ["Staff users", "Add a user", "Initial password"])
    response = admin.post("/admin/users", {"email": "new@example.com", "role": "viewer", "password": "short"},
                             headers=ES)
    assert response.status_code == 422
    assert_reads(text_of(response.text), ["El campo debe tener entre 10 y 1000 caracteres."],
                 ["between 10 and 1000 characters", "can now sign in"])
    assert "new@example.com</td>" not in response.text


def test_webhooks_read_in_spanish_and_a_missing_change_is_refused_in_spanish(admin, ann):
    page = spanish(admin, "/admin/webhooks")
    assert_reads(page, ["Webhooks salientes", "No hay webhooks.", "Añadir un webhook", "Cambios que enviar",
                        "Se rechazan las direcciones locales (loopback) y privadas."],
                 ["Outgoing webhooks", "No webhooks.", "Add a webhook"])
    response = admin.post("/admin/webhooks", {"name": "crm", "url": "https://crm.example.com/hook"}, headers=ES)
    assert response.status_code == 422
    assert_reads(text_of(response.text), ["elige al menos un cambio", "No hay webhooks."],
                 ["choose at least one change"])


def test_data_requests_read_in_spanish_and_refusing_one_flashes_in_spanish(admin, ann):
    request = rights.open_request(ann, "erasure")
    db.session.commit()
    page = spanish(admin, "/admin/requests")
    assert_reads(page, ["Solicitudes de datos", "supresión", "Abierta", "Suprimir ahora", "Rechazar",
                        "Ampliar el plazo", "un mes", "Mostrar"],
                 ["Erase now", "Extend the deadline", "days left", "Open"])
    assert re.search(r"quedan \d+ días", page)
    response = admin.post(f"/admin/requests/{request.id}/refuse", {"reason": "identity not shown"}, headers=ES)
    assert response.status_code == 303
    assert_reads(spanish(admin, "/admin/requests?status=refused"),
                 ["Solicitud rechazada; se informa a la persona del motivo.", "Rechazada: identity not shown"],
                 ["Request refused", "Refused:"])
    assert_reads(spanish(admin, "/admin/requests"), ["No hay solicitudes abiertas."], ["No open requests."])


@pytest.mark.parametrize(("path", "english", "spanish_words"), [
    ("/admin/contacts", ["Add a contact", "1 contact matches.", "customer"], ["Añadir", "coincide", "cliente"]),
    ("/admin/contacts/new", ["Add a contact", "Their language for mail and pages"], ["Añadir", "Su idioma"]),
    ("/admin/imports", ["Import contacts", "No imports yet."], ["Importar", "Todavía"]),
    ("/admin/topics", ["New topic", "Legitimate interest", "system"], ["Tema nuevo", "Interés", "sistema"]),
    ("/admin/users", ["Staff users", "Add a user"], ["Usuarios", "Añadir"]),
    ("/admin/webhooks", ["Outgoing webhooks", "No webhooks."], ["salientes", "No hay"]),
    ("/admin/requests", ["Data requests", "No open requests."], ["Solicitudes", "No hay"]),
])
def test_english_stays_english(admin, ann, path, english, spanish_words):
    for headers in ({}, {"Accept-Language": "en-GB,en;q=0.9"}):
        page = text_of(admin.get(path, headers=headers).text)
        assert_reads(page, english, spanish_words)


def test_a_state_is_named_in_the_request_language_and_an_unknown_one_as_stored(ctx):
    with force_locale("es"):
        assert (label("failed", "import_status"), label("hard_bounce", "suppression_reason")) == (
            "fallida", "rebote permanente")
        assert label("someday", "import_status") == "someday" and label(None, "role") == ""
    with force_locale("en"):
        assert label("failed", "import_status") == "failed"


@pytest.mark.parametrize(("path", "spanish_words", "english"), [
    ("/admin/contacts/{ann}/proof", ["Prueba del consentimiento", "verificada", "toda la cadena (2 eventos) se verifica",
                                     "Eventos, del más antiguo al más reciente", "concesión", "Consentimiento"],
     ["Consent proof", "verifies", "Events, oldest first"]),
    ("/admin/topics/tips/assessment", ["Evaluación del interés legítimo: Tips", "Registrar y aprobar"],
     ["Legitimate-interest assessment", "Record and approve"]),
    ("/admin/audit", ["Registro de auditoría", "Cuándo", "Quién"], ["Every change made by staff"]),
    ("/admin/tokens", ["Tokens de la API", "Crear un token", "Nombre del token (qué sistema lo usa)"],
     ["Create a token", "Token name"]),
    ("/admin/consent-texts", ["Textos de consentimiento", "Publicar una versión nueva", "Inglés (en)"],
     ["Publish a new version", "English (en)"]),
    ("/admin/settings/branding", ["Imagen de marca", "Nombre de la organización", "En uso ahora", "Guardar la marca"],
     ["Organisation name", "Now in use"]),
    ("/admin/topics/news/translations", ["News en otros idiomas", "Español (es)", "Guardar las traducciones"],
     ["in other languages", "Save translations"]),
])
def test_the_other_administration_pages_read_in_spanish(admin, ann, path, spanish_words, english):
    assert_reads(spanish(admin, path.format(ann=ann.id)), spanish_words, english)

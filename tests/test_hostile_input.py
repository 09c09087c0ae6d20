"""Hostile input at every page door: huge ids, control characters, bytes that are not UTF-8, endless bodies.

Each refusal is a clear 4xx page of ours (never a 500, the same on SQLite and
PostgreSQL) and changes nothing; the one exception is a one-click opt-out
whose User-Agent holds a NUL: the header is cleaned and the opt-out recorded.
Tests are parametrised by door and try every value of their class in turn.
"""
from __future__ import annotations

import io

import pytest
from sqlalchemy import func, select

from preference_center import characters, contacts, imports, inputs, links, optouts
from preference_center.actors import link
from preference_center.commands import requests as request_commands
from preference_center.extensions import db
from preference_center.models import (
    ApiToken,
    AuditLog,
    Campaign,
    ConsentEvent,
    ConsentText,
    Contact,
    DataRequest,
    ImportJob,
    OptOutInbox,
    StaffUser,
    Suppression,
    Topic,
)

from .helpers import IP, UA, csrf_token, factories, grant, make_contact, make_staff, snapshot, token, topic_id

# Past INTEGER (PostgreSQL), past BIGINT, far past, past the digits int("…") reads; and zero.
IDS_NO_ROW_HAS = [str(2**31), str(2**63), "9" * 30, "9" * 5000, "0"]
COUNTED = (ConsentEvent, AuditLog, Contact, Suppression, OptOutInbox, DataRequest, Topic, Campaign, ImportJob,
           StaffUser, ApiToken, ConsentText)

# Never in any text: NUL, another C0, DEL, a C1 (NEL).
CONTROLS = ["\x00", "\x1b", "\x7f", "\x85"]
# Not in one-line text (a name, a subject, a search, a query string); fine in a text area.
LINE_BREAKS = ["\n", "\r\n", "\t", "\u2028", "\u2029"]
# Not UTF-8: a stray byte, a cut sequence, lone surrogates, an overlong form, past U+10FFFF.
NOT_UTF8 = ["%FF", "%C3", "%ED%A0%80", "%ED%BF%BF", "%C0%AF", "%F4%90%80%80"]


@pytest.fixture
def app_config(app_config):
    # Small limits keep the oversized bodies small; the public form answers at once.
    return {**app_config, "PC_SUBSCRIBE_MIN_SECONDS": 0, "MAX_CONTENT_LENGTH": 64 * 1024,
            "PC_IMPORT_MAX_BYTES": 256 * 1024}


@pytest.fixture
def ann(app) -> int:
    """A customer subscribed to news, with a system topic and a legitimate-interest topic around."""
    with app.app_context():
        factories.topic("news")
        factories.topic("tips", basis="legitimate_interest", relationships=["customer"])
        factories.topic("orders", kind="system", basis="contract")
        db.session.commit()
    contact_id = make_contact(app, "ann@example.com", relationship="customer", name="Ann")
    grant(app, contact_id, "news")
    return contact_id


def counts(app) -> dict:
    """How many rows each table holds (waiting one-click opt-outs settled first), and every recipient's state."""
    state = snapshot(app)
    with app.app_context():
        return {"rows": {m.__tablename__: db.session.scalar(select(func.count()).select_from(m)) for m in COUNTED},
                "people": state}


def assert_refused(response, *statuses: int, what: object = "") -> str:
    """A clear error page of ours with one of `statuses`, not a traceback; `what` names the case on failure."""
    body = response.get_data(as_text=True)
    assert response.status_code in statuses, (what, response.status_code, body[:500])
    assert "Traceback" not in body and "Internal Server Error" not in body, what
    assert "<h1" in body, (what, body[:500])
    return body


def forged(app, purpose: str, payload) -> str:
    """A token signed with our own key around any payload: what a leaked key or a bug could produce."""
    with app.app_context():
        return links._serializer(purpose).dumps(payload)


def pct(text: str) -> str:
    return "".join(f"%{b:02X}" for b in text.encode())


class Body(io.RawIOBase):
    """A request body from a generator, of unknown length (sent chunked): endless unless `chunks` ends."""

    def __init__(self, chunks):
        self._chunks = iter(chunks)
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def readinto(self, target) -> int:
        while not self._buffer:
            self._buffer = next(self._chunks, b"")
            if not self._buffer:
                return 0
        size = min(len(target), len(self._buffer))
        target[:size], self._buffer = self._buffer[:size], self._buffer[size:]
        return size


def endless(head: bytes):
    yield head
    while True:
        yield b"a" * 65536


def chunked(chunks, content_type: str, *, terminated: bool) -> dict:
    """Request arguments for a body without Content-Length, as gunicorn or Werkzeug's server pass it (terminated)
    or as a bare WSGI input stream."""
    environ = {"wsgi.input": Body(chunks), "CONTENT_TYPE": content_type}
    if terminated:
        environ["wsgi.input_terminated"] = True
    return {"headers": {"Transfer-Encoding": "chunked"}, "environ_overrides": environ}


def multipart(fields: dict, file: tuple[str, bytes] | None = None, boundary: str = "hostile") -> bytes:
    """A multipart/form-data body written by hand, so that it can hold what a browser would not send."""
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode() + value + b"\r\n"
             for name, value in fields.items()]
    if file is not None:
        filename, content = file
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="'.encode()
                     + filename.encode("utf-8", "surrogateescape") + b'"\r\nContent-Type: text/csv\r\n\r\n'
                     + content + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode()


MULTIPART = "multipart/form-data; boundary=hostile"
URLENCODED = "application/x-www-form-urlencoded"


def recipient_csrf(client, page: str) -> str:
    """The CSRF token of a recipient page's form (the page is fetched as a browser would)."""
    response = client.get(page)
    assert response.status_code == 200, page
    return csrf_token(response.get_data(as_text=True))


def urls(app, ann: int, template: str, pending: int = 1) -> str:
    """A door's URL: {p} preferences, {u} unsubscribe (all marketing), {c} confirmation, {ann} the contact id."""
    return template.format(p=token(app, links.PREFERENCES, ann), u=token(app, links.UNSUBSCRIBE, ann, 0),
                           c=token(app, links.CONFIRM, ann, [pending]), ann=ann)


# -- integers too large for any column ---------------------------------------------------

STAFF_ID_DOORS = [
    ("get", "/admin/contacts/{n}"), ("post", "/admin/contacts/{n}/suppress"), ("post", "/admin/contacts/{n}/ask"),
    ("post", "/admin/contacts/{n}/lift-suppression"),
    ("get", "/admin/campaigns/{n}"), ("get", "/admin/campaigns/{n}/edit"), ("get", "/admin/campaigns/{n}/report"),
    ("post", "/admin/campaigns/{n}/test"), ("post", "/admin/campaigns/{n}/schedule"),
    ("post", "/admin/campaigns/{n}/cancel"),
    ("get", "/admin/imports/{n}"), ("get", "/admin/imports/{n}/progress"), ("post", "/admin/imports/{n}/preview"),
    ("post", "/admin/imports/{n}/run"), ("post", "/admin/imports/{n}/retry"), ("post", "/admin/imports/{n}/discard"),
    ("post", "/admin/requests/{n}/complete"), ("post", "/admin/requests/{n}/resend"),
    ("post", "/admin/requests/{n}/refuse"), ("post", "/admin/requests/{n}/extend"),
    ("post", "/admin/users/{n}/deactivate"), ("post", "/admin/users/{n}/activate"),
    ("post", "/admin/tokens/{n}/revoke"),
]


@pytest.mark.parametrize(("method", "path"), STAFF_ID_DOORS, ids=[p for _, p in STAFF_ID_DOORS])
def test_a_staff_page_for_an_id_no_row_can_have_is_a_404(app, as_admin, method, path):
    before = counts(app)
    for number in IDS_NO_ROW_HAS:
        url = path.format(n=number)
        response = as_admin.get(url) if method == "get" else as_admin.post(url, {"reason": "r", "months": "1"})
        assert_refused(response, 404, what=number[:40])
    assert counts(app) == before


def test_the_audit_log_refuses_a_page_marker_that_is_no_id_and_pages_with_a_good_one(app, as_admin):
    before = counts(app)
    for value in [str(2**63), "9" * 30, "9" * 5000, "-1", "0", "1e3", "0x10", "١٢", " 5", "5 "]:
        body = assert_refused(as_admin.get("/admin/audit", query_string={"before": value}), 400, what=value[:40])
        assert "before" in body
    assert counts(app) == before
    for value in ["5", "", str(2**63 - 1)]:
        assert as_admin.get("/admin/audit", query_string={"before": value}).status_code == 200, value


PAYLOADS = {
    "contact id past BIGINT": lambda c: [10**30, 1, 0],
    "contact id of 2**63": lambda c: [2**63, 1, 0],
    "version past INTEGER": lambda c: [c, 2**31, 0],
    "version past BIGINT": lambda c: [c, 10**30, 0],
    "contact id a string": lambda c: [str(c), 1, 0],
    "contact id true": lambda c: [True, 1, 0],
    "contact id a float": lambda c: [float(c), 1, 0],
    "a dict": lambda c: {"contact": c},
    "two items": lambda c: [c, 1],
    "null": lambda c: None,
}


def _link_door(client, door: str, forged_token: str):
    if door == "preferences":
        return client.get(f"/p/{forged_token}")
    if door == "data page":
        return client.get(f"/p/{forged_token}/data")
    if door == "confirm":
        return client.get(f"/confirm/{forged_token}")
    if door == "one-click":
        return client.post(f"/u/{forged_token}", data={"List-Unsubscribe": "One-Click"})
    return client.get(f"/u/{forged_token}")


@pytest.mark.parametrize("door", ["preferences", "data page", "confirm", "unsubscribe", "one-click"])
def test_a_signed_link_whose_payload_no_row_can_match_is_the_friendly_link_page(app, client, ann, door):
    purpose = {"preferences": links.PREFERENCES, "data page": links.PREFERENCES,
               "confirm": links.CONFIRM}.get(door, links.UNSUBSCRIBE)
    before = counts(app)
    for name, payload in PAYLOADS.items():
        body = assert_refused(_link_door(client, door, forged(app, purpose, payload(ann))), 404, what=name)
        assert "This link is not valid" in body, name
    assert counts(app) == before


@pytest.mark.parametrize("door", ["unsubscribe", "one-click"])
def test_an_unsubscribe_link_naming_no_possible_topic_is_the_friendly_link_page(app, client, ann, door):
    before = counts(app)
    for argument in [2**31, 10**30, "news", [1], False, 0.0, -1, None]:
        forged_token = forged(app, links.UNSUBSCRIBE, [ann, 1, argument])
        body = assert_refused(_link_door(client, door, forged_token), 404, what=argument)
        assert "This link is not valid" in body, argument
    assert counts(app) == before


def test_a_confirmation_or_step_up_link_naming_what_cannot_be_is_the_friendly_link_page(app, client, ann):
    page = token(app, links.PREFERENCES, ann)
    before = counts(app)
    for argument in [[10**30], [2**63], ["1"], "x", [], {"a": 1}, [True]]:
        forged_token = forged(app, links.CONFIRM, [ann, 1, argument])
        assert "This link is not valid" in assert_refused(client.get(f"/confirm/{forged_token}"), 404, what=argument)
    for argument in [10**30, ["export"], None, "delete"]:
        step = forged(app, links.STEP_UP, [ann, 1, argument])
        assert "This link is not valid" in assert_refused(client.get(f"/p/{page}/data/confirm/{step}"), 404)
    assert counts(app) == before


def test_undo_of_an_event_no_row_can_be_is_refused(app, client, ann):
    unsubscribe = f"/u/{token(app, links.UNSUBSCRIBE, ann, topic_id(app, 'news'))}"
    csrf = recipient_csrf(client, unsubscribe)
    before = counts(app)
    for event in [str(10**30), str(2**63), "9" * 5000, "-3", "x", "0"]:
        response = client.post(f"{unsubscribe}/undo", data={"csrf_token": csrf, "event": event})
        assert_refused(response, 400, what=event[:40])
    assert counts(app) == before


def test_ids_are_held_to_the_column_they_are_looked_up_in():
    assert inputs.fits(2**31 - 1, Topic.id) and not inputs.fits(2**31, Topic.id)
    assert inputs.fits(2**63 - 1, Contact.id) and not inputs.fits(2**63, Contact.id)
    assert inputs.fits(0, Topic.id, smallest=0) and not inputs.fits(0, Topic.id)
    assert not inputs.fits(True, Contact.id) and not inputs.fits("1", Contact.id) and not inputs.fits(1.0, Contact)
    assert inputs.largest(Campaign) == 2**31 - 1 and inputs.largest(AuditLog) == 2**63 - 1


# -- control characters in query strings, paths and forms ----------------------------------

RECIPIENT_QUERIES = ["/subscribe?lang={v}", "/subscribe?{v}=1", "/p/{p}?lang=es{v}", "/u/{u}?x={v}",
                     "/p/{p}/data?format={v}", "/confirm/{c}?{v}"]


@pytest.mark.parametrize("page", RECIPIENT_QUERIES)
def test_a_recipient_page_refuses_control_characters_and_line_breaks_in_its_query_string(app, client, ann, page):
    before = counts(app)
    for char in CONTROLS + LINE_BREAKS:
        url = urls(app, ann, page.replace("{v}", pct(char)))
        assert_refused(client.get(url), 400, what=repr(char))
        assert_refused(client.post(url, data={"List-Unsubscribe": "One-Click"}), 400, what=repr(char))
    assert counts(app) == before


STAFF_QUERIES = ["/admin/contacts?q=ann{v}", "/admin/contacts?q={v}", "/admin/audit?before=1{v}",
                 "/admin/requests?status=open{v}", "/admin/campaigns?contact=a{v}@example.com",
                 "/admin/login?next=/admin/{v}", "/admin/?{v}"]


@pytest.mark.parametrize("page", STAFF_QUERIES)
def test_a_staff_page_refuses_control_characters_and_line_breaks_in_its_query_string(app, as_admin, page):
    before = counts(app)
    for char in CONTROLS + LINE_BREAKS:
        assert_refused(as_admin.get(page.replace("{v}", pct(char))), 400, what=repr(char))
    assert counts(app) == before


def test_a_search_too_long_for_the_box_is_refused_and_an_ordinary_search_works(app, as_admin):
    make_contact(app, "zoe@example.com", name="Zoë Ünicode")
    assert_refused(as_admin.get("/admin/contacts", query_string={"q": "z" * 321}), 422)
    found = as_admin.get("/admin/contacts", query_string={"q": "Zoë"})
    assert found.status_code == 200 and "zoe@example.com" in found.get_data(as_text=True)
    assert as_admin.get("/admin/contacts?q=%25_%5C").status_code == 200


@pytest.mark.parametrize(("method", "path"), [("get", "/admin/topics/news{v}"), ("post", "/admin/topics/{v}/retire"),
                                              ("get", "/p/{v}"), ("post", "/u/{v}x"), ("get", "/outbox/{v}")])
def test_a_path_holding_control_characters_or_line_breaks_names_nothing(app, as_admin, ann, method, path):
    before = counts(app)
    for char in CONTROLS + LINE_BREAKS:
        url = path.replace("{v}", pct(char))
        assert_refused(as_admin.get(url) if method == "get" else as_admin.post(url), 404, what=repr(char))
    assert counts(app) == before


@pytest.mark.parametrize("field", ["email", "name", "topics", "website", "consent_version", "started"])
def test_the_public_form_refuses_control_characters_and_line_breaks_in_any_field(app, client, ann, field):
    client.get("/subscribe")  # publishes the default wording on first use
    before = counts(app)
    for char in CONTROLS + LINE_BREAKS:
        csrf = recipient_csrf(client, "/subscribe")
        value = {"email": f"new{char}@example.com", "topics": f"news{char}"}.get(field, f"x{char}y")
        data = {"csrf_token": csrf, "email": "new@example.com", "name": "New", "topics": ["news"], field: value}
        assert_refused(client.post("/subscribe", data=data), 400, what=repr(char))
    assert counts(app) == before


@pytest.mark.parametrize("field", contacts.PROFILE_FIELDS)
def test_the_data_page_refuses_control_characters_and_line_breaks_in_any_detail(app, client, ann, field):
    page = f"/p/{token(app, links.PREFERENCES, ann)}/data"
    csrf = recipient_csrf(client, page)
    before = counts(app)
    for char in CONTROLS + LINE_BREAKS:
        value = f"es{char}" if field == "locale" else f"A{char}B"
        assert_refused(client.post(f"{page}/rectify", data={"csrf_token": csrf, field: value}), 400,
                       what=repr(char))
    assert counts(app) == before


RECIPIENT_BUTTONS = [  # (the button's URL, the page that shows it)
    ("/p/{p}", "/p/{p}"), ("/p/{p}/unsubscribe-all", "/p/{p}"), ("/p/{p}/data/restrict", "/p/{p}/data"),
    ("/p/{p}/data/object", "/p/{p}/data"), ("/p/{p}/data/export", "/p/{p}/data"), ("/p/{p}/data/erase", "/p/{p}/data"),
    ("/u/{u}", "/u/{u}"), ("/confirm/{c}", "/confirm/{c}"),
]


@pytest.mark.parametrize(("button", "page"), RECIPIENT_BUTTONS, ids=[b for b, _ in RECIPIENT_BUTTONS])
def test_a_recipient_button_refuses_control_characters_in_its_form(app, client, ann, button, page):
    with app.app_context():
        pending = contacts.record_consent(db.session.get(Contact, ann), action="grant",
                                          topic=factories.get_topic("tips"), source="test", confirmed=False)
        db.session.commit()
        pending_id = pending.id
    url = urls(app, ann, button, pending_id)
    csrf = recipient_csrf(client, urls(app, ann, page, pending_id))
    before = counts(app)
    for char in CONTROLS:
        for data in ({"csrf_token": csrf, "topics": ["news"], f"note{char}": "1"},
                     {"csrf_token": csrf + char, "topics": ["news"]},
                     {"csrf_token": csrf, "topics": [f"news{char}"]}):
            assert_refused(client.post(url, data=data), 400, what=(repr(char), data))
    assert counts(app) == before


STAFF_FORMS = [  # (the form's URL, a good post, the one-line field that gets the bad text)
    ("/admin/topics/new", {"key": "k", "name": "N", "kind": "marketing", "legal_basis": "consent"}, "name"),
    ("/admin/topics/new", {"key": "k", "name": "N", "kind": "marketing", "legal_basis": "consent"}, "key"),
    ("/admin/topics/news", {"name": "N", "legal_basis": "consent"}, "name"),
    ("/admin/contacts/{ann}/suppress", {"scope": "all", "reason": "r"}, "reason"),
    ("/admin/contacts/{ann}/lift-suppression", {"scope": "all", "why": "w"}, "why"),
    ("/admin/campaigns/new", {"name": "C", "topic": "news", "subject": "Hi", "text": "Hello"}, "subject"),
    ("/admin/campaigns/new", {"name": "C", "topic": "news", "subject": "Hi", "text": "Hello"}, "name"),
    ("/admin/campaigns/new", {"name": "C", "topic": "news", "subject": "Hi", "text": "Hello"}, "locales"),
    ("/admin/campaigns/new", {"name": "C", "topic": "news", "subject": "Hi", "text": "Hello",
                              "action": "preview"}, "preview_email"),
    ("/admin/users", {"email": "u@example.com", "role": "viewer", "password": "long enough password"}, "email"),
    ("/admin/users", {"email": "u@example.com", "role": "viewer", "password": "long enough password"}, "password"),
    ("/admin/tokens", {"name": "crm"}, "name"),
    ("/admin/consent-texts", {"locale": "en", "version": "9", "text": "I agree."}, "version"),
]


@pytest.mark.parametrize(("path", "fields", "field"), STAFF_FORMS, ids=[f"{p}:{f}" for p, _, f in STAFF_FORMS])
def test_a_staff_form_refuses_control_characters_and_line_breaks_in_a_one_line_field(app, as_admin, ann, path,
                                                                                     fields, field):
    url = path.format(ann=ann)
    before = counts(app)
    for char in CONTROLS:  # never reach a view
        assert_refused(as_admin.post(url, {**fields, field: f"a{char}b"}), 400, what=repr(char))
    for char in LINE_BREAKS:  # the form says which field
        body = assert_refused(as_admin.post(url, {**fields, field: f"a{char}b"}), 422, what=repr(char))
        assert "one line of text" in body or field == "why", repr(char)
    assert counts(app) == before


def test_the_contact_page_asks_for_no_topic_with_a_line_break_in_its_key(app, as_admin, ann):
    before = counts(app)
    for char in CONTROLS:
        assert_refused(as_admin.post(f"/admin/contacts/{ann}/ask", {"topic": f"news{char}"}), 400, what=repr(char))
    for char in LINE_BREAKS:
        response = as_admin.post(f"/admin/contacts/{ann}/ask", {"topic": f"news{char}"})
        assert response.status_code == 303, repr(char)  # "choose a topic", shown on the contact page
    assert counts(app) == before


TEXT_AREAS = [  # (the form's URL, the rest of a good post, the multi-line field)
    ("/admin/topics/new", {"key": "k", "name": "N", "kind": "marketing", "legal_basis": "consent"}, "description"),
    ("/admin/campaigns/new", {"name": "C", "topic": "news", "subject": "Hi"}, "text"),
    ("/admin/campaigns/new", {"name": "C", "topic": "news", "subject": "Hi"}, "html"),
    ("/admin/consent-texts", {"locale": "en", "version": "9"}, "text"),
    ("/admin/requests/{request}/refuse", {}, "reason"),
    ("/admin/requests/{request}/extend", {"months": "1"}, "reason"),
]


@pytest.mark.parametrize(("path", "fields", "field"), TEXT_AREAS, ids=[f"{p}:{f}" for p, _, f in TEXT_AREAS])
def test_a_staff_text_area_refuses_control_characters_but_keeps_line_breaks(app, as_admin, ann, path, fields,
                                                                             field):
    data_request = request_commands.receive(link("data-page"), db.session.get(Contact, ann), "access")
    db.session.commit()
    url = path.format(request=data_request.id)
    before = counts(app)
    for char in CONTROLS:
        assert_refused(as_admin.post(url, {**fields, field: f"line one\r\nline two{char}"}), 400, what=repr(char))
    assert counts(app) == before
    kept = as_admin.post(url, {**fields, field: "line one\r\n\tline two\u2028three\u2029"})
    assert kept.status_code in (201, 302, 303), kept.get_data(as_text=True)[:500]


def test_sign_in_refuses_control_characters(app, client):
    with app.app_context():
        make_staff("boss@example.com", "admin")
    before = counts(app)
    for char in CONTROLS:
        csrf = csrf_token(client.get("/admin/login").get_data(as_text=True))
        response = client.post("/admin/login", data={"csrf_token": csrf, "email": f"boss@example.com{char}",
                                                     "password": f"x{char}"})
        assert_refused(response, 400, what=repr(char))
    assert counts(app) == before


# -- headers are cleaned, never refused -----------------------------------------------------

AGENTS = ["Mail\x00Scanner/1.0", "Bad\x1b[31mAgent\x7f\x85", "Tab\tand\u2028separator", "\x00" * 600]


@pytest.mark.parametrize("encoding", ["form", "multipart"])
def test_a_one_click_opt_out_whose_user_agent_holds_control_characters_is_recorded(app, encoding):
    with app.app_context():
        news = factories.topic("news")
        db.session.commit()
        news_id = news.id
    for number, agent in enumerate(AGENTS):
        contact_id = make_contact(app, f"person{number}@example.com")
        grant(app, contact_id, "news")
        path = f"/u/{token(app, links.UNSUBSCRIBE, contact_id, news_id)}"
        provider = app.test_client()
        if encoding == "form":
            response = provider.post(path, data="List-Unsubscribe=One-Click", content_type=URLENCODED,
                                     headers={"User-Agent": agent},
                                     environ_overrides={"REMOTE_ADDR": "192.0.2.9\x00"})
        else:
            response = provider.post(path, data={"List-Unsubscribe": "One-Click"},
                                     content_type="multipart/form-data", headers={"User-Agent": agent})
        assert response.status_code == 200, (repr(agent), response.get_data(as_text=True)[:500])
        with app.app_context():
            assert optouts.settle_all() == 1, repr(agent)
            withdrawn = db.session.scalars(select(ConsentEvent).where(ConsentEvent.contact_id == contact_id,
                                                                      ConsentEvent.action == "withdraw")).all()
        assert len(withdrawn) == 1, repr(agent)
        assert withdrawn[0].user_agent == (characters.printable(agent) or None)
        assert withdrawn[0].ip in ("192.0.2.9", "127.0.0.1")


def test_the_preference_page_records_a_cleaned_user_agent(app, client, ann):
    page = f"/p/{token(app, links.PREFERENCES, ann)}"
    csrf = recipient_csrf(client, page)
    response = client.post(page, data={"csrf_token": csrf, "topics": []},
                           headers={"User-Agent": f"{UA}\x00\x1b\u2028"}, environ_overrides={"REMOTE_ADDR": IP})
    assert response.status_code == 303
    with app.app_context():
        event = db.session.scalar(select(ConsentEvent).where(ConsentEvent.action == "withdraw"))
    assert (event.user_agent, event.ip) == (UA, IP)


def test_optouts_take_cleans_what_it_stores_and_refuses_ids_no_row_has(app, ann):
    with app.app_context():
        assert optouts.take(ann, 1, 0, source="one-click\x00", ip="1.2.3.4\x00", user_agent="UA\x00\u2028")
        row = db.session.scalar(select(OptOutInbox))
        assert (row.source, row.ip, row.user_agent) == ("one-click", "1.2.3.4", "UA")
        for contact_id, version, topic in [(ann, 2**31, 0), (10**30, 1, 0), (ann, 1, 2**31), (ann, 1, True)]:
            assert not optouts.take(contact_id, version, topic, source="one-click", ip=None, user_agent=None)
        assert db.session.scalar(select(func.count()).select_from(OptOutInbox)) == 1


# -- bodies too large, sent without a Content-Length ------------------------------------------

CHUNKED_DOORS = ["/subscribe", "/p/{p}", "/p/{p}/data/rectify", "/u/{u}", "/confirm/{c}", "/admin/login",
                 "/admin/topics/new"]


@pytest.mark.parametrize("door", CHUNKED_DOORS)
def test_an_endless_chunked_form_is_a_413(app, as_admin, ann, door):
    url = urls(app, ann, door)
    head = b"List-Unsubscribe=One-Click&name=" if door.startswith("/u/") else b"name="
    before = counts(app)
    for terminated in (True, False):
        response = as_admin.client.post(url, **chunked(endless(head), URLENCODED, terminated=terminated))
        assert_refused(response, 413, what=terminated)
        response = as_admin.client.post(url, **chunked(endless(multipart({"a": b"b"})[:-12]), MULTIPART,
                                                       terminated=terminated))
        assert_refused(response, 413, what=terminated)
    assert counts(app) == before


def test_a_chunked_form_one_byte_over_the_limit_is_a_413_not_a_shorter_form(app, ann):
    # Werkzeug alone reads such a body up to the limit and parses what it got: a cut, different form.
    path = f"/u/{token(app, links.UNSUBSCRIBE, ann, topic_id(app, 'news'))}"
    head = b"List-Unsubscribe=One-Click&pad="
    body = head + b"a" * (64 * 1024 - len(head) + 1)
    before = counts(app)
    for terminated in (True, False):
        response = app.test_client().post(path, **chunked([body[:1000], body[1000:]], URLENCODED,
                                                          terminated=terminated))
        assert_refused(response, 413, what=terminated)
    assert counts(app) == before
    exactly = body[:-1]  # the limit itself is allowed
    response = app.test_client().post(path, **chunked([exactly], URLENCODED, terminated=True))
    assert response.status_code == 200


@pytest.mark.parametrize("encoding", ["form", "multipart"])
def test_a_chunked_one_click_within_the_limit_is_recorded(app, ann, encoding):
    news = topic_id(app, "news")
    if encoding == "form":
        body, content_type = b"List-Unsubscribe=One-Click", URLENCODED
    else:
        body, content_type = multipart({"List-Unsubscribe": b"One-Click"}), MULTIPART
    for terminated in (True, False):
        contact_id = make_contact(app, f"chunked-{terminated}@example.com")
        grant(app, contact_id, "news")
        path = f"/u/{token(app, links.UNSUBSCRIBE, contact_id, news)}"
        response = app.test_client().post(path, **chunked([body[:7], body[7:]], content_type, terminated=terminated))
        assert response.status_code == 200, response.get_data(as_text=True)[:300]
        with app.app_context():
            assert optouts.settle_all() == 1


def test_an_endless_chunked_upload_is_a_413_at_the_import_limit(app, as_admin):
    csrf = as_admin.token()
    head = multipart({"csrf_token": csrf.encode()})[:-len(b"--hostile--\r\n")] + (
        b'--hostile\r\nContent-Disposition: form-data; name="file"; filename="big.csv"\r\n\r\nemail\r\n')
    before = counts(app)
    for terminated in (True, False):
        response = as_admin.client.post("/admin/imports", **chunked(endless(head), MULTIPART, terminated=terminated))
        assert_refused(response, 413, what=terminated)
    assert counts(app) == before


def test_a_chunked_upload_over_the_page_limit_but_within_the_import_limit_is_taken(app, as_admin):
    csrf = as_admin.token()
    rows = b"".join(b"person%06d@example.com,Person\r\n" % i for i in range(4000))  # about 130 KiB
    body = multipart({"csrf_token": csrf.encode()}, ("people.csv", b"email,name\r\n" + rows))
    assert 64 * 1024 < len(body) < 256 * 1024
    response = as_admin.client.post("/admin/imports", **chunked([body[i:i + 8192] for i in range(0, len(body), 8192)],
                                                                MULTIPART, terminated=True))
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    assert db.session.scalar(select(ImportJob.total)) == 4000


# -- bytes that are not UTF-8, lone surrogates ---------------------------------------------

@pytest.mark.parametrize("page", ["/subscribe?lang={v}", "/p/{p}?{v}=1", "/u/{u}?x={v}", "/admin/contacts?q={v}",
                                  "/admin/audit?before={v}", "/nowhere?x={v}"])
def test_a_query_string_that_is_not_utf8_is_a_400(app, as_admin, ann, page):
    before = counts(app)
    for bad in NOT_UTF8:
        assert_refused(as_admin.get(urls(app, ann, page.replace("{v}", bad))), 400, what=bad)
    assert counts(app) == before


@pytest.mark.parametrize("path", ["/subscribe", "/admin/contacts", "/admin/", "/nowhere"])
def test_raw_bytes_that_are_not_utf8_in_a_query_string_are_a_400(app, client, path):
    # A WSGI query string is latin-1 text standing for the raw bytes; signed out, staff pages would redirect.
    for raw in ["q=\xff", "q=\xed\xa0\x80", "lang=\xc3", "\xff=1"]:
        assert_refused(client.get(path, environ_overrides={"QUERY_STRING": raw}), 400, what=repr(raw))


@pytest.mark.parametrize("door", ["/subscribe", "/p/{p}", "/p/{p}/data/rectify", "/u/{u}", "/admin/login",
                                  "/admin/topics/new", "/admin/contacts/{ann}/suppress"])
def test_a_form_that_is_not_utf8_is_a_400(app, as_admin, ann, door):
    url = urls(app, ann, door)
    csrf = as_admin.token()
    before = counts(app)
    for bad in [*NOT_UTF8, "\xff", "\xed\xa0\x80"]:
        body = f"csrf_token={csrf}&List-Unsubscribe=One-Click&name=A{bad}&reason=r{bad}".encode("latin-1")
        response = as_admin.client.post(url, data=body, content_type=URLENCODED)
        assert_refused(response, 400, what=repr(bad))
    assert counts(app) == before


def test_a_multipart_field_or_file_name_that_is_not_clean_text_is_a_400(app, as_admin, ann):
    before = counts(app)
    for bad in [b"\xff", b"\xed\xa0\x80", b"\xc3", b"\x00"]:
        body = multipart({"csrf_token": as_admin.token().encode(), "scope": b"all", "reason": b"r" + bad})
        response = as_admin.client.post(f"/admin/contacts/{ann}/suppress", data=body, content_type=MULTIPART)
        assert_refused(response, 400, what=bad)
    for filename in ["bad\udcff.csv", "nul\x00.csv", "two\u2028lines.csv", "tab\t.csv", "nel\x85.csv"]:
        body = multipart({"csrf_token": as_admin.token().encode()}, (filename, b"email\r\nann@example.com\r\n"))
        assert_refused(as_admin.client.post("/admin/imports", data=body, content_type=MULTIPART), 400,
                       what=repr(filename))
    response = as_admin.client.post(f"/admin/contacts/{ann}/suppress", data=b"--x\r\nno headers",
                                    content_type="multipart/form-data")  # and no boundary
    assert_refused(response, 400)
    assert counts(app) == before


# -- the domain: profile fields are one line, whichever door stores them --------------------

@pytest.mark.parametrize("field", contacts.PROFILE_FIELDS)
def test_a_profile_field_is_one_line_of_text_for_every_door(field):
    for char in CONTROLS + LINE_BREAKS + ["\r", "\x0b", "\x0c", "\x1c", "\x9f"]:
        for value in (f"es{char}", f"{char}es") if field == "locale" else (f"A{char}B", f"Ann{char}", f"{char}Ann"):
            with pytest.raises(contacts.ValidationError) as refused:
                contacts.clean_profile({field: value})
            assert refused.value.field == field and refused.value.status == 422, repr(value)


def test_profile_fields_keep_ordinary_unicode_and_trim_spaces():
    assert contacts.clean_profile({"name": "  Zoë Ødegård – 山田 \u200d ", "phone": "+34 600 000 000"}) == {
        "name": "Zoë Ødegård – 山田 \u200d", "phone": "+34 600 000 000"}


def test_the_api_cannot_store_a_name_with_a_line_break_or_control(app, client, api_token, ann):
    before = counts(app)
    for char in ["\x00", "\n", "\u2028", "\x85"]:
        response = client.put("/api/v1/contacts/ann@example.com", json={"name": f"Ann{char}Bcc: x@example.com"},
                              headers={"Authorization": f"Bearer {api_token}"})
        assert response.status_code in (400, 422), (repr(char), response.get_data(as_text=True)[:300])
    assert counts(app) == before


CSV_ROWS = {
    "NUL in the name": "nul@example.com,Ann\x00Smith,customer",
    "line break in a quoted name": 'lf@example.com,"Ann\nSmith",customer',
    "carriage return in a quoted name": 'cr@example.com,"Ann\rSmith",customer',
    "U+2028 in the name": "ls@example.com,Ann\u2028Smith,customer",
    "NEL in the name": "nel@example.com,Ann\x85Smith,customer",
    "escape in the name": "esc@example.com,Ann\x1b[31m,customer",
    "NUL in the address": "nul\x00addr@example.com,Ann,customer",
    "U+2028 in the address": "ls\u2028addr@example.com,Ann,customer",
    "NUL in the relationship": "rel@example.com,Ann,customer\x00",
}


def test_a_csv_row_holding_control_characters_is_an_invalid_row(app, as_admin):
    factories.topic("news")
    db.session.commit()
    content = "email,name,relationship\r\n" + "\r\n".join(CSV_ROWS.values()) + "\r\nok@example.com,Ok,customer\r\n"
    body = multipart({"csrf_token": as_admin.token().encode()}, ("people.csv", content.encode()))
    response = as_admin.client.post("/admin/imports", data=body, content_type=MULTIPART)
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    job = db.session.scalar(select(ImportJob))
    response = as_admin.post(f"/admin/imports/{job.id}/preview", {
        "has_header": "y", "map_email": "0", "map_name": "1", "map_relationship": "2",
        "legal_basis": "legitimate_interest", "source_text": "Fair"})
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    db.session.expire_all()
    job = db.session.get(ImportJob, job.id)
    assert job.preview["counts"][imports.INVALID] == len(CSV_ROWS)
    assert job.preview["counts"][imports.NEW] == 1
    assert all(characters.refused(row["value"]) is None for row in job.preview["invalid"])
    assert as_admin.get(f"/admin/imports/{job.id}").status_code == 200
    assert as_admin.post(f"/admin/imports/{job.id}/run").status_code == 302
    assert db.session.scalars(select(Contact.email).where(Contact.email.is_not(None))).all() == ["ok@example.com"]


def test_a_csv_whose_header_holds_control_characters_maps_by_printable_names(app, as_admin):
    content = "e\x00mail,na\x85me\r\nann@example.com,Ann\r\n"
    body = multipart({"csrf_token": as_admin.token().encode()}, ("people.csv", content.encode()))
    response = as_admin.client.post("/admin/imports", data=body, content_type=MULTIPART)
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    job = db.session.scalar(select(ImportJob))
    assert job.columns == ["email", "name"] and job.mapping == {"email": 0, "name": 1}
    assert as_admin.get(f"/admin/imports/{job.id}").status_code == 200

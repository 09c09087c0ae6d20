"""The API's contract: hostile input is refused the same way everywhere and changes nothing; every answer fits
the served OpenAPI document; idempotency keys and message reads belong to one token."""
from __future__ import annotations

import copy
import io
import json
import re

import jsonschema
import pytest
from sqlalchemy import func, select

from preference_center import bodies, tokens
from preference_center.api import schemas
from preference_center.api.operations import REGISTRY
from preference_center.extensions import db
from preference_center.models import (
    ApiToken,
    AuditLog,
    Campaign,
    ConsentEvent,
    Contact,
    Delivery,
    Suppression,
    SystemMessage,
    Topic,
    WebhookEvent,
)

from .helpers import Api

INT64_MAX = 2**63 - 1
MODELS = (ConsentEvent, AuditLog, Contact, Topic, Campaign, SystemMessage, Delivery, Suppression, WebhookEvent)


def state(app) -> dict:
    """What a refused request must leave as it was: row counts, and every campaign's status and time."""
    with app.app_context():
        counts = {m.__tablename__: db.session.scalar(select(func.count()).select_from(m)) for m in MODELS}
        campaigns = db.session.execute(select(Campaign.id, Campaign.status, Campaign.scheduled_at)
                                       .order_by(Campaign.id)).all()
        return {**counts, "campaigns": [tuple(row) for row in campaigns]}


def assert_refused(response, status: int, code: str | None = None, field: str | None = None) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    assert response.is_json, response.get_data(as_text=True)[:200]
    error = response.json["error"]
    assert isinstance(error["code"], str) and isinstance(error["message"], str) and error["message"]
    if code is not None:
        assert error["code"] == code, error
    if field is not None:
        assert error.get("field") == field, error
    return error


# -- every operation with a body, and a body it accepts ---------------------------------

@pytest.fixture
def campaign_id(api, topics) -> int:
    created = api.post("/campaigns", json={"name": "Spring", "topic": "news", "subject": "Hi", "text": "Hello"})
    assert created.status_code == 201
    return created.json["id"]


def body_operations(campaign_id: int) -> dict[str, tuple[str, str, dict]]:
    """operationId -> (method, path, a body the operation accepts)."""
    return {
        "put_topic": ("put", "/topics/weekly", {"name": "Weekly", "kind": "marketing", "legal_basis": "consent",
                                                "description": "Every week", "retired": False,
                                                "sendgrid_group_id": 7, "default_relationships": []}),
        "put_contact": ("put", "/contacts/new@example.com", {"name": "Ann", "company": "ACME", "title": "CTO",
                                                             "phone": "+34 600", "locale": "es",
                                                             "relationship": "customer"}),
        "post_consent": ("post", "/contacts/new@example.com/consents", {
            "topic": "news", "action": "grant", "legal_basis": "consent", "source": "form",
            "consent_text_version": "v1", "ip": "203.0.113.1", "user_agent": "Mozilla/5.0", "confirmed": False}),
        "create_campaign": ("post", "/campaigns", {"name": "Autumn", "topic": "news", "subject": "Hi", "text": "T",
                                                   "html": "<p>T</p>", "audience": {
                                                       "relationships": ["customer"], "locales": ["en"],
                                                       "contact_ids": [1]}}),
        "schedule_campaign": ("post", f"/campaigns/{campaign_id}/schedule", {"at": "2099-01-01T09:00:00+01:00"}),
        "send_message": ("post", "/messages", {"topic": "orders", "to": "buyer@example.com", "subject": "Order",
                                               "text": "Thanks", "html": "<p>Thanks</p>", "data": {"n": "1"}}),
        "post_eligibility": ("post", "/eligibility", {"topic": "news", "emails": ["ann@example.com"]}),
        # A public address literal: no DNS needed, and not refused as private.
        "put_webhook": ("put", "/webhooks/crm", {"url": "https://93.184.215.14/hooks", "events": ["consent.granted"]}),
        "put_segment": ("put", "/segments/Acme%20gold", {"topic": "news", "audience": {
            "relationships": ["customer"], "companies": ["Acme"],
            "attributes": [{"key": "plan", "op": "equals", "value": "gold"}]}}),
    }


ADMIN_OPERATIONS = {"put_webhook"}


def string_fields(model) -> list[tuple]:
    """Paths to every string in a body model (nested objects and string lists included), from its JSON schema."""
    schema = model.model_json_schema()
    defs = schema.get("$defs", {})
    found = []

    def walk(node: dict, path: tuple):
        node = defs[node["$ref"].split("/")[-1]] if "$ref" in node else node
        branches = node.get("anyOf", [node])
        for branch in branches:
            branch = defs[branch["$ref"].split("/")[-1]] if "$ref" in branch else branch
            if branch.get("type") == "string" or "enum" in branch or "const" in branch:
                found.append(path)
            elif branch.get("type") == "array":
                item = branch.get("items", {})
                item = defs[item["$ref"].split("/")[-1]] if "$ref" in item else item
                if item.get("type") == "string" or "enum" in item:
                    found.append(path + ([],))
            elif "properties" in branch:
                for name, sub in branch["properties"].items():
                    walk(sub, path + (name,))
            elif branch.get("type") == "object":  # free-form (message data): a key and a value
                found.extend([path + ({"key": None},), path + ({"value": None},)])

    for name, sub in schema["properties"].items():
        walk(sub, (name,))
    return found


def with_text(body: dict, path: tuple, text: str) -> dict:
    """`body` with the string at `path` (from `string_fields`) replaced by `text`."""
    body = copy.deepcopy(body)
    tail = path[-1]
    if isinstance(tail, list):  # a list of strings: its one item
        path, value = path[:-1], [text]
    elif isinstance(tail, dict):  # a free-form object: one of its keys, or one of its values
        path, value = path[:-1], ({text: 1} if "key" in tail else {"x": text})
    else:
        value = text
    node = body
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value
    return body


def cases(campaign_id: int):
    for op_id, (method, path, body) in body_operations(campaign_id).items():
        model = next(op.body for op in REGISTRY if op.operation_id == op_id)
        for field_path in string_fields(model):
            yield op_id, method, path, body, field_path


def test_every_operation_with_a_body_is_covered_here(ctx):
    declared = {op.operation_id for op in REGISTRY if op.body is not None}
    assert declared == set(body_operations(1)), "add the new operation to body_operations"


def test_the_sample_bodies_are_accepted(app, client, api, campaign_id):
    with app.app_context():
        _, admin_token = tokens.create("admin", admin=True)
        db.session.commit()
    admin = Api(client, admin_token)
    for op_id, (method, path, body) in body_operations(campaign_id).items():
        response = getattr(admin if op_id in ADMIN_OPERATIONS else api, method)(path, json=body)
        assert response.status_code in (200, 201, 202), (op_id, response.json)


# -- NUL, control characters, lone surrogates: in every string field ---------------------

@pytest.mark.parametrize("text, status", [
    ("a\x00b", 422),      # NUL: PostgreSQL refuses it; so do we, on every database
    ("a\ud800b", 422),    # a lone surrogate, sent as the JSON escape \ud800
    ("\udfff", 422),
])
def test_nul_and_lone_surrogates_are_refused_in_every_string_field(app, api, campaign_id, text, status):
    before = state(app)
    checked = 0
    for _op_id, method, path, body, field_path in cases(campaign_id):
        raw = json.dumps(with_text(body, field_path, text)).encode()  # ensure_ascii: "\u0000", "\ud800" escapes
        response = getattr(api, method)(path, data=raw, headers={"Content-Type": "application/json"})
        error = assert_refused(response, status, "validation_error", field_path[0])
        assert "\x00" not in error["message"] and "\ud800" not in error["message"], error
        checked += 1
    assert checked >= 30
    assert state(app) == before


def test_control_characters_are_refused_in_one_line_fields(app, api, campaign_id):
    before = state(app)
    for op_id, path, body, field in (
        ("put_topic", "/topics/weekly", {"name": "Week\nly", "kind": "system"}, "name"),
        ("put_contact", "/contacts/x@example.com", {"name": "Ann\r\nBcc: x@example.com"}, "name"),
        ("put_contact", "/contacts/x@example.com", {"company": "A\x85B"}, "company"),
        ("post_consent", "/contacts/x@example.com/consents", {"action": "grant", "source": "a\u2028b"}, "source"),
        ("create_campaign", "/campaigns", {"name": "N", "topic": "news", "subject": "Hi\nBcc: a@b.c", "text": "T"},
         "subject"),
        ("send_message", "/messages", {"topic": "orders", "to": "a@example.com", "subject": "S\x1b[31m",
                                       "text": "T"}, "subject"),
        ("send_message", "/messages", {"topic": "orders", "to": "a@example.com", "subject": "S", "text": "T\x07"},
         "text"),
    ):
        method = "put" if op_id.startswith("put") else "post"
        assert_refused(getattr(api, method)(path, json=body), 422, "validation_error", field)
    # Multi-line text keeps its tabs and line breaks.
    fine = api.post("/messages", json={"topic": "orders", "to": "a@example.com", "subject": "S",
                                       "text": "Line one\r\n\tLine two"})
    assert fine.status_code == 202
    assert state(app)["system_messages"] == before["system_messages"] + 1


def test_nul_and_control_characters_in_path_parameters_and_headers_are_refused(app, api, topics):
    before = state(app)
    assert_refused(api.get("/contacts/a%00b@example.com"), 422, field="email")
    assert_refused(api.put("/contacts/a%0Ab@example.com", json={}), 422, field="email")
    assert_refused(api.put("/topics/a%00b", json={"name": "X", "kind": "system"}), 422, field="key")
    assert_refused(api.get("/topics/%ED%A0%80"), 422, field="key")  # the UTF-8 bytes of a surrogate
    body = {"topic": "orders", "to": "a@example.com", "subject": "S", "text": "T"}
    for key in ("a\x01b", "with space", "x" * 201, "é"):
        assert_refused(api.post("/messages", json=body, headers={"Idempotency-Key": key}), 422,
                       "validation_error", "Idempotency-Key")
    assert state(app) == before


@pytest.mark.parametrize("raw", [b'{"name": "\xff"}', b'{"name": "\xed\xa0\x80"}', b"\xef\xbb\xbf{}",
                                 b'{"name": "a"', b"", b"NaN", b'{"name": Infinity}'])
def test_bodies_that_are_not_utf8_json_are_a_400(app, api, raw):
    before = state(app)
    assert_refused(api.put("/contacts/x@example.com", data=raw, headers={"Content-Type": "application/json"}),
                   400, "malformed_json")
    assert state(app) == before


# -- numbers -------------------------------------------------------------------------------

@pytest.mark.parametrize("segment", ["0", "-1", "01x", str(INT64_MAX + 1), "9" * 40, "1e3", "１"])
def test_ids_outside_one_to_2_63_in_paths_are_not_found(app, api, campaign_id, segment):
    before = state(app)
    for method, path in (("get", "/campaigns/{}"), ("post", "/campaigns/{}/schedule"), ("post", "/campaigns/{}/cancel"),
                         ("get", "/campaigns/{}/report"), ("get", "/messages/{}")):
        response = getattr(api, method)(path.format(segment), json={} if method == "post" else None)
        assert_refused(response, 404, "not_found")
    assert state(app) == before


def test_the_largest_id_is_simply_not_found(app, api, topics):
    for path in ("/campaigns/{}", "/campaigns/{}/report", "/messages/{}"):
        assert_refused(api.get(path.format(INT64_MAX)), 404, "not_found")
    assert_refused(api.post(f"/campaigns/{INT64_MAX}/cancel"), 404, "not_found")


@pytest.mark.parametrize("op_id, change, field", [
    ("put_topic", {"sendgrid_group_id": 2**31}, "sendgrid_group_id"),
    ("put_topic", {"sendgrid_group_id": 2**63}, "sendgrid_group_id"),
    ("put_topic", {"sendgrid_group_id": 10**30}, "sendgrid_group_id"),
    ("put_topic", {"sendgrid_group_id": 0}, "sendgrid_group_id"),
    ("create_campaign", {"audience": {"contact_ids": [INT64_MAX + 1]}}, "audience"),
    ("create_campaign", {"audience": {"contact_ids": [0]}}, "audience"),
    ("create_campaign", {"audience": {"contact_ids": [-(2**63) - 1]}}, "audience"),
    ("send_message", {"data": {"n": 2**64}}, "data"),
    ("send_message", {"data": {"n": [1, {"m": -(2**70)}]}}, "data"),
])
def test_integers_beyond_64_bits_or_the_field_are_a_422(app, api, campaign_id, op_id, change, field):
    method, path, body = body_operations(campaign_id)[op_id]
    before = state(app)
    assert_refused(getattr(api, method)(path, json={**body, **change}), 422, "validation_error", field)
    assert state(app) == before


@pytest.mark.parametrize("number", [b"1" + b"0" * 5000, b"-" + b"9" * 20, b"1e400", b"-1e400"])
def test_huge_numbers_in_json_text_are_a_422_not_a_400(app, api, campaign_id, number):
    before = state(app)
    raw = b'{"topic": "orders", "to": "a@example.com", "subject": "S", "text": "T", "data": {"n": ' + number + b"}}"
    assert_refused(api.post("/messages", data=raw, headers={"Content-Type": "application/json"}), 422,
                   "validation_error", "data")
    assert state(app) == before


# -- depth and size ------------------------------------------------------------------------

def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize("depth", [bodies.MAX_DEPTH, 1000, 100_000])
def test_json_nested_too_deep_is_a_400_on_every_body(app, api, campaign_id, depth):
    before = state(app)
    for method, path, _ in body_operations(campaign_id).values():
        raw = b'{"data": ' + nested(depth) + b"}"  # the object itself is one level more than `depth`
        response = getattr(api, method)(path, data=raw, headers={"Content-Type": "application/json"})
        assert_refused(response, 400, "too_deep")
    assert state(app) == before


def test_json_as_deep_as_the_limit_is_read():
    assert bodies.parse(nested(bodies.MAX_DEPTH)) == json.loads(nested(bodies.MAX_DEPTH))
    with pytest.raises(bodies.BodyError) as refused:
        bodies.parse(nested(bodies.MAX_DEPTH + 1))
    assert refused.value.status == 400
    # Brackets inside strings are text, not depth.
    assert bodies.parse(b'{"a": "' + b"[" * 10_000 + b'"}') == {"a": "[" * 10_000}


def test_a_message_with_data_nested_to_the_limit_is_accepted(api, topics):
    data: dict = {"x": "deepest"}
    for _ in range(bodies.MAX_DEPTH - 2):
        data = {"x": data}
    response = api.post("/messages", json={"topic": "orders", "to": "a@example.com", "subject": "S", "text": "T",
                                           "data": data})
    assert response.status_code == 202, response.json


def chunked(api, method: str, path: str, raw: bytes):
    """A request as a WSGI server hands over a chunked one: no Content-Length, the stream ends the body."""
    return getattr(api, method)(path, input_stream=io.BytesIO(raw),
                                headers={"Transfer-Encoding": "chunked", "Content-Type": "application/json"},
                                environ_overrides={"wsgi.input_terminated": True})


def test_chunked_bodies_over_the_limit_are_a_413_on_every_body(app, api, campaign_id):
    limit = app.config["PC_API_MAX_BODY_BYTES"]
    before = state(app)
    for method, path, body in body_operations(campaign_id).values():
        raw = json.dumps({**body, "pad": "x" * limit}).encode()
        assert_refused(chunked(api, method, path, raw), 413, "payload_too_large")
        declared = getattr(api, method)(path, data=raw, headers={"Content-Type": "application/json"})
        assert_refused(declared, 413, "payload_too_large")
    assert state(app) == before
    # Within the limit, a chunked body is read whole.
    ok = chunked(api, "put", "/contacts/chunked@example.com", json.dumps({"name": "C" * 200}).encode())
    assert ok.status_code == 201 and ok.json["name"] == "C" * 200


def test_a_body_exactly_at_the_limit_is_read(app, api, topics):
    limit = app.config["PC_API_MAX_BODY_BYTES"]
    head = b'{"topic": "orders", "to": "a@example.com", "subject": "S", "text": "T", "data": {"pad": "'
    raw = head + b"x" * (limit - len(head) - 3) + b'"}}'
    assert len(raw) == limit
    assert chunked(api, "post", "/messages", raw).status_code == 202


# -- keys and types ---------------------------------------------------------------------------

def test_unknown_keys_are_refused_naming_the_field_on_every_body(app, api, campaign_id):
    before = state(app)
    for method, path, body in body_operations(campaign_id).values():
        error = assert_refused(getattr(api, method)(path, json={**body, "shoe_size": 44}), 422, "validation_error",
                               "shoe_size")
        assert "shoe_size" in error["message"]
    nested_unknown = api.post("/campaigns", json={"name": "N", "topic": "news", "subject": "S", "text": "T",
                                                  "audience": {"shoe": ["x"]}})
    assert "audience.shoe" in assert_refused(nested_unknown, 422, "validation_error", "audience")["message"]
    assert state(app) == before


def test_a_key_twice_in_one_object_is_refused(app, api):
    before = state(app)
    raw = b'{"name": "Ann", "name": "Bob"}'
    assert_refused(api.put("/contacts/x@example.com", data=raw, headers={"Content-Type": "application/json"}),
                   422, "validation_error", "name")
    assert state(app) == before


@pytest.mark.parametrize("op_id, change, field", [
    ("put_topic", {"name": 5}, "name"),
    ("put_topic", {"retired": 1}, "retired"),
    ("put_topic", {"retired": "false"}, "retired"),
    ("put_topic", {"sendgrid_group_id": "7"}, "sendgrid_group_id"),
    ("put_topic", {"sendgrid_group_id": True}, "sendgrid_group_id"),
    ("put_topic", {"sendgrid_group_id": 7.0}, "sendgrid_group_id"),
    ("put_topic", {"default_relationships": "customer"}, "default_relationships"),
    ("put_topic", {"kind": "weekly"}, "kind"),
    ("put_contact", {"relationship": 1}, "relationship"),
    ("put_contact", {"name": ["Ann"]}, "name"),
    ("put_contact", {"phone": "1" * 51}, "phone"),
    ("post_consent", {"confirmed": "yes"}, "confirmed"),
    ("post_consent", {"action": None}, "action"),
    ("post_consent", {"topic": ["news"]}, "topic"),
    ("post_consent", {"source": ""}, "source"),
    ("create_campaign", {"audience": []}, "audience"),
    ("create_campaign", {"audience": {"locales": "en"}}, "audience"),
    ("create_campaign", {"audience": {"relationships": ["friend"]}}, "audience"),
    ("create_campaign", {"subject": 5}, "subject"),
    ("create_campaign", {"text": "x" * 200_001}, "text"),
    ("schedule_campaign", {"at": 5}, "at"),
    ("schedule_campaign", {"at": "next tuesday"}, "at"),
    ("schedule_campaign", {"at": "0001-01-01T00:00:00+01:00"}, "at"),
    ("send_message", {"data": ["a"]}, "data"),
    ("send_message", {"to": 5}, "to"),
])
def test_wrong_types_and_values_are_a_422_naming_the_field(app, api, campaign_id, op_id, change, field):
    method, path, body = body_operations(campaign_id)[op_id]
    before = state(app)
    assert_refused(getattr(api, method)(path, json={**body, **change}), 422, "validation_error", field)
    assert state(app) == before


@pytest.mark.parametrize("raw", [b"[]", b'"text"', b"42", b"null"])
def test_a_body_that_is_not_an_object_is_a_400(app, api, raw):
    before = state(app)
    assert_refused(api.put("/contacts/x@example.com", data=raw, headers={"Content-Type": "application/json"}),
                   400, "malformed_json")
    assert state(app) == before


def test_a_body_not_sent_as_json_is_a_415(app, api):
    before = state(app)
    for content_type in ("text/plain", "application/x-www-form-urlencoded"):
        assert_refused(api.put("/contacts/x@example.com", data=b'{"name": "x"}',
                               headers={"Content-Type": content_type}), 415, "unsupported_media_type")
    assert state(app) == before


@pytest.mark.parametrize("body, field", [
    ({"name": "X", "kind": "system", "legal_basis": "consent"}, "legal_basis"),
    ({"name": "X", "kind": "marketing", "legal_basis": "contract"}, "legal_basis"),
    ({"name": "X", "kind": "marketing", "legal_basis": "consent", "default_relationships": ["customer"]},
     "default_relationships"),
    ({"name": "X", "kind": "marketing", "legal_basis": "legitimate_interest", "default_relationships": ["prospect"]},
     "default_relationships"),
])
def test_cross_field_rules_of_topics_are_a_422(app, api, body, field):
    before = state(app)
    assert_refused(api.put("/topics/cross", json=body), 422, None, field)
    assert state(app) == before


# -- the webhook reads bodies the same way ------------------------------------------------------

@pytest.mark.parametrize("raw, status", [
    (nested(100_000), 400),
    (b'[{"event": "open", "email": "a@example.com", "sg_event_id": "a\\u0000"}]', 422),
    (b'[{"event": "open", "email": "a@example.com", "sg_event_id": "\\ud800"}]', 422),
    (b'[{"event": "open", "email": "a@example.com", "sg_event_id": "x", "timestamp": 1' + b"0" * 400 + b"}]", 422),
    (b'[{"event": "open", "email": "\xff"}]', 400),
])
def test_the_webhook_refuses_hostile_json_and_stores_nothing(app, client, raw, status):
    before = state(app)
    response = client.post("/webhooks/sendgrid", data=raw, headers={"Content-Type": "application/json"})
    assert_refused(response, status)
    assert state(app) == before


def test_the_webhook_refuses_chunked_bodies_over_its_limit(app, client):
    before = state(app)
    events = [{"event": "open", "email": f"p{i}@example.com", "sg_event_id": f"e{i}"} for i in range(20_000)]
    raw = json.dumps(events).encode()
    assert len(raw) > app.config["MAX_CONTENT_LENGTH"]
    response = client.post("/webhooks/sendgrid", input_stream=io.BytesIO(raw),
                           headers={"Transfer-Encoding": "chunked", "Content-Type": "application/json"},
                           environ_overrides={"wsgi.input_terminated": True})
    assert_refused(response, 413, "payload_too_large")
    assert state(app) == before


# -- every answer fits the served document --------------------------------------------------------

class Contract:
    """The served OpenAPI document, and a check of one response against it."""

    def __init__(self, client):
        self.doc = client.get("/api/v1/openapi.json").json
        self.routes = []
        for template, item in self.doc["paths"].items():
            pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template))
            self.routes.append((re.compile(f"^{pattern}$"), template, item))
        self.checked: list[tuple[str, str, int]] = []

    def check(self, method: str, path: str, response) -> None:
        path = path.split("?")[0].removeprefix("/api/v1")
        matches = [(template, item) for regex, template, item in self.routes if regex.match(path)]
        template, item = min(matches, key=lambda m: m[0].count("{"))  # /docs/docs.js before /docs/{x}
        operation = item[method.lower()]
        status = str(response.status_code)
        assert status in operation["responses"], f"{method} {template} answered {status}, which is not documented"
        content = operation["responses"][status]["content"]
        media = response.mimetype
        assert media in content, f"{method} {template} {status} answered {media}, documented {list(content)}"
        if media == "application/json":
            schema = {**content[media]["schema"], "components": self.doc["components"]}
            jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).validate(response.json)
        self.checked.append((method.upper(), template, response.status_code))


class CheckedApi(Api):
    """An API client that checks every answer against the served document."""

    def __init__(self, client, token, contract: Contract):
        super().__init__(client, token)
        self.contract = contract

    def __getattr__(self, method):
        call = super().__getattr__(method)

        def checked(path, **kwargs):
            response = call(path, **kwargs)
            self.contract.check(method, path, response)
            return response
        return checked


def test_answers_of_real_calls_validate_against_the_served_document(app, client, api_token):
    contract = Contract(client)
    api = CheckedApi(client, api_token, contract)
    api.get("/openapi.json"), api.get("/docs"), api.get("/docs/docs.js"), api.get("/docs/docs.css")
    assert api.put("/topics/news", json={"name": "News", "kind": "marketing", "legal_basis": "consent"}).status_code == 201
    api.put("/topics/tips", json={"name": "Tips", "kind": "marketing", "legal_basis": "legitimate_interest",
                                  "default_relationships": ["customer"]})
    api.put("/topics/orders", json={"name": "Orders", "kind": "system"})
    api.put("/topics/news", json={"description": "Monthly", "sendgrid_group_id": 5})
    api.put("/topics/news", json={"kind": "system"})  # 409
    api.put("/topics/bad", json={"name": "Bad", "kind": "marketing", "legal_basis": "contract"})  # 422
    api.get("/topics"), api.get("/topics/news"), api.get("/topics/nope"), api.get("/topics/NOPE")
    api.put("/contacts/ann@example.com", json={"name": "Ann", "relationship": "customer", "locale": "es"})
    api.put("/contacts/ann@example.com", json={"company": "ACME", "phone": None})
    api.get("/contacts/ann@example.com"), api.get("/contacts/nobody@example.com"), api.get("/contacts/not-an-email")
    api.post("/contacts/ann@example.com/consents", json={"topic": "news", "action": "grant", "source": "form",
                                                         "confirmed": True, "consent_text_version": "v1"})
    api.post("/contacts/ann@example.com/consents", json={"action": "withdraw", "source": "call"})
    api.post("/contacts/ann@example.com/consents", json={"action": "withdraw", "source": "call"})  # 200, nothing new
    api.post("/contacts/ann@example.com/consents", json={"action": "grant", "source": "x", "confirmed": True})  # 409
    api.post("/contacts/bob@example.com/consents", json={"topic": "news", "action": "grant", "source": "form"})
    api.delete("/contacts/bob@example.com"), api.delete("/contacts/bob@example.com")
    api.get("/contacts/bob@example.com/proof"), api.get("/contacts/nobody@example.com/proof")
    api.get("/ledger/verify")
    campaign = api.post("/campaigns", json={"name": "C", "topic": "news", "subject": "Hi {{ contact.name }}",
                                            "text": "T", "audience": {"relationships": ["customer"]}}).json["id"]
    api.post("/campaigns", json={"name": "C", "topic": "orders", "subject": "S", "text": "T"})  # 422
    api.get(f"/campaigns/{campaign}"), api.get(f"/campaigns/{campaign}/report"), api.get("/campaigns/999")
    api.get(f"/campaigns/{campaign}/audience"), api.get("/campaigns/999/audience")
    api.post(f"/campaigns/{campaign}/schedule", json={"at": "2099-01-01T09:00:00Z"})
    api.post(f"/campaigns/{campaign}/schedule")  # no body: now
    api.post(f"/campaigns/{campaign}/cancel"), api.post(f"/campaigns/{campaign}/cancel")  # 200, 409
    api.get(f"/campaigns/{campaign}/audience")  # 409: cancelled
    api.post(f"/campaigns/{campaign}/pause"), api.post(f"/campaigns/{campaign}/resume")  # 409, 409
    api.post(f"/campaigns/{campaign}/duplicate"), api.post("/campaigns/999/duplicate")  # 201, 404
    api.put("/contacts/ann@example.com", json={"attributes": {"plan": "gold", "seats": 3, "trial": True}})
    api.put("/segments/Gold", json={"topic": "news", "audience": {"attributes": [{"key": "plan", "op": "is_set"}]}})
    api.put("/segments/Gold", json={"topic": "news"}), api.put("/segments/Bad", json={"topic": "orders"})  # 200, 422
    api.get("/segments"), api.get("/segments/Gold"), api.get("/segments/nope")  # 200, 200, 404
    api.delete("/segments/Gold"), api.delete("/segments/Gold")  # 200, 404
    body = {"topic": "orders", "to": "ann@example.com", "subject": "Order 1", "text": "Thanks"}
    sent = api.post("/messages", json=body, headers={"Idempotency-Key": "order-1"}).json["id"]
    api.post("/messages", json=body, headers={"Idempotency-Key": "order-1"})  # 200 replay
    api.post("/messages", json={**body, "text": "Other"}, headers={"Idempotency-Key": "order-1"})  # 409
    api.get(f"/messages/{sent}"), api.get("/messages/999")
    api.put("/contacts/x@example.com", data=b"{", headers={"Content-Type": "application/json"})  # 400
    api.put("/contacts/x@example.com", data=b"{}", headers={"Content-Type": "text/plain"})  # 415
    api.put("/contacts/x@example.com", json={"name": "x" * 300_000})  # 413
    api.put("/contacts/x@example.com", json={"bogus": 1})  # 422
    CheckedApi(client, "pc_wrong", contract).get("/topics")  # 401
    api.get("/eligibility?email=ann@example.com&topic=news"), api.get("/eligibility?email=x&topic=news")  # 200, 422
    api.post("/eligibility", json={"topic": "orders", "emails": ["ann@example.com", "new@example.com"]})
    api.get("/events?limit=5"), api.get("/events?after=x")  # 200, 422
    api.get("/webhooks"), api.put("/webhooks/crm", json={"url": "https://93.184.215.14/", "events": ["x"]})  # 403, 422
    with app.app_context():
        _, admin_token = tokens.create("admin", admin=True)
        db.session.commit()
    admin = CheckedApi(client, admin_token, contract)
    hook = {"url": "https://93.184.215.14/hooks", "events": ["consent.granted", "contact.erased"]}
    admin.put("/webhooks/crm", json=hook), admin.put("/webhooks/crm", json={**hook, "events": ["delivery.sent"]})
    admin.put("/webhooks/lan", json={**hook, "url": "http://10.0.0.8/hooks"})  # 422
    admin.get("/webhooks"), admin.get("/webhooks/crm"), admin.get("/webhooks/nope")
    admin.delete("/webhooks/crm"), admin.delete("/webhooks/crm")  # 200, 404
    statuses = {status for _, _, status in contract.checked}
    assert statuses >= {200, 201, 202, 400, 401, 403, 404, 409, 413, 415, 422}
    assert {template for _, template, _ in contract.checked} == set(contract.doc["paths"]), "a path went untried"


def test_the_document_is_complete_and_closed(client):
    doc = client.get("/api/v1/openapi.json").json
    text = json.dumps(doc)
    for ref in set(re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', text)):
        assert ref in doc["components"]["schemas"], ref
    assert "allOf" not in text, "no composition of closed schemas: a real answer must be able to fit"
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            if operation.get("security") != []:
                assert "401" in responses, (method, path)
            if "requestBody" in operation:
                assert {"400", "413", "415", "422"} <= set(responses), (method, path)
                schema = operation["requestBody"]["content"]["application/json"]["schema"]
                body = doc["components"]["schemas"][schema["$ref"].split("/")[-1]]
                assert body["additionalProperties"] is False, (method, path)
            if "{" in path:
                assert "404" in responses, (method, path)
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path" and parameter["schema"].get("type") == "integer":
                    assert parameter["schema"]["minimum"] == 1 and parameter["schema"]["maximum"] == INT64_MAX
    # Answers stay open to fields added later.
    assert "additionalProperties" not in doc["components"]["schemas"]["Contact"]


def test_the_patterns_say_what_the_character_rule_says():
    from preference_center import characters

    one_line, multi_line = re.compile(schemas.ONE_LINE), re.compile(schemas.MULTI_LINE)
    for code in [*range(0x00, 0x3000), 0xFEFF, 0xFFFD]:
        char = chr(code)
        assert (one_line.fullmatch(char) is not None) == (characters.refused(char) is None), hex(code)
        assert (multi_line.fullmatch(char) is not None) == (characters.refused(char, multiline=True) is None), \
            hex(code)


def test_the_reference_page_renders_the_document_with_its_own_assets(client):
    page = client.get("/api/v1/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert re.findall(r"<script[^>]*>", html) == ['<script src="docs/docs.js" defer>'], "no inline script (CSP)"
    assert "style=" not in html and "<style" not in html and "http" not in html.split("<body>")[0]
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    script = client.get("/api/v1/docs/docs.js")
    assert script.status_code == 200 and script.mimetype == "text/javascript"
    assert 'fetch("openapi.json"' in script.get_data(as_text=True)
    assert ".innerHTML" not in script.get_data(as_text=True)
    assert client.get("/api/v1/docs/docs.css").mimetype == "text/css"


# -- idempotency and message reads belong to a token -------------------------------------------------

def make_token(app, name: str, *, admin: bool = False) -> str:
    with app.app_context():
        _, plaintext = tokens.create(name, admin=admin)
        db.session.commit()
    return plaintext


MESSAGE = {"topic": "orders", "to": "buyer@example.com", "subject": "Order 17", "text": "Thanks"}


def test_one_idempotency_key_from_two_tokens_sends_two_messages(app, client, api, topics):
    other = Api(client, make_token(app, "shop"))
    mine = api.post("/messages", json=MESSAGE, headers={"Idempotency-Key": "order-17"})
    theirs = other.post("/messages", json=MESSAGE, headers={"Idempotency-Key": "order-17"})
    assert (mine.status_code, theirs.status_code) == (202, 202)
    assert mine.json["id"] != theirs.json["id"]
    # Each replay answers with the caller's own message.
    assert api.post("/messages", json=MESSAGE, headers={"Idempotency-Key": "order-17"}).json["id"] == mine.json["id"]
    again = other.post("/messages", json=MESSAGE, headers={"Idempotency-Key": "order-17"})
    assert again.status_code == 200 and again.json["id"] == theirs.json["id"] and again.json["replayed"] is True
    with app.app_context():
        rows = db.session.execute(select(SystemMessage.api_token_id, SystemMessage.idempotency_key)).all()
        assert len(rows) == 2 and len({token for token, _ in rows}) == 2


def test_a_key_reused_with_another_body_conflicts_only_within_its_token(app, client, api, topics):
    other = Api(client, make_token(app, "shop"))
    api.post("/messages", json=MESSAGE, headers={"Idempotency-Key": "k1"})
    before = state(app)
    conflict = api.post("/messages", json={**MESSAGE, "subject": "Other"}, headers={"Idempotency-Key": "k1"})
    assert_refused(conflict, 409, "idempotency_conflict", "Idempotency-Key")
    assert state(app) == before
    assert other.post("/messages", json={**MESSAGE, "subject": "Other"},
                      headers={"Idempotency-Key": "k1"}).status_code == 202


def test_a_message_is_read_only_by_its_token_or_an_admin_token(app, client, api, topics):
    other = Api(client, make_token(app, "shop"))
    admin = Api(client, make_token(app, "ops", admin=True))
    sent = api.post("/messages", json=MESSAGE).json["id"]
    assert api.get(f"/messages/{sent}").status_code == 200
    assert_refused(other.get(f"/messages/{sent}"), 404, "not_found")
    seen = admin.get(f"/messages/{sent}")
    assert seen.status_code == 200 and seen.json["id"] == sent
    # An admin token's own messages are still its own keys.
    assert admin.post("/messages", json=MESSAGE, headers={"Idempotency-Key": "a"}).status_code == 202
    assert api.post("/messages", json=MESSAGE, headers={"Idempotency-Key": "a"}).status_code == 202


def test_tokens_are_not_admin_unless_made_so_by_the_cli(app, runner):
    plain = runner.invoke(args=["create-token", "crm"])
    admin = runner.invoke(args=["create-token", "ops", "--admin"])
    assert plain.exit_code == 0 and admin.exit_code == 0, (plain.output, admin.output)
    with app.app_context():
        roles = dict(db.session.execute(select(ApiToken.name, ApiToken.role)).all())
        assert roles == {"crm": "client", "ops": "admin"}
        audit = db.session.scalars(select(AuditLog.detail).where(AuditLog.action == "token.create")).all()
        assert sorted(d["role"] for d in audit) == ["admin", "client"]


def test_the_staff_token_page_creates_admin_tokens(app, as_admin):
    assert as_admin.post("/admin/tokens", {"name": "crm"}).status_code == 201
    page = as_admin.post("/admin/tokens", {"name": "ops", "admin": "y"})
    assert page.status_code == 201
    assert ">admin<" in as_admin.get("/admin/tokens").text
    roles = dict(db.session.execute(select(ApiToken.name, ApiToken.role)).all())
    assert roles == {"crm": "client", "ops": "admin"}


@pytest.mark.parametrize("name", ["a\nb", "tab\there", "nul\x00", "x" * 101, ""])
def test_token_names_are_one_bounded_line(app, runner, name):
    result = runner.invoke(args=["create-token", name])
    assert result.exit_code != 0
    with app.app_context():
        assert db.session.scalar(select(func.count(ApiToken.id))) == 0


def test_an_answer_field_the_model_does_not_declare_is_named():
    from preference_center.api.operations import _undeclared

    given = {"id": 1, "links": {"preferences": "u", "extra": "x"}, "subscriptions": [{"topic": "a", "new": 1}]}
    sent = {"id": 1, "links": {"preferences": "u"}, "subscriptions": [{"topic": "a"}]}
    assert _undeclared(given, sent) == ["links.extra", "subscriptions.new"]


# -- races ----------------------------------------------------------------------------------------

def racing_upsert(monkeypatch, losses: int) -> list:
    """people.upsert losing a unique-constraint race `losses` times (as when two workers create one contact)."""
    from sqlalchemy.exc import IntegrityError

    from preference_center.commands import people

    real, calls = people.upsert, []

    def upsert(*args, **kwargs):
        calls.append(1)
        if len(calls) <= losses:
            real(*args, **kwargs)
            db.session.flush()
            raise IntegrityError("INSERT INTO contacts", {}, Exception("duplicate key value violates unique constraint"))
        return real(*args, **kwargs)

    monkeypatch.setattr(people, "upsert", upsert)
    return calls


def test_a_write_that_loses_a_race_runs_again_from_the_top(app, api, monkeypatch):
    calls = racing_upsert(monkeypatch, losses=1)
    answer = api.put("/contacts/race@example.com", json={"name": "Rae"})
    assert answer.status_code == 201 and answer.json["name"] == "Rae"
    assert len(calls) == 2
    with app.app_context():
        assert db.session.scalar(select(func.count(ConsentEvent.id))) == 1  # the lost attempt left nothing


def test_a_write_that_keeps_losing_is_a_409_that_changed_nothing(app, api, monkeypatch):
    calls = racing_upsert(monkeypatch, losses=10)
    before = state(app)
    assert_refused(api.put("/contacts/race@example.com", json={"name": "Rae"}), 409, "conflict")
    assert len(calls) == 3
    assert state(app) == before

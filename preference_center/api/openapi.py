"""The OpenAPI 3.1 description of /api/v1, served at /api/v1/openapi.json."""
from __future__ import annotations

from ..models import LEGAL_BASES, RELATIONSHIPS, TOPIC_KINDS


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict, description: str = "OK") -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


ERRORS = {
    "400": _json(_ref("Error"), "Malformed JSON"),
    "401": _json(_ref("Error"), "Missing or wrong bearer token"),
    "413": _json(_ref("Error"), "Body too large"),
    "422": _json(_ref("Error"), "Invalid input (unknown topic, invalid email, wrong types)"),
}
EMAIL = {"name": "email", "in": "path", "required": True, "schema": {"type": "string", "format": "email"}}
KEY = {"name": "key", "in": "path", "required": True, "schema": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_.-]{0,63}$"}}
CAMPAIGN = {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}
NULLABLE_STRING = {"type": ["string", "null"]}


def _body(schema: dict) -> dict:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def spec(base_url: str) -> dict:
    """Build the document; paths added by later features extend PATHS."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "Preference Center API", "version": "1.0.0",
                 "description": "Topics, contacts, consent proof, system messages and campaigns."},
        "servers": [{"url": f"{base_url}/api/v1"}],
        "security": [{"bearer": []}],
        "paths": PATHS,
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}, "schemas": SCHEMAS},
    }


SCHEMAS: dict = {
    "Error": {"type": "object", "required": ["error"], "properties": {"error": {
        "type": "object", "required": ["code", "message"],
        "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "field": {"type": "string"}}}}},
    "TopicInput": {"type": "object", "properties": {
        "name": {"type": "string", "maxLength": 200},
        "kind": {"enum": list(TOPIC_KINDS)},
        "legal_basis": {"enum": list(LEGAL_BASES)},
        "default_relationships": {"type": "array", "items": {"enum": list(RELATIONSHIPS)}},
        "description": {"type": "string", "maxLength": 5000},
        "retired": {"type": "boolean"},
        "sendgrid_group_id": {"type": ["integer", "null"]}}},
    "Topic": {"allOf": [_ref("TopicInput"), {"type": "object", "properties": {"key": {"type": "string"}}}]},
    "ContactInput": {"type": "object", "additionalProperties": False, "properties": {
        "name": NULLABLE_STRING, "company": NULLABLE_STRING, "title": NULLABLE_STRING,
        "phone": NULLABLE_STRING, "locale": NULLABLE_STRING,
        "relationship": {"enum": list(RELATIONSHIPS)}}},
    "Contact": {"allOf": [_ref("ContactInput"), {"type": "object", "properties": {
        "email": {"type": "string"},
        "status": {"enum": ["active", "restricted", "erased"]},
        "subscriptions": {"type": "array", "items": {"type": "object", "properties": {
            "topic": {"type": "string"}, "state": {"enum": ["subscribed", "unsubscribed"]},
            "basis": {"type": "string"}, "reason": {"type": "string"}, "kind": {"type": "string"}}}},
        "links": {"type": "object", "properties": {
            "preferences": {"type": "string", "format": "uri"},
            "unsubscribe_all": {"type": "string", "format": "uri"}}}}}]},
    "ConsentInput": {"type": "object", "required": ["action", "source"], "properties": {
        "topic": {"type": ["string", "null"], "description": "omit for all marketing"},
        "action": {"enum": ["grant", "withdraw"]},
        "legal_basis": {"enum": list(LEGAL_BASES)},
        "source": {"type": "string"},
        "consent_text_version": NULLABLE_STRING,
        "ip": NULLABLE_STRING, "user_agent": NULLABLE_STRING,
        "confirmed": {"type": "boolean"}}},
    "ConsentEvent": {"type": "object", "properties": {
        "id": {"type": "integer"}, "action": {"type": "string"}, "topic": NULLABLE_STRING,
        "legal_basis": NULLABLE_STRING, "source": {"type": "string"}, "confirmed": {"type": "boolean"},
        "occurred_at": {"type": "string", "format": "date-time"}, "hash": {"type": "string"}}},
}

PATHS: dict = {
    "/topics": {"get": {"summary": "List topics", "responses": {
        "200": _json({"type": "object", "properties": {"topics": {"type": "array", "items": _ref("Topic")}}}),
        "401": ERRORS["401"]}}},
    "/topics/{key}": {
        "parameters": [KEY],
        "get": {"summary": "Read a topic", "responses": {"200": _json(_ref("Topic")), "404": _json(_ref("Error"))}},
        "put": {"summary": "Create or update a topic (kind cannot change)", "requestBody": _body(_ref("TopicInput")),
                "responses": {"200": _json(_ref("Topic"), "Updated"), "201": _json(_ref("Topic"), "Created"),
                              "409": _json(_ref("Error"), "Kind change refused"), **ERRORS}}},
    "/contacts/{email}": {
        "parameters": [EMAIL],
        "put": {"summary": "Create or update a contact", "requestBody": _body(_ref("ContactInput")),
                "responses": {"200": _json(_ref("Contact"), "Updated"), "201": _json(_ref("Contact"), "Created"), **ERRORS}},
        "get": {"summary": "Read a contact with subscriptions and signed links",
                "responses": {"200": _json(_ref("Contact")), "404": _json(_ref("Error"))}},
        "delete": {"summary": "Erase a contact (personal data removed, suppression kept)",
                   "responses": {"200": _json({"type": "object"}), "404": _json(_ref("Error"))}}},
    "/contacts/{email}/consents": {
        "parameters": [EMAIL],
        "post": {"summary": "Record a grant or withdrawal with its proof", "requestBody": _body(_ref("ConsentInput")),
                 "responses": {"201": _json({"type": "object", "properties": {"event": _ref("ConsentEvent")}}), **ERRORS}}},
    "/ledger/verify": {"get": {"summary": "Verify the consent ledger's hash chain",
                               "responses": {"200": _json({"type": "object"})}}},
    "/openapi.json": {"get": {"summary": "This document", "security": [], "responses": {"200": _json({"type": "object"})}}},
}

SCHEMAS.update({
    "CampaignInput": {"type": "object", "required": ["name", "topic", "subject"], "properties": {
        "name": {"type": "string"}, "topic": {"type": "string", "description": "a marketing topic key"},
        "subject": {"type": "string"}, "html": {"type": "string"}, "text": {"type": "string"},
        "audience": {"type": "object", "properties": {
            "relationships": {"type": "array", "items": {"enum": list(RELATIONSHIPS)}},
            "locales": {"type": "array", "items": {"type": "string"}},
            "contact_ids": {"type": "array", "items": {"type": "integer"}}}}}},
    "Campaign": {"allOf": [_ref("CampaignInput"), {"type": "object", "properties": {
        "id": {"type": "integer"},
        "status": {"enum": ["draft", "scheduled", "sending", "sent", "cancelled", "failed"]},
        "scheduled_at": {"type": ["string", "null"], "format": "date-time"}}}]},
    "Schedule": {"type": "object", "properties": {"at": {"type": ["string", "null"], "format": "date-time",
                                                         "description": "null or absent: now"}}},
    "Report": {"type": "object", "properties": {
        "status": {"type": "string"}, "eligible": {"type": "integer"}, "sent": {"type": "integer"},
        "skipped": {"type": "object", "additionalProperties": {"type": "integer"}},
        "failed": {"type": "integer"}, "unknown": {"type": "integer"}, "pending": {"type": "integer"}}},
    "MessageInput": {"type": "object", "required": ["topic", "to", "subject"], "properties": {
        "topic": {"type": "string", "description": "a system topic key"}, "to": {"type": "string", "format": "email"},
        "subject": {"type": "string"}, "text": {"type": "string"}, "html": {"type": "string"},
        "data": {"type": "object", "description": "values for {{ data.x }} in the templates"}}},
    "MessageAccepted": {"type": "object", "properties": {
        "id": {"type": "integer"}, "status": {"type": "string"}, "delivery_id": {"type": "integer"},
        "replayed": {"type": "boolean"}}},
})

IDEMPOTENCY = {"name": "Idempotency-Key", "in": "header", "required": False, "schema": {"type": "string", "maxLength": 200},
               "description": "a retried call with the same key and body sends nothing twice"}

PATHS.update({
    "/campaigns": {"post": {"summary": "Create a draft campaign", "requestBody": _body(_ref("CampaignInput")),
                            "responses": {"201": _json(_ref("Campaign"), "Created"), **ERRORS}}},
    "/campaigns/{id}": {"parameters": [CAMPAIGN], "get": {"summary": "Read a campaign",
                                                          "responses": {"200": _json(_ref("Campaign")), "404": _json(_ref("Error"))}}},
    "/campaigns/{id}/schedule": {"parameters": [CAMPAIGN], "post": {
        "summary": "Schedule (at: ISO-8601, or null for now)", "requestBody": _body(_ref("Schedule")),
        "responses": {"200": _json(_ref("Campaign")), "409": _json(_ref("Error")), **ERRORS}}},
    "/campaigns/{id}/cancel": {"parameters": [CAMPAIGN], "post": {
        "summary": "Cancel; batches not yet sent are skipped", "responses": {"200": _json(_ref("Campaign")), "409": _json(_ref("Error"))}}},
    "/campaigns/{id}/report": {"parameters": [CAMPAIGN], "get": {
        "summary": "Counts: eligible, sent, skipped by reason, failed, unknown", "responses": {"200": _json(_ref("Report"))}}},
    "/messages": {"post": {"summary": "Send a system message (system topics only)", "parameters": [IDEMPOTENCY],
                           "requestBody": _body(_ref("MessageInput")),
                           "responses": {"202": _json(_ref("MessageAccepted"), "Queued"),
                                         "200": _json(_ref("MessageAccepted"), "Replay of an earlier call"),
                                         "409": _json(_ref("Error"), "Idempotency-Key reused with another body"), **ERRORS}}},
    "/messages/{id}": {"parameters": [CAMPAIGN], "get": {"summary": "Status of a system message",
                                                         "responses": {"200": _json(_ref("MessageAccepted"))}}},
})

"""The OpenAPI 3.1 document of /api/v1, built from the declared operations (operations.REGISTRY).

Schemas come from the pydantic models' `model_json_schema` (request models in validation mode, answers in
serialization mode), parameters from the parameter models, error statuses from what each operation can
refuse. Nothing here is written by hand that the server does not also enforce.
"""
from __future__ import annotations

import copy
import functools

from pydantic.json_schema import models_json_schema

from .. import bodies
from . import schemas
from .operations import REGISTRY, Operation

REF = "#/components/schemas/{model}"
INFO = {
    "title": "Preference Center API",
    "version": "1.1.0",
    "description": (
        "Topics, contacts and their consent, system messages and campaigns.\n\n"
        "Every operation but this document and its rendered reference (`/docs`) needs "
        "`Authorization: Bearer <token>` (`preference-center create-token NAME`). Errors are "
        '`{"error": {"code", "message", "field"}}` with a 4xx status. Bodies are JSON objects of at most '
        f"256 KiB (configurable), nested at most {bodies.MAX_DEPTH} levels, with no NUL characters, no lone "
        "surrogates and no number outside 64-bit integers or finite doubles; unknown fields are refused. "
        "Idempotency keys are scoped to the token that sent them."),
}


def document(base_url: str) -> dict:
    """The whole document, with `servers` pointing at this deployment."""
    return {"openapi": "3.1.0", "info": INFO, "servers": [{"url": f"{base_url}/api/v1"}], **_built()}


@functools.cache
def _built() -> dict:
    models = [(schemas.Error, "serialization")]
    for op in REGISTRY:
        if op.body is not None:
            models.append((op.body, "validation"))
        models += [(a.model, "serialization") for a in op.answers.values() if a.model is not None]
    _, top = models_json_schema(list(dict.fromkeys(models)), ref_template=REF)
    paths: dict = {}
    for op in REGISTRY:
        paths.setdefault(op.path, {})[op.method] = _operation(op)
    tags = list(dict.fromkeys(op.tag for op in REGISTRY))
    return {
        "tags": [{"name": tag} for tag in tags],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "an API token (pc_…) from preference-center "
                                                          "create-token or the staff token page"}},
            "schemas": {name: _tidy(schema) for name, schema in sorted(top.get("$defs", {}).items())},
        },
    }


def _operation(op: Operation) -> dict:
    spec: dict = {"operationId": op.operation_id, "summary": op.summary, "tags": [op.tag]}
    if op.description:
        spec["description"] = op.description
    parameters = (_parameters(op.params, "path") + _parameters(op.query, "query")
                  + _parameters(op.headers, "header"))
    if parameters:
        spec["parameters"] = parameters
    if op.body is not None:
        spec["requestBody"] = {"required": op.body_required,
                               "content": {"application/json": {"schema": _ref(op.body)}}}
    responses = {}
    for status, answer in sorted(op.answers.items()):
        schema = _ref(answer.model) if answer.model is not None else {"type": "string"}
        if answer.media == "application/json" and answer.model is None:
            schema = {"type": "object"}
        responses[str(status)] = {"description": answer.description,
                                  "content": {answer.media: {"schema": schema}}}
        if answer.links:
            responses[str(status)]["links"] = copy.deepcopy(answer.links)
    for status, why in op.errors.items():
        if status == 414:  # the HTTP server's own page, not ours
            responses[str(status)] = {"description": why, "content": {"text/html": {"schema": {"type": "string"}}}}
            continue
        responses[str(status)] = {"description": why, "content": {"application/json": {"schema": _ref(schemas.Error)}}}
    spec["responses"] = responses
    if op.public:
        spec["security"] = []
    return spec


def _parameters(model, where: str) -> list[dict]:
    if model is None:
        return []
    schema = model.model_json_schema(by_alias=True)
    required = set(schema.get("required", ()))
    result = []
    for name, prop in schema["properties"].items():
        prop = _tidy(prop)
        description = prop.pop("description", None)
        if "anyOf" in prop:  # an optional header: the parameter is absent, never null
            (prop,) = [branch for branch in prop.pop("anyOf") if branch.get("type") != "null"]
        prop.pop("default", None)
        parameter = {"name": name, "in": where, "required": where == "path" or name in required, "schema": prop}
        if description:
            parameter["description"] = description
        result.append(parameter)
    return result


def _ref(model) -> dict:
    return {"$ref": REF.format(model=model.__name__)}


def _tidy(schema):
    """The schema without pydantic's generated titles (property names stay)."""
    if isinstance(schema, list):
        return [_tidy(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    tidy = {}
    for key, value in schema.items():
        if key == "title" and isinstance(value, str):
            continue
        if key in ("properties", "$defs", "patternProperties"):
            tidy[key] = {name: _tidy(sub) for name, sub in value.items()}
        else:
            tidy[key] = _tidy(value)
    return tidy

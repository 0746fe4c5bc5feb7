"""The OpenAPI document (``GET /api/v1/openapi.json``) says what the API really does: how a
client authenticates (a bearer key, or a carrier's signature), the ``Idempotency-Key`` header of
every POST and the ``Idempotent-Replayed`` header of its replays, and errors as the RFC 9457
``application/problem+json`` bodies the API sends (CONTRACT.md), not flask-smorest's default
``Error`` (``code`` integer, ``message``) as ``application/json``."""
from __future__ import annotations

from typing import Any

import jsonschema_rs
from openapi_spec_validator import validate
import pytest

from tests.conftest import return_body

PROBLEM = "application/problem+json"
METHODS = ("get", "put", "post", "delete", "patch")


@pytest.fixture
def spec(client) -> dict[str, Any]:
    resp = client.get("/api/v1/openapi.json")  # public: no key needed to read the docs
    assert resp.status_code == 200
    return resp.get_json()


def _resolve(spec: dict, obj: dict) -> dict:
    while "$ref" in obj:
        section, kind, name = obj["$ref"].removeprefix("#/").split("/")
        obj = spec[section][kind][name]
    return obj


def _operations(spec: dict):
    for path, item in spec["paths"].items():
        for method in METHODS:
            if method in item:
                yield path, method, item[method]


def _refs(node: Any):
    if isinstance(node, dict):
        if "$ref" in node:
            yield node["$ref"]
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _json_schema(spec: dict, schema: dict) -> dict:
    """An OpenAPI 3.0 schema of the components as a JSON Schema document (refs kept)."""
    return {**schema, "components": spec["components"]}


def test_the_document_is_a_valid_openapi_3_document(spec):
    assert spec["openapi"].startswith("3.0")
    validate(spec)  # openapi-spec-validator (requirements-dev.txt)
    for ref in set(_refs(spec)):  # every reference points at something that exists
        assert _resolve(spec, {"$ref": ref}), ref


def test_bearer_keys_are_the_global_security_requirement(spec):
    schemes = spec["components"]["securitySchemes"]
    (name, scheme), = [(n, s) for n, s in schemes.items() if s.get("scheme") == "bearer"]
    assert scheme["type"] == "http"
    assert spec["security"] == [{name: []}]
    for path, method, op in _operations(spec):
        if op.get("security") == []:
            continue
        assert "security" not in op or op["security"] == [{name: []}], (method, path)
        assert "401" in op["responses"], (method, path)  # a missing or unknown key


def test_carrier_events_authenticate_by_signature_not_by_key(spec):
    op = spec["paths"]["/api/v1/carrier-events/{carrier}"]["post"]
    assert op["security"] == []
    params = [_resolve(spec, p) for p in op.get("parameters", [])]
    headers = {p["name"] for p in params if p["in"] == "header"}
    assert "RMA-Signature" in headers
    assert "Idempotency-Key" not in headers  # carriers are deduplicated by their event_id
    assert PROBLEM in op["responses"]["401"]["content"]


def test_every_post_documents_idempotency_key_and_replayed_header(spec):
    posts = [(path, op) for path, method, op in _operations(spec) if method == "post" and op.get("security") != []]
    assert len(posts) >= 12
    for path, op in posts:
        params = [_resolve(spec, p) for p in op.get("parameters", [])]
        (key,) = [p for p in params if p["in"] == "header" and p["name"] == "Idempotency-Key"]
        assert key["required"] is False
        assert key["schema"] == {"type": "string", "minLength": 1, "maxLength": 255}, path
        successes = {code: _resolve(spec, r) for code, r in op["responses"].items() if code.startswith("2")}
        assert successes, path
        for code, response in successes.items():
            header = _resolve(spec, response["headers"]["Idempotent-Replayed"])
            assert header["schema"]["enum"] == ["true"], (path, code)


def test_no_get_documents_an_idempotency_key(spec):
    for path, method, op in _operations(spec):
        if method != "post":
            names = {_resolve(spec, p)["name"] for p in op.get("parameters", [])}
            assert "Idempotency-Key" not in names, (method, path)


def test_every_documented_error_is_problem_json(spec):
    seen = 0
    for path, method, op in _operations(spec):
        for code, response in op["responses"].items():
            if code != "default" and int(code) < 400:
                continue
            response = _resolve(spec, response)
            assert list(response["content"]) == [PROBLEM], (method, path, code)
            schema = _resolve(spec, response["content"][PROBLEM]["schema"])
            props = schema["properties"]
            assert props["status"]["type"] == "integer" and props["code"]["type"] == "string", (method, path, code)
            assert {"type", "title", "status", "detail", "code"} <= set(schema["required"]), (method, path, code)
            assert "message" not in props
            if code == "422":
                assert props["errors"]["type"] == "object", (method, path)
            seen += 1
    assert seen > 50
    # flask-smorest's default error schema is gone.
    assert "Error" not in spec["components"]["schemas"]
    for name, response in spec["components"].get("responses", {}).items():
        assert "application/json" not in response.get("content", {}), name


def test_real_errors_match_the_documented_problem_schemas(spec, client, api, order):
    problem = spec["components"]["responses"]["DEFAULT_ERROR"]["content"][PROBLEM]["schema"]
    validation = spec["components"]["responses"]["UNPROCESSABLE_ENTITY"]["content"][PROBLEM]["schema"]
    check = jsonschema_rs.validator_for(_json_schema(spec, problem))
    check_422 = jsonschema_rs.validator_for(_json_schema(spec, validation))

    unauthorized = client.get("/api/v1/returns")
    assert unauthorized.status_code == 401 and unauthorized.mimetype == PROBLEM
    check.validate(unauthorized.get_json())
    not_found = api.get("/returns/RMA-0000-0000")
    assert not_found.status_code == 404 and not_found.mimetype == PROBLEM
    check.validate(not_found.get_json())
    invalid = api.post("/returns", json=return_body(items=[{"line_id": "L1", "quantity": 0, "reason": "nope"}]))
    assert invalid.status_code == 422 and invalid.mimetype == PROBLEM
    check_422.validate(invalid.get_json())
    # ... and the documented schemas do reject what the API never sends.
    assert not check.is_valid({"code": 404, "status": "Not Found", "message": "x"})


def test_replays_carry_the_documented_header(api, order):
    headers = {"Idempotency-Key": "k-1"}
    first = api.post("/returns", json=return_body(), headers=headers)
    again = api.post("/returns", json=return_body(), headers=headers)
    assert first.status_code == again.status_code == 201
    assert "Idempotent-Replayed" not in first.headers
    assert again.headers["Idempotent-Replayed"] == "true"

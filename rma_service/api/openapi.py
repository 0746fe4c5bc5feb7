"""The OpenAPI document as the API really behaves, decided in one place rather than per route.

flask-smorest documents, out of the box, an API that this is not: every error as its own
``Error`` schema (``code`` an integer, ``message``) in ``application/json``, no way to
authenticate, and nothing of the contract's idempotency headers. ``RmaApi`` documents instead:

* errors as the RFC 9457 ``application/problem+json`` bodies of ``errors.problem`` (the default
  error, every ``UNPROCESSABLE_ENTITY``-style response flask-smorest adds, and any error response a
  route declares without a body);
* the shop's ``Authorization: Bearer <key>`` as the global security requirement (routes that
  authenticate otherwise say ``security=[]`` in their ``@blp.doc``, as carrier events do), with
  the 401 every keyed operation can answer;
* the ``Idempotency-Key`` request header of every keyed POST and the ``Idempotent-Replayed``
  header of its replayed answers (``api/__init__.py``: keys are remembered per API key, so a
  POST without a key, the carrier's, has none).

It also gives the Swagger UI page (``/api/docs``) its Content-Security-Policy: flask-smorest's
page starts Swagger UI with one inline script, allowed by its hash rather than by
``'unsafe-inline'``.
"""
from __future__ import annotations

import base64
import hashlib
import http
import re
from typing import Any, Optional

import marshmallow as ma
from apispec import BasePlugin
from flask_smorest import Api
from flask_smorest.utils import prepare_response

from ..errors import TITLES

PROBLEM_CONTENT_TYPE = "application/problem+json"
BEARER_SCHEME = "bearerAuth"
IDEMPOTENCY_KEY = "IDEMPOTENCY_KEY"  # components.parameters
IDEMPOTENT_REPLAYED = "IDEMPOTENT_REPLAYED"  # components.headers
DOCS_ENDPOINT = "api-docs.openapi_swagger_ui"


class Problem(ma.Schema):
    """An error, as RFC 9457 problem details (``errors.problem`` writes them)."""

    class Meta:
        unknown = ma.INCLUDE  # RFC 9457 extension members: ``current_status``, ``items`` …

    type = ma.fields.String(required=True, metadata={
        "format": "uri", "example": "https://rma.example/problems/not-found",
        "description": "Identifies the kind of problem; one per `code`."})
    title = ma.fields.String(required=True, metadata={"example": "Not found",
                                                      "description": "Short summary of the kind of problem."})
    status = ma.fields.Integer(required=True, metadata={"example": 404, "description": "The HTTP status code."})
    detail = ma.fields.String(required=True, metadata={"description": "What went wrong with this request."})
    code = ma.fields.String(required=True, validate=ma.validate.OneOf(list(TITLES)), metadata={
        "example": "not_found", "description": "Stable, machine-readable error code."})
    current_status = ma.fields.String(metadata={
        "description": "`invalid_transition` only: the return's status, which does not allow the action."})
    action = ma.fields.String(metadata={"description": "`invalid_transition` only: the action refused."})
    items = ma.fields.List(ma.fields.Dict(), metadata={
        "description": "`not_eligible` and `quantity_exceeded` only: the refused items, "
                       "each with its `index` and `reason_code`."})


class ValidationProblem(Problem):
    """A 422: ``validation_error`` names the fields in ``errors``."""

    errors = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.List(ma.fields.String()), metadata={
        "description": "`validation_error`: messages per field; nested fields dotted (`items.0.quantity`).",
        "example": {"items.0.quantity": ["Must be greater than or equal to 1."]}})


def _is_error(code: Any) -> bool:
    return str(code) == "default" or (str(code).isdigit() and int(code) >= 400)


class ContractPlugin(BasePlugin):
    """apispec hook run on every operation as flask-smorest adds it to the document."""

    def operation_helper(self, path: Optional[str] = None, operations: Optional[dict] = None,
                         **kwargs: Any) -> None:
        for method, operation in (operations or {}).items():
            responses = operation.setdefault("responses", {})
            for code, response in responses.items():
                # An error a route declares without a body (``alt_response(401, description=…)``).
                if _is_error(code) and isinstance(response, dict) and not response.get("content"):
                    response["content"] = {PROBLEM_CONTENT_TYPE: {"schema": "Problem"}}
            if operation.get("security") == []:  # authenticated otherwise (a carrier's signature)
                continue
            if not any(str(code) == "401" for code in responses):
                responses[401] = "UNAUTHORIZED"  # a missing or unknown key; kept before "default"
                for code in [code for code in responses if str(code) == "default"]:
                    responses[code] = responses.pop(code)
            if method == "post":
                operation.setdefault("parameters", []).append(IDEMPOTENCY_KEY)
                for code, response in responses.items():
                    if str(code).startswith("2") and isinstance(response, dict):
                        response.setdefault("headers", {})["Idempotent-Replayed"] = IDEMPOTENT_REPLAYED


class RmaApi(Api):
    """flask-smorest's ``Api``, documenting the errors, the security and the headers the API has."""

    ERROR_SCHEMA = Problem

    def _init_spec(self, *, extra_plugins: Any = None, **options: Any) -> None:
        options.setdefault("security", [{BEARER_SCHEME: []}])
        super()._init_spec(extra_plugins=[ContractPlugin(), *(extra_plugins or ())], **options)
        components = self.spec.components
        components.security_scheme(BEARER_SCHEME, {
            "type": "http", "scheme": "bearer",
            "description": "A key made by `flask rma create-api-key NAME`, sent as `Authorization: Bearer <key>`. "
                           "Missing or unknown: 401 `unauthorized`."})
        components.parameter(IDEMPOTENCY_KEY, "header", {
            "name": "Idempotency-Key", "required": False,
            "schema": {"type": "string", "minLength": 1, "maxLength": 255},
            "description": "Makes the POST safe to retry. The same key with the same body within "
                           "`RMA_IDEMPOTENCY_TTL_HOURS` (24 h) replays the first answer (with "
                           "`Idempotent-Replayed: true`) and does nothing again; with another body: 422 "
                           "`idempotency_key_reused`; while the first is still running: 409 `conflict`. "
                           "Keys are per API key."})
        components.header(IDEMPOTENT_REPLAYED, {
            "schema": {"type": "string", "enum": ["true"]},
            "description": "Present on an answer replayed for a repeated `Idempotency-Key`: the request "
                           "was not carried out again. Replayed error answers (4xx) carry it too."})

    def _register_responses(self) -> None:
        """What flask-smorest registers (a response per HTTP status, referred to by the errors it
        documents, and ``DEFAULT_ERROR``), with problem+json bodies instead of its ``Error``."""
        for status in http.HTTPStatus:
            response: dict[str, Any] = {"description": status.phrase}
            if status >= 400:
                response["schema"] = ValidationProblem if status == 422 else Problem
            prepare_response(response, self.spec, PROBLEM_CONTENT_TYPE)
            self.spec.components.response(status.name, response, lazy=True)
        response = {"description": "An error, as RFC 9457 problem details with a stable `code`.",
                    "schema": Problem}
        prepare_response(response, self.spec, PROBLEM_CONTENT_TYPE)
        self.spec.components.response(self.DEFAULT_ERROR_RESPONSE_NAME, response, lazy=True)


_INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.S)


def docs_policy(page: bytes) -> str:
    """The Content-Security-Policy of the Swagger UI page: its own files, its one inline
    initializer by hash (no ``'unsafe-inline'``), the document and "Try it out" on this origin
    only; ``data:`` images are the icons of Swagger UI's stylesheet."""
    scripts = ["'self'", *(f"'sha256-{base64.b64encode(hashlib.sha256(script).digest()).decode()}'"
                           for script in _INLINE_SCRIPT.findall(page))]
    return (f"default-src 'none'; script-src {' '.join(scripts)}; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")

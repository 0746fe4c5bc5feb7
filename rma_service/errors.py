"""Errors: RFC 9457 problem+json for the API, a friendly page for people. One handler each;
no stack trace ever reaches a client."""
from __future__ import annotations

import logging
import re
from typing import IO, Any, Optional

import flask
from flask import Flask, Response, json, render_template, request
from sqlalchemy.orm.exc import StaleDataError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.utils import cached_property
from werkzeug.wsgi import LimitedStream, get_input_stream

from .domain import DomainError

log = logging.getLogger(__name__)

TITLES = {
    "validation_error": "Invalid request",
    "unauthorized": "Authentication required",
    "forbidden": "Forbidden",
    "not_found": "Not found",
    "method_not_allowed": "Method not allowed",
    "conflict": "Conflict",
    "invalid_transition": "Invalid status transition",
    "not_eligible": "Not eligible for return",
    "quantity_exceeded": "Quantity exceeded",
    "idempotency_key_reused": "Idempotency key reused",
    "payload_too_large": "Payload too large",
    "rate_limited": "Too many requests",
    "carrier_unavailable": "Carrier unavailable",
    "internal_error": "Internal error",
}
STATUS_CODES = {400: "validation_error", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                405: "method_not_allowed", 409: "conflict", 413: "payload_too_large",
                415: "validation_error", 422: "validation_error", 429: "rate_limited",
                502: "carrier_unavailable", 503: "carrier_unavailable"}
DOMAIN_STATUS = {"invalid_transition": 409, "conflict": 409, "not_eligible": 422,
                 "quantity_exceeded": 422, "validation_error": 422, "not_found": 404,
                 "forbidden": 403, "carrier_unavailable": 503}


class ApiError(Exception):
    """Raise anywhere under a request to answer with a problem."""

    def __init__(self, status: int, code: str, detail: str, errors: Optional[dict] = None,
                 headers: Optional[dict] = None, **extra: Any):
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail
        self.errors, self.headers, self.extra = errors, headers or {}, extra


class NotFound(ApiError):
    def __init__(self, detail: str = "No such resource."):
        super().__init__(404, "not_found", detail)


def validation_error(errors: dict[str, list[str]], detail: str = "The request has invalid fields.") -> ApiError:
    return ApiError(422, "validation_error", detail, errors=errors)


def problem(status: int, code: str, detail: str, errors: Optional[dict] = None,
            headers: Optional[dict] = None, **extra: Any) -> Response:
    body: dict[str, Any] = {
        "type": f"https://rma.example/problems/{code.replace('_', '-')}",
        "title": TITLES.get(code, "Error"),
        "status": status,
        "detail": detail,
        "code": code,
    }
    if status == 422 and not errors:
        # The contract: every 422 names what is wrong. A 422 raised with a detail only (a rule
        # about the request as a whole) says it under "_schema", like an unreadable body.
        errors = {"_schema": [detail]}
    if errors is not None:
        body["errors"] = errors
    body.update(extra)
    resp = Response(json.dumps(body), status=status, mimetype="application/problem+json")
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


def flatten_messages(messages: Any, prefix: str = "") -> dict[str, list[str]]:
    """marshmallow's nested messages → ``{"items.0.quantity": [...]}``."""
    out: dict[str, list[str]] = {}
    if isinstance(messages, dict):
        for key, value in messages.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if key == "_schema":
                name = prefix or "_schema"
            for k, v in flatten_messages(value, name).items():
                out.setdefault(k, []).extend(v)
    elif isinstance(messages, (list, tuple)) and all(isinstance(m, str) for m in messages):
        out[prefix or "_schema"] = list(messages)
    elif isinstance(messages, (list, tuple)):
        for m in messages:
            for k, v in flatten_messages(m, prefix).items():
                out.setdefault(k, []).extend(v)
    else:
        out[prefix or "_schema"] = [str(messages)]
    return out


def _wants_problem() -> bool:
    return request.path.startswith("/api/") or request.path == "/healthz"


def _page(status: int, code: str, detail: str) -> Response:
    try:
        html = render_template("errors/error.html", status=status, code=code, detail=detail)
    except Exception:  # the error page itself must never fail
        log.exception("error page failed to render")
        html = f"<!doctype html><title>{status}</title><h1>{status}</h1>"
    return Response(html, status=status, mimetype="text/html")


def respond(status: int, code: str, detail: str, errors: Optional[dict] = None,
            headers: Optional[dict] = None, **extra: Any) -> Response:
    if _wants_problem():
        return problem(status, code, detail, errors, headers, **extra)
    resp = _page(status, code, detail)
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


NUL_MESSAGE = "NUL characters (U+0000) are not allowed."
SURROGATE_MESSAGE = "Unpaired surrogate characters (U+D800 to U+DFFF) are not allowed."
_SURROGATE = re.compile(r"[\ud800-\udfff]")
# In raw JSON a surrogate can only be an escape (UTF-8 cannot encode one): "\ud800" to "\udfff",
# hex digits in either case. A valid pair matches too; the decoded text tells them apart.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")
# Endpoints that check their body's characters themselves (with ``invalid_characters``), once
# the request is authenticated: a carrier's signature is checked before its body is parsed.
BODY_CHECKED_BY_VIEW: set[str] = {"api.carrier_events"}  # api/carriers.py


def _character_problem(text: str) -> Optional[str]:
    """Why ``text`` cannot be stored, if it cannot: a NUL (PostgreSQL text refuses it) or a
    lone surrogate (not encodable as UTF-8, so no database driver can send it)."""
    if "\x00" in text:
        return NUL_MESSAGE
    if _SURROGATE.search(text):
        return SURROGATE_MESSAGE
    return None


def invalid_characters(value: Any) -> Optional[dict[str, list[str]]]:
    """The first key or string of decoded JSON holding a character that cannot be stored, as a
    422's ``errors`` (``{"items.0.comment": [...]}``); None when there is none.

    Iterative, not recursive: the value may be nested as deeply as the JSON decoder allows,
    deeper than Python's recursion limit leaves room for here."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, str):
            message = _character_problem(node)
            if message:
                return {path or "_schema": [message]}
            continue
        if isinstance(node, dict):
            pairs: Any = node.items()
        elif isinstance(node, list):
            pairs = enumerate(node)
        else:
            continue
        children = []
        for key, item in pairs:
            name = f"{path}.{key}" if path else str(key)
            if isinstance(key, str):
                message = _character_problem(key)
                if message:  # the field's name itself: echoed without the culprit
                    return {_UNSTORABLE.sub("", name) or "_schema": [message]}
            children.append((name, item))
        stack.extend(reversed(children))  # depth first, in document order
    return None


def _json_body_characters() -> Optional[dict[str, list[str]]]:
    """``invalid_characters`` of the JSON body, decoded only when its raw bytes hold an escape
    that could produce one (``\\u0000``, ``\\ud800``…``\\udfff``): most bodies are never decoded
    twice. A body that does not decode (malformed, nested too deeply, a number too long) is
    left to the parser, which says so."""
    raw = request.get_data(cache=True)
    if b"\\u" not in raw or (b"\\u0000" not in raw and not _SURROGATE_ESCAPE.search(raw)):
        return None
    try:
        decoded = request.get_json(silent=True)
    except RecursionError:
        return None
    return invalid_characters(decoded)


def _reject_unstorable_characters() -> Optional[Response]:
    """A NUL character can't be stored (PostgreSQL text refuses it) and has no business in an
    order number, a name or a comment; neither has a lone UTF-16 surrogate, which JSON can
    carry as an escape ("\\udc00") and no database driver can encode. Refuse them up front, in
    the path, the query string, a form or a JSON body, instead of failing deep in the database
    with a 500. (The path, query and forms are decoded by werkzeug as UTF-8 with replacement:
    they can hold a NUL but never a surrogate.)"""
    errors: Optional[dict[str, list[str]]] = None
    if "\x00" in request.path:
        errors = {"path": [NUL_MESSAGE]}
    else:
        sources = [("query", request.args)]
        if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
            sources.append(("form", request.form))  # (no form parsing for other bodies)
        for source, values in sources:
            for key, value in values.items(multi=True):
                if "\x00" in key or "\x00" in value:
                    errors = {key.replace("\x00", "") or source: [NUL_MESSAGE]}
                    break
            if errors:
                break
        # A JSON body can only carry these as escapes (a raw control character is not JSON,
        # UTF-8 has no surrogates): the decoded body is walked only when the raw bytes have one.
        if errors is None and request.is_json and request.endpoint not in BODY_CHECKED_BY_VIEW:
            errors = _json_body_characters()
    if errors is None:
        return None
    if _wants_problem():
        return problem(422, "validation_error", "The request has invalid fields.", errors)
    return _page(400, "invalid_character", "The form contains a character that is not allowed.")


class _BodyWithin(LimitedStream):
    """A body of unknown length (``Transfer-Encoding: chunked``), read up to a maximum.

    werkzeug's ``LimitedStream(is_max=True)`` complains (413) only when a read is attempted at
    the maximum, and its ``read()`` of everything stops at the maximum without attempting one:
    a larger body came out silently cut at the limit (then "Invalid JSON body", or worse, a
    valid prefix: JSON followed by blanks was accepted). Here reaching the limit looks one byte
    further: more data is a 413, the end of the stream an ordinary end (a body of exactly the
    limit is fine)."""

    def __init__(self, stream: IO[bytes], limit: int) -> None:
        super().__init__(stream, limit, is_max=True)

    def on_exhausted(self) -> None:
        if self._stream.read(1):
            raise RequestEntityTooLarge()

    def readall(self) -> bytes:
        data = super().readall()
        if self.is_exhausted:
            self.on_exhausted()
        return data


class Request(flask.Request):
    """Flask's request, with a chunked body held to ``max_content_length`` (see _BodyWithin).

    With a Content-Length werkzeug already answers 413 before reading; the limit is read when
    the body is first read, so the customers' form still gets its larger limit
    (``RMA_UPLOAD_MAX_BYTES``, set by web._upload_limit before anything reads the body)."""

    @cached_property
    def stream(self) -> IO[bytes]:
        if self.shallow:
            raise RuntimeError("This request was created with 'shallow=True': reading the body is disabled.")
        limit = self.max_content_length
        if limit is not None and self.content_length is None and "wsgi.input_terminated" in self.environ:
            return _BodyWithin(self.environ["wsgi.input"], limit)
        return get_input_stream(self.environ, max_content_length=limit)


def item_problem_errors(code: str, problems: dict[int, dict]) -> dict[str, list[str]]:
    """The contract's ``errors`` of a ``not_eligible`` / ``quantity_exceeded`` problem, from
    whatever each item's details hold: policy.check_items gives the reason code or the units
    left, a reservation lost to a concurrent request (services/returns.py::_reserve_units)
    only the line."""
    errors: dict[str, list[str]] = {}
    for index, details in sorted(problems.items()):
        if code == "not_eligible":
            reason = details.get("reason_code") or "not_eligible"
            errors[f"items.{index}.line_id"] = [f"This item cannot be returned ({reason})."]
            continue
        left = details.get("returnable_quantity")
        if left is None:
            message = "More units requested than are left to return."
        elif left <= 0:
            message = "Nothing is left to return on this line."
        else:
            message = f"Only {left} left to return."
        errors[f"items.{index}.quantity"] = [message]
    return errors


def register_error_handlers(app: Flask) -> None:
    app.request_class = Request  # a chunked body over the limit is a 413 (see Request)
    app.before_request(_reject_unstorable_characters)

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        return respond(exc.status, exc.code, exc.detail, exc.errors, exc.headers, **exc.extra)

    @app.errorhandler(DomainError)
    def _domain_error(exc: DomainError):
        status = DOMAIN_STATUS.get(exc.code, 409)
        extra = {}
        if "status" in exc.extra:  # InvalidTransition: say where the return stands
            extra["current_status"], extra["action"] = exc.extra["status"], exc.extra.get("action")
        errors = None
        if "problems" in exc.extra:
            extra["items"] = [dict(index=i, **p) for i, p in sorted(exc.extra["problems"].items())]
            errors = item_problem_errors(exc.code, exc.extra["problems"]) or None
        return respond(status, exc.code, exc.detail, errors, **extra)

    @app.errorhandler(StaleDataError)
    def _stale(exc: StaleDataError):
        from .extensions import db
        db.session.rollback()
        return respond(409, "conflict", "The return was changed by another request at the same time; retry.")

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        status = exc.code or 500
        code = STATUS_CODES.get(status, "internal_error" if status >= 500 else "validation_error")
        errors = None
        data = getattr(exc, "data", None)  # webargs / flask-smorest validation errors
        if isinstance(data, dict) and "messages" in data:
            messages = data["messages"]
            if isinstance(messages, dict) and set(messages) <= {"json", "query", "form", "headers", "path", "files"}:
                merged: dict = {}
                for part in messages.values():
                    if isinstance(part, dict):
                        merged.update(part)
                    elif isinstance(part, (list, tuple)):  # about the whole body ("Invalid JSON body.")
                        merged.setdefault("_schema", []).extend(part)
                messages = merged
            errors = flatten_messages(messages)
            code, status = "validation_error", 422
        detail = {
            "not_found": "Nothing here. Check the address.",
            "method_not_allowed": f"{request.method} is not allowed here.",
            "payload_too_large": "The request body is too large.",
            "rate_limited": "Too many requests; slow down and retry later.",
            "validation_error": "The request has invalid fields." if errors else (exc.description or "Invalid request."),
        }.get(code, exc.description or "Error.")
        headers = {}
        if status == 405 and getattr(exc, "valid_methods", None):
            headers["Allow"] = ", ".join(exc.valid_methods)
        if status == 429:
            retry_after = getattr(exc, "retry_after", None)
            if retry_after:
                headers["Retry-After"] = str(retry_after)
        return respond(status, code, detail, errors, headers)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        try:
            from .extensions import db
            db.session.rollback()
        except Exception:  # pragma: no cover - best effort
            pass
        return respond(500, "internal_error", "Something went wrong on our side. It has been logged.")

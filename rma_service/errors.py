"""Errors: RFC 9457 problem+json for the API, a friendly page for people. One handler each;
no stack trace ever reaches a client."""
from __future__ import annotations

import logging
from typing import Any, Optional

from flask import Flask, Response, json, render_template, request
from sqlalchemy.orm.exc import StaleDataError
from werkzeug.exceptions import HTTPException

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


def _nul_at(value: Any, path: str = "") -> Optional[str]:
    """Where a NUL character hides in decoded JSON (``items.0.comment``), if anywhere."""
    if isinstance(value, str):
        return (path or "_schema") if "\x00" in value else None
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        if isinstance(key, str) and "\x00" in key:
            return f"{path}.{key}" if path else key
        found = _nul_at(item, f"{path}.{key}" if path else str(key))
        if found:
            return found
    return None


def _reject_nul_characters() -> Optional[Response]:
    """A NUL character can't be stored (PostgreSQL text refuses it) and has no business in an
    order number, a name or a comment: refuse it up front, in the path, the query string, a
    form or a JSON body, instead of failing deep in the database with a 500."""
    where = None
    if "\x00" in request.path:
        where = "path"
    else:
        sources = [("query", request.args)]
        if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
            sources.append(("form", request.form))  # (no form parsing for other bodies)
        for source, values in sources:
            for key, value in values.items(multi=True):
                if "\x00" in key or "\x00" in value:
                    where = key.replace("\x00", "") or source
                    break
            if where:
                break
        # A JSON body can only carry a NUL as the escape "\u0000" (a raw control character is
        # not JSON): the decoded body is walked only when the raw bytes have one.
        if where is None and request.is_json and b"\\u0000" in request.get_data(cache=True):
            where = _nul_at(request.get_json(silent=True))
    if where is None:
        return None
    errors = {where: ["NUL characters (U+0000) are not allowed."]}
    if _wants_problem():
        return problem(422, "validation_error", "The request has invalid fields.", errors)
    return _page(400, "invalid_character", "The form contains a character that is not allowed.")


def register_error_handlers(app: Flask) -> None:
    app.before_request(_reject_nul_characters)

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        return respond(exc.status, exc.code, exc.detail, exc.errors, exc.headers, **exc.extra)

    @app.errorhandler(DomainError)
    def _domain_error(exc: DomainError):
        status = DOMAIN_STATUS.get(exc.code, 409)
        extra = {}
        if "status" in exc.extra:  # InvalidTransition: say where the return stands
            extra["current_status"], extra["action"] = exc.extra["status"], exc.extra.get("action")
        if "problems" in exc.extra:
            extra["items"] = [dict(index=i, **p) for i, p in sorted(exc.extra["problems"].items())]
        return respond(status, exc.code, exc.detail, **extra)

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

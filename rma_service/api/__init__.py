"""The shop's JSON API (``/api/v1``): bearer keys, idempotent POSTs, problem+json errors."""
from __future__ import annotations

import hashlib
import math
import time
from functools import cache

import marshmallow as ma
from flask import Response, current_app, g, request
from flask_smorest import Blueprint
from limits import RateLimitItem, parse_many
from webargs.flaskparser import FlaskParser, abort

from .. import clock
from ..errors import ApiError
from ..extensions import limiter
from ..services import apikeys, idempotency


class _Parser(FlaskParser):
    """webargs makes a new instance of a schema class on every request (and marshmallow
    deep-copies its fields each time); an instance per class, made once, loads the same.

    webargs also turns only a JSONDecodeError into "Invalid JSON body."; the decoder has two
    more ways to refuse a body, which were 500s, and a body sent with another content type
    was read as no body at all: see ``load_json``."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._schemas: dict[type, ma.Schema] = {}

    def _get_schema(self, argmap, req) -> ma.Schema:
        if isinstance(argmap, type) and issubclass(argmap, ma.Schema):
            schema = self._schemas.get(argmap)
            return schema if schema is not None else self._schemas.setdefault(argmap, argmap())
        return super()._get_schema(argmap, req)

    def load_json(self, req, schema: ma.Schema):
        """A body nested deeper than the decoder's recursion limit (``[[[…]]]``: RecursionError)
        or with an integer literal longer than Python converts (4300 digits: a ValueError that
        is no JSONDecodeError) is unreadable JSON too: the same 422 as a malformed body
        (errors.py turns this 400 with messages into a 422 ``validation_error``), saying why."""
        if not req.is_json and (req.get_data(cache=True).strip() or req.form or req.files):
            # Without the content type webargs reads no body at all: every required field
            # would be "Missing data", which sends an integrator looking in the wrong place.
            abort(400, messages={"json": ["Send the body as JSON, with 'Content-Type: application/json'."]})
        try:
            return super().load_json(req, schema)
        except RecursionError:
            abort(400, messages={"json": ["Invalid JSON body: nested too deeply."]})
        except ValueError:
            abort(400, messages={"json": ["Invalid JSON body: a number has too many digits."]})


class _Blueprint(Blueprint):
    ARGUMENTS_PARSER = _Parser()


blp = _Blueprint("api", __name__, url_prefix="/api/v1", description="The shop backend's API.")

# Routes that authenticate on their own (a carrier's signature instead of a shop key).
PUBLIC_ENDPOINTS: set[str] = {"api.carrier_events"}  # api/carriers.py: RMA-Signature of the carrier


def rate_limit_key() -> str:
    auth = request.headers.get("Authorization", "")
    if auth:
        return "key:" + hashlib.sha256(auth.encode()).hexdigest()[:24]
    return "ip:" + (request.remote_addr or "?")


# --- the rate limit: one budget per API key for the whole API --------------------------------
# (a limit per route would give a key the setting once for every endpoint it calls).
#
# Counted in Flask-Limiter's storage with its strategy (``limiter.limiter``: the `limits`
# library Flask-Limiter is built on; redis:// shares the counts between workers), but checked
# here rather than by Flask-Limiter's per-request machinery, which matches every request
# against every registered limit and keeps bookkeeping for its headers: on the API's busiest
# request (a new return) that was about 7 % of the CPU, for one limit that is always the same.
# Flask-Limiter leaves the API alone (``extensions.init_limiter``). The answer is the same:
# 429 ``rate_limited`` with Retry-After, and X-RateLimit-Limit, -Remaining and -Reset on every
# response.


@cache
def _api_limits(setting: str) -> tuple[RateLimitItem, ...]:
    return tuple(parse_many(setting))


@blp.before_request  # the first of the API's hooks: a flood is refused before any database work
def rate_limit():
    if not limiter.enabled:
        return None
    strategy, key = limiter.limiter, rate_limit_key()
    items = _api_limits(current_app.config["RMA"]["RATELIMIT_API"])
    for item in items:
        if not strategy.hit(item, "api", key):
            reset, _remaining = strategy.get_window_stats(item, "api", key)
            raise ApiError(429, "rate_limited", "Too many requests; slow down and retry later.",
                           headers={"Retry-After": str(max(1, math.ceil(reset - time.time())))})
    g.rate_limit = (strategy, key, items)
    return None


@blp.after_request
def rate_limit_headers(response: Response) -> Response:
    found = g.pop("rate_limit", None)
    if found is not None:
        strategy, key, items = found
        # The limit closest to being used up, as Flask-Limiter reports it.
        (reset, remaining), item = min(((strategy.get_window_stats(item, "api", key), item) for item in items),
                                       key=lambda found: found[0].remaining)
        response.headers["X-RateLimit-Limit"] = str(item.amount)
        response.headers["X-RateLimit-Remaining"] = str(remaining)
        response.headers["X-RateLimit-Reset"] = str(int(reset))
    return response


@blp.before_request
def authenticate():
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    record = apikeys.authenticate(key.strip()) if scheme.lower() == "bearer" and key.strip() else None
    if record is None:
        raise ApiError(401, "unauthorized", "Send a valid API key as 'Authorization: Bearer <key>'.",
                       headers={"WWW-Authenticate": 'Bearer realm="rma"'})
    g.api_key_id, g.actor = record.id, f"api:{record.name}"
    if request.method == "POST":
        return _claim_idempotency_key(record.id)
    return None


def _claim_idempotency_key(api_key_id: int):
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not 1 <= len(key) <= 255:
        raise ApiError(422, "validation_error", "Idempotency-Key must be 1 to 255 characters.",
                       errors={"Idempotency-Key": ["Must be 1 to 255 characters."]})
    fingerprint = idempotency.request_fingerprint(request.method, request.path, request.get_data(cache=True))
    record_id, replay = idempotency.claim(api_key_id, key, fingerprint, clock.now(),
                                          int(current_app.config["RMA"]["IDEMPOTENCY_TTL_HOURS"]))
    if replay is not None:
        resp = Response(replay.body, status=replay.status, headers=replay.headers)
        resp.headers["Idempotent-Replayed"] = "true"
        return resp
    g.idempotency_record = record_id
    return None


@blp.after_request
def store_idempotent_answer(response: Response) -> Response:
    record_id = g.pop("idempotency_record", None)
    if record_id is not None:
        # A 5xx, or a 409 (it answers the return's state at that moment: a move not allowed
        # yet, a concurrent change), is not this request's answer for good: the key is
        # released and a retry runs again.
        if response.status_code >= 500 or response.status_code == 409:
            idempotency.release(record_id)
        else:
            keep = {k: v for k, v in response.headers.items() if k in ("Content-Type", "Location")}
            idempotency.finish(record_id, response.status_code, response.get_data(as_text=True), keep)
    return response


def init_app(app, api) -> None:
    from . import carriers, disputes, kpis, orders, returns, webhooks  # noqa: F401  (routes register on blp)
    api.register_blueprint(blp)

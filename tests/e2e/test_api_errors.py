"""Every error code the orders and returns API can produce: status, problem+json `code`,
and nothing written."""
from __future__ import annotations

import html
import http.client
import io
import json
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from rma_service.models import Event, IdempotencyKey, Order, OutboxEvent, Return
from tests.conftest import NOW, count, order_body, return_body


def snapshot(app):
    return {m.__name__: count(app, m) for m in (Order, Return, Event, OutboxEvent)}


def assert_problem(resp, status, code):
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.mimetype == "application/problem+json"
    body = resp.get_json()
    assert body["code"] == code and body["status"] == status
    assert {"type", "title", "detail"} <= set(body)
    assert "Traceback" not in resp.get_data(as_text=True)
    return body


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"}])
def test_unauthorized(app, client, order, headers):
    before = snapshot(app)
    resp = client.post("/api/v1/returns", json=return_body(), headers=headers)
    assert_problem(resp, 401, "unauthorized")
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert snapshot(app) == before


def test_validation_error_lists_dotted_fields(app, api, order):
    before = snapshot(app)
    resp = api.post("/returns", json={"order_number": "1001", "email": "ada@example.com",
                                      "items": [{"line_id": "L1", "quantity": 0, "reason": "meh"}],
                                      "resolution": "cash"})
    body = assert_problem(resp, 422, "validation_error")
    assert set(body["errors"]) == {"items.0.quantity", "items.0.reason", "resolution"}
    assert snapshot(app) == before


@pytest.mark.parametrize("payload, field", [
    ({"items": []}, "items"),
    ({"items": [{"line_id": "L1", "quantity": 1, "reason": "other"}]}, "items.0.comment"),
    ({"items": [{"line_id": "NOPE", "quantity": 1, "reason": "damaged"}]}, "items.0.line_id"),
    ({"items": [{"line_id": "L1", "quantity": 1.5, "reason": "damaged"}]}, "items.0.quantity"),
    ({"unexpected": True}, "unexpected"),
])
def test_return_validation_cases(app, api, order, payload, field):
    before = snapshot(app)
    body = assert_problem(api.post("/returns", json={**return_body(), **payload}), 422, "validation_error")
    assert field in body["errors"]
    assert snapshot(app) == before


def test_invalid_json_body(app, api, order):
    before = snapshot(app)
    resp = api.post("/returns", data="{not json", headers={"Content-Type": "application/json"})
    body = assert_problem(resp, 422, "validation_error")
    assert body["errors"] == {"_schema": ["Invalid JSON body."]}  # says what is wrong
    assert snapshot(app) == before


@pytest.mark.parametrize("change, field", [
    ({"currency": "euro"}, "currency"),
    ({"placed_at": "2026-11-01T10:00:00"}, "placed_at"),           # no offset: ambiguous
    ({"lines": [{"line_id": "L1", "sku": "S", "name": "N", "quantity": 1, "unit_price": 9.99}]}, "lines.0.unit_price"),
    ({"lines": [{"line_id": "L1", "sku": "S", "name": "N", "quantity": 1, "unit_price": "9.999"}]}, "lines.0.unit_price"),
    ({"lines": [{"line_id": "L1", "sku": "S", "name": "N", "quantity": 1, "unit_price": "-1"}]}, "lines.0.unit_price"),
    ({"shipping_address": {"name": "A", "line1": "B", "postal_code": "1", "city": "C", "country": "FRA"}}, "shipping_address.country"),
    ({"customer": {"email": "not-an-email", "name": "A"}}, "customer.email"),
])
def test_order_validation_cases(app, api, frozen_now, change, field):
    body = assert_problem(api.put("/orders/9", json={**order_body(), **change}), 422, "validation_error")
    assert field in body["errors"], body["errors"]
    assert count(app, Order) == 0


def test_duplicate_line_ids_rejected(app, api, frozen_now):
    line = {"line_id": "L1", "sku": "S", "name": "N", "quantity": 1, "unit_price": "1.00"}
    assert_problem(api.put("/orders/9", json=order_body(lines=[line, line])), 422, "validation_error")
    assert count(app, Order) == 0


@pytest.mark.parametrize("order_number, email", [("1001", "eve@example.com"), ("9999", "ada@example.com")])
def test_unknown_order_and_wrong_email_look_the_same(app, api, order, order_number, email):
    before = snapshot(app)
    body = assert_problem(api.post("/returns", json=return_body(order_number, email)), 404, "not_found")
    assert body["detail"] == "No order matches this order number and email."
    assert snapshot(app) == before


def test_not_eligible_gives_reason_per_item(app, api, order):
    before = snapshot(app)
    body = assert_problem(api.post("/returns", json=return_body(items=[
        {"line_id": "L1", "quantity": 1, "reason": "damaged"},
        {"line_id": "L3", "quantity": 1, "reason": "changed_mind"}])), 422, "not_eligible")
    assert body["items"] == [{"index": 1, "line_id": "L3", "reason_code": "not_returnable"}]
    assert snapshot(app) == before


def test_quantity_exceeded_counts_open_returns(app, api, order):
    api.post("/returns", json=return_body(items=[{"line_id": "L1", "quantity": 1, "reason": "damaged"}]))
    before = snapshot(app)
    body = assert_problem(api.post("/returns", json=return_body(items=[
        {"line_id": "L1", "quantity": 2, "reason": "damaged"}])), 422, "quantity_exceeded")
    assert body["items"][0]["returnable_quantity"] == 1
    assert snapshot(app) == before


def test_fully_returned_line_is_quantity_exceeded(api, order):
    api.post("/returns", json=return_body(items=[{"line_id": "L1", "quantity": 2, "reason": "damaged"}]))
    body = assert_problem(api.post("/returns", json=return_body()), 422, "quantity_exceeded")
    assert body["items"][0]["returnable_quantity"] == 0
    assert api.get("/orders/1001").get_json()["lines"][0]["eligibility"]["reason_code"] == "already_returned"


@pytest.mark.parametrize("number", ["RMA-0000-0001", "RMA-ZZZZ-ZZZZ", "hello", "RMA-7K3M-9Q2"])
def test_bad_check_symbol_is_404(api, number):
    assert_problem(api.get(f"/returns/{number}"), 404, "not_found")


def test_well_formed_unknown_number_is_404(api):
    from rma_service.domain import rma_number
    assert_problem(api.get(f"/returns/{rma_number.format_number(rma_number.generate())}"), 404, "not_found")


def test_label_404_before_label_exists(api, order):
    number = api.post("/returns", json=return_body()).get_json()["rma_number"]
    assert_problem(api.get(f"/returns/{number}/label.pdf"), 404, "not_found")


def test_invalid_transition_changes_nothing(app, api, order):
    number = api.post("/returns", json=return_body()).get_json()["rma_number"]
    before = snapshot(app)
    body = assert_problem(api.post(f"/returns/{number}/refund", json={"amount": "1.00"}), 409, "invalid_transition")
    assert body["current_status"] == "authorized"
    assert_problem(api.post(f"/returns/{number}/items/L1/triage",
                            json={"disposition": "restock", "condition": "new"}), 409, "invalid_transition")
    assert_problem(api.post(f"/returns/{number}/approve"), 409, "invalid_transition")
    assert snapshot(app) == before
    assert api.get(f"/returns/{number}").get_json()["status"] == "authorized"


def test_triage_twice_is_conflict(app, api, order):
    number = api.post("/returns", json=return_body(items=[
        {"line_id": "L1", "quantity": 1, "reason": "damaged"}, {"line_id": "L2", "quantity": 1, "reason": "damaged"}])).get_json()["rma_number"]
    api.post(f"/returns/{number}/receive")
    api.post(f"/returns/{number}/items/L1/triage", json={"disposition": "restock", "condition": "new"})
    before = snapshot(app)
    assert_problem(api.post(f"/returns/{number}/items/L1/triage",
                            json={"disposition": "refurbish", "condition": "used"}), 409, "conflict")
    assert snapshot(app) == before


def test_order_update_cannot_drop_units_in_returns(app, api, order):
    api.post("/returns", json=return_body(items=[{"line_id": "L1", "quantity": 2, "reason": "damaged"}]))
    lines = order_body()["lines"]
    lines[0]["quantity"] = 1
    assert_problem(api.put("/orders/1001", json=order_body(lines=lines)), 409, "conflict")
    assert api.get("/orders/1001").get_json()["lines"][0]["quantity"] == 2


def test_routing_404_and_405(api, client):
    assert_problem(api.get("/nothing-here"), 404, "not_found")
    resp = api.client.delete("/api/v1/returns", headers={"Authorization": f"Bearer {api.key}"})
    assert_problem(resp, 405, "method_not_allowed")
    assert "POST" in resp.headers["Allow"]


def test_payload_too_large(app, api, order):
    before = snapshot(app)
    huge = return_body(items=[{"line_id": "L1", "quantity": 1, "reason": "other", "comment": "x" * 2_000_000}])
    assert_problem(api.post("/returns", json=huge), 413, "payload_too_large")
    assert snapshot(app) == before


def test_internal_error_hides_the_trace(app, api):
    def boom():
        raise RuntimeError("secret internals")
    app.add_url_rule("/api/v1/_boom", "boom", boom)
    resp = api.get("/_boom")
    body = assert_problem(resp, 500, "internal_error")
    assert "secret internals" not in resp.get_data(as_text=True)
    assert body["detail"]


@pytest.mark.parametrize("app_config", [{"RATELIMIT_ENABLED": True, "RATELIMIT_API": "3/minute"}])
def test_rate_limited(app, api, order, app_config):
    # 3 a minute: the order's PUT (fixture) and two GETs.
    statuses = [api.get("/orders/1001").status_code for _ in range(2)]
    resp = api.get("/orders/1001")
    assert statuses == [200, 200]
    assert_problem(resp, 429, "rate_limited")
    assert "Retry-After" in resp.headers


@pytest.mark.parametrize("app_config", [{"RATELIMIT_ENABLED": True, "RATELIMIT_API": "100/hour;3/minute"}])
def test_rate_limit_headers_show_the_limit_closest_to_being_used_up(app, api, order, app_config):
    """Every API answer says how much of the budget is left (the tightest of the limits), and
    the 429 says when to come back."""
    resp = api.get("/orders/1001")  # the order's PUT (fixture) was the first of 3 this minute
    assert resp.status_code == 200
    assert (resp.headers["X-RateLimit-Limit"], resp.headers["X-RateLimit-Remaining"]) == ("3", "1")
    assert 0 < int(resp.headers["X-RateLimit-Reset"]) - time.time() <= 60
    assert api.get("/orders/1001").headers["X-RateLimit-Remaining"] == "0"
    resp = api.get("/orders/1001")
    assert_problem(resp, 429, "rate_limited")
    assert 1 <= int(resp.headers["Retry-After"]) <= 60
    # Another key has its own budget.
    with app.app_context():
        from rma_service.services import apikeys
        _record, other = apikeys.create_api_key("other", NOW)
    resp = api.get("/orders/1001", headers={"Authorization": f"Bearer {other}"})
    assert resp.status_code == 200 and resp.headers["X-RateLimit-Remaining"] == "2"


@pytest.mark.parametrize("app_config", [{"RATELIMIT_ENABLED": True, "RATELIMIT_API": "1000/minute",
                                         "RATELIMIT_STORAGE_URI": "memory://"}])
def test_the_memory_rate_limit_starts_no_thread_per_request(app, api, order, app_config, monkeypatch):
    """limits' memory storage starts a Timer thread 10 ms after nearly every hit (70 us of CPU
    each); the service's variant sweeps inline and still counts."""
    started = []
    start = threading.Thread.start
    monkeypatch.setattr(threading.Thread, "start", lambda thread: (started.append(thread.name), start(thread))[1])
    remaining = []
    for _ in range(15):
        time.sleep(0.012)  # the previous Timer has run out
        resp = api.get("/orders/1001")
        assert resp.status_code == 200
        remaining.append(int(resp.headers["X-RateLimit-Remaining"]))
    assert started == []
    assert remaining == list(range(998, 983, -1))


@pytest.mark.parametrize("app_config", [{"RATELIMIT_ENABLED": True, "RATELIMIT_API": "3/minute"}])
def test_the_rate_limit_is_one_budget_per_key_across_the_api(app, api, order, app_config):
    """The limit is per API key, not per route: the order's PUT (fixture), a list and a
    create — three endpoints — use up 3 a minute."""
    statuses = [api.get("/returns").status_code, api.post("/returns", json=return_body()).status_code]
    assert statuses == [200, 201]
    before = snapshot(app)
    assert_problem(api.post("/returns", json=return_body()), 429, "rate_limited")
    assert_problem(api.get("/orders/1001"), 429, "rate_limited")
    assert snapshot(app) == before


def test_idempotency_key_too_long(app, api, order):
    before = snapshot(app)
    resp = api.post("/returns", json=return_body(), headers={"Idempotency-Key": "k" * 256})
    assert_problem(resp, 422, "validation_error")
    assert snapshot(app) == before and count(app, IdempotencyKey) == 0


@pytest.mark.parametrize("send, field", [
    (lambda api: api.post("/returns", json=return_body(items=[
        {"line_id": "L1", "quantity": 1, "reason": "other", "comment": "torn\x00"}])), "items.0.comment"),
    (lambda api: api.put("/orders/2001", json=order_body(customer={
        "email": "zoe@example.com", "name": "Zoé\x00", "locale": "fr"})), "customer.name"),
    (lambda api: api.get("/returns?email=ada%00@example.com"), "email"),
    (lambda api: api.get("/orders/10%0001"), "path"),
])
def test_nul_characters_are_a_validation_error(app, api, order, send, field):
    """PostgreSQL text cannot hold U+0000: refused up front as 422, never a 500 from the
    database, and nothing written (on SQLite too)."""
    before = snapshot(app)
    body = assert_problem(send(api), 422, "validation_error")
    assert body["errors"] == {field: ["NUL characters (U+0000) are not allowed."]}
    assert snapshot(app) == before


def test_a_raw_nul_byte_in_a_json_body_is_invalid_json(app, api, order):
    """JSON carries a NUL only as the escape \\u0000 (what the hook looks for in the raw body);
    a raw NUL byte is not JSON at all: 422 saying so, nothing written."""
    raw = json.dumps(return_body()).replace('"too_small"', '"too_\x00small"').encode()
    before = snapshot(app)
    resp = api.post("/returns", data=raw, headers={"Content-Type": "application/json"})
    body = assert_problem(resp, 422, "validation_error")
    assert body["errors"] == {"_schema": ["Invalid JSON body."]}
    assert snapshot(app) == before


def test_an_escaped_backslash_before_u0000_is_just_text(app, api, order):
    """``"\\\\u0000"`` in JSON is a backslash followed by "u0000", not a NUL: accepted."""
    body = return_body(items=[{"line_id": "L1", "quantity": 1, "reason": "other", "comment": "code \\u0000"}])
    resp = api.post("/returns", json=body)
    assert resp.status_code == 201, resp.get_json()
    assert resp.get_json()["items"][0]["comment"] == "code \\u0000"


@pytest.mark.parametrize("path", ["/disputes/99999999999999999999", "/disputes/2147483648/messages"])
def test_an_id_beyond_the_integer_range_is_404_not_an_overflow(app, api, path):
    """Found by tests/e2e/test_api_fuzz.py: a huge id used to overflow the database (500)."""
    before = snapshot(app)
    resp = api.get(path) if path.count("/") == 2 else api.post(path, json={"body": "hello"})
    assert_problem(resp, 404, "not_found")
    assert snapshot(app) == before


REDIS_URL = "redis://127.0.0.1:6379/0"


def _redis_up() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1).close()
        return True
    except OSError:
        return False


# A second gunicorn worker: another process with its own app and its own limiter.
_OTHER_WORKER = """
import json, sys
from rma_service import create_app
config, key, n = json.loads(sys.stdin.read())
client = create_app(config).test_client()
print(json.dumps([client.get("/api/v1/orders/1001", headers={"Authorization": "Bearer " + key}).status_code
                  for _ in range(n)]))
"""


def _from_another_worker(config: dict, key: str, n: int) -> list[int]:
    proc = subprocess.run([sys.executable, "-c", _OTHER_WORKER], input=json.dumps([config, key, n]),
                          capture_output=True, text=True, timeout=60, cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _limits(storage: str) -> dict:
    return {"RATELIMIT_ENABLED": True, "RATELIMIT_API": "3/minute", "RATELIMIT_STORAGE_URI": storage}


@pytest.mark.skipif(not _redis_up(), reason="Redis is not running on 127.0.0.1:6379 (.ci/run starts it)")
@pytest.mark.parametrize("app_config, other_statuses", [
    (_limits(REDIS_URL), [200, 429]),    # the README's setting for several workers: one limit for all
    (_limits("memory://"), [200, 200]),  # the default: each worker counts on its own
])
def test_workers_share_the_rate_limit_through_redis(app, api, order, app_config, other_statuses):
    """3 a minute per API key: the order's PUT (fixture) and a GET here, then two requests
    from another worker process."""
    assert api.get("/orders/1001").status_code == 200
    config = {"DATABASE_URL": app.config["RMA"]["DATABASE_URL"], "SECRET_KEY": "test-secret", "TESTING": True,
              **app_config}
    assert _from_another_worker(config, api.key, 2) == other_statuses


# --- every 422 names its fields (the contract: "A 422 adds errors") --------------------------

@pytest.mark.parametrize("items, code, errors, details", [
    ([{"line_id": "L1", "quantity": 1, "reason": "damaged"},
      {"line_id": "L3", "quantity": 1, "reason": "changed_mind"}],
     "not_eligible", {"items.1.line_id": ["This item cannot be returned (not_returnable)."]},
     [{"index": 1, "line_id": "L3", "reason_code": "not_returnable"}]),
    ([{"line_id": "L2", "quantity": 1, "reason": "damaged"}, {"line_id": "L1", "quantity": 3, "reason": "damaged"}],
     "quantity_exceeded", {"items.1.quantity": ["Only 2 left to return."]},
     [{"index": 1, "line_id": "L1", "requested": 3, "returnable_quantity": 2}]),
])
def test_item_problems_name_the_field_in_errors_and_keep_items(app, api, order, items, code, errors, details):
    """not_eligible and quantity_exceeded are 422s: ``errors`` keyed by the item's field, beside
    the ``items`` details clients already read."""
    before = snapshot(app)
    body = assert_problem(api.post("/returns", json=return_body(items=items)), 422, code)
    assert body["errors"] == errors
    assert body["items"] == details
    assert snapshot(app) == before


def test_nothing_left_on_a_line_says_so_in_errors(app, api, order):
    api.post("/returns", json=return_body(items=[{"line_id": "L1", "quantity": 2, "reason": "damaged"}]))
    before = snapshot(app)
    body = assert_problem(api.post("/returns", json=return_body()), 422, "quantity_exceeded")
    assert body["errors"] == {"items.0.quantity": ["Nothing is left to return on this line."]}
    assert body["items"] == [{"index": 0, "line_id": "L1", "requested": 1, "returnable_quantity": 0}]
    assert snapshot(app) == before


def test_a_lost_reservation_race_still_names_the_fields(app, api, order, monkeypatch):
    """Another request took the units between the check and the reservation
    (services/returns.py::_reserve_units): the problem then knows only the line of each item;
    ``errors`` is built from that."""
    from rma_service.services import returns as returns_service
    monkeypatch.setattr(returns_service, "_reserve", lambda line, quantity: False)
    before = snapshot(app)
    body = assert_problem(api.post("/returns", json=return_body(items=[
        {"line_id": "L1", "quantity": 1, "reason": "damaged"}, {"line_id": "L2", "quantity": 1, "reason": "damaged"},
        {"line_id": "L1", "quantity": 1, "reason": "too_small"}])), 422, "quantity_exceeded")
    message = ["More units requested than are left to return."]
    assert body["errors"] == {"items.0.quantity": message, "items.2.quantity": message}
    assert body["items"] == [{"index": 0, "line_id": "L1"}, {"index": 2, "line_id": "L1"}]
    assert snapshot(app) == before


def test_idempotency_key_reused_names_the_header(app, api, order):
    headers = {"Idempotency-Key": "k-reused"}
    assert api.post("/returns", json=return_body(), headers=headers).status_code == 201
    before = snapshot(app)
    other = return_body(items=[{"line_id": "L2", "quantity": 1, "reason": "damaged"}])
    body = assert_problem(api.post("/returns", json=other, headers=headers), 422, "idempotency_key_reused")
    assert body["errors"] == {"Idempotency-Key": ["Already used with another request body."]}
    assert snapshot(app) == before and count(app, IdempotencyKey) == 1


def test_a_422_raised_without_field_errors_still_has_errors(app, api):
    """A safety net for any 422 raised with a detail only: the body is still the contract's."""
    from rma_service.errors import ApiError

    def bare():
        raise ApiError(422, "validation_error", "Something about the request as a whole.")
    app.add_url_rule("/api/v1/_bare422", "bare422", bare)
    body = assert_problem(api.get("/_bare422"), 422, "validation_error")
    assert body["errors"] == {"_schema": ["Something about the request as a whole."]}


# --- bad JSON is a 422, never a 500 ------------------------------------------------------------

SURROGATE = ["Unpaired surrogate characters (U+D800 to U+DFFF) are not allowed."]


def _raw(api, method: str, path: str, raw: str, **headers):
    send = api.put if method == "PUT" else api.post
    return send(path, data=raw.encode(), headers={"Content-Type": "application/json", **headers})


@pytest.mark.parametrize("method, path, raw, field", [
    ("PUT", "/orders/2001", json.dumps(order_body(customer={"email": "zoe@example.com", "name": "Zo\udc00",
                                                             "locale": "fr"})), "customer.name"),
    ("PUT", "/orders/2001", json.dumps(order_body(customer={"email": "zoe@example.com", "name": "\ud800",
                                                             "locale": "fr"})), "customer.name"),
    # a high surrogate followed by something that is not a low one
    ("PUT", "/orders/2001", json.dumps(order_body(customer={"email": "zoe@example.com", "name": "\ud83dA",
                                                             "locale": "fr"})), "customer.name"),
    ("PUT", "/orders/2001", json.dumps(order_body(customer={"email": "zoe@example.com", "name": "\ud83d\ud83d",
                                                             "locale": "fr"})), "customer.name"),
    # upper-case hex digits are the same escape
    ("POST", "/returns", json.dumps(return_body(items=[{"line_id": "L1", "quantity": 1, "reason": "other",
                                                         "comment": "torn XDC00"}])).replace("XDC00", "\\uDC00"),
     "items.0.comment"),
    ("POST", "/webhook-endpoints", json.dumps({"url": "https://shop.example/\udc00", "events": ["*"]}), "url"),
])
def test_lone_surrogates_are_a_validation_error(app, api, order, method, path, raw, field):
    """JSON can escape half of a UTF-16 pair ("\\udc00") that no database text can store (a
    UnicodeEncodeError when written: it was a 500): refused up front, nothing written."""
    from rma_service.models import WebhookEndpoint
    assert "\\ud" in raw.lower()
    before = snapshot(app)
    body = assert_problem(_raw(api, method, path, raw), 422, "validation_error")
    assert body["errors"] == {field: SURROGATE}
    assert snapshot(app) == before and count(app, WebhookEndpoint) == 0


def test_an_escaped_surrogate_pair_is_one_character_and_accepted(app, api, order):
    """An escaped pair ("\\ud83d\\ude00") is one emoji, U+1F600: fine in a comment and a name."""
    raw = json.dumps(return_body(items=[{"line_id": "L1", "quantity": 1, "reason": "other", "comment": "ok 😀"}]))
    assert "\\ud83d\\ude00" in raw
    resp = _raw(api, "POST", "/returns", raw)
    assert resp.status_code == 201, resp.get_json()
    assert resp.get_json()["items"][0]["comment"] == "ok 😀"
    raw = json.dumps(order_body(customer={"email": "ada@example.com", "name": "Ada 😀", "locale": "en"}))
    resp = _raw(api, "PUT", "/orders/1001", raw.replace("\\ud83d\\ude00", "\\uD83D\\uDE00"))
    assert resp.status_code == 200, resp.get_json()
    assert api.get("/orders/1001").get_json()["customer"]["name"] == "Ada 😀"


@pytest.mark.parametrize("path, status", [
    ("/orders/10%ED%A0%80", 404),                        # UTF-8 of U+D800: invalid, decoded as U+FFFD
    ("/returns?email=ada%ED%B0%80@example.com", 200),
])
def test_path_and_query_cannot_carry_a_surrogate(app, api, order, path, status):
    """werkzeug decodes percent-escapes as UTF-8 with replacement: no surrogate reaches the app."""
    before = snapshot(app)
    assert api.get(path).status_code == status
    assert snapshot(app) == before


DEEP = ["[" * 100_000 + "]" * 100_000, '{"a":' * 100_000 + "1" + "}" * 100_000,
        # the NUL guard decodes the body when it has an escape: it must cope too
        '{"a":' * 100_000 + '"\\u0000"' + "}" * 100_000, "[" * 100_000 + '"\\udc00"' + "]" * 100_000]


@pytest.mark.parametrize("raw", DEEP, ids=["list", "object", "object_nul", "list_surrogate"])
@pytest.mark.parametrize("method, path", [("POST", "/returns"), ("PUT", "/orders/2001")])
@pytest.mark.parametrize("key", [None, "deep-1"])
def test_deeply_nested_json_is_a_validation_error(app, api, order, raw, method, path, key):
    """A RecursionError in the JSON decoder (the parser, the idempotency fingerprint) was a 500."""
    before = snapshot(app)
    headers = {"Idempotency-Key": key} if key else {}
    body = assert_problem(_raw(api, method, path, raw, **headers), 422, "validation_error")
    assert body["errors"] == {"_schema": ["Invalid JSON body: nested too deeply."]}
    assert snapshot(app) == before
    if key and method == "POST":  # a 422 is the key's answer: the same body replays it
        again = _raw(api, method, path, raw, **headers)
        assert again.status_code == 422 and again.headers["Idempotent-Replayed"] == "true"


@pytest.mark.parametrize("depth", [100, 500, 900, 950, 990, 1000, 1100, 5000])
def test_json_nested_around_the_recursion_limit_is_never_a_500(app, api, order, depth):
    before = snapshot(app)
    for raw in ("[" * depth + "]" * depth, '{"a":' * depth + "1" + "}" * depth,
                json.dumps(return_body())[:-1] + ', "x": ' + "[" * depth + "]" * depth + "}"):
        resp = _raw(api, "POST", "/returns", raw, **{"Idempotency-Key": f"d-{depth}-{len(raw)}"})
        assert_problem(resp, 422, "validation_error")
    assert snapshot(app) == before


@pytest.mark.parametrize("method, path, raw", [
    ("POST", "/returns", json.dumps(return_body()).replace('"quantity": 1', '"quantity": 1' + "0" * 5000)),
    ("PUT", "/orders/2001", json.dumps(order_body()).replace('"quantity": 2', '"quantity": ' + "9" * 4301)),
])
def test_an_integer_with_too_many_digits_is_a_validation_error(app, api, order, method, path, raw):
    """Python refuses to convert an integer literal of more than 4300 digits (a ValueError that
    is not a JSONDecodeError: it was a 500)."""
    before = snapshot(app)
    body = assert_problem(_raw(api, method, path, raw), 422, "validation_error")
    assert body["errors"] == {"_schema": ["Invalid JSON body: a number has too many digits."]}
    assert snapshot(app) == before


# --- a chunked body (no Content-Length) over the limit is a 413, not a truncated body ------------

def _without_content_length(client, path: str, body: bytes, headers: dict):
    """What a WSGI server that decodes ``Transfer-Encoding: chunked`` (gunicorn, werkzeug's
    server) hands the app: the body as a stream that ends, no CONTENT_LENGTH, and
    ``wsgi.input_terminated``."""
    from werkzeug.test import EnvironBuilder
    from werkzeug.wrappers import Request
    environ = EnvironBuilder(path=path, method="POST", input_stream=io.BytesIO(body),
                             headers={**headers, "Transfer-Encoding": "chunked"}).get_environ()
    del environ["CONTENT_LENGTH"]
    environ["wsgi.input_terminated"] = True
    return client.open(Request(environ))  # (a dict would be rebuilt, with a CONTENT_LENGTH again)


def _chunked_post(url: str, path: str, body: bytes, headers: dict, chunk: int = 8192) -> tuple[int, str, bytes]:
    """A real ``Transfer-Encoding: chunked`` request (http.client encodes the chunks)."""
    from urllib.parse import urlsplit
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request("POST", path, body=(body[i:i + chunk] for i in range(0, len(body), chunk)),
                     headers=headers, encode_chunked=True)
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type", ""), resp.read()
    finally:
        conn.close()


LIMIT = 20_000


def _padded(size: int) -> bytes:
    """A valid return request padded with trailing spaces to ``size`` bytes: cut anywhere after
    the JSON it is still valid JSON (a truncated body was silently accepted)."""
    raw = json.dumps(return_body()).encode()
    return raw + b" " * (size - len(raw))


@pytest.mark.parametrize("app_config", [{"MAX_CONTENT_LENGTH": LIMIT}])
@pytest.mark.parametrize("body", [_padded(LIMIT + 1), _padded(3 * LIMIT),
                                  json.dumps(return_body(items=[{"line_id": "L1", "quantity": 1, "reason": "other",
                                                                 "comment": "x" * 3 * LIMIT}])).encode()],
                         ids=["one_byte_over", "padded", "long_comment"])
def test_a_chunked_body_over_the_limit_is_413(app, api, order, app_config, body):
    before = snapshot(app)
    resp = _without_content_length(api.client, "/api/v1/returns", body,
                                   {"Authorization": f"Bearer {api.key}", "Content-Type": "application/json"})
    assert_problem(resp, 413, "payload_too_large")
    assert snapshot(app) == before


@pytest.mark.parametrize("app_config", [{"MAX_CONTENT_LENGTH": LIMIT}])
def test_a_chunked_body_up_to_the_limit_is_read_whole(app, api, order, app_config):
    resp = _without_content_length(api.client, "/api/v1/returns", _padded(LIMIT),
                                   {"Authorization": f"Bearer {api.key}", "Content-Type": "application/json"})
    assert resp.status_code == 201, resp.get_json()


@pytest.mark.parametrize("app_config", [{"MAX_CONTENT_LENGTH": LIMIT}])
def test_chunked_requests_to_a_real_server(app, api, order, live_server, app_config):
    """Through werkzeug's HTTP server, which decodes the chunks like gunicorn does."""
    headers = {"Authorization": f"Bearer {api.key}", "Content-Type": "application/json"}
    before = snapshot(app)
    for body in (_padded(LIMIT + 1), _padded(3 * LIMIT)):
        status, ctype, raw = _chunked_post(live_server.url, "/api/v1/returns", body, headers)
        assert (status, ctype, json.loads(raw)["code"]) == (413, "application/problem+json", "payload_too_large")
    assert snapshot(app) == before
    status, _, raw = _chunked_post(live_server.url, "/api/v1/returns", _padded(LIMIT), headers)
    assert status == 201, raw[:500]


@pytest.mark.parametrize("app_config", [{"MAX_CONTENT_LENGTH": LIMIT, "UPLOAD_MAX_BYTES": 10 * LIMIT}])
def test_the_customers_form_keeps_its_own_limit_when_chunked(app, client, order, live_server, app_config):
    """The return form with photos may be larger than the API's limit (RMA_UPLOAD_MAX_BYTES),
    chunked or not; beyond its own limit it is the friendly 413 page."""
    from urllib3 import encode_multipart_formdata

    from tests.web_helpers import csrf, lookup, review
    assert lookup(client).status_code == 302
    summary = review(client, {"L1": (1, "damaged")}, follow_redirects=True).get_data(as_text=True)
    draft = re.search(r'id="draft" name="draft" type="hidden" value="([^"]+)"', summary).group(1)
    cookie = f"session={client.get_cookie('session').value}"

    def form(photo: bytes) -> tuple[bytes, str]:
        return encode_multipart_formdata({"csrf_token": csrf(summary), "draft": html.unescape(draft),
                                          "photos-0": ("noise.jpg", photo, "image/jpeg")})

    too_big, ctype = form(b"x" * 11 * LIMIT)
    status, _, page = _chunked_post(live_server.url, "/returns/order/submit", too_big,
                                    {"Content-Type": ctype, "Cookie": cookie})
    assert status == 413 and b"The files are too large" in page
    assert count(app, Return) == 0

    noise = io.BytesIO()
    Image.effect_noise((200, 200), 80).convert("RGB").save(noise, "JPEG", quality=95)
    assert LIMIT < len(noise.getvalue()) < 10 * LIMIT
    body, ctype = form(noise.getvalue())
    status, _, page = _chunked_post(live_server.url, "/returns/order/submit", body,
                                    {"Content-Type": ctype, "Cookie": cookie})
    assert status == 302, page[:2000]
    assert count(app, Return) == 1


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_a_json_body_without_its_content_type_says_so(app, client, api, order, content_type):
    """Valid JSON sent as text/plain (a forgotten header) answered "Missing data" for every
    required field; it says what is wrong instead, and nothing is written."""
    before = snapshot(app)
    headers = {"Authorization": f"Bearer {api.key}"}
    if content_type:
        headers["Content-Type"] = content_type
    resp = client.post("/api/v1/returns", data=json.dumps(return_body()), headers=headers)
    body = assert_problem(resp, 422, "validation_error")
    assert body["errors"] == {"_schema": ["Send the body as JSON, with 'Content-Type: application/json'."]}
    assert snapshot(app) == before
    # An empty body without a content type is still "these fields are missing".
    resp = client.post("/api/v1/returns", headers={"Authorization": f"Bearer {api.key}"})
    assert "order_number" in assert_problem(resp, 422, "validation_error")["errors"]

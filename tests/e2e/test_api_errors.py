"""Every error code the orders and returns API can produce: status, problem+json `code`,
and nothing written."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from rma_service.models import Event, IdempotencyKey, Order, OutboxEvent, Return
from tests.conftest import count, order_body, return_body


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

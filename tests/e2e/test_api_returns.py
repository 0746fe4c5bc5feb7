"""The shop API for orders and returns, through HTTP, on a real database."""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from rma_service.extensions import db
from rma_service.models import Event, OutboxEvent, Return
from tests.conftest import NOW, count, order_body, return_body


def test_put_order_creates_then_updates(api, frozen_now):
    first = api.put("/orders/1001", json=order_body())
    assert first.status_code == 201
    again = api.put("/orders/1001", json=order_body(currency="EUR"))
    assert again.status_code == 200
    got = api.get("/orders/1001").get_json()
    assert got["order_number"] == "1001"
    lines = {line["line_id"]: line for line in got["lines"]}
    assert lines["L1"]["returnable_quantity"] == 2
    assert lines["L1"]["eligibility"] == {"eligible": True, "reason_code": None}
    assert lines["L3"]["eligibility"] == {"eligible": False, "reason_code": "not_returnable"}
    assert lines["L1"]["unit_price"] == "49.90"


def test_order_eligibility_reasons(api, frozen_now):
    api.put("/orders/2001", json=order_body(delivered_at=None))
    assert api.put("/orders/2002", json=order_body(placed_at=(NOW - timedelta(days=40)).isoformat(),
                                                   delivered_at=(NOW - timedelta(days=31)).isoformat())).status_code == 201
    assert api.get("/orders/2001").get_json()["lines"][0]["eligibility"]["reason_code"] == "not_delivered"
    assert api.get("/orders/2002").get_json()["lines"][0]["eligibility"]["reason_code"] == "window_expired"


def test_create_return_auto_authorizes_and_records_everything(app, api, order):
    resp = api.post("/returns", json=return_body(items=[
        {"line_id": "L1", "quantity": 1, "reason": "too_small"},
        {"line_id": "L2", "quantity": 2, "reason": "changed_mind"}]))
    assert resp.status_code == 201
    body = resp.get_json()
    assert body["rma_number"].startswith("RMA-") and len(body["rma_number"]) == 13
    assert resp.headers["Location"].endswith(f"/api/v1/returns/{body['rma_number']}")
    assert body["status"] == "authorized"
    assert body["customer"] == {"email": "ada@example.com", "name": "Ada Lovelace"}
    # 49.90 + 2 × 9.50 = 68.90, less the 5.90 return shipping fee (customer's reasons only)
    assert body["refund"]["amount_due"] == "63.00"
    assert body["refund"]["currency"] == "EUR"
    assert body["refund"]["due_at"] == "2026-12-09T12:00:00Z"
    assert body["label"]["status"] == "pending"
    assert body["links"]["status_page"].startswith("http://rma.test/returns/status/")
    events = api.get(f"/returns/{body['rma_number']}/events").get_json()["items"]
    assert [e["type"] for e in events] == ["create", "approve"]
    assert events[1]["actor"] == "policy" and events[1]["data"]["to"] == "authorized"
    assert api.get("/orders/1001").get_json()["lines"][1]["returnable_quantity"] == 3
    assert count(app, OutboxEvent) == 2  # return.created, return.authorized


@pytest.mark.parametrize("items", [
    [{"line_id": "L1", "quantity": 1, "reason": "too_small"}],                          # authorized at once
    [{"line_id": "L1", "quantity": 1, "reason": "other", "comment": "Colour differs"}],  # waits for approval
])
def test_the_created_return_is_the_return_as_stored(app, api, order, items):
    """The 201 answer and the shop's events of a new return describe it exactly as a GET
    does afterwards (nothing the database fills in is missing from them)."""
    created = api.post("/returns", json=return_body(items=items)).get_json()
    stored = api.get(f"/returns/{created['rma_number']}").get_json()
    assert created == stored
    assert stored["items"][0]["received_quantity"] == 0 and stored["items"][0]["disposition"] == "pending"
    with app.app_context():
        last_event = db.session.scalars(select(OutboxEvent).order_by(OutboxEvent.id.desc())).first()
        assert last_event.payload == stored


def test_shop_fault_reason_means_no_shipping_fee(api, order):
    body = api.post("/returns", json=return_body(items=[{"line_id": "L1", "quantity": 1, "reason": "damaged"}])).get_json()
    assert body["refund"]["amount_due"] == "49.90"


def test_reason_other_needs_approval_then_approve(api, order):
    resp = api.post("/returns", json=return_body(items=[
        {"line_id": "L1", "quantity": 1, "reason": "other", "comment": "Colour differs from photo"}]))
    assert resp.get_json()["status"] == "requested"
    number = resp.get_json()["rma_number"]
    approved = api.post(f"/returns/{number}/approve")
    assert approved.status_code == 200 and approved.get_json()["status"] == "authorized"


def test_reject_releases_units(api, order):
    number = api.post("/returns", json=return_body(items=[
        {"line_id": "L1", "quantity": 2, "reason": "other", "comment": "x"}])).get_json()["rma_number"]
    assert api.get("/orders/1001").get_json()["lines"][0]["returnable_quantity"] == 0
    resp = api.post(f"/returns/{number}/reject", json={"reason": "Worn items"})
    assert resp.status_code == 200 and resp.get_json()["status"] == "rejected"
    assert api.get("/orders/1001").get_json()["lines"][0]["returnable_quantity"] == 2


def test_cancel_then_nothing_else(api, order):
    number = api.post("/returns", json=return_body()).get_json()["rma_number"]
    assert api.post(f"/returns/{number}/cancel").get_json()["status"] == "cancelled"
    again = api.post(f"/returns/{number}/approve")
    assert again.status_code == 409 and again.get_json()["code"] == "invalid_transition"


def test_full_lifecycle_receive_triage_refund(app, api, order):
    number = api.post("/returns", json=return_body(items=[
        {"line_id": "L1", "quantity": 2, "reason": "defective"},
        {"line_id": "L2", "quantity": 3, "reason": "defective"}])).get_json()["rma_number"]
    received = api.post(f"/returns/{number}/receive", json={"items": [
        {"line_id": "L1", "quantity": 2}, {"line_id": "L2", "quantity": 1}]})
    assert received.status_code == 200 and received.get_json()["status"] == "received"
    # two socks never arrived: they can be returned again later
    assert api.get("/orders/1001").get_json()["lines"][1]["returnable_quantity"] == 4
    # the amount due follows what arrived: 2 × 49.90 + 1 × 9.50
    assert received.get_json()["refund"]["amount_due"] == "109.30"
    t1 = api.post(f"/returns/{number}/items/L1/triage", json={"disposition": "restock", "condition": "new"})
    assert t1.get_json()["status"] == "received"
    t2 = api.post(f"/returns/{number}/items/L2/triage", json={"disposition": "refurbish", "condition": "used"})
    assert t2.get_json()["status"] == "inspected"
    assert {i["line_id"]: i["disposition"] for i in t2.get_json()["items"]} == {"L1": "restock", "L2": "refurbish"}
    partial = api.post(f"/returns/{number}/refund", json={"amount": "100.00", "reference": "PSP-1"})
    assert partial.get_json()["status"] == "inspected"
    assert partial.get_json()["refund"]["amount_refunded"] == "100.00"
    too_much = api.post(f"/returns/{number}/refund", json={"amount": "9.31"})
    assert too_much.status_code == 422 and too_much.get_json()["code"] == "validation_error"
    done = api.post(f"/returns/{number}/refund", json={"amount": "9.30"})
    assert done.get_json()["status"] == "refunded"
    assert done.get_json()["refund"]["refunded_at"] == "2026-11-25T12:00:00Z"
    types = [e["type"] for e in api.get(f"/returns/{number}/events").get_json()["items"]]
    assert types == ["create", "approve", "receive", "triage", "triage", "inspect", "refund_partial", "refund"]
    with app.app_context():
        from sqlalchemy import select
        from rma_service.extensions import db
        ret = db.session.scalar(select(Return))
        assert ret.amount_refunded == Decimal("109.30")
        kinds = db.session.scalars(select(OutboxEvent.type).order_by(OutboxEvent.id)).all()
    assert "item.restocked" in kinds and kinds[-1] == "return.refunded"


def test_dispute_triage_moves_to_disputed(api, order):
    number = api.post("/returns", json=return_body(items=[{"line_id": "L1", "quantity": 1, "reason": "damaged"}])).get_json()["rma_number"]
    api.post(f"/returns/{number}/receive")
    resp = api.post(f"/returns/{number}/items/L1/triage", json={"disposition": "dispute", "condition": "used",
                                                                "note": "No damage visible"})
    body = resp.get_json()
    assert body["status"] == "disputed"
    assert body["dispute"]["status"] == "open"


def test_exchange_closes_with_nothing_due(api, order):
    number = api.post("/returns", json=return_body(resolution="exchange")).get_json()["rma_number"]
    api.post(f"/returns/{number}/receive")
    api.post(f"/returns/{number}/items/L1/triage", json={"disposition": "restock", "condition": "new"})
    closed = api.post(f"/returns/{number}/close", json={"note": "Size L shipped"})
    assert closed.status_code == 200 and closed.get_json()["status"] == "closed"
    assert closed.get_json()["refund"]["amount_due"] == "0.00"


def test_close_refused_while_money_is_due(app, api, order):
    number = api.post("/returns", json=return_body()).get_json()["rma_number"]
    api.post(f"/returns/{number}/receive")
    api.post(f"/returns/{number}/items/L1/triage", json={"disposition": "restock", "condition": "new"})
    before = count(app, Event)
    resp = api.post(f"/returns/{number}/close")
    assert resp.status_code == 409 and resp.get_json()["code"] == "conflict"
    assert count(app, Event) == before


def test_lookup_forms_of_the_number(api, order):
    number = api.post("/returns", json=return_body()).get_json()["rma_number"]
    code = number.replace("RMA-", "").replace("-", "")
    for form in (number.lower(), code, code.lower(), f"rma{code}", f"{code[:4]}-{code[4:]}"):
        assert api.get(f"/returns/{form}").status_code == 200, form
    if "0" in code or "1" in code:
        typed = code.replace("0", "O").replace("1", "l")
        assert api.get(f"/returns/{typed}").status_code == 200


def test_list_filters_and_cursor(api, order):
    api.put("/orders/1002", json=order_body(customer={"email": "bob@example.com", "name": "Bob"}))
    numbers = [api.post("/returns", json=return_body(items=[{"line_id": "L2", "quantity": 1, "reason": "too_large"}])).get_json()["rma_number"]
               for _ in range(5)]
    other = api.post("/returns", json=return_body("1002", "bob@example.com")).get_json()["rma_number"]
    page1 = api.get("/returns?limit=2&order_number=1001").get_json()
    assert [r["rma_number"] for r in page1["items"]] == numbers[::-1][:2]
    # a row added meanwhile does not disturb the cursor
    api.post("/returns", json=return_body(items=[{"line_id": "L1", "quantity": 1, "reason": "too_large"}]))
    page2 = api.get(f"/returns?limit=2&order_number=1001&cursor={page1['next_cursor']}").get_json()
    assert [r["rma_number"] for r in page2["items"]] == numbers[::-1][2:4]
    page3 = api.get(f"/returns?limit=2&order_number=1001&cursor={page2['next_cursor']}").get_json()
    assert [r["rma_number"] for r in page3["items"]] == numbers[:1]
    assert page3["next_cursor"] is None
    by_email = api.get("/returns?email=BOB@example.com").get_json()["items"]
    assert [r["rma_number"] for r in by_email] == [other]
    assert api.get("/returns?status=requested").get_json()["items"] == []
    window = api.get("/returns?created_from=2026-11-25T00:00:00Z&created_to=2026-11-26T00:00:00Z&limit=100")
    assert len(window.get_json()["items"]) == 7


def test_openapi_and_docs_served_locally(client):
    spec = client.get("/api/v1/openapi.json")
    assert spec.status_code == 200
    paths = spec.get_json()["paths"]
    for path in ("/api/v1/returns", "/api/v1/returns/{rma_number}/refund", "/api/v1/orders/{order_number}"):
        assert path in paths
    docs = client.get("/api/docs")
    assert docs.status_code == 200
    html = docs.get_data(as_text=True)
    assert "/api/swagger-ui/swagger-ui-bundle.js" in html and "cdn" not in html.lower()
    assert client.get("/api/swagger-ui/swagger-ui-bundle.js").status_code == 200


def test_healthz(client):
    resp = client.get("/healthz")
    assert resp.status_code == 200 and resp.get_json() == {"status": "ok"}


def test_healthz_reports_database_down():
    from rma_service import create_app
    app = create_app({"DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none", "TESTING": True})
    resp = app.test_client().get("/healthz")
    assert resp.status_code == 503

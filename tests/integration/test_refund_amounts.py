"""Amounts followed end to end: the restocking fee on the units kept, nothing due on a return
that did not go ahead or owes nothing (closed, never overdue), the store credit the customer
was promised shown to the agent, currencies without cents refused rather than misstated."""
from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from rma_service import clock
from rma_service.extensions import db
from rma_service.models import Event, Order
from tests.conftest import NOW, order_body, return_body
from tests.e2e.admin_support import login, make_agent
from tests.web_helpers import lookup, review, text_of


def _inspected(api, items, receive=None, resolution="refund", order_number="1001"):
    """A return created through the API (approved if it waits for approval), received
    (``receive``: the units that arrived) and triaged restock: it ends ``inspected``."""
    resp = api.post("/returns", json=return_body(order_number, items=items, resolution=resolution))
    assert resp.status_code == 201, resp.get_json()
    number = resp.get_json()["rma_number"]
    if resp.get_json()["status"] == "requested":
        assert api.post(f"/returns/{number}/approve").status_code == 200
    body = {"items": receive} if receive is not None else None
    received = api.post(f"/returns/{number}/receive", json=body)
    assert received.status_code == 200, received.get_json()
    for item in received.get_json()["items"]:
        if item["received_quantity"]:
            t = api.post(f"/returns/{number}/items/{item['line_id']}/triage",
                         json={"disposition": "restock", "condition": "new"})
            assert t.status_code == 200, t.get_json()
    return number


def _set(app, **settings):
    app.config["RMA"].update(settings)


# --- the restocking fee follows the units kept ------------------------------------------------

def test_restocking_fee_follows_the_units_that_arrived(app, api, order):
    _set(app, RESTOCKING_FEE_RATE=Decimal("0.10"))
    number = _inspected(api, [{"line_id": "L1", "quantity": 2, "reason": "too_small"}],
                        receive=[{"line_id": "L1", "quantity": 1}])
    refund = api.get(f"/returns/{number}").get_json()["refund"]
    # 1 × 49.90 arrived − 5.90 shipping − 10 % of 49.90 (4.99) = 39.01; the code says 34.02
    assert refund["amount_due"] == "39.01"


def test_no_restocking_fee_for_an_item_that_never_arrived(app, api, order):
    _set(app, RESTOCKING_FEE_RATE=Decimal("0.10"))
    number = _inspected(api, [{"line_id": "L1", "quantity": 1, "reason": "too_small"},
                              {"line_id": "L2", "quantity": 1, "reason": "damaged"}],
                        receive=[{"line_id": "L1", "quantity": 0}, {"line_id": "L2", "quantity": 1}])
    refund = api.get(f"/returns/{number}").get_json()["refund"]
    # 9.50 of socks, shop's fault: no shipping, no restocking; the code says 4.51 (9.50 − 4.99)
    assert refund["amount_due"] == "9.50"


def test_no_restocking_fee_on_a_disputed_item_the_shop_refused(app, api, order):
    _set(app, RESTOCKING_FEE_RATE=Decimal("0.10"))
    resp = api.post("/returns", json=return_body(items=[{"line_id": "L1", "quantity": 1, "reason": "too_small"},
                                                        {"line_id": "L2", "quantity": 1, "reason": "defective"}]))
    number = resp.get_json()["rma_number"]
    api.post(f"/returns/{number}/receive")
    api.post(f"/returns/{number}/items/L2/triage", json={"disposition": "restock", "condition": "used"})
    disputed = api.post(f"/returns/{number}/items/L1/triage",
                        json={"disposition": "dispute", "condition": "damaged", "note": "worn"}).get_json()
    resolved = api.post(f"/disputes/{disputed['dispute']['id']}/resolve",
                        json={"outcome": "reject", "note": "The shirt was worn."})
    assert resolved.status_code == 200, resolved.get_json()
    refund = api.get(f"/returns/{number}").get_json()["refund"]
    # only the socks count (9.50, defective: shop pays shipping); the code says 4.51
    assert refund["amount_due"] == "9.50"


# --- currencies without cents ------------------------------------------------------------------

@pytest.mark.parametrize("currency, places", [("JPY", 0), ("KWD", 3)])
def test_an_order_in_a_currency_without_cents_is_refused_naming_it(app, api, currency, places):
    lines = [{"line_id": "L1", "sku": "CUP", "name": "Tea cup", "quantity": 2, "unit_price": "1005"}]
    resp = api.put("/orders/1001", json=order_body(currency=currency, lines=lines))
    assert resp.status_code == 422 and resp.get_json()["code"] == "validation_error"
    assert resp.get_json()["errors"]["currency"] == [
        f"Only currencies with two decimal places are supported; {currency} has {places}."]
    with app.app_context():
        assert db.session.scalar(select(Order)) is None


# --- a return that owes nothing ---------------------------------------------------------------

def test_cancelled_return_shows_nothing_due(api, order):
    number = api.post("/returns", json=return_body()).get_json()["rma_number"]
    cancelled = api.post(f"/returns/{number}/cancel")
    assert cancelled.get_json()["status"] == "cancelled"
    assert cancelled.get_json()["refund"]["amount_due"] == "0.00"


def test_nothing_owed_is_closed_by_the_policy_and_never_overdue(app, api, order):
    """The damaged socks were not damaged: the dispute is refused and nothing is due. The
    return is closed at once (no refund to record), so no queue, reminder or KPI calls it a
    late refund with an L242-4 surcharge."""
    resp = api.post("/returns", json=return_body(items=[{"line_id": "L2", "quantity": 1, "reason": "damaged"}]))
    number = resp.get_json()["rma_number"]
    api.post(f"/returns/{number}/receive")
    disputed = api.post(f"/returns/{number}/items/L2/triage",
                        json={"disposition": "dispute", "condition": "new", "note": "not damaged"}).get_json()
    api.post(f"/disputes/{disputed['dispute']['id']}/resolve", json={"outcome": "reject", "note": "Intact."})
    with clock.frozen(NOW + timedelta(days=20)):
        refund = api.get(f"/returns/{number}").get_json()["refund"]
        kpis = api.get("/kpis").get_json()
    assert refund["amount_due"] == "0.00"
    assert refund["overdue"] is False and refund["surcharge_rate"] == "0"
    assert kpis["refund"]["overdue"] == 0
    assert api.get(f"/returns/{number}").get_json()["status"] == "closed"
    with app.app_context():
        close = db.session.scalar(select(Event).where(Event.type == "close"))
        assert (close.actor, close.from_status, close.data) == ("policy", "inspected", {"reason": "nothing_due"})
    make_agent(app)
    agent = app.test_client()
    login(agent)
    timeline = text_of(agent.get(f"/admin/returns/{number}").get_data(as_text=True).split('id="timeline"')[1])
    assert "Closed automatically (policy): nothing is due." in timeline and "nothing_due" not in timeline


def test_a_refund_still_owed_is_not_closed_by_the_policy(api, order):
    number = _inspected(api, [{"line_id": "L1", "quantity": 1, "reason": "too_small"}])
    body = api.get(f"/returns/{number}").get_json()
    assert (body["status"], body["refund"]["amount_due"]) == ("inspected", "44.00")


# --- store credit: the value the customer was promised, shown to the agent ---------------------

def test_agent_sees_the_store_credit_value_the_customer_was_promised(app, api, client, order):
    assert lookup(client).status_code == 302
    promised = text_of(review(client, {"L1": (1, "too_small")}, resolution="store_credit").get_data(as_text=True))
    assert "Store credit for you €44.00" in promised
    number = _inspected(api, [{"line_id": "L1", "quantity": 1, "reason": "too_small"}], resolution="store_credit")
    make_agent(app)
    agent = app.test_client()
    login(agent)
    page = agent.get(f"/admin/returns/{number}").get_data(as_text=True)
    refund_box = text_of(re.search(r'<section class="panel refund.*?</section>', page, re.S).group(0))
    assert "44.00" in refund_box, refund_box


# --- a late refund may include the L242-4 surcharge ---------------------------------------------

def test_a_late_refund_is_recorded_with_its_surcharge_and_not_more(app, api, order):
    number = _inspected(api, [{"line_id": "L1", "quantity": 1, "reason": "too_small"}])   # 44.00 due
    with clock.frozen(NOW + timedelta(days=14 + 15)):          # 15 days late: + 5 % (L242-4)
        refund = api.get(f"/returns/{number}").get_json()["refund"]
        assert (refund["overdue"], refund["surcharge_rate"]) == (True, "0.05")
        make_agent(app)
        agent = app.test_client()
        login(agent)
        page = agent.get(f"/admin/returns/{number}").get_data(as_text=True)
        assert re.search(r'name="amount"[^>]*value="46.20"', page), "the form offers 44.00 + 2.20"
        assert "Owed now 46.20 EUR" in text_of(page)
        too_much = api.post(f"/returns/{number}/refund", json={"amount": "46.21"})
        assert too_much.status_code == 422 and too_much.get_json()["errors"]["amount"] == [
            "At most 44.00 EUR (+ 2.20 EUR L242-4 surcharge) is left to refund."]
        paid = api.post(f"/returns/{number}/refund", json={"amount": "46.20", "reference": "PSP-9"})
    assert paid.status_code == 200, paid.get_json()
    assert (paid.get_json()["status"], paid.get_json()["refund"]["amount_refunded"]) == ("refunded", "46.20")


def test_a_refund_on_time_is_capped_at_what_is_left(api, order):
    number = _inspected(api, [{"line_id": "L1", "quantity": 1, "reason": "too_small"}])
    resp = api.post(f"/returns/{number}/refund", json={"amount": "44.01"})
    assert resp.status_code == 422
    assert resp.get_json()["errors"]["amount"] == ["At most 44.00 EUR is left to refund."]
    assert api.get(f"/returns/{number}").get_json()["refund"]["amount_refunded"] == "0.00"


@pytest.mark.parametrize("locale, said", [
    ("en", "With the increase, we owe you €46.20 today."),
    ("fr", "Majoration comprise, nous vous devons 46,20 € aujourd’hui."),
])
def test_the_customer_sees_what_is_owed_with_the_late_surcharge(app, api, client, order, locale, said):
    from rma_service.domain.rma_number import parse
    from rma_service.services.tokens import status_token
    number = _inspected(api, [{"line_id": "L1", "quantity": 1, "reason": "too_small"}])   # 44.00 due
    with app.app_context():
        token = status_token(parse(number))
    on_time = text_of(client.get(f"/returns/status/{token}?lang={locale}").get_data(as_text=True))
    assert "46,20" not in on_time and "46.20" not in on_time
    with clock.frozen(NOW + timedelta(days=14 + 15)):          # 15 days late: + 5 %
        late = text_of(client.get(f"/returns/status/{token}?lang={locale}").get_data(as_text=True))
    assert said in late.replace("\u00a0", " ").replace("\u202f", " ")

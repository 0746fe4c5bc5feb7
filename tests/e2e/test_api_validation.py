"""The order a shop sends is checked field by field: what can't be a real value (an unknown
currency or country, money in exponent notation, a blank name, a delivery in the future) is a
422 ``validation_error`` naming the field, and nothing is written."""
from __future__ import annotations

from datetime import timedelta

import pytest

from rma_service.models import Order, OrderLine
from tests.conftest import NOW, count, order_body


def _line(**overrides):
    line = {"line_id": "L1", "sku": "SHIRT-M", "name": "Linen shirt", "quantity": 1, "unit_price": "49.90"}
    return [{**line, **overrides}]


@pytest.mark.parametrize("overrides, field", [
    ({"lines": _line(unit_price="1e2")}, "lines.0.unit_price"),
    ({"lines": _line(unit_price="+5")}, "lines.0.unit_price"),
    ({"lines": _line(unit_price="NaN")}, "lines.0.unit_price"),
    ({"lines": _line(unit_price="0x10")}, "lines.0.unit_price"),
    ({"lines": _line(name="   ")}, "lines.0.name"),
    ({"currency": "XYZ"}, "currency"),
    ({"customer": {"email": "ada@example.com", "name": " \t ", "locale": "en"}}, "customer.name"),
    ({"shipping_address": {"name": "Ada", "line1": "12 rue de la Paix", "postal_code": "75002", "city": "Paris",
                           "country": "XX"}}, "shipping_address.country"),
    ({"delivered_at": (NOW + timedelta(days=2)).isoformat()}, "delivered_at"),
    ({"placed_at": (NOW + timedelta(days=1)).isoformat(), "delivered_at": None}, "placed_at"),
])
def test_impossible_order_values_are_refused(app, api, frozen_now, overrides, field):
    resp = api.put("/orders/3001", json=order_body(**overrides))
    assert resp.status_code == 422, resp.get_json()
    body = resp.get_json()
    assert body["code"] == "validation_error" and resp.mimetype == "application/problem+json"
    assert field in body["errors"], body["errors"]
    assert count(app, Order) == 0 and count(app, OrderLine) == 0


def test_plausible_values_still_pass(app, api, frozen_now):
    """Lower-case country, money as an integer or with spaces around, a delivery a few
    minutes ahead of this clock (another server's clock)."""
    resp = api.put("/orders/3002", json=order_body(
        lines=_line(unit_price=" 49.9 ") + [{**_line()[0], "line_id": "L2", "unit_price": 12}],
        shipping_address={"name": "Ada", "line1": "12 rue de la Paix", "postal_code": "75002", "city": "Paris",
                          "country": "fr"},
        placed_at=(NOW - timedelta(days=3)).isoformat(), delivered_at=(NOW + timedelta(minutes=10)).isoformat()))
    assert resp.status_code == 201, resp.get_json()
    assert [line["unit_price"] for line in resp.get_json()["lines"]] == ["49.90", "12.00"]

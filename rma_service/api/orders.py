from __future__ import annotations

from .. import clock
from ..errors import NotFound
from ..services import orders as svc
from ..services.representation import order_payload
from . import blp
from .schemas import OrderIn, OrderOut


@blp.route("/orders/<string:order_number>", methods=["PUT"])
@blp.arguments(OrderIn)
@blp.response(200, OrderOut, description="The order was updated.")
@blp.alt_response(201, schema=OrderOut, description="The order was created.")
def put_order(data, order_number):
    """Create or replace an order (the shop pushes its orders here)."""
    if len(order_number) > 64:
        raise NotFound("Order numbers have at most 64 characters.")
    now = clock.now()
    order, created = svc.upsert_order(order_number, data, now)
    return order_payload(order, now), 201 if created else 200


@blp.route("/orders/<string:order_number>", methods=["GET"])
@blp.response(200, OrderOut)
def get_order(order_number):
    """An order with each line's returnable quantity and eligibility."""
    order = svc.find_order(order_number)
    if order is None:
        raise NotFound("No order with this number.")
    return order_payload(order, clock.now())

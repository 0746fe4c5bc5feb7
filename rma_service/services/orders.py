"""Orders pushed by the shop backend."""
from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Optional

from sqlalchemy import bindparam, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import joinedload
from sqlalchemy.orm.attributes import set_committed_value

from ..errors import ApiError
from ..extensions import db
from ..models import Order, OrderLine, unattached
from .dbapi import Prepared


_ORDERS, _LINES = Order.__table__, OrderLine.__table__
_READ = Prepared(select(_ORDERS, _LINES).join(_LINES, _LINES.c.order_id == _ORDERS.c.id, isouter=True)
                 .where(_ORDERS.c.order_number == bindparam("number")).order_by(_LINES.c.id))
# A row of _READ: the order's columns, then the line's (NULL for an order without lines).
_ORDER_KEYS, _LINE_KEYS = [c.key for c in _ORDERS.columns], [c.key for c in _LINES.columns]
_LINE_ID = len(_ORDER_KEYS) + _LINE_KEYS.index(_LINES.c.id.key)


def read_order(order_number: str) -> Optional[Order]:
    """The order with its lines for reading only (a return request, the customers' pages):
    one Core query into model objects that are not in the session (``unattached``). A small
    part of the CPU of an ORM load, on the busiest request; use ``find_order`` to change the
    order."""
    rows, _count = _READ.run(db.session.connection(), {"number": order_number})
    if not rows:
        return None
    n = len(_ORDER_KEYS)
    order = unattached(Order, dict(zip(_ORDER_KEYS, rows[0][:n])))
    lines = [unattached(OrderLine, dict(zip(_LINE_KEYS, row[n:]))) for row in rows if row[_LINE_ID] is not None]
    set_committed_value(order, "lines", lines)  # no backref events, nothing pending
    return order


# --- an order number as a customer types it ----------------------------------------------------

_SPACES = re.compile(r"\s+")


def _spellings(typed: str) -> list[str]:
    """What the customer may have meant, most literal first: the number as typed without
    the spaces around it, then without a leading "#" ("#1001" from a confirmation mail)."""
    number = (typed or "").strip()
    out = [number]
    if number.startswith("#"):
        out.append(number[1:].strip())
    return [n for n in dict.fromkeys(out) if n]


def order_number_key(typed: str) -> str:
    """One key for every spelling ``customer_order_number`` takes for the same order (case,
    spaces around or inside, a leading "#"): the per-order rate limit counts them together."""
    spellings = _spellings(typed)
    return _SPACES.sub("-", spellings[-1].lower()) if spellings else ""


def customer_order_number(typed: str) -> Optional[str]:
    """The number of the order a customer means, as stored, or None.

    Forgiven: spaces around it, a leading "#", letter case, and spaces where the number has
    hyphens ("DEMO 1017" for "DEMO-1017"). Never guessed: an order whose number is exactly
    what was typed wins; otherwise the number must match exactly one order whatever the case
    (two orders that differ only by case give None). Separators are never dropped:
    "DEMO1017" is not "DEMO-1017". The caller answers None like an unknown order.

    The exact match reads the unique index; the case-insensitive one compares
    ``lower(order_number)`` (an expression index on it keeps that fast on large tables).
    """
    spellings = _spellings(typed)
    if not spellings:
        return None
    column = Order.__table__.c.order_number
    exact = set(db.session.execute(select(column).where(column.in_(spellings))).scalars())
    for number in spellings:
        if number in exact:
            return number
    keys = {n.lower() for n in spellings} | {_SPACES.sub("-", n.lower()) for n in spellings}
    found = db.session.execute(select(column).where(func.lower(column).in_(sorted(keys))).limit(2)).scalars().all()
    return found[0] if len(found) == 1 else None


def find_order(order_number: str) -> Optional[Order]:
    """The order with its lines, in one query (every caller reads the lines)."""
    return db.session.scalars(select(Order).options(joinedload(Order.lines))
                              .where(Order.order_number == order_number)).unique().one_or_none()


def _apply(order: Order, data: dict[str, Any], now: datetime) -> None:
    customer, address = data["customer"], data["shipping_address"]
    order.customer_email = customer["email"]
    order.customer_name = customer["name"]
    order.locale = customer.get("locale") or "en"
    order.ship_name = address["name"]
    order.ship_line1 = address["line1"]
    order.ship_line2 = address.get("line2")
    order.ship_postal_code = address["postal_code"]
    order.ship_city = address["city"]
    order.ship_country = address["country"].upper()
    order.placed_at = data["placed_at"]
    order.delivered_at = data.get("delivered_at")
    order.currency = data["currency"].upper()
    order.updated_at = now

    existing = {line.line_id: line for line in order.lines}
    incoming = {line["line_id"] for line in data["lines"]}
    for line_id, line in existing.items():
        if line_id not in incoming:
            if line.reserved_quantity:
                raise ApiError(409, "conflict", f"Line {line_id} has returns and cannot be removed.")
            order.lines.remove(line)
    for spec in data["lines"]:
        line = existing.get(spec["line_id"])
        if line is None:
            line = OrderLine(line_id=spec["line_id"], reserved_quantity=0)
            order.lines.append(line)
        elif spec["quantity"] < line.reserved_quantity:
            raise ApiError(409, "conflict", f"Line {line.line_id} already has {line.reserved_quantity} "
                                            "units in returns; its quantity cannot go below that.")
        line.sku, line.name, line.quantity = spec["sku"], spec["name"], spec["quantity"]
        line.unit_price = spec["unit_price"]
        line.category = spec.get("category")
        line.returnable = spec.get("returnable")
    order.units = sum(line.quantity for line in order.lines)  # the KPIs' item return rate


def upsert_order(order_number: str, data: dict[str, Any], now: datetime) -> tuple[Order, bool]:
    """Create or replace an order; returns (order, created). Two concurrent creations of
    the same order resolve to one create and one update."""
    lines = [line["line_id"] for line in data["lines"]]
    if len(set(lines)) != len(lines):
        dupes = sorted({x for x in lines if lines.count(x) > 1})
        raise ApiError(422, "validation_error", "Each line_id may appear once.",
                       errors={"lines": [f"duplicate line_id: {', '.join(dupes)}"]})
    order = find_order(order_number)
    created = order is None
    if created:
        order = Order(order_number=order_number, created_at=now)
        _apply(order, data, now)
        db.session.add(order)
        try:
            db.session.commit()
            return order, True
        except IntegrityError:
            db.session.rollback()
            order = find_order(order_number)
            if order is None:
                raise
            created = False
    _apply(order, data, now)
    db.session.commit()
    return order, False

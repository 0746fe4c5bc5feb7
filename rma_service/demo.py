"""Demo data so that a newcomer sees a populated service at once (``flask rma demo-data``).

Idempotent: running it twice adds nothing the second time. Everything goes through the same
services as real traffic, so the audit trail and the outbox are real too.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Iterator

from sqlalchemy import select

from .extensions import db
from .models import Agent, ApiKey, Order, Return
from .services import apikeys, returns
from .services.agents import create_agent
from .services.orders import upsert_order

DEMO_PASSWORD = "demo-password"
CUSTOMERS = [("ada@example.com", "Ada Lovelace", "en"), ("marie@example.fr", "Marie Curie", "fr"),
             ("alan@example.com", "Alan Turing", "en"), ("simone@example.fr", "Simone Veil", "fr")]
PRODUCTS = [("SHIRT-M", "Linen shirt", "49.90", None), ("JEANS-32", "Selvedge jeans", "119.00", None),
            ("SOCKS-3", "Wool socks (3 pairs)", "19.50", None), ("GIFT-50", "Gift card", "50.00", "gift_card"),
            ("JACKET-L", "Rain jacket", "189.00", None), ("MUG", "Stoneware mug", "14.00", None)]


def _order_body(i: int, now: datetime) -> dict:
    email, name, locale = CUSTOMERS[i % len(CUSTOMERS)]
    delivered = now - timedelta(days=2 + (i * 3) % 40) if i % 7 else None
    lines = []
    for j in range(2 + i % 3):
        sku, pname, price, category = PRODUCTS[(i + j) % len(PRODUCTS)]
        lines.append({"line_id": f"L{j + 1}", "sku": sku, "name": pname, "quantity": 1 + (i + j) % 3,
                      "unit_price": Decimal(price), "category": category})
    return {"customer": {"email": email, "name": name, "locale": locale},
            "shipping_address": {"name": name, "line1": f"{10 + i} rue des Lilas", "postal_code": "75011",
                                 "city": "Paris", "country": "FR"},
            "placed_at": (delivered or now) - timedelta(days=4), "delivered_at": delivered,
            "currency": "EUR", "lines": lines}


def load_demo_data(now: datetime) -> Iterator[str]:
    if db.session.scalar(select(Order).where(Order.order_number == "DEMO-1001")):
        yield "Demo data is already loaded."
        return
    if not db.session.scalar(select(ApiKey).where(ApiKey.name == "demo")):
        record, key = apikeys.create_api_key("demo", now)
        yield f"API key 'demo': {key}"
    for email, name, role, disputes in [("admin@example.com", "Alex Admin", "admin", True),
                                        ("camille@example.com", "Camille Martin", "agent", True),
                                        ("sam@example.com", "Sam Lee", "agent", False)]:
        if not db.session.scalar(select(Agent).where(Agent.email == email)):
            create_agent(email, name, role, DEMO_PASSWORD, disputes, now)
            yield f"Agent {email} / {DEMO_PASSWORD} ({role})"
    for i in range(24):
        upsert_order(f"DEMO-{1001 + i}", _order_body(i, now), now)
    yield "24 orders DEMO-1001 … DEMO-1024"
    made = 0
    reasons = ["too_small", "damaged", "changed_mind", "defective", "too_large", "wrong_item"]
    planned = []
    for i in range(24):
        order = db.session.scalar(select(Order).where(Order.order_number == f"DEMO-{1001 + i}"))
        line = order.lines[0]
        if order.delivered_at is None or (line.category or "") == "gift_card" or i % 5 == 4:
            continue
        created = min(now - timedelta(hours=1), order.delivered_at + timedelta(days=1 + i % 5, hours=i))
        planned.append((created, i, order, line))
    # Created in the order of their dates, as real returns are: lists show the newest first.
    for created, i, order, line in sorted(planned, key=lambda p: (p[0], p[1])):
        ret = returns.create_return({"order_number": order.order_number, "email": order.customer_email,
                                     "items": [{"line_id": line.line_id, "quantity": 1,
                                                "reason": reasons[i % len(reasons)]}],
                                     "resolution": "refund" if i % 6 else "exchange"}, "demo", created)
        made += 1
        number = ret.rma_code
        step = i % 4
        if step >= 1 and ret.status == "authorized":
            returns.receive(number, None, "demo", min(now, created + timedelta(days=3)))
        if step >= 2:
            returns.triage(number, line.line_id, "restock" if i % 3 else "refurbish", "like_new", None, "demo",
                           min(now, created + timedelta(days=4)))
        if step >= 3:
            ret = db.session.scalar(select(Return).where(Return.rma_code == number))
            if ret.resolution == "refund":
                from .services.representation import return_amount_due
                returns.record_refund(number, return_amount_due(ret), f"DEMO-PSP-{i}", "demo",
                                      min(now, created + timedelta(days=6)))
            else:
                returns.close(number, "Exchange shipped", "demo", min(now, created + timedelta(days=6)))
    yield f"{made} returns in various statuses"

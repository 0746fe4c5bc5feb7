"""The contract's JSON shapes of orders and returns, shared by the API and the webhooks."""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Optional

from ..clock import rfc3339
from ..domain import deadlines
from ..domain.policy import SHOP_FAULT_REASONS, amount_due, line_eligibility, LineFacts, money
from ..domain.status import RELEASES_UNITS
from ..domain.rma_number import format_number
from ..models import Label, Order, Return
from . import policy, settings
from .tokens import status_token


def _base() -> str:
    return settings()["BASE_URL"].rstrip("/")


def current_label(ret: Return) -> Optional[Label]:
    live = [label for label in ret.labels if label.status not in ("voided",)]
    return live[-1] if live else (ret.labels[-1] if ret.labels else None)


def items_value(ret: Return) -> Decimal:
    """Value of the items the refund is computed on: what arrived once the parcel is
    received, what was announced before; a resolved dispute sets it explicitly."""
    if ret.adjusted_amount is not None:
        return ret.adjusted_amount
    received = ret.received_at is not None
    return money(sum((i.unit_price * (i.received_quantity if received else i.quantity) for i in ret.items),
                     Decimal("0")))


def customer_reason_value(ret: Return) -> Decimal:
    """The value the restocking fee is taken on: items returned for the customer's own reasons,
    announced units before the parcel is counted, the units that arrived after; a disputed
    item counts at the share of its value the disputes counted (all of it while open, none
    once refused)."""
    received = ret.received_at is not None
    value = Decimal("0")
    disputed = Decimal("0")
    for item in ret.items:
        if item.reason in SHOP_FAULT_REASONS:
            continue
        if received and item.disposition == "dispute":
            disputed += item.unit_price * item.received_quantity
        else:
            value += item.unit_price * (item.received_quantity if received else item.quantity)
    if disputed:
        at_stake = sum((d.amount_at_stake or Decimal("0") for d in ret.disputes), Decimal("0"))
        counted = sum(((d.resolved_amount or Decimal("0")) if d.status == "resolved" else (d.amount_at_stake or Decimal("0"))
                       for d in ret.disputes), Decimal("0"))
        value += disputed * counted / at_stake if at_stake else disputed
    return money(value)


def return_amount_due(ret: Return) -> Decimal:
    """What the shop owes: nothing for a return that did not go ahead (rejected, cancelled,
    expired), the items' value less the fees for a refund, nothing for an exchange or credit."""
    if ret.status in RELEASES_UNITS:
        return Decimal("0.00")
    return amount_due(items_value(ret), ret.shipping_fee, ret.restocking_fee, ret.resolution)


def left_and_surcharge(ret: Return, refund: dict[str, Any]) -> tuple[Decimal, Decimal]:
    """What is left to refund, and the L242-4 surcharge the law adds to it while the refund is
    late (``refund`` is the return's ``refund_block``)."""
    left = max(Decimal("0.00"), return_amount_due(ret) - money(ret.amount_refunded or 0))
    late = refund["overdue"] and left > 0
    return left, money(left * Decimal(refund["surcharge_rate"])) if late else Decimal("0.00")


def return_value_due(ret: Return) -> Decimal:
    """The value the customer gets back in money, goods or credit: the amount due for a
    refund; the items' value for an exchange (no fees); less the fees for store credit."""
    if ret.status in RELEASES_UNITS:
        return Decimal("0.00")
    if ret.resolution == "refund":
        return return_amount_due(ret)
    value = items_value(ret)
    if ret.resolution == "store_credit":
        value = value - money(ret.shipping_fee or 0) - money(ret.restocking_fee or 0)
    return max(Decimal("0.00"), money(value))


def refund_block(ret: Return, now: datetime) -> dict[str, Any]:
    s = settings()
    st = deadlines.refund_status(ret.created_at, ret.first_scan_at, ret.received_at, ret.refunded_at, now,
                                 days=int(s["REFUND_DEADLINE_DAYS"]),
                                 legal_interest_rate=Decimal(s["LEGAL_INTEREST_RATE"]))
    due = return_amount_due(ret)
    open_refund = ret.resolution == "refund" and ret.status not in ("rejected", "cancelled", "expired", "closed")
    return {
        "currency": ret.currency,
        "amount_due": str(due),
        "amount_refunded": str(money(ret.amount_refunded)),
        "due_at": rfc3339(st.due_at),
        "refunded_at": rfc3339(ret.refunded_at),
        "overdue": bool(open_refund and st.overdue),
        "days_late": st.days_late if open_refund else 0,
        "surcharge_rate": str(st.surcharge_rate if open_refund else Decimal("0")),
    }


def label_block(ret: Return) -> Optional[dict[str, Any]]:
    label = current_label(ret)
    if label is None:
        return None
    number = format_number(ret.rma_code)
    return {
        "carrier": label.carrier,
        "tracking_number": label.tracking_number,
        "status": label.status,
        "expires_at": rfc3339(label.expires_at),
        # Only a label the customer may print has a URL (GET …/label.pdf answers 404 otherwise).
        "url": f"{_base()}/api/v1/returns/{number}/label.pdf" if label.status == "issued" and label.pdf else None,
    }


def dispute_block(ret: Return) -> Optional[dict[str, Any]]:
    if not ret.disputes:
        return None
    d = ret.disputes[-1]
    return {"id": d.id, "status": d.status,
            "handler": {"name": d.handler.name, "email": d.handler.email} if d.handler else None}


def return_payload(ret: Return, now: datetime) -> dict[str, Any]:
    number = format_number(ret.rma_code)
    base = _base()
    return {
        "rma_number": number,
        "status": ret.status,
        "order_number": ret.order.order_number,
        "resolution": ret.resolution,
        "created_at": rfc3339(ret.created_at),
        "updated_at": rfc3339(ret.updated_at),
        "customer": {"email": ret.customer_email, "name": ret.customer_name},
        "items": [{
            "line_id": i.line_id, "sku": i.sku, "name": i.name, "quantity": i.quantity,
            "reason": i.reason, "comment": i.comment, "unit_price": str(i.unit_price),
            "received_quantity": i.received_quantity, "condition": i.condition,
            "disposition": i.disposition,
        } for i in ret.items],
        "label": label_block(ret),
        "refund": refund_block(ret, now),
        "dispute": dispute_block(ret),
        "links": {
            "self": f"{base}/api/v1/returns/{number}",
            "label": f"{base}/api/v1/returns/{number}/label.pdf",
            "status_page": f"{base}/returns/status/{status_token(ret.rma_code)}",
        },
    }


def order_payload(order: Order, now: datetime) -> dict[str, Any]:
    pol = policy()
    lines = []
    for line in order.lines:
        e = line_eligibility(LineFacts(line.quantity, line.reserved_quantity, line.category, line.returnable),
                             order.delivered_at, now, pol)
        lines.append({
            "line_id": line.line_id, "sku": line.sku, "name": line.name, "quantity": line.quantity,
            "unit_price": str(line.unit_price), "category": line.category, "returnable": line.returnable,
            "returnable_quantity": e.returnable_quantity,
            "eligibility": {"eligible": e.eligible, "reason_code": e.reason_code},
        })
    return {
        "order_number": order.order_number,
        "customer": {"email": order.customer_email, "name": order.customer_name, "locale": order.locale},
        "shipping_address": {"name": order.ship_name, "line1": order.ship_line1, "line2": order.ship_line2,
                             "postal_code": order.ship_postal_code, "city": order.ship_city,
                             "country": order.ship_country},
        "placed_at": rfc3339(order.placed_at),
        "delivered_at": rfc3339(order.delivered_at),
        "currency": order.currency,
        "lines": lines,
        "created_at": rfc3339(order.created_at),
        "updated_at": rfc3339(order.updated_at),
    }


def dispute_message_payload(message) -> dict[str, Any]:
    return {"id": message.id, "author": message.author, "body": message.body,
            "created_at": rfc3339(message.created_at)}


def dispute_payload(dispute, *, messages: bool = True) -> dict[str, Any]:
    """The contract's dispute (``GET /api/v1/disputes/{id}``); webhooks send it without the
    messages."""
    ret = dispute.ret
    handler = dispute.handler
    out: dict[str, Any] = {
        "id": dispute.id,
        "status": dispute.status,
        "rma_number": format_number(ret.rma_code),
        "handler": {"name": handler.name, "email": handler.email} if handler else None,
        "currency": ret.currency,
        "amount_at_stake": str(money(dispute.amount_at_stake or 0)),
        "outcome": dispute.outcome,
        "resolved_amount": str(money(dispute.resolved_amount)) if dispute.resolved_amount is not None else None,
        "note": dispute.resolution_note,
        "opened_at": rfc3339(dispute.opened_at),
        "assigned_at": rfc3339(dispute.assigned_at),
        "resolved_at": rfc3339(dispute.resolved_at),
        "last_customer_message_at": rfc3339(dispute.last_customer_message_at),
        "last_handler_reply_at": rfc3339(dispute.last_handler_reply_at),
    }
    if messages:
        out["messages"] = [dispute_message_payload(m) for m in dispute.messages]
    return out

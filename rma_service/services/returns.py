"""Return requests and every step of their life. Each public function is one transaction
and the only way a return's status changes (through ``audit.transition``)."""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Optional

from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.attributes import set_committed_value

from ..domain import rma_number
from ..domain import status as sm
from ..domain.policy import (ItemProblem, LineFacts, RequestedItem, check_items, line_eligibility,
                             money, quote, restocking_fee_on)
from ..errors import ApiError, NotFound, validation_error
from ..extensions import db
from ..models import REMINDER_RECHECK, Order, OrderLine, Photo, Return, ReturnItem, unattached
from . import newrows, notifications, policy
from .audit import emit, record, transition
from .dbapi import Prepared
from .representation import (customer_reason_value, left_and_surcharge, refund_block, return_amount_due,
                             return_payload)
from .orders import read_order

NOT_FOUND_ORDER = "No order matches this order number and email."


def get_return(number: str, *, for_update: bool = False) -> Return:
    """The return for a number as typed (any case, hyphens optional, O/I/L read as digits).
    A number with a wrong check symbol is a 404 without a database query."""
    code = rma_number.parse(number)
    if code is None:
        raise NotFound("No return with this RMA number.")
    query = select(Return).where(Return.rma_code == code)
    if for_update:
        query = query.with_for_update()
    ret = db.session.scalar(query)
    if ret is None:
        raise NotFound("No return with this RMA number.")
    return ret


def order_for_customer(order_number: str, email: str) -> Order:
    """The order, if the email matches; the same 404 otherwise (no enumeration)."""
    order = read_order(order_number)
    if order is None or order.customer_email.strip().lower() != (email or "").strip().lower():
        raise NotFound(NOT_FOUND_ORDER)
    return order


_LINES = OrderLine.__table__  # Core: no ORM bookkeeping for a counter
# Built once, compiled once, run on the driver's cursor (services/dbapi.py).
_RESERVE = Prepared(update(_LINES)
                    .where(_LINES.c.id == bindparam("line"),
                           _LINES.c.reserved_quantity + bindparam("units") <= _LINES.c.quantity)
                    .values(reserved_quantity=_LINES.c.reserved_quantity + bindparam("units")))


def _reserve(line: OrderLine, quantity: int) -> bool:
    """Take ``quantity`` units of a line for a return with one atomic conditional UPDATE:
    racing requests can never hold more units than were ordered."""
    return _RESERVE.run(db.session.connection(), {"line": line.id, "units": quantity})[1] == 1


def release_units(ret: Return, quantities: Optional[dict[int, int]] = None) -> None:
    """Give units back to their order lines (a return rejected, cancelled or expired, or
    units announced but not received)."""
    for item in ret.items:
        qty = item.quantity if quantities is None else quantities.get(item.id, 0)
        if qty > 0:
            db.session.execute(
                update(OrderLine).where(OrderLine.id == item.order_line_id)
                .values(reserved_quantity=OrderLine.reserved_quantity - qty)
                .execution_options(synchronize_session=False))


def create_return(data: dict[str, Any], actor: str, now: datetime, *, attempts: int = 5) -> Return:
    """Create a return (and authorize it when the policy allows) in one transaction.

    The RMA number is drawn at random; the unique index is the arbiter. A collision (about
    one in 34 billion per existing return) rolls the whole transaction back and draws again,
    so the common path pays for no savepoint."""
    for attempt in range(attempts):
        try:
            return _create_return(data, actor, now)
        except IntegrityError as exc:
            db.session.rollback()
            if "rma_code" not in str(exc.orig) or attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def _create_return(data: dict[str, Any], actor: str, now: datetime) -> Return:
    pol = policy()
    order = order_for_customer(data["order_number"], data["email"])
    resolution = data.get("resolution") or "refund"
    if resolution not in pol.resolutions:
        raise validation_error({"resolution": [f"This shop offers: {', '.join(pol.resolutions)}."]})
    lines = {line.line_id: line for line in order.lines}
    errors: dict[str, list[str]] = {}
    for i, item in enumerate(data["items"]):
        if item["line_id"] not in lines:
            errors[f"items.{i}.line_id"] = ["No such line on this order."]
        if item["reason"] == "other" and not (item.get("comment") or "").strip():
            errors[f"items.{i}.comment"] = ["A comment is required when the reason is 'other'."]
    if errors:
        raise validation_error(errors)

    facts = {}
    for line_id, line in lines.items():
        f = LineFacts(line.quantity, line.reserved_quantity, line.category, line.returnable)
        facts[line_id] = (f, line_eligibility(f, order.delivered_at, now, pol))
    requested = [RequestedItem(it["line_id"], it["quantity"], it["reason"], lines[it["line_id"]].unit_price,
                               it.get("comment")) for it in data["items"]]
    check_items(requested, facts)

    q = quote(requested, resolution, pol)
    # The new rows are built as model objects (payloads, mail and label code read them) but
    # written by newrows.write (one statement on PostgreSQL), not by the unit of work; the
    # Return handed back is not in the session.
    ret = unattached(Return, {
        "status": "requested", "order_id": order.id, "order": order, "resolution": resolution,
        "customer_email": order.customer_email, "customer_name": order.customer_name,
        "locale": data.get("locale") or order.locale, "currency": order.currency, "created_at": now,
        "updated_at": now, "shipping_fee": q.shipping_fee, "restocking_fee": q.restocking_fee,
        "restocking_fee_rate": pol.restocking_fee_rate, "amount_refunded": Decimal("0"),
        "rma_code": rma_number.generate(),
        # What the attribute listener of models.py would have set for a status and a creation time.
        "refund_reminder_at": REMINDER_RECHECK, "label_reminder_at": REMINDER_RECHECK})
    items = []
    for it, spec in zip(requested, data["items"]):
        line = lines[it.line_id]
        # Every value the payloads show is set here: column defaults only exist once written.
        item = unattached(ReturnItem, {
            "ret": ret, "order_line_id": line.id, "line_id": line.line_id, "sku": line.sku, "name": line.name,
            "quantity": it.quantity, "reason": it.reason, "comment": it.comment, "unit_price": line.unit_price,
            "received_quantity": 0, "disposition": "pending", "created_at": now})
        # Photos from the customers' page, already re-encoded (services/photos.py).
        set_committed_value(item, "photos", [unattached(Photo, {"item": item, "content_type": ctype, "data": blob,
                                                                "created_at": now})
                                             for ctype, blob in spec.get("photos") or ()])
        items.append(item)
    for key, collection in (("items", items), ("labels", []), ("disputes", [])):
        set_committed_value(ret, key, collection)  # collections that accept appends (labels.request_label)
    with newrows.staging() as staged:
        record(ret, "create", actor, now, to_status="requested",
               data={"quote": {"items_value": str(q.items_value), "shipping_fee": str(q.shipping_fee),
                               "restocking_fee": str(q.restocking_fee), "amount_due": str(q.amount_due)},
                     # the customers' form: the submission's key, so that a double click makes one return
                     **({"submission": data["submission"]} if data.get("submission") else {})})
        event = emit("return.created", return_payload(ret, now), now, ret=ret)
        if not q.needs_approval:
            # Before the insert: the return is written once, already authorized.
            event = transition(ret, "approve", "policy", now, data={"automatic": True},
                               effects=lambda: _after_authorized(ret, now))
        # The last event's payload is the new return as it is written: also the customer's
        # confirmation mail and the API's answer (``ret.payload``, not a column). Nobody
        # changes it afterwards.
        ret.payload = event.payload
        notifications.notify_return_created(ret, now, ret.payload)
    # The first write of the transaction comes last, right before the rows: the units stay
    # locked (a row lock on PostgreSQL, the whole database on SQLite) only for the reservation,
    # the insert and the commit, not while payloads and mail are built. Another request for
    # the same line (or, on SQLite, any other write) waits that much less.
    _reserve_units(requested, lines)
    newrows.write(ret, staged)
    db.session.commit()
    return ret


def _reserve_units(requested: list[RequestedItem], lines: dict[str, OrderLine]) -> None:
    """Reserve the units of every line, in a fixed order (line id) so that concurrent
    requests cannot deadlock; a line without enough units left rolls back the transaction and
    is a ``quantity_exceeded`` naming the items that asked for it."""
    wanted: dict[int, int] = {}
    for it in requested:
        wanted[lines[it.line_id].id] = wanted.get(lines[it.line_id].id, 0) + it.quantity
    by_id = {line.id: line for line in lines.values()}
    for line_id in sorted(wanted):
        if not _reserve(by_id[line_id], wanted[line_id]):
            db.session.rollback()
            raise ItemProblem("quantity_exceeded", "More units requested than are left to return.",
                              {i: {"line_id": it.line_id} for i, it in enumerate(requested)
                               if lines[it.line_id].id == line_id})


def _after_authorized(ret: Return, now: datetime) -> None:
    """Hook for what follows an authorization (the label request)."""
    from . import labels
    labels.request_label(ret, now)


def approve(number: str, actor: str, now: datetime) -> Return:
    ret = get_return(number, for_update=True)
    transition(ret, "approve", actor, now, effects=lambda: _after_authorized(ret, now))
    db.session.commit()
    return ret


def reject(number: str, reason: str, actor: str, now: datetime) -> Return:
    ret = get_return(number, for_update=True)
    transition(ret, "reject", actor, now, data={"reason": reason})
    ret.reject_reason = reason
    db.session.commit()
    return ret


def cancel(number: str, actor: str, now: datetime) -> Return:
    ret = get_return(number, for_update=True)
    from . import labels
    transition(ret, "cancel", actor, now, effects=lambda: labels.void_current(ret, now, actor))
    db.session.commit()
    return ret


def receive(number: str, items: Optional[list[dict]], actor: str, now: datetime) -> Return:
    ret = get_return(number, for_update=True)
    if not sm.can(ret.status, "receive"):
        raise sm.InvalidTransition(ret.status, "receive")
    by_line = {item.line_id: item for item in ret.items}
    if items is None:
        counts = {item.line_id: item.quantity for item in ret.items}
    else:
        counts, errors = {}, {}
        for i, spec in enumerate(items):
            item = by_line.get(spec["line_id"])
            if item is None:
                errors[f"items.{i}.line_id"] = ["This line is not part of the return."]
            elif spec["line_id"] in counts:
                errors[f"items.{i}.line_id"] = ["Each line may appear once."]
            elif spec["quantity"] > item.quantity:
                errors[f"items.{i}.quantity"] = [f"At most {item.quantity} announced for this line."]
            else:
                counts[spec["line_id"]] = spec["quantity"]
        if errors:
            raise validation_error(errors)
        if not any(counts.values()):
            raise validation_error({"items": ["Receive at least one unit."]})
    for line_id, item in by_line.items():
        item.received_quantity = counts.get(line_id, 0)
    # The receiving station notes each item's condition on arrival (triage may revise it).
    for spec in items or []:
        if spec.get("condition") and spec["line_id"] in by_line:
            by_line[spec["line_id"]].condition = spec["condition"]
    # Units announced but not in the parcel go back to the order: they can be returned later
    # (and the restocking fee is taken on what arrived, not on what was announced).
    release_units(ret, {item.id: item.quantity - item.received_quantity for item in ret.items})
    transition(ret, "receive", actor, now, data={"items": [{"line_id": k, "quantity": v} for k, v in counts.items()]},
               effects=lambda: recount_restocking_fee(ret))
    db.session.commit()
    return ret


def triage(number: str, line_id: str, disposition: str, condition: str, note: Optional[str],
           actor: str, now: datetime) -> Return:
    ret = get_return(number, for_update=True)
    if ret.status not in ("received", "disputed"):
        raise sm.InvalidTransition(ret.status, "triage")
    item = next((i for i in ret.items if i.line_id == line_id), None)
    if item is None:
        raise NotFound("This line is not part of the return.")
    if item.received_quantity == 0:
        raise ApiError(409, "conflict", "Nothing of this line was received; there is nothing to triage.")
    if item.disposition != "pending":
        raise ApiError(409, "conflict", f"This item was already triaged ({item.disposition}).")
    item.disposition, item.condition, item.triage_note, item.triaged_at = disposition, condition, note, now
    if disposition == "refurbish":
        item.refurbish_status = "pending"
    ret.updated_at = now
    record(ret, "triage", actor, now, data={"line_id": line_id, "disposition": disposition,
                                            "condition": condition, "note": note})
    item_data = {"rma_number": rma_number.format_number(ret.rma_code), "line_id": item.line_id, "sku": item.sku,
                 "quantity": item.received_quantity, "condition": condition, "disposition": disposition}
    emit("return.item_triaged", item_data, now, ret.id)
    if disposition == "restock":
        emit("item.restocked", item_data, now, ret.id)
    if disposition == "dispute":
        from . import disputes
        disputes.open_for_item(ret, item, actor, now)
    _advance_after_triage(ret, actor, now)
    db.session.commit()
    return ret


def _advance_after_triage(ret: Return, actor: str, now: datetime) -> None:
    pending = [i for i in ret.items if i.received_quantity and i.disposition == "pending"]
    open_dispute = any(d.status == "open" for d in ret.disputes)
    if ret.status == "received" and open_dispute:
        transition(ret, "dispute", actor, now)
    elif not pending and not open_dispute:
        transition(ret, "inspect" if ret.status == "received" else "resolve", actor, now)
        close_if_nothing_due(ret, now)


def recount_restocking_fee(ret: Return) -> None:
    """The restocking fee on the units kept, once the parcel is counted or a dispute decided,
    at the rate of the policy the return was made under (a return made before migration 0007
    has none and keeps its quoted fee)."""
    if ret.restocking_fee_rate is not None:
        ret.restocking_fee = restocking_fee_on(customer_reason_value(ret), ret.restocking_fee_rate)


def close_if_nothing_due(ret: Return, now: datetime) -> None:
    """A refund return checked and owing nothing (the fees take the whole value, the disputed
    items were refused) is closed by the policy: no refund to record, so none can be late, no
    reminder, no surcharge, no place in the refund queues. Exchanges and credit wait for the
    agent who sends or issues them."""
    if (ret.status == "inspected" and ret.resolution == "refund"
            and return_amount_due(ret) - money(ret.amount_refunded or 0) <= 0):
        transition(ret, "close", "policy", now, data={"reason": "nothing_due"})


def record_refund(number: str, amount: Decimal, reference: Optional[str], actor: str, now: datetime) -> Return:
    ret = get_return(number, for_update=True)
    if not sm.can(ret.status, "refund"):
        raise sm.InvalidTransition(ret.status, "refund")
    amount = money(amount)
    due = return_amount_due(ret)
    # A late refund owes the L242-4 surcharge on what is left: the shop may record it with it.
    left, surcharge = left_and_surcharge(ret, refund_block(ret, now))
    if amount > left + surcharge:
        most = f"{left} {ret.currency}" + (f" (+ {surcharge} {ret.currency} L242-4 surcharge)" if surcharge else "")
        raise validation_error({"amount": [f"At most {most} is left to refund."]},
                               "The amount is more than is left to refund.")
    ret.amount_refunded = money(ret.amount_refunded) + amount
    ret.refund_reference = reference or ret.refund_reference
    data = {"amount": str(amount), "reference": reference, "amount_refunded": str(ret.amount_refunded),
            "amount_due": str(due)}
    if ret.amount_refunded >= due:
        transition(ret, "refund", actor, now, data=data)
    else:
        ret.updated_at = now
        record(ret, "refund_partial", actor, now, data=data)
    db.session.commit()
    return ret


def close(number: str, note: Optional[str], actor: str, now: datetime) -> Return:
    ret = get_return(number, for_update=True)
    if not sm.can(ret.status, "close"):
        raise sm.InvalidTransition(ret.status, "close")
    left = return_amount_due(ret) - money(ret.amount_refunded)
    if left > 0:
        raise ApiError(409, "conflict", f"{left} {ret.currency} is still due: record the refund instead of closing.")
    transition(ret, "close", actor, now, data={"note": note})
    db.session.commit()
    return ret

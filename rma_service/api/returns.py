from __future__ import annotations

import base64
import binascii

from flask import Response, g, url_for
from sqlalchemy import func, select

from .. import clock
from ..domain.rma_number import format_number
from ..errors import ApiError, NotFound
from ..extensions import db
from ..models import Event, Return
from ..services import returns as svc
from ..services.representation import current_label, return_payload
from . import blp
from .schemas import (CloseIn, EventList, ReceiveIn, RefundIn, RejectIn, ReturnIn, ReturnListQuery,
                      ReturnOut, ReturnPage, TriageIn)


def _created(ret: Return):
    number = format_number(ret.rma_code)
    return return_payload(ret, clock.now()), 201, {"Location": url_for("api.get_return", rma_number=number)}


@blp.route("/returns", methods=["POST"])
@blp.arguments(ReturnIn)
@blp.response(201, ReturnOut)
def create_return(data):
    """Request a return for lines of an order (the order's email must match)."""
    return _created(svc.create_return(data, g.actor, clock.now()))


def _encode_cursor(row_id: int) -> str:
    return base64.urlsafe_b64encode(f"r{row_id}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not raw.startswith("r"):
            raise ValueError
        return int(raw[1:])
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ApiError(422, "validation_error", "The cursor is not one this API gave out.",
                       errors={"cursor": ["Invalid cursor."]}) from None


@blp.route("/returns", methods=["GET"])
@blp.arguments(ReturnListQuery, location="query")
@blp.response(200, ReturnPage)
def list_returns(args):
    """Returns, newest first, with keyset pagination (a cursor stays valid as rows are added)."""
    from ..models import Order
    query = select(Return)
    if "status" in args:
        query = query.where(Return.status == args["status"])
    if "order_number" in args:
        query = query.join(Order, Order.id == Return.order_id).where(Order.order_number == args["order_number"])
    if "email" in args:
        query = query.where(func.lower(Return.customer_email) == args["email"].strip().lower())
    if "created_from" in args:
        query = query.where(Return.created_at >= args["created_from"])
    if "created_to" in args:
        query = query.where(Return.created_at < args["created_to"])
    if "cursor" in args:
        query = query.where(Return.id < _decode_cursor(args["cursor"]))
    limit = args["limit"]
    rows = db.session.scalars(query.order_by(Return.id.desc()).limit(limit + 1)).all()
    now = clock.now()
    page = rows[:limit]
    return {"items": [return_payload(r, now) for r in page],
            "next_cursor": _encode_cursor(page[-1].id) if len(rows) > limit else None}


@blp.route("/returns/<string:rma_number>", methods=["GET"])
@blp.response(200, ReturnOut)
def get_return(rma_number):
    """One return. The number is read case-insensitively, with or without hyphens."""
    return return_payload(svc.get_return(rma_number), clock.now())


@blp.route("/returns/<string:rma_number>/approve", methods=["POST"])
@blp.response(200, ReturnOut)
def approve(rma_number):
    """requested → authorized."""
    return return_payload(svc.approve(rma_number, g.actor, clock.now()), clock.now())


@blp.route("/returns/<string:rma_number>/reject", methods=["POST"])
@blp.arguments(RejectIn)
@blp.response(200, ReturnOut)
def reject(data, rma_number):
    """requested → rejected, with the reason the customer reads."""
    return return_payload(svc.reject(rma_number, data["reason"], g.actor, clock.now()), clock.now())


@blp.route("/returns/<string:rma_number>/cancel", methods=["POST"])
@blp.response(200, ReturnOut)
def cancel(rma_number):
    """requested or authorized → cancelled; the label is voided."""
    return return_payload(svc.cancel(rma_number, g.actor, clock.now()), clock.now())


@blp.route("/returns/<string:rma_number>/receive", methods=["POST"])
@blp.arguments(ReceiveIn)
@blp.response(200, ReturnOut)
def receive(data, rma_number):
    """The parcel arrived: record the units received (absent: everything announced)."""
    return return_payload(svc.receive(rma_number, data.get("items"), g.actor, clock.now()), clock.now())


@blp.route("/returns/<string:rma_number>/items/<string:line_id>/triage", methods=["POST"])
@blp.arguments(TriageIn)
@blp.response(200, ReturnOut)
def triage(data, rma_number, line_id):
    """Sort a received item into restock, refurbish or dispute."""
    ret = svc.triage(rma_number, line_id, data["disposition"], data["condition"], data.get("note"),
                     g.actor, clock.now())
    return return_payload(ret, clock.now())


@blp.route("/returns/<string:rma_number>/refund", methods=["POST"])
@blp.arguments(RefundIn)
@blp.response(200, ReturnOut)
def refund(data, rma_number):
    """Record a refund the shop made (full or partial)."""
    ret = svc.record_refund(rma_number, data["amount"], data.get("reference"), g.actor, clock.now())
    return return_payload(ret, clock.now())


@blp.route("/returns/<string:rma_number>/close", methods=["POST"])
@blp.arguments(CloseIn)
@blp.response(200, ReturnOut)
def close(data, rma_number):
    """End an inspected return with nothing left to refund."""
    return return_payload(svc.close(rma_number, data.get("note"), g.actor, clock.now()), clock.now())


@blp.route("/returns/<string:rma_number>/label.pdf", methods=["GET"])
@blp.response(200, description="The label as PDF.", content_type="application/pdf")
def label_pdf(rma_number):
    """The prepaid label; 404 before one exists."""
    ret = svc.get_return(rma_number)
    label = current_label(ret)
    if label is None or not label.pdf:
        raise NotFound("This return has no label yet.")
    return Response(label.pdf, mimetype="application/pdf", headers={
        "Content-Disposition": f'inline; filename="{format_number(ret.rma_code)}.pdf"',
        "Cache-Control": "private, max-age=300"})


@blp.route("/returns/<string:rma_number>/events", methods=["GET"])
@blp.response(200, EventList)
def events(rma_number):
    """The audit trail, oldest first."""
    ret = svc.get_return(rma_number)
    rows = db.session.scalars(select(Event).where(Event.return_id == ret.id).order_by(Event.id)).all()
    return {"items": [{"type": e.type, "at": clock.rfc3339(e.at), "actor": e.actor,
                       "data": {**({"from": e.from_status, "to": e.to_status} if e.to_status else {}), **(e.data or {})}}
                      for e in rows]}

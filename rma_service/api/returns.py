from __future__ import annotations

from flask import Response, current_app, g, url_for
from sqlalchemy import func, select

from .. import clock
from ..domain.rma_number import format_number
from ..extensions import db
from ..models import Event, Return
from ..services import cursors
from ..services import labels as labels_svc
from ..services import returns as svc
from ..services.representation import return_payload
from . import blp
from .schemas import (CloseIn, EventList, ReceiveIn, RefundIn, RejectIn, ReturnIn, ReturnListQuery,
                      ReturnOut, ReturnPage, TriageIn)


def _out(ret: Return, status: int = 200, headers: dict | None = None) -> Response:
    """The Return as JSON. The payload already has the contract's shape (it is also the
    webhooks' data), so it is written directly rather than dumped again through ReturnOut,
    which stays the documented schema. A new return carries its payload already
    (``ret.payload``, set by services.returns.create_return)."""
    payload = getattr(ret, "payload", None) or return_payload(ret, clock.now())
    body = current_app.json.dumps(payload)
    return current_app.response_class(body, status=status, headers=headers, mimetype="application/json")


def _created(ret: Return) -> Response:
    number = format_number(ret.rma_code)
    return _out(ret, 201, {"Location": url_for("api.get_return", rma_number=number)})


@blp.route("/returns", methods=["POST"])
@blp.arguments(ReturnIn)
@blp.response(201, ReturnOut)
def create_return(data):
    """Request a return for lines of an order (the order's email must match)."""
    return _created(svc.create_return(data, g.actor, clock.now()))


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
        query = query.where(Return.id < cursors.required(cursors.decode_id(args["cursor"], "r")))
    limit = args["limit"]
    rows = db.session.scalars(query.order_by(Return.id.desc()).limit(limit + 1)).all()
    now = clock.now()
    page = rows[:limit]
    return {"items": [return_payload(r, now) for r in page],
            "next_cursor": cursors.encode(f"r{page[-1].id}") if len(rows) > limit else None}


@blp.route("/returns/<string:rma_number>", methods=["GET"])
@blp.response(200, ReturnOut)
def get_return(rma_number):
    """One return. The number is read case-insensitively, with or without hyphens."""
    return _out(svc.get_return(rma_number))


@blp.route("/returns/<string:rma_number>/approve", methods=["POST"])
@blp.response(200, ReturnOut)
def approve(rma_number):
    """requested → authorized."""
    return _out(svc.approve(rma_number, g.actor, clock.now()))


@blp.route("/returns/<string:rma_number>/reject", methods=["POST"])
@blp.arguments(RejectIn)
@blp.response(200, ReturnOut)
def reject(data, rma_number):
    """requested → rejected, with the reason the customer reads."""
    return _out(svc.reject(rma_number, data["reason"], g.actor, clock.now()))


@blp.route("/returns/<string:rma_number>/cancel", methods=["POST"])
@blp.response(200, ReturnOut)
def cancel(rma_number):
    """requested or authorized → cancelled; the label is voided."""
    return _out(svc.cancel(rma_number, g.actor, clock.now()))


@blp.route("/returns/<string:rma_number>/receive", methods=["POST"])
@blp.arguments(ReceiveIn)
@blp.response(200, ReturnOut)
def receive(data, rma_number):
    """The parcel arrived: record the units received (absent: everything announced)."""
    return _out(svc.receive(rma_number, data.get("items"), g.actor, clock.now()))


@blp.route("/returns/<string:rma_number>/items/<string:line_id>/triage", methods=["POST"])
@blp.arguments(TriageIn)
@blp.response(200, ReturnOut)
def triage(data, rma_number, line_id):
    """Sort a received item into restock, refurbish or dispute."""
    ret = svc.triage(rma_number, line_id, data["disposition"], data["condition"], data.get("note"),
                     g.actor, clock.now())
    return _out(ret)


@blp.route("/returns/<string:rma_number>/refund", methods=["POST"])
@blp.arguments(RefundIn)
@blp.response(200, ReturnOut)
def refund(data, rma_number):
    """Record a refund the shop made (full or partial)."""
    ret = svc.record_refund(rma_number, data["amount"], data.get("reference"), g.actor, clock.now())
    return _out(ret)


@blp.route("/returns/<string:rma_number>/close", methods=["POST"])
@blp.arguments(CloseIn)
@blp.response(200, ReturnOut)
def close(data, rma_number):
    """End an inspected return with nothing left to refund."""
    return _out(svc.close(rma_number, data.get("note"), g.actor, clock.now()))


@blp.route("/returns/<string:rma_number>/label.pdf", methods=["GET"])
@blp.response(200, description="The label as PDF.", content_type="application/pdf")
def label_pdf(rma_number):
    """The prepaid label, as stored when it was issued (the same bytes on every download);
    404 while it is being issued (``label.status`` pending) and once it is voided."""
    number, pdf = labels_svc.stored_pdf(rma_number)
    return Response(pdf, mimetype="application/pdf", headers={
        "Content-Disposition": f'inline; filename="{number}.pdf"',
        "Cache-Control": "private, max-age=300"})


@blp.route("/returns/<string:rma_number>/label/reissue", methods=["POST"])
@blp.response(200, ReturnOut)
def reissue_label(rma_number):
    """Void the current label (also at the carrier) and request a new one, with a new tracking
    number once issued (``label.status`` pending until then). Authorized returns only."""
    return _out(labels_svc.void_and_reissue(rma_number, g.actor, clock.now()))


@blp.route("/returns/<string:rma_number>/events", methods=["GET"])
@blp.response(200, EventList)
def events(rma_number):
    """The audit trail, oldest first."""
    ret = svc.get_return(rma_number)
    rows = db.session.scalars(select(Event).where(Event.return_id == ret.id).order_by(Event.id)).all()
    return {"items": [{"type": e.type, "at": clock.rfc3339(e.at), "actor": e.actor,
                       "data": {**({"from": e.from_status, "to": e.to_status} if e.to_status else {}), **(e.data or {})}}
                      for e in rows]}

"""Disputes: list, read, write to the customer or the handler, resolve."""
from __future__ import annotations

from flask import g

from .. import clock
from ..services import cursors
from ..services import disputes as svc
from ..services.representation import dispute_message_payload, dispute_payload
from . import blp
from .schemas import DisputeListQuery, DisputeMessageIn, DisputeMessageOut, DisputeOut, DisputePage, DisputeResolveIn


@blp.route("/disputes", methods=["GET"])
@blp.arguments(DisputeListQuery, location="query")
@blp.response(200, DisputePage)
def list_disputes(args):
    """Disputes, newest first, with keyset pagination; filter by `status` (open, resolved),
    `handler` (the handler's email) or `unassigned=true`. Items leave out the messages (read
    one dispute for its conversation)."""
    before = cursors.required(cursors.decode_id(args["cursor"], "d")) if "cursor" in args else None
    page, more = svc.find(status=args.get("status"), handler_email=args.get("handler"),
                          unassigned=bool(args.get("unassigned")), before_id=before, limit=args["limit"])
    return {"items": [dispute_payload(d, messages=False) for d in page],
            "next_cursor": cursors.encode(f"d{page[-1].id}") if more else None}


@blp.route("/disputes/<int:dispute_id>", methods=["GET"])
@blp.response(200, DisputeOut)
def get_dispute(dispute_id):
    """One dispute with its handler and conversation."""
    return dispute_payload(svc.get_dispute(dispute_id))


@blp.route("/disputes/<int:dispute_id>/messages", methods=["POST"])
@blp.arguments(DisputeMessageIn)
@blp.response(201, DisputeMessageOut)
def post_message(data, dispute_id):
    """Add a message from the customer or the handler; the other side is told by mail.
    409 `conflict` once the dispute is resolved."""
    message = svc.post_message(svc.get_dispute(dispute_id), data["author"], data["body"], clock.now(),
                               actor=g.actor)
    return dispute_message_payload(message)


@blp.route("/disputes/<int:dispute_id>/resolve", methods=["POST"])
@blp.arguments(DisputeResolveIn)
@blp.response(200, DisputeOut)
def resolve(data, dispute_id):
    """Decide the dispute: `accept` (disputed items refunded in full), `partial` (`amount`,
    at most the disputed value) or `reject` (nothing for the disputed items). The return's
    `refund.amount_due` follows; the return moves to `inspected` once nothing is open.
    409 `conflict` if the dispute is already resolved."""
    dispute = svc.resolve(svc.get_dispute(dispute_id), data["outcome"], data.get("amount"), data["note"],
                          clock.now(), g.actor)
    return dispute_payload(dispute)

"""Status changes, the audit trail and the outbox: the three always move together."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Optional

from sqlalchemy import event as sa_event, select
from sqlalchemy.orm import Session

from ..domain import status as sm
from ..extensions import db
from ..models import Event, OutboxEvent, Return, WebhookDelivery, WebhookEndpoint
from .newrows import add

# Webhook event sent when a return enters a status (inspected has none in the contract).
STATUS_EVENTS = {
    "authorized": "return.authorized", "rejected": "return.rejected", "cancelled": "return.cancelled",
    "expired": "return.expired", "in_transit": "return.in_transit", "received": "return.received",
    "disputed": "return.disputed", "refunded": "return.refunded", "closed": "return.closed",
}
# Timestamp column set when a return enters a status.
STATUS_TIMESTAMPS = {"authorized": "authorized_at", "received": "received_at",
                     "inspected": "inspected_at", "refunded": "refunded_at", "closed": "closed_at"}


def record(ret: Optional[Return], type_: str, actor: str, now: datetime, *, data: Optional[dict] = None,
           from_status: Optional[str] = None, to_status: Optional[str] = None,
           dispute_id: Optional[int] = None) -> Event:
    event = Event(dispute_id=dispute_id, type=type_, at=now, actor=actor, from_status=from_status,
                  to_status=to_status, data=data or {})
    event.ret = ret  # return_id is filled at the insert, also for a return not yet written
    add(event)
    return event


def _live_endpoints() -> list:
    """The webhook endpoints (id, events), read once per session transaction (several events
    are often emitted by one change)."""
    cache = db.session.info.get("rma_endpoints")
    if cache is None:
        table = WebhookEndpoint.__table__
        # A plain Core read: nothing here is flushed first (the pending rows go in the
        # commit's one flush) and no objects are built.
        cache = db.session.connection().execute(
            select(table.c.id, table.c.events).where(table.c.deleted_at.is_(None))).all()
        db.session.info["rma_endpoints"] = cache
    return cache


@sa_event.listens_for(Session, "after_commit")
@sa_event.listens_for(Session, "after_rollback")
def _forget_endpoints(session: Session) -> None:
    session.info.pop("rma_endpoints", None)


def emit(type_: str, data: dict[str, Any], now: datetime, return_id: Optional[int] = None,
         ret: Optional[Return] = None) -> OutboxEvent:
    """Write an event for the shop in the current transaction, with one delivery row per
    subscribed endpoint. The scheduler sends them after the commit. Pass ``ret`` (rather
    than ``return_id``) for a return that may not be flushed yet."""
    event = OutboxEvent(type=type_, return_id=return_id, payload=data, created_at=now)
    if ret is not None:
        event.ret = ret
    add(event)
    for endpoint in _live_endpoints():
        if type_ in endpoint.events or "*" in endpoint.events:
            delivery = WebhookDelivery(endpoint_id=endpoint.id, next_attempt_at=now, created_at=now)
            delivery.event = event
            add(delivery)
    return event


def transition(ret: Return, action: str, actor: str, now: datetime, *, data: Optional[dict] = None) -> str:
    """Apply ``action`` through the state machine; InvalidTransition (→ 409) otherwise.
    Writes the audit event and the shop's webhook event in the same transaction."""
    from .representation import return_payload  # late: representation imports services

    before = ret.status
    after = sm.next_status(before, action)
    ret.status = after
    ret.updated_at = now
    column = STATUS_TIMESTAMPS.get(after)
    if column and getattr(ret, column) is None:
        setattr(ret, column, now)
    record(ret, action, actor, now, data=data, from_status=before, to_status=after)
    if after in sm.RELEASES_UNITS:
        from .returns import release_units
        release_units(ret)
    if after in STATUS_EVENTS:
        emit(STATUS_EVENTS[after], return_payload(ret, now), now, ret=ret)
    return after

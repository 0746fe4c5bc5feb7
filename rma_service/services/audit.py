"""Status changes, the audit trail and the outbox: the three always move together."""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import cache
from typing import Any, Optional

from sqlalchemy import Connection, bindparam, event as sa_event, exists, func, insert, literal, or_, select, true
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Insert

from ..domain import status as sm
from ..models import Event, OutboxEvent, Return, WebhookDelivery, WebhookEndpoint
from .newrows import new

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
    # ``ret`` rather than its id: return_id is filled at the insert, also for a return not yet written.
    return new(Event, {"dispute_id": dispute_id, "type": type_, "at": now, "actor": actor, "from_status": from_status,
                       "to_status": to_status, "data": data or {}, "ret": ret})


def deliveries_insert(events: Any, dialect: str) -> Insert:
    """``INSERT … SELECT``: one pending delivery for each event of ``events`` (a selectable
    with ``id``, ``type`` and ``created_at``, in creation order) and each live endpoint
    subscribed to its type or to ``*``. The database matches the subscriptions in the same
    statement: no endpoint list is read into Python, whatever the number of events."""
    e, d = WebhookEndpoint.__table__, WebhookDelivery.__table__
    elements = func.json_each if dialect == "sqlite" else func.json_array_elements_text
    subscribed = elements(e.c.events).table_valued("value").alias("subscribed")
    query = (select(events.c.id, e.c.id, literal("pending"), literal(0), events.c.created_at,
                    events.c.created_at)
             .select_from(events).join(e, true())
             .where(e.c.deleted_at.is_(None),
                    exists(select(literal(1)).select_from(subscribed)
                           .where(or_(subscribed.c.value == events.c.type, subscribed.c.value == "*"))))
             .order_by(events.c.id, e.c.created_at, e.c.id))
    return insert(d).from_select([d.c.outbox_event_id, d.c.endpoint_id, d.c.status, d.c.attempts,
                                  d.c.next_attempt_at, d.c.created_at], query)


@cache
def _deliveries_for_ids(dialect: str) -> Insert:
    o = OutboxEvent.__table__
    events = (select(o.c.id, o.c.type, o.c.created_at)
              .where(o.c.id.in_(bindparam("ids", expanding=True))).subquery("events"))
    return deliveries_insert(events, dialect)


def fan_out(conn: Connection, event_ids: list[int]) -> None:
    """The deliveries of outbox events just inserted (by id), in the same transaction."""
    if event_ids:
        conn.execute(_deliveries_for_ids(conn.dialect.name), {"ids": event_ids})


@sa_event.listens_for(Session, "after_flush")
def _fan_out_flushed_events(session: Session, _context: Any) -> None:
    """Events written by the unit of work get their deliveries as soon as they have ids."""
    ids = [obj.id for obj in session.new if isinstance(obj, OutboxEvent)]
    if ids:
        fan_out(session.connection(), ids)


def emit(type_: str, data: dict[str, Any], now: datetime, return_id: Optional[int] = None,
         ret: Optional[Return] = None) -> OutboxEvent:
    """Write an event for the shop in the current transaction; once written, it gets one
    delivery row per subscribed endpoint (``fan_out``). The scheduler sends them after the
    commit. Pass ``ret`` (rather than ``return_id``) for a return that may not be flushed yet."""
    values = {"type": type_, "return_id": return_id, "payload": data, "created_at": now}
    if ret is not None:
        values["ret"] = ret
    return new(OutboxEvent, values)


def transition(ret: Return, action: str, actor: str, now: datetime, *, data: Optional[dict] = None,
               effects: Optional[Callable[[], Any]] = None) -> Optional[OutboxEvent]:
    """Apply ``action`` through the state machine; InvalidTransition (→ 409) otherwise.
    Writes the audit event and the shop's webhook event in the same transaction.
    ``effects`` run once the status has changed and before the shop's event is built, so the
    event shows them (the label requested on authorization, voided on cancellation).
    Returns the shop's event, if the new status has one (its payload is the return as it now is)."""
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
    if effects is not None:
        effects()
    if after in STATUS_EVENTS:
        return emit(STATUS_EVENTS[after], return_payload(ret, now), now, ret=ret)
    return None

"""The shop's webhook endpoints and the delivery of the outbox to them.

Delivery (the ``deliver_webhooks`` job)
---------------------------------------
Each ``WebhookDelivery`` row is one event for one endpoint. The body is
``{"id", "type", "created_at", "data"}``, serialised once per event and run (the stored
payload gives the same bytes on every retry), signed in ``RMA-Signature`` with the endpoint's
secret — and, during a rotation, with the previous secret too (a second ``v1=``).

* Order: a delivery is only attempted when no earlier event of the same return is still
  pending for the same endpoint (pending = neither delivered nor failed). A receiver that is
  down, then slow, then up therefore gets every return's events in the order they were
  created. Deliveries claimed together never depend on each other, so a batch is sent in
  parallel (``WEBHOOK_CONCURRENCY``).
* Retries: a failure (non-2xx, timeout, refused connection) is retried with
  ``domain.deadlines.next_attempt_at`` (30 s, 1 min, 2 min, … capped at 6 h) for 3 days from
  the first attempt; then the delivery is ``failed`` and stops holding back later events.
  ``POST /api/v1/webhook-endpoints/{id}/deliveries/{delivery_id}/redeliver`` queues a failed
  one again, with the same event id.
* Exactly once to a receiver that acknowledged: the delivery is marked ``delivered`` in its
  own committed transaction right after the 2xx. The one window left is a scheduler killed
  between the receiver's 2xx and that commit (a few milliseconds): that event is sent again
  once the claim expires, with the same ``id``; receivers that must not act twice
  deduplicate on it. Claims: see ``services/claims.py``.

Secret rotation
---------------
``rotate_secret`` makes a new secret and keeps the previous one valid for 24 hours. During
those 24 hours every delivery carries ``t=…,v1=<new>,v1=<old>``: a receiver configured with
either secret verifies. The receiver should accept both of its secrets while it switches
(``adapters.signing.verify`` takes a list).
"""
from __future__ import annotations

import json
import logging
import queue
import secrets as pysecrets
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Optional

from sqlalchemy import Text, and_, bindparam, cast, literal, select, update

from ..adapters.webhooks import WebhookSender
from ..clock import rfc3339
from ..redact import for_log
from ..domain.deadlines import next_attempt_at
from ..errors import ApiError, NotFound
from ..extensions import db
from ..models import OutboxEvent, WebhookDelivery, WebhookEndpoint
from . import cursors, settings
from .claims import STOP, RunBudget, claim_locked, wallclock

log = logging.getLogger(__name__)

EVENT_TYPES = (
    "return.created", "return.authorized", "return.rejected", "return.cancelled", "return.expired",
    "return.label_issued", "return.in_transit", "return.received", "return.item_triaged",
    "return.disputed", "return.refund_due_soon", "return.refund_overdue", "return.refunded",
    "return.closed", "dispute.assigned", "dispute.message", "dispute.resolved", "item.restocked",
    "item.refurbished",
)
ALL_EVENTS = "*"
ROTATION_OVERLAP = timedelta(hours=24)


# --- endpoints ------------------------------------------------------------------------------

def _new_secret() -> str:
    return "whsec_" + pysecrets.token_urlsafe(32)


def _normalise_events(events: list[str]) -> list[str]:
    return [ALL_EVENTS] if ALL_EVENTS in events else list(dict.fromkeys(events))


def create_endpoint(url: str, events: list[str], now: datetime) -> WebhookEndpoint:
    endpoint = WebhookEndpoint(url=url, events=_normalise_events(events), secret=_new_secret(), created_at=now)
    db.session.add(endpoint)
    db.session.commit()
    return endpoint


def get_endpoint(endpoint_id: str) -> WebhookEndpoint:
    endpoint = db.session.get(WebhookEndpoint, endpoint_id) if len(endpoint_id) <= 36 else None
    if endpoint is None or endpoint.deleted_at is not None:
        raise NotFound("No webhook endpoint with this id.")
    return endpoint


def list_endpoints(limit: int, cursor: Optional[str]) -> tuple[list[WebhookEndpoint], Optional[str]]:
    """Live endpoints, newest first; keyset pagination on (created_at, id)."""
    query = select(WebhookEndpoint).where(WebhookEndpoint.deleted_at.is_(None))
    if cursor:
        at, last_id = cursors.required(cursors.decode_time_key(cursor, max_length=36))
        query = query.where((WebhookEndpoint.created_at < at)
                            | and_(WebhookEndpoint.created_at == at, WebhookEndpoint.id < last_id))
    rows = list(db.session.scalars(query.order_by(WebhookEndpoint.created_at.desc(), WebhookEndpoint.id.desc())
                                   .limit(limit + 1)))
    page = rows[:limit]
    next_cursor = cursors.encode(page[-1].created_at.isoformat(), page[-1].id) if len(rows) > limit else None
    return page, next_cursor


def delete_endpoint(endpoint_id: str, now: datetime) -> None:
    """Soft delete: the endpoint stops receiving; its pending deliveries are given up."""
    endpoint = get_endpoint(endpoint_id)
    endpoint.deleted_at = now
    db.session.execute(update(WebhookDelivery)
                       .where(WebhookDelivery.endpoint_id == endpoint.id, WebhookDelivery.status == "pending")
                       .values(status="failed", last_error="endpoint deleted", locked_until=None)
                       .execution_options(synchronize_session=False))
    db.session.commit()


def rotate_secret(endpoint_id: str, now: datetime) -> WebhookEndpoint:
    """A new secret; the current one stays valid (deliveries are signed with both) for 24 h."""
    endpoint = get_endpoint(endpoint_id)
    endpoint.previous_secret = endpoint.secret
    endpoint.previous_secret_expires_at = now + ROTATION_OVERLAP
    endpoint.secret = _new_secret()
    db.session.commit()
    return endpoint


def endpoint_payload(endpoint: WebhookEndpoint, *, with_secret: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {"id": endpoint.id, "url": endpoint.url, "events": list(endpoint.events),
                            "created_at": rfc3339(endpoint.created_at)}
    if with_secret:
        body["secret"] = endpoint.secret
        if endpoint.previous_secret_expires_at is not None:
            body["previous_secret_expires_at"] = rfc3339(endpoint.previous_secret_expires_at)
    return body


# --- deliveries (inspection and redelivery) -------------------------------------------------

def list_deliveries(endpoint_id: str, status: Optional[str], limit: int,
                    cursor: Optional[str]) -> tuple[list[WebhookDelivery], Optional[str]]:
    endpoint = get_endpoint(endpoint_id)
    query = select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint.id)
    if status:
        query = query.where(WebhookDelivery.status == status)
    if cursor:
        query = query.where(WebhookDelivery.id < cursors.required(cursors.decode_id(cursor)))
    rows = list(db.session.scalars(query.order_by(WebhookDelivery.id.desc()).limit(limit + 1)))
    page = rows[:limit]
    return page, (cursors.encode(page[-1].id) if len(rows) > limit else None)


def delivery_payload(delivery: WebhookDelivery) -> dict[str, Any]:
    return {"id": delivery.id, "event_id": delivery.event.event_id, "event_type": delivery.event.type,
            "status": delivery.status, "attempts": delivery.attempts,
            "next_attempt_at": rfc3339(delivery.next_attempt_at) if delivery.status == "pending" else None,
            "last_status_code": delivery.last_status_code, "last_error": delivery.last_error,
            "delivered_at": rfc3339(delivery.delivered_at), "created_at": rfc3339(delivery.created_at)}


def redeliver(endpoint_id: str, delivery_id: int, now: datetime) -> WebhookDelivery:
    """Queue a failed delivery again: same event id, a fresh 3 days of retries."""
    endpoint = get_endpoint(endpoint_id)
    delivery = db.session.get(WebhookDelivery, delivery_id)
    if delivery is None or delivery.endpoint_id != endpoint.id:
        raise NotFound("No delivery with this id for this endpoint.")
    result = db.session.execute(
        update(WebhookDelivery).where(WebhookDelivery.id == delivery.id, WebhookDelivery.status == "failed")
        .values(status="pending", attempts=0, first_attempt_at=None, next_attempt_at=now, locked_until=None)
        .execution_options(synchronize_session=False))
    if result.rowcount != 1:
        db.session.rollback()
        raise ApiError(409, "conflict", f"Only a failed delivery can be redelivered; this one is {delivery.status}.")
    db.session.commit()
    db.session.refresh(delivery)
    return delivery


# --- the deliver_webhooks job ---------------------------------------------------------------

@dataclass(frozen=True)
class _Claimed:
    id: int
    url: str
    secret: str
    previous_secret: Optional[str]
    body: bytes
    attempts: int
    first_attempt_at: Optional[datetime]
    endpoint_deleted: bool


def due_candidates(now: datetime):
    """The due-selection query: pending, due, and no earlier event of the same return still
    pending for the same endpoint (``EXPLAIN`` of it is in bench/README.md).

    Shaped so that its cost follows the due rows whatever the planner's statistics say (they
    lag behind after a burst of events): the outer scan walks the ``(status, next_attempt_at)``
    index in order and a LIMIT stops it early; the order check is a scalar subquery, which
    PostgreSQL never turns into a join, run per candidate: the event by its id, the return's
    earlier events through ``(return_id, id)``, and for each the delivery's status through the
    unique ``(outbox_event_id, endpoint_id)`` — again a scalar subquery, so that no plan can
    start from "all pending deliveries of this endpoint"."""
    d = WebhookDelivery.__table__
    e, e2, d2 = (OutboxEvent.__table__.alias("event"), OutboxEvent.__table__.alias("earlier_event"),
                 d.alias("earlier_delivery"))
    earlier_status = (select(d2.c.status)
                      .where(d2.c.outbox_event_id == e2.c.id, d2.c.endpoint_id == d.c.endpoint_id)
                      .correlate_except(d2).scalar_subquery())
    earlier_pending = (
        select(literal(1))
        .select_from(e.join(e2, and_(e2.c.return_id == e.c.return_id, e2.c.id < e.c.id)))
        .where(e.c.id == d.c.outbox_event_id, earlier_status == "pending")
        .limit(1).correlate(d).scalar_subquery())
    return (select(d.c.id)
            .where(d.c.status == "pending", d.c.next_attempt_at <= now, earlier_pending.is_(None))
            .order_by(d.c.next_attempt_at))


def _body(event_id: str, type_: str, created_at: datetime, payload_json: str) -> bytes:
    """``{"id", "type", "created_at", "data"}``; ``data`` is the stored JSON text as it is
    (the same bytes on every retry, and no decoding and re-encoding of every payload)."""
    head = json.dumps({"id": event_id, "type": type_, "created_at": rfc3339(created_at)},
                      ensure_ascii=False, separators=(",", ":"))
    return (head[:-1] + ',"data":' + payload_json + "}").encode()


def _load(ids: list[int], now: datetime) -> list[_Claimed]:
    d, e, ep = WebhookDelivery.__table__, OutboxEvent.__table__, WebhookEndpoint.__table__
    rows = db.session.execute(
        select(d.c.id, d.c.attempts, d.c.first_attempt_at, e.c.id.label("event_pk"), e.c.event_id, e.c.type,
               e.c.created_at, cast(e.c.payload, Text).label("payload_json"), ep.c.url, ep.c.secret, ep.c.previous_secret,
               ep.c.previous_secret_expires_at, ep.c.deleted_at)
        .select_from(d.join(e, e.c.id == d.c.outbox_event_id).join(ep, ep.c.id == d.c.endpoint_id))
        .where(d.c.id.in_(ids)).order_by(d.c.id)).all()
    db.session.rollback()  # end the read transaction: the POSTs happen outside any
    bodies: dict[int, bytes] = {}
    claimed = []
    for r in rows:
        if r.event_pk not in bodies:  # serialised once, for every endpoint
            bodies[r.event_pk] = _body(r.event_id, r.type, r.created_at, r.payload_json)
        rotating = (r.previous_secret and r.previous_secret_expires_at is not None
                    and r.previous_secret_expires_at > now)
        claimed.append(_Claimed(r.id, r.url, r.secret, r.previous_secret if rotating else None,
                                bodies[r.event_pk], r.attempts, r.first_attempt_at, r.deleted_at is not None))
    return claimed


class _Recorder(threading.Thread):
    """Writes the outcome of every attempt, as soon as it is known, from one thread.

    The senders hand each outcome over and go on with the next POST; this thread takes
    whatever outcomes are waiting — one, or the few that arrived during the previous commit —
    and commits them in one transaction at once. A 2xx is thus recorded right after it came
    (within a commit or two: milliseconds), and the commits' cost is shared instead of every
    sender waiting for its own. A scheduler killed in that moment sends those events again
    after the lease (same event ids): the documented at-least-once window.
    """

    # PostgreSQL: the hot path, one prepared statement, executemany in a pipeline.
    _DELIVERED_PG = ("UPDATE webhook_deliveries SET status = 'delivered', delivered_at = %s, attempts = %s, "
                     "first_attempt_at = %s, last_status_code = %s, last_error = NULL, locked_until = NULL "
                     "WHERE id = %s")
    _STOP = object()

    def __init__(self, engine) -> None:
        super().__init__(name="webhook-recorder", daemon=True)
        self.engine = engine
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.error: Optional[BaseException] = None

    def delivered(self, delivery_id: int, now: datetime, first: datetime, attempts: int, code: int) -> None:
        self.queue.put(("delivered", (now, attempts, first, code, delivery_id)))

    def update(self, delivery_id: int, only_pending: bool, **values: Any) -> None:
        self.queue.put(("update", (delivery_id, only_pending, values)))

    def flush(self) -> None:
        """Wait until everything handed over so far is committed."""
        done = threading.Event()
        self.queue.put(("flush", done))
        while not done.wait(0.5):
            if not self.is_alive():
                return

    def close(self) -> None:
        """Record everything handed over so far, then stop."""
        self.queue.put(self._STOP)
        self.join()
        if self.error is not None:
            raise self.error

    def run(self) -> None:
        stopping = False
        with self.engine.connect() as conn:
            raw = conn.connection.dbapi_connection if self.engine.dialect.name == "postgresql" else None
            while not stopping:
                items = [self.queue.get()]
                while True:  # and whatever else is waiting
                    try:
                        items.append(self.queue.get_nowait())
                    except queue.Empty:
                        break
                stopping = any(item is self._STOP for item in items)
                work = [item for item in items if item is not self._STOP and item[0] != "flush"]
                if work and self.error is None:
                    self._record(conn, raw, work)
                for item in items:
                    if item is not self._STOP and item[0] == "flush":
                        item[1].set()

    def _record(self, conn, raw, items: list) -> None:
        """One transaction for all ``items``."""
        table = WebhookDelivery.__table__
        try:
            delivered = [args for kind, args in items if kind == "delivered"]
            updates = [args for kind, args in items if kind == "update"]
            if delivered and raw is not None:
                with raw.cursor() as cur:
                    cur.executemany(self._DELIVERED_PG, delivered)
            elif delivered:
                conn.execute(update(table).where(table.c.id == bindparam("delivery_id")).values(
                    status="delivered", delivered_at=bindparam("at"), attempts=bindparam("n"),
                    first_attempt_at=bindparam("first"), last_status_code=bindparam("code"),
                    last_error=None, locked_until=None),
                    [{"at": a, "n": n, "first": f, "code": c, "delivery_id": i} for a, n, f, c, i in delivered])
            for delivery_id, only_pending, values in updates:
                condition = [table.c.id == delivery_id] + ([table.c.status == "pending"] if only_pending else [])
                conn.execute(update(table).where(*condition).values(**values))
            if raw is not None and not updates:
                raw.commit()
            else:
                conn.commit()
        except BaseException as exc:  # noqa: BLE001 - reported by close()
            log.exception("could not record webhook outcomes; those deliveries are retried after the lease")
            self.error = exc


def _sender(timeout: tuple[float, float], proxy: Optional[str]) -> WebhookSender:
    sender = WebhookSender(timeout=timeout)
    # Only what the settings say: no proxy from the environment, and above all no ~/.netrc
    # credentials sent to the shop's host.
    sender.session.trust_env = False
    if proxy:
        sender.session.proxies.update({"http": proxy, "https": proxy})
    return sender


def deliver_due(now: datetime) -> int:
    """Attempt every delivery that is due at ``now``; returns how many were delivered.
    Runs batch after batch until nothing is due (or the run's time budget is used)."""
    cfg = settings()
    table = WebhookDelivery.__table__
    timeout = (float(cfg["WEBHOOK_CONNECT_TIMEOUT"]), float(cfg["WEBHOOK_TIMEOUT"]))
    lease = timedelta(seconds=int(cfg["JOB_LEASE_SECONDS"]))
    # Never start a POST that could still be running when the claim expires.
    margin = timedelta(seconds=sum(timeout) + 5)
    if lease <= margin:
        raise RuntimeError(f"RMA_JOB_LEASE_SECONDS ({lease.total_seconds():.0f}) must exceed the webhook "
                           f"timeouts plus 5 s ({margin.total_seconds():.0f})")
    proxy = cfg.get("WEBHOOK_PROXY") or None
    local = threading.local()
    senders: list[WebhookSender] = []
    senders_lock = threading.Lock()

    def sender() -> WebhookSender:
        if not hasattr(local, "sender"):
            local.sender = _sender(timeout, proxy)
            with senders_lock:
                senders.append(local.sender)
        return local.sender

    recorder = _Recorder(db.engine)  # (threads have no app context: it gets the engine itself)
    recorder.start()
    budget = RunBudget()
    outcomes: list[str] = []
    recorded = 0  # outcomes known to be committed (after a flush)
    in_flight: deque[list[Future]] = deque()
    try:
        with ThreadPoolExecutor(max(1, int(cfg["WEBHOOK_CONCURRENCY"])), thread_name_prefix="webhook") as pool:
            # While the senders work on one batch, this thread claims and loads the next one
            # (at most two batches in flight). Claiming ahead is safe: a delivery in flight is
            # still pending, so the claim leaves the next event of its return alone.
            while not budget.exhausted() and "released" not in outcomes and recorder.error is None:
                claimed_at = wallclock()
                ids = claim_locked(table, due_candidates(now), now_wall=claimed_at, lease=lease,
                                   limit=int(cfg["JOB_BATCH_SIZE"]))
                if not ids:
                    if in_flight:
                        outcomes += [f.result() for f in in_flight.popleft()]
                        continue
                    if len(outcomes) > recorded:
                        # Outcomes not committed yet may hold back the next events of their
                        # returns: record them, then look once more.
                        recorder.flush()
                        recorded = len(outcomes)
                        continue
                    break
                start_before = claimed_at + lease - margin
                in_flight.append([pool.submit(_attempt, sender, recorder, c, now, start_before)
                                  for c in _load(ids, now)])
                if len(in_flight) >= 2:
                    outcomes += [f.result() for f in in_flight.popleft()]
            for batch in in_flight:
                outcomes += [f.result() for f in batch]
    finally:
        for s_ in senders:
            s_.close()
        recorder.close()
    return outcomes.count("delivered")


def _attempt(sender: Callable[[], WebhookSender], recorder: _Recorder, delivery: _Claimed, now: datetime,
             start_before: datetime) -> str:
    """One claimed delivery: "delivered", "failed" (an attempt that failed) or "released"."""
    if delivery.endpoint_deleted:
        recorder.update(delivery.id, True, status="failed", last_error="endpoint deleted", locked_until=None)
        return "failed"
    if STOP.is_set() or wallclock() > start_before:
        recorder.update(delivery.id, False, locked_until=None)  # give it back untouched
        return "released"
    previous = (delivery.previous_secret,) if delivery.previous_secret else ()
    result = sender().deliver(delivery.url, delivery.body, delivery.secret, previous_secrets=previous)
    attempts = delivery.attempts + 1
    first = delivery.first_attempt_at or now
    if result.ok:
        # Recorded right after the 2xx: from then on this event is never sent again.
        recorder.delivered(delivery.id, now, first, attempts, result.status_code or 200)
        return "delivered"
    retry_at = next_attempt_at(first, attempts, now)
    values: dict[str, Any] = {"attempts": attempts, "first_attempt_at": first, "locked_until": None,
                              "last_status_code": result.status_code, "last_error": result.error}
    if retry_at is None:
        values["status"] = "failed"
        log.warning("webhook delivery %s to %s failed for good after %s attempts: %s",
                    delivery.id, for_log(delivery.url), attempts, for_log(result.error))
    else:
        values["next_attempt_at"] = retry_at
        log.info("webhook delivery %s to %s failed (attempt %s, %s), retry at %s",
                 delivery.id, for_log(delivery.url), attempts, for_log(result.error), rfc3339(retry_at))
    recorder.update(delivery.id, True, **values)
    return "failed"

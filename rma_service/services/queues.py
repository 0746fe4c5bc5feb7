"""The agents' work queues, search and keyset pagination (read-only).

Every queue is a filter on ``returns`` read through the ``(status, created_at, id)`` index,
oldest first (work is done in arrival order); "all" is newest first. Pages are keyset-paginated
on ``(created_at, id)``: the cost of a page does not grow with its depth and a cursor stays
valid while rows are added.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Optional

from sqlalchemy import and_, exists, func, literal, literal_column, or_, select, tuple_, union_all
from sqlalchemy.orm import contains_eager, selectinload

from ..domain import rma_number
from ..domain.status import STATUSES
from ..extensions import db
from ..models import Label, Order, Return, ReturnItem, UTCDateTime
from . import cursors, settings
from .orders import customer_order_number
from .kpis import OPEN_REFUND_STATUSES, _dialect

PAGE_SIZE = 50


@dataclass(frozen=True)
class Queue:
    key: str
    title: str
    hint: str
    statuses: Optional[tuple[str, ...]] = None  # None: every status
    newest_first: bool = False


QUEUES: tuple[Queue, ...] = (
    Queue("to_approve", "To approve", "Requested returns waiting for an agent's decision.", ("requested",)),
    Queue("awaiting_parcel", "Awaiting parcel", "Authorized; the customer has not shipped yet.", ("authorized",)),
    Queue("in_transit", "In transit", "The carrier has the parcel.", ("in_transit",)),
    Queue("to_receive", "To receive", "In transit, or delivered to the warehouse and not yet scanned in.",
          ("in_transit", "authorized")),
    Queue("to_triage", "To triage", "Received; items wait for restock, refurbish or dispute.", ("received",)),
    Queue("disputed", "Disputed", "An item is in dispute with the customer.", ("disputed",)),
    Queue("refund_due", "Refund due", "Inspected, refund resolution, not fully refunded (close it when nothing is due).",
          ("inspected",)),
    Queue("refund_overdue", "Refund overdue", "Past the legal refund deadline (L242-4 surcharge runs).",
          OPEN_REFUND_STATUSES),
    Queue("all", "All returns", "Every return, newest first.", newest_first=True),
)
QUEUE_BY_KEY = {q.key: q for q in QUEUES}
# Queues that are exactly one status: their counts come from one grouped query.
_STATUS_QUEUES = {"to_approve": "requested", "awaiting_parcel": "authorized", "in_transit": "in_transit",
                  "to_triage": "received", "disputed": "disputed"}


def _delivered_label():
    """The carrier reports the parcel delivered (probes the partial index ix_labels_delivered)."""
    return exists().where(Label.return_id == Return.id, Label.tracking_status == "delivered",
                          Label.status != "voided")


def _overdue(now: datetime, status=None):
    """The API's ``refund.overdue`` as SQL: open refund, evidence, due date passed. Everything
    it reads is in the partial index ix_returns_open_refund."""
    days = int(settings()["REFUND_DEADLINE_DAYS"])
    base = and_(Return.status.in_(OPEN_REFUND_STATUSES) if status is None else Return.status == status,
                Return.resolution == "refund",
                # due_at >= created_at + days: a range on the index first
                Return.created_at < now - timedelta(days=days),
                or_(Return.first_scan_at.is_not(None), Return.received_at.is_not(None)))
    if _dialect() == "postgresql":
        due = func.greatest(Return.created_at + literal_column(f"interval '{days} days'"),
                            func.least(Return.first_scan_at, Return.received_at))
        return and_(base, due < now)
    jd = func.julianday
    evidence = func.min(func.coalesce(jd(Return.first_scan_at), jd(Return.received_at)),
                        func.coalesce(jd(Return.received_at), jd(Return.first_scan_at)))
    due = func.max(jd(Return.created_at) + days, evidence)
    return and_(base, due < jd(literal(now, UTCDateTime())))


def branch_condition(key: str, status: Optional[str], now: datetime):
    """What a return of ``status`` must also satisfy to be in queue ``key``."""
    if key == "to_receive" and status == "authorized":
        return and_(Return.status == status, _delivered_label())
    if key == "refund_due":
        return and_(Return.status == status, Return.resolution == "refund")
    if key == "refund_overdue":
        return _overdue(now, status)
    return None if status is None else Return.status == status


def counts(now: datetime) -> dict[str, int]:
    """How many returns each work queue holds: one statement of index-only counts over the
    open returns, whatever the size of the history."""
    conditions = {key: Return.status == status for key, status in _STATUS_QUEUES.items()}
    conditions["to_receive_authorized"] = branch_condition("to_receive", "authorized", now)
    conditions["refund_due"] = branch_condition("refund_due", "inspected", now)
    conditions["refund_overdue"] = _overdue(now)
    row = db.session.execute(select(*[
        select(func.count()).select_from(Return).where(cond).scalar_subquery().label(key)
        for key, cond in conditions.items()])).one()
    out = {key: int(value) for key, value in zip(conditions, row)}
    out["to_receive"] = out["in_transit"] + out.pop("to_receive_authorized")
    return out


# --- cursors -----------------------------------------------------------------------------------

def encode_cursor(ret: Return) -> str:
    return cursors.encode(ret.created_at.astimezone(timezone.utc).isoformat(), ret.id)


# --- listing -----------------------------------------------------------------------------------

@dataclass
class Filters:
    status: Optional[str] = None
    resolution: Optional[str] = None
    created_from: Optional[date] = None
    created_to: Optional[date] = None  # included

    def conditions(self, with_status: bool = True) -> list[Any]:
        out = []
        if with_status and self.status in STATUSES:
            out.append(Return.status == self.status)
        if self.resolution:
            out.append(Return.resolution == self.resolution)
        if self.created_from:
            out.append(Return.created_at >= datetime.combine(self.created_from, time(0), tzinfo=timezone.utc))
        if self.created_to:
            out.append(Return.created_at < datetime.combine(self.created_to + timedelta(days=1), time(0),
                                                            tzinfo=timezone.utc))
        return out

    def active(self) -> bool:
        return any((self.status, self.resolution, self.created_from, self.created_to))


@dataclass
class Page:
    rows: list[Return]
    next_cursor: Optional[str]
    queue: Queue
    filters: Filters = field(default_factory=Filters)


def _with_details(query):
    """One extra query per relation for the page's rows (never one per row)."""
    return query.join(Order, Order.id == Return.order_id).options(
        contains_eager(Return.order), selectinload(Return.items),
        selectinload(Return.labels).defer(Label.pdf))  # never the PDFs for a list


def _load_in_order(ids: list[int]) -> list[Return]:
    if not ids:
        return []
    rows = {r.id: r for r in db.session.scalars(_with_details(select(Return).where(Return.id.in_(ids)))).unique()}
    return [rows[i] for i in ids if i in rows]


def list_queue(key: str, now: datetime, *, cursor: Optional[str] = None, filters: Optional[Filters] = None,
               limit: int = PAGE_SIZE) -> Page:
    """One page of a queue. A queue over several statuses is read as one branch per status,
    each walking the (status, created_at, id) index in order and stopping after a page: the
    database never sorts (or skips) the finished history to find the open returns."""
    queue = QUEUE_BY_KEY[key]
    filters = filters or Filters()
    statuses = queue.statuses
    if filters.status:
        statuses = (filters.status,) if statuses is None or filters.status in statuses else ()
    position = cursors.decode_time_id(cursor) if cursor else None  # altered: the first page
    key_cols = tuple_(Return.created_at, Return.id)
    order = (Return.created_at.desc(), Return.id.desc()) if queue.newest_first else (Return.created_at, Return.id)

    def branch(status: Optional[str]):
        query = select(Return.id, Return.created_at)
        cond = branch_condition(key, status, now)
        if cond is not None:
            query = query.where(cond)
        for c in filters.conditions(with_status=False):
            query = query.where(c)
        if position is not None:
            mark = tuple_(literal(position[0], UTCDateTime()), literal(position[1]))
            query = query.where(key_cols < mark if queue.newest_first else key_cols > mark)
        return query.order_by(*order).limit(limit + 1)

    branches = [branch(s) for s in statuses] if statuses is not None else [branch(None)]
    if not branches:
        return Page([], None, queue, filters)
    if len(branches) == 1:
        found = db.session.execute(branches[0]).all()
    else:
        parts = [select(b.subquery()) for b in branches]
        merged = union_all(*parts).subquery()
        found = db.session.execute(
            select(merged.c.id, merged.c.created_at)
            .order_by(*((merged.c.created_at.desc(), merged.c.id.desc()) if queue.newest_first
                        else (merged.c.created_at, merged.c.id)))
            .limit(limit + 1)).all()
    page = _load_in_order([row[0] for row in found[:limit]])
    return Page(page, encode_cursor(page[-1]) if len(found) > limit and page else None, queue, filters)


# --- search ------------------------------------------------------------------------------------

@dataclass
class SearchResult:
    query: str
    kind: str  # rma | email | order_or_tracking | empty
    rows: list[Return]
    truncated: bool = False


def search(text_: str, limit: int = 100) -> SearchResult:
    """Find returns by RMA number (as typed: any case, hyphens optional, O/I/L read as
    digits), customer email, order number or tracking number. Each is an index lookup."""
    q = (text_ or "").strip()[:254]
    if not q:
        return SearchResult(q, "empty", [])
    code = rma_number.parse(q)
    if code is not None:
        rows = list(db.session.scalars(_with_details(select(Return).where(Return.rma_code == code))).unique())
        if rows:
            return SearchResult(q, "rma", rows)
    if "@" in q:
        ids = db.session.scalars(select(Return.id).where(func.lower(Return.customer_email) == q.lower())
                                 .order_by(Return.created_at.desc(), Return.id.desc()).limit(limit + 1)).all()
        kind = "email"
    else:
        variants = sorted({q, q.upper()})
        # An order number as the customer writes it ("#1001", another case, spaces for hyphens),
        # read as the customers' page reads it.
        number = customer_order_number(q)
        order_numbers = sorted(set(variants) | ({number} if number else set()))
        orders = db.session.scalars(select(Order.id).where(Order.order_number.in_(order_numbers))).all()
        by_order = db.session.scalars(select(Return.id).where(Return.order_id.in_(orders))).all() if orders else []
        by_tracking = db.session.scalars(select(Label.return_id).where(Label.tracking_number.in_(variants))).all()
        ids = sorted(set(by_order) | set(by_tracking), reverse=True)
        kind = "order_or_tracking"
    rows = sorted(_load_in_order(list(ids)), key=lambda r: (r.created_at, r.id), reverse=True)
    return SearchResult(q, kind, rows[:limit], truncated=len(rows) > limit)


def find_for_receiving(text_: str) -> Optional[Return]:
    """The return a scanned code points to: an RMA number, else a label's tracking number
    (the newest return when a number was reused)."""
    q = (text_ or "").strip()
    if not q:
        return None
    code = rma_number.parse(q)
    if code is not None:
        ret = db.session.scalar(select(Return).where(Return.rma_code == code))
        if ret is not None:
            return ret
    return db.session.scalar(select(Return).join(Label, Label.return_id == Return.id)
                             .where(Label.tracking_number.in_(sorted({q, q.upper()})))
                             .order_by(Label.id.desc()).limit(1))


def refurbish_queue(limit: int = 200) -> tuple[list[ReturnItem], int]:
    """The oldest ``limit`` items waiting in the refurbish work step, and how many wait in all
    (a partial index holds them); the next ones show as these are finished."""
    waiting = ReturnItem.refurbish_status == "pending"
    items = list(db.session.scalars(select(ReturnItem).where(waiting).order_by(ReturnItem.id)
                                    .options(selectinload(ReturnItem.ret)).limit(limit)))
    total = len(items) if len(items) < limit else db.session.scalar(select(func.count()).where(waiting))
    return items, total

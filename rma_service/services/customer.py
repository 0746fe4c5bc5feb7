"""What the customers do on their own pages (``/returns/``): find their order, see what can
be returned and what it will cost, send the return with photos, then follow it through the
link with the signed token: the label, the refund, cancelling, writing to the handler.

These functions take plain values and return plain view objects; problems with what the
customer typed come back as ``CustomerInputError`` with one code per field, which the web
face turns into sentences in the customer's language.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Optional

from sqlalchemy import select, update

from ..clock import parse_rfc3339
from ..domain import status as sm
from ..domain.policy import (REASONS, Eligibility, ItemProblem, LineFacts, Quote, RequestedItem,
                             line_eligibility, money, quote, return_deadline)
from ..domain.rma_number import format_number
from ..errors import ApiError, NotFound
from ..extensions import db
from ..models import Dispute, DisputeMessage, Event, Label, Order, Return
from . import policy, settings
from . import returns as returns_service
from .orders import customer_order_number
from .photos import CleanPhoto, PhotoError, clean_photo
from .representation import current_label, left_and_surcharge, refund_block, return_amount_due, return_value_due
from .tokens import read_status_token, status_token

COMMENT_MAX = 1000
MESSAGE_MAX = 4000


# --- problems with the customer's input --------------------------------------------------

@dataclass(frozen=True)
class Problem:
    code: str
    params: dict[str, Any] = field(default_factory=dict)


class CustomerInputError(Exception):
    """``errors`` maps a field to a problem. Fields: ``lookup`` (order number and email),
    ``items`` (the selection as a whole), ``resolution``, ``line:<line_id>`` (the line
    itself), ``line:<line_id>:quantity|reason|comment|photos``."""

    def __init__(self, errors: dict[str, Problem]):
        super().__init__(", ".join(f"{k}={v.code}" for k, v in errors.items()))
        self.errors = errors
        # What the page needs to show the form again: the order (selection problems) or the
        # priced summary (photo problems).
        self.order: Optional["OrderView"] = None
        self.review: Optional["Review"] = None


# --- the order, as the customer sees it ------------------------------------------------------

@dataclass(frozen=True)
class LineView:
    line_id: str
    sku: str
    name: str
    quantity: int
    unit_price: Decimal
    category: Optional[str]
    eligible: bool
    reason_code: Optional[str]
    returnable_quantity: int
    in_returns: int  # units already held by other returns


@dataclass(frozen=True)
class ReturnLink:
    rma_number: str
    status: str
    created_at: datetime
    token: str


@dataclass(frozen=True)
class OrderView:
    order_number: str
    email: str
    customer_name: str
    locale: str
    currency: str
    placed_at: datetime
    delivered_at: Optional[datetime]
    window_ends: Optional[datetime]
    lines: list[LineView]
    resolutions: tuple[str, ...]
    returns: list[ReturnLink]

    @property
    def any_eligible(self) -> bool:
        return any(line.eligible for line in self.lines)

    def line(self, line_id: str) -> Optional[LineView]:
        return next((line for line in self.lines if line.line_id == line_id), None)


def _order_view(order: Order, email: str, now: datetime) -> OrderView:
    pol = policy()
    lines = []
    for line in order.lines:
        elig: Eligibility = line_eligibility(
            LineFacts(line.quantity, line.reserved_quantity, line.category, line.returnable),
            order.delivered_at, now, pol)
        lines.append(LineView(line.line_id, line.sku, line.name, line.quantity, line.unit_price,
                              line.category, elig.eligible, elig.reason_code, elig.returnable_quantity,
                              line.reserved_quantity))
    existing = db.session.scalars(select(Return).where(Return.order_id == order.id)
                                  .order_by(Return.id.desc())).all()
    links = [ReturnLink(format_number(r.rma_code), r.status, r.created_at, status_token(r.rma_code))
             for r in existing]
    return OrderView(order.order_number, email.strip(), order.customer_name, order.locale, order.currency,
                     order.placed_at, order.delivered_at, return_deadline(order.delivered_at, pol),
                     lines, pol.resolutions, links)


def find_order(order_number: str, email: str, now: datetime) -> OrderView:
    """The order with its lines and what can be returned. An unknown order and a wrong email
    give the same ``CustomerInputError`` (``lookup: not_found``): nobody learns which orders
    exist. The number is read as customers type it (``orders.customer_order_number``: case,
    spaces, a leading "#"); the view carries the order's own number."""
    number = customer_order_number(order_number)
    try:
        if number is None:
            raise NotFound("No such order.")
        order = returns_service.order_for_customer(number, email)
    except NotFound:
        raise CustomerInputError({"lookup": Problem("not_found")}) from None
    return _order_view(order, email, now)


# --- the selection, its check and its price ------------------------------------------------

@dataclass(frozen=True)
class Selection:
    """One line the customer ticked."""

    line_id: str
    quantity: Optional[int]
    reason: Optional[str]
    comment: Optional[str] = None


@dataclass(frozen=True)
class ReviewItem:
    line: LineView
    quantity: int
    reason: str
    comment: Optional[str]

    @property
    def total(self) -> Decimal:
        return money(self.line.unit_price * self.quantity)


@dataclass(frozen=True)
class Review:
    """Everything the customer reads before sending the return."""

    order: OrderView
    items: list[ReviewItem]
    resolution: str
    quote: Quote
    window_ends: Optional[datetime]
    refund_due_by: datetime
    refund_days: int
    label_valid_days: int
    approval_threshold: Decimal
    photos_per_item: int
    photo_max_bytes: int

    @property
    def value_after_fees(self) -> Decimal:
        """What the customer gets back in money (refund) or in credit (store credit)."""
        return max(Decimal("0.00"), money(self.quote.items_value - self.quote.shipping_fee
                                          - self.quote.restocking_fee))

    @property
    def currency(self) -> str:
        return self.order.currency


def _check(view: OrderView, selection: list[Selection], resolution: Optional[str]) -> list[ReviewItem]:
    errors: dict[str, Problem] = {}
    items: list[ReviewItem] = []
    seen: set[str] = set()
    for sel in selection:
        line = view.line(sel.line_id)
        key = f"line:{sel.line_id}"
        if line is None or sel.line_id in seen:
            errors["items"] = Problem("unknown_line")
            continue
        seen.add(sel.line_id)
        if not line.eligible:
            errors[key] = Problem(line.reason_code or "not_eligible")
            continue
        if sel.quantity is None or sel.quantity < 1:
            errors[f"{key}:quantity"] = Problem("quantity_required", {"max": line.returnable_quantity})
        elif sel.quantity > line.returnable_quantity:
            errors[f"{key}:quantity"] = Problem("quantity_exceeded", {"max": line.returnable_quantity})
        if sel.reason not in REASONS:
            errors[f"{key}:reason"] = Problem("reason_required")
        comment = (sel.comment or "").strip() or None
        if sel.reason == "other" and not comment:
            errors[f"{key}:comment"] = Problem("comment_required")
        elif comment and len(comment) > COMMENT_MAX:
            errors[f"{key}:comment"] = Problem("comment_too_long", {"max": COMMENT_MAX})
        if not any(k.startswith(key) for k in errors):
            items.append(ReviewItem(line, sel.quantity, sel.reason, comment))
    if not selection:
        errors["items"] = Problem("no_items")
    if resolution not in view.resolutions:
        errors["resolution"] = Problem("resolution_required")
    if errors:
        raise CustomerInputError(errors)
    return items


def review(order_number: str, email: str, selection: list[Selection], resolution: Optional[str],
           now: datetime) -> Review:
    """Check the selection against the policy and price it: amount refunded, fees, deadlines.
    Nothing is written."""
    view = find_order(order_number, email, now)
    try:
        items = _check(view, selection, resolution)
    except CustomerInputError as exc:
        exc.order = view
        raise
    s = settings()
    requested = [RequestedItem(i.line.line_id, i.quantity, i.reason, i.line.unit_price, i.comment) for i in items]
    days = int(s["REFUND_DEADLINE_DAYS"])
    return Review(view, items, resolution, quote(requested, resolution, policy()), view.window_ends,
                  now + timedelta(days=days), days, int(s.get("LABEL_EXPIRY_DAYS", 28)),
                  Decimal(s["APPROVAL_THRESHOLD"]), int(s["PHOTOS_PER_ITEM"]), int(s["PHOTO_MAX_BYTES"]))


def _clean_photos(photos: dict[str, list[bytes]], line_ids: set[str]) -> dict[str, list[CleanPhoto]]:
    s = settings()
    limit, max_bytes, max_side = int(s["PHOTOS_PER_ITEM"]), int(s["PHOTO_MAX_BYTES"]), int(s["PHOTO_MAX_SIDE"])
    errors: dict[str, Problem] = {}
    cleaned: dict[str, list[CleanPhoto]] = {}
    for line_id, raws in photos.items():
        raws = [raw for raw in raws if raw]
        if line_id not in line_ids or not raws:
            continue
        key = f"line:{line_id}:photos"
        if len(raws) > limit:
            errors[key] = Problem("too_many_photos", {"max": limit})
            continue
        try:
            cleaned[line_id] = [clean_photo(raw, max_bytes=max_bytes, max_side=max_side) for raw in raws]
        except PhotoError as exc:
            errors[key] = Problem(exc.code, {"max_mb": max(1, max_bytes // 1_048_576)})
    if errors:
        raise CustomerInputError(errors)
    return cleaned


def _submitted(order: Order, submission: str) -> Optional[Return]:
    """The return an earlier request of this very submission created (a double click)."""
    events = db.session.scalars(select(Event).join(Return, Return.id == Event.return_id)
                                .where(Return.order_id == order.id, Event.type == "create")).all()
    return next((db.session.get(Return, e.return_id) for e in events
                 if (e.data or {}).get("submission") == submission), None)


def submit(order_number: str, email: str, selection: list[Selection], resolution: Optional[str],
           photos: dict[str, list[bytes]], locale: Optional[str], now: datetime,
           submission: Optional[str] = None) -> Return:
    """Create the return (``returns.create_return``, actor ``customer``) with the photos,
    re-encoded, on its items, in one transaction. ``locale`` is the language the customer
    reads the pages in: the mails follow it.

    ``submission`` identifies the summary the customer sent: sent twice (a double click, a
    reload), it gives the same return once. Submissions of one order wait for each other
    (the order row is locked until the return is committed), so the second one sees the
    first's return even when both arrive at the same instant."""
    try:
        cleaned = _clean_photos(photos, {sel.line_id for sel in selection})  # before any lock
    except CustomerInputError as exc:
        exc.review = review(order_number, email, selection, resolution, now)
        exc.order = exc.review.order
        raise
    try:
        order = returns_service.order_for_customer((order_number or "").strip(), email)
        if submission:
            # A write on the order: a row lock on PostgreSQL, the write lock on SQLite.
            db.session.execute(update(Order).where(Order.id == order.id).values(updated_at=Order.updated_at)
                               .execution_options(synchronize_session=False))
            earlier = _submitted(order, submission)
            if earlier is not None:
                db.session.commit()
                return earlier
        summary = review(order_number, email, selection, resolution, now)
    except NotFound:
        db.session.rollback()
        raise CustomerInputError({"lookup": Problem("not_found")}) from None
    except CustomerInputError:
        db.session.rollback()
        raise
    view, items = summary.order, summary.items
    data = {
        "order_number": view.order_number, "email": email, "resolution": resolution,
        "locale": locale if locale in ("en", "fr") else None, "submission": submission,
        "items": [{"line_id": i.line.line_id, "quantity": i.quantity, "reason": i.reason, "comment": i.comment,
                   "photos": [(p.content_type, p.data) for p in cleaned.get(i.line.line_id, [])]}
                  for i in items],
    }
    try:
        return returns_service.create_return(data, "customer", now)
    except NotFound:
        raise CustomerInputError({"lookup": Problem("not_found")}) from None
    except ItemProblem as exc:
        # Another return took the units in the meantime (two tabs, two people).
        db.session.rollback()
        fresh = find_order(order_number, email, now)
        errors = {}
        for index, problem in exc.problems.items():
            line_id = problem.get("line_id") or items[index].line.line_id
            line = fresh.line(line_id)
            if exc.code == "quantity_exceeded" and line is not None and line.eligible:
                errors[f"line:{line_id}:quantity"] = Problem("quantity_exceeded",
                                                             {"max": line.returnable_quantity})
            else:
                errors[f"line:{line_id}"] = Problem((line.reason_code if line else None)
                                                    or problem.get("reason_code") or "not_eligible")
        error = CustomerInputError(errors)
        error.order = fresh
        raise error from None


# --- a return, through its status token -------------------------------------------------------

def return_for_token(token: str) -> Return:
    """The one return a status token was made for; a tampered or foreign token is a 404."""
    code = read_status_token(token or "")
    ret = db.session.scalar(select(Return).where(Return.rma_code == code)) if code else None
    if ret is None:
        raise NotFound("This link is not valid.")
    return ret


@dataclass(frozen=True)
class TimelineEntry:
    at: datetime
    kind: str
    actor: str
    data: dict[str, Any]


# Audit events a customer reads, in plain words (the web face words them); the rest
# (label voiding, internal notes) stays for the agents.
CUSTOMER_EVENTS = ("create", "approve", "reject", "cancel", "ship", "receive", "expire", "triage",
                   "dispute", "resolve", "inspect", "refund_partial", "refund", "close", "label_issued")


@dataclass(frozen=True)
class StatusView:
    ret: Return
    rma_number: str
    token: str
    timeline: list[TimelineEntry]
    label: Optional[Label]
    label_state: str  # ready | pending | awaiting_approval | arrived | voided | expired | none
    refund: dict[str, Any]
    amount_due: Decimal
    due_at: datetime
    can_cancel: bool
    dispute: Optional[Dispute]
    messages: list[DisputeMessage]
    label_valid_days: int
    photos: int

    @property
    def shows_label(self) -> bool:
        """The label matters until the parcel has arrived."""
        return self.ret.status in ("requested", "authorized", "in_transit")

    @property
    def refund_state(self) -> str:
        """What the customer gets, in one word: ``void`` (the return did not go ahead),
        ``refunded``, ``due`` (money to come), ``nothing`` (nothing to refund, exchange or
        credit: the fees take the whole value, or the items were refused after checking),
        ``exchange`` / ``store_credit`` (to come once the items are checked) or
        ``exchange_done`` / ``store_credit_done`` (the return was closed: sent, issued)."""
        ret = self.ret
        if ret.status in sm.RELEASES_UNITS:
            return "void"
        if ret.status == "refunded" or (ret.status == "closed" and money(ret.amount_refunded or 0) > 0):
            return "refunded"
        if ret.resolution == "refund":
            return "due" if self.amount_due > 0 else "nothing"
        if self.value_due <= 0:
            return "nothing"
        return f"{ret.resolution}_done" if ret.status == "closed" else ret.resolution

    @property
    def owed_now(self) -> tuple[Decimal, Decimal]:
        """(what is left to refund with the L242-4 surcharge, the surcharge): the surcharge is
        0 until the refund is late."""
        left, surcharge = left_and_surcharge(self.ret, self.refund)
        return left + surcharge, surcharge

    @property
    def value_due(self) -> Decimal:
        """The value the customer gets back in money, goods or credit (representation's)."""
        return return_value_due(self.ret)

    @property
    def has_evidence(self) -> bool:
        """The carrier scanned the parcel or the warehouse received it."""
        return self.ret.first_scan_at is not None or self.ret.received_at is not None

    @property
    def handler_name(self) -> Optional[str]:
        return self.dispute.handler.name if self.dispute is not None and self.dispute.handler else None

    @property
    def can_write(self) -> bool:
        return self.dispute is not None and self.dispute.status == "open"


# The parcel is at the warehouse: the label has done its job.
ARRIVED = frozenset({"received", "disputed", "inspected", "refunded", "closed"})


def label_state(ret: Return) -> tuple[Optional[Label], str]:
    from . import labels
    label = current_label(ret)
    if ret.status == "requested":
        return label, "awaiting_approval"
    if ret.status in ARRIVED:
        return label, "arrived"
    if label is None:
        return None, "none"
    if labels.downloadable(ret) is label:  # the label service decides what may be printed
        return label, "ready"
    if label.status in ("pending", "failed"):
        return label, "pending"
    if ret.status == "expired":  # the expiry voided the label nobody used in time
        return label, "expired"
    return label, label.status if label.status in ("voided", "expired") else "none"


def status(token: str, now: datetime) -> StatusView:
    ret = return_for_token(token)
    events = db.session.scalars(select(Event).where(Event.return_id == ret.id, Event.type.in_(CUSTOMER_EVENTS))
                                .order_by(Event.at, Event.id)).all()
    names = {i.line_id: i.name for i in ret.items}
    timeline = []
    for e in events:
        data = dict(e.data or {})
        if e.type == "triage":
            data["name"] = names.get(data.get("line_id"), "")
        timeline.append(TimelineEntry(e.at, e.type, e.actor, data))
    label, state = label_state(ret)
    refund = refund_block(ret, now)
    dispute = ret.disputes[-1] if ret.disputes else None
    return StatusView(ret, format_number(ret.rma_code), status_token(ret.rma_code), timeline, label, state,
                      refund, return_amount_due(ret), parse_rfc3339(refund["due_at"]),
                      "cancel" in sm.allowed_actions(ret.status) and ret.status in sm.CUSTOMER_CANCELLABLE,
                      dispute, list(dispute.messages) if dispute else [],
                      int(settings().get("LABEL_EXPIRY_DAYS", 28)),
                      sum(len(i.photos) for i in ret.items))


def label_pdf(token: str) -> tuple[Return, Optional[Label], str]:
    """The return, its current label and the label's state (``ready`` when the PDF can be
    downloaded)."""
    ret = return_for_token(token)
    label, state = label_state(ret)
    return ret, label, state


def cancel(token: str, now: datetime) -> Return:
    """The customer cancels (until the parcel is shipped); the label is voided."""
    ret = return_for_token(token)
    return returns_service.cancel(ret.rma_code, "customer", now)


def post_message(token: str, body: str, now: datetime) -> DisputeMessage:
    """A message from the customer to the handler of the return's open dispute."""
    from . import disputes
    ret = return_for_token(token)
    dispute = next((d for d in reversed(ret.disputes) if d.status == "open"), None)
    if dispute is None:
        raise ApiError(409, "conflict", "This return has no open dispute.")
    body = (body or "").strip()
    if not body:
        raise CustomerInputError({"body": Problem("message_required")})
    if len(body) > MESSAGE_MAX:
        raise CustomerInputError({"body": Problem("message_too_long", {"max": MESSAGE_MAX})})
    return disputes.post_customer_message(dispute, body, now)

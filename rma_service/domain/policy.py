"""The shop's return policy: eligibility of order lines, fees, approval and the amount due.

Inputs are plain values so that every rule is testable without a database.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Iterable, Optional

from . import DomainError

REASONS = ("damaged", "defective", "wrong_item", "not_as_described", "too_small", "too_large",
           "changed_mind", "arrived_late", "other")
# The shop pays return shipping when the return is its fault.
SHOP_FAULT_REASONS = frozenset({"damaged", "defective", "wrong_item", "not_as_described"})
RESOLUTIONS = ("refund", "exchange", "store_credit")
CONDITIONS = ("new", "like_new", "used", "damaged")
DISPOSITIONS = ("restock", "refurbish", "dispute")
INELIGIBILITY_REASONS = ("window_expired", "not_returnable", "not_delivered", "already_returned")
CENT = Decimal("0.01")


@dataclass(frozen=True)
class Policy:
    window_days: int = 30
    non_returnable_categories: frozenset[str] = frozenset()
    shipping_fee: Decimal = Decimal("0")
    restocking_fee_rate: Decimal = Decimal("0")
    approval_threshold: Decimal = Decimal("500")
    resolutions: tuple[str, ...] = RESOLUTIONS


@dataclass(frozen=True)
class LineFacts:
    """What the policy needs to know about one order line."""

    quantity: int
    reserved_quantity: int = 0
    category: Optional[str] = None
    returnable: Optional[bool] = None


@dataclass(frozen=True)
class Eligibility:
    eligible: bool
    reason_code: Optional[str]
    returnable_quantity: int


def return_deadline(delivered_at: Optional[datetime], policy: Policy) -> Optional[datetime]:
    return None if delivered_at is None else delivered_at + timedelta(days=policy.window_days)


def line_eligibility(line: LineFacts, delivered_at: Optional[datetime], now: datetime,
                     policy: Policy) -> Eligibility:
    """Whether a line can be returned now, and how many units are left to return.

    The first rule that fails is the reason: a final-sale item says ``not_returnable`` even
    after the window; an item not yet delivered says ``not_delivered``.
    """
    left = max(0, line.quantity - line.reserved_quantity)
    if line.returnable is False or (line.category or "") in policy.non_returnable_categories:
        reason = "not_returnable"
    elif delivered_at is None:
        reason = "not_delivered"
    elif now > delivered_at + timedelta(days=policy.window_days):
        reason = "window_expired"
    elif left == 0:
        reason = "already_returned"
    else:
        return Eligibility(True, None, left)
    return Eligibility(False, reason, 0)


@dataclass(frozen=True)
class RequestedItem:
    line_id: str
    quantity: int
    reason: str
    unit_price: Decimal
    comment: Optional[str] = None


@dataclass(frozen=True)
class Quote:
    """What the customer sees before submitting, and what the return records."""

    items_value: Decimal
    shipping_fee: Decimal
    restocking_fee: Decimal
    amount_due: Decimal
    needs_approval: bool
    customer_pays_shipping: bool
    notes: list[str] = field(default_factory=list)


class ItemProblem(DomainError):
    """One or more requested items break a rule; ``problems`` maps item index to a code."""

    def __init__(self, code: str, detail: str, problems: dict[int, dict]):
        super().__init__(detail, problems=problems)
        self.code = code
        self.problems = problems


def money(value: Decimal) -> Decimal:
    return Decimal(value).quantize(CENT, rounding=ROUND_HALF_UP)


def check_items(items: list[RequestedItem], lines: dict[str, tuple[LineFacts, Eligibility]]) -> None:
    """Raise ItemProblem when an item is ineligible (``not_eligible``) or asks for more than
    is left (``quantity_exceeded``, also when nothing is left). Duplicate lines in one
    request are summed."""
    ineligible: dict[int, dict] = {}
    exceeded: dict[int, dict] = {}
    asked: dict[str, int] = {}
    for i, item in enumerate(items):
        facts, elig = lines[item.line_id]
        # A line whose units are all taken by other returns is a quantity problem for the
        # request (the contract's quantity_exceeded, also when requests race), while the
        # order's view of the line says already_returned.
        if not elig.eligible and elig.reason_code != "already_returned":
            ineligible[i] = {"line_id": item.line_id, "reason_code": elig.reason_code}
            continue
        asked[item.line_id] = asked.get(item.line_id, 0) + item.quantity
        if asked[item.line_id] > elig.returnable_quantity:
            exceeded[i] = {"line_id": item.line_id, "requested": asked[item.line_id],
                           "returnable_quantity": elig.returnable_quantity}
    if ineligible:
        raise ItemProblem("not_eligible", "Some items cannot be returned.", ineligible)
    if exceeded:
        raise ItemProblem("quantity_exceeded", "More units requested than are left to return.", exceeded)


def quote(items: Iterable[RequestedItem], resolution: str, policy: Policy) -> Quote:
    """Fees and amount due for a return request.

    Return shipping is on the customer only when no item is the shop's fault (one parcel
    carries them all); the restocking fee applies to the items returned for the customer's
    own reasons. Exchanges and store credit refund no money (``amount_due`` 0).
    """
    items = list(items)
    value = money(sum((it.unit_price * it.quantity for it in items), Decimal("0")))
    customer_value = money(sum((it.unit_price * it.quantity for it in items
                                if it.reason not in SHOP_FAULT_REASONS), Decimal("0")))
    customer_pays = bool(items) and all(it.reason not in SHOP_FAULT_REASONS for it in items)
    shipping_fee = money(policy.shipping_fee) if customer_pays else Decimal("0.00")
    restocking_fee = restocking_fee_on(customer_value, policy.restocking_fee_rate)
    notes = []
    if customer_pays and shipping_fee:
        notes.append("return_shipping_fee")
    if restocking_fee:
        notes.append("restocking_fee")
    needs_approval = value > policy.approval_threshold or any(it.reason == "other" for it in items)
    due = amount_due(value, shipping_fee, restocking_fee, resolution)
    return Quote(value, shipping_fee, restocking_fee, due, needs_approval, customer_pays, notes)


def restocking_fee_on(customer_value: Decimal, rate: Decimal) -> Decimal:
    """The restocking fee on the value of the items kept for the customer's own reasons: at
    the quote the units announced, once the parcel is counted the units that arrived (a
    disputed item at the share its dispute counted)."""
    return money(customer_value * rate)


def amount_due(items_value: Decimal, shipping_fee: Decimal, restocking_fee: Decimal,
               resolution: str) -> Decimal:
    if resolution != "refund":
        return Decimal("0.00")
    return max(Decimal("0.00"), money(items_value - shipping_fee - restocking_fee))

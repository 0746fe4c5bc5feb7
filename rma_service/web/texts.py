"""The words customers read for the service's codes: reasons, resolutions, statuses, and the
problems ``services.customer`` reports. One place, in English and French (Flask-Babel)."""
from __future__ import annotations

from decimal import Decimal
from typing import Optional

from flask_babel import format_currency, format_date, gettext, lazy_gettext as _l, ngettext

from ..services.customer import LineView, OrderView, Problem

REASON_LABELS = {
    "damaged": _l("Arrived damaged"),
    "defective": _l("Faulty, does not work"),
    "wrong_item": _l("Wrong item sent"),
    "not_as_described": _l("Not as described"),
    "too_small": _l("Too small"),
    "too_large": _l("Too large"),
    "changed_mind": _l("Changed my mind"),
    "arrived_late": _l("Arrived too late"),
    "other": _l("Other reason (please explain)"),
}

RESOLUTION_LABELS = {
    "refund": _l("Refund"),
    "exchange": _l("Exchange"),
    "store_credit": _l("Store credit"),
}

RESOLUTION_HINTS = {
    "refund": _l("Your money back, to the payment method you used for the order."),
    "exchange": _l("We send you the item again (for example in another size) instead of refunding it."),
    "store_credit": _l("A voucher to spend in the shop instead of money back. Only if you prefer it."),
}

# What the customer reads as the headline of a return's status.
STATUS_LABELS = {
    "requested": _l("Waiting for our approval"),
    "authorized": _l("Accepted: waiting for your parcel"),
    "in_transit": _l("Your parcel is on its way to us"),
    "received": _l("We received your parcel"),
    "disputed": _l("We are looking into a difference"),
    "inspected": _l("Items checked"),
    "rejected": _l("Declined"),
    "cancelled": _l("Cancelled"),
    "expired": _l("Expired"),
    "refunded": _l("Refunded"),
    "closed": _l("Completed"),
}

CATEGORY_REASONS = {
    "gift_card": _l("Gift cards cannot be returned."),
    "hygiene": _l("For hygiene reasons this item cannot be returned."),
    "perishable": _l("Perishable goods cannot be returned."),
    "final_sale": _l("Final sale: this item cannot be returned."),
}


def money(amount, currency: str) -> str:
    """An amount (Decimal or the API's decimal string) in the reader's format: "€49.90", "49,90 €"."""
    return format_currency(Decimal(str(amount)), currency)


def day(value) -> str:
    return format_date(value, "long") if value is not None else ""


def ineligible_reason(line: LineView, order: OrderView) -> str:
    """Why a line cannot be returned, in plain words."""
    code = line.reason_code
    if code == "window_expired":
        return gettext("The return period ended on %(date)s.", date=day(order.window_ends))
    if code == "not_delivered":
        return gettext("Not delivered yet: you can return it once it has arrived.")
    if code == "already_returned":
        return ngettext("Already returned: it is in a return you requested.",
                        "Already returned: all %(num)d are in returns you requested.", line.quantity)
    if code == "not_returnable":
        if line.category in CATEGORY_REASONS:
            return str(CATEGORY_REASONS[line.category])
        return gettext("Final sale: this item cannot be returned.")
    return gettext("This item cannot be returned.")


def problem_message(problem: Problem) -> str:
    """A sentence for a problem ``services.customer`` found in the customer's input."""
    p, code = problem.params, problem.code
    messages = {
        "not_found": lambda: gettext("We could not find an order with this number and email address. "
                                     "Check both and try again."),
        "no_items": lambda: gettext("Tick at least one item to return."),
        "unknown_line": lambda: gettext("This item is not part of your order."),
        "resolution_required": lambda: gettext("Choose what you would like instead of the item."),
        "quantity_required": lambda: gettext("Choose how many to return (up to %(max)d).", max=p.get("max", 1)),
        "quantity_exceeded": lambda: ngettext("You can return at most %(num)d of this item.",
                                              "You can return at most %(num)d of this item.", p.get("max", 0))
        if p.get("max") else gettext("This item has already been returned."),
        "reason_required": lambda: gettext("Choose a reason for returning this item."),
        "comment_required": lambda: gettext("Tell us the reason in a few words: it is required for "
                                            "“Other reason”."),
        "comment_too_long": lambda: gettext("Keep the comment under %(max)d characters.", max=p.get("max", 0)),
        "too_many_photos": lambda: gettext("Choose at most %(max)d photos for this item.", max=p.get("max", 3)),
        "photo_type": lambda: gettext("Photos must be JPEG, PNG or WebP images. Choose the photos again."),
        "photo_too_large": lambda: gettext("A photo is too large: at most %(max)d MB each. Choose the photos "
                                           "again.", max=p.get("max_mb", 10)),
        "photo_unreadable": lambda: gettext("A photo could not be read. Choose the photos again."),
        "message_required": lambda: gettext("Write your message."),
        "message_too_long": lambda: gettext("Keep the message under %(max)d characters.", max=p.get("max", 0)),
        "window_expired": lambda: gettext("The return period for this item is over."),
        "not_delivered": lambda: gettext("This item has not been delivered yet."),
        "not_returnable": lambda: gettext("This item cannot be returned."),
        "already_returned": lambda: gettext("This item has already been returned."),
        "not_eligible": lambda: gettext("This item cannot be returned."),
    }
    make = messages.get(code)
    return make() if make else gettext("Check this field.")


def status_label(status: str) -> str:
    return str(STATUS_LABELS.get(status, status))


def reason_label(reason: Optional[str]) -> str:
    """The reason as the customer reads it back (the list's "please explain" left out)."""
    if reason == "other":
        return gettext("Other reason")
    return str(REASON_LABELS.get(reason or "", reason or ""))

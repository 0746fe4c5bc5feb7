"""THE state machine of a return: one transition table, nothing else decides a status.

The action names are the vocabulary used everywhere: service functions, audit event types,
API paths and admin buttons.
"""
from __future__ import annotations

from . import DomainError

STATUSES = ("requested", "authorized", "in_transit", "received", "disputed", "inspected",
            "rejected", "cancelled", "expired", "refunded", "closed")
FINAL = frozenset({"rejected", "cancelled", "expired", "refunded", "closed"})
OPEN = frozenset(STATUSES) - FINAL

# action -> {from_status: to_status}
TRANSITIONS: dict[str, dict[str, str]] = {
    "approve": {"requested": "authorized"},
    "reject": {"requested": "rejected"},
    "cancel": {"requested": "cancelled", "authorized": "cancelled"},
    "ship": {"authorized": "in_transit"},          # first carrier scan
    "receive": {"authorized": "received", "in_transit": "received"},
    "expire": {"authorized": "expired"},            # label unused too long
    "inspect": {"received": "inspected"},           # every item triaged, no dispute
    "dispute": {"received": "disputed"},            # an item disputed
    "resolve": {"disputed": "inspected"},           # dispute resolved
    "refund": {"inspected": "refunded"},            # refund recorded for the amount due
    "close": {"inspected": "closed"},               # exchange, store credit or nothing due
}

# Statuses in which the customer may still cancel (before the parcel is shipped).
CUSTOMER_CANCELLABLE = frozenset(TRANSITIONS["cancel"])
# Statuses that release the units a return held on its order lines.
RELEASES_UNITS = frozenset({"rejected", "cancelled", "expired"})


class InvalidTransition(DomainError):
    code = "invalid_transition"

    def __init__(self, status: str, action: str):
        super().__init__(f"'{action}' is not possible on a return that is {status}; allowed now: "
                         f"{', '.join(allowed_actions(status)) or 'nothing (final status)'}.",
                         status=status, action=action)
        self.status = status
        self.action = action


def next_status(status: str, action: str) -> str:
    """The status after ``action``; raises InvalidTransition for any move not in the table."""
    try:
        return TRANSITIONS[action][status]
    except KeyError:
        raise InvalidTransition(status, action) from None


def can(status: str, action: str) -> bool:
    return status in TRANSITIONS.get(action, {})


def allowed_actions(status: str) -> list[str]:
    return [action for action, moves in TRANSITIONS.items() if status in moves]


def is_final(status: str) -> bool:
    return status in FINAL

"""Use cases. One public function = one transaction; the only writers of a return's status."""
from __future__ import annotations

from decimal import Decimal
from typing import Any

from flask import current_app

from ..domain.policy import Policy


def settings() -> dict[str, Any]:
    return current_app.config["RMA"]


def policy() -> Policy:
    s = settings()
    return Policy(
        window_days=int(s["RETURN_WINDOW_DAYS"]),
        non_returnable_categories=frozenset(s["NON_RETURNABLE_CATEGORIES"]),
        shipping_fee=Decimal(s["RETURN_SHIPPING_FEE"]),
        restocking_fee_rate=Decimal(s["RESTOCKING_FEE_RATE"]),
        approval_threshold=Decimal(s["APPROVAL_THRESHOLD"]),
        resolutions=tuple(s["RESOLUTIONS"]),
    )

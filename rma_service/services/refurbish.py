"""The refurbish work step: an item triaged ``refurbish`` ends ``refurbished`` (back in stock as
grade B; the shop is told with ``item.refurbished``) or ``recycled``. French law (AGEC, 2020)
forbids destroying unsold goods, so there is no third ending."""
from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlalchemy import update

from ..domain.rma_number import format_number
from ..errors import ApiError, NotFound
from ..extensions import db
from ..models import ReturnItem
from .audit import emit, record

OUTCOMES = ("refurbished", "recycled")
REFURBISHED_GRADE = "B"


def finish(item_id: int, outcome: str, note: Optional[str], actor: str, now: datetime) -> ReturnItem:
    if outcome not in OUTCOMES:
        raise ApiError(422, "validation_error", f"outcome must be one of {', '.join(OUTCOMES)}.")
    item = db.session.get(ReturnItem, item_id)
    if item is None:
        raise NotFound("No such item.")
    # One conditional UPDATE: two agents finishing the same item cannot both win.
    done = db.session.execute(
        update(ReturnItem).where(ReturnItem.id == item_id, ReturnItem.disposition == "refurbish",
                                 ReturnItem.refurbish_status == "pending")
        .values(refurbish_status=outcome).execution_options(synchronize_session=False))
    if done.rowcount != 1:
        db.session.rollback()
        raise ApiError(409, "conflict", f"This item is not waiting for refurbishment "
                                        f"(it is {item.refurbish_status or item.disposition}).")
    db.session.refresh(item)
    ret = item.ret
    data = {"rma_number": format_number(ret.rma_code), "line_id": item.line_id, "sku": item.sku,
            "quantity": item.received_quantity, "condition": item.condition}
    if outcome == "refurbished":
        data["grade"] = REFURBISHED_GRADE
    record(ret, f"item_{outcome}", actor, now, data={**data, "note": note})
    if outcome == "refurbished":
        emit("item.refurbished", data, now, ret.id)
    db.session.commit()
    return item

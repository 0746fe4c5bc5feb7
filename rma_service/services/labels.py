"""Return labels: requested when a return is authorized, issued outside the transaction by
the label job (a carrier call never runs inside a database transaction)."""
from __future__ import annotations

from datetime import datetime

from ..extensions import db
from ..models import Label, Return
from . import settings
from .audit import record
from .representation import current_label


def request_label(ret: Return, now: datetime) -> Label:
    label = Label(return_id=ret.id, carrier=settings().get("CARRIER", "self"), status="pending",
                  next_attempt_at=now, created_at=now)
    db.session.add(label)
    ret.labels.append(label)
    return label


def void_current(ret: Return, now: datetime, actor: str) -> None:
    label = current_label(ret)
    if label is not None and label.status in ("pending", "issued", "failed"):
        label.status = "voided"
        label.voided_at = now
        record(ret, "label_voided", actor, now, data={"tracking_number": label.tracking_number})


def issue_due(now: datetime, limit: int = 50) -> int:
    """Issue the labels that are pending and due (carrier calls outside any transaction).
    Returns how many were issued. Filled in by the labels work (issue 3)."""
    return 0

"""Disputes: opened when an item is triaged ``dispute``."""
from __future__ import annotations

from datetime import datetime

from ..extensions import db
from ..models import Dispute, Return, ReturnItem
from .audit import record


def open_for_item(ret: Return, item: ReturnItem, actor: str, now: datetime) -> Dispute:
    dispute = next((d for d in ret.disputes if d.status == "open"), None)
    if dispute is None:
        dispute = Dispute(return_id=ret.id, status="open", customer_email=ret.customer_email, opened_at=now)
        db.session.add(dispute)
        ret.disputes.append(dispute)
        db.session.flush()
        record(ret, "dispute_opened", actor, now, dispute_id=dispute.id, data={"line_id": item.line_id})
    dispute.amount_at_stake = (dispute.amount_at_stake or 0) + item.unit_price * item.received_quantity
    if item.triage_note:
        dispute.findings = "\n".join(filter(None, [dispute.findings, f"{item.line_id}: {item.triage_note}"]))
    return dispute

"""Notes between agents on a return: audit events of type ``note`` (never shown to customers)."""
from __future__ import annotations

from datetime import datetime

from ..errors import ApiError
from ..extensions import db
from ..models import Event
from .audit import record
from .returns import get_return

MAX_NOTE = 5000


def add_note(number: str, body: str, actor: str, now: datetime) -> Event:
    body = (body or "").strip()
    if not body or len(body) > MAX_NOTE:
        raise ApiError(422, "validation_error", f"A note has 1 to {MAX_NOTE} characters.")
    ret = get_return(number)
    event = record(ret, "note", actor, now, data={"body": body})
    db.session.commit()
    return event

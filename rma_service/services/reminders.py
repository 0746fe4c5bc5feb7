"""Reminder sweeps: refund deadline, unused label, dispute without a reply.

Never forgets, never repeats
----------------------------
Each occurrence of a reminder has a stable key (``domain.deadlines``: ``refund_due_soon:3``,
``label_unused:7``, ``dispute_no_reply:handler:<stamp>`` …), stored as
``reminders_sent.key`` = ``return:<id>:<key>`` or ``dispute:<id>:<key>`` under a unique index.
A sweep inserts that row first (``INSERT … ON CONFLICT DO NOTHING``) and only when it was
inserted queues the webhook event and the mails, in the SAME transaction: the reminder and
its messages are committed together or not at all, and a second sweep — in this process or
another — finds the key and sends nothing. The messages themselves leave through the outbox
(``deliver_webhooks``, ``send_mail``).

What applies is decided at ``now`` by ``domain.deadlines``: after downtime only the latest
occurrence is sent (see its docstring).

Cost proportional to what is due
--------------------------------
Returns carry two hints, ``refund_reminder_at`` and ``label_reminder_at``: no reminder of that
kind can be due before the hint; NULL means never again (final status, other resolution).
A sweep reads ``WHERE hint <= now`` through a partial index, handles each return and writes
the exact next instant back. A return whose schedule facts change (status, resolution,
created_at, first_scan_at, received_at) gets both hints reset to 1970 by an ORM listener
(``models._recheck_reminders``), so the next sweep looks at it. A hint is a lower bound:
visiting a return too early costs one look, never a missed reminder.

Disputes are few (each has a human handler), so the dispute sweep reads the open disputes
older than the handler delay through ``ix_disputes_status_handler``.

Refund reminders need evidence of the return (a carrier scan or the receipt): before that the
refund cannot be late (``deadlines.refund_status``) and the shop may withhold it (2011/83/EU
art. 13(3)), so nothing is sent; such returns are looked at again daily once a reminder could
be near (and at once when the evidence is recorded).
"""
from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Optional

from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import joinedload, selectinload

from ..domain import deadlines
from ..domain import status as sm
from ..extensions import db
from ..models import Dispute, DisputeMessage, Label, ReminderSent, Return
from . import settings
from .audit import emit, transition
from .claims import RunBudget, insert_ignore, is_postgresql
from .notifications import (admin_emails, enqueue_mail, return_context, return_handler, staff_locale,
                            team_email)
from .representation import current_label, return_payload

log = logging.getLogger(__name__)

ACTOR = "scheduler"
DAY = timedelta(days=1)
# A return whose reminder could not be handled (an unexpected error) is tried again after this.
RETRY_AFTER_ERROR = timedelta(hours=1)


def _cfg_int(name: str) -> int:
    return int(settings()[name])


def _soon_days() -> list[int]:
    value = settings()["REFUND_REMINDER_DAYS"]
    if isinstance(value, str):
        value = [v for v in value.split(",") if v.strip()]
    return sorted({int(v) for v in value}, reverse=True)


def mark_sent(key: str, kind: str, now: datetime, *, return_id: Optional[int] = None,
              dispute_id: Optional[int] = None) -> bool:
    """Record a reminder occurrence; False when it was recorded before (by anyone)."""
    table = ReminderSent.__table__
    inserted = db.session.execute(insert_ignore(table, {
        "key": key, "kind": kind, "return_id": return_id, "dispute_id": dispute_id, "sent_at": now,
    }).returning(table.c.id)).scalar_one_or_none()
    return inserted is not None


# --- the sweep over returns (shared by refund and label reminders) --------------------------

@dataclass
class Due:
    """A reminder occurrence that applies now (``key`` as in ``domain.deadlines``)."""

    ret: Return
    key: str
    kind: str
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def full_key(self) -> str:
        return f"return:{self.ret.id}:{self.key}"


# A mail to queue: (to, template, locale, context, return_id).
Mail = tuple[str, str, str, dict[str, Any], Optional[int]]
# plan(ret, now) → (occurrences that apply now, next hint); send(due, now) does what the
# occurrence means (webhook event, status change …) and returns the mails to queue.
Planner = Callable[[Return, datetime], tuple[list[Due], Optional[datetime]]]
Sender = Callable[[Due, datetime], list[Mail]]


def _queue(mails: list[Mail], now: datetime) -> None:
    for to, template, locale, context, return_id in mails:
        enqueue_mail(to, template, locale, context, now, return_id)


def due_query(column, now: datetime, limit: int, *, lock: bool):
    """The due-selection query of a sweep: an index range scan of the partial index on the
    hint (``EXPLAIN`` of it is in bench/README.md)."""
    query = select(Return.id).where(column <= now).order_by(column).limit(limit)
    return query.with_for_update(skip_locked=True) if lock else query


def _claim_returns(column, now: datetime, limit: int) -> list[int]:
    """Due returns, locked for this transaction (PostgreSQL: FOR UPDATE SKIP LOCKED)."""
    return list(db.session.scalars(due_query(column, now, limit, lock=is_postgresql())))


def _take_sqlite(column, return_id: int, now: datetime) -> bool:
    """SQLite: take one return with a conditional UPDATE, the first write of its transaction
    (SQLite has one writer at a time: from here until the commit nobody else writes)."""
    result = db.session.execute(update(Return).where(Return.id == return_id, column <= now)
                                .values({column.key: column}).execution_options(synchronize_session=False))
    return result.rowcount == 1


def _mark_many(dues: list[Due], now: datetime) -> set[str]:
    """Record the occurrences in one statement; the keys that were new (the others were
    recorded before, by anyone, and are not sent again)."""
    if not dues:
        return set()
    table = ReminderSent.__table__
    rows = [{"key": d.full_key, "kind": d.kind, "return_id": d.ret.id, "dispute_id": None, "sent_at": now}
            for d in dues]
    dialect = postgresql if is_postgresql() else sqlite
    statement = dialect.insert(table).values(rows).on_conflict_do_nothing().returning(table.c.key)
    return set(db.session.scalars(statement))


def _set_hints(column, hints: dict[int, Optional[datetime]]) -> None:
    """Write the next hints (one executemany). Core UPDATE: the hint is bookkeeping, it does
    not bump the return's version (an API request holding the return is not disturbed)."""
    if not hints:
        return
    table = Return.__table__
    db.session.execute(update(table).where(table.c.id == bindparam("return_id"))
                       .values({column.key: bindparam("hint")}),
                       [{"return_id": rid, "hint": at} for rid, at in hints.items()])


def _load(ids: list[int]) -> list[Return]:
    return list(db.session.scalars(
        select(Return).where(Return.id.in_(ids)).order_by(Return.id)
        .options(joinedload(Return.order), selectinload(Return.items), selectinload(Return.labels),
                 selectinload(Return.disputes).joinedload(Dispute.handler))))


def _settle(hint: Optional[datetime], now: datetime) -> Optional[datetime]:
    if hint is not None and hint <= now:
        return now + timedelta(seconds=1)  # never visit the same return twice in one run
    return hint


def _batch_fast(column, ids: list[int], now: datetime, plan: Planner, send: Sender) -> int:
    """Plan every return, record every occurrence in one INSERT, queue the messages of the
    new ones, write every hint in one executemany. Raises on any error (the caller redoes
    the batch carefully)."""
    hints: dict[int, Optional[datetime]] = {}
    dues: list[Due] = []
    for ret in _load(ids):
        occurrences, hint = plan(ret, now)
        dues += occurrences
        hints[ret.id] = _settle(hint, now)
    new = _mark_many(dues, now)
    sent, mails = 0, []
    for due in dues:
        if due.full_key in new:
            mails += send(due, now)
            sent += 1
    _queue(mails, now)  # after the webhook events: one INSERT for all the batch's mails
    db.session.flush()
    _set_hints(column, hints)
    return sent


def _batch_careful(column, ids: list[int], now: datetime, plan: Planner, send: Sender) -> int:
    """The same, one savepoint per return: a broken return is logged and retried later
    without holding back the others."""
    hints: dict[int, Optional[datetime]] = {}
    sent = 0
    for ret in _load(ids):
        return_id = ret.id
        savepoint = db.session.begin_nested()
        try:
            occurrences, hint = plan(ret, now)
            count = 0
            for due in occurrences:
                if due.full_key in _mark_many([due], now):
                    _queue(send(due, now), now)
                    count += 1
            db.session.flush()
            savepoint.commit()
            sent += count
            hints[return_id] = _settle(hint, now)
        except Exception:
            savepoint.rollback()
            log.exception("reminder sweep %s failed for return %s; retrying in %s", column.key, return_id,
                          RETRY_AFTER_ERROR)
            hints[return_id] = now + RETRY_AFTER_ERROR
    _set_hints(column, hints)
    return sent


def _sweep_returns(column, now: datetime, plan: Planner, send: Sender) -> int:
    """Visit every return whose ``column`` hint is due (see the module docstring).

    PostgreSQL: one transaction per batch, its rows locked (SKIP LOCKED); should anything
    fail, the batch is rolled back and redone with one savepoint per return. SQLite: one
    transaction per return, taken with a conditional UPDATE."""
    batch = _cfg_int("JOB_BATCH_SIZE")
    budget = RunBudget()
    sent = 0
    pg = is_postgresql()
    while not budget.exhausted():
        ids = _claim_returns(column, now, batch)
        if not ids:
            db.session.rollback()
            break
        if pg:
            try:
                sent_now = _batch_fast(column, ids, now, plan, send)
                db.session.commit()
            except Exception:
                db.session.rollback()
                ids = list(db.session.scalars(select(Return.id).where(Return.id.in_(ids), column <= now)
                                              .with_for_update(skip_locked=True)))
                sent_now = _batch_careful(column, ids, now, plan, send)
                db.session.commit()
            sent += sent_now
        else:
            for return_id in ids:
                if _take_sqlite(column, return_id, now):
                    sent += _batch_careful(column, [return_id], now, plan, send)
                db.session.commit()
        db.session.expunge_all()
    return sent


# --- refund reminders -----------------------------------------------------------------------

def _refund_outstanding(ret: Return) -> bool:
    return ret.resolution == "refund" and not sm.is_final(ret.status)


def next_refund_check(due_at: datetime, now: datetime, soon_days: list[int]) -> datetime:
    """The next instant at which ``deadlines.refund_reminders`` lists a new occurrence."""
    if now <= due_at:
        upcoming = [due_at - k * DAY for k in soon_days if due_at - k * DAY > now]
        # refund_overdue:0 is listed once now is past due_at
        return min(upcoming) if upcoming else due_at + timedelta(seconds=1)
    return due_at + ((now - due_at) // DAY + 1) * DAY


def refund_plan(ret: Return, now: datetime) -> tuple[list[Due], Optional[datetime]]:
    if not _refund_outstanding(ret):
        return [], None
    cfg = settings()
    days = int(cfg["REFUND_DEADLINE_DAYS"])
    soon = _soon_days()
    if ret.first_scan_at is None and ret.received_at is None:
        # No evidence yet: nothing can be late; look again daily once a reminder could be near.
        return [], max(ret.created_at + timedelta(days=days - max(soon, default=0)), now + DAY)
    st = deadlines.refund_status(ret.created_at, ret.first_scan_at, ret.received_at, ret.refunded_at, now,
                                 days=days, legal_interest_rate=Decimal(cfg["LEGAL_INTEREST_RATE"]))
    dues = []
    for key, _at in deadlines.refund_reminders(st.due_at, now, soon_days=soon):
        overdue = key.startswith("refund_overdue")
        if overdue and not st.overdue:
            continue
        dues.append(Due(ret, key, "refund_overdue" if overdue else "refund_due_soon", {"status": st}))
    return dues, next_refund_check(st.due_at, now, soon)


def refund_send(due: Due, now: datetime) -> list[Mail]:
    """Webhook ``return.refund_due_soon`` / ``return.refund_overdue`` (the Return plus the
    reminder key) and a mail to the dispute handler or the team (overdue: and the admins)."""
    ret, st = due.ret, due.facts["status"]
    payload = return_payload(ret, now)
    emit(f"return.{due.kind}", {**payload, "reminder_key": due.key}, now, ret.id)
    handler = return_handler(ret)
    context = {**return_context(ret, now, payload), "due_at": st.due_at, "days_late": st.days_late,
               "days_left": max(0, math.ceil((st.due_at - now) / DAY)), "surcharge_rate": st.surcharge_rate,
               "reminder_key": due.key, "handler_name": handler.name if handler else None}
    recipients = [handler.email if handler else team_email()]
    if due.kind == "refund_overdue":
        recipients += admin_emails()
    return [(to, due.kind, staff_locale(), context, ret.id) for to in dict.fromkeys(recipients)]


def refund_sweep(now: datetime) -> int:
    """``refund_reminders`` job: due in 3 days / 1 day → handler or team (webhook
    ``return.refund_due_soon``); overdue, then daily → handler or team and admins (webhook
    ``return.refund_overdue``). Returns the number of reminders sent."""
    return _sweep_returns(Return.refund_reminder_at, now, refund_plan, refund_send)


# --- label reminders ------------------------------------------------------------------------

def _issued_label(ret: Return) -> Optional[Label]:
    label = current_label(ret)
    if label is None or label.status != "issued" or label.issued_at is None:
        return None
    return label


def label_plan(ret: Return, now: datetime) -> tuple[list[Due], Optional[datetime]]:
    remind_days, expire_days = _cfg_int("LABEL_REMINDER_DAYS"), _cfg_int("LABEL_EXPIRY_DAYS")
    if ret.status == "requested":
        # A label can only be issued after approval, so no reminder before now + remind_days.
        return [], now + timedelta(days=remind_days)
    if ret.status != "authorized":
        return [], None  # shipped, received or finished: the label is no longer "unused"
    label = _issued_label(ret)
    if label is None:
        return [], now + timedelta(days=remind_days)  # issued later than now, reminded later still
    dues = [Due(ret, key, key.partition(":")[0], {"label": label, "remind_days": remind_days,
                                                  "expire_days": expire_days})
            for key, _at in deadlines.label_reminders(label.issued_at, now, remind_days=remind_days,
                                                      expire_days=expire_days)]
    remind_at = label.issued_at + timedelta(days=remind_days)
    expire_at = label.issued_at + timedelta(days=expire_days)
    if now >= expire_at:
        return dues, None  # expired by this visit
    return dues, remind_at if now < remind_at else expire_at


def label_send(due: Due, now: datetime) -> list[Mail]:
    """7 days: remind the customer. 28 days: expire the return through the state machine
    (audit event, ``return.expired`` webhook), void the label, tell the customer."""
    ret = due.ret
    if due.kind == "label_expired":
        from . import labels
        days = due.facts["expire_days"]
        transition(ret, "expire", ACTOR, now, data={"reason": "label_unused", "days": days},
                   effects=lambda: labels.void_current(ret, now, ACTOR))
        db.session.flush()
        return [(ret.customer_email, "return_expired", ret.locale, {**return_context(ret, now), "days": days},
                 ret.id)]
    label = due.facts["label"]
    context = {**return_context(ret, now), "days": due.facts["remind_days"],
               "expires_at": label.issued_at + timedelta(days=due.facts["expire_days"])}
    return [(ret.customer_email, "label_unused_reminder", ret.locale, context, ret.id)]


def label_sweep(now: datetime) -> int:
    """``label_reminders`` job: a label unused for 7 days → reminder to the customer; for 28
    days → the return expires (state machine action ``expire``, label voided, audit event,
    webhook ``return.expired``) and the customer is told. Returns the number of reminders."""
    return _sweep_returns(Return.label_reminder_at, now, label_plan, label_send)


# --- dispute reminders ----------------------------------------------------------------------

def waiting_since(dispute: Dispute) -> Optional[datetime]:
    """Since when the customer waits for the handler (see ``deadlines.dispute_reminders``)."""
    messages = db.session.execute(select(DisputeMessage.author, DisputeMessage.created_at)
                                  .where(DisputeMessage.dispute_id == dispute.id)
                                  .order_by(DisputeMessage.created_at, DisputeMessage.id)).all()
    handler_times = [at for author, at in messages if author == "handler"]
    if dispute.last_handler_reply_at is not None:
        handler_times.append(dispute.last_handler_reply_at)
    if not handler_times:
        return dispute.opened_at
    last_reply = max(handler_times)
    waiting = [at for author, at in messages if author == "customer" and at > last_reply]
    if dispute.last_customer_message_at is not None and dispute.last_customer_message_at > last_reply:
        waiting.append(dispute.last_customer_message_at)
    return min(waiting, default=None)


def dispute_one(dispute: Dispute, now: datetime) -> int:
    handler_hours, admin_hours = _cfg_int("DISPUTE_HANDLER_HOURS"), _cfg_int("DISPUTE_ADMIN_HOURS")
    since = waiting_since(dispute)
    sent = 0
    for key, _at in deadlines.dispute_reminders(since, now, handler_hours=handler_hours,
                                                admin_hours=admin_hours):
        if not mark_sent(f"dispute:{dispute.id}:{key}", "dispute_no_reply", now,
                         return_id=dispute.return_id, dispute_id=dispute.id):
            continue
        role = key.split(":")[1]
        handler = dispute.handler if dispute.handler is not None and dispute.handler.active else None
        if role == "handler" and handler is not None:
            recipients = [handler.email]
        else:
            recipients = admin_emails()
        ret = dispute.ret
        context: dict[str, Any] = {
            **return_context(ret, now), "role": role, "dispute_id": dispute.id,
            "hours": handler_hours if role == "handler" else admin_hours, "waiting_since": since,
            "handler_name": handler.name if handler else None,
        }
        for to in dict.fromkeys(recipients):
            enqueue_mail(to, "dispute_no_reply", staff_locale(), context, now, ret.id)
        sent += 1
    return sent


def dispute_sweep(now: datetime) -> int:
    """``dispute_reminders`` job: a customer waiting 48 h for the handler → the handler; 96 h
    → the admins. Returns the number of reminders sent."""
    handler_hours = _cfg_int("DISPUTE_HANDLER_HOURS")
    batch = _cfg_int("JOB_BATCH_SIZE")
    budget = RunBudget()
    pg = is_postgresql()
    sent, last_id = 0, 0
    while not budget.exhausted():
        query = (select(Dispute.id).where(Dispute.status == "open", Dispute.id > last_id,
                                          Dispute.opened_at <= now - timedelta(hours=handler_hours))
                 .order_by(Dispute.id).limit(batch))
        if pg:
            query = query.with_for_update(skip_locked=True)
        ids = list(db.session.scalars(query))
        if not ids:
            db.session.rollback()
            break
        last_id = ids[-1]
        disputes = db.session.scalars(select(Dispute).where(Dispute.id.in_(ids)).order_by(Dispute.id)
                                      .options(joinedload(Dispute.handler), joinedload(Dispute.ret))).all()
        for dispute in disputes:
            savepoint = db.session.begin_nested()
            try:
                sent += dispute_one(dispute, now)
                db.session.flush()
                savepoint.commit()
            except Exception:
                savepoint.rollback()
                log.exception("dispute reminder failed for dispute %s", dispute.id)
            if not pg:
                db.session.commit()
        db.session.commit()
        db.session.expunge_all()
    return sent


"""Disputes: opened when an item is triaged ``dispute``; each gets one dedicated handler
(chosen by ``domain/assignment.py``), a conversation between the customer and that handler,
and a resolution that decides what the disputed items count for in the refund.

Assignment under concurrency
----------------------------
Choosing "the least loaded handler" reads the loads, then writes an assignment: two disputes
opened at the same moment must not both see a handler at 19 of 20 and both give them one.

* PostgreSQL: ``_Pool.lock`` locks the candidate agents' rows (``SELECT … FROM agents WHERE
  handles_disputes AND active AND NOT away ORDER BY id FOR UPDATE``) inside the transaction,
  *before* counting open disputes. A second assigner waits on those row locks until the first
  commits; its count, a new statement under READ COMMITTED, then includes the first one's
  dispute. The locks are taken in id order, so assigners never deadlock among themselves.
* SQLite allows one writer at a time. ``_Pool.lock`` first runs an UPDATE that matches no row:
  that opens the write transaction and takes the database's single write lock until our
  commit, so nobody can commit an assignment between our count and our commit; and because
  the write transaction starts at that statement, every read after it sees all earlier
  commits (no stale snapshot). Nothing more is needed.

Lock order everywhere: the return row(s) → the dispute → the agents. Triage locks its return
first (``returns.get_return(for_update=True)``) and only then the agents; the functions here
that move disputes between handlers also lock those disputes' returns before the agents.
(An event or outbox row that references a return takes a key-share lock on it: holding the
agents while waiting for a return could otherwise deadlock with a triage.)

No handler available → the dispute waits unassigned (``handler_id`` NULL) until
``assign_waiting`` finds one: it runs when an agent becomes available (back from away,
activated, created, flagged for disputes) and is exposed for the scheduler.
"""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Iterable, Optional

from sqlalchemy import and_, func, or_, select, update

from ..domain.assignment import HandlerFacts, choose_handler
from ..domain.policy import money
from ..errors import ApiError, NotFound, validation_error
from ..extensions import db
from ..models import Agent, Dispute, DisputeMessage, Event, Return, ReturnItem
from . import settings
from .audit import emit, record, transition
from .representation import dispute_message_payload, dispute_payload
from .returns import close_if_nothing_due, recount_restocking_fee

OUTCOMES = ("accept", "partial", "reject")
AUTHORS = ("customer", "handler")
MAX_MESSAGE_LENGTH = 5000


def open_for_item(ret: Return, item: ReturnItem, actor: str, now: datetime) -> Dispute:
    """Add a disputed item to the return's open dispute, or open one and give it its handler.
    Runs inside the triage's transaction (the return row is locked); does not commit."""
    dispute = next((d for d in ret.disputes if d.status == "open"), None)
    created = dispute is None
    if dispute is None:
        dispute = Dispute(return_id=ret.id, status="open", customer_email=ret.customer_email, opened_at=now,
                          amount_at_stake=Decimal("0"))
        db.session.add(dispute)
        ret.disputes.append(dispute)
        db.session.flush()
        record(ret, "dispute_opened", actor, now, dispute_id=dispute.id, data={"line_id": item.line_id})
    else:
        # One event per disputed item: it is what ties an item to its dispute.
        record(ret, "dispute_item_added", actor, now, dispute_id=dispute.id, data={"line_id": item.line_id})
    dispute.amount_at_stake = money((dispute.amount_at_stake or 0) + item.unit_price * item.received_quantity)
    if item.triage_note:
        dispute.findings = "\n".join(filter(None, [dispute.findings, f"{item.line_id}: {item.triage_note}"]))
    if created:
        pool = _Pool.lock()
        agent = pool.choose(dispute)
        if agent is None:
            record(ret, "dispute_queued", actor, now, dispute_id=dispute.id,
                   data={"reason": "no dispute handler is available"})
        else:
            _set_handler(dispute, agent, pool, now, actor, "opened")
    return dispute


def post_customer_message(dispute: Dispute, body: str, now: datetime) -> DisputeMessage:
    """The customer writes to the dispute's handler (from the status page). One transaction.
    Raises ApiError 422 (empty or too long body) or 409 (dispute resolved): see post_message."""
    return post_message(dispute, "customer", body, now)


# --- assignment ------------------------------------------------------------------------------

def capacity() -> int:
    return int(settings().get("DISPUTE_CAPACITY", 20))


def _sqlite_write_lock() -> None:
    """On SQLite, start the write transaction now (see the module docstring)."""
    if db.session.get_bind().dialect.name == "sqlite":
        db.session.execute(update(Agent).where(Agent.id == -1).values(away=Agent.away)
                           .execution_options(synchronize_session=False))


def _lock_returns(return_ids: Iterable[int]) -> None:
    """Lock return rows in id order (first in the lock order)."""
    _sqlite_write_lock()
    ids = sorted(set(return_ids))
    if ids:
        db.session.execute(select(Return.id).where(Return.id.in_(ids)).order_by(Return.id).with_for_update())


def _previous_handler_id(dispute: Dispute) -> Optional[int]:
    """The handler of this customer's latest other dispute ("one contact")."""
    return db.session.scalar(
        select(Dispute.handler_id)
        .where(func.lower(Dispute.customer_email) == dispute.customer_email.strip().lower(),
               Dispute.id != dispute.id, Dispute.handler_id.is_not(None))
        .order_by(Dispute.opened_at.desc(), Dispute.id.desc()).limit(1))


class _Pool:
    """The agents who may take disputes, locked, with their open loads; kept current as this
    transaction assigns, so several assignments in one transaction spread correctly."""

    def __init__(self, agents: list[Agent], loads: dict[int, int]):
        self.agents = {a.id: a for a in agents}
        self.loads = loads

    @classmethod
    def lock(cls, also: Iterable[Optional[int]] = ()) -> "_Pool":
        """Lock the available dispute handlers (and the agents ``also`` names), in id order,
        then count their open disputes."""
        _sqlite_write_lock()
        condition = and_(Agent.handles_disputes.is_(True), Agent.active.is_(True), Agent.away.is_(False))
        extra = sorted({i for i in also if i is not None})
        if extra:
            condition = or_(condition, Agent.id.in_(extra))
        agents = list(db.session.scalars(
            select(Agent).where(condition).order_by(Agent.id).with_for_update()
            .execution_options(populate_existing=True)))
        loads: dict[int, int] = {}
        if agents:
            loads = {handler_id: n for handler_id, n in db.session.execute(
                select(Dispute.handler_id, func.count()).where(
                    Dispute.status == "open", Dispute.handler_id.in_([a.id for a in agents]))
                .group_by(Dispute.handler_id))}
        return cls(agents, loads)

    def facts(self) -> list[HandlerFacts]:
        return [HandlerFacts(id=a.id, active=a.active, away=a.away, handles_disputes=a.handles_disputes,
                             open_disputes=self.loads.get(a.id, 0), last_assigned_at=a.last_assigned_at)
                for a in self.agents.values()]

    def choose(self, dispute: Dispute, exclude: Iterable[int] = ()) -> Optional[Agent]:
        excluded = set(exclude)
        chosen = choose_handler([f for f in self.facts() if f.id not in excluded],
                                previous_handler_id=_previous_handler_id(dispute), capacity=capacity())
        return self.agents[chosen] if chosen is not None else None

    def took(self, agent: Agent, now: datetime) -> None:
        self.loads[agent.id] = self.loads.get(agent.id, 0) + 1
        agent.last_assigned_at = now

    def released(self, agent_id: int) -> None:
        if self.loads.get(agent_id):
            self.loads[agent_id] -= 1


def _person(agent: Optional[Agent]) -> Optional[dict[str, str]]:
    return {"name": agent.name, "email": agent.email} if agent is not None else None


def _set_handler(dispute: Dispute, agent: Optional[Agent], pool: _Pool, now: datetime, actor: str,
                 reason: str, **extra: Any) -> None:
    """Give the dispute to ``agent`` (None: back to the unassigned queue): audit event,
    ``dispute.assigned`` webhook and a mail to the new handler."""
    before = dispute.handler
    if before is not None:
        pool.released(before.id)
    dispute.handler = agent
    dispute.assigned_at = now if agent is not None else None
    if agent is not None:
        pool.took(agent, now)
    ret = dispute.ret
    if before is None:
        record(ret, "dispute_assigned", actor, now, dispute_id=dispute.id,
               data={"to": agent.email, "reason": reason, **extra})
    else:
        record(ret, "dispute_reassigned", actor, now, dispute_id=dispute.id,
               data={"from": before.email, "to": agent.email if agent else None, "reason": reason, **extra})
    db.session.flush()
    if agent is not None:
        emit("dispute.assigned", {**dispute_payload(dispute, messages=False), "previous_handler": _person(before),
                                  "reason": reason}, now, ret.id)
        _mail_staff(agent.email, "dispute_assigned", dispute, now, reason=reason,
                    previous_handler=before.name if before is not None else None)


def assign_waiting(now: datetime, actor: str = "system", limit: int = 500) -> int:
    """Give the unassigned open disputes (oldest first) to available handlers; returns how
    many were assigned. One transaction; safe to run twice or from several schedulers."""
    waiting = db.session.execute(
        select(Dispute.id, Dispute.return_id).where(Dispute.status == "open", Dispute.handler_id.is_(None))
        .order_by(Dispute.opened_at, Dispute.id).limit(limit)).all()
    if not waiting:
        db.session.commit()
        return 0
    _lock_returns(r for _, r in waiting)
    pool = _Pool.lock()
    disputes = db.session.scalars(
        select(Dispute).where(Dispute.id.in_([d for d, _ in waiting]), Dispute.status == "open",
                              Dispute.handler_id.is_(None))
        .order_by(Dispute.opened_at, Dispute.id).execution_options(populate_existing=True)).all()
    assigned = 0
    for dispute in disputes:
        agent = pool.choose(dispute)
        if agent is None:  # nobody has room left
            break
        _set_handler(dispute, agent, pool, now, actor, "queue")
        assigned += 1
    db.session.commit()
    return assigned


def _available(agent: Agent) -> bool:
    return bool(agent.handles_disputes and agent.active and not agent.away)


def _change_agent(agent: Agent, now: datetime, actor: str, reason: str, **flags: bool) -> list[Dispute]:
    """Change an agent's ``away`` / ``active`` / ``handles_disputes`` flags. An agent who can
    no longer take disputes hands each open one to another handler by the same rule (or to
    the unassigned queue); one who becomes available takes waiting disputes. One transaction.
    Returns the disputes that moved away from the agent."""
    held = db.session.scalars(select(Dispute.return_id).where(Dispute.handler_id == agent.id,
                                                              Dispute.status == "open")).all()
    _lock_returns(held)
    pool = _Pool.lock(also=[agent.id])
    for name, value in flags.items():
        setattr(agent, name, value)
    moved: list[Dispute] = []
    if not _available(agent):
        mine = db.session.scalars(
            select(Dispute).where(Dispute.handler_id == agent.id, Dispute.status == "open")
            .order_by(Dispute.opened_at, Dispute.id).execution_options(populate_existing=True)).all()
        # Assigned to them while we waited for the locks (rare): lock those returns too.
        _lock_returns({d.return_id for d in mine} - set(held))
        for dispute in mine:
            _set_handler(dispute, pool.choose(dispute, exclude={agent.id}), pool, now, actor, reason)
            moved.append(dispute)
    db.session.commit()
    if _available(agent):
        assign_waiting(now, actor)
    return moved


def set_away(agent: Agent, away: bool, now: datetime, actor: str) -> list[Dispute]:
    """An agent goes away (their open disputes are reassigned) or comes back (they take
    waiting disputes). Returns the reassigned disputes."""
    return _change_agent(agent, now, actor, "away" if away else "back", away=away)


def deactivate(agent: Agent, now: datetime, actor: str) -> list[Dispute]:
    """An agent is deactivated: their open disputes are reassigned."""
    return _change_agent(agent, now, actor, "deactivated", active=False)


def activate(agent: Agent, now: datetime, actor: str) -> list[Dispute]:
    """An agent is active again: a dispute handler takes waiting disputes."""
    return _change_agent(agent, now, actor, "activated", active=True)


def set_handles_disputes(agent: Agent, handles: bool, now: datetime, actor: str) -> list[Dispute]:
    """An agent starts or stops handling disputes (stopping reassigns their open ones)."""
    return _change_agent(agent, now, actor, "handler_added" if handles else "handler_removed",
                         handles_disputes=handles)


def _lock(dispute: Dispute) -> tuple[Return, Dispute]:
    """Lock the dispute's return, then the dispute, and read both afresh."""
    _sqlite_write_lock()
    ret = db.session.scalars(select(Return).where(Return.id == dispute.return_id).with_for_update()
                             .execution_options(populate_existing=True)).one()
    dispute = db.session.scalars(select(Dispute).where(Dispute.id == dispute.id).with_for_update()
                                 .execution_options(populate_existing=True)).one()
    return ret, dispute


def reassign(dispute: Dispute, agent_id: int, now: datetime, actor: str) -> Dispute:
    """An admin gives the dispute to a handler by hand. The handler must take disputes, be
    active and not away; the capacity is the admin's call (over it is noted in the event)."""
    ret, dispute = _lock(dispute)
    if dispute.status != "open":
        raise ApiError(409, "conflict", "This dispute is resolved; its handler can no longer change.")
    pool = _Pool.lock(also=[agent_id, dispute.handler_id])
    agent = pool.agents.get(agent_id)
    if agent is None:
        raise validation_error({"agent_id": ["No such agent."]})
    if not _available(agent):
        raise validation_error({"agent_id": [f"{agent.name} does not take disputes now "
                                             "(away, deactivated or not a dispute handler)."]})
    if dispute.handler_id != agent.id:
        over = pool.loads.get(agent.id, 0) >= capacity()
        _set_handler(dispute, agent, pool, now, actor, "manual", **({"over_capacity": True} if over else {}))
    db.session.commit()
    return dispute


# --- conversation ----------------------------------------------------------------------------

def _check_body(body: Optional[str]) -> str:
    body = (body or "").strip()
    if not body:
        raise validation_error({"body": ["Write a message."]})
    if len(body) > MAX_MESSAGE_LENGTH:
        raise validation_error({"body": [f"At most {MAX_MESSAGE_LENGTH} characters."]})
    return body


def post_message(dispute: Dispute, author: str, body: str, now: datetime, agent: Optional[Agent] = None,
                 actor: Optional[str] = None) -> DisputeMessage:
    """A message from the customer or the handler (``agent``; default: the dispute's
    handler). Sets the side's last-message time, emits ``dispute.message`` and mails the other
    side. One transaction. 422 for an empty body, 409 once the dispute is resolved."""
    if author not in AUTHORS:
        raise validation_error({"author": [f"One of: {', '.join(AUTHORS)}."]})
    body = _check_body(body)
    ret, dispute = _lock(dispute)
    if dispute.status != "open":
        raise ApiError(409, "conflict", "This dispute is resolved; it takes no more messages.")
    if author == "handler":
        agent = agent or dispute.handler
        dispute.last_handler_reply_at = now
    else:
        agent = None
        dispute.last_customer_message_at = now
    message = DisputeMessage(dispute_id=dispute.id, author=author, agent_id=agent.id if agent else None,
                             body=body, created_at=now)
    dispute.messages.append(message)
    db.session.flush()
    if actor is None:
        actor = "customer" if author == "customer" else (f"agent:{agent.email}" if agent else "handler")
    record(ret, "dispute_message", actor, now, dispute_id=dispute.id,
           data={"author": author, "message_id": message.id})
    emit("dispute.message", {"dispute_id": dispute.id, "rma_number": dispute_payload(dispute, messages=False)["rma_number"],
                             "message_id": message.id, **{k: v for k, v in dispute_message_payload(message).items()
                                                          if k != "id"},
                             "dispute": dispute_payload(dispute, messages=False)}, now, ret.id)
    if author == "customer":
        if dispute.handler is not None:
            _mail_staff(dispute.handler.email, "dispute_message_to_handler", dispute, now, message=message)
        else:
            _mail_staff(None, "dispute_message_to_handler", dispute, now, message=message)
    else:
        # Signed by whoever wrote (an admin may answer in the handler's place).
        _mail_customer(ret, "dispute_message_to_customer", dispute, now, message=message,
                       author_name=agent.name if agent is not None else None,
                       by_handler=agent is not None and agent.id == dispute.handler_id)
    db.session.commit()
    return message


# --- resolution -------------------------------------------------------------------------------

def dispute_line_ids(dispute: Dispute) -> list[str]:
    """The lines disputed in this dispute (from its audit events, in order)."""
    rows = db.session.scalars(select(Event.data).where(
        Event.dispute_id == dispute.id, Event.type.in_(("dispute_opened", "dispute_item_added"))).order_by(Event.id))
    return [data["line_id"] for data in rows if data and data.get("line_id")]


def adjusted_amount(ret: Return) -> Decimal:
    """The items' value once disputes are decided: received items not disputed at full value,
    each resolved dispute at its resolved amount, an open one at its value at stake."""
    value = sum((i.unit_price * i.received_quantity for i in ret.items if i.disposition != "dispute"), Decimal("0"))
    for d in ret.disputes:
        value += (d.resolved_amount or Decimal("0")) if d.status == "resolved" else (d.amount_at_stake or Decimal("0"))
    return money(value)


def resolve(dispute: Dispute, outcome: str, amount: Optional[Decimal], note: Optional[str], now: datetime,
            actor: str) -> Dispute:
    """Decide the dispute: ``accept`` (the disputed items are refunded in full), ``partial``
    (``amount``, 0 < amount ≤ the disputed value; ``note`` tells the customer why) or
    ``reject`` (the disputed items count 0; they can be sent back to the customer). Sets the
    return's adjusted amount, emits ``dispute.resolved`` and moves the return on
    (disputed → inspected) once nothing is open or untriaged. One transaction."""
    if outcome not in OUTCOMES:
        raise validation_error({"outcome": [f"One of: {', '.join(OUTCOMES)}."]})
    note = (note or "").strip() or None
    ret, dispute = _lock(dispute)
    if dispute.status != "open":
        raise ApiError(409, "conflict", f"This dispute is already resolved ({dispute.outcome}).")
    disputed = money(dispute.amount_at_stake or 0)
    errors: dict[str, list[str]] = {}
    if amount is not None:
        amount = money(amount)
    if outcome == "accept":
        granted = disputed
        if amount is not None and amount != disputed:
            errors["amount"] = [f"Accepting refunds the whole disputed value ({disputed} {ret.currency}); "
                                "use 'partial' for another amount."]
    elif outcome == "reject":
        granted = Decimal("0.00")
        if amount is not None and amount != 0:
            errors["amount"] = ["Rejecting refunds nothing for the disputed items; use 'partial' for an amount."]
    else:
        granted = amount if amount is not None else Decimal("0.00")
        if amount is None:
            errors["amount"] = ["Required for a partial outcome."]
        elif amount <= 0:
            errors["amount"] = ["Must be more than zero."]
        elif amount > disputed:
            errors["amount"] = [f"At most the disputed value, {disputed} {ret.currency}."]
        if not note:
            errors["note"] = ["Tell the customer why only part is refunded."]
    if errors:
        raise validation_error(errors)

    lines = set(dispute_line_ids(dispute))
    items = [{"line_id": i.line_id, "quantity": i.received_quantity, "unit_price": str(i.unit_price)}
             for i in ret.items if i.line_id in lines]
    dispute.status, dispute.outcome, dispute.resolved_amount = "resolved", outcome, granted
    dispute.resolution_note, dispute.resolved_at = note, now
    ret.adjusted_amount = adjusted_amount(ret)
    recount_restocking_fee(ret)  # a refused item costs no restocking fee
    ret.updated_at = now
    data: dict[str, Any] = {"outcome": outcome, "amount": str(granted), "disputed_value": str(disputed),
                            "note": note, "items": items, "adjusted_amount": str(ret.adjusted_amount)}
    if outcome == "reject":
        # The items stay the customer's: they can be sent back to them.
        data["send_back"] = [{"line_id": i["line_id"], "quantity": i["quantity"]} for i in items]
    record(ret, "dispute_resolved", actor, now, dispute_id=dispute.id, data=data)
    db.session.flush()
    emit("dispute.resolved", dispute_payload(dispute, messages=False), now, ret.id)
    pending = any(i.received_quantity and i.disposition == "pending" for i in ret.items)
    if ret.status == "disputed" and not pending and not any(d.status == "open" for d in ret.disputes):
        transition(ret, "resolve", actor, now, data={"dispute_id": dispute.id, "outcome": outcome})
        close_if_nothing_due(ret, now)
    _mail_customer(ret, "dispute_resolved", dispute, now)
    db.session.commit()
    if dispute.handler_id is not None:
        assign_waiting(now, actor)  # the handler has room again (own transaction)
    return dispute


# --- reading ----------------------------------------------------------------------------------

def get_dispute(dispute_id: int) -> Dispute:
    dispute = db.session.get(Dispute, dispute_id)
    if dispute is None:
        raise NotFound("No dispute with this id.")
    return dispute


def find(*, status: Optional[str] = None, handler_email: Optional[str] = None, unassigned: bool = False,
         before_id: Optional[int] = None, limit: int = 25) -> tuple[list[Dispute], bool]:
    """Disputes newest first (keyset on id); returns (page, whether more follow)."""
    query = select(Dispute)
    if status:
        query = query.where(Dispute.status == status)
    if handler_email:
        query = query.join(Agent, Agent.id == Dispute.handler_id).where(
            func.lower(Agent.email) == handler_email.strip().lower())
    if unassigned:
        query = query.where(Dispute.handler_id.is_(None))
    if before_id is not None:
        query = query.where(Dispute.id < before_id)
    rows = db.session.scalars(query.order_by(Dispute.id.desc()).limit(limit + 1)).all()
    return list(rows[:limit]), len(rows) > limit


# --- mail --------------------------------------------------------------------------------------

def _mail_context(dispute: Dispute, now: datetime, **extra: Any) -> dict[str, Any]:
    from .notifications import return_context
    ctx = return_context(dispute.ret, now)
    ctx["dispute"] = dispute_payload(dispute, messages=False)
    ctx["handler_name"] = dispute.handler.name if dispute.handler else None
    ctx["resolution"] = dispute.ret.resolution  # refund | exchange | store_credit
    message = extra.pop("message", None)
    if message is not None:
        ctx["message"] = dispute_message_payload(message)
    ctx.update(extra)
    return ctx


def _mail_staff(to: Optional[str], template: str, dispute: Dispute, now: datetime, **extra: Any) -> None:
    """A mail to the handler (``to``; None: the returns team) in the staff language."""
    from .notifications import enqueue_mail, staff_locale, team_email
    enqueue_mail(to or team_email(), template, staff_locale(), _mail_context(dispute, now, **extra), now,
                 return_id=dispute.return_id)


def _mail_customer(ret: Return, template: str, dispute: Dispute, now: datetime, **extra: Any) -> None:
    from .notifications import enqueue_mail
    enqueue_mail(ret.customer_email, template, ret.locale, _mail_context(dispute, now, **extra), now,
                 return_id=ret.id)

"""Disputes in the admin view: the handler's own queue ("My disputes"), the admins' queue of
unassigned disputes, and the dispute page (conversation, reply, resolve, reassign).

Who may do what: any signed-in agent may read a dispute; its handler or an admin may reply
and resolve; only admins reassign. Others get the friendly 403 page."""
from __future__ import annotations

from datetime import datetime
from typing import Optional

from flask import redirect, render_template, url_for
from flask_login import current_user
from sqlalchemy import func, select

from .. import clock
from ..domain.rma_number import format_number
from ..extensions import db
from ..models import Agent, Dispute, ReturnItem
from ..services import disputes as disputes_svc
from ..services.customer import MESSAGE_MAX
from . import bp
from .common import actor, admin_required, attempt, form_errors, item_photos
from .forms import DisputeMessageForm, ReassignForm, ResolveForm


def _since(then: Optional[datetime], now: datetime) -> str:
    """How long ago, in words an agent reads at a glance: "2 d 3 h", "4 h 10 min", "12 min"."""
    if then is None:
        return "—"
    minutes = max(0, int((now - then).total_seconds() // 60))
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min"


def _waiting_order():
    # Oldest waiting first: by the customer's last message (none yet: since the dispute opened).
    return (func.coalesce(Dispute.last_customer_message_at, Dispute.opened_at), Dispute.id)


def _rows(disputes: list[Dispute], now: datetime) -> list[dict]:
    out = []
    for d in disputes:
        waiting = (d.last_customer_message_at is not None
                   and (d.last_handler_reply_at is None or d.last_handler_reply_at < d.last_customer_message_at))
        out.append({"dispute": d, "ret": d.ret, "number": format_number(d.ret.rma_code), "waiting": waiting,
                    "since_customer": _since(d.last_customer_message_at, now),
                    "since_opened": _since(d.opened_at, now)})
    return out


def _counts() -> dict[str, int]:
    mine = db.session.scalar(select(func.count()).select_from(Dispute).where(
        Dispute.status == "open", Dispute.handler_id == current_user.id)) or 0
    unassigned = db.session.scalar(select(func.count()).select_from(Dispute).where(
        Dispute.status == "open", Dispute.handler_id.is_(None))) or 0
    return {"mine": mine, "unassigned": unassigned}


@bp.get("/disputes")
def my_disputes():
    now = clock.now()
    disputes = db.session.scalars(select(Dispute).where(
        Dispute.status == "open", Dispute.handler_id == current_user.id).order_by(*_waiting_order())).all()
    return render_template("admin/disputes.html", title="My disputes", key="mine", rows=_rows(list(disputes), now),
                           counts=_counts(), empty="No open dispute is assigned to you.")


@bp.get("/disputes/unassigned")
@admin_required
def unassigned_disputes():
    now = clock.now()
    disputes = db.session.scalars(select(Dispute).where(
        Dispute.status == "open", Dispute.handler_id.is_(None)).order_by(*_waiting_order())).all()
    return render_template("admin/disputes.html", title="Unassigned disputes", key="unassigned",
                           rows=_rows(list(disputes), now), counts=_counts(),
                           empty="Every open dispute has a handler.")


# --- the dispute page --------------------------------------------------------------------------

def _may_act(dispute: Dispute) -> bool:
    return current_user.role == "admin" or (dispute.handler_id is not None and dispute.handler_id == current_user.id)


def _forbidden():
    return render_template("admin/forbidden.html", title="Not your dispute",
                           detail="Only the dispute's handler or an admin can answer or decide it. "
                                  "Ask an admin to reassign it if you should take it over."), 403


def _handlers() -> list[Agent]:
    return list(db.session.scalars(select(Agent).where(
        Agent.handles_disputes.is_(True), Agent.active.is_(True), Agent.away.is_(False)).order_by(Agent.name)))


def _reassign_form(blank: bool = False) -> ReassignForm:
    """The reassign form; its choices are the available dispute handlers. ``blank``: to show."""
    form = ReassignForm(formdata=None) if blank else ReassignForm()
    form.agent_id.choices = [(a.id, f"{a.name} ({a.email})") for a in _handlers()]
    return form


def _reassign_choices(dispute: Dispute) -> dict:
    """The handlers to give the dispute to, its current handler first (and selected); when the
    current handler cannot take it any more (away, deactivated) or there is none, the list
    starts on an empty "choose" entry instead of silently on someone else."""
    handlers = _handlers()
    current = next((a for a in handlers if a.id == dispute.handler_id), None)
    if current is not None:
        handlers = [current] + [a for a in handlers if a.id != current.id]
    return {"handlers": handlers, "current": current}


@bp.get("/disputes/<int:dispute_id>")
def dispute_page(dispute_id: int):
    dispute = disputes_svc.get_dispute(dispute_id)
    ret = dispute.ret
    lines = set(disputes_svc.dispute_line_ids(dispute))
    items: list[ReturnItem] = [i for i in ret.items if i.line_id in lines]
    agents = {m.agent_id for m in dispute.messages if m.agent_id}
    names = {a.id: a.name for a in db.session.scalars(select(Agent).where(Agent.id.in_(agents)))} if agents else {}
    now = clock.now()
    resolve_form = ResolveForm(formdata=None)
    reassign_form = _reassign_form(blank=True) if current_user.role == "admin" and dispute.status == "open" else None
    return render_template("admin/dispute.html", dispute=dispute, ret=ret, number=format_number(ret.rma_code),
                           items=items, names=names, may_act=_may_act(dispute), photos=item_photos(items),
                           since_customer=_since(dispute.last_customer_message_at, now),
                           message_form=DisputeMessageForm(formdata=None), resolve_form=resolve_form,
                           reassign_form=reassign_form, reassign=_reassign_choices(dispute) if reassign_form else None,
                           message_max=MESSAGE_MAX, counts=_counts())


def _back(dispute_id: int, anchor: Optional[str] = None):
    return redirect(url_for("admin.dispute_page", dispute_id=dispute_id, _anchor=anchor))


@bp.post("/disputes/<int:dispute_id>/messages")
def dispute_reply(dispute_id: int):
    dispute = disputes_svc.get_dispute(dispute_id)
    if not _may_act(dispute):
        return _forbidden()
    form = DisputeMessageForm()
    if form.validate_on_submit():
        agent = db.session.get(Agent, current_user.id)
        attempt(lambda: disputes_svc.post_message(dispute, "handler", form.body.data, clock.now(), agent=agent,
                                                  actor=actor()),
                "Reply sent to the customer.", form)
    else:
        form_errors(form)
    return _back(dispute_id, "conversation")


@bp.post("/disputes/<int:dispute_id>/resolve")
def dispute_resolve(dispute_id: int):
    dispute = disputes_svc.get_dispute(dispute_id)
    if not _may_act(dispute):
        return _forbidden()
    form = ResolveForm()
    if form.validate_on_submit():
        outcome = form.outcome.data
        amount = form.amount.data if outcome == "partial" else None
        attempt(lambda: disputes_svc.resolve(dispute, outcome, amount, form.note.data, clock.now(), actor()),
                f"Dispute resolved: {outcome}.", form)
    else:
        form_errors(form)
    return _back(dispute_id)


@bp.post("/disputes/<int:dispute_id>/reassign")
@admin_required
def dispute_reassign(dispute_id: int):
    dispute = disputes_svc.get_dispute(dispute_id)
    form = _reassign_form()
    if form.validate_on_submit():
        agent = db.session.get(Agent, form.agent_id.data)
        name = agent.name if agent is not None else "that agent"
        attempt(lambda: disputes_svc.reassign(dispute, form.agent_id.data, clock.now(), actor()),
                f"Dispute given to {name}.", form)
    else:
        form_errors(form)
    return _back(dispute_id)

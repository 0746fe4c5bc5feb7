"""Agent management (admins), the agent's own account (away, password) and the settings."""
from __future__ import annotations

from flask import current_app, flash, redirect, render_template, url_for
from flask_login import current_user
from sqlalchemy import select

from .. import clock
from ..config import SETTINGS
from ..extensions import db
from ..models import Agent
from ..services import agents as agents_svc
from . import bp
from .common import actor, admin_required, attempt, form_errors
from .forms import FlagForm, InviteForm, PasswordForm, RoleForm


def _agents_page(invite_form=None, invited=None, status=200):
    agents = db.session.scalars(select(Agent).order_by(Agent.active.desc(), Agent.name)).all()
    return render_template("admin/agents.html", agents=agents, invite_form=invite_form or InviteForm(formdata=None),
                           role_form=RoleForm(formdata=None), flag_form=FlagForm(formdata=None),
                           invited=invited), status


@bp.get("/agents")
@admin_required
def agents():
    return _agents_page()


@bp.post("/agents")
@admin_required
def invite():
    form = InviteForm()
    if not form.validate_on_submit():
        form_errors(form)
        return _agents_page(form, status=422)
    result = {}

    def call():
        result["agent"], result["password"] = agents_svc.invite_agent(
            form.email.data, form.name.data.strip(), form.role.data, form.handles_disputes.data, actor(), clock.now())

    if not attempt(call, f"{form.email.data.strip().lower()} invited."):
        return _agents_page(form, status=422)
    # The temporary password is shown in this response only: never stored in clear, never
    # put in the session cookie (where flash messages live).
    return _agents_page(invited=result)


@bp.post("/agents/<int:agent_id>/role")
@admin_required
def change_role(agent_id: int):
    form = RoleForm()
    if form.validate_on_submit():
        attempt(lambda: agents_svc.set_role(agent_id, form.role.data, actor(), clock.now()), "Role changed.")
    return redirect(url_for("admin.agents"))


@bp.post("/agents/<int:agent_id>/disputes")
@admin_required
def mark_handler(agent_id: int):
    form = FlagForm()
    if form.validate_on_submit():
        on = form.value.data == "1"
        attempt(lambda: agents_svc.set_handles_disputes(agent_id, on, actor(), clock.now()),
                "Marked as dispute handler." if on else "No longer a dispute handler.")
    return redirect(url_for("admin.agents"))


@bp.post("/agents/<int:agent_id>/active")
@admin_required
def set_active(agent_id: int):
    form = FlagForm()
    if form.validate_on_submit():
        on = form.value.data == "1"
        if not on and agent_id == current_user.id:
            flash("You cannot deactivate yourself.", "error")
        else:
            attempt(lambda: agents_svc.set_active(agent_id, on, actor(), clock.now()),
                    "Agent reactivated." if on else "Agent deactivated: signed out everywhere.")
    return redirect(url_for("admin.agents"))


@bp.get("/account")
def account():
    return render_template("admin/account.html", flag_form=FlagForm(formdata=None),
                           password_form=PasswordForm(formdata=None))


@bp.post("/account/away")
def set_away():
    form = FlagForm()
    if form.validate_on_submit():
        away = form.value.data == "1"
        attempt(lambda: agents_svc.set_away(current_user.id, away, actor(), clock.now()),
                "You are away: no new disputes come to you." if away else "Welcome back.")
    return redirect(url_for("admin.account"))


@bp.post("/account/password")
def change_password():
    form = PasswordForm()
    if form.validate_on_submit():
        attempt(lambda: agents_svc.change_password(current_user.id, form.current.data, form.new.data, clock.now()),
                "Password changed.")
    else:
        form_errors(form)
    return redirect(url_for("admin.account"))


HIDDEN_SETTINGS = {"SECRET_KEY", "DATABASE_URL", "SMTP_PASSWORD", "SMTP_USERNAME"}


@bp.get("/settings")
@admin_required
def settings():
    cfg = current_app.config["RMA"]
    rows = [(s.name, "(hidden)" if s.name in HIDDEN_SETTINGS else cfg.get(s.name), s.doc) for s in SETTINGS]
    return render_template("admin/settings.html", rows=rows)

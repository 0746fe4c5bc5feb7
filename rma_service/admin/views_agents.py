"""Agent management (admins), the agent's own account (away, password) and the settings."""
from __future__ import annotations

import re
from typing import Any

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


# The settings page must not hand a credential to whoever reads over an admin's shoulder (or
# gets an admin's session): a setting named like a secret is never shown, and neither are these,
# whose credentials could hide where they cannot be masked (a database URL's query string or
# libpq ``key=value`` form; the SMTP login, half of a credential).
HIDDEN_SETTINGS = {"DATABASE_URL", "SMTP_USERNAME"}
SECRET_MARKS = ("SECRET", "PASSWORD", "API_KEY", "TOKEN")
HIDDEN = "(hidden)"
MASK = "***"
# Query parameters that carry credentials (redis://host?password=…, …?api_key=…).
_CREDENTIAL_PARAM = re.compile(r"pass|secret|token|key|auth|signature", re.I)
_URL = re.compile(r"([a-z][a-z0-9+.-]*://)(.*)", re.I | re.S)


def is_secret(name: str) -> bool:
    return name in HIDDEN_SETTINGS or any(mark in name.upper() for mark in SECRET_MARKS)


def mask_url(value: str) -> str:
    """A URL with its password and credential-like query values replaced by ``***``
    (``http://proxyuser:***@host:3128``): the page still says where, never how to log in.
    Read by hand, not with ``urlsplit``: a password with an unencoded ``/``, ``#`` or ``@``
    must not end up in the "path" and be shown. Anything that is not a URL comes back as it is."""
    match = _URL.fullmatch(value)
    if match is None:
        return value
    scheme, rest = match.groups()
    userinfo, at, rest = rest.rpartition("@")  # the last @: a password may contain one
    if at:
        user, has_password, _ = userinfo.partition(":")
        rest = f"{user}:{MASK}@{rest}" if has_password else f"{userinfo}@{rest}"
    base, question, query = rest.partition("?")
    if question:
        query, hash_, fragment = query.partition("#")
        query = "&".join(
            f"{name}={MASK}" if sep and _CREDENTIAL_PARAM.search(name) else f"{name}{sep}{val}"
            for name, sep, val in (pair.partition("=") for pair in query.split("&")))
        rest = f"{base}?{query}{hash_}{fragment}"
    return scheme + rest


def shown_value(name: str, value: Any) -> Any:
    """What the settings page shows of a setting: never a secret (an unset one shows as unset)."""
    if value is None or value == "":
        return None
    if is_secret(name):
        return HIDDEN
    return mask_url(value) if isinstance(value, str) else value


def _setting_rows(cfg: dict[str, Any]) -> list[tuple[str, Any, str]]:
    """Every documented setting, and after a per-carrier one (``CARRIER_<NAME>_URL``) the
    carriers actually configured (``CARRIER_COLISSIMO_URL``), masked the same way."""
    rows = []
    for setting in SETTINGS:
        rows.append((setting.name, shown_value(setting.name, cfg.get(setting.name)), setting.doc))
        if "<NAME>" in setting.name:
            head, _, tail = setting.name.partition("<NAME>")
            pattern = re.compile(re.escape(head) + r"[A-Z0-9_]+" + re.escape(tail))
            for name in sorted(key for key in cfg if pattern.fullmatch(key)):
                rows.append((name, shown_value(name, cfg[name]), f"RMA_{setting.name} of this carrier."))
    return rows


@bp.get("/settings")
@admin_required
def settings():
    return render_template("admin/settings.html", rows=_setting_rows(current_app.config["RMA"]))

"""Support agents."""
from __future__ import annotations

import secrets
from datetime import datetime
from typing import Optional

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from werkzeug.security import check_password_hash, generate_password_hash

from ..errors import ApiError
from ..extensions import db
from ..models import Agent

ROLES = ("agent", "admin")


def create_agent(email: str, name: str, role: str, password: str, handles_disputes: bool, now: datetime) -> Agent:
    email = email.strip().lower()
    if role not in ROLES:
        raise ApiError(422, "validation_error", f"role must be one of {', '.join(ROLES)}")
    if len(password) < 10:
        raise ApiError(422, "validation_error", "The password needs at least 10 characters.")
    if db.session.scalar(select(Agent).where(Agent.email == email)):
        raise ApiError(409, "conflict", f"An agent with email {email} exists already.")
    agent = Agent(email=email, name=name, role=role, handles_disputes=handles_disputes,
                  password_hash=generate_password_hash(password), created_at=now)
    db.session.add(agent)
    try:
        db.session.commit()
    except IntegrityError:  # the same email invited twice at the same moment: the index decides
        db.session.rollback()
        raise ApiError(409, "conflict", f"An agent with email {email} exists already.") from None
    if handles_disputes:
        from .disputes import assign_waiting
        assign_waiting(now)  # disputes waiting for a handler (one transaction of its own)
    return agent


# --- sign-in and management from the admin view -------------------------------------------
# A hash to check against when the email is unknown, so that a wrong email costs as much time
# as a wrong password (no account enumeration by timing).
_DUMMY_HASH = generate_password_hash("not-a-real-password-just-for-timing")


def authenticate(email: str, password: str) -> Optional[Agent]:
    """The active agent with this email and password, or None (same answer, same cost, for an
    unknown email, a wrong password and a deactivated agent)."""
    agent = db.session.scalar(select(Agent).where(Agent.email == (email or "").strip().lower()))
    ok = check_password_hash(agent.password_hash if agent else _DUMMY_HASH, password or "")
    return agent if agent is not None and ok and agent.active else None


def _get(agent_id: int, lock: bool = True) -> Agent:
    agent = db.session.get(Agent, agent_id, with_for_update=lock)
    if agent is None:
        raise ApiError(404, "not_found", "No such agent.")
    return agent


def _audit(type_: str, agent: Agent, actor: str, now: datetime, **data) -> None:
    from .audit import record
    record(None, type_, actor, now, data={"agent": agent.email, **data})


def _other_active_admins(agent: Agent) -> int:
    return db.session.scalar(select(func.count()).select_from(Agent).where(
        Agent.role == "admin", Agent.active.is_(True), Agent.id != agent.id)) or 0


def invite_agent(email: str, name: str, role: str, handles_disputes: bool, actor: str,
                 now: datetime) -> tuple[Agent, str]:
    """Create an agent with a random temporary password; the password is returned once and
    stored only as a hash."""
    from .audit import record
    password = secrets.token_urlsafe(12)
    # Recorded first so that create_agent's commit makes both in one transaction.
    record(None, "agent.invited", actor, now, data={"agent": (email or "").strip().lower(), "role": role,
                                                    "handles_disputes": handles_disputes})
    try:
        agent = create_agent(email, name, role, password, handles_disputes, now)
    except Exception:
        db.session.rollback()
        raise
    return agent, password


def set_active(agent_id: int, active: bool, actor: str, now: datetime) -> Agent:
    """Deactivating a dispute handler hands their open disputes to others; activating one
    lets them take waiting disputes (services/disputes.py takes the locks, in its order:
    returns, then agents, so no agent row is locked here)."""
    from . import disputes
    agent = _get(agent_id, lock=False)
    if not active and agent.role == "admin" and agent.active and _other_active_admins(agent) == 0:
        raise ApiError(409, "conflict", "This is the last active admin; make someone else admin first.")
    _audit("agent.activated" if active else "agent.deactivated", agent, actor, now)
    (disputes.activate if active else disputes.deactivate)(agent, now, actor)  # sets the flag, commits
    return agent


def set_role(agent_id: int, role: str, actor: str, now: datetime) -> Agent:
    if role not in ROLES:
        raise ApiError(422, "validation_error", f"role must be one of {', '.join(ROLES)}")
    agent = _get(agent_id)
    if role != "admin" and agent.role == "admin" and agent.active and _other_active_admins(agent) == 0:
        raise ApiError(409, "conflict", "This is the last active admin; make someone else admin first.")
    previous, agent.role = agent.role, role
    _audit("agent.role_changed", agent, actor, now, **{"from": previous, "to": role})
    db.session.commit()
    return agent


def set_handles_disputes(agent_id: int, handles: bool, actor: str, now: datetime) -> Agent:
    """No longer handling disputes hands the agent's open ones to others (services/disputes.py)."""
    from . import disputes
    agent = _get(agent_id, lock=False)
    _audit("agent.dispute_handler", agent, actor, now, handles_disputes=handles)
    disputes.set_handles_disputes(agent, handles, now, actor)  # sets the flag, commits
    return agent


def set_away(agent_id: int, away: bool, actor: str, now: datetime) -> Agent:
    """An agent marks themself away (or back). Dispute assignment skips agents who are away:
    their open disputes go to other handlers; back, they take waiting ones (services/disputes.py)."""
    from . import disputes
    agent = _get(agent_id, lock=False)
    _audit("agent.away" if away else "agent.back", agent, actor, now)
    disputes.set_away(agent, away, now, actor)  # sets the flag, reassigns, commits
    return agent


def change_password(agent_id: int, current: str, new: str, now: datetime) -> Agent:
    agent = _get(agent_id)
    if not check_password_hash(agent.password_hash, current or ""):
        raise ApiError(422, "validation_error", "The current password is wrong.")
    if len(new or "") < 10:
        raise ApiError(422, "validation_error", "The password needs at least 10 characters.")
    agent.password_hash = generate_password_hash(new)
    _audit("agent.password_changed", agent, f"agent:{agent.email}", now)
    db.session.commit()
    return agent

"""Support agents."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from werkzeug.security import generate_password_hash

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
    db.session.commit()
    return agent

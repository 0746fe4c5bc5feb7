"""The agents' admin view (``/admin/``)."""
from flask import Blueprint, render_template

from ..extensions import db, login_manager
from ..models import Agent

bp = Blueprint("admin", __name__, url_prefix="/admin")
login_manager.login_view = "admin.home"


@login_manager.user_loader
def load_agent(agent_id: str):
    agent = db.session.get(Agent, int(agent_id)) if agent_id.isdigit() else None
    return agent if agent is not None and agent.active else None


@bp.get("/")
def home():
    return render_template("admin/home.html")

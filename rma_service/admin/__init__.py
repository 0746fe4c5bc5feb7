"""The agents' admin view (``/admin/``): queues, the return page, the receiving station,
refurbishing, KPIs and agent management. Sign-in required everywhere but the login page."""
from __future__ import annotations

from flask import Blueprint, render_template, request
from flask_login import current_user
from flask_wtf.csrf import CSRFError

from .. import clock
from ..domain.rma_number import format_number
from ..errors import ApiError
from ..extensions import db, login_manager
from ..models import Agent

bp = Blueprint("admin", __name__, url_prefix="/admin")
login_manager.login_view = "admin.login"
login_manager.login_message = "Please sign in to continue."
login_manager.login_message_category = "info"

# Pages only: no inline script or style, no third-party host, never framed.
CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; object-src 'none'; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
PUBLIC_ENDPOINTS = {"admin.login", "admin.static"}


@login_manager.user_loader
def load_agent(agent_id: str):
    agent = db.session.get(Agent, int(agent_id)) if agent_id.isdigit() else None
    return agent if agent is not None and agent.active else None


@bp.before_request
def require_login():
    if request.endpoint not in PUBLIC_ENDPOINTS and not current_user.is_authenticated:
        return login_manager.unauthorized()
    return None


@bp.after_request
def security_headers(response):
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    # Customer data: never kept by a shared cache or the browser's back-forward store.
    response.headers.setdefault("Cache-Control", "no-store")
    return response


@bp.app_template_filter("rma")
def _rma_filter(code: str) -> str:
    return format_number(code)


@bp.app_template_filter("when")
def _when_filter(value) -> str:
    return "—" if value is None else value.strftime("%Y-%m-%d %H:%M")


@bp.app_template_filter("day")
def _day_filter(value) -> str:
    return "—" if value is None else value.strftime("%Y-%m-%d")


@bp.app_template_filter("n")
def _number_filter(value) -> str:
    """Thousands separated by a narrow no-break space (1 189 750), as French and SI style."""
    return "—" if value is None else f"{value:,}".replace(",", "\u202f")


@bp.app_template_filter("label")
def _label_filter(value) -> str:
    return "" if value is None else str(value).replace("_", " ")


@bp.context_processor
def _context():
    return {"now": clock.now()}


@bp.errorhandler(CSRFError)
def _csrf_error(exc):
    return render_template("admin/error.html", status=400, title="This form has expired",
                           detail="The form was refused because its security token is missing or too old. "
                                  "Nothing was changed. Go back, reload the page and try again."), 400


@bp.errorhandler(ApiError)
def _api_error(exc: ApiError):
    db.session.rollback()
    title = {404: "Not found", 403: "Not allowed", 409: "Not possible now"}.get(exc.status, "Could not do that")
    return render_template("admin/error.html", status=exc.status, title=title, detail=exc.detail), exc.status


@bp.errorhandler(429)
def _too_many(exc):
    response = render_template("admin/error.html", status=429, title="Too many attempts",
                               detail="Too many sign-in attempts for this address. Wait a minute and try again."), 429
    retry = getattr(exc, "retry_after", None)
    return (*response, {"Retry-After": str(retry)}) if retry else response


@bp.errorhandler(404)
def _not_found(exc):
    return render_template("admin/error.html", status=404, title="Not found",
                           detail="Nothing here. Check the address or search above."), 404


from . import views_auth, views_returns, views_station, views_dashboard, views_agents, views_disputes  # noqa: E402,F401

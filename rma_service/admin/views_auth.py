"""Sign-in and sign-out."""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_user, logout_user

from ..extensions import limiter
from ..services import agents as agents_svc
from . import bp
from .common import form_errors
from .forms import ActionForm, LoginForm


def _login_key() -> str:
    """Per IP and email: guessing one agent's password is slow, other agents are unaffected."""
    email = (request.form.get("email") or "").strip().lower()[:254]
    return f"login:{request.remote_addr}:{email}"


def _login_limit() -> str:
    return current_app.config["RMA"].get("RATELIMIT_LOGIN", "5/minute")


def _safe_next(target: str | None) -> str:
    """Only a path inside the admin view (no open redirect)."""
    if target:
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc and target.startswith("/admin/") and "\\" not in target:
            return target
    return url_for("admin.home")


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(_login_limit, key_func=_login_key, methods=["POST"])
@limiter.limit("30/minute", key_func=lambda: f"login-ip:{request.remote_addr}", methods=["POST"])
def login():
    if current_user.is_authenticated and request.method == "GET":
        return redirect(_safe_next(request.args.get("next")))
    form = LoginForm()
    if request.method == "GET":
        form.next.data = request.args.get("next", "")
    if form.validate_on_submit():
        agent = agents_svc.authenticate(form.email.data, form.password.data)
        if agent is None:
            flash("Wrong email or password.", "error")
            return render_template("admin/login.html", form=form), 401
        session.clear()  # nothing from before the sign-in carries over
        login_user(agent)
        return redirect(_safe_next(form.next.data))
    if request.method == "POST":
        form_errors(form)
    return render_template("admin/login.html", form=form)


@bp.post("/logout")
def logout():
    form = ActionForm()
    if form.validate_on_submit():
        logout_user()
        session.clear()
        flash("Signed out.", "ok")
    return redirect(url_for("admin.login"))

"""What every admin view shares: who acts, role checks, how a refused action is told."""
from __future__ import annotations

from functools import wraps
from typing import Callable

from flask import flash, render_template
from flask_login import current_user
from sqlalchemy.orm.exc import StaleDataError

from ..domain import DomainError
from ..errors import ApiError
from ..extensions import db


def actor() -> str:
    return f"agent:{current_user.email}"


def admin_required(view: Callable) -> Callable:
    """Admins only; a plain agent gets a friendly 403 page."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        if getattr(current_user, "role", None) != "admin":
            return render_template("admin/forbidden.html"), 403
        return view(*args, **kwargs)

    return wrapper


def attempt(call: Callable[[], object], success: str) -> bool:
    """Run a service call; a rule that says no (or a concurrent change) becomes a flash
    message instead of an error page. Returns whether it worked."""
    try:
        call()
    except (DomainError, ApiError) as exc:
        db.session.rollback()
        detail = exc.detail
        errors = getattr(exc, "errors", None)
        if errors:
            detail += " " + " ".join(m for msgs in errors.values() for m in msgs)
        flash(detail, "error")
        return False
    except StaleDataError:
        db.session.rollback()
        flash("Someone changed this return at the same moment; look again and retry.", "error")
        return False
    flash(success, "ok")
    return True


def form_errors(form) -> None:
    for field, messages in form.errors.items():
        label = getattr(getattr(form, field, None), "label", None)
        name = label.text if label is not None and label.text else field
        for message in messages:
            flash(f"{name}: {message}", "error")

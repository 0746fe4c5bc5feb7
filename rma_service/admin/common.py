"""What every admin view shares: who acts, role checks, how a refused action is told."""
from __future__ import annotations

from functools import wraps
from typing import Callable, Optional

from flask import flash, render_template
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.orm.exc import StaleDataError

from ..domain import DomainError
from ..errors import ApiError
from ..extensions import db
from ..models import Photo


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


def _label(form, field: str) -> Optional[str]:
    label = getattr(getattr(form, field, None), "label", None) if form is not None else None
    return label.text if label is not None and label.text else None


def attempt(call: Callable[[], object], success: str, form=None) -> bool:
    """Run a service call; a rule that says no (or a concurrent change) becomes a flash
    message instead of an error page. Returns whether it worked.

    Refused fields are told one message each, named by ``form``'s label when the form has
    that field ("Amount: At most 44.00 EUR is left to refund."), without the API's generic
    "The request has invalid fields."."""
    try:
        call()
    except (DomainError, ApiError) as exc:
        db.session.rollback()
        errors = getattr(exc, "errors", None)
        if errors:
            for field, messages in errors.items():
                name = _label(form, field)
                for message in messages:
                    flash(f"{name}: {message}" if name else message, "error")
        else:
            flash(exc.detail, "error")
        return False
    except StaleDataError:
        db.session.rollback()
        flash("Someone changed this return at the same moment; look again and retry.", "error")
        return False
    flash(success, "ok")
    return True


def form_errors(form) -> None:
    for field, messages in form.errors.items():
        name = _label(form, field) or field
        for message in messages:
            flash(f"{name}: {message}", "error")


def item_photos(items) -> dict[int, list[int]]:
    """The ids of the customer's photos of each item (``{item id: [photo id, …]}``), in the
    order they were sent: the return page, the dispute page and the receiving station show
    them as thumbnails linking to the photo."""
    ids = [item.id for item in items]
    photos: dict[int, list[int]] = {item_id: [] for item_id in ids}
    if ids:
        for photo_id, item_id in db.session.execute(
                select(Photo.id, Photo.return_item_id).where(Photo.return_item_id.in_(ids)).order_by(Photo.id)):
            photos[item_id].append(photo_id)
    return photos

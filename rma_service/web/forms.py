"""The customers' forms (Flask-WTF: each carries its CSRF token).

The forms only parse what the browser sent; the rules (what can be returned, how many, which
reason needs a comment) are checked by ``services.customer``, whose problems are put back on
the fields here (``attach_problems``) so that each message appears next to its field.
"""
from __future__ import annotations

import secrets
from typing import Any, Optional

from flask import current_app
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.file import MultipleFileField
from itsdangerous import BadData, URLSafeTimedSerializer
from wtforms import (BooleanField, EmailField, FieldList, Form, FormField, HiddenField, IntegerField,
                     RadioField, SelectField, StringField, TextAreaField)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import InputRequired, Length, Optional as Opt, Regexp

from ..domain.policy import REASONS
from ..services.customer import COMMENT_MAX, MESSAGE_MAX, OrderView, Selection
from .texts import REASON_LABELS, RESOLUTION_LABELS, problem_message


def _strip(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


class LookupForm(FlaskForm):
    order_number = StringField(_l("Order number"), filters=[_strip], validators=[
        InputRequired(message=_l("Enter your order number.")),
        Length(max=64, message=_l("An order number is at most 64 characters long."))])
    email = EmailField(_l("Email address"), filters=[_strip], validators=[
        InputRequired(message=_l("Enter the email address you used for the order.")),
        Length(max=254, message=_l("An email address is at most 254 characters long.")),
        Regexp(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", message=_l("Enter an email address like name@example.com."))])


class LineForm(Form):
    """One order line (no CSRF token of its own: the enclosing form has it)."""

    line_id = HiddenField()
    selected = BooleanField(_l("Return this item"))
    quantity = IntegerField(_l("How many"), validators=[Opt()])
    reason = SelectField(_l("Reason"), validate_choice=False,
                         choices=[SelectChoice("", _l("Choose a reason"))]
                         + [SelectChoice(r, REASON_LABELS[r]) for r in REASONS])
    comment = TextAreaField(_l("Comment (optional, required for “Other reason”)"), filters=[_strip], validators=[
        Length(max=COMMENT_MAX, message=_l("Keep the comment under %(max)d characters."))])


class ItemsForm(FlaskForm):
    lines = FieldList(FormField(LineForm))
    resolution = RadioField(_l("What would you like instead?"), validate_choice=False, choices=[])

    @classmethod
    def for_order(cls, order: OrderView, selection: Optional[list[Selection]] = None,
                  resolution: Optional[str] = None, formdata: Any = None) -> "ItemsForm":
        """The form for an order: one entry per line that can be returned, prefilled with a
        previous selection (the "change" button of the summary)."""
        chosen = {s.line_id: s for s in selection or []}
        data = {"lines": [], "resolution": resolution or ("refund" if "refund" in order.resolutions else None)}
        for line in order.lines:
            if not line.eligible:
                continue
            sel = chosen.get(line.line_id)
            data["lines"].append({"line_id": line.line_id, "selected": sel is not None,
                                  "quantity": sel.quantity if sel else 1,
                                  "reason": sel.reason if sel else "", "comment": sel.comment if sel else ""})
        form = cls(formdata=formdata, data=data)  # formdata None: never the request's form
        form.resolution.choices = [SelectChoice(r, RESOLUTION_LABELS.get(r, r)) for r in order.resolutions]
        return form

    def by_line(self) -> dict[str, LineForm]:
        return {entry.form.line_id.data: entry.form for entry in self.lines}

    def selection(self) -> list[Selection]:
        out = []
        for entry in self.lines:
            sub = entry.form
            if sub.selected.data:
                out.append(Selection(sub.line_id.data or "", sub.quantity.data, sub.reason.data or None,
                                     sub.comment.data or None))
        return out


class DraftForm(FlaskForm):
    """The summary's "change" button: carries the signed selection back to the items page."""

    draft = HiddenField(validators=[InputRequired()])


class SubmitForm(DraftForm):
    """The summary's "send" button, with the photos of each item (``photos-<n>``, in the order
    of the summary's items)."""

    photos = FieldList(MultipleFileField(_l("Photos (optional)")))

    def photo_bytes(self, line_ids: list[str]) -> dict[str, list[bytes]]:
        limit = int(current_app.config["RMA"]["PHOTO_MAX_BYTES"])
        out: dict[str, list[bytes]] = {}
        for line_id, entry in zip(line_ids, self.photos):
            files = [f for f in (entry.data or []) if getattr(f, "filename", None)]
            # Read one byte past the limit: enough to know a file is too large.
            out[line_id] = [f.stream.read(limit + 1) for f in files]
        return out


class CancelForm(FlaskForm):
    pass


class MessageForm(FlaskForm):
    body = TextAreaField(_l("Your message"), filters=[_strip], validators=[
        InputRequired(message=_l("Write your message.")),
        Length(max=MESSAGE_MAX, message=_l("Keep the message under %(max)d characters."))])


# --- the selection between the items page and the summary -----------------------------------
# One payload, ``{"o": order number, "e": email, "r": resolution, "i": [[line_id, quantity,
# reason, comment], …], "n": submission key}``: kept in the session between the steps, and
# signed into the summary's forms (``draft``) so that what is sent is what the customer read.

_DRAFT_SALT = "rma-web-draft-v1"
DRAFT_MAX_AGE = 24 * 3600


def _drafts() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=_DRAFT_SALT)


def new_draft(order_number: str, email: str, resolution: Optional[str], selection: list[Selection]) -> dict[str, Any]:
    """The customer's choices as they sent them (checked or not), with a new submission key:
    the summary they lead to, sent twice (a double click, a reload), makes one return."""
    return {"o": order_number, "e": email, "r": resolution,
            "i": [[s.line_id, s.quantity, s.reason, s.comment] for s in selection],
            "n": secrets.token_urlsafe(12)}


def sign_draft(payload: dict[str, Any]) -> str:
    return _drafts().dumps(payload)


def unsign_draft(value: str) -> Optional[dict[str, Any]]:
    """The payload of a signed draft, or None when it was not made here or is older than a day."""
    try:
        payload = _drafts().loads(value or "", max_age=DRAFT_MAX_AGE)
    except BadData:
        return None
    return payload if read_draft(payload) is not None else None


def read_draft(payload: Any) -> Optional[dict[str, Any]]:
    """``{"order_number", "email", "resolution", "selection", "submission"}`` from a payload,
    or None when it is not one."""
    try:
        return {"order_number": str(payload["o"]), "email": str(payload["e"]),
                "resolution": payload["r"] if isinstance(payload["r"], str) else None,
                "selection": [Selection(str(l), int(q) if q is not None else None,
                                        r if isinstance(r, str) else None, c if isinstance(c, str) else None)
                              for l, q, r, c in payload["i"]],
                "submission": str(payload.get("n") or "") or None}
    except (AttributeError, KeyError, TypeError, ValueError):
        return None


def attach_problems(form: ItemsForm, errors: dict) -> list[tuple[str, str]]:
    """Put the service's problems on the fields; returns ``(field id, message)`` pairs for
    the error summary at the top of the page, in the order of the page."""
    by_line = form.by_line()
    summary: list[tuple[str, str]] = []
    for key, problem in errors.items():
        message = problem_message(problem)
        parts = key.split(":")
        target = None
        if parts[0] == "line" and parts[1] in by_line:
            sub = by_line[parts[1]]
            target = getattr(sub, parts[2], None) if len(parts) > 2 else sub.selected
        elif key == "resolution":
            target = form.resolution
        if target is not None:
            target.errors = list(target.errors or []) + [message]
            summary.append((target.id, message))
        else:
            summary.append(("lines", message))
    return summary


def field_errors_summary(form: FlaskForm) -> list[tuple[str, str]]:
    out = []
    for field in form:
        if isinstance(field, FieldList):
            for entry in field:
                sub = getattr(entry, "form", None)
                for f in (sub if sub is not None else [entry]):
                    out.extend((f.id, e) for e in f.errors or [] if isinstance(e, str))
        else:
            out.extend((field.id, e) for e in field.errors or [] if isinstance(e, str))
    return out

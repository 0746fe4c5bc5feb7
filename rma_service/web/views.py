"""The routes of the customer pages. Each parses a form, calls one service, renders.

The steps of a new return follow Post/Redirect/Get: a form is answered by a redirect to a
page of its own (the items, the summary, the confirmation), so that Back, a reload and the
language switch read a page again instead of sending a form twice. Between the items page
and the summary the customer's choices stay in the signed session cookie
(``session["draft"]``, see ``forms.new_draft``); the summary's buttons carry them too, signed,
so that what is sent is the summary the customer read. Choices too large for a cookie (long
comments on many items) are answered directly by the page, as a form's answer.
"""
from __future__ import annotations

from typing import Any, Optional

from flask import (Response, abort, current_app, flash, redirect, render_template, request, session,
                   url_for)
from flask_babel import gettext

from .. import clock
from ..domain.rma_number import format_number
from ..domain.status import InvalidTransition
from ..errors import ApiError
from ..extensions import limiter
from ..services import customer
from ..services.customer import CustomerInputError, Problem
from ..services.orders import order_number_key
from ..services.tokens import read_status_token, status_token
from . import bp, speak
from .forms import (CancelForm, DraftForm, ItemsForm, LookupForm, MessageForm, SubmitForm, attach_problems,
                    field_errors_summary, new_draft, read_draft, sign_draft, unsign_draft)
from .texts import problem_message


# --- rate limits: per client address and per order (or return) -----------------------------

def _limit() -> str:
    return current_app.config["RMA"]["RATELIMIT_WEB"]


def _order_key() -> str:
    if request.endpoint == "web.lookup":
        number = request.form.get("order_number", "")
    else:
        number = (session.get("lookup") or {}).get("o", "")
    # Every spelling the lookup forgives ("demo 1017", "#DEMO-1017") counts for the same order.
    return "order:" + order_number_key(number)[:64]


def _return_key() -> str:
    token = (request.view_args or {}).get("token", "")
    return "return:" + (read_status_token(token) or token[:64])


per_client = limiter.limit(_limit, scope=lambda endpoint: f"web-client:{endpoint}")
per_order = limiter.limit(_limit, key_func=_order_key, scope=lambda endpoint: f"web-order:{endpoint}")
per_return = limiter.limit(_limit, key_func=_return_key, scope=lambda endpoint: f"web-return:{endpoint}")


# --- the choices kept between the steps ----------------------------------------------------------

# The session cookie must stay under the 4 KB browsers keep (name and attributes included).
_COOKIE_BUDGET = 3800


def _session_fits(**values: Any) -> bool:
    """Whether the session, with these values, still fits in its cookie."""
    make = getattr(current_app.session_interface, "get_signing_serializer", None)
    serializer = make(current_app) if make is not None else None
    if serializer is None:  # sessions kept elsewhere than in the cookie
        return True
    return len(serializer.dumps({**dict(session), **values})) <= _COOKIE_BUDGET


def _keep_draft(payload: dict[str, Any]) -> bool:
    """Keep the choices in the session; False (and none kept) when they do not fit."""
    if _session_fits(draft=payload):
        session["draft"] = payload
        return True
    session.pop("draft", None)
    return False


def _draft_for(found: tuple[str, str]) -> Optional[dict[str, Any]]:
    """The choices kept for the order the customer looked up, read (``forms.read_draft``)."""
    draft = read_draft(session.get("draft"))
    if draft is None or (draft["order_number"], draft["email"]) != found:
        return None
    return draft


def _forget_draft() -> None:
    for key in ("draft", "photo_problems", "sent"):
        session.pop(key, None)


# --- start: the order number and the email -----------------------------------------------------

@bp.get("/")
def start():
    form = LookupForm(data={"order_number": request.args.get("order", "")[:64]})
    return render_template("web/start.html", form=form, errors=[])


@bp.post("/")
@per_client
@per_order
def lookup():
    form = LookupForm()
    if not form.validate_on_submit():
        return render_template("web/start.html", form=form, errors=field_errors_summary(form)), 422
    try:
        view = customer.find_order(form.order_number.data, form.email.data, clock.now())
    except CustomerInputError as exc:
        # The same answer for an unknown order and a wrong email.
        message = problem_message(exc.errors["lookup"])
        return render_template("web/start.html", form=form, errors=[("order_number", message)],
                               lookup_error=message), 422
    _forget_draft()
    session["lookup"] = {"o": view.order_number, "e": form.email.data}
    return redirect(url_for("web.order"))


# --- the order's lines, the summary, sending -------------------------------------------------

def _lookup_or_none():
    found = session.get("lookup")
    return (found["o"], found["e"]) if isinstance(found, dict) and "o" in found and "e" in found else None


@bp.get("/order")
def order():
    found = _lookup_or_none()
    if found is None:
        return redirect(url_for("web.start"))
    try:
        view = customer.find_order(*found, clock.now())
    except CustomerInputError:
        session.pop("lookup", None)
        return redirect(url_for("web.start"))
    speak(view.locale)
    draft = _draft_for(found)  # back from the summary: the choices as they were
    form = (ItemsForm.for_order(view, draft["selection"], draft["resolution"]) if draft is not None
            else ItemsForm.for_order(view))
    return render_template("web/items.html", order=view, form=form, errors=[])


@bp.post("/order/review")
@per_client
@per_order
def review():
    """The items page sent: the choices are kept and the summary page shows them (or their
    problems, next to the fields)."""
    found = _lookup_or_none()
    if found is None:
        return redirect(url_for("web.start"))
    form = ItemsForm()
    now = clock.now()
    if not form.validate_on_submit():  # a malformed number…
        try:
            rv = customer.review(*found, form.selection(), form.resolution.data, now)
            view, problems = rv.order, {}
        except CustomerInputError as exc:
            if exc.order is None:  # the order is gone or its email changed
                return redirect(url_for("web.start"))
            view, problems = exc.order, exc.errors
        return _items_again(view, form, problems)
    session.pop("sent", None)
    session.pop("photo_problems", None)
    payload = new_draft(found[0], found[1], form.resolution.data, form.selection())
    if _keep_draft(payload):
        return redirect(url_for("web.summary"))
    # Too large for the session: the summary (or the problems) is this form's answer.
    try:
        rv = customer.review(*found, form.selection(), form.resolution.data, now)
    except CustomerInputError as exc:
        if exc.order is None:
            return redirect(url_for("web.start"))
        return _items_again(exc.order, form, exc.errors)
    speak(rv.order.locale)
    return _render_review(rv, payload)


def _items_again(view, form: ItemsForm, problems: dict):
    speak(view.locale)
    form.resolution.choices = ItemsForm.for_order(view).resolution.choices
    errors = field_errors_summary(form) + attach_problems(form, problems)
    return render_template("web/items.html", order=view, form=form, errors=errors), 422


def _render_review(rv, payload: dict[str, Any], photo_problems: Optional[dict[str, Problem]] = None):
    """The summary of ``rv``, its forms carrying ``payload`` signed; ``photo_problems`` (by
    line) shown beside the photo fields."""
    index = {item.line.line_id: i for i, item in enumerate(rv.items)}
    photo_errors = {index[line_id]: problem_message(p) for line_id, p in (photo_problems or {}).items()
                    if line_id in index}
    errors = [(f"photos-{i}", message) for i, message in sorted(photo_errors.items())]
    signed = sign_draft(payload)
    form = SubmitForm(formdata=None, data={"draft": signed})
    while len(form.photos) < len(rv.items):
        form.photos.append_entry()
    edit = DraftForm(formdata=None, data={"draft": signed})
    return render_template("web/review.html", review=rv, form=form, edit_form=edit, errors=errors,
                           photo_errors=photo_errors), (422 if errors else 200)


@bp.get("/order/review")
def summary():
    """The summary of the choices kept in the session; their problems on the items page
    instead when they have some (the items or the order changed meanwhile too)."""
    found = _lookup_or_none()
    if found is None:
        return redirect(url_for("web.start"))
    draft = _draft_for(found)
    if draft is None:  # nothing chosen yet, or already sent (Back from the confirmation)
        number = session.pop("sent", None)
        if number:
            flash(gettext("Your return %(number)s has been sent.", number=number), "info")
        return redirect(url_for("web.order"))
    try:
        rv = customer.review(*found, draft["selection"], draft["resolution"], clock.now())
    except CustomerInputError as exc:
        if exc.order is None:
            _forget_draft()
            return redirect(url_for("web.start"))
        return _items_again(exc.order, ItemsForm.for_order(exc.order, draft["selection"], draft["resolution"]),
                            exc.errors)
    speak(rv.order.locale)
    problems = {line_id: Problem(code, params) for line_id, (code, params)
                in (session.pop("photo_problems", None) or {}).items()}
    return _render_review(rv, session["draft"], problems)


@bp.get("/order/submit")
@bp.get("/order/edit")
def review_get():
    """These addresses answer a form; reached by address (the language switch, a bookmark)
    they lead back to the order's page."""
    return redirect(url_for("web.order"))


@bp.post("/order/edit")
def edit():
    """The summary's "change" button: the items page with the summary's choices."""
    form = DraftForm()
    payload = unsign_draft(form.draft.data) if form.validate_on_submit() else None
    if payload is None:
        return redirect(url_for("web.order"))
    draft = read_draft(payload)
    session.pop("photo_problems", None)
    session["lookup"] = {"o": draft["order_number"], "e": draft["email"]}
    if _keep_draft(payload):
        return redirect(url_for("web.order"))
    try:
        view = customer.find_order(draft["order_number"], draft["email"], clock.now())
    except CustomerInputError:
        return redirect(url_for("web.start"))
    speak(view.locale)
    return render_template("web/items.html", order=view, errors=[],
                           form=ItemsForm.for_order(view, draft["selection"], draft["resolution"]))


@bp.post("/order/submit")
@per_client
@per_order
def submit():
    form = SubmitForm()
    payload = unsign_draft(form.draft.data) if form.validate_on_submit() else None
    if payload is None:
        flash(gettext("This summary is too old. Check your choices again."), "error")
        return redirect(url_for("web.order"))
    draft = read_draft(payload)
    line_ids = [s.line_id for s in draft["selection"]]
    locale = session.get("lang")  # an explicit choice on the page; else the order's language
    try:
        ret = customer.submit(draft["order_number"], draft["email"], draft["selection"], draft["resolution"],
                              form.photo_bytes(line_ids), locale, clock.now(), draft["submission"])
    except CustomerInputError as exc:
        if exc.review is None and exc.order is None:
            return redirect(url_for("web.start"))
        # Photos refused, or units taken by another return meanwhile: the summary page again
        # (which shows the items with their new limits in the second case).
        photos = {key[len("line:"):-len(":photos")]: p for key, p in exc.errors.items()
                  if key.startswith("line:") and key.endswith(":photos")}
        kept = {line_id: [p.code, p.params] for line_id, p in photos.items()}
        session["lookup"] = {"o": draft["order_number"], "e": draft["email"]}
        if _keep_draft(payload) and _session_fits(photo_problems=kept):
            session["photo_problems"] = kept  # shown once, by the summary page
            return redirect(url_for("web.summary"))
        if exc.review is not None:
            speak(exc.review.order.locale)
            return _render_review(exc.review, payload, photos)
        return _items_again(exc.order, ItemsForm.for_order(exc.order, draft["selection"], draft["resolution"]),
                            exc.errors)
    _forget_draft()
    number = format_number(ret.rma_code)
    session["sent"] = number
    session["lookup"] = {"o": ret.order.order_number, "e": draft["email"]}
    return redirect(url_for("web.confirmation", token=status_token(ret.rma_code)))


# --- a return, through its status link ---------------------------------------------------------

@bp.get("/status/<token>")
def status(token: str):
    view = customer.status(token, clock.now())
    speak(view.ret.locale)
    return render_template("web/status.html", view=view, message_form=MessageForm(), errors=[])


@bp.get("/status/<token>/confirmation")
def confirmation(token: str):
    view = customer.status(token, clock.now())
    speak(view.ret.locale)
    return render_template("web/confirmation.html", view=view)


@bp.get("/status/<token>/label.pdf")
def label(token: str):
    ret, label, state = customer.label_pdf(token)
    if state == "ready":
        number = format_number(ret.rma_code)
        return Response(label.pdf, mimetype="application/pdf", headers={
            "Content-Disposition": f'attachment; filename="{number}-label.pdf"'})
    speak(ret.locale)
    return render_template("web/label_pending.html", ret=ret, number=format_number(ret.rma_code),
                           state=state, token=token), (202 if state in ("pending", "awaiting_approval") else 404)


@bp.get("/status/<token>/cancel")
def cancel_confirm(token: str):
    view = customer.status(token, clock.now())
    speak(view.ret.locale)
    if not view.can_cancel:
        return redirect(url_for("web.status", token=token))
    return render_template("web/cancel.html", view=view, form=CancelForm())


@bp.post("/status/<token>/cancel")
@per_client
@per_return
def cancel(token: str):
    form = CancelForm()
    if not form.validate_on_submit():
        abort(400)
    try:
        ret = customer.cancel(token, clock.now())
    except InvalidTransition:
        flash(gettext("This return can no longer be cancelled: the parcel is already on its way."), "error")
        return redirect(url_for("web.status", token=token))
    speak(ret.locale)
    flash(gettext("Your return %(number)s is cancelled. The label can no longer be used.",
                  number=format_number(ret.rma_code)), "success")
    return redirect(url_for("web.status", token=token))


@bp.post("/status/<token>/messages")
@per_client
@per_return
def message(token: str):
    form = MessageForm()
    now = clock.now()
    unsent = None
    if form.validate_on_submit():
        try:
            customer.post_message(token, form.body.data, now)
        except CustomerInputError as exc:
            form.body.errors = [problem_message(p) for p in exc.errors.values()]
        except ApiError as exc:
            if exc.status != 409:
                raise
            # The dispute was decided while the page was open: the page shows the decision
            # and gives the words back rather than dropping them.
            unsent = form.body.data
        else:
            flash(gettext("Your message was sent. You will get the answer by email."), "success")
            return redirect(url_for("web.status", token=token) + "#messages")
    view = customer.status(token, now)
    speak(view.ret.locale)
    return render_template("web/status.html", view=view, message_form=form, unsent=unsent,
                           errors=field_errors_summary(form)), 409 if unsent is not None else 422

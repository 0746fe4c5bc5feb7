"""The routes of the customer pages. Each parses a form, calls one service, renders."""
from __future__ import annotations

from flask import (Response, abort, current_app, flash, redirect, render_template, request, session,
                   url_for)
from flask_babel import gettext

from .. import clock
from ..domain.rma_number import format_number
from ..domain.status import InvalidTransition
from ..extensions import limiter
from ..services import customer
from ..services.customer import CustomerInputError
from ..services.tokens import read_status_token, status_token
from . import bp, speak
from .forms import (CancelForm, DraftForm, ItemsForm, LookupForm, MessageForm, SubmitForm, attach_problems,
                    dump_draft, field_errors_summary, load_draft)
from .texts import problem_message


# --- rate limits: per client address and per order (or return) -----------------------------

def _limit() -> str:
    return current_app.config["RMA"]["RATELIMIT_WEB"]


def _order_key() -> str:
    if request.endpoint == "web.lookup":
        number = request.form.get("order_number", "")
    else:
        number = (session.get("lookup") or {}).get("o", "")
    return "order:" + "".join(number.split()).lower()[:64]


def _return_key() -> str:
    token = (request.view_args or {}).get("token", "")
    return "return:" + (read_status_token(token) or token[:64])


per_client = limiter.limit(_limit, scope=lambda endpoint: f"web-client:{endpoint}")
per_order = limiter.limit(_limit, key_func=_order_key, scope=lambda endpoint: f"web-order:{endpoint}")
per_return = limiter.limit(_limit, key_func=_return_key, scope=lambda endpoint: f"web-return:{endpoint}")


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
        customer.find_order(form.order_number.data, form.email.data, clock.now())
    except CustomerInputError as exc:
        # The same answer for an unknown order and a wrong email.
        message = problem_message(exc.errors["lookup"])
        return render_template("web/start.html", form=form, errors=[("order_number", message)],
                               lookup_error=message), 422
    session["lookup"] = {"o": form.order_number.data, "e": form.email.data}
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
    return render_template("web/items.html", order=view, form=ItemsForm.for_order(view), errors=[])


@bp.post("/order/review")
@per_client
@per_order
def review():
    found = _lookup_or_none()
    if found is None:
        return redirect(url_for("web.start"))
    form = ItemsForm()
    try:
        rv = customer.review(*found, form.selection(), form.resolution.data, clock.now())
    except CustomerInputError as exc:
        if exc.order is None:  # the order is gone or its email changed
            return redirect(url_for("web.start"))
        return _items_again(exc.order, form, exc.errors)
    speak(rv.order.locale)
    if not form.validate_on_submit():  # a malformed number, an expired CSRF token…
        return _items_again(rv.order, form, {})
    return _render_review(rv, SubmitForm(formdata=None, data={"draft": dump_draft(rv)}))


def _items_again(view, form: ItemsForm, problems: dict):
    speak(view.locale)
    form.resolution.choices = ItemsForm.for_order(view).resolution.choices
    errors = field_errors_summary(form) + attach_problems(form, problems)
    return render_template("web/items.html", order=view, form=form, errors=errors), 422


def _render_review(rv, form: SubmitForm, errors=(), photo_errors=None, status: int = 200):
    while len(form.photos) < len(rv.items):
        form.photos.append_entry()
    edit = DraftForm(formdata=None, data={"draft": form.draft.data})
    return render_template("web/review.html", review=rv, form=form, edit_form=edit, errors=list(errors),
                           photo_errors=photo_errors or {}), status


@bp.get("/order/review")
@bp.get("/order/submit")
@bp.get("/order/edit")
def review_get():
    """These pages answer a form; reached by address (the language switch, a bookmark) they
    lead back to the order's page."""
    return redirect(url_for("web.order"))


@bp.post("/order/edit")
def edit():
    form = DraftForm()
    draft = load_draft(form.draft.data) if form.validate_on_submit() else None
    if draft is None:
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
    draft = load_draft(form.draft.data) if form.validate_on_submit() else None
    if draft is None:
        flash(gettext("This summary is too old. Check your choices again."), "error")
        return redirect(url_for("web.order"))
    line_ids = [s.line_id for s in draft["selection"]]
    locale = session.get("lang")  # an explicit choice on the page; else the order's language
    try:
        ret = customer.submit(draft["order_number"], draft["email"], draft["selection"], draft["resolution"],
                              form.photo_bytes(line_ids), locale, clock.now(), draft["submission"])
    except CustomerInputError as exc:
        if exc.review is not None:
            # Photos refused: the summary again, each message beside its photo field.
            rv = exc.review
            speak(rv.order.locale)
            index = {item.line.line_id: i for i, item in enumerate(rv.items)}
            photo_errors = {index[k.split(":")[1]]: problem_message(p) for k, p in exc.errors.items()
                            if k.endswith(":photos") and k.split(":")[1] in index}
            errors = [(f"photos-{i}", msg) for i, msg in sorted(photo_errors.items())]
            return _render_review(rv, SubmitForm(formdata=None, data={"draft": dump_draft(rv)}),
                                  errors, photo_errors, 422)
        if exc.order is None:
            return redirect(url_for("web.start"))
        # The units were taken by another return meanwhile: the items page, with the new limits.
        return _items_again(exc.order, ItemsForm.for_order(exc.order, draft["selection"], draft["resolution"]),
                            exc.errors)
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
    if form.validate_on_submit():
        try:
            customer.post_message(token, form.body.data, now)
        except CustomerInputError as exc:
            form.body.errors = [problem_message(p) for p in exc.errors.values()]
        else:
            flash(gettext("Your message was sent. You will get the answer by email."), "success")
            return redirect(url_for("web.status", token=token) + "#messages")
    view = customer.status(token, now)
    speak(view.ret.locale)
    return render_template("web/status.html", view=view, message_form=form,
                           errors=field_errors_summary(form)), 422

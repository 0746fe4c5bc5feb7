"""Queues, search and the return page with its actions."""
from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from typing import Any, Optional

from flask import Response, abort, flash, redirect, render_template, request, url_for
from sqlalchemy import select

from .. import clock
from ..domain import status as sm
from ..domain.policy import money, RESOLUTIONS
from ..domain.rma_number import format_number
from ..domain.status import STATUSES
from ..extensions import db
from ..models import Event, Photo, Return
from ..services import notes as notes_svc
from ..services import notifications
from ..services import queues
from ..services import returns as returns_svc
from ..services.representation import (current_label, items_value, left_and_surcharge, refund_block,
                                       return_amount_due, return_value_due)
from . import bp
from .common import actor, attempt, form_errors, item_photos
from .forms import (ActionForm, CancelForm, CloseForm, NoteForm, RefundForm, RejectForm, TriageForm, receive_form)

# The state machine's actions an agent triggers from this page (the others happen on their
# own: ship and expire come from the carrier and the scheduler, inspect/dispute from triage,
# resolve from the dispute).
AGENT_ACTIONS = ("approve", "reject", "cancel", "receive", "refund", "close")
# Triage is possible in the statuses from which the state machine leaves through it.
TRIAGE_STATUSES = frozenset(sm.TRANSITIONS["inspect"]) | frozenset(sm.TRANSITIONS["resolve"])
PHOTO_TYPES = {"image/jpeg", "image/png", "image/webp", "image/gif"}


@bp.get("/")
def home():
    return redirect(url_for("admin.queue", key="to_approve"))


def _date_arg(name: str) -> Optional[date]:
    try:
        return date.fromisoformat(request.args.get(name, "")) if request.args.get(name) else None
    except ValueError:
        flash(f"Ignored the {name.replace('_', ' ')} filter: use YYYY-MM-DD.", "error")
        return None


@bp.get("/queues/<key>")
def queue(key: str):
    if key not in queues.QUEUE_BY_KEY:
        abort(404)
    now = clock.now()
    status = request.args.get("status") or None
    resolution = request.args.get("resolution") or None
    filters = queues.Filters(status=status if status in STATUSES else None,
                             resolution=resolution if resolution in RESOLUTIONS else None,
                             created_from=_date_arg("created_from"), created_to=_date_arg("created_to"))
    page = queues.list_queue(key, now, cursor=request.args.get("after"), filters=filters)
    return render_template("admin/queue.html", page=page, counts=queues.counts(now), queues=queues.QUEUES,
                           statuses=STATUSES, resolutions=RESOLUTIONS, rows=_rows(page.rows, now),
                           filter_args={k: v for k, v in request.args.items() if k != "after" and v})


def _rows(rets, now) -> list[dict]:
    out = []
    for ret in rets:
        refund = refund_block(ret, now)
        label = current_label(ret)
        out.append({"ret": ret, "refund": refund, "label": label,
                    "units": sum(i.quantity for i in ret.items),
                    "summary": ", ".join(i.name + (f" ×{i.quantity}" if i.quantity > 1 else "") for i in ret.items)})
    return out


@bp.get("/search")
def search():
    result = queues.search(request.args.get("q", ""))
    if len(result.rows) == 1:
        return redirect(url_for("admin.return_page", number=format_number(result.rows[0].rma_code)))
    now = clock.now()
    return render_template("admin/search.html", result=result, rows=_rows(result.rows, now),
                           counts=queues.counts(now), queues=queues.QUEUES)


# --- the return page ---------------------------------------------------------------------------

def _load(number: str) -> Return:
    ret = returns_svc.get_return(number)
    return ret


def return_context(ret: Return) -> dict:
    now = clock.now()
    refund = refund_block(ret, now)
    due = return_amount_due(ret)
    left, surcharge = left_and_surcharge(ret, refund)
    actions = [a for a in sm.allowed_actions(ret.status) if a in AGENT_ACTIONS]
    triage_items = [i for i in ret.items if i.received_quantity and i.disposition == "pending"] \
        if ret.status in TRIAGE_STATUSES else []
    triage_forms = {}
    for item in triage_items:
        form = TriageForm(prefix=f"t{item.id}", formdata=None)
        form.condition.data = item.condition or "like_new"
        triage_forms[item.id] = form
    refund_form = RefundForm(formdata=None)
    refund_form.amount.data = left + surcharge  # late: what the law says is owed now
    events = db.session.scalars(select(Event).where(Event.return_id == ret.id).order_by(Event.id)).all()
    # What the refund box shows: nothing but a sentence when no refund applies (exchange, store
    # credit, a return that never went through); the deadline only while something is owed.
    # No refund is owed at all when the return never went through (its units were given back).
    refund_applies = ret.resolution == "refund" and ret.status not in sm.RELEASES_UNITS
    refund_open = refund_applies and ret.status not in ("refunded", "closed") and left > 0
    return {
        "ret": ret, "number": format_number(ret.rma_code), "refund": refund, "amount_due": due,
        "amount_left": left, "surcharge": surcharge,
        "refund_applies": refund_applies, "refund_open": refund_open,
        # Exchange and store credit: what the agent sends or issues (the customer was shown it).
        "credit_applies": ret.resolution != "refund" and ret.status not in sm.RELEASES_UNITS,
        "value_due": return_value_due(ret), "items_value": items_value(ret),
        "show_deadline": refund_open or ret.status == "refunded",
        "can_record_refund": "refund" in actions and left > 0,
        "label": current_label(ret), "dispute": ret.disputes[-1] if ret.disputes else None,
        "actions": actions, "triage_items": triage_items, "triage_forms": triage_forms,
        "events": events, "notes": [e for e in events if e.type == "note"], "photos": item_photos(ret.items),
        "mails": notifications.mails_of_return(ret.id),
        "timeline": {e.id: describe_event(e) for e in events},
        "action_form": ActionForm(formdata=None), "reject_form": RejectForm(formdata=None),
        "cancel_form": CancelForm(formdata=None),
        "receive_form": receive_form(ret.items, formdata=None) if "receive" in actions else None,
        "refund_form": refund_form, "close_form": CloseForm(formdata=None), "note_form": NoteForm(formdata=None),
    }


# --- the timeline, in words ----------------------------------------------------------------------

# Keys of an event's data that mean nothing to an agent (the customers' form's submission key,
# the quote already shown in the refund box, ids of other rows).
HIDDEN_KEYS = frozenset({"quote", "submission", "message_id", "event_id", "rma_number", "body", "dispute_id"})
KEY_LABELS = {
    "line_id": "Line", "tracking_number": "Tracking", "voided_tracking_number": "Voided tracking",
    "expires_at": "Expires", "occurred_at": "Scanned at", "amount_refunded": "Refunded so far",
    "amount_due": "Amount due", "disputed_value": "Disputed value", "adjusted_amount": "Amount due now",
    "send_back": "To send back", "to": "To", "from": "From", "over_capacity": "Over capacity", "sku": "SKU",
    "author": "From", "status": "Parcel",
}
# Keys whose values are vocabulary words ("like_new", "label_unused"): shown as words.
WORD_VALUES = frozenset({"condition", "disposition", "outcome", "reason", "status", "author", "grade"})
_RFC3339 = re.compile(r"^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2})(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?$")


def _words(value: Any) -> str:
    return str(value).replace("_", " ")


def _value(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        if all(isinstance(v, dict) and "line_id" in v for v in value):
            return ", ".join(f"{v['line_id']} × {v.get('quantity', '?')}"
                             + (f" at {v['unit_price']}" if v.get("unit_price") else "") for v in value)
        return ", ".join(_value(key, v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{_words(k)} {_value(k, v)}" for k, v in value.items() if v not in (None, "", [], {}))
    if isinstance(value, str):
        when = _RFC3339.match(value)
        if when:
            return f"{when.group(1)} {when.group(2)}"
        if key in WORD_VALUES and re.fullmatch(r"[a-z][a-z_]*", value):  # a code, not an agent's text
            return _words(value)
    return str(value)


def describe_event(event: Event) -> dict[str, list]:
    """An audit event as an agent reads it: ``says`` (sentences) and ``facts`` (label, value),
    without the internal keys and in words: "Authorized automatically (policy)", "Condition:
    like new", items as "L1 × 1"."""
    data = dict(event.data or {})
    says: list[str] = []
    if event.type == "approve" and data.pop("automatic", False):
        says.append("Authorized automatically (policy)")
    if event.type == "close" and data.get("reason") == "nothing_due":
        data.pop("reason")
        says.append("Closed automatically (policy): nothing is due.")
    if event.type == "expire" and data.get("reason") == "label_unused":
        data.pop("reason")
        says.append(f"The label was not used for {data.pop('days', '?')} days.")
    facts = [(KEY_LABELS.get(key, _words(key).capitalize()), _value(key, value))
             for key, value in data.items() if key not in HIDDEN_KEYS and value not in (None, "", [], {})]
    return {"says": says, "facts": facts}


@bp.get("/returns/<number>")
def return_page(number: str):
    ret = _load(number)
    ctx = return_context(ret)
    return render_template("admin/return.html", ctx=ctx, **ctx)


def _back(number: str, source: Optional[str] = None, anchor: Optional[str] = None):
    if source == "station":
        return redirect(url_for("admin.station_return", number=number))
    return redirect(url_for("admin.return_page", number=number, _anchor=anchor))


def _number(number: str) -> str:
    return format_number(_load(number).rma_code)


@bp.post("/returns/<number>/approve")
def approve(number: str):
    number = _number(number)
    if ActionForm().validate_on_submit():
        attempt(lambda: returns_svc.approve(number, actor(), clock.now()), f"{number} approved.")
    return _back(number)


@bp.post("/returns/<number>/mails/<int:mail_id>/send-again")
def send_mail_again(number: str, mail_id: int):
    """A mail that failed for good (3 days of refusals) goes out again once the cause is fixed."""
    ret = _load(number)
    number = format_number(ret.rma_code)
    if ActionForm().validate_on_submit():
        attempt(lambda: notifications.send_again(mail_id, ret.id, clock.now()), "The mail is queued again.")
    return _back(number, anchor="mails")


@bp.post("/returns/<number>/cancel")
def cancel(number: str):
    """Cancelling cannot be undone: the form carries a ticked "I understand"."""
    number = _number(number)
    form = CancelForm()
    if form.validate_on_submit():
        attempt(lambda: returns_svc.cancel(number, actor(), clock.now()), f"{number} cancelled.")
    else:
        form_errors(form)
    return _back(number)


@bp.post("/returns/<number>/reject")
def reject(number: str):
    number = _number(number)
    form = RejectForm()
    if form.validate_on_submit():
        attempt(lambda: returns_svc.reject(number, form.reason.data.strip(), actor(), clock.now()),
                f"{number} rejected.")
    else:
        form_errors(form)
    return _back(number)


@bp.post("/returns/<number>/receive")
def receive(number: str):
    ret = _load(number)
    number = format_number(ret.rma_code)
    form = receive_form(ret.items, formdata=request.form)
    if form.validate_on_submit():
        items = [{"line_id": item.line_id, "quantity": form[f"qty_{item.id}"].data,
                  "condition": form[f"cond_{item.id}"].data} for item in ret.items]
        if attempt(lambda: returns_svc.receive(number, items, actor(), clock.now()), f"{number} received.", form):
            return _back(number, form.source.data, "triage")
    else:
        form_errors(form)
    # Refused: the page again with what the worker counted, not the announced units (a redirect
    # would show those, and Enter after fixing one box would receive them all).
    ctx = return_context(_load(number))
    if ctx["receive_form"] is not None:
        ctx["receive_form"] = form
    if form.source.data == "station":
        for triage_form in ctx["triage_forms"].values():
            triage_form.source.data = "station"
        return render_template("admin/station.html", code="", ctx=ctx), 422
    return render_template("admin/return.html", ctx=ctx, **ctx), 422


@bp.post("/returns/<number>/items/<int:item_id>/triage")
def triage(number: str, item_id: int):
    ret = _load(number)
    number = format_number(ret.rma_code)
    item = next((i for i in ret.items if i.id == item_id), None)
    if item is None:
        abort(404)
    form = TriageForm(prefix=f"t{item.id}")
    if form.validate_on_submit():
        attempt(lambda: returns_svc.triage(number, item.line_id, form.disposition.data, form.condition.data,
                                           (form.note.data or "").strip() or None, actor(), clock.now()),
                f"{item.name}: {form.disposition.data}.")
    else:
        form_errors(form)
    return _back(number, form.source.data, "triage")


@bp.post("/returns/<number>/refund")
def refund(number: str):
    number = _number(number)
    form = RefundForm()
    if form.validate_on_submit():
        attempt(lambda: returns_svc.record_refund(number, form.amount.data, (form.reference.data or "").strip() or None,
                                                  actor(), clock.now()),
                f"Refund of {form.amount.data} recorded on {number}.", form)
    else:
        form_errors(form)
    return _back(number, anchor="refund")


@bp.post("/returns/<number>/close")
def close(number: str):
    number = _number(number)
    form = CloseForm()
    if form.validate_on_submit():
        attempt(lambda: returns_svc.close(number, (form.note.data or "").strip() or None, actor(), clock.now()),
                f"{number} closed.")
    else:
        form_errors(form)
    return _back(number)


@bp.post("/returns/<number>/notes")
def add_note(number: str):
    number = _number(number)
    form = NoteForm()
    if form.validate_on_submit():
        attempt(lambda: notes_svc.add_note(number, form.body.data, actor(), clock.now()), "Note added.")
    else:
        form_errors(form)
    return _back(number, anchor="notes")


@bp.get("/photos/<int:photo_id>")
def photo(photo_id: int):
    """A customer's photo, to signed-in agents only. Served as an image of an allowed type
    or as a download, never as something the browser could run."""
    row = db.session.get(Photo, photo_id)
    if row is None:
        abort(404)
    headers = {"Cache-Control": "private, max-age=3600", "Content-Security-Policy": "default-src 'none'; sandbox",
               "X-Content-Type-Options": "nosniff"}
    if row.content_type in PHOTO_TYPES:
        return Response(row.data, mimetype=row.content_type, headers={**headers, "Content-Disposition": "inline"})
    return Response(row.data, mimetype="application/octet-stream",
                    headers={**headers, "Content-Disposition": f'attachment; filename="photo-{row.id}"'})


@bp.get("/returns/<number>/label.pdf")
def label_pdf(number: str):
    ret = _load(number)
    label = current_label(ret)
    if label is None or not label.pdf:
        abort(404)
    return Response(label.pdf, mimetype="application/pdf", headers={
        "Content-Disposition": f'inline; filename="{format_number(ret.rma_code)}.pdf"'})

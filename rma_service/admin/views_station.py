"""The receiving station (scan, receive, triage) and the refurbish work step."""
from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for

from .. import clock
from ..domain.rma_number import format_number
from ..extensions import db
from ..models import ReturnItem
from ..services import queues
from ..services import refurbish as refurbish_svc
from . import bp
from .common import actor, attempt, form_errors
from .forms import RefurbishForm
from .views_returns import _load, return_context


@bp.get("/receiving")
def station():
    """Scan (or type) an RMA number or a tracking number; Enter opens the parcel."""
    code = request.args.get("code", "").strip()
    if code:
        ret = queues.find_for_receiving(code)
        if ret is not None:
            return redirect(url_for("admin.station_return", number=format_number(ret.rma_code)))
        flash(f"No return matches “{code}”. Check the label: RMA number (RMA-XXXX-XXXX) or tracking number.",
              "error")
    return render_template("admin/station.html", code=code, ctx=None)


@bp.get("/receiving/<number>")
def station_return(number: str):
    ret = _load(number)
    ctx = return_context(ret)
    for form in [ctx["receive_form"], *ctx["triage_forms"].values()]:
        if form is not None:
            form.source.data = "station"
    return render_template("admin/station.html", code="", ctx=ctx)


@bp.get("/refurbish")
def refurbish_queue():
    items, total = queues.refurbish_queue()
    return render_template("admin/refurbish.html", items=items, total=total, form=RefurbishForm(formdata=None))


@bp.post("/refurbish/<int:item_id>")
def refurbish_finish(item_id: int):
    if db.session.get(ReturnItem, item_id) is None:
        abort(404)
    form = RefurbishForm()
    if form.validate_on_submit():
        outcome = form.outcome.data
        attempt(lambda: refurbish_svc.finish(item_id, outcome, (form.note.data or "").strip() or None, actor(),
                                             clock.now()),
                "Refurbished: back in stock as grade B." if outcome == "refurbished" else "Sent to recycling.")
    else:
        form_errors(form)
    return redirect(url_for("admin.refurbish_queue"))

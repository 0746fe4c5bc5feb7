"""The KPI dashboard and the CSV export of a period's returns."""
from __future__ import annotations

import csv
import io
from datetime import timedelta

from flask import Response, flash, redirect, render_template, request, stream_with_context, url_for
from sqlalchemy import select

from .. import clock
from ..domain.rma_number import format_number
from ..extensions import db
from ..models import Order, Return, ReturnItem
from ..services import kpis
from . import bp, charts

DISPOSITION_CSS = {"restock": "restock", "refurbish": "refurbish", "dispute": "dispute"}


def _period():
    now = clock.now()
    try:
        return kpis.parse_period(request.args.get("from"), request.args.get("to"), now), None
    except kpis.PeriodError as exc:
        return kpis.parse_period(None, None, now), str(exc)


def _presets(now):
    today = now.date()
    first = today.replace(day=1)
    last_month_end = first - timedelta(days=1)
    try:
        year_ago = today.replace(year=today.year - 1)
    except ValueError:  # 29 February: a year before is the 28th
        year_ago = today.replace(year=today.year - 1, day=28)
    return [("Last 7 days", today - timedelta(days=6), today), ("Last 30 days", today - timedelta(days=29), today),
            ("This month", first, today), ("Last month", last_month_end.replace(day=1), last_month_end),
            ("Last 12 months", year_ago + timedelta(days=1), today)]


@bp.get("/kpis")
def dashboard():
    period, error = _period()
    if error:
        flash(error, "error")
    now = clock.now()
    data = kpis.dashboard(period, now)
    last_day = (period.end - timedelta(microseconds=1)).date()
    reasons = sorted(((k.replace("_", " "), v) for k, v in data["reasons"].items()), key=lambda kv: -kv[1])
    svg = {
        "series": charts.columns(data["series"], data["series_unit"], title=f"Returns per {data['series_unit']}"),
        "reasons": charts.hbars(reasons, title="Return items per reason"),
        "products": charts.hbars([(p["name"], p["units"], f"{p['name']} ({p['sku']})") for p in data["products"]],
                                 title="Units returned per product", css="col alt"),
        "triage": charts.split([(d, n, DISPOSITION_CSS[d]) for d, n in data["dispositions"].items()],
                               title="Triage split"),
        "handlers": charts.hbars([(h["name"] or "Unassigned", h["open"]) for h in data["handlers"]],
                                 title="Open disputes per handler", css="col warn"),
    }
    return render_template("admin/dashboard.html", data=data, svg=svg, period=period, first_day=period.start.date(),
                           last_day=last_day, presets=_presets(now))


CSV_COLUMNS = ["rma_number", "status", "resolution", "created_at", "order_number", "customer_name",
               "customer_email", "items", "units", "reasons", "skus", "received_at", "refunded_at",
               "amount_refunded", "currency"]


def _iso(value):
    return None if value is None else value.strftime("%Y-%m-%dT%H:%M:%SZ")


def _cell(value) -> str:
    """Text a spreadsheet will not read as a formula (CSV injection)."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@bp.get("/kpis/returns.csv")
def export_csv():
    period, error = _period()
    if error:
        # Not the default period in its place: the manager would report on other dates. The
        # dashboard reads the same arguments and says what is wrong with them.
        return redirect(url_for("admin.dashboard", **{k: v for k, v in request.args.items() if k in ("from", "to")}))

    def rows():
        buf = io.StringIO()
        buf.write("\ufeff")  # UTF-8's mark: Excel otherwise reads the file as Windows-1252 (HÃ©lÃ¨ne)
        writer = csv.writer(buf)
        writer.writerow(CSV_COLUMNS)
        # Rows, not model objects (a year of a large shop is half a million returns, and a sync
        # worker that streams longer than gunicorn's timeout is killed mid-file): the returns in
        # batches from a server-side cursor, each batch's items in one more query.
        query = (select(Return.id, Return.rma_code, Return.status, Return.resolution, Return.created_at,
                        Order.order_number, Return.customer_name, Return.customer_email, Return.received_at,
                        Return.refunded_at, Return.amount_refunded, Return.currency)
                 .join(Order, Order.id == Return.order_id)
                 .where(Return.created_at >= period.start, Return.created_at < period.end)
                 .order_by(Return.created_at, Return.id)
                 .execution_options(yield_per=2000))
        for batch in db.session.execute(query).partitions():
            items: dict[int, list] = {}
            for return_id, reason, sku, quantity in db.session.execute(
                    select(ReturnItem.return_id, ReturnItem.reason, ReturnItem.sku, ReturnItem.quantity)
                    .where(ReturnItem.return_id.in_([r.id for r in batch])).order_by(ReturnItem.id)):
                items.setdefault(return_id, []).append((reason, sku, quantity))
            for r in batch:
                its = items.get(r.id, [])
                writer.writerow([_cell(v) for v in (
                    format_number(r.rma_code), r.status, r.resolution, _iso(r.created_at), r.order_number,
                    r.customer_name, r.customer_email, len(its), sum(q for _, _, q in its),
                    ";".join(sorted({reason for reason, _, _ in its})), ";".join(sku for _, sku, _ in its),
                    _iso(r.received_at), _iso(r.refunded_at), r.amount_refunded, r.currency)])
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
        yield buf.getvalue()

    name = f"returns-{period.start.date()}-{(period.end - timedelta(microseconds=1)).date()}.csv"
    return Response(stream_with_context(rows()), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})

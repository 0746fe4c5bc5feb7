"""The KPI dashboard and the CSV export of a period's returns."""
from __future__ import annotations

import csv
import io
from datetime import timedelta

from flask import Response, flash, redirect, render_template, request, stream_with_context, url_for
from sqlalchemy import select
from sqlalchemy.orm import joinedload, selectinload

from .. import clock
from ..domain.rma_number import format_number
from ..extensions import db
from ..models import Return
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
        query = (select(Return).where(Return.created_at >= period.start, Return.created_at < period.end)
                 .order_by(Return.created_at, Return.id)
                 .options(joinedload(Return.order), selectinload(Return.items))
                 .execution_options(yield_per=500))
        for ret in db.session.scalars(query):
            writer.writerow([_cell(v) for v in (
                format_number(ret.rma_code), ret.status, ret.resolution, _iso(ret.created_at), ret.order.order_number,
                ret.customer_name, ret.customer_email, len(ret.items), sum(i.quantity for i in ret.items),
                ";".join(sorted({i.reason for i in ret.items})), ";".join(i.sku for i in ret.items),
                _iso(ret.received_at), _iso(ret.refunded_at), ret.amount_refunded, ret.currency)])
            if buf.tell() > 64_000:
                yield buf.getvalue()
                buf.seek(0)
                buf.truncate()
        yield buf.getvalue()

    name = f"returns-{period.start.date()}-{(period.end - timedelta(microseconds=1)).date()}.csv"
    return Response(stream_with_context(rows()), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})

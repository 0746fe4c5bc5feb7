"""Key figures of the returns over a period, counted by the database (SQL aggregates).

The period is ``[start, end)`` in UTC. ``parse_period`` reads the ``from``/``to`` of the API and
of the dashboard: a date (``2026-11-01``) means that whole day, so ``from=2026-11-01&to=2026-11-30``
is the month of November; an RFC 3339 instant is taken as it is (``to`` then excluded).
"as of" below is the end of the period, or now when the period ends in the future.

Definitions (the API ``GET /api/v1/kpis`` and the dashboard show the same numbers):

``orders``
    Orders whose ``placed_at`` is in the period.
``returns``
    Returns created (requested) in the period, whatever their status now: a request that was
    later rejected, cancelled or expired still counts as a return request.
``return_rate``
    ``returns / orders`` (4 decimals; null when there is no order in the period).
``item_return_rate``
    Units announced in the returns created in the period / units ordered in the orders placed
    in the period (4 decimals; null when no unit was ordered).
``reasons``
    For the returns created in the period, the number of return items (order lines sent back)
    per reason. Every reason of the contract is listed, with 0 when absent.
``dispositions``
    Items triaged in the period (``triaged_at`` in the period), per disposition:
    ``restock``, ``refurbish``, ``dispute`` (all three listed).
``refund.median_days`` / ``refund.p90_days``
    Over the returns refunded in full in the period (``refunded_at`` in the period): days from
    the request (``created_at``) to the refund, median and 90th percentile, interpolated
    between ranks like PostgreSQL's ``percentile_cont``; 2 decimals; null without refunds.
``refund.on_time_rate``
    Share of those refunds made at or before their due date (the contract's ``due_at``: the
    later of ``created_at`` + ``REFUND_DEADLINE_DAYS`` and the earlier of first carrier scan and
    receipt); 4 decimals; null without refunds.
``refund.overdue``
    Refunds overdue as of the end of the period: resolution ``refund``, not refunded by then,
    evidence of the return (scan or receipt) by then, due date passed by then, and the return
    not ended otherwise. For a period that ends now or later this is exactly the number of
    returns whose ``refund.overdue`` is true in the API.
``disputes.open``
    Disputes open as of the end of the period (opened by then, not resolved by then).
``disputes.median_resolution_hours``
    Disputes resolved in the period: median hours from opening to resolution (1 decimal;
    null when none was resolved).

The dashboard adds: returns per day/week/month, returned units per product (top 10), open
disputes per handler, and the refunds' count. Every figure is one indexed query (see
``bench/README.md`` for the plans on a million returns); nothing is aggregated in Python.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Callable, Optional

from flask import current_app
from sqlalchemy import bindparam, text

from ..clock import parse_rfc3339
from ..domain.policy import DISPOSITIONS, REASONS
from ..extensions import db
from ..models import UTCDateTime
from . import settings

# Statuses in which a refund can still be outstanding (refund_block's "open refund" minus the
# ones that cannot have evidence yet: requested).
OPEN_REFUND_STATUSES = ("authorized", "in_transit", "received", "disputed", "inspected")


class PeriodError(ValueError):
    """``from``/``to`` unreadable or in the wrong order; the message says which."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Period:
    start: datetime
    end: datetime  # excluded

    @property
    def days(self) -> float:
        return (self.end - self.start).total_seconds() / 86400


def _parse_bound(value: str, field: str, *, is_end: bool) -> datetime:
    value = (value or "").strip()
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            if is_end:
                day += timedelta(days=1)
            return datetime.combine(day, time(0), tzinfo=timezone.utc)
        return parse_rfc3339(value)
    except (ValueError, OverflowError):
        raise PeriodError(field, "Give a date (2026-11-01) or an RFC 3339 time (2026-11-01T00:00:00Z).") from None


def parse_period(from_: Optional[str], to: Optional[str], now: datetime, *, default_days: int = 30) -> Period:
    """The period of ``from``/``to`` (either may be absent: the last ``default_days`` days
    up to today included)."""
    end = _parse_bound(to, "to", is_end=True) if to else \
        datetime.combine(now.astimezone(timezone.utc).date() + timedelta(days=1), time(0), tzinfo=timezone.utc)
    try:
        start = _parse_bound(from_, "from", is_end=False) if from_ else end - timedelta(days=default_days)
    except OverflowError:  # 'to' in the first days of year 1: no default start before it
        raise PeriodError("from", "The period is out of range.") from None
    if start >= end:
        raise PeriodError("from", "'from' must be before 'to'.")
    if end - start > timedelta(days=3700):
        raise PeriodError("from", "The period may span at most ten years.")
    return Period(start, end)


# --- SQL, per dialect --------------------------------------------------------------------------
# ``{due}`` is the refund due date and ``{evidence}`` the evidence date of the return ``r``;
# on SQLite both are Julian day numbers (it has no interval arithmetic), on PostgreSQL
# timestamps. ``{t}(:param)`` converts a bound instant to the same scale.
_FRAGMENTS = {
    "postgresql": {
        "evidence": "LEAST(r.first_scan_at, r.received_at)",
        "due": "GREATEST(r.created_at + CAST(:deadline AS interval), LEAST(r.first_scan_at, r.received_at))",
        "t": "",
        "col": "{}",
        # date_part is float arithmetic; EXTRACT would compute in numeric, several times slower.
        "days_between": "date_part('epoch', {a} - {b}) / 86400",
        "hours_between": "date_part('epoch', {a} - {b}) / 3600",
    },
    "sqlite": {
        "evidence": ("(CASE WHEN r.first_scan_at IS NULL THEN julianday(r.received_at) "
                     "WHEN r.received_at IS NULL THEN julianday(r.first_scan_at) "
                     "ELSE min(julianday(r.first_scan_at), julianday(r.received_at)) END)"),
        "due": ("max(julianday(r.created_at) + :days, COALESCE(CASE WHEN r.first_scan_at IS NULL THEN "
                "julianday(r.received_at) WHEN r.received_at IS NULL THEN julianday(r.first_scan_at) "
                "ELSE min(julianday(r.first_scan_at), julianday(r.received_at)) END, 0))"),
        "t": "julianday",
        "col": "julianday({})",
        "days_between": "(julianday({a}) - julianday({b}))",
        "hours_between": "(julianday({a}) - julianday({b})) * 24.0",
    },
}

_TIME_PARAMS = ("start", "end", "as_of", "horizon")


def _dialect() -> str:
    name = db.session.get_bind().dialect.name
    return "postgresql" if name == "postgresql" else "sqlite"


def _sql(template: str, **params: Any):
    f = _FRAGMENTS[_dialect()]
    sql = template.format(evidence=f["evidence"], due=f["due"], t=f["t"],
                          refunded=f["col"].format("r.refunded_at"),
                          days_to_refund=f["days_between"].format(a="r.refunded_at", b="r.created_at"),
                          hours_to_resolve=f["hours_between"].format(a="d.resolved_at", b="d.opened_at"))
    if ":deadline" in sql and "deadline" not in params:
        params["deadline"] = f"{int(params['days'])} days"
    stmt = text(sql)
    binds = [bindparam(p, type_=UTCDateTime()) for p in _TIME_PARAMS if f":{p}" in sql]
    if binds:
        stmt = stmt.bindparams(*binds)
    return db.session.execute(stmt, {k: v for k, v in params.items() if f":{k}" in sql})


def _percentiles(from_where: str, expr: str, fractions: tuple[float, ...], **params: Any) -> list[Optional[float]]:
    """Continuous percentiles of ``expr`` over the rows of ``from_where``: one
    ``percentile_cont`` on PostgreSQL; on SQLite (no such aggregate) the database sorts and
    we read the two rows around each rank."""
    if _dialect() == "postgresql":
        cols = ", ".join(f"percentile_cont({q}) WITHIN GROUP (ORDER BY {expr})" for q in fractions)
        return list(_sql(f"SELECT {cols} {from_where}", **params).one())
    n = _sql(f"SELECT count(*) {from_where}", **params).scalar_one()
    if n == 0:
        return [None for _ in fractions]
    out = []
    for q in fractions:
        pos = q * (n - 1)
        lo = int(pos)
        rows = [r[0] for r in _sql(f"SELECT {expr} AS v {from_where} ORDER BY v LIMIT 2 OFFSET {lo}", **params)]
        value = rows[0] if len(rows) == 1 or pos == lo else rows[0] + (rows[1] - rows[0]) * (pos - lo)
        out.append(value)
    return out


def _ratio(num: int, den: int) -> Optional[float]:
    return round(num / den, 4) if den else None


def _round(value: Optional[float], places: int) -> Optional[float]:
    return None if value is None else round(float(value), places)


def _deadline_days() -> int:
    return int(settings()["REFUND_DEADLINE_DAYS"])


# --- the figures -------------------------------------------------------------------------------

def order_figures(p: Period) -> tuple[int, int]:
    row = _sql("SELECT count(*), COALESCE(SUM(units), 0) FROM orders "
               "WHERE placed_at >= :start AND placed_at < :end", start=p.start, end=p.end).one()
    return int(row[0]), int(row[1])


def return_count(p: Period) -> int:
    return int(_sql("SELECT count(*) FROM returns WHERE created_at >= :start AND created_at < :end",
                    start=p.start, end=p.end).scalar_one())


# The items of the returns created in the period: ``return_items.created_at`` is the return's
# creation time, so one covering index holds them with reason, units and SKU (no join).
_ITEMS = "FROM return_items ri WHERE ri.created_at >= :start AND ri.created_at < :end"


def reason_figures(p: Period) -> tuple[dict[str, int], int]:
    """Items per reason and the units announced, for the returns created in the period."""
    rows = _sql(f"SELECT ri.reason, count(*), SUM(ri.quantity) {_ITEMS} GROUP BY ri.reason",
                start=p.start, end=p.end).all()
    return _reasons(rows)


def _reasons(rows) -> tuple[dict[str, int], int]:
    reasons = {reason: 0 for reason in REASONS}
    units = 0
    for reason, items, qty in rows:
        reasons[reason] = reasons.get(reason, 0) + int(items)
        units += int(qty or 0)
    return reasons, units


def _products(rows, limit: int) -> list[dict[str, Any]]:
    top = sorted(rows, key=lambda r: (-int(r[2]), r[0]))[:limit]
    out = []
    for sku, items, units in top:
        name = _sql("SELECT name FROM order_lines WHERE sku = :sku LIMIT 1", sku=sku).scalar()
        out.append({"sku": sku, "name": name or sku, "items": int(items), "units": int(units)})
    return out


def item_figures(p: Period, limit: int = 10) -> tuple[dict[str, int], int, list[dict[str, Any]]]:
    """Reasons, units and the top products in one pass over the index on PostgreSQL
    (GROUPING SETS); two queries on SQLite."""
    if _dialect() != "postgresql":
        reasons, units = reason_figures(p)
        return reasons, units, top_products(p, limit)
    rows = _sql(f"SELECT ri.reason, ri.sku, count(*), SUM(ri.quantity), GROUPING(ri.reason) {_ITEMS} "
                "GROUP BY GROUPING SETS ((ri.reason), (ri.sku))", start=p.start, end=p.end).all()
    reasons, units = _reasons([(r[0], r[2], r[3]) for r in rows if r[4] == 0])
    return reasons, units, _products([(r[1], r[2], r[3]) for r in rows if r[4] == 1], limit)


def disposition_figures(p: Period) -> dict[str, int]:
    rows = _sql("SELECT disposition, count(*) FROM return_items "
                "WHERE triaged_at >= :start AND triaged_at < :end GROUP BY disposition",
                start=p.start, end=p.end).all()
    out = {d: 0 for d in DISPOSITIONS}
    for disposition, n in rows:
        if disposition in out:
            out[disposition] = int(n)
    return out


def refund_figures(p: Period, now: datetime) -> dict[str, Any]:
    days = _deadline_days()
    where = "FROM returns r WHERE r.refunded_at >= :start AND r.refunded_at < :end"
    on_time_sum = "COALESCE(SUM(CASE WHEN {refunded} <= {due} THEN 1 ELSE 0 END), 0)"
    if _dialect() == "postgresql":  # one pass over the covering index
        count, on_time, quantiles = _sql(
            f"SELECT count(*), {on_time_sum}, percentile_cont(ARRAY[0.5, 0.9]) WITHIN GROUP "
            f"(ORDER BY {{days_to_refund}}) {where}", start=p.start, end=p.end, days=days).one()
        median, p90 = quantiles or (None, None)
    else:
        count, on_time = _sql(f"SELECT count(*), {on_time_sum} {where}", start=p.start, end=p.end, days=days).one()
        median, p90 = _percentiles(where, "{days_to_refund}", (0.5, 0.9), start=p.start, end=p.end)
    return {"median_days": _round(median, 2), "p90_days": _round(p90, 2),
            "on_time_rate": _ratio(int(on_time), int(count)), "overdue": overdue_count(min(p.end, now)),
            "refunded": int(count)}


def overdue_count(as_of: datetime) -> int:
    """Refunds overdue at ``as_of``: still open now (A), or refunded only after ``as_of`` (B)."""
    days = _deadline_days()
    # Due date >= created_at + days, so only returns created before the horizon can be late:
    # a range on the (status, created_at) index, resp. on the covering refund index.
    horizon = as_of - timedelta(days=days)
    statuses = ", ".join(f"'{s}'" for s in OPEN_REFUND_STATUSES)
    late = "{evidence} <= {t}(:as_of) AND {due} < {t}(:as_of)"
    still_open = _sql(f"SELECT count(*) FROM returns r WHERE r.status IN ({statuses}) "
                      f"AND r.resolution = 'refund' AND r.created_at < :horizon AND {late}",
                      as_of=as_of, horizon=horizon, days=days).scalar_one()
    paid_later = _sql(f"SELECT count(*) FROM returns r WHERE r.refunded_at > :as_of "
                      f"AND r.created_at < :horizon AND {late}",
                      as_of=as_of, horizon=horizon, days=days).scalar_one()
    return int(still_open) + int(paid_later)


_OPEN_DISPUTE = "d.opened_at <= :as_of AND (d.resolved_at IS NULL OR d.resolved_at > :as_of)"


def dispute_figures(p: Period, now: datetime) -> dict[str, Any]:
    as_of = min(p.end, now)
    open_ = _sql(f"SELECT count(*) FROM disputes d WHERE {_OPEN_DISPUTE}", as_of=as_of).scalar_one()
    (median,) = _percentiles("FROM disputes d WHERE d.resolved_at >= :start AND d.resolved_at < :end",
                             "{hours_to_resolve}", (0.5,), start=p.start, end=p.end)
    return {"open": int(open_), "median_resolution_hours": _round(median, 1)}


def _analytics_session() -> None:
    """PostgreSQL: enough memory for this transaction's sorts (the refund percentiles sort a
    year of refunds; with the default 4 MB they spill to disk)."""
    if _dialect() == "postgresql":
        db.session.execute(text("SET LOCAL work_mem = '64MB'"))


KPI_CONNECTIONS = 4


def _concurrently(jobs: dict[str, Callable[[], Any]]) -> dict[str, Any]:
    """Run independent figures at the same time, each on its own connection (PostgreSQL): the
    single-threaded parts (a percentile's sort, a hash aggregate) then overlap with the parallel
    scans instead of waiting for them. SQLite (tests, small shops): one after the other."""
    if _dialect() != "postgresql":
        return {name: job() for name, job in jobs.items()}
    app = current_app._get_current_object()

    def run(job):
        with app.app_context():
            try:
                _analytics_session()
                return job()
            finally:
                db.session.rollback()
                db.session.remove()

    with ThreadPoolExecutor(max_workers=min(KPI_CONNECTIONS, len(jobs))) as pool:
        futures = {name: pool.submit(run, job) for name, job in jobs.items()}
        return {name: future.result() for name, future in futures.items()}


def compute(p: Period, now: datetime) -> dict[str, Any]:
    """The figures of ``GET /api/v1/kpis``."""
    r = _concurrently({"refund": lambda: refund_figures(p, now), "reasons": lambda: reason_figures(p),
                       "orders": lambda: order_figures(p), "returns": lambda: return_count(p),
                       "dispositions": lambda: disposition_figures(p), "disputes": lambda: dispute_figures(p, now)})
    orders, units_ordered = r["orders"]
    returns = r["returns"]
    reasons, units_returned = r["reasons"]
    refund = r["refund"]
    refund.pop("refunded")
    return {
        "orders": orders,
        "returns": returns,
        "return_rate": _ratio(returns, orders),
        "item_return_rate": _ratio(units_returned, units_ordered),
        "reasons": reasons,
        "dispositions": r["dispositions"],
        "refund": refund,
        "disputes": r["disputes"],
    }


# --- the dashboard's extras --------------------------------------------------------------------

def bucket_unit(p: Period) -> str:
    if p.days <= 62:
        return "day"
    if p.days <= 731:
        return "week"
    return "month"


def returns_over_time(p: Period) -> tuple[str, list[tuple[date, int]]]:
    """Returns created per day, ISO week (starting Monday) or month, every bucket listed."""
    unit = bucket_unit(p)
    buckets, day = [], _bucket_start(p.start.date(), unit)
    last = (p.end - timedelta(microseconds=1)).date()
    while day <= last:
        buckets.append(day)
        day = _next_bucket(day, unit)
    if _dialect() == "postgresql":
        # One index-only range count per bucket (cheaper than computing a bucket per row).
        bounds = [max(p.start, _midnight(b)) for b in buckets] + [p.end]
        rows = _sql("SELECT b.i, (SELECT count(*) FROM returns r WHERE r.created_at >= b.lo AND r.created_at < b.hi) "
                    "FROM unnest(CAST(:los AS timestamptz[]), CAST(:his AS timestamptz[])) "
                    "WITH ORDINALITY AS b(lo, hi, i)", los=bounds[:-1], his=bounds[1:]).all()
        counts = {buckets[int(i) - 1]: int(n) for i, n in rows}
    else:
        bucket = {"day": "date(r.created_at)", "week": "date(r.created_at, '-6 days', 'weekday 1')",
                  "month": "date(r.created_at, 'start of month')"}[unit]
        rows = _sql(f"SELECT {bucket} AS b, count(*) FROM returns r "
                    "WHERE r.created_at >= :start AND r.created_at < :end GROUP BY b",
                    start=p.start, end=p.end).all()
        counts = {date.fromisoformat(str(r[0])[:10]): int(r[1]) for r in rows}
    return unit, [(b, counts.get(b, 0)) for b in buckets]


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=timezone.utc)


def _bucket_start(day: date, unit: str) -> date:
    if unit == "week":
        return day - timedelta(days=day.weekday())
    if unit == "month":
        return day.replace(day=1)
    return day


def _next_bucket(day: date, unit: str) -> date:
    if unit == "day":
        return day + timedelta(days=1)
    if unit == "week":
        return day + timedelta(days=7)
    return (day.replace(day=28) + timedelta(days=4)).replace(day=1)


def top_products(p: Period, limit: int = 10) -> list[dict[str, Any]]:
    """Products (SKU) with the most units returned in the returns created in the period."""
    rows = _sql(f"SELECT ri.sku, count(*) AS items, SUM(ri.quantity) AS units {_ITEMS} "
                f"GROUP BY ri.sku ORDER BY units DESC, ri.sku LIMIT {int(limit)}",
                start=p.start, end=p.end).all()
    return _products(rows, limit)


def open_disputes_per_handler(p: Period, now: datetime) -> list[dict[str, Any]]:
    rows = _sql("SELECT a.name, a.email, count(*) AS n FROM disputes d LEFT JOIN agents a ON a.id = d.handler_id "
                f"WHERE {_OPEN_DISPUTE} GROUP BY a.id, a.name, a.email ORDER BY n DESC, a.name",
                as_of=min(p.end, now)).all()
    return [{"name": name, "email": email, "open": int(n)} for name, email, n in rows]


def dashboard(p: Period, now: datetime) -> dict[str, Any]:
    """Everything the dashboard shows: the API's figures and the extras."""
    r = _concurrently({"refund": lambda: refund_figures(p, now), "items": lambda: item_figures(p),
                       "orders": lambda: order_figures(p), "series": lambda: returns_over_time(p),
                       "dispositions": lambda: disposition_figures(p), "disputes": lambda: dispute_figures(p, now),
                       "handlers": lambda: open_disputes_per_handler(p, now)})
    orders, units_ordered = r["orders"]
    unit, series = r["series"]
    returns = sum(n for _, n in series)  # the buckets cover the period exactly
    reasons, units_returned, products = r["items"]
    refund = r["refund"]
    return {
        "orders": orders, "units_ordered": units_ordered,
        "returns": returns, "units_returned": units_returned,
        "return_rate": _ratio(returns, orders),
        "item_return_rate": _ratio(units_returned, units_ordered),
        "reasons": reasons,
        "dispositions": r["dispositions"],
        "refund": refund,
        "disputes": r["disputes"],
        "handlers": r["handlers"],
        "products": products,
        "series_unit": unit, "series": series,
    }

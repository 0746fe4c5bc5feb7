"""KPIs on a known data set: every figure of ``services.kpis``, of ``GET /api/v1/kpis`` and of the
dashboard, computed here by hand from the story below.

Story (times UTC, at 10:00 unless said; the clock stands at 2026-11-25 12:00; deadline 14 days):

orders  O0 placed 09-20 · O1 10-20 · O2 11-01 · O3 11-03 · O4 11-10 (8 units each) · O5 11-20 (3 units)
returns R0 on O0, 09-28: L1×1 too_small; received 10-01, restock 10-02, refunded 11-03 (due 10-12: late)
        R1 on O1, 10-28: L1×1 too_small; received 11-02, restock 11-03, refunded 11-04 (on time)
        R5 on O2, 11-03: L2×2 wrong_item; received 11-05, restock 11-06, never refunded (due 11-17: overdue)
        R2 on O2, 11-06: L1×2 damaged + L2×1 changed_mind; received 11-10, restock + refurbish 11-11,
                         refunded 11-12 (on time)
        R3 on O3, 11-07: L2×3 too_large; received 11-09, dispute 11-09 (resolved 11-11 16:00, 54 h);
                         never refunded (due 11-21: overdue)
        R6 on O3, 11-08: L1×1 other; rejected 11-09
        R4 on O4, 11-13: L1×1 defective; received 11-14, restock 11-15 (due 11-27: not yet)
        R8 on O4, 11-14: L2×1 not_as_described; received 11-16, dispute 11-16 (still open)
"""
from __future__ import annotations

import csv
import io
from datetime import datetime, timezone

import pytest
from sqlalchemy import select, update

from rma_service import clock
from rma_service.api.schemas import OrderIn
from rma_service.extensions import db
from rma_service.models import Dispute, Return
from rma_service.services import kpis
from rma_service.services import orders as orders_svc
from rma_service.services import returns as svc
from rma_service.services.representation import return_amount_due
from tests.conftest import NOW, order_body
from tests.e2e.admin_support import login, make_agent


def T(month: int, day: int, hour: int = 10) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=timezone.utc)


def _order(number: str, placed: datetime, delivered: datetime, lines=None) -> None:
    body = order_body(placed_at=placed.isoformat(), delivered_at=delivered.isoformat())
    if lines:
        body["lines"] = lines
    orders_svc.upsert_order(number, OrderIn().load(body), placed)


def _ret(order: str, items: list[tuple[str, int, str]], at: datetime) -> str:
    data = {"order_number": order, "email": "ada@example.com", "resolution": "refund",
            "items": [{"line_id": l, "quantity": q, "reason": r, **({"comment": "see photos"} if r == "other" else {})}
                      for l, q, r in items]}
    return svc.create_return(data, "test", at).rma_code


def _triage(code: str, disposition: dict[str, str], at: datetime) -> None:
    for line_id, d in disposition.items():
        svc.triage(code, line_id, d, "like_new", None, "agent:test", at)


def _refund(code: str, at: datetime) -> None:
    ret = db.session.scalar(select(Return).where(Return.rma_code == code))
    svc.record_refund(code, return_amount_due(ret), "PSP", "agent:test", at)


@pytest.fixture
def story(app):
    with app.app_context(), clock.frozen(NOW):
        _order("O0", T(9, 20), T(9, 25))
        _order("O1", T(10, 20), T(10, 25))
        _order("O2", T(11, 1, 0), T(11, 2))
        _order("O3", T(11, 3), T(11, 6))
        _order("O4", T(11, 10), T(11, 12))
        _order("O5", T(11, 20), T(11, 22), lines=[{"line_id": "L1", "sku": "MUG", "name": "Mug", "quantity": 3,
                                                   "unit_price": "14.00"}])
        r0 = _ret("O0", [("L1", 1, "too_small")], T(9, 28))
        svc.receive(r0, None, "agent:test", T(10, 1))
        _triage(r0, {"L1": "restock"}, T(10, 2))
        r1 = _ret("O1", [("L1", 1, "too_small")], T(10, 28))
        svc.receive(r1, None, "agent:test", T(11, 2))
        _triage(r1, {"L1": "restock"}, T(11, 3))
        _refund(r0, T(11, 3))
        _refund(r1, T(11, 4))
        r5 = _ret("O2", [("L2", 2, "wrong_item")], T(11, 3))
        svc.receive(r5, None, "agent:test", T(11, 5))
        _triage(r5, {"L2": "restock"}, T(11, 6))
        r2 = _ret("O2", [("L1", 2, "damaged"), ("L2", 1, "changed_mind")], T(11, 6))
        svc.receive(r2, None, "agent:test", T(11, 10))
        _triage(r2, {"L1": "restock", "L2": "refurbish"}, T(11, 11))
        _refund(r2, T(11, 12))
        r3 = _ret("O3", [("L2", 3, "too_large")], T(11, 7))
        svc.receive(r3, None, "agent:test", T(11, 9))
        _triage(r3, {"L2": "dispute"}, T(11, 9))
        r6 = _ret("O3", [("L1", 1, "other")], T(11, 8))
        svc.reject(r6, "Not in the policy", "agent:test", T(11, 9))
        r4 = _ret("O4", [("L1", 1, "defective")], T(11, 13))
        svc.receive(r4, None, "agent:test", T(11, 14))
        _triage(r4, {"L1": "restock"}, T(11, 15))
        r8 = _ret("O4", [("L2", 1, "not_as_described")], T(11, 14))
        svc.receive(r8, None, "agent:test", T(11, 16))
        _triage(r8, {"L2": "dispute"}, T(11, 16))
        # The dispute of R3 is resolved after 54 hours (what the handler's resolve would record).
        r3_id = db.session.scalar(select(Return.id).where(Return.rma_code == r3))
        db.session.execute(update(Dispute).where(Dispute.return_id == r3_id)
                           .values(status="resolved", resolved_at=T(11, 11, 16), outcome="accept"))
        db.session.commit()
        statuses = dict(db.session.execute(select(Return.rma_code, Return.status)).all())
        assert [statuses[c] for c in (r0, r1, r2, r3, r4, r5, r6, r8)] == \
            ["refunded", "refunded", "refunded", "disputed", "inspected", "inspected", "rejected", "disputed"]
    return {"r0": r0, "r5": r5, "r3": r3}


NOVEMBER = {
    "orders": 4,                          # O2 O3 O4 O5
    "returns": 6,                         # R2 R3 R4 R5 R6 R8
    "return_rate": 1.5,                   # 6 / 4
    "item_return_rate": 0.4074,           # units 3+3+1+2+1+1 = 11 / (8+8+8+3 = 27)
    "reasons": {"damaged": 1, "defective": 1, "wrong_item": 1, "not_as_described": 1, "too_small": 0,
                "too_large": 1, "changed_mind": 1, "arrived_late": 0, "other": 1},
    # triaged in November: R1 restock, R5 restock, R2 restock + refurbish, R3 dispute, R4 restock, R8 dispute
    "dispositions": {"restock": 4, "refurbish": 1, "dispute": 2},
    # refunded in November: R2 after 6 days, R1 after 7, R0 after 36 → p90 = 7 + 0.8 × 29 = 30.2
    "refund": {"median_days": 7.0, "p90_days": 30.2, "on_time_rate": 0.6667, "overdue": 2},
    "disputes": {"open": 1, "median_resolution_hours": 54.0},
}
OCTOBER = {
    "orders": 1, "returns": 1, "return_rate": 1.0, "item_return_rate": 0.125,
    "reasons": {**{r: 0 for r in NOVEMBER["reasons"]}, "too_small": 1},
    "dispositions": {"restock": 1, "refurbish": 0, "dispute": 0},
    # Nothing refunded in October; at its end (Nov 1 00:00) R0 was overdue (refunded only on Nov 3).
    "refund": {"median_days": None, "p90_days": None, "on_time_rate": None, "overdue": 1},
    "disputes": {"open": 0, "median_resolution_hours": None},
}


def test_service_figures(app, story):
    with app.app_context():
        november = kpis.parse_period("2026-11-01", "2026-11-30", NOW)
        assert (november.start, november.end) == (T(11, 1, 0), T(12, 1, 0))
        assert kpis.compute(november, NOW) == NOVEMBER
        assert kpis.compute(kpis.parse_period("2026-10-01", "2026-10-31", NOW), NOW) == OCTOBER


def test_api_figures(app, api, story, frozen_now):
    resp = api.get("/kpis", query_string={"from": "2026-11-01", "to": "2026-11-30"})
    assert resp.status_code == 200
    assert resp.get_json() == NOVEMBER
    assert list(resp.get_json()) == ["orders", "returns", "return_rate", "item_return_rate", "reasons",
                                     "dispositions", "refund", "disputes"]
    assert api.get("/kpis", query_string={"from": "2026-10-01", "to": "2026-10-31"}).get_json() == OCTOBER
    # RFC 3339 instants work too ("to" excluded).
    same = api.get("/kpis", query_string={"from": "2026-11-01T00:00:00Z", "to": "2026-12-01T00:00:00Z"})
    assert same.get_json() == NOVEMBER


def test_overdue_matches_the_returns_the_api_calls_overdue(app, api, story, frozen_now):
    items = api.get("/returns", query_string={"limit": 100}).get_json()["items"]
    overdue = sorted(r["rma_number"] for r in items if r["refund"]["overdue"])
    assert len(overdue) == NOVEMBER["refund"]["overdue"]
    assert overdue == sorted(f"RMA-{c[:4]}-{c[4:]}" for c in (story["r3"], story["r5"]))


@pytest.mark.parametrize("query, field", [({"from": "2026-11-30", "to": "2026-11-01"}, "from"),
                                          ({"from": "yesterday"}, "from"), ({"to": "2026-13-01"}, "to"),
                                          ({"from": "2026-11-01T00:00:00"}, "from")])
def test_api_refuses_a_bad_period(api, frozen_now, query, field):
    resp = api.get("/kpis", query_string=query)
    assert resp.status_code == 422
    body = resp.get_json()
    assert body["code"] == "validation_error" and field in body["errors"]


def test_api_needs_a_key(client):
    assert client.get("/api/v1/kpis").status_code == 401


def test_dashboard_shows_every_figure(app, client, story, frozen_now):
    make_agent(app)
    login(client)
    html = client.get("/admin/kpis", query_string={"from": "2026-11-01", "to": "2026-11-30"}).get_data(as_text=True)

    def shown(key):
        return html.split(f'data-kpi="{key}">')[1].split("<")[0]

    assert shown("orders") == "4" and shown("returns") == "6"
    assert shown("return_rate") == "150.0 %" and shown("item_return_rate") == "40.7 %"
    assert shown("refund.median_days") == "7.0" and shown("refund.p90_days") == "30.2"
    assert shown("refund.on_time_rate") == "66.7 %" and shown("refund.overdue") == "2"
    assert shown("disputes.open") == "1" and shown("disputes.median_resolution_hours") == "54.0 h"
    for reason, n in NOVEMBER["reasons"].items():
        assert f'data-reason="{reason}">{n}<' in html
    for disposition, n in NOVEMBER["dispositions"].items():
        assert f'data-disposition="{disposition}">{n}<' in html
    # Charts are server-drawn SVG: no script anywhere on the page.
    assert html.count('<svg class="chart"') == 5 and "<script>" not in html
    assert "Wool socks (SOCKS): 7" in html and "Linen shirt (SHIRT-M): 4" in html  # units per product
    assert html.count("<title>2026-11-") == 30                                      # one bar per day


def test_dashboard_extras(app, story):
    with app.app_context():
        november = kpis.parse_period("2026-11-01", "2026-11-30", NOW)
        data = kpis.dashboard(november, NOW)
        assert data["units_ordered"] == 27 and data["units_returned"] == 11 and data["refund"]["refunded"] == 3
        assert [(p["sku"], p["units"], p["items"]) for p in data["products"]] == [("SOCKS", 7, 4), ("SHIRT-M", 4, 3)]
        assert data["series_unit"] == "day" and len(data["series"]) == 30
        assert {d.day: n for d, n in data["series"] if n} == {3: 1, 6: 1, 7: 1, 8: 1, 13: 1, 14: 1}
        assert sum(h["open"] for h in data["handlers"]) == 1
        year = kpis.parse_period("2025-12-01", "2026-11-30", NOW)
        unit, series = kpis.returns_over_time(year)
        assert unit == "week" and sum(n for _, n in series) == 8
        assert all(d.weekday() == 0 for d, _ in series)


def test_csv_export_of_the_period(app, client, story, frozen_now):
    make_agent(app)
    login(client)
    resp = client.get("/admin/kpis/returns.csv", query_string={"from": "2026-11-01", "to": "2026-11-30"})
    assert resp.status_code == 200 and resp.mimetype == "text/csv"
    assert 'filename="returns-2026-11-01-2026-11-30.csv"' in resp.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(resp.get_data(as_text=True))))
    assert len(rows) == 6
    assert [r["created_at"][:10] for r in rows] == ["2026-11-03", "2026-11-06", "2026-11-07", "2026-11-08",
                                                    "2026-11-13", "2026-11-14"]
    r2 = rows[1]
    assert (r2["status"], r2["units"], r2["reasons"], r2["skus"], r2["amount_refunded"]) == \
        ("refunded", "3", "changed_mind;damaged", "SHIRT-M;SOCKS", "109.30")


def test_csv_cells_are_not_formulas(app, client, api, frozen_now):
    make_agent(app)
    login(client)
    body = order_body(customer={"email": "eve@example.com", "name": "=HYPERLINK(\"http://x\")", "locale": "en"})
    api.put("/orders/9001", json=body)
    api.post("/returns", json={"order_number": "9001", "email": "eve@example.com",
                               "items": [{"line_id": "L1", "quantity": 1, "reason": "too_small"}]})
    text = client.get("/admin/kpis/returns.csv").get_data(as_text=True)
    assert "'=HYPERLINK" in text

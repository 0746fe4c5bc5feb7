"""The warehouse and reporting side of the admin view, where it once failed its users: the
dashboard on 29 February, a period at the calendar's start, a CSV export of an unreadable
period or with accented names, a refused receive form that forgot the counts typed, the
search for an order number as customers write it, a refurbish queue past 200 items."""
from __future__ import annotations

import re
from datetime import datetime, timezone

import pytest
from sqlalchemy import select, update

from rma_service import clock
from rma_service.extensions import db
from rma_service.models import ReturnItem

from .admin_support import create_return, flashes, get_return, login, post_form, put_order

SMALL = [{"line_id": "L1", "quantity": 1, "reason": "too_small"}]


def _as_in_production(app) -> None:
    """Unhandled exceptions become the 500 page a user sees, instead of being raised into the test."""
    app.config["PROPAGATE_EXCEPTIONS"] = False


# --- KPI dashboard -----------------------------------------------------------------------------

def test_the_kpi_dashboard_opens_on_29_february(app, client, admin):
    _as_in_production(app)
    login(client)
    with clock.frozen(datetime(2028, 2, 29, 9, 0, tzinfo=timezone.utc)):
        resp = client.get("/admin/kpis")
    assert resp.status_code == 200
    assert 'data-kpi="returns"' in resp.get_data(as_text=True)


def test_api_kpis_with_a_period_at_the_start_of_the_calendar_is_a_422(app, api, frozen_now):
    _as_in_production(app)
    resp = api.get("/kpis", query_string={"to": "0001-01-10"})
    assert resp.status_code == 422, resp.get_json()
    assert resp.get_json()["code"] == "validation_error"


# --- CSV export --------------------------------------------------------------------------------

def test_the_csv_export_of_an_invalid_period_is_refused_not_replaced_by_another_period(app, signed_in, api):
    create_return(api, "1001", SMALL)
    resp = signed_in.get("/admin/kpis/returns.csv", query_string={"from": "2026-11-30", "to": "2026-11-01"})
    resp.get_data()  # read it all, as the browser does (and the streamed export ends its transaction)
    assert resp.status_code == 302, resp.headers.get("Content-Disposition")
    assert resp.headers["Location"] == "/admin/kpis?from=2026-11-30&to=2026-11-01"
    page = signed_in.get(resp.headers["Location"]).get_data(as_text=True)
    assert "'from' must be before 'to'." in " ".join(flashes(page))


def test_the_csv_export_opens_with_accented_names_intact_in_excel(app, signed_in, api):
    put_order(api, "3001", customer={"email": "helene@example.com", "name": "Hélène Dupré", "locale": "fr"})
    create_return(api, "3001", SMALL, email="helene@example.com")
    resp = signed_in.get("/admin/kpis/returns.csv")
    body = resp.get_data()
    assert "Hélène Dupré".encode() in body
    assert body.startswith(b"\xef\xbb\xbf"), body[:40]


# --- receiving station ---------------------------------------------------------------------------

def test_a_refused_receive_form_keeps_the_counts_the_worker_typed(app, signed_in, api):
    number = create_return(api, "1001", [{"line_id": "L1", "quantity": 2, "reason": "damaged"},
                                         {"line_id": "L2", "quantity": 3, "reason": "too_small"}])["rma_number"]
    station = f"/admin/receiving/{number}"
    shirts, socks = get_return(app, number).items
    resp = post_form(signed_in, station, f"/admin/returns/{number}/receive",
                     {"source": "station", f"qty_{shirts.id}": "1", f"cond_{shirts.id}": "damaged",
                      f"qty_{socks.id}": "", f"cond_{socks.id}": "used"}, follow_redirects=True)
    page = resp.get_data(as_text=True)
    assert flashes(page), "the refusal is told"
    assert get_return(app, number).status == "authorized"
    shown = re.search(rf'name="qty_{shirts.id}"[^>]*value="([^"]*)"', page).group(1)
    assert shown == "1", f"the worker typed 1 shirt, the form now says {shown}"
    condition = re.search(rf'<select id="cond_{shirts.id}".*?</select>', page, re.S).group(0)
    assert 'value="damaged" selected' in condition


# --- search --------------------------------------------------------------------------------------

@pytest.mark.parametrize("typed", ["#1001", "# 1001", "shop-2002", "SHOP 2002"])
def test_search_finds_an_order_number_as_customers_write_it(app, signed_in, api, typed):
    put_order(api, "Shop-2002")
    wanted = {"#1001": create_return(api, "1001", SMALL)["rma_number"],
              "shop": create_return(api, "Shop-2002", SMALL)["rma_number"]}
    expected = wanted["#1001"] if "1001" in typed else wanted["shop"]
    with app.app_context():  # the customers' page reads this spelling as the order
        from rma_service.services.orders import customer_order_number
        assert customer_order_number(typed) == ("1001" if "1001" in typed else "Shop-2002")
    resp = signed_in.get("/admin/search", query_string={"q": typed})
    assert resp.status_code == 302, "No return matches" in resp.get_data(as_text=True)
    assert resp.headers["Location"] == f"/admin/returns/{expected}"


# --- refurbish -----------------------------------------------------------------------------------

def test_the_refurbish_queue_counts_every_waiting_item(app, signed_in, api):
    put_order(api, "4001", lines=[{"line_id": "L1", "sku": "LAMP", "name": "Desk lamp", "quantity": 300,
                                   "unit_price": "20.00"}])
    for _ in range(205):
        create_return(api, "4001", [{"line_id": "L1", "quantity": 1, "reason": "damaged"}])
    with app.app_context():
        # What receive + triage "refurbish" leave behind (the same columns the service sets).
        db.session.execute(update(ReturnItem).values(received_quantity=1, disposition="refurbish",
                                                     condition="used", refurbish_status="pending",
                                                     triaged_at=clock.now()))
        db.session.commit()
        waiting = len(db.session.scalars(select(ReturnItem.id).where(ReturnItem.refurbish_status == "pending")).all())
    assert waiting == 205
    html = signed_in.get("/admin/refurbish").get_data(as_text=True)
    count = re.search(r'<h1>Refurbish <span class="count big">(\d+)</span>', html).group(1)
    assert count == "205", f"the heading says {count} items wait"
    assert "The oldest 200 of 205 are listed; the others follow as these are finished." in html


"""The admin view in a real browser (Playwright driving Debian's chromium) against a live server:
sign-in, the receiving station driven by the keyboard (scan, Enter, receive, triage into the
three dispositions), the refurbish step, recording a refund, the role wall, and customer text
that must stay text."""
from __future__ import annotations

import os
import re

import pytest
from sqlalchemy import select

from rma_service.extensions import db
from rma_service.models import OutboxEvent
from tests.conftest import order_body

from .admin_support import PASSWORD, create_return, get_return, make_agent, put_order, set_tracking

pytestmark = pytest.mark.usefixtures("frozen_now")

LINES = [
    {"line_id": "L1", "sku": "SHIRT-M", "name": "Linen shirt", "quantity": 2, "unit_price": "49.90"},
    {"line_id": "L2", "sku": "SOCKS", "name": "Wool socks", "quantity": 5, "unit_price": "9.50"},
    {"line_id": "L3", "sku": "JACKET-L", "name": "Rain jacket", "quantity": 1, "unit_price": "189.00"},
]


def sign_in(page, email="alex@example.com", password=PASSWORD, path="/admin/"):
    page.goto(page.base + path)
    assert "/admin/login" in page.url
    page.fill("#email", email)
    page.fill("#password", password)
    page.press("#password", "Enter")
    page.wait_for_url(re.compile(re.escape(path.split("?")[0]) + ".*"))


def focused_id(page) -> str:
    return page.evaluate("document.activeElement && document.activeElement.id")


def wait_focus(page, element_id: str) -> None:
    """Autofocus lands once the page is ready; a scanner (or a test) types after that."""
    page.wait_for_function(f"document.activeElement && document.activeElement.id === {element_id!r}")


def test_station_scan_receive_triage_three_ways_refurbish_and_refund(app, api, page):
    make_agent(app)
    put_order(api, "3001", lines=LINES)
    put_order(api, "3002", lines=LINES)
    parcel = create_return(api, "3001", [{"line_id": "L1", "quantity": 1, "reason": "too_small"},
                                         {"line_id": "L2", "quantity": 2, "reason": "damaged"},
                                         {"line_id": "L3", "quantity": 1, "reason": "defective"}])["rma_number"]
    second = create_return(api, "3002", [{"line_id": "L1", "quantity": 1, "reason": "too_small"}])["rma_number"]
    set_tracking(app, second, "6A00000000042", "delivered")

    sign_in(page, path="/admin/receiving")
    wait_focus(page, "code")  # the scanner types straight into the box
    # A hand-typed number: lower case, no hyphens. Enter opens the parcel.
    page.keyboard.type(parcel.lower().replace("-", ""))
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/admin/receiving/{parcel}")
    assert page.locator("h1.rma-title").inner_text().startswith(parcel)

    ret = get_return(app, parcel)
    first, socks, jacket = ret.items
    wait_focus(page, f"qty_{first.id}")
    page.select_option(f"#cond_{socks.id}", "used")
    page.select_option(f"#cond_{jacket.id}", "damaged")
    page.focus(f"#qty_{first.id}")
    with page.expect_navigation():
        page.keyboard.press("Enter")  # Enter submits the receive form
    page.wait_for_selector("#triage")
    assert f"{parcel} received." in page.locator(".flashes").inner_text()
    assert get_return(app, parcel).status == "received"

    for item, disposition in ((first, "restock"), (socks, "refurbish"), (jacket, "dispute")):
        form = page.locator(f"form[aria-label='Triage {item.name}']")
        form.locator(f"input[value='{disposition}']").check()
        form.locator("input[name$='-note']").fill(f"{disposition} it")
        with page.expect_navigation():
            form.locator("button[type=submit]").click()
        assert f"{item.name}: {disposition}." in page.locator(".flashes").inner_text()

    assert "a dispute is open" in page.locator(".done").inner_text()
    ret = get_return(app, parcel)
    assert ret.status == "disputed"
    assert [(i.disposition, i.condition) for i in ret.items] == [
        ("restock", "like_new"), ("refurbish", "used"), ("dispute", "damaged")]
    assert ret.items[1].refurbish_status == "pending"

    # The refurbish step: back in stock as grade B, and the shop hears of it.
    page.click("nav.nav >> text=Refurbish")
    row = page.locator("tr", has_text="Wool socks")
    row.locator("button[value=refurbished]").click()
    page.wait_for_selector("text=No item waits for refurbishment.")
    assert get_return(app, parcel).items[1].refurbish_status == "refurbished"
    with app.app_context():
        types = db.session.scalars(select(OutboxEvent.type).order_by(OutboxEvent.id)).all()
    assert "item.restocked" in types and "item.refurbished" in types

    # The second parcel is found by its tracking number; Enter receives everything announced.
    page.goto(page.base + "/admin/receiving")
    wait_focus(page, "code")
    page.keyboard.type("6a00000000042")
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/admin/receiving/{second}")
    wait_focus(page, f"qty_{get_return(app, second).items[0].id}")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    page.wait_for_selector("#triage")
    form = page.locator("form.triage")
    form.locator("input[value=restock]").check()
    with page.expect_navigation():
        form.locator("button[type=submit]").click()
    assert "Every item of this parcel is triaged (inspected)" in page.inner_text("main")

    # Record the refund on the return page: first part, then the rest.
    page.click("text=Full return page")
    page.wait_for_url(f"**/admin/returns/{second}")
    refund_box = page.locator("#refund")
    assert "44.00 EUR" in refund_box.inner_text()  # 49.90 minus the 5.90 return shipping (customer's reason)
    assert page.input_value("#amount") == "44.00"
    page.fill("#amount", "20.00")
    page.fill("#reference", "PSP-1")
    page.click("#refund-form button[type=submit]")
    page.wait_for_selector("text=Refund of 20.00 recorded")
    ret = get_return(app, second)
    assert ret.status == "inspected" and str(ret.amount_refunded) == "20.00"
    assert page.input_value("#amount") == "24.00"
    page.fill("#reference", "PSP-2")
    page.press("#reference", "Enter")
    page.wait_for_selector("text=Refund of 24.00 recorded")
    ret = get_return(app, second)
    assert ret.status == "refunded" and ret.refund_reference == "PSP-2"
    assert "refunded" in page.locator("h1.rma-title").inner_text()
    assert page.locator("#refund-form").count() == 0  # no refund button on a refunded return
    timeline = page.locator("#timeline").inner_text()
    assert "refund partial" in timeline and "agent:alex@example.com" in timeline


def test_a_plain_agent_cannot_open_agent_management(app, page):
    make_agent(app, "sam@example.com", "Sam Lee", role="agent")
    sign_in(page, "sam@example.com")
    assert page.locator("nav.nav a", has_text="Agents").count() == 0
    response = page.goto(page.base + "/admin/agents")
    assert response.status == 403
    assert page.locator("h1").inner_text() == "Admins only"
    assert page.locator("form[action='/admin/agents']").count() == 0


def test_customer_html_is_shown_as_text_never_run(app, api, page):
    make_agent(app)
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    evil_comment = "<script>window.__pwned = 1; alert('comment')</script><img src=x onerror=\"alert('img')\">"
    evil_name = "<b onmouseover=alert('name')>Mallory</b>"
    body = order_body(customer={"email": "mallory@example.com", "name": evil_name, "locale": "en"})
    api.put("/orders/6666", json=body)
    number = create_return(api, "6666", [{"line_id": "L1", "quantity": 1, "reason": "other", "comment": evil_comment}],
                           email="mallory@example.com")["rma_number"]

    sign_in(page)
    for path in (f"/admin/returns/{number}", f"/admin/receiving/{number}", "/admin/queues/to_approve",
                 "/admin/search?q=mallory@example.com"):
        page.goto(page.base + path)
        assert page.locator("img[src='x']").count() == 0, path
        assert page.locator("b[onmouseover]").count() == 0, path
        assert page.evaluate("window.__pwned") is None, path
    page.goto(page.base + f"/admin/returns/{number}")
    assert page.locator("td .comment").inner_text() == evil_comment  # the literal text, shown
    assert evil_name in page.inner_text("main")
    # A note with markup, typed by an agent, is text too.
    page.fill("#body", "<img src=x onerror=alert('note')>")
    page.click("#notes button[type=submit]")
    page.wait_for_selector("text=Note added.")
    assert page.locator("#timeline .note .comment").inner_text() == "<img src=x onerror=alert('note')>"
    assert page.locator("img[src='x']").count() == 0
    page.mouse.move(300, 300)
    assert dialogs == []


# --- the header, the menu and the page width at desktop, laptop and phone sizes ---------------

VIEWPORTS = {"desktop-1366": (1366, 768), "laptop-1024": (1024, 768), "phone-390": (390, 844)}
FITS = "document.documentElement.scrollWidth <= window.innerWidth"


def _menu_data(app, api) -> dict:
    """An admin who handles disputes, a return with a long item name and a dispute."""
    from .admin_support import open_dispute
    make_agent(app, disputes=True)
    long_name = "Téléviseur OLED 65 pouces Ultra HD avec pied pivotant et télécommande vocale, édition 2026"
    put_order(api, "4001", lines=[{"line_id": "L1", "sku": "TV-OLED-65-ULTRA-HD-2026-EDITION-BLACK", "name": long_name,
                                   "quantity": 1, "unit_price": "1899.00"},
                                  {"line_id": "L2", "sku": "HDMI", "name": "HDMI cable", "quantity": 2,
                                   "unit_price": "19.90"}])
    number = create_return(api, "4001", [{"line_id": "L1", "quantity": 1, "reason": "defective"},
                                         {"line_id": "L2", "quantity": 1, "reason": "changed_mind"}])["rma_number"]
    assert api.post(f"/returns/{number}/approve").status_code == 200  # worth more than the approval threshold
    set_tracking(app, number, "SI4869526485218", "delivered")
    dispute_id = open_dispute(api, number)
    waiting = create_return(api, "4001", [{"line_id": "L2", "quantity": 1, "reason": "changed_mind"}])
    return {"number": number, "dispute_id": dispute_id, "waiting": waiting["rma_number"]}


@pytest.mark.parametrize("size", list(VIEWPORTS))
def test_every_menu_link_is_reachable_and_no_page_is_wider_than_the_window(app, api, page, size):
    data = _menu_data(app, api)
    width, height = VIEWPORTS[size]
    page.set_viewport_size({"width": width, "height": height})
    sign_in(page, path="/admin/queues/all")

    header = page.locator("header.topbar").bounding_box()
    links = page.locator("nav.nav a")
    assert links.count() == 8  # Queues, Receiving, Refurbish, My disputes, Unassigned, KPIs, Agents, Settings
    hrefs = []
    for i in range(links.count()):
        link = links.nth(i)
        assert link.is_visible(), link.inner_text()
        box = link.bounding_box()
        # Inside the window and on the dark bar, on one line.
        assert box["x"] >= 0 and box["x"] + box["width"] <= width, (link.inner_text(), box)
        assert header["y"] <= box["y"] and box["y"] + box["height"] <= header["y"] + header["height"], link.inner_text()
        assert box["height"] < 40, (link.inner_text(), box)
        hrefs.append(link.get_attribute("href"))
    for name in ("a[title='Your account']", "header button:has-text('Sign out')"):
        box = page.locator(name).bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= width, (name, box)
        assert header["y"] <= box["y"] and box["y"] + box["height"] <= header["y"] + header["height"], (name, box)
    # Every link answers a click (nothing covers it) and opens its page.
    for i, href in enumerate(hrefs):
        with page.expect_navigation() as navigation:
            page.locator("nav.nav a").nth(i).click()
        assert navigation.value.ok and href.rstrip("/") in page.url, (href, page.url)  # "Queues" → first queue
        assert page.evaluate(FITS), (size, href, page.evaluate("document.documentElement.scrollWidth"))

    # No page is wider than the window: wide tables scroll inside their box.
    for path in (f"/admin/returns/{data['number']}", f"/admin/disputes/{data['dispute_id']}",
                 f"/admin/receiving/{data['waiting']}", f"/admin/receiving/{data['number']}",
                 "/admin/queues/to_receive", "/admin/search?q=" + "x" * 500, "/admin/search?q=ada@example.com",
                 "/admin/account"):
        page.goto(page.base + path)
        assert page.evaluate(FITS), (size, path, page.evaluate("document.documentElement.scrollWidth"))
    if width < 800:
        page.goto(page.base + "/admin/queues/all")
        box = page.locator(".scroll").first
        assert box.evaluate("e => e.scrollWidth > e.clientWidth")  # the table scrolls in its box
    shots = os.environ.get("RMA_TEST_ADMIN_SCREENSHOTS")  # a folder: keep pictures of the pages to look at
    if shots:
        for name, path in (("queue", "/admin/queues/all"), ("return", f"/admin/returns/{data['number']}"),
                           ("dispute", f"/admin/disputes/{data['dispute_id']}"),
                           ("station", f"/admin/receiving/{data['number']}"), ("search", "/admin/search?q=" + "x" * 500)):
            page.goto(page.base + path)
            page.screenshot(path=os.path.join(shots, f"admin-{name}-{size}.png"), full_page=True)

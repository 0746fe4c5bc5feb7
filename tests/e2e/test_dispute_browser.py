"""Acceptance (issue 6): a whole dispute in real browsers against a live server. Triage to
dispute in the admin view → the customer sees the handler's name on the status page and
writes → the handler answers from "My disputes" → resolves partially → the customer sees the
reply, the decision and the new refund due. Plus the role wall on the dispute's actions."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from rma_service.extensions import db
from rma_service.models import Dispute

from .admin_support import PASSWORD, create_return, get_return, login, make_agent, post_form
from .test_admin_browser import sign_in

pytestmark = pytest.mark.usefixtures("frozen_now")

ITEMS = [{"line_id": "L1", "quantity": 1, "reason": "damaged"}, {"line_id": "L2", "quantity": 2, "reason": "damaged"}]


def received_return(api) -> str:
    """Return 1 × Linen shirt (49.90) + 2 × Wool socks (9.50), received; the socks restocked.
    Reason "damaged": the shop pays the return shipping, so the refund due is the items' value."""
    number = create_return(api, "1001", ITEMS)["rma_number"]
    assert api.post(f"/returns/{number}/receive", json={}).status_code == 200
    resp = api.post(f"/returns/{number}/items/L2/triage", json={"disposition": "restock", "condition": "new"})
    assert resp.status_code == 200, resp.get_json()
    return number


def status_path(api, number: str) -> str:
    link = api.get(f"/returns/{number}").get_json()["links"]["status_page"]
    return re.sub(r"^https?://[^/]+", "", link)


def refund_box(page) -> str:
    return page.locator("section[aria-labelledby='refund-title']").inner_text()


def test_a_whole_dispute_from_triage_to_the_customer_seeing_the_outcome(app, api, order, page, browser, live_server):
    make_agent(app, "grace@shop.test", "Grace Hopper", role="agent", disputes=True)
    number = received_return(api)

    # The handler (a plain agent who handles disputes) triages the shirt as disputed.
    handler = page
    sign_in(handler, "grace@shop.test", path=f"/admin/returns/{number}")
    form = handler.locator("form[aria-label='Triage Linen shirt']")
    form.locator("input[value='dispute']").check()
    form.locator("input[name$='-note']").fill("Deep scratch on the collar, not as described")
    with handler.expect_navigation():
        form.locator("button[type=submit]").click()
    assert get_return(app, number).status == "disputed"
    # The return page links to its dispute, which went to Grace (the only handler).
    assert "Grace Hopper" in handler.locator("section[aria-labelledby='dispute-h']").inner_text()

    # The customer, in another browser, sees the handler's name and the refund due so far.
    context = browser.new_context(base_url=live_server.url, locale="en-GB")
    customer = context.new_page()
    customer.set_default_timeout(10_000)
    try:
        customer.goto(live_server.url + status_path(api, number))
        assert "Grace Hopper handles your case personally" in customer.locator("#messages").inner_text()
        assert "€68.90" in refund_box(customer)       # 49.90 (at stake) + 2 × 9.50
        customer.fill("#body", "It was fine when I packed it. <b>Really</b>.")
        with customer.expect_navigation():
            customer.locator("#messages button[type=submit]").click()
        assert "<b>Really</b>" in customer.locator("#messages .message-customer").inner_text()

        # The handler opens "My disputes" from the navigation: the customer is waiting.
        handler.get_by_role("link", name="My disputes").first.click()
        handler.wait_for_url("**/admin/disputes")
        row = handler.locator("table.disputes tbody tr")
        assert row.count() == 1
        assert number in row.inner_text() and "waiting for your reply" in row.inner_text()
        row.locator("a", has_text="Dispute #").click()
        handler.wait_for_url(re.compile(r".*/admin/disputes/\d+$"))
        conversation = handler.locator("#conversation")
        customer_msg = conversation.locator(".msg-customer")
        assert "It was fine when I packed it. <b>Really</b>." in customer_msg.inner_text()  # text, never markup
        assert customer_msg.locator("b").count() == 0
        page_text = handler.locator("main").inner_text()
        assert "Deep scratch on the collar" in page_text and "49.90 EUR" in page_text and "Linen shirt" in page_text

        handler.fill("#body", "Thanks. The photos show a scratch we would have seen at dispatch.")
        with handler.expect_navigation():
            handler.locator("#reply-form button[type=submit]").click()
        assert "Reply sent to the customer." in handler.locator(".flashes").inner_text()
        assert "Handler · Grace Hopper" in handler.locator("#conversation .msg-handler").inner_text()

        # A partial decision without an amount is refused with a message, no crash.
        handler.locator("#resolve-form input[value='partial']").check()
        handler.fill("#note", "We refund part of the shirt: the scratch is small.")
        with handler.expect_navigation():
            handler.locator("#resolve-form button[type=submit]").click()
        assert "Required for a partial outcome." in handler.locator(".flashes").inner_text()

        handler.locator("#resolve-form input[value='partial']").check()
        handler.fill("#amount", "20.00")
        handler.fill("#note", "We refund part of the shirt: the scratch is small.")
        with handler.expect_navigation():
            handler.locator("#resolve-form button[type=submit]").click()
        assert "Dispute resolved: partial." in handler.locator(".flashes").inner_text()
        assert handler.locator(".outcome").inner_text() == "partial"
        assert handler.locator("#resolve-form").count() == 0
        assert get_return(app, number).status == "inspected"

        # The customer sees the reply, the decision and the new amount due.
        customer.reload()
        messages = customer.locator("#messages")
        assert "The photos show a scratch we would have seen at dispatch." in \
            messages.locator(".message-handler").inner_text()
        assert "Grace Hopper" in messages.locator(".message-handler").inner_text()
        outcome = customer.locator("#dispute-outcome").inner_text()
        assert "We refund part of the disputed items: €20.00." in outcome
        assert "We refund part of the shirt: the scratch is small." in outcome
        assert customer.locator("#messages form").count() == 0   # resolved: no more messages
        box = refund_box(customer)
        assert "€39.00" in box and "€68.90" not in box           # 20.00 + 2 × 9.50
        assert api.get(f"/returns/{number}").get_json()["refund"]["amount_due"] == "39.00"
    finally:
        context.close()


def _open_dispute(api) -> int:
    number = received_return(api)
    resp = api.post(f"/returns/{number}/items/L1/triage",
                    json={"disposition": "dispute", "condition": "damaged", "note": "scratched"})
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()["dispute"]["id"]


def _dispute(app, dispute_id: int) -> Dispute:
    with app.app_context():
        d = db.session.scalar(select(Dispute).where(Dispute.id == dispute_id))
        db.session.expunge_all()
        return d


def test_only_the_handler_or_an_admin_acts_and_only_admins_reassign(app, api, order, client):
    grace = make_agent(app, "grace@shop.test", "Grace Hopper", role="agent", disputes=True)
    dispute_id = _open_dispute(api)
    assert _dispute(app, dispute_id).handler_id == grace
    linus = make_agent(app, "linus@shop.test", "Linus", role="agent", disputes=True)
    make_agent(app, "bob@shop.test", "Bob Plain", role="agent")
    page_url = f"/admin/disputes/{dispute_id}"

    # A plain agent may read the dispute, but not answer, resolve or reassign it.
    login(client, "bob@shop.test", PASSWORD)
    html = client.get(page_url).get_data(as_text=True)
    assert "Grace Hopper" in html and 'id="resolve-form"' not in html and 'id="reassign-form"' not in html
    for action, data in (("resolve", {"outcome": "reject", "note": "no"}), ("messages", {"body": "hi"}),
                         ("reassign", {"agent_id": str(linus)})):
        resp = post_form(client, page_url, f"{page_url}/{action}", data)
        assert resp.status_code == 403, action
        assert "403" in resp.get_data(as_text=True)
    assert _dispute(app, dispute_id).status == "open" and _dispute(app, dispute_id).handler_id == grace
    assert client.get("/admin/disputes/unassigned").status_code == 403

    # The handler may not reassign either; an admin may.
    client = app.test_client()
    login(client, "grace@shop.test", PASSWORD)
    assert post_form(client, page_url, f"{page_url}/reassign", {"agent_id": str(linus)}).status_code == 403
    assert "Grace" in client.get("/admin/disputes").get_data(as_text=True)

    make_agent(app, "alex@example.com", "Alex Admin", role="admin")
    client = app.test_client()
    login(client, "alex@example.com", PASSWORD)
    html = client.get(page_url).get_data(as_text=True)
    assert 'id="reassign-form"' in html and "Linus (linus@shop.test)" in html
    resp = post_form(client, page_url, f"{page_url}/reassign", {"agent_id": str(linus)}, follow_redirects=True)
    assert "Dispute given to Linus." in resp.get_data(as_text=True)
    assert _dispute(app, dispute_id).handler_id == linus
    # A refused decision is a flash message, not an error page.
    resp = post_form(client, page_url, f"{page_url}/resolve", {"outcome": "partial", "amount": "99.00", "note": "x"},
                     follow_redirects=True)
    assert resp.status_code == 200 and "At most the disputed value" in resp.get_data(as_text=True)
    assert client.get("/admin/disputes/unassigned").status_code == 200


def test_the_dispute_page_shows_the_customers_photos_and_every_outcome_needs_a_note(app, api, order, page):
    from .admin_support import customer_return, open_dispute, png_bytes
    make_agent(app, "grace@shop.test", "Grace Hopper", role="agent", disputes=True)
    number = customer_return(app, [{"line_id": "L1", "quantity": 1, "reason": "damaged"}],
                             photos={"L1": [png_bytes()]})
    dispute_id = open_dispute(api, number)
    sign_in(page, "grace@shop.test", path=f"/admin/disputes/{dispute_id}")

    # The customer's photo, beside the disputed item: loaded, and a link to the full picture.
    thumb = page.locator("section[aria-labelledby='ditems-h'] .photos a img")
    assert thumb.count() == 1 and thumb.is_visible()
    page.wait_for_function("img => img.complete && img.naturalWidth === 48", arg=thumb.element_handle())
    href = page.locator("section[aria-labelledby='ditems-h'] .photos a").get_attribute("href")
    photo = page.request.get(page.base + href)
    assert photo.status == 200 and photo.headers["content-type"] == "image/png"

    # Rejecting without a note: the browser asks for it and nothing is sent.
    page.locator("#resolve-form input[value='reject']").check()
    page.locator("#resolve-form button[type=submit]").click()
    assert page.evaluate("document.querySelector('#note').validity.valueMissing")
    assert _dispute(app, dispute_id).status == "open"
    page.fill("#note", "The scratch is on the photo you sent before the parcel left us.")
    with page.expect_navigation():
        page.locator("#resolve-form button[type=submit]").click()
    assert "Dispute resolved: reject." in page.locator(".flashes").inner_text()
    dispute = _dispute(app, dispute_id)
    assert dispute.outcome == "reject"
    assert dispute.resolution_note == "The scratch is on the photo you sent before the parcel left us."

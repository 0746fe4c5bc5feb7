"""The admin view through the test client (CSRF enabled, as in production): sign-in, CSRF,
roles, every action of the return page, search, queues and their pagination, photos,
refurbishing, notes and agent management. Every refused action changes nothing."""
from __future__ import annotations

import html as _html
import os
import re as _re
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from rma_service.extensions import db
from rma_service.models import Agent, Dispute, DisputeMessage, Event, Label, OutboxEvent, Photo, ReturnItem
from tests.conftest import NOW, return_body

from .admin_support import (PASSWORD, create_return, csrf_token, customer_return, flashes, get_return, login,
                            make_agent, open_dispute, photo_ids, png_bytes, post_form, put_order, set_tracking)

SMALL = [{"line_id": "L1", "quantity": 1, "reason": "too_small"}]
NEEDS_APPROVAL = [{"line_id": "L1", "quantity": 1, "reason": "other", "comment": "Colour is off"}]


def _events(app, number, type_=None):
    ret = get_return(app, number)
    with app.app_context():
        query = select(Event).where(Event.return_id == ret.id)
        if type_:
            query = query.where(Event.type == type_)
        return db.session.scalars(query.order_by(Event.id)).all()


# --- sign-in -------------------------------------------------------------------------------------

def test_every_admin_page_needs_sign_in(client, admin, frozen_now):
    for path in ("/admin/", "/admin/queues/to_approve", "/admin/kpis", "/admin/agents", "/admin/receiving",
                 "/admin/photos/1", "/admin/returns/RMA-0000-0000"):
        resp = client.get(path)
        assert resp.status_code == 302, path
        assert resp.headers["Location"].startswith("/admin/login?next="), path


def test_sign_in_sets_a_hardened_session_cookie_and_redirects_to_next(client, admin, frozen_now):
    token = csrf_token(client.get("/admin/login?next=/admin/kpis").get_data(as_text=True))
    resp = client.post("/admin/login", data={"email": "ALEX@example.com ", "password": PASSWORD,
                                              "csrf_token": token, "next": "/admin/kpis"})
    assert resp.status_code == 302 and resp.headers["Location"] == "/admin/kpis"
    cookie = next(c for c in resp.headers.getlist("Set-Cookie") if c.startswith("session="))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    page = client.get("/admin/kpis")
    assert page.status_code == 200
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert page.headers["Cache-Control"] == "no-store"


def test_secure_cookie_outside_development():
    from rma_service.config import flask_config, load_config
    cfg = load_config({"ENV": "production", "SECRET_KEY": "s" * 32}, environ={})
    assert flask_config(cfg)["SESSION_COOKIE_SECURE"] is True
    assert flask_config(load_config({}, environ={}))["SESSION_COOKIE_SECURE"] is False


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/admin/", "/returns/", "javascript:x"])
def test_next_never_leaves_the_admin_view(client, admin, frozen_now, target):
    token = csrf_token(client.get("/admin/login").get_data(as_text=True))
    resp = client.post("/admin/login", data={"email": admin, "password": PASSWORD, "csrf_token": token,
                                              "next": target})
    assert resp.headers["Location"] == "/admin/"


def test_wrong_password_unknown_email_and_deactivated_agent_get_the_same_answer(app, client, admin, frozen_now):
    make_agent(app, "gone@example.com", "Gone", role="agent")
    with app.app_context():
        db.session.execute(Agent.__table__.update().where(Agent.email == "gone@example.com").values(active=False))
        db.session.commit()
    bodies = set()
    for email, password in ((admin, "wrong-password"), ("nobody@example.com", PASSWORD), ("gone@example.com", PASSWORD)):
        resp = login(client, email, password)
        assert resp.status_code == 401
        bodies.add("Wrong email or password." in resp.get_data(as_text=True))
    assert bodies == {True}
    assert client.get("/admin/queues/all").status_code == 302


def test_sign_out_is_a_post_with_csrf(signed_in):
    assert signed_in.get("/admin/logout").status_code == 405
    resp = post_form(signed_in, "/admin/queues/all", "/admin/logout")
    assert resp.status_code == 302
    assert signed_in.get("/admin/queues/all").status_code == 302


class TestRateLimit:
    @pytest.fixture
    def app_config(self):
        return {"RATELIMIT_ENABLED": True, "RATELIMIT_LOGIN": "5/minute"}

    def test_sixth_attempt_in_a_minute_is_refused_even_with_the_right_password(self, client, admin, frozen_now):
        for _ in range(5):
            assert login(client, admin, "wrong-password").status_code == 401
        resp = login(client, admin, PASSWORD)
        assert resp.status_code == 429
        assert "Too many attempts" in resp.get_data(as_text=True)
        assert client.get("/admin/queues/all").status_code == 302  # not signed in
        # Another agent's email from the same address is still allowed.
        assert login(client, "other@example.com", "wrong-password").status_code == 401


# --- CSRF ----------------------------------------------------------------------------------------

def test_a_form_without_its_csrf_token_is_refused_and_nothing_changes(app, signed_in, api):
    number = create_return(api, "1001", NEEDS_APPROVAL)["rma_number"]
    before = len(_events(app, number))
    resp = signed_in.post(f"/admin/returns/{number}/approve", data={})
    assert resp.status_code == 400
    assert "This form has expired" in resp.get_data(as_text=True)
    resp = signed_in.post(f"/admin/returns/{number}/reject", data={"reason": "no", "csrf_token": "forged"})
    assert resp.status_code == 400
    assert get_return(app, number).status == "requested"
    assert len(_events(app, number)) == before
    # Signing in needs the token too.
    assert signed_in.post("/admin/login", data={"email": "alex@example.com", "password": PASSWORD}).status_code == 400


def test_a_token_of_another_session_is_refused(app, client, admin, order, api):
    number = create_return(api, "1001", NEEDS_APPROVAL)["rma_number"]
    other = app.test_client()
    login(other)
    foreign = csrf_token(other.get(f"/admin/returns/{number}").get_data(as_text=True))
    login(client)
    assert client.post(f"/admin/returns/{number}/approve", data={"csrf_token": foreign}).status_code == 400
    assert get_return(app, number).status == "requested"


# --- roles ---------------------------------------------------------------------------------------

def test_a_plain_agent_gets_a_friendly_403_on_agent_management(app, client, frozen_now):
    make_agent(app, "sam@example.com", "Sam", role="agent")
    login(client, "sam@example.com")
    for path in ("/admin/agents", "/admin/settings"):
        resp = client.get(path)
        assert resp.status_code == 403
        assert "Admins only" in resp.get_data(as_text=True)
    token = csrf_token(client.get("/admin/account").get_data(as_text=True))
    resp = client.post("/admin/agents", data={"csrf_token": token, "email": "x@example.com", "name": "X",
                                              "role": "admin"})
    assert resp.status_code == 403
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Agent)) == 1
    assert "/admin/agents" not in client.get("/admin/queues/all").get_data(as_text=True)


def test_the_settings_page_shows_no_secret(app, signed_in):
    """Secrets are hidden by name, and the password inside a URL-valued setting is masked: the
    page still shows where the proxy or the rate-limit store is, never how to log in to it."""
    app.config["RMA"].update({
        "WEBHOOK_PROXY": "http://proxyuser:PROXYPASS@proxy.internal:3128",
        "RATELIMIT_STORAGE_URI": "redis://:REDISPW@cache.internal:6379/0",
        "SMTP_PASSWORD": "SMTPPW", "SMTP_USERNAME": "mailer",
        "CARRIER_COLISSIMO_URL": "https://api.colissimo.example/v1?api_key=QUERYKEY",
        "CARRIER_COLISSIMO_API_KEY": "CARRIERKEY", "CARRIER_COLISSIMO_SECRET": "CARRIERSECRET,OLDSECRET",
        "SLACK_TOKEN": "SLACKTOKEN",
    })
    resp = signed_in.get("/admin/settings")
    assert resp.status_code == 200
    page = resp.get_data(as_text=True)
    for secret in ("PROXYPASS", "REDISPW", "SMTPPW", "QUERYKEY", "CARRIERKEY", "CARRIERSECRET", "OLDSECRET",
                   "SLACKTOKEN", "test-secret", app.config["RMA"]["DATABASE_URL"]):
        assert secret not in page, secret
    assert "http://proxyuser:***@proxy.internal:3128" in page
    assert "redis://:***@cache.internal:6379/0" in page
    # The concrete carrier's settings are listed, its key and secret hidden.
    assert "RMA_CARRIER_COLISSIMO_URL" in page and "https://api.colissimo.example/v1?api_key=***" in page
    assert "RMA_CARRIER_COLISSIMO_API_KEY" in page and "RMA_CARRIER_COLISSIMO_SECRET" in page
    # Harmless settings are still shown as they are.
    assert "Demo Shop" in page and "600/minute" in page


# --- the return page's actions ---------------------------------------------------------------

def test_the_page_shows_exactly_the_actions_the_state_machine_allows(app, signed_in, api):
    number = create_return(api, "1001", NEEDS_APPROVAL)["rma_number"]
    html = signed_in.get(f"/admin/returns/{number}").get_data(as_text=True)
    for action in ("approve", "reject", "cancel"):
        assert f'action="/admin/returns/{number}/{action}"' in html
    for action in ("receive", "refund", "close"):
        assert f'action="/admin/returns/{number}/{action}"' not in html
    assert "Colour is off" in html


def test_approve_reject_cancel_through_the_page(app, signed_in, api):
    one = create_return(api, "1001", NEEDS_APPROVAL)["rma_number"]
    page = f"/admin/returns/{one}"
    resp = post_form(signed_in, page, f"{page}/approve", follow_redirects=True)
    assert f"{one} approved." in resp.get_data(as_text=True)
    ret = get_return(app, one)
    assert ret.status == "authorized"
    assert _events(app, one, "approve")[0].actor == "agent:alex@example.com"
    post_form(signed_in, page, f"{page}/cancel", {"confirm": "y"})  # "I understand" ticked
    assert get_return(app, one).status == "cancelled"

    two = create_return(api, "1001", NEEDS_APPROVAL)["rma_number"]
    page = f"/admin/returns/{two}"
    resp = post_form(signed_in, page, f"{page}/reject", {"reason": ""}, follow_redirects=True)
    assert "This field is required" in resp.get_data(as_text=True)
    assert get_return(app, two).status == "requested"
    post_form(signed_in, page, f"{page}/reject", {"reason": "Worn, see photos"})
    ret = get_return(app, two)
    assert ret.status == "rejected" and ret.reject_reason == "Worn, see photos"


def test_a_refused_action_is_a_flash_message_not_a_crash(app, signed_in, api):
    number = create_return(api, "1001", NEEDS_APPROVAL)["rma_number"]
    page = f"/admin/returns/{number}"
    token = csrf_token(signed_in.get(page).get_data(as_text=True))
    assert signed_in.post(f"{page}/approve", data={"csrf_token": token}).status_code == 302
    # The same (now stale) button again: the state machine says no.
    resp = signed_in.post(f"{page}/approve", data={"csrf_token": token}, follow_redirects=True)
    assert resp.status_code == 200
    assert "&#39;approve&#39; is not possible on a return that is authorized" in resp.get_data(as_text=True)
    resp = signed_in.post(f"{page}/refund", data={"csrf_token": token, "amount": "10.00"}, follow_redirects=True)
    assert "not possible on a return that is authorized" in resp.get_data(as_text=True)
    assert get_return(app, number).amount_refunded == Decimal("0.00")
    assert signed_in.get("/admin/returns/RMA-ZZZZ-ZZZZ").status_code == 404


def test_receive_triage_refund_and_close_through_the_page(app, signed_in, api):
    number = create_return(api, "1001", [{"line_id": "L1", "quantity": 2, "reason": "damaged"},
                                         {"line_id": "L2", "quantity": 3, "reason": "too_small"}])["rma_number"]
    page = f"/admin/returns/{number}"
    ret = get_return(app, number)
    first, second = ret.items
    # More than announced is refused by the form, nothing changes.
    post_form(signed_in, page, f"{page}/receive", {f"qty_{first.id}": "3", f"cond_{first.id}": "new",
                                                   f"qty_{second.id}": "3", f"cond_{second.id}": "used"})
    assert get_return(app, number).status == "authorized"
    post_form(signed_in, page, f"{page}/receive", {f"qty_{first.id}": "2", f"cond_{first.id}": "damaged",
                                                   f"qty_{second.id}": "1", f"cond_{second.id}": "used"})
    ret = get_return(app, number)
    assert ret.status == "received"
    assert [(i.received_quantity, i.condition) for i in ret.items] == [(2, "damaged"), (1, "used")]
    for item, disposition in ((first, "restock"), (second, "restock")):
        prefix = f"t{item.id}"
        post_form(signed_in, page, f"{page}/items/{item.id}/triage",
                  {f"{prefix}-disposition": disposition, f"{prefix}-condition": "like_new", f"{prefix}-note": ""})
    ret = get_return(app, number)
    assert ret.status == "inspected"
    due = Decimal("2") * Decimal("49.90") + Decimal("9.50")  # a shop-fault reason: no fee
    html = signed_in.get(page).get_data(as_text=True)
    assert f"{due} EUR" in html
    resp = post_form(signed_in, page, f"{page}/refund", {"amount": "200.00"}, follow_redirects=True)
    assert "At most 109.30 EUR is left to refund." in resp.get_data(as_text=True)
    post_form(signed_in, page, f"{page}/refund", {"amount": "9.30", "reference": "PSP-1"})
    ret = get_return(app, number)
    assert ret.status == "inspected" and ret.amount_refunded == Decimal("9.30")
    resp = post_form(signed_in, page, f"{page}/close", {"note": "?"}, follow_redirects=True)
    assert "100.00 EUR is still due" in resp.get_data(as_text=True)
    post_form(signed_in, page, f"{page}/refund", {"amount": "100.00", "reference": "PSP-2"})
    ret = get_return(app, number)
    assert ret.status == "refunded" and ret.refund_reference == "PSP-2"


def test_close_an_exchange(app, signed_in, api):
    number = create_return(api, "1001", SMALL, resolution="exchange")["rma_number"]
    page = f"/admin/returns/{number}"
    item = get_return(app, number).items[0]
    post_form(signed_in, page, f"{page}/receive", {f"qty_{item.id}": "1", f"cond_{item.id}": "new"})
    post_form(signed_in, page, f"{page}/items/{item.id}/triage",
              {f"t{item.id}-disposition": "restock", f"t{item.id}-condition": "new"})
    html = signed_in.get(page).get_data(as_text=True)
    assert f'action="/admin/returns/{number}/close"' in html
    post_form(signed_in, page, f"{page}/close", {"note": "Size L shipped"})
    assert get_return(app, number).status == "closed"


def test_notes_are_kept_in_the_audit_trail(app, signed_in, api):
    number = create_return(api, "1001", SMALL)["rma_number"]
    page = f"/admin/returns/{number}"
    resp = post_form(signed_in, page, f"{page}/notes", {"body": "Customer called: <b>parcel</b> left today"},
                     follow_redirects=True)
    html = resp.get_data(as_text=True)
    assert "Customer called: &lt;b&gt;parcel&lt;/b&gt; left today" in html
    notes = _events(app, number, "note")
    assert [(n.actor, n.data) for n in notes] == [("agent:alex@example.com",
                                                   {"body": "Customer called: <b>parcel</b> left today"})]


# --- search, queues, pagination ----------------------------------------------------------------

def test_search_by_rma_number_order_email_and_tracking(app, signed_in, api):
    number = create_return(api, "1001", SMALL)["rma_number"]
    set_tracking(app, number, "6A12345678901")
    code = number.replace("RMA-", "").replace("-", "")
    typed = [number, number.lower(), code, code.lower().replace("1", "l").replace("0", "o"), "1001",
             "ADA@example.com", "6a12345678901"]
    for q in typed:
        resp = signed_in.get("/admin/search", query_string={"q": q})
        assert resp.status_code == 302, q
        assert resp.headers["Location"] == f"/admin/returns/{number}", q
    resp = signed_in.get("/admin/search", query_string={"q": "nothing-like-this"})
    assert resp.status_code == 200 and "No return matches" in resp.get_data(as_text=True)


def test_search_with_several_results_lists_them(app, signed_in, api):
    numbers = {create_return(api, "1001", SMALL)["rma_number"] for _ in range(2)}
    html = signed_in.get("/admin/search", query_string={"q": "ada@example.com"}).get_data(as_text=True)
    assert all(n in html for n in numbers) and "2 results" in html


def test_queues_count_and_page_with_keyset_cursors(app, signed_in, api):
    lines = [{"line_id": "L1", "sku": "SKU", "name": "Thing", "quantity": 100, "unit_price": "5.00"}]
    put_order(api, "2001", lines=lines)
    numbers = []
    from rma_service import clock
    for i in range(57):
        with clock.frozen(NOW + timedelta(minutes=i)):
            numbers.append(create_return(api, "2001", NEEDS_APPROVAL)["rma_number"])
    html = signed_in.get("/admin/queues/to_approve").get_data(as_text=True)
    assert '<span class="count big">57</span>' in html
    seen, url = [], "/admin/queues/to_approve"
    while url:
        html = signed_in.get(url).get_data(as_text=True)
        seen += [n for n in numbers if f">{n}</a>" in html]
        nxt = [part.split('"')[0] for part in html.split('rel="next" href="')[1:]]
        url = nxt[0].replace("&amp;", "&") if nxt else None
    assert sorted(seen) == sorted(numbers) and len(seen) == 57
    # Oldest first in a work queue.
    first_page = signed_in.get("/admin/queues/to_approve").get_data(as_text=True)
    assert first_page.index(numbers[0]) < first_page.index(numbers[1])
    # Newest first in "all", and a filter narrows it.
    html = signed_in.get("/admin/queues/all", query_string={"status": "requested"}).get_data(as_text=True)
    assert html.index(numbers[-1]) < html.index(numbers[-2])
    html = signed_in.get("/admin/queues/all", query_string={"status": "refunded"}).get_data(as_text=True)
    assert "No return matches these filters." in html
    assert signed_in.get("/admin/queues/nope").status_code == 404
    # A bogus cursor is the first page, never an error.
    assert signed_in.get("/admin/queues/all", query_string={"after": "!!"}).status_code == 200


def test_to_receive_and_overdue_queues(app, signed_in, api):
    from rma_service import clock
    delivered = create_return(api, "1001", SMALL)["rma_number"]
    set_tracking(app, delivered, "TRK-DELIVERED", "delivered")
    waiting = create_return(api, "1001", SMALL)["rma_number"]
    html = signed_in.get("/admin/queues/to_receive").get_data(as_text=True)
    assert delivered in html and waiting not in html
    # Received, never refunded: overdue 14 days after the request.
    ret = get_return(app, waiting)
    page = f"/admin/returns/{waiting}"
    post_form(signed_in, page, f"{page}/receive", {f"qty_{ret.items[0].id}": "1", f"cond_{ret.items[0].id}": "new"})
    with clock.frozen(NOW + timedelta(days=20)):
        html = signed_in.get("/admin/queues/refund_overdue").get_data(as_text=True)
        assert waiting in html and delivered not in html
        assert 'class="late"' in html and "6 d late" in html
        page_html = signed_in.get(page).get_data(as_text=True)
        assert "Overdue: refund now." in page_html and "L242-4 surcharge" in page_html


# --- photos, label -------------------------------------------------------------------------------

def test_photos_are_served_to_agents_only_and_never_as_active_content(app, client, admin, api, order):
    number = create_return(api, "1001", SMALL)["rma_number"]
    ret = get_return(app, number)
    with app.app_context():
        good = Photo(return_item_id=ret.items[0].id, content_type="image/png", data=b"\x89PNG fake", created_at=NOW)
        bad = Photo(return_item_id=ret.items[0].id, content_type="image/svg+xml", data=b"<svg onload=alert(1)>",
                    created_at=NOW)
        db.session.add_all([good, bad])
        db.session.commit()
        good_id, bad_id = good.id, bad.id
    assert client.get(f"/admin/photos/{good_id}").status_code == 302
    login(client)
    resp = client.get(f"/admin/photos/{good_id}")
    assert resp.status_code == 200 and resp.mimetype == "image/png"
    assert resp.headers["X-Content-Type-Options"] == "nosniff" and "sandbox" in resp.headers["Content-Security-Policy"]
    resp = client.get(f"/admin/photos/{bad_id}")
    assert resp.mimetype == "application/octet-stream" and resp.headers["Content-Disposition"].startswith("attachment")
    assert f'src="/admin/photos/{good_id}"' in client.get(f"/admin/returns/{number}").get_data(as_text=True)
    assert client.get("/admin/photos/999999").status_code == 404


# --- refurbish -----------------------------------------------------------------------------------

def test_refurbish_ends_refurbished_grade_b_or_recycled(app, signed_in, api):
    number = create_return(api, "1001", [{"line_id": "L1", "quantity": 1, "reason": "damaged"},
                                         {"line_id": "L2", "quantity": 1, "reason": "damaged"}])["rma_number"]
    page = f"/admin/returns/{number}"
    ret = get_return(app, number)
    data = {}
    for item in ret.items:
        data.update({f"qty_{item.id}": "1", f"cond_{item.id}": "used"})
    post_form(signed_in, page, f"{page}/receive", data)
    for item in ret.items:
        post_form(signed_in, page, f"{page}/items/{item.id}/triage",
                  {f"t{item.id}-disposition": "refurbish", f"t{item.id}-condition": "used"})
    html = signed_in.get("/admin/refurbish").get_data(as_text=True)
    assert html.count("Refurbished · grade B") == 2
    one, two = ret.items
    resp = post_form(signed_in, "/admin/refurbish", f"/admin/refurbish/{one.id}", {"outcome": "refurbished"},
                     follow_redirects=True)
    assert "back in stock as grade B" in resp.get_data(as_text=True)
    post_form(signed_in, "/admin/refurbish", f"/admin/refurbish/{two.id}", {"outcome": "recycled"})
    resp = post_form(signed_in, "/admin/refurbish", f"/admin/refurbish/{two.id}", {"outcome": "refurbished"},
                     follow_redirects=True)
    assert "not waiting for refurbishment" in resp.get_data(as_text=True)
    with app.app_context():
        assert [i.refurbish_status for i in db.session.scalars(select(ReturnItem).order_by(ReturnItem.id))] == \
            ["refurbished", "recycled"]
        events = db.session.scalars(select(OutboxEvent).where(OutboxEvent.type == "item.refurbished")).all()
        assert len(events) == 1 and events[0].payload["grade"] == "B" and events[0].payload["line_id"] == "L1"
    assert [e.type for e in _events(app, number) if e.type.startswith("item_")] == ["item_refurbished", "item_recycled"]
    assert "No item waits for refurbishment." in signed_in.get("/admin/refurbish").get_data(as_text=True)


# --- agents --------------------------------------------------------------------------------------

def test_admin_invites_an_agent_who_signs_in_with_the_temporary_password(app, signed_in):
    resp = post_form(signed_in, "/admin/agents", "/admin/agents",
                     {"email": "Nina@Example.com", "name": "Nina", "role": "agent", "handles_disputes": "y"})
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200 and "shown only this once" in html
    password = html.split('id="temp-password">')[1].split("<")[0]
    assert len(password) >= 12
    assert password not in signed_in.get("/admin/agents").get_data(as_text=True)
    with app.app_context():
        nina = db.session.scalar(select(Agent).where(Agent.email == "nina@example.com"))
        assert nina.handles_disputes and nina.role == "agent" and password not in nina.password_hash
    other = app.test_client()
    assert login(other, "nina@example.com", password).status_code == 302
    # The same email again: refused with a message, no second agent.
    resp = post_form(signed_in, "/admin/agents", "/admin/agents",
                     {"email": "nina@example.com", "name": "Nina 2", "role": "agent"})
    assert resp.status_code == 422 and "exists already" in resp.get_data(as_text=True)


def test_admin_changes_role_handler_flag_and_deactivates(app, signed_in):
    sam = make_agent(app, "sam@example.com", "Sam", role="agent")
    sam_client = app.test_client()
    login(sam_client, "sam@example.com")
    post_form(signed_in, "/admin/agents", f"/admin/agents/{sam}/role", {"role": "admin"})
    post_form(signed_in, "/admin/agents", f"/admin/agents/{sam}/disputes", {"value": "1"})
    with app.app_context():
        agent = db.session.get(Agent, sam)
        assert agent.role == "admin" and agent.handles_disputes
    assert sam_client.get("/admin/agents").status_code == 200
    post_form(signed_in, "/admin/agents", f"/admin/agents/{sam}/active", {"value": "0"})
    with app.app_context():
        assert db.session.get(Agent, sam).active is False
    # Deactivated: the open session ends at once, and sign-in is refused.
    assert sam_client.get("/admin/queues/all").status_code == 302
    assert login(app.test_client(), "sam@example.com").status_code == 401


def test_the_last_admin_cannot_be_demoted_and_nobody_deactivates_themself(app, signed_in):
    with app.app_context():
        me = db.session.scalar(select(Agent.id).where(Agent.email == "alex@example.com"))
    resp = post_form(signed_in, "/admin/agents", f"/admin/agents/{me}/role", {"role": "agent"}, follow_redirects=True)
    assert "last active admin" in resp.get_data(as_text=True)
    resp = post_form(signed_in, "/admin/agents", f"/admin/agents/{me}/active", {"value": "0"}, follow_redirects=True)
    assert "cannot deactivate yourself" in resp.get_data(as_text=True)
    with app.app_context():
        agent = db.session.get(Agent, me)
        assert agent.role == "admin" and agent.active


def test_an_agent_sets_themself_away_and_changes_password(app, client, frozen_now):
    sam = make_agent(app, "sam@example.com", "Sam", role="agent", disputes=True)
    login(client, "sam@example.com")
    resp = post_form(client, "/admin/account", "/admin/account/away", {"value": "1"}, follow_redirects=True)
    assert "You are away" in resp.get_data(as_text=True)
    with app.app_context():
        assert db.session.get(Agent, sam).away is True
    post_form(client, "/admin/account", "/admin/account/away", {"value": "0"})
    with app.app_context():
        assert db.session.get(Agent, sam).away is False
    resp = post_form(client, "/admin/account", "/admin/account/password",
                     {"current": "wrong", "new": "another-long-password"}, follow_redirects=True)
    assert "current password is wrong" in resp.get_data(as_text=True)
    post_form(client, "/admin/account", "/admin/account/password",
              {"current": PASSWORD, "new": "another-long-password"})
    assert login(app.test_client(), "sam@example.com", "another-long-password").status_code == 302


# --- the admin review's findings (money, notes, confirmation, photos, wording) ---------------------

MONEY_FORMAT = "Enter an amount like 13.60, with at most two decimals."
MONEY_POSITIVE = "Enter an amount greater than zero."
MONEY_EMPTY = "Enter an amount, like 13.60."
MONEY_TOO_LARGE = "Enter an amount under 10 million."
DAMAGED = [{"line_id": "L1", "quantity": 1, "reason": "damaged"}]


def _text(fragment: str) -> str:
    return " ".join(_html.unescape(_re.sub(r"<[^>]+>", " ", fragment)).split())


def _inspected(api, resolution: str = "refund", reason: str = "damaged") -> str:
    """1 × Linen shirt (49.90), received and restocked (shop API). "damaged": the shop pays
    the return shipping, so 49.90 is due; "too_small": the customer pays 5.90."""
    number = create_return(api, "1001", [{"line_id": "L1", "quantity": 1, "reason": reason}],
                           resolution=resolution)["rma_number"]
    assert api.post(f"/returns/{number}/receive", json={}).status_code == 200
    resp = api.post(f"/returns/{number}/items/L1/triage", json={"disposition": "restock", "condition": "new"})
    assert resp.status_code == 200, resp.get_json()
    return number


def _dispute(app, dispute_id: int) -> Dispute:
    with app.app_context():
        dispute = db.session.get(Dispute, dispute_id)
        db.session.expunge_all()
        return dispute


@pytest.mark.parametrize("typed, stored", [("13.60", "13.60"), ("13,60", "13.60"), ("13", "13.00"),
                                           (" 13,6 ", "13.60"), ("49.90", "49.90")])
def test_a_refund_amount_takes_a_point_or_a_french_comma_and_is_stored_exactly(app, signed_in, api, typed, stored):
    number = _inspected(api)
    page = f"/admin/returns/{number}"
    resp = post_form(signed_in, page, f"{page}/refund", {"amount": typed, "reference": "PSP-1"}, follow_redirects=True)
    html = resp.get_data(as_text=True)
    assert flashes(html) == []
    assert f"Refund of {stored} recorded on {number}." in flashes(html, "ok")
    assert get_return(app, number).amount_refunded == Decimal(stored)


@pytest.mark.parametrize("typed, message", [
    ("1.234", MONEY_FORMAT), ("13,605", MONEY_FORMAT), ("abc", MONEY_FORMAT), ("1e3", MONEY_FORMAT),
    ("NaN", MONEY_FORMAT), ("Infinity", MONEY_FORMAT), ("1,234.50", MONEY_FORMAT), ("١٣", MONEY_FORMAT),
    ("0", MONEY_POSITIVE), ("0,00", MONEY_POSITIVE), ("-5", MONEY_POSITIVE), ("", MONEY_EMPTY),
    ("99999999999", MONEY_TOO_LARGE), ("9" * 400, MONEY_TOO_LARGE)])
def test_a_refund_amount_that_is_not_money_is_refused_with_one_message_and_nothing_recorded(app, signed_in, api,
                                                                                             typed, message):
    number = _inspected(api)
    page = f"/admin/returns/{number}"
    before = [e.type for e in _events(app, number)]
    resp = post_form(signed_in, page, f"{page}/refund", {"amount": typed, "reference": "PSP-1"}, follow_redirects=True)
    html = resp.get_data(as_text=True)
    errors = flashes(html)
    assert len(errors) == 1 and message in errors[0], errors
    assert "required" not in errors[0] and "recorded" not in html
    ret = get_return(app, number)
    assert ret.status == "inspected" and ret.amount_refunded == Decimal("0") and ret.refund_reference is None
    assert [e.type for e in _events(app, number)] == before


def test_the_dispute_amount_is_the_same_money_field_and_errors_are_the_field_messages_only(app, signed_in, api):
    number = create_return(api, "1001", DAMAGED)["rma_number"]
    dispute_id = open_dispute(api, number)
    page = f"/admin/disputes/{dispute_id}"
    for typed, message in (("12.505", MONEY_FORMAT), ("abc", MONEY_FORMAT), ("0", MONEY_POSITIVE),
                           ("-1", MONEY_POSITIVE)):
        resp = post_form(signed_in, page, f"{page}/resolve", {"outcome": "partial", "amount": typed,
                                                               "note": "Part of it."}, follow_redirects=True)
        html = resp.get_data(as_text=True)
        errors = flashes(html)
        assert len(errors) == 1 and message in errors[0], (typed, errors)
        assert "Not a valid decimal value" not in html and "Number must be" not in html
        assert _dispute(app, dispute_id).status == "open"
    # A refusal of the service: its field message alone, not "The request has invalid fields."
    resp = post_form(signed_in, page, f"{page}/resolve", {"outcome": "partial", "amount": "99,00", "note": "Part."},
                     follow_redirects=True)
    html = resp.get_data(as_text=True)
    assert flashes(html) == ["Amount: At most the disputed value, 49.90 EUR."]
    assert "The request has invalid fields." not in html
    assert _dispute(app, dispute_id).status == "open"
    # "12,50", a French decimal comma: 12.50 exactly.
    resp = post_form(signed_in, page, f"{page}/resolve", {"outcome": "partial", "amount": "12,50",
                                                           "note": "We refund part of the shirt."},
                     follow_redirects=True)
    assert "Dispute resolved: partial." in flashes(resp.get_data(as_text=True), "ok")
    dispute = _dispute(app, dispute_id)
    assert dispute.status == "resolved" and dispute.resolved_amount == Decimal("12.50")


@pytest.mark.parametrize("outcome", ["reject", "accept", "partial"])
def test_every_dispute_outcome_needs_a_note_for_the_customer(app, signed_in, api, outcome):
    number = create_return(api, "1001", DAMAGED)["rma_number"]
    dispute_id = open_dispute(api, number)
    page = f"/admin/disputes/{dispute_id}"
    assert _re.search(r'<textarea id="note"[^>]*\brequired\b', signed_in.get(page).get_data(as_text=True))
    amount = {"amount": "10.00"} if outcome == "partial" else {}
    for note in ("", "   "):
        resp = post_form(signed_in, page, f"{page}/resolve", {"outcome": outcome, "note": note, **amount},
                         follow_redirects=True)
        errors = flashes(resp.get_data(as_text=True))
        assert len(errors) == 1 and "Write a note for the customer" in errors[0], errors
        assert _dispute(app, dispute_id).status == "open"
    post_form(signed_in, page, f"{page}/resolve",
              {"outcome": outcome, "note": "The scratch was not there when we shipped.", **amount})
    dispute = _dispute(app, dispute_id)
    assert dispute.status == "resolved" and dispute.outcome == outcome
    assert dispute.resolution_note == "The scratch was not there when we shipped."


def test_cancel_needs_a_confirmation(app, signed_in, api):
    number = create_return(api, "1001", SMALL)["rma_number"]
    page = f"/admin/returns/{number}"
    html = signed_in.get(page).get_data(as_text=True)
    form = html.split(f'action="/admin/returns/{number}/cancel"')[1].split("</form>")[0]
    assert 'type="checkbox"' in form and 'name="confirm"' in form
    before = len(_events(app, number))
    for data in ({}, {"confirm": ""}):
        resp = post_form(signed_in, page, f"{page}/cancel", data, follow_redirects=True)
        errors = flashes(resp.get_data(as_text=True))
        assert len(errors) == 1 and "I understand" in errors[0], errors
        assert get_return(app, number).status == "authorized"
        assert len(_events(app, number)) == before
    resp = post_form(signed_in, page, f"{page}/cancel", {"confirm": "y"}, follow_redirects=True)
    assert f"{number} cancelled." in flashes(resp.get_data(as_text=True), "ok")
    assert get_return(app, number).status == "cancelled"


def test_the_dispute_page_and_the_receiving_station_show_the_customers_photos(app, signed_in, api):
    number = customer_return(app, DAMAGED, photos={"L1": [png_bytes(), png_bytes(colour=(20, 90, 200))]})
    ids = photo_ids(app, number)
    assert len(ids) == 2

    def shows_photos(html: str) -> bool:
        return all(f'href="/admin/photos/{pid}"' in html and f'src="/admin/photos/{pid}"' in html for pid in ids)

    assert shows_photos(signed_in.get(f"/admin/receiving/{number}").get_data(as_text=True))  # parcel to receive
    dispute_id = open_dispute(api, number)
    assert shows_photos(signed_in.get(f"/admin/disputes/{dispute_id}").get_data(as_text=True))
    assert shows_photos(signed_in.get(f"/admin/receiving/{number}").get_data(as_text=True))  # triaged
    for pid in ids:
        resp = signed_in.get(f"/admin/photos/{pid}")
        assert resp.status_code == 200 and resp.mimetype == "image/png"
        from io import BytesIO

        from PIL import Image
        assert Image.open(BytesIO(resp.data)).size == (48, 32)


@pytest.mark.parametrize("typed", ["abc", "3", "-1", "", "1.5"])
def test_a_received_quantity_that_is_wrong_gets_one_message(app, signed_in, api, typed):
    number = create_return(api, "1001", SMALL)["rma_number"]
    page = f"/admin/returns/{number}"
    item = get_return(app, number).items[0]
    resp = post_form(signed_in, page, f"{page}/receive", {f"qty_{item.id}": typed, f"cond_{item.id}": "new"},
                     follow_redirects=True)
    html = resp.get_data(as_text=True)
    errors = flashes(html)
    assert errors == ["Linen shirt, received: Enter a whole number of units from 0 to 1."], errors
    assert "Not a valid integer value" not in html and "Number must be" not in html
    assert get_return(app, number).status == "authorized"


def test_a_return_with_nothing_to_refund_shows_no_refund_form_fee_or_due_date(app, signed_in, api):
    # A refund due: the form, the fee and the date are there.
    due = _inspected(api, reason="too_small")
    refund_box = signed_in.get(f"/admin/returns/{due}").get_data(as_text=True)
    assert f'action="/admin/returns/{due}/refund"' in refund_box
    assert "Return shipping" in refund_box and "Due by" in refund_box
    # An exchange (the customer still paid the return shipping): nothing to refund.
    exchange = _inspected(api, resolution="exchange", reason="too_small")
    page = f"/admin/returns/{exchange}"
    for _ in ("inspected", "closed"):
        html = signed_in.get(page).get_data(as_text=True)
        assert f'action="/admin/returns/{exchange}/refund"' not in html and "Record refund" not in html
        assert "Return shipping" not in html and "Due by" not in html
        assert "No refund is due" in _text(html)
        if get_return(app, exchange).status == "inspected":
            assert f'action="/admin/returns/{exchange}/close"' in html
            post_form(signed_in, page, f"{page}/close", {"note": "Size L shipped"})
    assert get_return(app, exchange).status == "closed"


def test_the_timeline_reads_as_words_not_internal_data(app, signed_in, api):
    number = customer_return(app, [{"line_id": "L1", "quantity": 1, "reason": "too_small"}],
                             submission="7b1OgjhhQrOwbm0g")
    page = f"/admin/returns/{number}"
    item = get_return(app, number).items[0]
    post_form(signed_in, page, f"{page}/receive", {f"qty_{item.id}": "1", f"cond_{item.id}": "like_new"})
    post_form(signed_in, page, f"{page}/items/{item.id}/triage",
              {f"t{item.id}-disposition": "restock", f"t{item.id}-condition": "like_new", f"t{item.id}-note": ""})
    html = signed_in.get(page).get_data(as_text=True)
    timeline = html.split('id="timeline"')[1].split("</section>")[0]
    text = _text(timeline)
    assert "Authorized automatically (policy)" in text
    assert "L1 × 1" in text
    assert _re.search(r"Condition:? like new", text), text
    for internal in ("7b1OgjhhQrOwbm0g", "submission", "automatic:", "True", "like_new", "line_id", "[{", "{\""):
        assert internal not in text, internal


def test_the_reassign_list_starts_on_the_current_handler(app, signed_in, api):
    make_agent(app, "zoe@example.com", "Zoe Handler", role="agent", disputes=True)
    number = create_return(api, "1001", DAMAGED)["rma_number"]
    dispute_id = open_dispute(api, number)  # Zoe, the only handler, takes it
    make_agent(app, "anna@example.com", "Anna Handler", role="agent", disputes=True)
    html = signed_in.get(f"/admin/disputes/{dispute_id}").get_data(as_text=True)
    select_html = html.split('id="agent_id"')[1].split("</select>")[0]
    options = _re.findall(r"<option([^>]*)>([^<]*)</option>", select_html)
    assert "selected" in options[0][0] and options[0][1].startswith("Zoe Handler (zoe@example.com)")
    assert "current" in options[0][1]
    assert [o for o in options if "selected" in o[0]] == [options[0]]
    assert any(text.startswith("Anna Handler") for _, text in options[1:])


def test_an_agent_reply_is_limited_like_the_customers_messages(app, signed_in, api):
    number = create_return(api, "1001", DAMAGED)["rma_number"]
    dispute_id = open_dispute(api, number)
    page = f"/admin/disputes/{dispute_id}"
    html = signed_in.get(page).get_data(as_text=True)
    assert _re.search(r'<textarea id="body"[^>]*maxlength="4000"', html)
    resp = post_form(signed_in, page, f"{page}/messages", {"body": "x" * 4001}, follow_redirects=True)
    errors = flashes(resp.get_data(as_text=True))
    assert len(errors) == 1 and "4000 characters" in errors[0] and "4001" in errors[0], errors
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(DisputeMessage)) == 0
    resp = post_form(signed_in, page, f"{page}/messages", {"body": "y" * 4000}, follow_redirects=True)
    assert "Reply sent to the customer." in flashes(resp.get_data(as_text=True), "ok")
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(DisputeMessage)) == 1


def test_admin_pages_link_the_favicon(app, client, admin, order):
    pages = [client.get("/admin/login")]
    login(client)
    pages += [client.get(path) for path in ("/admin/queues/all", "/admin/receiving", "/admin/kpis",
                                            "/admin/returns/RMA-0000-0000")]
    for resp in pages:
        match = _re.search(r'<link rel="icon" href="([^"]+)"[^>]*type="image/svg\+xml"', resp.get_data(as_text=True))
        assert match, resp.request.path
        icon = client.get(match.group(1))
        assert icon.status_code == 200 and icon.mimetype == "image/svg+xml"


def test_a_long_search_is_cut_short_in_the_heading(app, signed_in, api):
    resp = signed_in.get("/admin/search", query_string={"q": "x" * 500})
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200 and "No return matches" in html
    heading = html.split("<h1>Search</h1>")[1].split("</p>")[0]
    assert "x" * 81 not in heading and "x" * 40 in heading and "…" in heading


def test_a_failed_mail_is_shown_on_the_return_page_and_sent_again(app, signed_in, api, smtp_server):
    """The customer says the confirmation never came: the agent sees it failed, and why, and
    sends it again once the cause is fixed (here: the SMTP server back)."""
    from sqlalchemy import update

    from rma_service.models import MailMessage
    from tests.outbox import run_jobs
    number = create_return(api, "1001", SMALL)["rma_number"]
    with app.app_context():
        mail_id = db.session.scalar(select(MailMessage.id))
        db.session.execute(update(MailMessage).values(status="failed", attempts=14, first_attempt_at=NOW,
                                                      last_error="550 5.1.1 mailbox unavailable"))
        db.session.commit()
    page = f"/admin/returns/{number}"
    html = signed_in.get(page).get_data(as_text=True)
    assert "failed" in html and "550 5.1.1 mailbox unavailable" in html and "Send again" in html
    assert f"Your return {number}" in html

    resp = post_form(signed_in, page, f"{page}/mails/{mail_id}/send-again", follow_redirects=True)
    assert "The mail is queued again." in resp.get_data(as_text=True)
    app.config["RMA"].update(SMTP_HOST=smtp_server.host, SMTP_PORT=smtp_server.port)
    assert run_jobs(app, NOW + timedelta(minutes=1), "send_mail") == {"send_mail": 1}
    [message] = smtp_server.wait_for(1)
    assert message["Subject"].startswith(f"Your return {number}")
    with app.app_context():
        mail = db.session.get(MailMessage, mail_id)
        assert mail.status == "sent" and mail.attempts == 1
    # A mail that is not failed, or of another return, is not touched.
    other = create_return(api, "1001", SMALL)["rma_number"]
    resp = post_form(signed_in, page, f"/admin/returns/{other}/mails/{mail_id}/send-again", follow_redirects=True)
    assert "No such mail for this return." in resp.get_data(as_text=True)
    resp = post_form(signed_in, page, f"{page}/mails/{mail_id}/send-again", follow_redirects=True)
    assert "Only a mail that failed can be sent again." in resp.get_data(as_text=True)
    with app.app_context():
        assert db.session.get(MailMessage, mail_id).status == "sent"


def test_the_return_page_shows_the_subject_of_a_confirmation_the_scheduler_has_not_rendered_yet(
        app, signed_in, api, smtp_server):
    """The confirmation is queued unrendered (the scheduler renders it): the Mails panel shows
    it as before, with the subject it will be sent with, and stores nothing."""
    from rma_service.models import MailMessage
    from tests.outbox import run_jobs
    put_order(api, "1002", customer={"email": "zoe@example.com", "name": "Zoé", "locale": "fr"})
    number = create_return(api, "1001", SMALL)["rma_number"]
    french = create_return(api, "1002", SMALL, email="zoe@example.com")["rma_number"]
    with app.app_context():
        assert db.session.scalars(select(MailMessage.subject)).all() == [None, None]

    def mails_panel(number: str) -> str:
        page = signed_in.get(f"/admin/returns/{number}").get_data(as_text=True)
        return page.split('id="mails"')[1].split("</section>")[0]

    panel = mails_panel(number)
    assert f'<span class="subject">Your return {number} for order 1001</span>' in panel
    assert "to ada@example.com" in panel and '<span class="badge">waiting</span>' in panel
    assert f'<span class="subject">Votre retour {french} pour la commande 1002</span>' in mails_panel(french)
    with app.app_context():  # shown, not stored: the row is the scheduler's to render
        assert db.session.scalars(select(MailMessage.subject)).all() == [None, None]

    app.config["RMA"].update(SMTP_HOST=smtp_server.host, SMTP_PORT=smtp_server.port)
    assert run_jobs(app, NOW, "send_mail") == {"send_mail": 2}
    sent = mails_panel(number)
    assert f'<span class="subject">Your return {number} for order 1001</span>' in sent and "sent " in sent
    assert {m["Subject"] for m in smtp_server.wait_for(2)} == {f"Your return {number} for order 1001",
                                                                f"Votre retour {french} pour la commande 1002"}


@pytest.mark.skipif(not os.environ.get("RMA_TEST_DATABASE_URL", "").startswith("postgresql"),
                    reason="on SQLite the invitation's audit row takes the database's write lock before the "
                           "check: two invitations cannot interleave there")
def test_the_same_email_invited_twice_at_once_is_a_message_not_a_500(app, signed_in):
    """The second invitation passes the 'exists already?' check before the first commits;
    the unique index refuses it. Played out deterministically: the other admin's invitation
    is committed (on its own connection) right before this one's flush."""
    from sqlalchemy import event, insert
    from rma_service import clock
    with app.app_context():
        engine = db.engine

        fired = []

        def the_other_admin_was_faster(session, flush_context, instances):
            if not fired and any(isinstance(o, Agent) and o.email == "nina@example.com" for o in session.new):
                fired.append(True)
                with engine.begin() as conn:
                    conn.execute(insert(Agent.__table__).values(
                        email="nina@example.com", name="Nina (other tab)", role="agent", password_hash="x",
                        handles_disputes=False, active=True, away=False, created_at=clock.now()))

        event.listen(db.session, "before_flush", the_other_admin_was_faster)
    try:
        resp = post_form(signed_in, "/admin/agents", "/admin/agents",
                         {"email": "nina@example.com", "name": "Nina", "role": "agent"})
    finally:
        with app.app_context():
            event.remove(db.session, "before_flush", the_other_admin_was_faster)
    assert fired
    assert resp.status_code == 422, resp.status_code
    assert "exists already" in resp.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalars(select(Agent.name).where(Agent.email == "nina@example.com")).all() == \
            ["Nina (other tab)"]


def test_the_label_panel_gives_the_expiry_only_while_the_label_is_unused(app, signed_in, api):
    """A parcel the carrier scanned has used its label: its expiry date means nothing any more."""
    from tests.e2e.admin_support import set_tracking
    number = api.post("/returns", json=return_body()).get_json()["rma_number"]
    set_tracking(app, number, "6A0000000001")
    with app.app_context():
        label = db.session.scalar(select(Label).order_by(Label.id.desc()))
        label.expires_at = NOW + timedelta(days=28)
        db.session.commit()

    def label_fact() -> str:
        page = signed_in.get(f"/admin/returns/{number}").get_data(as_text=True)
        return _text(page.split('<dt>Label</dt>')[1].split('</dd>')[0])

    assert label_fact() == f"issued · expires {(NOW + timedelta(days=28)):%Y-%m-%d}"
    set_tracking(app, number, "6A0000000001", "in_transit")
    assert label_fact() == "issued · in use"

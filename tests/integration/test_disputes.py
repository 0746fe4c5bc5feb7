"""Disputes on the real database: the dedicated handler (assignment, queue, reassignment),
the conversation, the resolution and its effect on the refund, the API's errors, and the
acceptance race (50 disputes opened at once across 3 handlers)."""
from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import requests
from sqlalchemy import func, select

from rma_service import clock
from rma_service.extensions import db
from rma_service.models import Agent, Dispute, DisputeMessage, Event, MailMessage, OutboxEvent, Return
from rma_service.services import agents as agents_svc
from rma_service.services import disputes as svc
from tests.conftest import NOW, count, order_body, return_body

PASSWORD = "correct horse battery"
DISPUTE = {"disposition": "dispute", "condition": "damaged", "note": "Scratched, customer says it arrived so"}


# --- helpers ---------------------------------------------------------------------------------

def make_agent(app, email, name=None, *, disputes=True, role="agent", away=False, active=True) -> int:
    available = not away and active
    with app.app_context():
        agent = agents_svc.create_agent(email, name or email.split("@")[0].title(), role, PASSWORD,
                                        disputes and available, NOW)
        if not available:   # created unavailable: nothing may be assigned to them on the way
            agent.away, agent.active, agent.handles_disputes = away, active, disputes
            db.session.commit()
        return agent.id


def new_order(api, number, email, name="Customer", locale="en", lines=None):
    body = order_body(customer={"email": email, "name": name, "locale": locale})
    if lines is not None:
        body["lines"] = lines
    resp = api.put(f"/orders/{number}", json=body)
    assert resp.status_code == 201, resp.get_json()


def received_return(api, order_number="1001", email="ada@example.com", items=None) -> str:
    resp = api.post("/returns", json=return_body(order_number, email, items))
    assert resp.status_code == 201, resp.get_json()
    number = resp.get_json()["rma_number"]
    assert api.post(f"/returns/{number}/receive", json={}).status_code == 200
    return number


def dispute_item(api, number, line_id="L1") -> dict:
    resp = api.post(f"/returns/{number}/items/{line_id}/triage", json=DISPUTE)
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()


def disputed_return(api, order_number="1001", email="ada@example.com") -> tuple[str, int]:
    number = received_return(api, order_number, email)
    body = dispute_item(api, number)
    return number, body["dispute"]["id"]


def dispute_of(app, dispute_id) -> dict:
    with app.app_context():
        d = db.session.get(Dispute, dispute_id)
        return {"handler": d.handler.email if d.handler else None, "status": d.status,
                "assigned_at": d.assigned_at, "last_customer_message_at": d.last_customer_message_at,
                "last_handler_reply_at": d.last_handler_reply_at, "outcome": d.outcome}


def events(app, type_, dispute_id=None) -> list[dict]:
    with app.app_context():
        query = select(Event).where(Event.type == type_).order_by(Event.id)
        if dispute_id is not None:
            query = query.where(Event.dispute_id == dispute_id)
        return [{"actor": e.actor, "data": e.data, "return_id": e.return_id, "dispute_id": e.dispute_id}
                for e in db.session.scalars(query)]


def outbox(app, type_) -> list[dict]:
    with app.app_context():
        return [e.payload for e in db.session.scalars(select(OutboxEvent).where(OutboxEvent.type == type_)
                                                      .order_by(OutboxEvent.id))]


def mails(app) -> list[tuple[str, str]]:
    with app.app_context():
        return [(m.to, m.subject) for m in db.session.scalars(select(MailMessage).order_by(MailMessage.id))]


def loads(app) -> dict[str, int]:
    with app.app_context():
        rows = db.session.execute(select(Agent.email, func.count(Dispute.id)).join(
            Dispute, (Dispute.handler_id == Agent.id) & (Dispute.status == "open")).group_by(Agent.email)).all()
        return dict(rows)


def with_agent(app, agent_id, fn):
    with app.app_context():
        return fn(db.session.get(Agent, agent_id))


def with_dispute(app, dispute_id, fn):
    with app.app_context():
        return fn(db.session.get(Dispute, dispute_id))


def snapshot(app) -> dict:
    """What an error must leave untouched."""
    with app.app_context():
        return {
            "events": count(app, Event), "outbox": count(app, OutboxEvent), "messages": count(app, DisputeMessage),
            "mails": count(app, MailMessage),
            "disputes": [(d.id, d.status, d.handler_id, d.outcome, d.resolved_amount, d.last_customer_message_at,
                          d.last_handler_reply_at) for d in db.session.scalars(select(Dispute).order_by(Dispute.id))],
            "returns": [(r.id, r.status, r.adjusted_amount, r.version)
                        for r in db.session.scalars(select(Return).order_by(Return.id))],
        }


# --- opening assigns ------------------------------------------------------------------------

def test_opening_assigns_the_least_loaded_handler(app, api, order):
    make_agent(app, "plain@shop.test", disputes=False)   # not a dispute handler
    make_agent(app, "away@shop.test", away=True)
    make_agent(app, "gone@shop.test", active=False)
    grace = make_agent(app, "grace@shop.test", "Grace Hopper")
    number, dispute_id = disputed_return(api)

    ret = api.get(f"/returns/{number}").get_json()
    assert ret["status"] == "disputed"
    assert ret["dispute"] == {"id": dispute_id, "status": "open",
                              "handler": {"name": "Grace Hopper", "email": "grace@shop.test"}}
    assert dispute_of(app, dispute_id)["assigned_at"] == NOW
    assert with_agent(app, grace, lambda a: a.last_assigned_at) == NOW
    [assigned] = events(app, "dispute_assigned", dispute_id)
    assert assigned["data"] == {"to": "grace@shop.test", "reason": "opened"}
    assert assigned["return_id"] is not None and assigned["actor"] == "api:shop"
    [webhook] = outbox(app, "dispute.assigned")
    assert webhook["id"] == dispute_id and webhook["rma_number"] == number
    assert webhook["handler"] == {"name": "Grace Hopper", "email": "grace@shop.test"}
    assert webhook["amount_at_stake"] == "49.90" and webhook["previous_handler"] is None
    assert ("grace@shop.test", f"New dispute for you: {number}") in mails(app)
    # the audit trail of the return tells the story
    types = [e["type"] for e in api.get(f"/returns/{number}/events").get_json()["items"]]
    assert types[-4:] == ["triage", "dispute_opened", "dispute_assigned", "dispute"]


def test_loads_spread_and_ties_go_to_the_least_recently_assigned(app, api, order):
    a = make_agent(app, "a@shop.test")
    b = make_agent(app, "b@shop.test")
    handlers = []
    for i in range(4):
        new_order(api, f"S{i}", f"c{i}@example.com")
        with clock.frozen(NOW + timedelta(minutes=i)):
            handlers.append(dispute_of(app, disputed_return(api, f"S{i}", f"c{i}@example.com")[1])["handler"])
    # a (lowest id, never assigned), b (never assigned), then a (assigned longest ago), b
    assert handlers == ["a@shop.test", "b@shop.test", "a@shop.test", "b@shop.test"]
    assert with_agent(app, a, lambda x: x.last_assigned_at) == NOW + timedelta(minutes=2)
    assert with_agent(app, b, lambda x: x.last_assigned_at) == NOW + timedelta(minutes=3)


def test_one_contact_the_customer_gets_their_earlier_handler(app, api, order):
    make_agent(app, "a@shop.test")
    make_agent(app, "b@shop.test")
    _, first = disputed_return(api)                        # Ada → a
    new_order(api, "2001", "bob@example.com")
    _, other = disputed_return(api, "2001", "bob@example.com")  # Bob → b
    new_order(api, "1002", "ADA@example.com")              # Ada again (any case), a has more now
    with clock.frozen(NOW + timedelta(hours=1)):
        _, again = disputed_return(api, "1002", "ADA@example.com")
    assert [dispute_of(app, d)["handler"] for d in (first, other, again)] == ["a@shop.test", "b@shop.test",
                                                                              "a@shop.test"]


@pytest.mark.parametrize("app_config", [{"DISPUTE_CAPACITY": 1}])
def test_capacity_full_handlers_send_disputes_to_the_queue(app, api, order):
    make_agent(app, "a@shop.test")
    _, first = disputed_return(api)
    new_order(api, "2001", "bob@example.com")
    number, second = disputed_return(api, "2001", "bob@example.com")
    assert dispute_of(app, first)["handler"] == "a@shop.test"
    assert dispute_of(app, second)["handler"] is None
    assert api.get(f"/returns/{number}").get_json()["dispute"]["handler"] is None
    [queued] = events(app, "dispute_queued", second)
    assert queued["data"] == {"reason": "no dispute handler is available"}
    listed = api.get("/disputes?unassigned=true").get_json()["items"]
    assert [d["id"] for d in listed] == [second]
    # the first one is decided: a has room, the waiting dispute goes to them at once
    assert api.post(f"/disputes/{first}/resolve", json={"outcome": "accept", "note": "Agreed."}).status_code == 200
    assert dispute_of(app, second)["handler"] == "a@shop.test"
    assert events(app, "dispute_assigned", second)[0]["data"] == {"to": "a@shop.test", "reason": "queue"}


def test_no_handler_at_all_then_assign_waiting_when_one_appears(app, api, order):
    number, dispute_id = disputed_return(api)
    assert dispute_of(app, dispute_id)["handler"] is None
    assert outbox(app, "dispute.assigned") == []
    with app.app_context():
        assert svc.assign_waiting(NOW) == 0          # still nobody: harmless
    away = make_agent(app, "back-soon@shop.test", away=True)
    assert dispute_of(app, dispute_id)["handler"] is None
    # creating a dispute handler takes the queue
    make_agent(app, "new@shop.test")
    assert dispute_of(app, dispute_id)["handler"] == "new@shop.test"
    assert [p["handler"]["email"] for p in outbox(app, "dispute.assigned")] == ["new@shop.test"]
    with app.app_context():
        assert svc.assign_waiting(NOW) == 0          # twice is harmless
    assert len(events(app, "dispute_assigned", dispute_id)) == 1
    assert with_agent(app, away, lambda a: a.last_assigned_at) is None


def test_assign_waiting_for_the_scheduler_assigns_oldest_first(app, api, order):
    a = make_agent(app, "a@shop.test", away=True)
    ids = []
    for i in range(3):
        new_order(api, f"Q{i}", f"q{i}@example.com")
        with clock.frozen(NOW + timedelta(minutes=i)):
            ids.append(disputed_return(api, f"Q{i}", f"q{i}@example.com")[1])
    assert all(dispute_of(app, d)["handler"] is None for d in ids)
    with app.app_context():
        db.session.get(Agent, a).away = False        # flipped without the service: the job catches up
        db.session.commit()
        assert svc.assign_waiting(NOW + timedelta(hours=1), actor="scheduler") == 3
    assert [e["dispute_id"] for e in events(app, "dispute_assigned")] == ids
    assert {e["actor"] for e in events(app, "dispute_assigned")} == {"scheduler"}


# --- reassignment ------------------------------------------------------------------------------

def _three_disputes_on_a(app, api):
    a = make_agent(app, "a@shop.test", "Ann")
    ids = []
    for i in range(3):
        new_order(api, f"R{i}", f"r{i}@example.com")
        ids.append(disputed_return(api, f"R{i}", f"r{i}@example.com")[1])
    b = make_agent(app, "b@shop.test", "Bea")
    c = make_agent(app, "c@shop.test", "Cid")
    return a, b, c, ids


def test_going_away_reassigns_by_the_same_rule_with_audit_and_webhooks(app, api, order):
    a, b, c, ids = _three_disputes_on_a(app, api)
    later = NOW + timedelta(hours=2)
    with app.app_context():
        agents_svc.set_away(a, True, "agent:boss", later)      # the admin view's entry point
    assert [dispute_of(app, d)["handler"] for d in ids] == ["b@shop.test", "c@shop.test", "b@shop.test"]
    assert loads(app) == {"b@shop.test": 2, "c@shop.test": 1}
    reassigned = events(app, "dispute_reassigned")
    assert [(e["dispute_id"], e["data"]["from"], e["data"]["to"], e["data"]["reason"]) for e in reassigned] == [
        (ids[0], "a@shop.test", "b@shop.test", "away"),
        (ids[1], "a@shop.test", "c@shop.test", "away"),
        (ids[2], "a@shop.test", "b@shop.test", "away")]
    assert {e["actor"] for e in reassigned} == {"agent:boss"}
    assert all(e["return_id"] is not None for e in reassigned)
    hooks = outbox(app, "dispute.assigned")[3:]
    assert [(h["id"], h["handler"]["email"], h["previous_handler"]["email"]) for h in hooks] == [
        (ids[0], "b@shop.test", "a@shop.test"), (ids[1], "c@shop.test", "a@shop.test"),
        (ids[2], "b@shop.test", "a@shop.test")]
    assert events(app, "agent.away")[0]["data"] == {"agent": "a@shop.test"}   # the admin's own event
    assert dispute_of(app, ids[0])["assigned_at"] == later
    # back again: nothing is waiting, nothing moves back
    with app.app_context():
        agents_svc.set_away(a, False, "agent:a", later)
    assert loads(app) == {"b@shop.test": 2, "c@shop.test": 1}


def test_reassignment_keeps_one_contact_for_a_customer(app, api, order):
    a = make_agent(app, "a@shop.test")
    _, first = disputed_return(api)
    new_order(api, "1002", "ada@example.com")
    _, second = disputed_return(api, "1002", "ada@example.com")
    make_agent(app, "b@shop.test")
    make_agent(app, "c@shop.test")
    with app.app_context():
        svc.set_away(db.session.get(Agent, a), True, NOW, "agent:a")
    assert dispute_of(app, first)["handler"] == dispute_of(app, second)["handler"] == "b@shop.test"


def test_going_away_with_nobody_else_queues_and_coming_back_takes_them_again(app, api, order):
    a = make_agent(app, "a@shop.test")
    _, dispute_id = disputed_return(api)
    with app.app_context():
        moved = svc.set_away(db.session.get(Agent, a), True, NOW, "agent:a")
        assert [d.id for d in moved] == [dispute_id]
    assert dispute_of(app, dispute_id)["handler"] is None
    assert events(app, "dispute_reassigned")[0]["data"] == {"from": "a@shop.test", "to": None, "reason": "away"}
    assert len(outbox(app, "dispute.assigned")) == 1     # no webhook for "nobody"
    with app.app_context():
        assert svc.set_away(db.session.get(Agent, a), False, NOW, "agent:a") == []
    assert dispute_of(app, dispute_id)["handler"] == "a@shop.test"
    assert events(app, "dispute_assigned", dispute_id)[-1]["data"] == {"to": "a@shop.test", "reason": "queue"}


def test_deactivation_reassigns_and_reactivation_takes_waiting(app, api, order):
    a, b, c, ids = _three_disputes_on_a(app, api)
    with app.app_context():
        agents_svc.set_active(a, False, "agent:boss", NOW)
    assert loads(app) == {"b@shop.test": 2, "c@shop.test": 1}
    assert {e["data"]["reason"] for e in events(app, "dispute_reassigned")} == {"deactivated"}
    assert len(outbox(app, "dispute.assigned")) == 6
    assert with_agent(app, a, lambda agent: agent.active) is False
    # direct service call, too
    with app.app_context():
        moved = svc.deactivate(db.session.get(Agent, b), NOW, "agent:boss")
        assert len(moved) == 2
    assert loads(app) == {"c@shop.test": 3}


def test_no_longer_handling_disputes_reassigns(app, api, order):
    a, b, c, ids = _three_disputes_on_a(app, api)
    with app.app_context():
        agents_svc.set_handles_disputes(a, False, "agent:boss", NOW)
    assert loads(app) == {"b@shop.test": 2, "c@shop.test": 1}


def test_manual_reassign(app, api, order):
    a = make_agent(app, "a@shop.test")
    b = make_agent(app, "b@shop.test")
    away = make_agent(app, "away@shop.test", away=True)
    plain = make_agent(app, "plain@shop.test", disputes=False)
    _, dispute_id = disputed_return(api)
    assert dispute_of(app, dispute_id)["handler"] == "a@shop.test"
    with_dispute(app, dispute_id, lambda d: svc.reassign(d, b, NOW, "agent:boss"))
    assert dispute_of(app, dispute_id)["handler"] == "b@shop.test"
    [e] = events(app, "dispute_reassigned")
    assert e["data"] == {"from": "a@shop.test", "to": "b@shop.test", "reason": "manual"}
    assert outbox(app, "dispute.assigned")[-1]["previous_handler"]["email"] == "a@shop.test"
    # the same handler again is a no-op
    with_dispute(app, dispute_id, lambda d: svc.reassign(d, b, NOW, "agent:boss"))
    assert len(events(app, "dispute_reassigned")) == 1

    before = snapshot(app)
    for target in (away, plain, 9999):
        with app.app_context():
            with pytest.raises(svc.ApiError) as exc:
                svc.reassign(db.session.get(Dispute, dispute_id), target, NOW, "agent:boss")
            db.session.rollback()
        assert exc.value.status == 422 and "agent_id" in exc.value.errors
    assert snapshot(app) == before
    assert api.post(f"/disputes/{dispute_id}/resolve", json={"outcome": "reject", "note": "No."}).status_code == 200
    with app.app_context():
        with pytest.raises(svc.ApiError) as exc:
            svc.reassign(db.session.get(Dispute, dispute_id), a, NOW, "agent:boss")
        db.session.rollback()
    assert exc.value.status == 409 and exc.value.code == "conflict"


# --- conversation --------------------------------------------------------------------------------

def test_conversation_sets_each_sides_time_and_tells_the_other_side(app, api, frozen_now):
    make_agent(app, "grace@shop.test", "Grace Hopper")
    new_order(api, "1001", "zoe@example.com", "Zoé", locale="fr")
    number, dispute_id = disputed_return(api, "1001", "zoe@example.com")
    t1, t2 = NOW + timedelta(hours=1), NOW + timedelta(hours=3)

    with clock.frozen(t1):
        resp = api.post(f"/disputes/{dispute_id}/messages", json={"author": "customer", "body": "  It was broken!  "})
    assert resp.status_code == 201
    assert resp.get_json() == {"id": resp.get_json()["id"], "author": "customer", "body": "It was broken!",
                               "created_at": "2026-11-25T13:00:00Z"}
    state = dispute_of(app, dispute_id)
    assert state["last_customer_message_at"] == t1 and state["last_handler_reply_at"] is None

    with clock.frozen(t2):
        resp = api.post(f"/disputes/{dispute_id}/messages", json={"author": "handler", "body": "Photos please."})
    assert resp.status_code == 201
    state = dispute_of(app, dispute_id)
    assert state["last_customer_message_at"] == t1 and state["last_handler_reply_at"] == t2
    with app.app_context():
        handler_msg = db.session.scalars(select(DisputeMessage).where(DisputeMessage.author == "handler")).one()
        assert db.session.get(Agent, handler_msg.agent_id).email == "grace@shop.test"

    # the web page's entry point still works (thin wrapper)
    with app.app_context():
        svc.post_customer_message(db.session.get(Dispute, dispute_id), "Here they are.", t2 + timedelta(minutes=5))
    assert dispute_of(app, dispute_id)["last_customer_message_at"] == t2 + timedelta(minutes=5)

    detail = api.get(f"/disputes/{dispute_id}").get_json()
    assert [(m["author"], m["body"]) for m in detail["messages"]] == [
        ("customer", "It was broken!"), ("handler", "Photos please."), ("customer", "Here they are.")]
    assert detail["last_handler_reply_at"] == "2026-11-25T15:00:00Z"

    hooks = outbox(app, "dispute.message")
    assert [(h["author"], h["body"], h["dispute_id"], h["rma_number"]) for h in hooks] == [
        ("customer", "It was broken!", dispute_id, number), ("handler", "Photos please.", dispute_id, number),
        ("customer", "Here they are.", dispute_id, number)]
    assert [e["data"]["author"] for e in events(app, "dispute_message", dispute_id)] == ["customer", "handler", "customer"]
    sent = mails(app)
    assert ("grace@shop.test", f"Message from Zoé on dispute {number}") in sent
    # the customer is written to in their language
    assert ("zoe@example.com", f"Grace Hopper vous a répondu au sujet de votre retour {number}") in sent


def test_a_customer_message_without_a_handler_goes_to_the_team(app, api, order):
    _, dispute_id = disputed_return(api)
    assert api.post(f"/disputes/{dispute_id}/messages", json={"author": "customer", "body": "Hello?"}).status_code == 201
    with app.app_context():
        team = app.config["RMA"].get("TEAM_EMAIL") or app.config["RMA"]["SMTP_SENDER"]
    assert mails(app)[-1][0] == team


# --- resolution ----------------------------------------------------------------------------------

def _mixed_return(api):
    """L1 (1 × 49.90) disputed, L2 (2 × 9.50) restocked; reason damaged: the shop pays shipping."""
    items = [{"line_id": "L1", "quantity": 1, "reason": "damaged"}, {"line_id": "L2", "quantity": 2, "reason": "damaged"}]
    number = received_return(api, items=items)
    assert api.post(f"/returns/{number}/items/L2/triage", json={"disposition": "restock", "condition": "new"}).status_code == 200
    body = dispute_item(api, number)
    assert body["status"] == "disputed" and body["refund"]["amount_due"] == "68.90"
    return number, body["dispute"]["id"]


@pytest.mark.parametrize("outcome, amount, due, resolved", [
    ("accept", None, "68.90", "49.90"),
    ("accept", "49.90", "68.90", "49.90"),
    ("partial", "20.00", "39.00", "20.00"),
    ("partial", "49.90", "68.90", "49.90"),
    ("reject", None, "19.00", "0.00"),
])
def test_resolution_sets_the_amount_due_and_moves_the_return_on(app, api, order, outcome, amount, due, resolved):
    make_agent(app, "grace@shop.test", "Grace Hopper")
    number, dispute_id = _mixed_return(api)
    body = {"outcome": outcome, "note": "Checked the photos."}
    if amount:
        body["amount"] = amount
    later = NOW + timedelta(days=1)
    with clock.frozen(later):
        resp = api.post(f"/disputes/{dispute_id}/resolve", json=body)
    assert resp.status_code == 200, resp.get_json()
    dispute = resp.get_json()
    assert dispute["status"] == "resolved" and dispute["outcome"] == outcome
    assert dispute["resolved_amount"] == resolved and dispute["amount_at_stake"] == "49.90"
    assert dispute["note"] == "Checked the photos." and dispute["resolved_at"] == "2026-11-26T12:00:00Z"
    assert dispute["handler"] == {"name": "Grace Hopper", "email": "grace@shop.test"}

    ret = api.get(f"/returns/{number}").get_json()
    assert ret["status"] == "inspected"
    assert ret["refund"]["amount_due"] == due
    assert ret["dispute"]["status"] == "resolved"
    trail = api.get(f"/returns/{number}/events").get_json()["items"]
    resolved_event = next(e for e in trail if e["type"] == "dispute_resolved")
    assert resolved_event["data"]["outcome"] == outcome and resolved_event["data"]["amount"] == resolved
    assert resolved_event["data"]["items"] == [{"line_id": "L1", "quantity": 1, "unit_price": "49.90"}]
    if outcome == "reject":
        assert resolved_event["data"]["send_back"] == [{"line_id": "L1", "quantity": 1}]
    else:
        assert "send_back" not in resolved_event["data"]
    assert trail[-1]["type"] == "resolve" and trail[-1]["data"]["from"] == "disputed"
    assert trail[-1]["data"]["to"] == "inspected"
    [hook] = outbox(app, "dispute.resolved")
    assert hook["outcome"] == outcome and hook["resolved_amount"] == resolved
    assert any(to == "ada@example.com" and subject == f"Decision on your return {number}" for to, subject in mails(app))
    # the refund can now be recorded for exactly what is due
    assert api.post(f"/returns/{number}/refund", json={"amount": due}).get_json()["status"] == "refunded"


def test_resolution_waits_for_items_still_untriaged(app, api, order):
    make_agent(app, "grace@shop.test")
    items = [{"line_id": "L1", "quantity": 1, "reason": "damaged"}, {"line_id": "L2", "quantity": 2, "reason": "damaged"}]
    number = received_return(api, items=items)
    dispute_id = dispute_item(api, number)["dispute"]["id"]
    assert api.post(f"/disputes/{dispute_id}/resolve", json={"outcome": "partial", "amount": "10.00",
                                                              "note": "Worn."}).status_code == 200
    ret = api.get(f"/returns/{number}").get_json()
    assert ret["status"] == "disputed" and ret["refund"]["amount_due"] == "29.00"   # 10.00 + 2 × 9.50
    resp = api.post(f"/returns/{number}/items/L2/triage", json={"disposition": "restock", "condition": "new"})
    assert resp.get_json()["status"] == "inspected" and resp.get_json()["refund"]["amount_due"] == "29.00"


def test_a_second_dispute_on_the_same_return_counts_both_decisions(app, api, order):
    make_agent(app, "grace@shop.test")
    items = [{"line_id": "L1", "quantity": 1, "reason": "damaged"}, {"line_id": "L2", "quantity": 2, "reason": "damaged"}]
    number = received_return(api, items=items)
    first = dispute_item(api, number)["dispute"]["id"]
    api.post(f"/disputes/{first}/resolve", json={"outcome": "partial", "amount": "10.00", "note": "Worn."})
    second = dispute_item(api, number, "L2")["dispute"]["id"]
    assert second != first and dispute_of(app, second)["handler"] == "grace@shop.test"   # one contact
    resp = api.post(f"/disputes/{second}/resolve", json={"outcome": "partial", "amount": "5.00", "note": "Holes."})
    assert resp.get_json()["amount_at_stake"] == "19.00"
    ret = api.get(f"/returns/{number}").get_json()
    assert ret["status"] == "inspected" and ret["refund"]["amount_due"] == "15.00"
    resolved_event = events(app, "dispute_resolved", second)[0]
    assert resolved_event["data"]["items"] == [{"line_id": "L2", "quantity": 2, "unit_price": "9.50"}]


# --- the API: reading ----------------------------------------------------------------------------

def test_get_and_list_disputes(app, api, order):
    make_agent(app, "a@shop.test", "Ann")
    make_agent(app, "b@shop.test", "Bea")
    ids = []
    for i in range(3):
        new_order(api, f"L{i}", f"l{i}@example.com")
        with clock.frozen(NOW + timedelta(minutes=i)):
            ids.append(disputed_return(api, f"L{i}", f"l{i}@example.com")[1])
    api.post(f"/disputes/{ids[1]}/resolve", json={"outcome": "reject", "note": "No."})

    one = api.get(f"/disputes/{ids[0]}").get_json()
    assert set(one) >= {"id", "status", "rma_number", "handler", "amount_at_stake", "outcome", "resolved_amount",
                        "messages", "opened_at", "resolved_at"}
    assert one["handler"] == {"name": "Ann", "email": "a@shop.test"} and one["messages"] == []
    assert one["opened_at"] == "2026-11-25T12:00:00Z" and one["currency"] == "EUR"

    assert [d["id"] for d in api.get("/disputes").get_json()["items"]] == ids[::-1]
    assert [d["id"] for d in api.get("/disputes?status=open").get_json()["items"]] == [ids[2], ids[0]]
    assert [d["id"] for d in api.get("/disputes?handler=A@shop.test").get_json()["items"]] == [ids[2], ids[0]]
    assert [d["id"] for d in api.get("/disputes?status=resolved&handler=b@shop.test").get_json()["items"]] == [ids[1]]
    assert api.get("/disputes?handler=nobody@shop.test").get_json() == {"items": [], "next_cursor": None}

    page1 = api.get("/disputes?limit=2").get_json()
    assert [d["id"] for d in page1["items"]] == [ids[2], ids[1]] and page1["next_cursor"]
    new_order(api, "L9", "l9@example.com")
    disputed_return(api, "L9", "l9@example.com")        # a row added meanwhile: the cursor stays valid
    page2 = api.get(f"/disputes?limit=2&cursor={page1['next_cursor']}").get_json()
    assert [d["id"] for d in page2["items"]] == [ids[0]] and page2["next_cursor"] is None


@pytest.mark.parametrize("query, field", [
    ("status=closed", "status"), ("limit=0", "limit"), ("limit=101", "limit"), ("cursor=nonsense", "cursor"),
    ("unassigned=perhaps", "unassigned"),
])
def test_list_query_errors(api, query, field):
    resp = api.get(f"/disputes?{query}")
    assert resp.status_code == 422
    body = resp.get_json()
    assert body["code"] == "validation_error" and field in body["errors"]
    assert resp.content_type == "application/problem+json"


def test_unknown_dispute_is_404(api):
    for resp in (api.get("/disputes/999"), api.post("/disputes/999/messages", json={"author": "customer", "body": "x"}),
                 api.post("/disputes/999/resolve", json={"outcome": "accept", "note": "x"}), api.get("/disputes/abc")):
        assert resp.status_code == 404 and resp.get_json()["code"] == "not_found"


def test_disputes_need_an_api_key(client):
    resp = client.get("/api/v1/disputes")
    assert resp.status_code == 401 and resp.get_json()["code"] == "unauthorized"


# --- the API: errors write nothing --------------------------------------------------------------

@pytest.mark.parametrize("body, field", [
    ({"author": "customer", "body": ""}, "body"),
    ({"author": "customer", "body": "   \n "}, "body"),
    ({"author": "customer", "body": "x" * 5001}, "body"),
    ({"author": "customer"}, "body"),
    ({"author": "shop", "body": "Hi"}, "author"),
    ({"body": "Hi"}, "author"),
    ({"author": "customer", "body": "Hi", "extra": 1}, "extra"),
])
def test_message_validation_errors_write_nothing(app, api, order, body, field):
    make_agent(app, "a@shop.test")
    _, dispute_id = disputed_return(api)
    before = snapshot(app)
    resp = api.post(f"/disputes/{dispute_id}/messages", json=body)
    assert resp.status_code == 422, resp.get_json()
    assert resp.get_json()["code"] == "validation_error" and field in resp.get_json()["errors"]
    assert snapshot(app) == before


@pytest.mark.parametrize("body, field", [
    ({"outcome": "partial", "note": "Some"}, "amount"),                       # amount missing
    ({"outcome": "partial", "amount": "49.91", "note": "Some"}, "amount"),    # over the disputed value
    ({"outcome": "partial", "amount": "0", "note": "Some"}, "amount"),
    ({"outcome": "partial", "amount": "-5", "note": "Some"}, "amount"),
    ({"outcome": "partial", "amount": 12.5, "note": "Some"}, "amount"),       # a float is refused
    ({"outcome": "accept", "amount": "10.00", "note": "Ok"}, "amount"),
    ({"outcome": "reject", "amount": "10.00", "note": "No"}, "amount"),
    ({"outcome": "maybe", "note": "?"}, "outcome"),
    ({"outcome": "accept"}, "note"),
    ({"outcome": "accept", "note": ""}, "note"),
])
def test_resolve_validation_errors_write_nothing(app, api, order, body, field):
    make_agent(app, "a@shop.test")
    number, dispute_id = disputed_return(api)
    before = snapshot(app)
    resp = api.post(f"/disputes/{dispute_id}/resolve", json=body)
    assert resp.status_code == 422, resp.get_json()
    assert resp.get_json()["code"] == "validation_error" and field in resp.get_json()["errors"]
    assert snapshot(app) == before
    assert api.get(f"/returns/{number}").get_json()["status"] == "disputed"


def test_resolved_dispute_takes_no_second_resolution_and_no_message(app, api, order):
    make_agent(app, "a@shop.test")
    _, dispute_id = disputed_return(api)
    assert api.post(f"/disputes/{dispute_id}/resolve", json={"outcome": "accept", "note": "Ok"}).status_code == 200
    before = snapshot(app)
    again = api.post(f"/disputes/{dispute_id}/resolve", json={"outcome": "reject", "note": "Changed my mind"})
    assert again.status_code == 409 and again.get_json()["code"] == "conflict"
    message = api.post(f"/disputes/{dispute_id}/messages", json={"author": "customer", "body": "Thanks!"})
    assert message.status_code == 409 and message.get_json()["code"] == "conflict"
    assert snapshot(app) == before
    assert dispute_of(app, dispute_id)["outcome"] == "accept"


def test_message_post_is_idempotent(app, api, order):
    make_agent(app, "a@shop.test")
    _, dispute_id = disputed_return(api)
    headers = {"Idempotency-Key": "msg-1"}
    first = api.post(f"/disputes/{dispute_id}/messages", json={"author": "customer", "body": "Hi"}, headers=headers)
    second = api.post(f"/disputes/{dispute_id}/messages", json={"author": "customer", "body": "Hi"}, headers=headers)
    assert first.status_code == second.status_code == 201
    assert second.headers["Idempotent-Replayed"] == "true" and second.get_json() == first.get_json()
    assert count(app, DisputeMessage) == 1


def test_openapi_documents_the_dispute_paths(client):
    paths = client.get("/api/v1/openapi.json").get_json()["paths"]
    assert {"/api/v1/disputes", "/api/v1/disputes/{dispute_id}", "/api/v1/disputes/{dispute_id}/messages",
            "/api/v1/disputes/{dispute_id}/resolve"} <= set(paths)


# --- ACCEPTANCE: 50 disputes opened at once across 3 handlers, capacity 20 -----------------------

@pytest.mark.parametrize("app_config", [{"DISPUTE_CAPACITY": 20}])
def test_fifty_disputes_opened_at_once_spread_across_three_handlers(app, api, api_key, frozen_now, live_server):
    n = 50
    lines = [{"line_id": "L1", "sku": "LAMP", "name": "Desk lamp", "quantity": 1, "unit_price": "39.00"}]
    numbers = []
    for i in range(n):   # one customer each: "one contact" must not pull them together
        new_order(api, f"C{i:03d}", f"customer{i:03d}@example.com", lines=lines)
        numbers.append(received_return(api, f"C{i:03d}", f"customer{i:03d}@example.com",
                                       items=[{"line_id": "L1", "quantity": 1, "reason": "defective"}]))
    handlers = ["h1@shop.test", "h2@shop.test", "h3@shop.test"]
    for email in handlers:
        make_agent(app, email)

    barrier = threading.Barrier(n)
    headers = {"Authorization": f"Bearer {api_key}"}

    def triage(number):
        barrier.wait(timeout=30)
        return requests.post(f"{live_server.url}/api/v1/returns/{number}/items/L1/triage", json=DISPUTE,
                             headers=headers, timeout=120)

    with ThreadPoolExecutor(max_workers=n) as pool:
        results = list(pool.map(triage, numbers))

    assert [r.status_code for r in results] == [200] * n, [r.text for r in results if r.status_code != 200][:3]
    assert {r.json()["status"] for r in results} == {"disputed"}
    with app.app_context():
        disputes = db.session.scalars(select(Dispute)).all()
        assert len(disputes) == n
        assert all(d.handler_id is not None and d.status == "open" for d in disputes)   # exactly one handler each
        per_handler = Counter(d.handler.email for d in disputes)
    assert set(per_handler) == set(handlers)
    assert max(per_handler.values()) <= 20                                   # nobody past capacity
    assert max(per_handler.values()) - min(per_handler.values()) <= 1        # loads within one
    assert sorted(per_handler.values()) == [16, 17, 17]
    # each answer names the handler the database holds, and each assignment was audited once
    assert Counter(r.json()["dispute"]["handler"]["email"] for r in results) == per_handler
    assert len(events(app, "dispute_assigned")) == n
    assert len(outbox(app, "dispute.assigned")) == n

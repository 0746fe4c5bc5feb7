"""Reminders at their times (``now`` passed to ``rma run-jobs --once --now``), mail through
the outbox to a real SMTP server, and "the same sweep twice sends nothing twice"."""
from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import event, func, select

from rma_service import clock
from rma_service.extensions import db
from rma_service.models import (REMINDER_RECHECK, Agent, Dispute, DisputeMessage, Label, MailMessage,
                                OutboxEvent, ReminderSent, Return)
from tests.conftest import NOW, order_body, return_body
from tests.outbox import receiver, run_jobs  # noqa: F401  (fixture)

TEAM = "team@shop.test"


@pytest.fixture
def app_config(smtp_server):
    return {"SMTP_HOST": smtp_server.host, "SMTP_PORT": smtp_server.port, "SMTP_SENDER": "retours@shop.test",
            "TEAM_EMAIL": TEAM, "SHOP_NAME": "La Boutique", "WEBHOOK_CONNECT_TIMEOUT": 0.5,
            "WEBHOOK_TIMEOUT": 0.5, "SMTP_TIMEOUT": 5, "JOB_LEASE_SECONDS": 30}


# --- helpers ----------------------------------------------------------------------------------

def at(delta: timedelta) -> datetime:
    return NOW + delta


def sweep(app, now: datetime, job: str) -> int:
    return run_jobs(app, now, job)[job]


def create_return(api, **kw) -> dict:
    resp = api.post("/returns", json=return_body(**kw))
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


def add_agent(app, email: str, name: str, role: str = "agent", disputes: bool = False,
              active: bool = True) -> int:
    with app.app_context():
        agent = Agent(email=email, name=name, password_hash="x", role=role, handles_disputes=disputes,
                      active=active, away=False, created_at=NOW)
        db.session.add(agent)
        db.session.commit()
        return agent.id


def mails(app, **where) -> list[MailMessage]:
    with app.app_context():
        query = select(MailMessage).order_by(MailMessage.id)
        for key, value in where.items():
            query = query.where(getattr(MailMessage, key) == value)
        rows = db.session.scalars(query).all()
        db.session.expunge_all()
        return list(rows)


def outbox(app, type_: str) -> list[OutboxEvent]:
    with app.app_context():
        rows = db.session.scalars(select(OutboxEvent).where(OutboxEvent.type == type_).order_by(OutboxEvent.id)).all()
        db.session.expunge_all()
        return list(rows)


def keys(app) -> list[str]:
    with app.app_context():
        return [k.split(":", 2)[2] for k in db.session.scalars(select(ReminderSent.key).order_by(ReminderSent.id))]


def issue_label(app, number: str, issued_at: datetime) -> None:
    """Stand-in for the carrier: the return's label is issued at ``issued_at``."""
    with app.app_context():
        ret = db.session.scalar(select(Return).where(Return.rma_code == number.replace("RMA-", "").replace("-", "")))
        label = ret.labels[-1]
        label.status, label.issued_at, label.tracking_number = "issued", issued_at, "TRK" + ret.rma_code
        label.pdf = b"%PDF-1.4 test"
        db.session.commit()


# --- mail through the outbox ------------------------------------------------------------------

def test_confirmation_mail_in_french_with_the_status_link(app, api, frozen_now, smtp_server):
    api.put("/orders/1002", json=order_body(customer={"email": "zoe@exemple.fr", "name": "Zoé <Durand>",
                                                      "locale": "fr"}))
    ret = create_return(api, order_number="1002", email="zoe@exemple.fr")
    status_link = ret["links"]["status_page"]
    [queued] = mails(app)
    assert queued.status == "pending" and queued.to == "zoe@exemple.fr"

    assert run_jobs(app, NOW, "send_mail") == {"send_mail": 1}
    [message] = smtp_server.wait_for(1)
    assert message.rcpt_tos == ["zoe@exemple.fr"]
    assert message["From"] == "retours@shop.test"
    assert message["Subject"] == f"Votre retour {ret['rma_number']} pour la commande 1002"
    assert message["Message-ID"] == queued.message_id and message["Message-ID"].endswith("@shop.test>")
    assert message["Auto-Submitted"] == "auto-generated"
    text, html = message.iter_parts()
    assert "Bonjour Zoé <Durand>," in text.get_content()
    assert status_link in text.get_content()
    assert "Votre retour est accepté" in text.get_content()
    assert "Zoé &lt;Durand&gt;" in html.get_content()  # autoescaped HTML
    assert f'href="{status_link}"' in html.get_content()
    assert "Suivre mon retour" in html.get_content()

    assert run_jobs(app, NOW + timedelta(minutes=5), "send_mail") == {"send_mail": 0}
    assert len(smtp_server.messages) == 1
    [sent] = mails(app)
    assert sent.status == "sent" and sent.sent_at == NOW and sent.attempts == 1


def test_english_confirmation_and_retries_when_smtp_is_down(app, api, order, smtp_server, caplog):
    import logging
    import socket
    ret = create_return(api)
    with socket.socket() as closed:  # bound, not listening: the SMTP server is "down"
        closed.bind(("127.0.0.1", 0))
        app.config["RMA"]["SMTP_PORT"] = closed.getsockname()[1]
        try:
            with caplog.at_level(logging.INFO, logger="rma_service"):
                assert run_jobs(app, NOW, "send_mail") == {"send_mail": 0}
        finally:
            app.config["RMA"]["SMTP_PORT"] = smtp_server.port
    [mail] = mails(app)
    assert mail.status == "pending" and mail.attempts == 1 and "refused" in mail.last_error.lower()
    # The log says which mail, not to whom (the row has the address).
    assert f"mail {mail.id} to ***@example.com failed (attempt 1)" in caplog.text
    assert "ada@example.com" not in caplog.text
    assert mail.next_attempt_at == NOW + timedelta(seconds=30)
    assert run_jobs(app, NOW + timedelta(seconds=10), "send_mail") == {"send_mail": 0}  # backing off
    assert run_jobs(app, NOW + timedelta(seconds=30), "send_mail") == {"send_mail": 1}
    [message] = smtp_server.wait_for(1)
    assert message["Subject"] == f"Your return {ret['rma_number']} for order 1001"
    assert ret["links"]["status_page"] in message.get_body(("plain",)).get_content()
    assert mails(app)[0].status == "sent"


def test_a_mail_session_reuses_its_connection_and_reconnects_when_dropped(smtp_server):
    import socket

    from rma_service.adapters.mail import MailError, MailSession, SmtpSettings
    with MailSession(SmtpSettings(smtp_server.host, smtp_server.port)) as session:
        session.send("a@example.org", "One", "1")
        connection = session._smtp
        session.send("b@example.org", "Two", "2")
        assert session._smtp is connection  # the same SMTP conversation
        connection.sock.shutdown(socket.SHUT_RDWR)  # the connection dropped while idle
        session.send("c@example.org", "Three", "3")  # re-opened once, transparently
        assert session._smtp is not connection
    assert [m["Subject"] for m in smtp_server.wait_for(3)] == ["One", "Two", "Three"]
    with pytest.raises(MailError):
        MailSession(SmtpSettings("127.0.0.1", 1)).send("d@example.org", "Four", "4")


# --- refund reminders -------------------------------------------------------------------------

def test_refund_reminders_due_soon_then_overdue_daily_each_once(app, api, order, smtp_server, receiver):
    add_agent(app, "boss@shop.test", "Boss", role="admin")
    add_agent(app, "former@shop.test", "Former", role="admin", active=False)
    api.post("/webhook-endpoints", json={"url": receiver.url, "events": ["return.refund_due_soon",
                                                                           "return.refund_overdue"]})
    number = create_return(api)["rma_number"]
    with clock.frozen(at(timedelta(days=2))):
        assert api.post(f"/returns/{number}/receive", json={}).status_code == 200
    # due_at = the later of created + 14 d and the receipt = NOW + 14 d
    schedule = [
        (timedelta(days=10), 0), (timedelta(days=11), 1), (timedelta(days=11, hours=1), 0),
        (timedelta(days=12), 0), (timedelta(days=13), 1), (timedelta(days=14), 0),
        (timedelta(days=14, minutes=1), 1), (timedelta(days=14, hours=5), 0),
        (timedelta(days=15, minutes=1), 1), (timedelta(days=15, hours=2), 0),
        (timedelta(days=20, hours=1), 1),  # after downtime: only what applies now
        (timedelta(days=20, hours=2), 0),
    ]
    for delta, expected in schedule:
        assert sweep(app, at(delta), "refund_reminders") == expected, delta
        assert sweep(app, at(delta), "refund_reminders") == 0, f"twice at {delta}"
    assert keys(app) == ["refund_due_soon:3", "refund_due_soon:1", "refund_overdue:0", "refund_overdue:1",
                         "refund_overdue:6"]

    soon = outbox(app, "return.refund_due_soon")
    overdue = outbox(app, "return.refund_overdue")
    assert [e.payload["reminder_key"] for e in soon] == ["refund_due_soon:3", "refund_due_soon:1"]
    assert [e.payload["reminder_key"] for e in overdue] == ["refund_overdue:0", "refund_overdue:1",
                                                            "refund_overdue:6"]
    assert overdue[-1].payload["rma_number"] == number and overdue[-1].payload["refund"]["overdue"] is True
    assert overdue[-1].payload["refund"]["days_late"] == 6

    # Due soon → the team (no dispute handler); overdue → the team and the active admins.
    sent_to = [(m.to, m.subject.split(":")[0]) for m in mails(app) if m.template.startswith("refund_")]
    assert sent_to == [(TEAM, "Refund due in 3 days"), (TEAM, "Refund due within a day"),
                       (TEAM, "Refund overdue"), ("boss@shop.test", "Refund overdue"),
                       (TEAM, "Refund overdue by 1 day"), ("boss@shop.test", "Refund overdue by 1 day"),
                       (TEAM, "Refund overdue by 6 days"), ("boss@shop.test", "Refund overdue by 6 days")]

    # The webhooks and the mails leave through the outbox, each once.
    counts = run_jobs(app, at(timedelta(days=20, hours=3)), "deliver_webhooks", "send_mail")
    assert counts == {"deliver_webhooks": 5, "send_mail": 9}
    assert sorted(h.data["reminder_key"] for h in receiver.acknowledged()) == sorted(keys(app))
    received = smtp_server.wait_for(9)
    overdue_mail = [m for m in received if m["Subject"] == f"Refund overdue by 6 days: {number}"]
    assert sorted(m["To"] for m in overdue_mail) == ["boss@shop.test", TEAM]
    assert "Days late: 6" in overdue_mail[0].get_body(("plain",)).get_content()
    assert run_jobs(app, at(timedelta(days=20, hours=4)), "deliver_webhooks", "send_mail") == \
        {"deliver_webhooks": 0, "send_mail": 0}

    # Refunded: nothing more, ever.
    with clock.frozen(at(timedelta(days=21))):
        api.post(f"/returns/{number}/items/L1/triage", json={"disposition": "restock", "condition": "new"})
        due = api.get(f"/returns/{number}").get_json()["refund"]["amount_due"]
        assert api.post(f"/returns/{number}/refund", json={"amount": due}).get_json()["status"] == "refunded"
    assert sweep(app, at(timedelta(days=22)), "refund_reminders") == 0
    with app.app_context():
        assert db.session.scalar(select(Return.refund_reminder_at)) is None


def test_no_refund_reminder_without_evidence_then_at_once_when_it_arrives(app, api, order):
    number = create_return(api)["rma_number"]
    for days in (11, 13, 15, 16):
        assert sweep(app, at(timedelta(days=days)), "refund_reminders") == 0
    with clock.frozen(at(timedelta(days=17))):  # received late: due at the receipt
        api.post(f"/returns/{number}/receive", json={})
    with app.app_context():  # the change pulled the hint back: the next sweep looks at it
        assert db.session.scalar(select(Return.refund_reminder_at)) == REMINDER_RECHECK
    assert sweep(app, at(timedelta(days=17, minutes=5)), "refund_reminders") == 1
    assert keys(app) == ["refund_overdue:0"]


def test_refund_reminder_goes_to_the_dispute_handler(app, api, order):
    add_agent(app, "hana@shop.test", "Hana", disputes=True)
    number = create_return(api)["rma_number"]
    with clock.frozen(at(timedelta(days=1))):
        api.post(f"/returns/{number}/receive", json={})
        api.post(f"/returns/{number}/items/L1/triage", json={"disposition": "dispute", "condition": "used"})
    _ensure_handler(app, "hana@shop.test")
    assert sweep(app, at(timedelta(days=11)), "refund_reminders") == 1
    [reminder] = [m for m in mails(app) if m.template.startswith("refund_")]
    assert reminder.to == "hana@shop.test" and "Hello Hana," in reminder.text


def test_a_sweep_costs_what_is_due_not_the_number_of_returns(app, api, frozen_now):
    for _ in range(5):
        api.put(f"/orders/{_ + 2000}", json=order_body())
        create_return(api, order_number=str(_ + 2000))
    assert sweep(app, at(timedelta(days=1)), "refund_reminders") == 0  # first look: hints computed
    statements: list[str] = []
    with app.app_context():
        engine = db.engine

        def count(conn, cursor, statement, *args):
            statements.append(statement)
        event.listen(engine, "before_cursor_execute", count)
        try:
            assert sweep(app, at(timedelta(days=2)), "refund_reminders") == 0
        finally:
            event.remove(engine, "before_cursor_execute", count)
    # One indexed SELECT of the due returns, none of them loaded.
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) == 1 and "refund_reminder_at <=" in selects[0]
    with app.app_context():
        hints = db.session.scalars(select(Return.refund_reminder_at)).all()
    assert all(h is not None and h > at(timedelta(days=2)) for h in hints)


# --- label reminders --------------------------------------------------------------------------

def test_label_unused_7_days_reminder_then_28_days_expiry(app, api, order, smtp_server, receiver):
    api.post("/webhook-endpoints", json={"url": receiver.url, "events": ["return.expired"]})
    number = create_return(api)["rma_number"]
    issue_label(app, number, at(timedelta(hours=1)))
    schedule = [(timedelta(days=7), 0), (timedelta(days=7, hours=1), 1), (timedelta(days=7, hours=2), 0),
                (timedelta(days=20), 0), (timedelta(days=28), 0), (timedelta(days=28, hours=1), 1),
                (timedelta(days=29), 0), (timedelta(days=60), 0)]
    for delta, expected in schedule:
        assert sweep(app, at(delta), "label_reminders") == expected, delta
    assert keys(app) == ["label_unused:7", "label_expired:28"]

    ret = api.get(f"/returns/{number}").get_json()
    assert ret["status"] == "expired" and ret["label"]["status"] == "voided"
    events = api.get(f"/returns/{number}/events").get_json()["items"]
    expire = [e for e in events if e["type"] == "expire"]
    assert len(expire) == 1 and expire[0]["actor"] == "scheduler"
    assert expire[0]["at"] == "2026-12-23T13:00:00Z"
    assert any(e["type"] == "label_voided" for e in events)
    [expired_event] = outbox(app, "return.expired")
    assert expired_event.payload["status"] == "expired"

    customer = [m for m in mails(app, to="ada@example.com") if m.template != "return_created"]
    subjects = [m.subject for m in customer]
    assert subjects == [f"Reminder: your return label for {number} is waiting",
                        f"Your return {number} has expired"]
    assert "before December 23, 2026" in customer[0].text
    assert ret["links"]["status_page"] in customer[0].text

    assert run_jobs(app, at(timedelta(days=61)), "deliver_webhooks") == {"deliver_webhooks": 1}
    assert receiver.acknowledged()[0].type == "return.expired"


def test_label_reminders_stop_when_the_return_moves_on(app, api, order):
    number = create_return(api)["rma_number"]
    issue_label(app, number, NOW)
    with clock.frozen(at(timedelta(days=3))):
        api.post(f"/returns/{number}/cancel")
    assert sweep(app, at(timedelta(days=8)), "label_reminders") == 0
    assert sweep(app, at(timedelta(days=30)), "label_reminders") == 0
    assert keys(app) == []
    with app.app_context():
        assert db.session.scalar(select(Return.label_reminder_at)) is None
        assert db.session.scalar(select(func.count()).select_from(Label).where(Label.status == "voided")) == 1


def test_label_reminder_waits_for_the_label_to_be_issued(app, api, order):
    number = create_return(api)["rma_number"]
    assert sweep(app, at(timedelta(days=1)), "label_reminders") == 0  # label still pending
    issue_label(app, number, at(timedelta(days=3)))
    assert sweep(app, at(timedelta(days=8)), "label_reminders") == 0  # hint: not before day 8
    assert sweep(app, at(timedelta(days=10)), "label_reminders") == 1
    assert keys(app) == ["label_unused:7"]


# --- dispute reminders ------------------------------------------------------------------------

def _ensure_handler(app, email: str) -> None:
    with app.app_context():
        dispute = db.session.scalar(select(Dispute))
        if dispute.handler is None:  # (assignment is the disputes service's business)
            dispute.handler_id = db.session.scalar(select(Agent.id).where(Agent.email == email))
            db.session.commit()


def _message(app, author: str, when: datetime) -> None:
    with app.app_context():
        dispute = db.session.scalar(select(Dispute))
        db.session.add(DisputeMessage(dispute_id=dispute.id, author=author, body=f"{author} writes",
                                      agent_id=dispute.handler_id if author == "handler" else None, created_at=when))
        if author == "handler":
            dispute.last_handler_reply_at = when
        else:
            dispute.last_customer_message_at = when
        db.session.commit()


def test_dispute_without_reply_48h_handler_96h_admins(app, api, order):
    add_agent(app, "hana@shop.test", "Hana", disputes=True)
    add_agent(app, "boss@shop.test", "Boss", role="admin")
    add_agent(app, "chief@shop.test", "Chief", role="admin")
    number = create_return(api)["rma_number"]
    api.post(f"/returns/{number}/receive", json={})
    resp = api.post(f"/returns/{number}/items/L1/triage", json={"disposition": "dispute", "condition": "used"})
    assert resp.get_json()["status"] == "disputed"
    _ensure_handler(app, "hana@shop.test")
    before = {m.id for m in mails(app)}

    schedule = [(timedelta(hours=47), 0), (timedelta(hours=48), 1), (timedelta(hours=60), 0),
                (timedelta(hours=96), 1), (timedelta(hours=99), 0)]
    for delta, expected in schedule:
        assert sweep(app, at(delta), "dispute_reminders") == expected, delta
        assert sweep(app, at(delta), "dispute_reminders") == 0
    stamp = "20261125T120000Z"
    assert keys(app) == [f"dispute_no_reply:handler:{stamp}", f"dispute_no_reply:admin:{stamp}"]
    reminders = [m for m in mails(app) if m.id not in before]
    assert [m.to for m in reminders] == ["hana@shop.test", "boss@shop.test", "chief@shop.test"]
    assert reminders[0].subject == f"A customer waits for your reply: {number}"
    assert reminders[1].subject == f"Dispute without a reply for 96 h: {number}"
    assert "The dispute handler is Hana." in reminders[1].text

    # The handler answers; the customer writes twice: a new waiting period from the first.
    _message(app, "handler", at(timedelta(hours=100)))
    assert sweep(app, at(timedelta(hours=140)), "dispute_reminders") == 0
    _message(app, "customer", at(timedelta(hours=101)))
    _message(app, "customer", at(timedelta(hours=120)))
    assert sweep(app, at(timedelta(hours=148)), "dispute_reminders") == 0
    assert sweep(app, at(timedelta(hours=149)), "dispute_reminders") == 1
    assert keys(app)[-1] == "dispute_no_reply:handler:20261129T170000Z"

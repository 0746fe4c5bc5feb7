"""The rows of a new return, written by services/newrows.py rather than the unit of work
(one INSERT … SELECT statement on PostgreSQL, one statement per table elsewhere): every row
there, linked to the right parent, in creation order, with the values the ORM would have
given — and a failed write leaves nothing behind."""
from __future__ import annotations

import pytest
from sqlalchemy import event, select

from rma_service.domain import rma_number
from rma_service.extensions import db
from rma_service.models import (REMINDER_RECHECK, Event, Label, MailMessage, OrderLine, OutboxEvent, Photo,
                                Return, ReturnItem, WebhookDelivery)
from rma_service.services import returns as svc
from tests.conftest import NOW, count, return_body


def add_endpoint(api, url: str, events: list[str]) -> str:
    resp = api.post("/webhook-endpoints", json={"url": url, "events": events})
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()["id"]


@pytest.fixture
def statements(app, monkeypatch):
    """The SQL statements run while the block is active (INSERT and WITH only): through
    SQLAlchemy (engine events) or on the driver's cursor (services/dbapi.py)."""
    from rma_service.services import dbapi
    seen: list[str] = []
    with app.app_context():
        engine = db.engine

    def listen(conn, cursor, statement, params, context, executemany):
        if statement.lstrip().upper().startswith(("INSERT", "WITH")):
            seen.append(statement)

    run = dbapi.Prepared.run

    def observed_run(prepared, conn, params):
        listen(conn, None, str(prepared.statement.compile(dialect=conn.dialect)), params, None, False)
        return run(prepared, conn, params)

    monkeypatch.setattr(dbapi.Prepared, "run", observed_run)
    event.listen(engine, "before_cursor_execute", listen)
    yield seen
    event.remove(engine, "before_cursor_execute", listen)


def test_every_row_of_a_new_return_linked_and_in_order(app, api, order, statements):
    everything = add_endpoint(api, "http://127.0.0.1:9/all", ["*"])
    authorized_only = add_endpoint(api, "http://127.0.0.1:9/auth", ["return.authorized"])
    statements.clear()
    resp = api.post("/returns", json=return_body(items=[
        {"line_id": "L1", "quantity": 1, "reason": "too_small"},
        {"line_id": "L2", "quantity": 2, "reason": "too_large", "comment": "Wrong colour"}]))
    assert resp.status_code == 201, resp.get_json()
    body = resp.get_json()
    assert body["status"] == "authorized" and body["label"]["status"] == "pending"

    with app.app_context():
        ret = db.session.scalar(select(Return).where(Return.rma_code == rma_number.parse(body["rma_number"])))
        # Values the unit of work used to fill: defaults, version, reminder hints.
        assert ret.version == 1 and ret.authorized_at == NOW and ret.created_at == NOW
        assert ret.refund_reminder_at == REMINDER_RECHECK and ret.label_reminder_at == REMINDER_RECHECK
        assert ret.amount_refunded == 0 and ret.adjusted_amount is None
        items = ret.items
        assert [(i.line_id, i.quantity, i.comment, i.created_at, i.disposition, i.received_quantity)
                for i in items] == [("L1", 1, None, NOW, "pending", 0), ("L2", 2, "Wrong colour", NOW, "pending", 0)]
        assert str(items[1].unit_price) == "9.50"

        events = db.session.scalars(select(Event).where(Event.return_id == ret.id).order_by(Event.id)).all()
        assert [(e.type, e.from_status, e.to_status) for e in events] == [
            ("create", None, "requested"), ("approve", "requested", "authorized")]
        assert events[1].data == {"automatic": True} and events[0].data["quote"]["amount_due"] == "63.00"

        outbox = db.session.scalars(select(OutboxEvent).where(OutboxEvent.return_id == ret.id)
                                    .order_by(OutboxEvent.id)).all()
        assert [o.type for o in outbox] == ["return.created", "return.authorized"]
        assert outbox[0].payload["status"] == "requested" and outbox[1].payload["status"] == "authorized"

        deliveries = db.session.execute(select(WebhookDelivery.endpoint_id, OutboxEvent.type)
                                        .join(OutboxEvent, OutboxEvent.id == WebhookDelivery.outbox_event_id)
                                        .order_by(WebhookDelivery.id)).all()
        # Each subscribed endpoint gets each event it asked for, once; delivery ids follow the
        # events' order (the endpoints of one event in their own order).
        assert [d.type for d in deliveries] == ["return.created", "return.authorized", "return.authorized"]
        assert sorted(map(tuple, deliveries)) == sorted([(everything, "return.created"),
                                                         (everything, "return.authorized"),
                                                         (authorized_only, "return.authorized")])

        label = db.session.scalar(select(Label).where(Label.return_id == ret.id))
        assert (label.status, label.attempts, label.next_attempt_at) == ("pending", 0, NOW)
        mail = db.session.scalar(select(MailMessage).where(MailMessage.return_id == ret.id))
        assert mail.to == "ada@example.com" and mail.status == "pending"
        # Queued unrendered (the scheduler renders it): its context went through the write
        # (PostgreSQL: json_to_recordset) with its nested lists and dicts intact.
        assert mail.subject is None and mail.text is None and mail.html is None
        assert (mail.template, mail.locale) == ("return_created", "en")
        assert mail.context["rma_number"] == body["rma_number"] and mail.context["status"] == "authorized"
        assert [(i["line_id"], i["quantity"], i["comment"], i["unit_price"]) for i in mail.context["items"]] == [
            ("L1", 1, None, "49.90"), ("L2", 2, "Wrong colour", "9.50")]
        assert mail.context["refund"] == body["refund"] and mail.context["label"] == body["label"]
        assert mail.context["status_url"] == body["links"]["status_page"]

        lines = {line.line_id: line.reserved_quantity for line in db.session.scalars(select(OrderLine))}
        assert lines["L1"] == 1 and lines["L2"] == 2

        # PostgreSQL: the whole return in one statement (one round trip).
        if db.engine.dialect.name == "postgresql":
            assert len(statements) == 1 and statements[0].lstrip().startswith("WITH")


def test_units_are_locked_only_for_the_reservation_the_insert_and_the_commit(app, order, monkeypatch):
    """The reservation (the transaction's first write: a row lock on PostgreSQL, the database's
    write lock on SQLite) comes after the payloads and the confirmation mail are built, right
    before the rows are inserted; a concurrent request for the same units waits only for that.
    The mail is queued, not rendered: the scheduler renders it."""
    from rma_service.services import dbapi, notifications, representation
    timeline: list[str] = []
    with app.app_context():
        engine = db.engine

    def listen(conn, cursor, statement, params, context, executemany):
        timeline.append(statement.lstrip().split(None, 1)[0].upper())

    def observed(name, function):
        def call(*args, **kwargs):
            timeline.append(name)
            return function(*args, **kwargs)
        return call

    monkeypatch.setattr(notifications, "render", observed("render mail", notifications.render))
    monkeypatch.setattr(notifications, "enqueue_mail", observed("queue mail", notifications.enqueue_mail))
    monkeypatch.setattr(svc, "return_payload", observed("payload", representation.return_payload))
    def committed(conn):
        timeline.append("COMMIT")

    # SQLite: the new return's statements run on the driver's cursor (services/dbapi.py),
    # which engine events don't see; sqlite3's trace callback sees every statement.
    def traced(dbapi_conn, _record, _proxy):
        dbapi_conn.set_trace_callback(lambda sql: timeline.append(sql.lstrip().split(None, 1)[0].upper()))

    def untraced(dbapi_conn, _record):
        dbapi_conn.set_trace_callback(None)

    # PostgreSQL: engine events, and dbapi.Prepared's statements (on psycopg's cursor) as they run.
    if engine.dialect.name == "sqlite":
        hooks = [("checkout", traced), ("checkin", untraced)]
    else:
        hooks = [("before_cursor_execute", listen)]
        run = dbapi.Prepared.run

        def observed_run(prepared, conn, params):
            timeline.append(str(prepared.statement).lstrip().split(None, 1)[0].upper())
            return run(prepared, conn, params)

        monkeypatch.setattr(dbapi.Prepared, "run", observed_run)
    hooks.append(("commit", committed))
    for name, hook in hooks:
        event.listen(engine, name, hook)
    try:
        with app.app_context():
            ret = svc.create_return(return_body(), "test", NOW)
    finally:
        for name, hook in hooks:
            event.remove(engine, name, hook)
    assert ret.status == "authorized"
    first_write = timeline.index("UPDATE")
    assert {"queue mail", "payload"} <= set(timeline[:first_write]), timeline
    assert "render mail" not in timeline
    # From the reservation on: only the inserts (one WITH statement on PostgreSQL) and COMMIT.
    assert set(timeline[first_write + 1:]) <= {"INSERT", "WITH", "COMMIT"}, timeline
    assert "INSERT" in timeline or "WITH" in timeline
    assert timeline[-1] == "COMMIT"


def test_photos_take_the_per_table_path_and_keep_their_item(app, order):
    """Photo rows need their item's id (no natural key): written table by table."""
    with app.app_context():
        data = return_body(items=[{"line_id": "L1", "quantity": 1, "reason": "damaged",
                                   "photos": [("image/png", b"\x89PNG-one"), ("image/webp", b"RIFF-two")]},
                                  {"line_id": "L2", "quantity": 1, "reason": "too_large"}])
        ret = svc.create_return(data, "customer", NOW)
        number = ret.rma_code
    with app.app_context():
        ret = db.session.scalar(select(Return).where(Return.rma_code == number))
        photos = [(p.item.line_id, p.content_type, p.data) for p in
                  db.session.scalars(select(Photo).order_by(Photo.id))]
        assert photos == [("L1", "image/png", b"\x89PNG-one"), ("L1", "image/webp", b"RIFF-two")]
        assert [i.line_id for i in ret.items] == ["L1", "L2"]
        assert count(app, Event) == 2 and count(app, MailMessage) == 1
        mail = db.session.scalar(select(MailMessage))
        assert mail.subject is None and [i["line_id"] for i in mail.context["items"]] == ["L1", "L2"]


def test_a_code_collision_retries_with_nothing_left_behind(app, order, monkeypatch):
    """The unique index on rma_code is the arbiter: a collision fails the insert, the whole
    transaction (units reserved included) is rolled back and drawn again."""
    with app.app_context():
        first = svc.create_return(return_body(), "test", NOW)
        codes = iter([first.rma_code, first.rma_code, rma_number.generate()])
        monkeypatch.setattr(rma_number, "generate", lambda: next(codes))
        second = svc.create_return(return_body(), "test", NOW)
        assert second.rma_code != first.rma_code
    assert count(app, Return) == 2 and count(app, ReturnItem) == 2
    assert count(app, Event) == 4 and count(app, OutboxEvent) == 4 and count(app, MailMessage) == 2
    with app.app_context():
        assert db.session.scalar(select(OrderLine.reserved_quantity).where(OrderLine.line_id == "L1")) == 2

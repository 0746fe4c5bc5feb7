"""Webhook delivery by the ``deliver_webhooks`` job to a real local HTTP receiver: signatures,
stable event ids, order per return through outages, backoff, failure after 3 days,
redelivery, secret rotation. Jobs run through ``flask rma run-jobs --once --now …``."""
from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from rma_service import clock
from rma_service.adapters import signing
from rma_service.domain.deadlines import next_attempt_at
from rma_service.extensions import db
from rma_service.models import OutboxEvent, WebhookDelivery
from tests.conftest import NOW, order_body, return_body
from tests.outbox import Receiver, receiver, run_jobs  # noqa: F401  (fixture)


@pytest.fixture
def app_config():
    return {"WEBHOOK_CONNECT_TIMEOUT": 0.5, "WEBHOOK_TIMEOUT": 0.5, "JOB_LEASE_SECONDS": 30,
            "WEBHOOK_CONCURRENCY": 4}


def deliver(app, now: datetime) -> int:
    return run_jobs(app, now, "deliver_webhooks")["deliver_webhooks"]


def add_endpoint(api, url: str, events=("*",)) -> dict:
    resp = api.post("/webhook-endpoints", json={"url": url, "events": list(events)})
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


def create_return(api, **kw) -> dict:
    resp = api.post("/returns", json=return_body(**kw))
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


def deliveries(app) -> list[tuple[WebhookDelivery, OutboxEvent]]:
    with app.app_context():
        rows = db.session.execute(select(WebhookDelivery, OutboxEvent)
                                  .join(OutboxEvent, OutboxEvent.id == WebhookDelivery.outbox_event_id)
                                  .order_by(WebhookDelivery.id)).all()
        for delivery, event in rows:
            db.session.expunge(delivery)
            db.session.expunge(event)
        return [tuple(r) for r in rows]


def test_signed_body_and_the_same_event_id_on_retries(app, api, order, receiver: Receiver):
    endpoint = add_endpoint(api, receiver.url, ["return.created"])
    ret = create_return(api)
    receiver.mode = "down"
    assert deliver(app, NOW) == 0
    receiver.mode = "up"
    assert deliver(app, NOW + timedelta(seconds=10)) == 0  # backing off: not due yet
    assert deliver(app, NOW + timedelta(seconds=30)) == 1
    assert deliver(app, NOW + timedelta(minutes=5)) == 0  # nothing twice

    first, second = receiver.hits
    assert first.status == 500 and second.acknowledged
    assert first.event_id == second.event_id and first.body == second.body  # serialised once
    body = json.loads(second.body)
    assert list(body) == ["id", "type", "created_at", "data"]
    assert body["type"] == "return.created" and body["created_at"] == "2026-11-25T12:00:00Z"
    assert body["data"]["rma_number"] == ret["rma_number"]
    for hit in (first, second):
        assert hit.signature.startswith("t=") and hit.signature.count("v1=") == 1
        assert signing.verify([endpoint["secret"]], hit.body, hit.signature)
        assert not signing.verify(["whsec_other"], hit.body, hit.signature)
    [(delivery, event)] = deliveries(app)
    assert event.event_id == body["id"]
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("delivered", 2, 204)


def test_down_then_slow_then_up_delivers_everything_in_order_per_return(app, api, order, receiver: Receiver):
    endpoint = add_endpoint(api, receiver.url)
    api.put("/orders/1002", json=order_body(customer={"email": "bob@example.com", "name": "Bob", "locale": "fr"}))
    numbers = [create_return(api)["rma_number"],
               create_return(api, items=[{"line_id": "L2", "quantity": 2, "reason": "too_large"}])["rma_number"],
               create_return(api, order_number="1002", email="bob@example.com")["rma_number"]]
    assert api.post(f"/returns/{numbers[0]}/cancel").status_code == 200
    expected = {n: ["return.created", "return.authorized"] for n in numbers}
    expected[numbers[0]].append("return.cancelled")

    receiver.mode = "down"
    assert deliver(app, NOW) == 0
    assert deliver(app, NOW + timedelta(seconds=30)) == 0
    # Only the first event of each return was tried: the later ones wait their turn.
    assert {h.type for h in receiver.hits} == {"return.created"}
    assert len(receiver.hits) == 2 * len(numbers)

    receiver.mode = "slow"  # answers after the sender's 0.5 s timeout: still a failure
    assert deliver(app, NOW + timedelta(minutes=2)) == 0
    assert {h.type for h in receiver.hits} == {"return.created"}

    receiver.mode = "up"
    assert deliver(app, NOW + timedelta(minutes=10)) == 7  # the whole backlog in one run
    acknowledged = receiver.acknowledged()
    by_return: dict[str, list[str]] = {}
    for hit in acknowledged:
        by_return.setdefault(hit.data["rma_number"], []).append(hit.type)
    assert by_return == expected
    assert receiver.duplicates() == {}
    assert receiver.all_signed_by([endpoint["secret"]])
    with app.app_context():
        assert {e.event_id for _, e in deliveries(app)} == set(receiver.acknowledged_ids())
    assert all(d.status == "delivered" for d, _ in deliveries(app))
    assert deliver(app, NOW + timedelta(hours=1)) == 0


def test_backoff_then_failed_after_three_days_then_redeliver(app, api, order, receiver: Receiver):
    endpoint = add_endpoint(api, receiver.url)
    create_return(api)
    receiver.mode = "down"
    runs = [NOW, NOW + timedelta(seconds=29), NOW + timedelta(seconds=30), NOW + timedelta(seconds=90),
            NOW + timedelta(seconds=210)]
    for at in runs:
        deliver(app, at)
    (first, created), (second, authorized) = deliveries(app)
    assert created.type == "return.created" and authorized.type == "return.authorized"
    # 30 s, 1 min, 2 min …: attempts at 0, 30 s, 90 s, 210 s; the one at 29 s was too early.
    assert first.attempts == 4 and len(receiver.hits) == 4
    assert first.first_attempt_at == NOW
    assert first.next_attempt_at == next_attempt_at(NOW, 4, runs[-1]) == runs[-1] + timedelta(minutes=4)
    assert first.last_status_code == 500 and "500" in first.last_error
    assert (second.status, second.attempts) == ("pending", 0)  # held back behind the first

    # Retry every few hours until the 3 days are over: then it fails, and stops holding back.
    at = runs[-1]
    while at < NOW + timedelta(days=3, hours=6):
        at += timedelta(hours=6)
        deliver(app, at)
    (first, _), (second, _) = deliveries(app)
    assert first.status == "failed" and first.attempts > 10
    assert second.status == "pending" and second.attempts >= 1  # its own 3 days from its first try
    # It was first tried in the run that gave up on the first one (its 3 days start there).
    assert second.first_attempt_at > NOW + timedelta(days=2, hours=12)

    bad = api.post(f"/webhook-endpoints/{endpoint['id']}/deliveries/{second.id}/redeliver")
    assert bad.status_code == 409 and bad.get_json()["code"] == "conflict"
    resp = api.post(f"/webhook-endpoints/{endpoint['id']}/deliveries/{first.id}/redeliver")
    assert resp.status_code == 202, resp.get_json()
    assert resp.get_json()["status"] == "pending" and resp.get_json()["event_id"] == created.event_id

    receiver.mode = "up"
    with clock.frozen(at):
        assert deliver(app, at + timedelta(days=1)) == 2
    assert [h.type for h in receiver.acknowledged()] == ["return.created", "return.authorized"]
    assert receiver.acknowledged()[0].event_id == created.event_id
    assert {d.status for d, _ in deliveries(app)} == {"delivered"}


def test_secret_rotation_signs_with_both_secrets_for_24_hours(app, api, order, receiver: Receiver):
    endpoint = add_endpoint(api, receiver.url, ["return.created"])
    old = endpoint["secret"]
    rotated = api.post(f"/webhook-endpoints/{endpoint['id']}/rotate-secret")
    assert rotated.status_code == 200
    new = rotated.get_json()["secret"]
    assert new != old and rotated.get_json()["previous_secret_expires_at"] == "2026-11-26T12:00:00Z"
    create_return(api)
    assert deliver(app, NOW) == 1
    hit = receiver.acknowledged()[-1]
    assert hit.signature.count("v1=") == 2
    assert signing.verify([old], hit.body, hit.signature)  # a receiver not switched yet
    assert signing.verify([new], hit.body, hit.signature)  # a receiver already switched

    with clock.frozen(NOW + timedelta(hours=25)):
        create_return(api, items=[{"line_id": "L2", "quantity": 1, "reason": "too_large"}])
    assert deliver(app, NOW + timedelta(hours=25)) == 1
    hit = receiver.acknowledged()[-1]
    assert hit.signature.count("v1=") == 1
    assert signing.verify([new], hit.body, hit.signature)
    assert not signing.verify([old], hit.body, hit.signature)


def test_one_endpoint_down_does_not_hold_back_another(app, api, order, receiver: Receiver):
    other = Receiver()
    other.start()
    try:
        add_endpoint(api, receiver.url)
        add_endpoint(api, other.url)
        create_return(api)
        other.mode = "down"
        assert deliver(app, NOW) == 2
        assert [h.type for h in receiver.acknowledged()] == ["return.created", "return.authorized"]
        assert [h.type for h in other.hits] == ["return.created"]
    finally:
        other.stop()


def test_deleted_endpoint_gets_nothing_more(app, api, order, receiver: Receiver):
    endpoint = add_endpoint(api, receiver.url)
    create_return(api)
    assert api.client.delete(f"/api/v1/webhook-endpoints/{endpoint['id']}",
                             headers={"Authorization": f"Bearer {api.key}"}).status_code == 204
    assert deliver(app, NOW) == 0
    assert receiver.hits == []
    assert {(d.status, d.last_error) for d, _ in deliveries(app)} == {("failed", "endpoint deleted")}
    create_return(api, items=[{"line_id": "L2", "quantity": 1, "reason": "too_large"}])
    assert len(deliveries(app)) == 2  # no new delivery for a deleted endpoint


def test_an_unreachable_endpoint_is_a_failed_attempt_not_a_crash(app, api, order, caplog):
    import logging
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, not listening: connection refused
        port = sock.getsockname()[1]
        add_endpoint(api, f"http://127.0.0.1:{port}/hook?token=s3cr3t-token")
        create_return(api)
        with caplog.at_level(logging.INFO, logger="rma_service"):
            assert deliver(app, NOW) == 0
    # The shop's token in the URL stays out of the log (requests quotes the path in its errors).
    assert f"to http://127.0.0.1:{port}/hook?*** failed (attempt 1" in caplog.text
    assert "s3cr3t-token" not in caplog.text
    (delivery, _), _ = deliveries(app)
    assert delivery.status == "pending" and delivery.attempts == 1
    assert delivery.last_status_code is None and "connection" in delivery.last_error.lower()
    assert delivery.locked_until is None  # the claim is released

"""Webhook receivers that answer, but too slowly to count.

``RMA_WEBHOOK_TIMEOUT`` promises that an answer taking longer is a failed attempt, and the
lease (``deliver_due``) relies on no POST outlasting connect + read timeout. A receiver that
trickles its answer (each byte within the read timeout) must not hold a sender — and with it
every other endpoint's deliveries of that scheduler — past that.
"""
from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select

from rma_service.adapters.webhooks import WebhookSender
from rma_service.extensions import db
from rma_service.models import WebhookDelivery
from tests.conftest import NOW, return_body
from tests.outbox import Receiver, receiver, run_jobs  # noqa: F401  (fixture)

STATUS_AND_HEADERS = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n\r\n"
CHUNKED_200 = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
# The status line trickled a byte every 0.2 s arrives after 3 s: five times the 0.6 s deadline
# of the adapter's tests, and 1.5 times the job's 2 s (margins a busy machine cannot eat). An
# endless body: a chunk every 0.05 s for 5 s.
HEADER_INTERVAL = 0.2
PIECES = 100
INTERVAL = 0.05


class Trickler:
    """A receiver on a raw socket that answers one piece at a time, ``interval`` apart (each
    piece well within the read timeout), until it has sent everything or the client is gone.
    ``completed`` tells whether the client stayed until the end."""

    def __init__(self, pieces: list[bytes], interval: float) -> None:
        self.pieces, self.interval = pieces, interval
        self.duration = len(pieces) * interval
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/hooks/rma"
        self.requests: list[bytes] = []
        self.completed: list[bool] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(10)
                self.requests.append(conn.recv(65536))
                done = True
                for piece in self.pieces:
                    time.sleep(self.interval)
                    try:
                        conn.sendall(piece)
                    except OSError:  # the client hung up
                        done = False
                        break
                self.completed.append(done)

    def close(self) -> None:
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes up accept()
        except OSError:
            pass
        self.listener.close()
        self.thread.join(self.duration + 5)


@pytest.fixture
def trickling_headers() -> Iterator[Trickler]:
    server = Trickler([bytes([b]) for b in STATUS_AND_HEADERS], HEADER_INTERVAL)
    yield server
    server.close()


@pytest.fixture
def endless_body() -> Iterator[Trickler]:
    server = Trickler([CHUNKED_200] + [b"1\r\nx\r\n"] * PIECES + [b"0\r\n\r\n"], INTERVAL)
    yield server
    server.close()


def wait_for_end(server: Trickler) -> bool:
    """Whether the client stayed for the server's whole (first) answer."""
    deadline = time.monotonic() + server.duration + 5
    while not server.completed and time.monotonic() < deadline:
        time.sleep(0.02)
    return server.completed[0]


# --- the adapter ----------------------------------------------------------------------------

def test_an_answer_trickled_past_the_timeout_is_a_failed_attempt(trickling_headers: Trickler) -> None:
    with WebhookSender(timeout=(0.3, 0.3)) as sender:
        result = sender.deliver(trickling_headers.url, b'{"id":"e1"}', "whsec_test")
    assert not wait_for_end(trickling_headers), "the sender waited for the whole trickled answer"
    assert result.ok is False and result.status_code is None
    assert result.error is not None and result.error.startswith("timeout")
    assert "whsec_test" not in result.error


def test_a_2xx_with_an_endless_body_is_delivered_without_waiting_for_the_body(endless_body: Trickler) -> None:
    with WebhookSender(timeout=(0.3, 0.3)) as sender:
        result = sender.deliver(endless_body.url, b'{"id":"e1"}', "whsec_test")
    assert not wait_for_end(endless_body), "the sender read the receiver's endless body"
    # The status line is the receiver's acknowledgement: it is not sent again.
    assert result.ok is True and result.status_code == 200


# --- the deliver_webhooks job ---------------------------------------------------------------

@pytest.fixture
def app_config():
    # A 2 s deadline: far below the trickler's 5 s, and room for the healthy receiver's answer
    # on a machine busy with the rest of the suite (0.3 + 0.3 s once timed it out there).
    return {"WEBHOOK_CONNECT_TIMEOUT": 1.0, "WEBHOOK_TIMEOUT": 1.0, "JOB_LEASE_SECONDS": 30,
            "WEBHOOK_CONCURRENCY": 4}


def add_endpoint(api, url: str, events=("return.created",)) -> dict:
    resp = api.post("/webhook-endpoints", json={"url": url, "events": list(events)})
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


def deliveries_of(app, endpoint_id: str) -> list[WebhookDelivery]:
    with app.app_context():
        rows = db.session.scalars(select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id)
                                  .order_by(WebhookDelivery.id)).all()
        db.session.expunge_all()
        return list(rows)


def test_a_trickling_receiver_gets_a_failed_attempt_and_the_other_endpoint_its_event(
        app, api, order, receiver: Receiver, trickling_headers: Trickler) -> None:
    slow = add_endpoint(api, trickling_headers.url)
    healthy = add_endpoint(api, receiver.url)
    resp = api.post("/returns", json=return_body())
    assert resp.status_code == 201

    counts = run_jobs(app, NOW, "deliver_webhooks")
    assert counts == {"deliver_webhooks": 1}
    assert [h.type for h in receiver.acknowledged()] == ["return.created"]
    assert not wait_for_end(trickling_headers)
    [attempt] = deliveries_of(app, slow["id"])
    # Shown to the shop as a failed attempt, retried with backoff (not "delivered").
    assert (attempt.status, attempt.attempts, attempt.last_status_code) == ("pending", 1, None)
    assert attempt.last_error.startswith("timeout") and attempt.locked_until is None
    assert attempt.next_attempt_at == NOW + timedelta(seconds=30)
    [done] = deliveries_of(app, healthy["id"])
    assert done.status == "delivered"

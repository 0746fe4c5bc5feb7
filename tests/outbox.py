"""Test helpers for the outbox: ``run_jobs`` (the ``rma run-jobs`` CLI) and a real webhook
receiver, a threaded pytest-httpserver that records every POST (fixture ``receiver``).

``Receiver.mode`` decides the answer: ``"up"`` (204), ``"down"`` (500) or ``"slow"`` (sleeps
``slow_seconds`` — longer than the sender's timeout — then 200, too late to count).
``delay`` slows every answer down (to let a test act in the middle of a run). ``on_request``
is called with each hit before answering (a test may kill the sender from there).

A hit is *acknowledged* when it was answered 2xx in time (modes "up"): those are the ones the
sender must never repeat.
"""
from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Optional

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from rma_service import clock
from rma_service.adapters import signing


def run_jobs(app, now: datetime, *names: str) -> dict[str, int]:
    """``flask rma run-jobs --once --now <now> [--job …]`` in-process; returns {job: count}."""
    args = ["rma", "run-jobs", "--once", "--now", clock.rfc3339(now)]
    for name in names:
        args += ["--job", name]
    result = app.test_cli_runner().invoke(args=args)
    assert result.exit_code == 0, result.output
    return {name: int(count) for name, count in (line.split(": ", 1) for line in result.output.splitlines())}


@dataclass
class Hit:
    event_id: str
    type: str
    body: bytes
    signature: str
    mode: str
    received_at: float
    data: dict[str, Any] = field(default_factory=dict)
    acknowledged: bool = False
    status: int = 0


class Receiver:
    def __init__(self, path: str = "/hooks/rma") -> None:
        self.server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
        self.path = path
        self.mode = "up"
        self.slow_seconds = 1.5
        self.delay = 0.0
        self.on_request: Optional[Callable[[Hit], Optional[int]]] = None
        self.hits: list[Hit] = []
        self._lock = threading.Lock()
        self.server.expect_request(path, method="POST").respond_with_handler(self._handle)

    @property
    def url(self) -> str:
        return self.server.url_for(self.path)

    def _handle(self, request: Request) -> Response:
        body = request.get_data()
        try:
            doc = json.loads(body)
        except ValueError:
            doc = {}
        hit = Hit(event_id=doc.get("id", ""), type=doc.get("type", ""), body=body,
                  signature=request.headers.get("RMA-Signature", ""), mode=self.mode,
                  received_at=time.monotonic(), data=doc.get("data") or {})
        with self._lock:
            self.hits.append(hit)
        if self.on_request is not None:
            forced = self.on_request(hit)
            if forced is not None:
                hit.status = forced
                return Response("", status=forced)
        if self.delay:
            time.sleep(self.delay)
        if hit.mode == "down":
            hit.status = 500
            return Response("down for maintenance", status=500)
        if hit.mode == "slow":
            time.sleep(self.slow_seconds)
            hit.status = 200
            return Response("too late", status=200)
        hit.status = 204
        hit.acknowledged = True
        return Response("", status=204)

    # --- what arrived -----------------------------------------------------------------------
    def acknowledged(self) -> list[Hit]:
        with self._lock:
            return [h for h in self.hits if h.acknowledged]

    def acknowledged_ids(self) -> list[str]:
        return [h.event_id for h in self.acknowledged()]

    def duplicates(self) -> dict[str, int]:
        counts = Counter(self.acknowledged_ids())
        return {k: v for k, v in counts.items() if v > 1}

    def all_signed_by(self, secrets: list[str]) -> bool:
        return all(signing.verify(secrets, h.body, h.signature) for h in self.acknowledged())

    def wait_for_acknowledged(self, n: int, timeout: float = 30) -> list[Hit]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hits = self.acknowledged()
            if len(hits) >= n:
                return hits
            time.sleep(0.05)
        raise AssertionError(f"expected {n} acknowledged deliveries within {timeout} s, "
                             f"got {len(self.acknowledged())}")

    def start(self) -> None:
        self.server.start()

    def stop(self) -> None:
        self.server.clear()
        if self.server.is_running():
            self.server.stop()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.start()
    yield r
    r.stop()

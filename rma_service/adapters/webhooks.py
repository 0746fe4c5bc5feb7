"""Outbound delivery of one webhook to the shop: one signed POST, no retries.

The scheduler owns retries and backoff (``domain.deadlines.next_attempt_at``); this adapter
makes a single attempt and reports how it went, without ever raising for network trouble.
"""
from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Optional

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from rma_service.adapters import signing

_MAX_ERROR_LENGTH = 200
# Of an answer's body only this much is read (to reuse the connection); the status is what counts.
_MAX_ANSWER_BYTES = 64 * 1024


# --- a deadline for the whole exchange ----------------------------------------------------------
# requests' (connect, read) timeout bounds each socket operation, not the answer: a receiver
# that trickles its answer a byte at a time, each within the read timeout, would hold the
# sender (and the lease the scheduler took, and every other endpoint's deliveries behind it)
# indefinitely. A timer shuts the socket of the exchange in flight down once connect + read
# timeout have passed.

_local = threading.local()  # the _Deadline of the exchange this thread is sending, if any


class _Deadline:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds
        self.expired = False
        self._lock = threading.Lock()
        self._connections: list[HTTPConnection] = []

    def __enter__(self) -> _Deadline:
        _local.deadline = self
        _WATCHDOG.arm(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        _WATCHDOG.disarm(self)
        _local.deadline = None
        with self._lock:
            self._connections.clear()

    def watch(self, connection: HTTPConnection) -> None:
        with self._lock:
            self._connections.append(connection)
            if self.expired:
                _shut_down(connection)

    def expire(self) -> None:
        with self._lock:
            self.expired = True
            for connection in self._connections:
                _shut_down(connection)


class _Watchdog:
    """One daemon thread per process expires the deadlines of the exchanges in flight (no
    thread started per request)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._active: set[_Deadline] = set()
        self._wake_at = float("inf")
        self._thread: Optional[threading.Thread] = None

    def arm(self, deadline: _Deadline) -> None:
        with self._cond:
            self._active.add(deadline)
            if self._thread is None or not self._thread.is_alive():  # (also after a fork)
                self._thread = threading.Thread(target=self._run, name="webhook-deadlines", daemon=True)
                self._thread.start()
            if deadline.at < self._wake_at:
                self._cond.notify()

    def disarm(self, deadline: _Deadline) -> None:
        with self._cond:
            self._active.discard(deadline)

    def _run(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                for deadline in [d for d in self._active if d.at <= now]:
                    self._active.discard(deadline)
                    deadline.expire()
                self._wake_at = min((d.at for d in self._active), default=float("inf"))
                self._cond.wait(None if self._wake_at == float("inf") else self._wake_at - now)


_WATCHDOG = _Watchdog()


def _shut_down(connection: HTTPConnection) -> None:
    sock = getattr(connection, "sock", None)
    if sock is not None:
        try:  # (socket.socket's own shutdown, also under TLS: the reader just sees the end)
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        except OSError:
            pass


def _watch(connection: HTTPConnection) -> None:
    deadline: Optional[_Deadline] = getattr(_local, "deadline", None)
    if deadline is not None:
        deadline.watch(connection)


class _Watched:
    """Mixed into urllib3's connections: a new or reused socket is watched by the deadline."""

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        _watch(self)  # type: ignore[arg-type]

    def request(self, *args: Any, **kwargs: Any) -> None:
        _watch(self)  # type: ignore[arg-type]
        super().request(*args, **kwargs)  # type: ignore[misc]


class _WatchedHTTPConnection(_Watched, HTTPConnection):
    pass


class _WatchedHTTPSConnection(_Watched, HTTPSConnection):
    pass


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_POOL_CLASSES = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class _WatchedAdapter(HTTPAdapter):
    """requests' adapter, its connections (direct or through an HTTP proxy) watched by the
    sending thread's deadline."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOL_CLASSES

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any):
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not proxy.lower().startswith("socks"):  # (SOCKS has pool classes of its own)
            manager.pool_classes_by_scheme = _POOL_CLASSES
        return manager


@dataclass(frozen=True)
class DeliveryResult:
    """Outcome of one attempt. ``error`` is a short, secret-free text when ``ok`` is False."""

    ok: bool
    status_code: int | None
    error: str | None
    duration_ms: float


class WebhookSender:
    """Signs and POSTs webhook bodies, reusing connections through one ``requests.Session``.

    ``timeout`` is ``(connect, read)`` in seconds. Redirects are not followed: a 3xx answer
    is a failed delivery (following it would turn the POST into a GET elsewhere).
    """

    def __init__(self, *, timeout: tuple[float, float] = (3.0, 10.0),
                 user_agent: str = "rma-service") -> None:
        self.timeout = timeout
        self.session = requests.Session()
        self.session.headers["User-Agent"] = user_agent
        adapter = _WatchedAdapter()
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> WebhookSender:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def deliver(self, url: str, body: bytes, secret: str, *,
                now: int | None = None, previous_secrets: Iterable[str] = ()) -> DeliveryResult:
        """POST ``body`` (the serialised ``{"id", "type", "created_at", "data"}``) to ``url``.

        Headers: ``Content-Type: application/json``, ``RMA-Signature`` (``signing.sign`` of the
        body with ``secret`` at ``now``, unix seconds, default the current time) and the
        session's ``User-Agent``. Any 2xx answer is a success; anything else, including a
        timeout or a refused connection, is a failure described in ``error``. The status
        line must arrive within connect + read timeout of the start, however the receiver
        paces it (``timeout: …`` otherwise); of the body only a little is read, and none is
        waited for past that deadline.

        ``previous_secrets`` (during a secret rotation) adds one more ``v1=`` per secret, at the
        same ``t``: a receiver still holding the old secret verifies as well as one that has
        the new one (``t=…,v1=<new>,v1=<old>``).
        """
        signature = signing.sign(secret, body, now)
        t = signature.partition(",")[0].removeprefix("t=")
        for previous in previous_secrets:
            if previous:
                signature += "," + signing.sign(previous, body, int(t)).partition(",")[2]
        headers = {"Content-Type": "application/json", "RMA-Signature": signature}
        started = time.monotonic()
        connect, read = self.timeout if isinstance(self.timeout, tuple) else (self.timeout, self.timeout)
        deadline = _Deadline(connect + read)
        try:
            with deadline:
                response = self.session.post(url, data=body, headers=headers, timeout=self.timeout,
                                             allow_redirects=False, stream=True)
                with response:
                    _discard_body(response)
        except requests.RequestException as exc:
            error = (f"timeout: no answer within {deadline.seconds:g} s" if deadline.expired
                     else _describe(exc, secret))
            return DeliveryResult(ok=False, status_code=None, error=error, duration_ms=_elapsed_ms(started))
        duration_ms = _elapsed_ms(started)
        if 200 <= response.status_code < 300:
            return DeliveryResult(ok=True, status_code=response.status_code, error=None,
                                  duration_ms=duration_ms)
        return DeliveryResult(ok=False, status_code=response.status_code,
                              error=f"HTTP {response.status_code} {response.reason or ''}".strip(),
                              duration_ms=duration_ms)


def _discard_body(response: requests.Response) -> None:
    """Read (and drop) a little of the answer's body, so that a short one leaves the
    connection reusable; a longer or a broken one is not waited for (closing the response
    then drops the connection). The status already arrived: it decides."""
    read = 0
    try:
        for chunk in response.iter_content(8192):
            read += len(chunk)
            if read >= _MAX_ANSWER_BYTES:
                break
    except (requests.RequestException, OSError):
        pass


def _elapsed_ms(started: float) -> float:
    return (time.monotonic() - started) * 1000


def _describe(exc: requests.RequestException, secret: str) -> str:
    """``"<kind>: <innermost cause>"``, e.g. ``connection error: [Errno 111] Connection refused``.

    The innermost cause is shorter and clearer than urllib3's wrapped message. The secret is
    never part of a request error, but is masked anyway should a URL or a proxy echo it.
    """
    if isinstance(exc, requests.ConnectTimeout):
        kind = "connect timeout"
    elif isinstance(exc, requests.Timeout):
        kind = "read timeout"
    elif isinstance(exc, requests.ConnectionError):
        kind = "connection error"
    else:
        kind = "request error"
    cause: BaseException = exc
    while cause.__cause__ is not None or cause.__context__ is not None:
        cause = cause.__cause__ or cause.__context__  # type: ignore[assignment]
    detail = str(cause) or type(cause).__name__
    message = f"{kind}: {detail}"
    if secret:
        message = message.replace(secret, "***")
    return message[:_MAX_ERROR_LENGTH]

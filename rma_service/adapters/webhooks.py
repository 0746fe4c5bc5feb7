"""Outbound delivery of one webhook to the shop: one signed POST, no retries.

The scheduler owns retries and backoff (``domain.deadlines.next_attempt_at``); this adapter
makes a single attempt and reports how it went, without ever raising for network trouble.
"""
from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

import requests

from rma_service.adapters import signing

_MAX_ERROR_LENGTH = 200


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
        timeout or a refused connection, is a failure described in ``error``.

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
        try:
            response = self.session.post(url, data=body, headers=headers, timeout=self.timeout,
                                         allow_redirects=False)
        except requests.RequestException as exc:
            return DeliveryResult(ok=False, status_code=None, error=_describe(exc, secret),
                                  duration_ms=_elapsed_ms(started))
        duration_ms = _elapsed_ms(started)
        if 200 <= response.status_code < 300:
            return DeliveryResult(ok=True, status_code=response.status_code, error=None,
                                  duration_ms=duration_ms)
        return DeliveryResult(ok=False, status_code=response.status_code,
                              error=f"HTTP {response.status_code} {response.reason or ''}".strip(),
                              duration_ms=duration_ms)


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

"""HMAC signatures of the form ``t=<unix seconds>,v1=<hex>`` over ``"<t>.<raw body>"``.

One scheme for both directions: the ``RMA-Signature`` header of the webhooks we send to the
shop, and the signature the carriers put on the tracking events they send us.
"""
from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterable


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else int(timestamp)
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify(secrets: Iterable[str], body: bytes, header: str | None, *, now: float | None = None,
           tolerance: int = 300) -> bool:
    """True when ``header`` carries a v1 signature of ``body`` by one of ``secrets``.

    Several secrets are accepted so that a secret can be rotated without a gap. The timestamp
    must be within ``tolerance`` seconds of ``now`` (replay protection). Comparison is
    constant-time.
    """
    if not header:
        return False
    parts: dict[str, list[str]] = {}
    for piece in header.split(","):
        key, sep, value = piece.strip().partition("=")
        if sep:
            parts.setdefault(key, []).append(value)
    try:
        t = int(parts["t"][0])
    except (KeyError, ValueError, IndexError):
        return False
    now = time.time() if now is None else now
    if abs(now - t) > tolerance:
        return False
    candidates = parts.get("v1", [])
    for secret in secrets:
        if not secret:
            continue
        expected = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
        for candidate in candidates:
            if hmac.compare_digest(expected, candidate):
                return True
    return False

"""Unguessable, signed links to one return's status page."""
from __future__ import annotations

from functools import lru_cache
from typing import Optional

from flask import current_app
from itsdangerous import BadSignature, URLSafeSerializer

_SALT = "rma-status-page-v1"


def _serializer() -> URLSafeSerializer:
    return _serializer_for(current_app.config["SECRET_KEY"])


@lru_cache(maxsize=8)
def _serializer_for(secret: str) -> URLSafeSerializer:
    """One serializer per secret: it derives its signing key once, not per link."""
    return URLSafeSerializer(secret, salt=_SALT)


def status_token(rma_code: str) -> str:
    return _status_token(current_app.config["SECRET_KEY"], rma_code)


@lru_cache(maxsize=1024)
def _status_token(secret: str, rma_code: str) -> str:
    """A return's link is the same every time (the payloads, the mail and the answer of one
    request each show it): signed once."""
    return _serializer_for(secret).dumps({"r": rma_code})


def read_status_token(token: str) -> Optional[str]:
    """The RMA code a token was made for, or None for a tampered or foreign token."""
    try:
        data = _serializer().loads(token)
    except BadSignature:
        return None
    return data.get("r") if isinstance(data, dict) else None

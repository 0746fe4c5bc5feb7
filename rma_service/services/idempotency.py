"""Idempotency-Key for every POST of the API.

The key is claimed in its own committed transaction before the work starts, so a duplicate
that arrives while the first is still running sees the claim (409 ``conflict``) and a
retry after it finished replays the stored answer. A claim whose request died without an
answer is taken over after ``LOCK_SECONDS``.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Optional

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from ..errors import ApiError
from ..extensions import db
from ..models import IdempotencyKey

LOCK_SECONDS = 60


@dataclass(frozen=True)
class Replay:
    status: int
    body: str
    headers: dict[str, str]


def request_fingerprint(method: str, path: str, body: bytes) -> str:
    """The request as the key remembers it: a JSON body canonicalised (key order and spacing
    do not make another request). A body that is not JSON, or that the decoder refuses (nested
    too deeply: a RecursionError; a number too long: a ValueError), is taken as its bytes; the
    parser answers it with a 422 afterwards, which the key then replays."""
    try:
        canonical = json.dumps(json.loads(body or b"null"), sort_keys=True, separators=(",", ":")).encode()
    except (ValueError, RecursionError):
        canonical = body
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + canonical).hexdigest()


def claim(api_key_id: int, key: str, fingerprint: str, now: datetime, ttl_hours: int) -> tuple[Optional[int], Optional[Replay]]:
    """(record id, None) when this request owns the key; (None, Replay) to answer from the
    store; raises ApiError for a reused key or a request still running."""
    for _ in range(3):
        record = IdempotencyKey(api_key_id=api_key_id, key=key, request_hash=fingerprint, state="running",
                                created_at=now)
        db.session.add(record)
        try:
            db.session.commit()
            return record.id, None
        except IntegrityError:
            db.session.rollback()
        existing = db.session.scalar(select(IdempotencyKey).where(
            IdempotencyKey.api_key_id == api_key_id, IdempotencyKey.key == key))
        if existing is None:
            continue  # deleted meanwhile (expired or abandoned): claim again
        expired = existing.created_at < now - timedelta(hours=ttl_hours)
        abandoned = existing.state == "running" and existing.created_at < now - timedelta(seconds=LOCK_SECONDS)
        if expired or abandoned:
            db.session.execute(delete(IdempotencyKey).where(IdempotencyKey.id == existing.id,
                                                            IdempotencyKey.state == existing.state))
            db.session.commit()
            continue
        if existing.request_hash != fingerprint:
            raise ApiError(422, "idempotency_key_reused",
                           "This Idempotency-Key was used with a different request body.",
                           errors={"Idempotency-Key": ["Already used with another request body."]})
        if existing.state == "running":
            raise ApiError(409, "conflict", "A request with this Idempotency-Key is still being processed.")
        return None, Replay(existing.response_status or 200, existing.response_body or "",
                            dict(existing.response_headers or {}))
    raise ApiError(409, "conflict", "A request with this Idempotency-Key is still being processed.")


def finish(record_id: int, status: int, body: str, headers: dict[str, str]) -> None:
    record = db.session.get(IdempotencyKey, record_id)
    if record is not None:
        record.state, record.response_status = "done", status
        record.response_body, record.response_headers = body, headers
        db.session.commit()


def release(record_id: int) -> None:
    """Forget a claim whose request failed on our side, so that a retry can run."""
    db.session.execute(delete(IdempotencyKey).where(IdempotencyKey.id == record_id))
    db.session.commit()


def purge(now: datetime, ttl_hours: int) -> int:
    result = db.session.execute(delete(IdempotencyKey).where(
        IdempotencyKey.created_at < now - timedelta(hours=ttl_hours)))
    db.session.commit()
    return result.rowcount or 0

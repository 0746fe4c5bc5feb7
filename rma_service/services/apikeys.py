"""API keys for the shop backend: only a hash is stored."""
from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Optional

from sqlalchemy import select

from ..extensions import db
from ..models import ApiKey


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_api_key(name: str, now: datetime) -> tuple[ApiKey, str]:
    key = "rma_" + secrets.token_urlsafe(32)
    record = ApiKey(name=name, prefix=key[:10], key_hash=hash_key(key), created_at=now)
    db.session.add(record)
    db.session.commit()
    return record, key


@dataclass(frozen=True)
class Principal:
    id: int
    name: str


# Keys seen recently, per process: saves a query on every API call. A revoked key keeps
# working for at most CACHE_SECONDS in a process that had seen it.
CACHE_SECONDS = 60.0
_CACHE_MAX = 1024
_cache: dict[str, tuple[float, Principal]] = {}


def authenticate(key: str) -> Optional[Principal]:
    digest = hash_key(key)
    hit = _cache.get(digest)
    if hit is not None and hit[0] > time.monotonic():
        return hit[1]
    record = db.session.scalar(select(ApiKey).where(ApiKey.key_hash == digest))
    if record is None or record.revoked_at is not None:
        _cache.pop(digest, None)
        return None
    if len(_cache) >= _CACHE_MAX:
        _cache.clear()
    principal = Principal(record.id, record.name)
    _cache[digest] = (time.monotonic() + CACHE_SECONDS, principal)
    return principal

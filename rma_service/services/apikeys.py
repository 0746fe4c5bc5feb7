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
    name = name.strip()
    if not name or len(name) > 100:
        raise ValueError("Name the key (1 to 100 characters): it tells whose requests these are.")
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


def list_api_keys() -> list[ApiKey]:
    return list(db.session.scalars(select(ApiKey).order_by(ApiKey.id)))


def revoke_api_key(key_or_prefix: str, now: datetime) -> ApiKey:
    """Revoke the key given whole or by its prefix (``rma_XXXXXX``, printed when it was made
    and by ``list-api-keys``). Other worker processes stop accepting it within
    ``CACHE_SECONDS``; this one at once."""
    text = key_or_prefix.strip()
    if len(text) < 10:
        raise ValueError("Give the key's prefix (10 characters, e.g. rma_AbC123) or the whole key.")
    query = select(ApiKey).where(ApiKey.key_hash == hash_key(text)) if len(text) > 16 \
        else select(ApiKey).where(ApiKey.prefix == text[:10])
    found = list(db.session.scalars(query))
    if not found:
        raise LookupError(f"No API key matches {text[:10]}….")
    if len(found) > 1:
        raise LookupError(f"{len(found)} keys share the prefix {text[:10]}: give the whole key.")
    record = found[0]
    if record.revoked_at is None:
        record.revoked_at = now
        db.session.commit()
    _cache.pop(record.key_hash, None)
    return record

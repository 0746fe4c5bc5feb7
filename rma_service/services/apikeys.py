"""API keys for the shop backend: only a hash is stored."""
from __future__ import annotations

import hashlib
import secrets
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


def authenticate(key: str) -> Optional[ApiKey]:
    record = db.session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(key)))
    if record is None or record.revoked_at is not None:
        return None
    return record

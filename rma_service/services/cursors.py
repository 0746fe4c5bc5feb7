"""Keyset-pagination cursors, for the API's lists and the admin's queues.

A cursor is opaque to clients: the base64url text of a few ``|``-separated values (a row id,
a creation time). What comes back is checked before it reaches a query, so that a cursor a
client altered is "not one this API gave out" (a 422, or the first page in the admin), never
a value the database refuses with a 500: an id beyond a 64-bit integer, a time without its
zone, a number written in other digits than 0-9.
"""
from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any, Optional, TypeVar

from ..errors import ApiError

MAX_ID = 2 ** 63 - 1  # BIGINT on PostgreSQL, INTEGER on SQLite
T = TypeVar("T")


def encode(*parts: Any) -> str:
    return base64.urlsafe_b64encode("|".join(str(p) for p in parts).encode()).decode().rstrip("=")


def _parts(cursor: str, n: int) -> Optional[list[str]]:
    try:
        parts = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode().split("|")
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    return parts if len(parts) == n else None


def _row_id(text: str) -> Optional[int]:
    if not (text.isascii() and text.isdigit()):
        return None
    value = int(text)
    return value if 0 < value <= MAX_ID else None


def _moment(text: str) -> Optional[datetime]:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    return value if value.tzinfo is not None else None


def decode_id(cursor: str, prefix: str = "") -> Optional[int]:
    """The row id of ``encode(f"{prefix}{id}")``; None for anything else."""
    parts = _parts(cursor, 1)
    if parts is None or not parts[0].startswith(prefix):
        return None
    return _row_id(parts[0][len(prefix):])


def decode_time_id(cursor: str) -> Optional[tuple[datetime, int]]:
    """(created_at, id) of ``encode(created_at.isoformat(), id)``; None for anything else."""
    parts = _parts(cursor, 2)
    if parts is None:
        return None
    at, row_id = _moment(parts[0]), _row_id(parts[1])
    return (at, row_id) if at is not None and row_id is not None else None


def decode_time_key(cursor: str, max_length: int) -> Optional[tuple[datetime, str]]:
    """(created_at, key) of ``encode(created_at.isoformat(), key)`` for a text primary key."""
    parts = _parts(cursor, 2)
    if parts is None:
        return None
    at, key = _moment(parts[0]), parts[1]
    return (at, key) if at is not None and 0 < len(key) <= max_length else None


def required(value: Optional[T]) -> T:
    """The decoded cursor of an API list, or its 422 ``validation_error``."""
    if value is None:
        raise ApiError(422, "validation_error", "The cursor is not one this API gave out.",
                       errors={"cursor": ["Invalid cursor."]})
    return value

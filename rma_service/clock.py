"""The one clock seam: every "now" in the service comes from here, so tests can freeze it."""
from __future__ import annotations

from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Iterator, Optional

_frozen: Optional[datetime] = None


def now() -> datetime:
    return _frozen if _frozen is not None else datetime.now(timezone.utc)


@contextmanager
def frozen(at: datetime) -> Iterator[None]:
    """Freeze ``now()`` at ``at`` (aware UTC) inside the block."""
    global _frozen
    if at.tzinfo is None:
        raise ValueError("freeze the clock with an aware UTC datetime")
    previous, _frozen = _frozen, at.astimezone(timezone.utc)
    try:
        yield
    finally:
        _frozen = previous


def parse_rfc3339(text: str) -> datetime:
    """Parse an RFC 3339 timestamp; a value without offset is refused (ambiguous)."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError("timestamp needs a UTC offset, e.g. 2026-11-25T12:00:00Z")
    return value.astimezone(timezone.utc)


def rfc3339(value: Optional[datetime]) -> Optional[str]:
    if value is None:
        return None
    return value.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")

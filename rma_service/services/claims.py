"""How the scheduler's jobs take work without ever taking the same work twice.

Two kinds of work, two kinds of claim:

* Work that is only database writes (reminders: a ``ReminderSent`` row, an outbox event, a
  mail row, a status change) is done inside ONE transaction that holds the claim. On
  PostgreSQL the rows are taken with ``SELECT … FOR UPDATE SKIP LOCKED``: another scheduler
  skips them, and a process killed at any moment loses its connection, so PostgreSQL rolls
  the whole transaction back and unlocks the rows. On SQLite (one writer at a time) a return
  is taken with a conditional UPDATE, the first statement of its transaction.
  Either way the unique ``reminders_sent.key`` is the final arbiter: a reminder whose key
  exists is never sent again, however many schedulers run.

* Work that talks to the outside world (a webhook POST, an SMTP conversation) cannot sit in a
  transaction. The row is claimed in a short committed transaction by setting
  ``locked_until`` (PostgreSQL: ``SELECT … FOR UPDATE SKIP LOCKED`` then ``UPDATE``; SQLite:
  ``UPDATE … WHERE id = :id AND (locked_until IS NULL OR locked_until < :now)``, rowcount 1 =
  claimed). A claim expires after ``JOB_LEASE_SECONDS``; a scheduler never starts a send
  whose lease could run out before the send's timeout, so a live claim is never stolen.
  Leases are measured on the wall clock (they are about processes being alive), while
  "is it due?" uses the job's ``now`` (which ``run-jobs --now`` may move).
"""
from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import Select, Table, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from ..extensions import db

# Set by the scheduler on SIGTERM/SIGINT: long-running jobs stop between two batches.
STOP = threading.Event()

# A job's run ends after this many seconds even if work is left (the next run continues), so
# that one busy job never starves the others and a shutdown is quick.
MAX_RUN_SECONDS = 50.0


def wallclock() -> datetime:
    """The real time, for leases (never frozen, never replayed)."""
    return datetime.now(timezone.utc)


def is_postgresql() -> bool:
    return db.engine.dialect.name == "postgresql"


class RunBudget:
    """Tells a job's batch loop when to stop: shutdown requested or time used up."""

    def __init__(self, seconds: float = MAX_RUN_SECONDS):
        self.deadline = time.monotonic() + seconds

    def exhausted(self) -> bool:
        return STOP.is_set() or time.monotonic() >= self.deadline


def insert_ignore(table: Table, values: dict[str, Any]):
    """``INSERT … ON CONFLICT DO NOTHING`` for the current dialect. Add ``.returning(id)`` to
    learn whether the row was inserted (rowcount is not reliable with implicit RETURNING)."""
    dialect = postgresql if is_postgresql() else sqlite
    return dialect.insert(table).values(**values).on_conflict_do_nothing()


def _free(table: Table, now_wall: datetime):
    return or_(table.c.locked_until.is_(None), table.c.locked_until < now_wall)


def claim_query(table: Table, candidates: Select, now_wall: datetime, limit: int) -> Select:
    """PostgreSQL's claim: the due rows nobody holds, locked, skipping rows being claimed."""
    return candidates.where(_free(table, now_wall)).limit(limit).with_for_update(of=table, skip_locked=True)


def claim_locked(table: Table, candidates: Select, *, now_wall: datetime, lease: timedelta,
                 limit: int) -> list[int]:
    """Claim up to ``limit`` rows of ``table`` selected by ``candidates`` (a ``select`` of
    ``table.c.id`` with the due conditions, ordered) by setting ``locked_until``, in a short
    transaction committed here. Returns the claimed ids.

    ``candidates`` must not test ``locked_until``: this function adds the lease condition.
    """
    free = _free(table, now_wall)
    until = now_wall + lease
    with db.engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            with conn.begin():
                ids = list(conn.execute(claim_query(table, candidates, now_wall, limit)).scalars())
                if ids:
                    conn.execute(update(table).where(table.c.id.in_(ids)).values(locked_until=until))
            return ids
        # SQLite: the read is outside any transaction; each claim is one atomic conditional UPDATE.
        ids = list(conn.execute(candidates.where(free).limit(limit)).scalars())
        conn.rollback()  # (pysqlite opened no transaction for the read; end SQLAlchemy's)
        claimed: list[int] = []
        with conn.begin():
            for row_id in ids:
                result = conn.execute(update(table).where(table.c.id == row_id, free)
                                      .values(locked_until=until))
                if result.rowcount == 1:
                    claimed.append(row_id)
        return claimed


def release(table: Table, ids: Sequence[int]) -> None:
    """Give claimed rows back without working on them (shutdown, lease too short)."""
    if not ids:
        return
    with db.engine.begin() as conn:
        conn.execute(update(table).where(table.c.id.in_(list(ids))).values(locked_until=None))


def select_ids(table: Table) -> Select:
    return select(table.c.id)

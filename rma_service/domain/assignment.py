"""Choosing a dispute's dedicated handler. Pure: the caller gathers the facts (under a lock)
and applies the answer.

The rule (DESIGN.md, "Dedicated handler"):

1. Only agents who handle disputes, are active, are not away and hold fewer open disputes
   than ``capacity`` are eligible.
2. "One contact": the handler of this customer's earlier dispute, if eligible.
3. Otherwise the eligible agent with the fewest open disputes; ties go to the one assigned
   least recently (never assigned counts as longest ago), then to the lowest id so that the
   answer never depends on the order of the candidates.
4. Nobody eligible → ``None``: the dispute waits in the unassigned queue.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Iterable, Optional


@dataclass(frozen=True)
class HandlerFacts:
    id: int
    active: bool
    away: bool
    handles_disputes: bool
    open_disputes: int
    last_assigned_at: Optional[datetime] = None


def is_eligible(h: HandlerFacts, capacity: int) -> bool:
    return h.handles_disputes and h.active and not h.away and h.open_disputes < capacity


def eligible(candidates: Iterable[HandlerFacts], capacity: int) -> list[HandlerFacts]:
    return [h for h in candidates if is_eligible(h, capacity)]


def _load_order(h: HandlerFacts) -> tuple:
    never = h.last_assigned_at is None
    # Never assigned sorts first; then the oldest assignment; then the lowest id.
    return (h.open_disputes, 0 if never else 1, h.last_assigned_at.timestamp() if not never else 0.0, h.id)


def choose_handler(candidates: list[HandlerFacts], *, previous_handler_id: Optional[int],
                   capacity: int) -> Optional[int]:
    """The id of the agent who should handle the dispute, or ``None`` if nobody can."""
    if capacity < 1:
        raise ValueError("capacity must be at least 1")
    pool = eligible(candidates, capacity)
    if not pool:
        return None
    if previous_handler_id is not None:
        for h in pool:
            if h.id == previous_handler_id:
                return h.id
    return min(pool, key=_load_order).id

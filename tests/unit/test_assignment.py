"""The dedicated-handler rule (domain/assignment.py): every rule, no database."""
from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest

from rma_service.domain.assignment import HandlerFacts, choose_handler, eligible, is_eligible

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)


def h(id_, open_=0, *, last=None, active=True, away=False, disputes=True) -> HandlerFacts:
    return HandlerFacts(id=id_, active=active, away=away, handles_disputes=disputes, open_disputes=open_,
                        last_assigned_at=last)


def choose(candidates, previous=None, capacity=20):
    return choose_handler(candidates, previous_handler_id=previous, capacity=capacity)


# --- "one contact": the customer's earlier handler -----------------------------------------

def test_sticky_earlier_handler_wins_even_when_more_loaded():
    assert choose([h(1, 0), h(2, 7)], previous=2) == 2


def test_sticky_earlier_handler_at_capacity_falls_back_to_least_loaded():
    assert choose([h(1, 3), h(2, 20)], previous=2) == 1


def test_sticky_earlier_handler_away_falls_back():
    assert choose([h(1, 3), h(2, 0, away=True)], previous=2) == 1


def test_sticky_earlier_handler_inactive_falls_back():
    assert choose([h(1, 3), h(2, 0, active=False)], previous=2) == 1


def test_sticky_earlier_handler_no_longer_handling_disputes_falls_back():
    assert choose([h(1, 3), h(2, 0, disputes=False)], previous=2) == 1


def test_sticky_earlier_handler_not_among_candidates_falls_back():
    assert choose([h(1, 3), h(3, 1)], previous=2) == 3


# --- least loaded -------------------------------------------------------------------------

def test_fewest_open_disputes_wins():
    assert choose([h(1, 5), h(2, 2), h(3, 4)]) == 2


def test_fewest_open_disputes_beats_assignment_recency():
    # 2 was assigned a second ago but carries less: the load decides first.
    assert choose([h(1, 3, last=T0 - timedelta(days=30)), h(2, 2, last=T0)]) == 2


def test_tie_goes_to_least_recently_assigned():
    assert choose([h(1, 2, last=T0), h(2, 2, last=T0 - timedelta(hours=1)), h(3, 2, last=T0 - timedelta(minutes=5))]) == 2


def test_tie_never_assigned_goes_first():
    assert choose([h(1, 0, last=T0 - timedelta(days=365)), h(2, 0, last=None)]) == 2


def test_tie_on_everything_goes_to_lowest_id():
    assert choose([h(9, 1, last=T0), h(4, 1, last=T0), h(7, 1, last=T0)]) == 4
    assert choose([h(9, 0), h(4, 0), h(7, 0)]) == 4


def test_answer_does_not_depend_on_candidate_order():
    pool = [h(1, 2, last=T0), h(2, 2, last=T0 - timedelta(hours=2)), h(3, 1, last=T0), h(4, 1, last=T0),
            h(5, 0, away=True), h(6, 1, last=None)]
    rng = random.Random(6)
    answers = set()
    for _ in range(50):
        rng.shuffle(pool)
        answers.add(choose(list(pool)))
    assert answers == {6}


def test_repeated_assignment_spreads_evenly():
    """Applying the rule over and over (as the service does) keeps loads within one."""
    loads = {1: 0, 2: 0, 3: 0}
    last: dict[int, datetime | None] = {1: None, 2: None, 3: None}
    for n in range(50):
        chosen = choose([h(i, loads[i], last=last[i]) for i in loads])
        loads[chosen] += 1
        last[chosen] = T0 + timedelta(seconds=n)
    assert sorted(loads.values()) == [16, 17, 17]


# --- capacity -----------------------------------------------------------------------------

def test_at_capacity_is_not_eligible():
    assert choose([h(1, 20), h(2, 19)], capacity=20) == 2
    assert choose([h(1, 20), h(2, 20)], capacity=20) is None


def test_over_capacity_is_not_eligible():
    assert choose([h(1, 25)], capacity=20) is None


def test_capacity_of_one():
    assert choose([h(1, 0)], capacity=1) == 1
    assert choose([h(1, 1)], capacity=1) is None


def test_capacity_below_one_is_a_programming_error():
    with pytest.raises(ValueError):
        choose([h(1, 0)], capacity=0)


# --- who is a candidate at all -----------------------------------------------------------

def test_away_is_skipped():
    assert choose([h(1, 0, away=True), h(2, 9)]) == 2


def test_inactive_is_skipped():
    assert choose([h(1, 0, active=False), h(2, 9)]) == 2


def test_non_handler_is_skipped():
    assert choose([h(1, 0, disputes=False), h(2, 9)]) == 2


@pytest.mark.parametrize("candidates", [
    [],
    [h(1, 0, away=True)],
    [h(1, 0, active=False)],
    [h(1, 0, disputes=False)],
    [h(1, 20)],
    [h(1, 0, away=True), h(2, 0, active=False), h(3, 0, disputes=False), h(4, 20)],
], ids=["nobody", "away", "inactive", "non-handler", "full", "all-reasons"])
def test_nobody_available(candidates):
    assert choose(candidates) is None
    assert choose(candidates, previous=1) is None


def test_eligible_helpers():
    assert is_eligible(h(1, 19), 20) and not is_eligible(h(1, 20), 20)
    assert [x.id for x in eligible([h(1), h(2, away=True), h(3)], 20)] == [1, 3]

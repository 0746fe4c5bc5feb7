"""The return state machine against the contract's table ("Return statuses and moves").

The expected table is written out here from CONTRACT.md, independently of ``TRANSITIONS``,
so that a wrong entry in the module makes these tests fail.
"""
from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rma_service.domain import DomainError
from rma_service.domain.status import (
    CUSTOMER_CANCELLABLE,
    FINAL,
    OPEN,
    RELEASES_UNITS,
    STATUSES,
    TRANSITIONS,
    InvalidTransition,
    allowed_actions,
    can,
    is_final,
    next_status,
)

# --- the contract, written out ---------------------------------------------------------------

CONTRACT_STATUSES = frozenset({
    "requested", "authorized", "in_transit", "received", "disputed", "inspected",
    "rejected", "cancelled", "expired", "refunded", "closed",
})
CONTRACT_FINAL = frozenset({"rejected", "cancelled", "expired", "refunded", "closed"})

# The action vocabulary (service functions, audit events, API paths, admin buttons).
ACTIONS = ("approve", "reject", "cancel", "ship", "receive", "expire", "inspect", "dispute",
           "resolve", "refund", "close")

# (from, action, to): every row of the contract's table, one move per line.
LEGAL_MOVES = [
    ("requested", "approve", "authorized"),
    ("requested", "reject", "rejected"),
    ("requested", "cancel", "cancelled"),
    ("authorized", "ship", "in_transit"),      # first carrier scan
    ("authorized", "receive", "received"),
    ("authorized", "cancel", "cancelled"),
    ("authorized", "expire", "expired"),       # label unused too long
    ("in_transit", "receive", "received"),
    ("received", "inspect", "inspected"),      # every received item triaged, no dispute
    ("received", "dispute", "disputed"),       # an item disputed
    ("disputed", "resolve", "inspected"),      # dispute resolved
    ("inspected", "refund", "refunded"),       # refund recorded for the amount due
    ("inspected", "close", "closed"),          # exchange, store credit or nothing due
]
LEGAL_PAIRS = {(frm, action) for frm, action, _ in LEGAL_MOVES}
ILLEGAL_PAIRS = sorted(set(itertools.product(sorted(CONTRACT_STATUSES), ACTIONS)) - LEGAL_PAIRS)

# The "from → to" pairs of the contract, without the action names.
CONTRACT_EDGES = {
    ("requested", "authorized"), ("requested", "rejected"), ("requested", "cancelled"),
    ("authorized", "in_transit"), ("authorized", "received"), ("authorized", "cancelled"),
    ("authorized", "expired"),
    ("in_transit", "received"),
    ("received", "inspected"), ("received", "disputed"),
    ("disputed", "inspected"),
    ("inspected", "refunded"), ("inspected", "closed"),
}

EXPECTED_ALLOWED = {
    "requested": {"approve", "reject", "cancel"},
    "authorized": {"ship", "receive", "cancel", "expire"},
    "in_transit": {"receive"},
    "received": {"inspect", "dispute"},
    "disputed": {"resolve"},
    "inspected": {"refund", "close"},
    "rejected": set(),
    "cancelled": set(),
    "expired": set(),
    "refunded": set(),
    "closed": set(),
}


def test_the_written_out_table_is_self_consistent():
    """Guards the test data itself: the moves match the contract's from → to pairs."""
    assert {(frm, to) for frm, _, to in LEGAL_MOVES} == CONTRACT_EDGES
    assert len(LEGAL_MOVES) == len(LEGAL_PAIRS)  # no (status, action) listed twice
    assert set(EXPECTED_ALLOWED) == CONTRACT_STATUSES
    for status, actions in EXPECTED_ALLOWED.items():
        assert actions == {a for frm, a, _ in LEGAL_MOVES if frm == status}


# --- statuses ---------------------------------------------------------------------------------

def test_statuses_are_exactly_the_contract_statuses():
    assert set(STATUSES) == CONTRACT_STATUSES
    assert len(STATUSES) == len(CONTRACT_STATUSES)  # no duplicates


def test_final_and_open_statuses():
    assert FINAL == CONTRACT_FINAL
    assert OPEN == CONTRACT_STATUSES - CONTRACT_FINAL
    assert not OPEN & FINAL


@pytest.mark.parametrize("status", sorted(CONTRACT_STATUSES))
def test_is_final(status):
    assert is_final(status) is (status in CONTRACT_FINAL)


# --- legal moves ------------------------------------------------------------------------------

@pytest.mark.parametrize("frm,action,to", LEGAL_MOVES, ids=[f"{f}-{a}" for f, a, _ in LEGAL_MOVES])
def test_every_legal_move_of_the_contract(frm, action, to):
    assert next_status(frm, action) == to
    assert can(frm, action) is True
    assert action in allowed_actions(frm)


def test_transitions_hold_exactly_the_contract_moves():
    """Nothing more than the contract: every (from, action, to) in TRANSITIONS is in the table."""
    actual = {(frm, action, to) for action, moves in TRANSITIONS.items()
              for frm, to in moves.items()}
    assert actual == set(LEGAL_MOVES)
    assert set(TRANSITIONS) == set(ACTIONS)


def test_every_status_reachable_from_requested():
    reachable, frontier = {"requested"}, ["requested"]
    while frontier:
        status = frontier.pop()
        for action in allowed_actions(status):
            to = next_status(status, action)
            if to not in reachable:
                reachable.add(to)
                frontier.append(to)
    assert reachable == CONTRACT_STATUSES


def test_every_open_status_can_end_in_a_final_status():
    for start in CONTRACT_STATUSES - CONTRACT_FINAL:
        seen, frontier = {start}, [start]
        while frontier:
            status = frontier.pop()
            for action in allowed_actions(status):
                to = next_status(status, action)
                if to not in seen:
                    seen.add(to)
                    frontier.append(to)
        assert seen & CONTRACT_FINAL, start


# --- illegal moves ----------------------------------------------------------------------------

def test_there_are_illegal_pairs_to_check():
    assert len(ILLEGAL_PAIRS) == len(CONTRACT_STATUSES) * len(ACTIONS) - len(LEGAL_MOVES)


@pytest.mark.parametrize("status,action", ILLEGAL_PAIRS, ids=[f"{s}-{a}" for s, a in ILLEGAL_PAIRS])
def test_every_illegal_pair_raises_invalid_transition(status, action):
    assert can(status, action) is False
    assert action not in allowed_actions(status)
    with pytest.raises(InvalidTransition) as excinfo:
        next_status(status, action)
    err = excinfo.value
    assert err.code == "invalid_transition"
    assert err.status == status
    assert err.action == action
    assert err.extra == {"status": status, "action": action}
    assert isinstance(err, DomainError)
    assert action in err.detail and status in err.detail


@pytest.mark.parametrize("status", sorted(CONTRACT_FINAL))
@pytest.mark.parametrize("action", ACTIONS)
def test_final_statuses_allow_nothing(status, action):
    assert allowed_actions(status) == []
    assert can(status, action) is False
    with pytest.raises(InvalidTransition) as excinfo:
        next_status(status, action)
    assert "final status" in excinfo.value.detail


@pytest.mark.parametrize("status,action", [
    ("requested", "unknown_action"),
    ("requested", ""),
    ("no_such_status", "approve"),
    ("REQUESTED", "approve"),      # status names are case-sensitive
    ("requested", "APPROVE"),
    ("authorized", "authorized"),  # a status is not an action
])
def test_unknown_status_or_action_raises_invalid_transition(status, action):
    assert can(status, action) is False
    with pytest.raises(InvalidTransition) as excinfo:
        next_status(status, action)
    assert excinfo.value.code == "invalid_transition"


def test_invalid_transition_class_code():
    assert InvalidTransition.code == "invalid_transition"
    assert issubclass(InvalidTransition, DomainError)


def test_invalid_transition_message_lists_allowed_actions():
    with pytest.raises(InvalidTransition) as excinfo:
        next_status("in_transit", "approve")
    assert "receive" in excinfo.value.detail
    assert str(excinfo.value) == excinfo.value.detail


# --- allowed_actions per status ---------------------------------------------------------------

@pytest.mark.parametrize("status", sorted(CONTRACT_STATUSES))
def test_allowed_actions_per_status(status):
    actions = allowed_actions(status)
    assert set(actions) == EXPECTED_ALLOWED[status]
    assert len(actions) == len(set(actions))
    for action in actions:
        assert next_status(status, action) in CONTRACT_STATUSES


def test_allowed_actions_of_unknown_status_is_empty():
    assert allowed_actions("no_such_status") == []


# --- customer cancellation and released units -------------------------------------------------

def test_customer_cancellable_is_before_shipping():
    assert CUSTOMER_CANCELLABLE == frozenset({"requested", "authorized"})


@pytest.mark.parametrize("status", sorted(CONTRACT_STATUSES))
def test_customer_cancellable_agrees_with_the_cancel_move(status):
    assert (status in CUSTOMER_CANCELLABLE) is can(status, "cancel")


def test_releases_units():
    assert RELEASES_UNITS == frozenset({"rejected", "cancelled", "expired"})
    # Only final statuses release units; refunded and closed returns keep them (they came back).
    assert RELEASES_UNITS <= CONTRACT_FINAL
    assert "refunded" not in RELEASES_UNITS and "closed" not in RELEASES_UNITS
    assert not RELEASES_UNITS & (CONTRACT_STATUSES - CONTRACT_FINAL)


# --- random walks -----------------------------------------------------------------------------

@settings(max_examples=300)
@given(st.lists(st.sampled_from(ACTIONS), max_size=30))
def test_random_walk_follows_the_contract(actions):
    """Any sequence of attempted actions: a legal one moves as the table says, an illegal one
    raises and leaves the status as it was; nothing ever leaves a final status."""
    table = {(frm, action): to for frm, action, to in LEGAL_MOVES}
    status = "requested"
    for action in actions:
        expected = table.get((status, action))
        if expected is None:
            with pytest.raises(InvalidTransition):
                next_status(status, action)
        else:
            assert status not in CONTRACT_FINAL
            status = next_status(status, action)
            assert status == expected
        assert status in CONTRACT_STATUSES

"""Tracking statuses: carrier words → normalised statuses, and statuses never move backwards."""
from __future__ import annotations

import ast
import itertools
from pathlib import Path

import pytest

from rma_service.domain import tracking
from rma_service.domain.tracking import (
    DELIVERED,
    FAILURE,
    IN_TRANSIT,
    OUT_FOR_DELIVERY,
    PRE_TRANSIT,
    RANK,
    RETURNED_TO_SENDER,
    STATUSES,
    advances,
    is_first_scan,
    normalise,
)


@pytest.mark.parametrize(("raw", "expected"), [
    ("label_created", PRE_TRANSIT),
    ("info_received", PRE_TRANSIT),
    ("InfoReceived", PRE_TRANSIT),           # AfterShip tags are CamelCase
    ("pre_transit", PRE_TRANSIT),            # EasyPost words are already ours
    ("accepted", IN_TRANSIT),
    ("picked_up", IN_TRANSIT),
    ("in_transit", IN_TRANSIT),
    ("transit", IN_TRANSIT),
    ("IN TRANSIT", IN_TRANSIT),
    ("In-Transit", IN_TRANSIT),
    ("  in_transit \n", IN_TRANSIT),
    ("AttemptFail", IN_TRANSIT),             # still with the carrier
    ("Pris en charge", IN_TRANSIT),
    ("out_for_delivery", OUT_FOR_DELIVERY),
    ("OutForDelivery", OUT_FOR_DELIVERY),
    ("available_for_pickup", OUT_FOR_DELIVERY),
    ("En cours de livraison", OUT_FOR_DELIVERY),
    ("delivered", DELIVERED),
    ("DELIVERED", DELIVERED),
    ("Livré", DELIVERED),
    ("return_to_sender", RETURNED_TO_SENDER),
    ("returned_to_sender", RETURNED_TO_SENDER),
    ("Retour à l'expéditeur", RETURNED_TO_SENDER),
    ("failure", FAILURE),
    ("lost", FAILURE),
    ("undeliverable", FAILURE),
])
def test_normalise_maps_carrier_vocabularies(raw: str, expected: str) -> None:
    assert normalise(raw) == expected


@pytest.mark.parametrize("raw", ["", "   ", "exception", "alert", "banana", "in_transit_soon",
                                 "delivered?!maybe"])
def test_normalise_returns_none_for_unknown_or_ambiguous_words(raw: str) -> None:
    assert normalise(raw) is None


def test_every_normalised_status_normalises_to_itself_and_has_a_rank() -> None:
    assert set(RANK) == set(STATUSES)
    for status in STATUSES:
        assert normalise(status) == status


def test_the_happy_path_advances_step_by_step() -> None:
    path = [PRE_TRANSIT, IN_TRANSIT, OUT_FOR_DELIVERY, DELIVERED]
    current = None
    for status in path:
        assert advances(current, status)
        current = status


def test_skipping_steps_is_an_advance() -> None:
    assert advances(None, DELIVERED)
    assert advances(PRE_TRANSIT, DELIVERED)
    assert advances(PRE_TRANSIT, OUT_FOR_DELIVERY)
    assert advances(IN_TRANSIT, RETURNED_TO_SENDER)


@pytest.mark.parametrize("status", STATUSES)
def test_a_duplicate_is_not_an_advance(status: str) -> None:
    assert not advances(status, status)


@pytest.mark.parametrize(("current", "late"), [
    (IN_TRANSIT, PRE_TRANSIT),
    (OUT_FOR_DELIVERY, IN_TRANSIT),
    (OUT_FOR_DELIVERY, PRE_TRANSIT),
    (FAILURE, OUT_FOR_DELIVERY),
    (FAILURE, IN_TRANSIT),
])
def test_an_event_arriving_out_of_order_never_moves_backwards(current: str, late: str) -> None:
    assert not advances(current, late)


@pytest.mark.parametrize(("final", "new"), [
    (final, new) for final in (DELIVERED, RETURNED_TO_SENDER) for new in STATUSES
])
def test_nothing_moves_a_parcel_after_delivered_or_returned_to_sender(final: str,
                                                                      new: str) -> None:
    assert not advances(final, new)


def test_failure_can_still_end_delivered_or_returned_to_sender() -> None:
    assert advances(IN_TRANSIT, FAILURE)
    assert advances(OUT_FOR_DELIVERY, FAILURE)
    assert advances(FAILURE, DELIVERED)
    assert advances(FAILURE, RETURNED_TO_SENDER)


def test_advances_is_a_strict_order_without_cycles() -> None:
    for a, b in itertools.permutations(STATUSES, 2):
        assert not (advances(a, b) and advances(b, a)), (a, b)


def test_replaying_events_in_any_order_never_ends_before_the_furthest_status() -> None:
    events = [PRE_TRANSIT, IN_TRANSIT, OUT_FOR_DELIVERY, DELIVERED]
    for order in itertools.permutations(events):
        current = None
        for status in order:
            if advances(current, status):
                current = status
        assert current == DELIVERED, order


@pytest.mark.parametrize(("status", "expected"), [
    (None, False),
    (PRE_TRANSIT, False),
    (IN_TRANSIT, True),
    (OUT_FOR_DELIVERY, True),
    (DELIVERED, True),
    (RETURNED_TO_SENDER, True),
    (FAILURE, True),
])
def test_is_first_scan_from_in_transit_onward(status: str | None, expected: bool) -> None:
    assert is_first_scan(status) is expected


@pytest.mark.parametrize("call", [
    lambda: advances(None, "accepted"),
    lambda: advances("accepted", IN_TRANSIT),
    lambda: is_first_scan("picked_up"),
])
def test_raw_carrier_words_must_be_normalised_first(call: object) -> None:
    with pytest.raises(ValueError, match="not a normalised tracking status"):
        call()  # type: ignore[operator]


def test_the_module_stays_pure() -> None:
    tree = ast.parse(Path(tracking.__file__).read_text(encoding="utf-8"))
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.Import) for alias in node.names}
    imported |= {(node.module or "").split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom)}
    assert imported <= {"__future__", "re", "unicodedata", "typing"}, imported

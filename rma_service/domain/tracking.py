"""Parcel tracking statuses: one vocabulary for every carrier, and the rule that they never go back.

Normalised statuses and how they may follow each other (skipping steps is fine)::

    pre_transit → in_transit → out_for_delivery ─┬→ delivered
                                                 ├→ returned_to_sender
                                                 └→ failure → delivered | returned_to_sender

``pre_transit``        the label exists, the carrier does not have the parcel yet.
``in_transit``         the carrier has the parcel (accepted, picked up, moving, held, …).
``out_for_delivery``   on the van, or waiting at a pick-up point, for the warehouse.
``delivered``          delivered to the warehouse. Final.
``failure``            the carrier had the parcel and cannot deliver it (lost, destroyed,
                       undeliverable). Final except for the two real endings: a parcel declared
                       lost can still turn up ``delivered``, or go ``returned_to_sender``.
``returned_to_sender`` on its way back to, or back with, the customer. Final: a later
                       "delivered" from the carrier means delivered to the customer, not to us.

``advances(current, new)`` is true only when ``new`` moves the parcel forward: higher in ``RANK``
than ``current`` and ``current`` not final. Duplicates, events that arrive out of order and
anything after an ending are therefore ignored, never applied backwards.

``is_first_scan(status)`` tells whether a status proves the carrier has (or had) the parcel:
every status but ``pre_transit``. The first such event is the proof of shipment (the "evidence
date" of the refund deadline).

Generic "exception" or "alert" events say nothing reliable about where the parcel is, so
``normalise`` returns None for them, as for any word it does not know; the caller keeps the
raw event for the audit trail and moves nothing.
"""
from __future__ import annotations

import re
import unicodedata
from typing import Final

PRE_TRANSIT: Final = "pre_transit"
IN_TRANSIT: Final = "in_transit"
OUT_FOR_DELIVERY: Final = "out_for_delivery"
DELIVERED: Final = "delivered"
RETURNED_TO_SENDER: Final = "returned_to_sender"
FAILURE: Final = "failure"

STATUSES: Final = (PRE_TRANSIT, IN_TRANSIT, OUT_FOR_DELIVERY, DELIVERED, RETURNED_TO_SENDER,
                   FAILURE)

# Higher = further along. failure sits below both endings it can still lead to.
RANK: Final[dict[str, int]] = {
    PRE_TRANSIT: 0,
    IN_TRANSIT: 1,
    OUT_FOR_DELIVERY: 2,
    FAILURE: 3,
    RETURNED_TO_SENDER: 4,
    DELIVERED: 4,
}

# Statuses after which nothing is applied any more.
FINAL: Final = frozenset({DELIVERED, RETURNED_TO_SENDER})

# Carrier words, already reduced by _key() (lower case, no accents, words joined by "_").
# Covers the generic aggregator vocabularies (EasyPost, AfterShip, Shippo), the usual
# English wording of national carriers and the French one of La Poste / Colissimo and
# Mondial Relay.
_VOCABULARY: Final[dict[str, str]] = {
    **dict.fromkeys((
        "pre_transit", "label_created", "label_printed", "info_received",
        "information_received", "shipment_information_received", "created", "pending",
        "manifested", "awaiting_pickup",
        "etiquette_creee", "colis_annonce", "en_attente_de_depot",
    ), PRE_TRANSIT),
    **dict.fromkeys((
        "in_transit", "transit", "accepted", "picked_up", "collected", "dropped_off",
        "received_by_carrier", "departed", "arrived", "arrived_at_facility", "processed",
        "sorted", "shipped", "on_the_way", "in_customs", "customs_cleared", "held",
        "attempt_fail", "attempt_failed", "delivery_attempt_failed",
        "delivery_attempted", "rescheduled",
        "pris_en_charge", "depose", "en_cours_d_acheminement", "en_transit", "achemine",
        "arrive_sur_le_site", "tentative_de_livraison",
    ), IN_TRANSIT),
    **dict.fromkeys((
        "out_for_delivery", "with_delivery_courier", "on_vehicle_for_delivery",
        "available_for_pickup", "ready_for_pickup", "awaiting_collection",
        "en_cours_de_livraison", "en_livraison", "disponible_en_point_de_retrait",
        "disponible_en_relais",
    ), OUT_FOR_DELIVERY),
    **dict.fromkeys((
        "delivered", "delivery_confirmed", "livre", "distribue", "livre_au_destinataire",
    ), DELIVERED),
    **dict.fromkeys((
        "returned_to_sender", "return_to_sender", "returned", "returning_to_sender", "rts",
        "retour_a_l_expediteur", "retourne_a_l_expediteur", "renvoye_a_l_expediteur",
    ), RETURNED_TO_SENDER),
    **dict.fromkeys((
        "failure", "failed", "lost", "destroyed", "undeliverable", "delivery_failed",
        "perdu", "detruit", "non_distribuable", "non_livrable",
    ), FAILURE),
}


def normalise(raw: str) -> str | None:
    """The normalised status for a carrier's status word, or None when it is not known.

    Case, accents, spaces, hyphens, dots and CamelCase are ignored: ``"InTransit"``,
    ``"IN TRANSIT"``, ``"in-transit"`` and ``"in_transit"`` are the same word.
    """
    return _VOCABULARY.get(_key(raw))


def advances(current: str | None, new: str) -> bool:
    """Whether ``new`` moves a parcel now at ``current`` (None: no event yet) forward.

    Raises ValueError when either is not a normalised status (normalise first).
    """
    _check(new)
    if current is None:
        return True
    _check(current)
    return current not in FINAL and RANK[new] > RANK[current]


def is_first_scan(status: str | None) -> bool:
    """Whether ``status`` proves the carrier has or had the parcel (proof of shipment).

    Every status from ``in_transit`` onward counts, the endings included; ``pre_transit`` and
    None do not. Raises ValueError for a string that is not a normalised status.
    """
    if status is None:
        return False
    _check(status)
    return status != PRE_TRANSIT


def _check(status: str) -> None:
    if status not in RANK:
        raise ValueError(f"not a normalised tracking status: {status!r}")


def _key(raw: str) -> str:
    """``"Arrivé sur le site"`` → ``"arrive_sur_le_site"``; ``"OutForDelivery"`` → ``"out_for_delivery"``."""
    text = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", raw.strip())  # split CamelCase
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")

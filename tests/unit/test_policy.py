"""The return policy (DESIGN.md "Domain notes", CONTRACT.md "Orders" and "Returns"):
eligibility of order lines, requested quantities, fees, approval and the amount due.

Money is Decimal everywhere; ``assert_money`` checks the exact value *and* the two decimal
places (``Decimal("0") == Decimal("0.00")`` would hide a missing quantize).
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rma_service.domain import DomainError
from rma_service.domain.policy import (
    INELIGIBILITY_REASONS,
    REASONS,
    SHOP_FAULT_REASONS,
    Eligibility,
    ItemProblem,
    LineFacts,
    Policy,
    RequestedItem,
    amount_due,
    check_items,
    line_eligibility,
    money,
    quote,
    return_deadline,
)

UTC = timezone.utc
D = Decimal
DELIVERED = datetime(2026, 10, 26, 14, 30, tzinfo=UTC)
WINDOW_END = DELIVERED + timedelta(days=30)
NOW = datetime(2026, 11, 5, 9, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)

# From DESIGN.md: the shop pays for these; the customer for every other reason.
SHOP_REASONS = ("damaged", "defective", "wrong_item", "not_as_described")
CUSTOMER_REASONS = ("too_small", "too_large", "changed_mind", "arrived_late", "other")


def assert_money(actual, expected: str) -> None:
    assert isinstance(actual, Decimal), type(actual)
    assert actual == Decimal(expected), (actual, expected)
    assert str(actual) == expected, (str(actual), expected)


def item(line_id="L1", quantity=1, reason="changed_mind", unit_price="10.00", comment=None):
    return RequestedItem(line_id=line_id, quantity=quantity, reason=reason,
                         unit_price=Decimal(unit_price), comment=comment)


def eligible(line: LineFacts, now=NOW, delivered_at=DELIVERED, policy=Policy()) -> Eligibility:
    return line_eligibility(line, delivered_at, now, policy)


def test_reason_vocabulary_matches_the_contract():
    assert set(REASONS) == set(SHOP_REASONS) | set(CUSTOMER_REASONS)
    assert len(REASONS) == 9
    assert SHOP_FAULT_REASONS == frozenset(SHOP_REASONS)
    assert set(INELIGIBILITY_REASONS) == {"window_expired", "not_returnable", "not_delivered",
                                          "already_returned"}


def test_policy_defaults():
    policy = Policy()
    assert policy.window_days == 30
    assert policy.non_returnable_categories == frozenset()
    assert_money(money(policy.shipping_fee), "0.00")
    assert policy.restocking_fee_rate == 0
    assert policy.approval_threshold == Decimal("500")
    assert set(policy.resolutions) == {"refund", "exchange", "store_credit"}


# --- return window ----------------------------------------------------------------------------

def test_return_deadline():
    assert return_deadline(DELIVERED, Policy()) == DELIVERED + timedelta(days=30)
    assert return_deadline(DELIVERED, Policy(window_days=14)) == DELIVERED + timedelta(days=14)
    assert return_deadline(None, Policy()) is None


def test_window_boundary_exactly_at_delivery_plus_30_days_is_eligible():
    assert eligible(LineFacts(quantity=2), now=WINDOW_END) == Eligibility(True, None, 2)


def test_window_one_second_later_is_expired():
    assert eligible(LineFacts(quantity=2), now=WINDOW_END + SECOND) == \
        Eligibility(False, "window_expired", 0)


def test_window_one_microsecond_later_is_expired():
    result = eligible(LineFacts(quantity=2), now=WINDOW_END + timedelta(microseconds=1))
    assert result.reason_code == "window_expired"


def test_window_one_second_before_is_eligible():
    assert eligible(LineFacts(quantity=1), now=WINDOW_END - SECOND).eligible is True


def test_right_at_delivery_is_eligible():
    assert eligible(LineFacts(quantity=1), now=DELIVERED).eligible is True


def test_window_compares_instants_across_time_zones():
    paris = timezone(timedelta(hours=1))
    # The same instant as WINDOW_END written in UTC+1, and one second later.
    assert eligible(LineFacts(quantity=1), now=WINDOW_END.astimezone(paris)).eligible is True
    assert eligible(LineFacts(quantity=1),
                    now=(WINDOW_END + SECOND).astimezone(paris)).reason_code == "window_expired"


@pytest.mark.parametrize("window_days", [0, 1, 14, 30, 60])
def test_window_follows_the_policy_setting(window_days):
    policy = Policy(window_days=window_days)
    end = DELIVERED + timedelta(days=window_days)
    assert eligible(LineFacts(quantity=1), now=end, policy=policy).eligible is True
    assert eligible(LineFacts(quantity=1), now=end + SECOND, policy=policy).reason_code == \
        "window_expired"


# --- reasons ----------------------------------------------------------------------------------

def test_not_delivered():
    assert eligible(LineFacts(quantity=3), delivered_at=None) == Eligibility(False, "not_delivered", 0)


def test_not_returnable_by_flag():
    assert eligible(LineFacts(quantity=3, returnable=False)) == Eligibility(False, "not_returnable", 0)


@pytest.mark.parametrize("returnable", [True, None])
def test_returnable_flag_true_or_absent_is_eligible(returnable):
    assert eligible(LineFacts(quantity=3, returnable=returnable)) == Eligibility(True, None, 3)


def test_not_returnable_by_category():
    policy = Policy(non_returnable_categories=frozenset({"underwear", "gift_card"}))
    assert eligible(LineFacts(quantity=1, category="underwear"), policy=policy) == \
        Eligibility(False, "not_returnable", 0)
    assert eligible(LineFacts(quantity=1, category="gift_card"), policy=policy).reason_code == \
        "not_returnable"


def test_other_or_missing_category_is_eligible():
    policy = Policy(non_returnable_categories=frozenset({"underwear"}))
    assert eligible(LineFacts(quantity=1, category="shoes"), policy=policy).eligible is True
    assert eligible(LineFacts(quantity=1, category=None), policy=policy).eligible is True
    # Categories compare exactly.
    assert eligible(LineFacts(quantity=1, category="underwear-kids"), policy=policy).eligible is True


def test_a_category_is_returnable_when_the_policy_lists_none():
    assert eligible(LineFacts(quantity=1, category="underwear")).eligible is True


# --- precedence: the first rule that fails is the reason ---------------------------------------

EXPIRED = WINDOW_END + timedelta(days=5)
NON_RETURNABLE = Policy(non_returnable_categories=frozenset({"hygiene"}))


@pytest.mark.parametrize("line,delivered_at,now,policy,reason", [
    # not_returnable beats everything else: a final-sale item says so even after the window.
    (LineFacts(1, returnable=False), DELIVERED, EXPIRED, Policy(), "not_returnable"),
    (LineFacts(1, returnable=False), None, NOW, Policy(), "not_returnable"),
    (LineFacts(1, reserved_quantity=1, returnable=False), DELIVERED, NOW, Policy(), "not_returnable"),
    (LineFacts(1, reserved_quantity=1, returnable=False), None, EXPIRED, Policy(), "not_returnable"),
    (LineFacts(1, category="hygiene"), DELIVERED, EXPIRED, NON_RETURNABLE, "not_returnable"),
    (LineFacts(1, category="hygiene"), None, NOW, NON_RETURNABLE, "not_returnable"),
    (LineFacts(1, 1, category="hygiene"), DELIVERED, NOW, NON_RETURNABLE, "not_returnable"),
    # not_delivered beats already_returned (and the window cannot start without a delivery).
    (LineFacts(1, reserved_quantity=1), None, NOW, Policy(), "not_delivered"),
    (LineFacts(1, reserved_quantity=1), None, EXPIRED, Policy(), "not_delivered"),
    # window_expired beats already_returned.
    (LineFacts(1, reserved_quantity=1), DELIVERED, EXPIRED, Policy(), "window_expired"),
    (LineFacts(1, reserved_quantity=1), DELIVERED, NOW, Policy(), "already_returned"),
])
def test_precedence_of_reasons(line, delivered_at, now, policy, reason):
    assert line_eligibility(line, delivered_at, now, policy) == Eligibility(False, reason, 0)


# --- reservations -----------------------------------------------------------------------------

@pytest.mark.parametrize("quantity,reserved,left", [
    (1, 0, 1),
    (5, 0, 5),
    (5, 1, 4),
    (5, 4, 1),
])
def test_returnable_quantity_counts_reservations(quantity, reserved, left):
    assert eligible(LineFacts(quantity=quantity, reserved_quantity=reserved)) == \
        Eligibility(True, None, left)


@pytest.mark.parametrize("quantity,reserved", [(1, 1), (5, 5), (3, 4), (0, 0)])
def test_already_returned_when_nothing_is_left(quantity, reserved):
    assert eligible(LineFacts(quantity=quantity, reserved_quantity=reserved)) == \
        Eligibility(False, "already_returned", 0)


@settings(max_examples=300)
@given(quantity=st.integers(0, 50), reserved=st.integers(0, 60), returnable=st.sampled_from([True, False, None]),
       delivered=st.booleans(), days_after=st.integers(0, 60))
def test_eligibility_invariants(quantity, reserved, returnable, delivered, days_after):
    delivered_at = DELIVERED if delivered else None
    now = DELIVERED + timedelta(days=days_after)
    result = line_eligibility(LineFacts(quantity, reserved, returnable=returnable),
                              delivered_at, now, Policy())
    assert (result.reason_code is None) is result.eligible
    assert result.reason_code is None or result.reason_code in INELIGIBILITY_REASONS
    if result.eligible:
        assert result.returnable_quantity == quantity - reserved > 0
    else:
        assert result.returnable_quantity == 0
    assert 0 <= result.returnable_quantity <= max(quantity, 0)


# --- check_items ------------------------------------------------------------------------------

def _lines(**eligibilities: Eligibility) -> dict[str, tuple[LineFacts, Eligibility]]:
    return {line_id: (LineFacts(quantity=max(e.returnable_quantity, 1)), e)
            for line_id, e in eligibilities.items()}


OK3 = Eligibility(True, None, 3)
OK1 = Eligibility(True, None, 1)


def test_check_items_accepts_what_is_left():
    lines = _lines(L1=OK3, L2=OK1)
    assert check_items([item("L1", 3), item("L2", 1)], lines) is None
    assert check_items([item("L1", 1)], lines) is None
    assert check_items([], lines) is None


@pytest.mark.parametrize("reason", ["window_expired", "not_returnable", "not_delivered"])
def test_check_items_not_eligible(reason):
    lines = _lines(L1=OK3, L2=Eligibility(False, reason, 0))
    with pytest.raises(ItemProblem) as excinfo:
        check_items([item("L1", 1), item("L2", 1)], lines)
    err = excinfo.value
    assert err.code == "not_eligible"
    assert err.problems == {1: {"line_id": "L2", "reason_code": reason}}
    assert err.extra == {"problems": err.problems}
    assert isinstance(err, DomainError)


def test_check_items_reports_every_ineligible_item():
    lines = _lines(L1=Eligibility(False, "window_expired", 0), L2=OK3,
                   L3=Eligibility(False, "not_returnable", 0))
    with pytest.raises(ItemProblem) as excinfo:
        check_items([item("L1"), item("L2"), item("L3")], lines)
    assert excinfo.value.problems == {
        0: {"line_id": "L1", "reason_code": "window_expired"},
        2: {"line_id": "L3", "reason_code": "not_returnable"},
    }


def test_check_items_quantity_exceeded():
    lines = _lines(L1=OK3)
    with pytest.raises(ItemProblem) as excinfo:
        check_items([item("L1", 4)], lines)
    err = excinfo.value
    assert err.code == "quantity_exceeded"
    assert err.problems == {0: {"line_id": "L1", "requested": 4, "returnable_quantity": 3}}


def test_check_items_duplicate_lines_are_summed():
    lines = _lines(L1=OK3, L2=OK1)
    assert check_items([item("L1", 1), item("L1", 2)], lines) is None   # 3 of 3
    with pytest.raises(ItemProblem) as excinfo:
        check_items([item("L1", 2), item("L2", 1), item("L1", 2)], lines)  # 4 of 3
    assert excinfo.value.code == "quantity_exceeded"
    assert excinfo.value.problems == {
        2: {"line_id": "L1", "requested": 4, "returnable_quantity": 3},
    }


def test_check_items_duplicate_lines_every_item_past_the_limit_is_reported():
    lines = _lines(L1=OK1)
    with pytest.raises(ItemProblem) as excinfo:
        check_items([item("L1", 1), item("L1", 1), item("L1", 1)], lines)
    assert excinfo.value.problems == {
        1: {"line_id": "L1", "requested": 2, "returnable_quantity": 1},
        2: {"line_id": "L1", "requested": 3, "returnable_quantity": 1},
    }


def test_check_items_not_eligible_wins_over_quantity_exceeded():
    lines = _lines(L1=OK1, L2=Eligibility(False, "window_expired", 0))
    with pytest.raises(ItemProblem) as excinfo:
        check_items([item("L1", 5), item("L2", 1)], lines)
    assert excinfo.value.code == "not_eligible"
    assert excinfo.value.problems == {1: {"line_id": "L2", "reason_code": "window_expired"}}


ALREADY_RETURNED = Eligibility(False, "already_returned", 0)


def test_check_items_nothing_left_is_quantity_exceeded():
    """A line whose units other (possibly racing) returns hold is the contract's
    ``quantity_exceeded`` for the request, while the order's line says already_returned."""
    lines = _lines(L1=OK3, L2=ALREADY_RETURNED)
    with pytest.raises(ItemProblem) as excinfo:
        check_items([item("L1", 1), item("L2", 1)], lines)
    assert excinfo.value.code == "quantity_exceeded"
    assert excinfo.value.problems == {1: {"line_id": "L2", "requested": 1, "returnable_quantity": 0}}


def test_check_items_nothing_left_and_an_ineligible_line_is_not_eligible():
    lines = _lines(L1=ALREADY_RETURNED, L2=Eligibility(False, "not_delivered", 0))
    with pytest.raises(ItemProblem) as excinfo:
        check_items([item("L1", 1), item("L2", 1)], lines)
    assert excinfo.value.code == "not_eligible"
    assert excinfo.value.problems == {1: {"line_id": "L2", "reason_code": "not_delivered"}}


def test_check_items_end_to_end_with_line_eligibility():
    """check_items fed by line_eligibility, as the service does."""
    policy = Policy(non_returnable_categories=frozenset({"hygiene"}))
    facts = {"A": LineFacts(3, reserved_quantity=1), "B": LineFacts(2, category="hygiene"),
             "C": LineFacts(1, reserved_quantity=1)}
    lines = {k: (f, line_eligibility(f, DELIVERED, NOW, policy)) for k, f in facts.items()}
    assert check_items([item("A", 1), item("A", 1)], lines) is None
    with pytest.raises(ItemProblem) as excinfo:
        check_items([item("A", 3)], lines)
    assert excinfo.value.problems == {0: {"line_id": "A", "requested": 3, "returnable_quantity": 2}}
    with pytest.raises(ItemProblem) as excinfo:
        check_items([item("B", 1)], lines)
    assert excinfo.value.code == "not_eligible"
    with pytest.raises(ItemProblem) as excinfo:
        check_items([item("C", 1)], lines)
    assert excinfo.value.code == "quantity_exceeded"


# --- money ------------------------------------------------------------------------------------

@pytest.mark.parametrize("value,expected", [
    ("0", "0.00"),
    ("1", "1.00"),
    ("49.9", "49.90"),
    ("2.675", "2.68"),       # half up (a float would say 2.67)
    ("2.665", "2.67"),       # half up, not half even (2.66)
    ("0.005", "0.01"),
    ("0.004999", "0.00"),
    ("1.0049", "1.00"),
    ("1.0050", "1.01"),
    ("-2.675", "-2.68"),     # half away from zero
    ("-0.004", "-0.00"),
    ("123456789.125", "123456789.13"),
])
def test_money_rounds_half_up_to_cents(value, expected):
    assert_money(money(Decimal(value)), expected)


def test_money_accepts_an_int():
    assert_money(money(3), "3.00")


# --- quote: shipping --------------------------------------------------------------------------

POLICY = Policy(shipping_fee=D("5.90"), restocking_fee_rate=D("0.10"), approval_threshold=D("500"))


@pytest.mark.parametrize("reason", SHOP_REASONS)
def test_shop_fault_reason_no_shipping_fee_no_restocking(reason):
    q = quote([item(reason=reason, quantity=2, unit_price="24.95")], "refund", POLICY)
    assert_money(q.items_value, "49.90")
    assert_money(q.shipping_fee, "0.00")
    assert_money(q.restocking_fee, "0.00")
    assert_money(q.amount_due, "49.90")
    assert q.customer_pays_shipping is False
    assert q.notes == []


@pytest.mark.parametrize("reason", CUSTOMER_REASONS)
def test_customer_reason_pays_shipping_and_restocking(reason):
    q = quote([item(reason=reason, quantity=2, unit_price="24.95")], "refund", POLICY)
    assert_money(q.items_value, "49.90")
    assert_money(q.shipping_fee, "5.90")
    assert_money(q.restocking_fee, "4.99")
    assert_money(q.amount_due, "39.01")       # 49.90 − 5.90 − 4.99
    assert q.customer_pays_shipping is True
    assert q.notes == ["return_shipping_fee", "restocking_fee"]


def test_all_customer_reasons_together_pay_one_shipping_fee():
    items = [item(f"L{i}", 1, reason, "10.00") for i, reason in enumerate(CUSTOMER_REASONS)]
    q = quote(items, "refund", POLICY)
    assert_money(q.items_value, "50.00")
    assert_money(q.shipping_fee, "5.90")      # once per parcel, not per item
    assert_money(q.restocking_fee, "5.00")
    assert_money(q.amount_due, "39.10")
    assert q.customer_pays_shipping is True


@pytest.mark.parametrize("shop_reason", SHOP_REASONS)
def test_mixed_reasons_the_shop_pays_shipping(shop_reason):
    q = quote([item("L1", 1, "changed_mind", "30.00"), item("L2", 1, shop_reason, "20.00")],
              "refund", POLICY)
    assert_money(q.items_value, "50.00")
    assert_money(q.shipping_fee, "0.00")
    assert q.customer_pays_shipping is False
    # Restocking only on the customer-fault item: 10 % of 30.00.
    assert_money(q.restocking_fee, "3.00")
    assert_money(q.amount_due, "47.00")
    assert q.notes == ["restocking_fee"]


def test_shipping_fee_is_rounded_to_cents():
    policy = Policy(shipping_fee=D("4.995"))
    q = quote([item(unit_price="20.00")], "refund", policy)
    assert_money(q.shipping_fee, "5.00")
    assert_money(q.amount_due, "15.00")


def test_zero_shipping_fee_policy_adds_no_note():
    q = quote([item(unit_price="20.00")], "refund", Policy())
    assert q.customer_pays_shipping is True
    assert_money(q.shipping_fee, "0.00")
    assert_money(q.restocking_fee, "0.00")
    assert_money(q.amount_due, "20.00")
    assert q.notes == []


# --- quote: restocking fee --------------------------------------------------------------------

@pytest.mark.parametrize("unit_price,quantity,rate,fee", [
    ("10.05", 1, "0.10", "1.01"),      # 1.005 → 1.01 (half up; half even would say 1.00)
    ("10.15", 1, "0.10", "1.02"),      # 1.015 → 1.02
    ("10.04", 1, "0.10", "1.00"),      # 1.004 → 1.00
    ("19.99", 1, "0.15", "3.00"),      # 2.9985 → 3.00
    ("19.99", 3, "0.15", "9.00"),      # 59.97 · 0.15 = 8.9955 → 9.00
    ("33.33", 1, "0.125", "4.17"),     # 4.16625 → 4.17
    ("0.05", 1, "0.10", "0.01"),       # 0.005 → 0.01
    ("0.04", 1, "0.10", "0.00"),       # 0.004 → 0.00, and no note
    ("100.00", 2, "0", "0.00"),
])
def test_restocking_fee_rounding(unit_price, quantity, rate, fee):
    policy = Policy(restocking_fee_rate=D(rate))
    q = quote([item(quantity=quantity, unit_price=unit_price)], "refund", policy)
    assert_money(q.restocking_fee, fee)
    assert ("restocking_fee" in q.notes) is (D(fee) != 0)


def test_restocking_fee_only_on_customer_fault_items():
    policy = Policy(restocking_fee_rate=D("0.20"))
    q = quote([item("L1", 2, "too_small", "12.50"),      # 25.00 → fee 5.00
               item("L2", 1, "defective", "100.00"),     # shop's fault → no fee
               item("L3", 1, "arrived_late", "7.45")],   # 7.45 → with L1: 32.45 · 0.2 = 6.49
              "refund", policy)
    assert_money(q.items_value, "132.45")
    assert_money(q.restocking_fee, "6.49")
    assert_money(q.amount_due, "125.96")


def test_restocking_fee_is_computed_on_the_sum_not_per_item():
    # Three items of 0.05 at 10 %: per item 0.005 → 0.01 each (0.03); on the sum 0.015 → 0.02.
    policy = Policy(restocking_fee_rate=D("0.10"))
    q = quote([item(f"L{i}", 1, "changed_mind", "0.05") for i in range(3)], "refund", policy)
    assert_money(q.restocking_fee, "0.02")


# --- quote: approval --------------------------------------------------------------------------

@pytest.mark.parametrize("unit_price,quantity,needs", [
    ("500.00", 1, False),      # exactly the threshold is not above it
    ("500.01", 1, True),
    ("250.00", 2, False),
    ("250.01", 2, True),
    ("499.99", 1, False),
    ("0.01", 1, False),
])
def test_needs_approval_above_threshold(unit_price, quantity, needs):
    q = quote([item(quantity=quantity, unit_price=unit_price, reason="defective")], "refund", POLICY)
    assert q.needs_approval is needs


def test_threshold_compares_the_items_value_before_fees():
    # 505.00 of items, 448.60 due after fees (5.90 + 50.50): still above 500 in value.
    q = quote([item(quantity=1, unit_price="505.00", reason="changed_mind")], "refund", POLICY)
    assert_money(q.amount_due, "448.60")
    assert q.needs_approval is True


def test_threshold_sums_the_items():
    q = quote([item("L1", 1, "defective", "300.00"), item("L2", 1, "damaged", "200.01")],
              "refund", POLICY)
    assert q.needs_approval is True


def test_threshold_follows_the_policy_setting():
    policy = Policy(approval_threshold=D("50"))
    assert quote([item(unit_price="50.00")], "refund", policy).needs_approval is False
    assert quote([item(unit_price="50.01")], "refund", policy).needs_approval is True


@pytest.mark.parametrize("resolution", ["refund", "exchange", "store_credit"])
def test_reason_other_always_needs_approval(resolution):
    q = quote([item(reason="other", unit_price="1.00", comment="colour")], resolution, POLICY)
    assert q.needs_approval is True


def test_one_other_item_among_many_needs_approval():
    q = quote([item("L1", 1, "defective", "1.00"), item("L2", 1, "other", "1.00", "why")],
              "refund", POLICY)
    assert q.needs_approval is True


@pytest.mark.parametrize("reason", [r for r in SHOP_REASONS + CUSTOMER_REASONS if r != "other"])
def test_small_return_without_other_needs_no_approval(reason):
    assert quote([item(reason=reason)], "refund", POLICY).needs_approval is False


# --- quote: resolutions and the amount due ----------------------------------------------------

@pytest.mark.parametrize("resolution", ["exchange", "store_credit"])
@pytest.mark.parametrize("reason", ["changed_mind", "defective"])
def test_exchange_and_store_credit_refund_no_money(resolution, reason):
    q = quote([item(quantity=2, unit_price="24.95", reason=reason)], resolution, POLICY)
    assert_money(q.amount_due, "0.00")
    assert_money(q.items_value, "49.90")   # the rest of the quote is still computed


def test_amount_due_never_negative():
    q = quote([item(unit_price="3.00", reason="changed_mind")], "refund", POLICY)
    assert_money(q.shipping_fee, "5.90")
    assert_money(q.restocking_fee, "0.30")
    assert_money(q.amount_due, "0.00")


def test_amount_due_exactly_zero():
    q = quote([item(unit_price="5.90", reason="changed_mind")], "refund", Policy(shipping_fee=D("5.90")))
    assert_money(q.amount_due, "0.00")


def test_empty_request_quotes_nothing():
    q = quote([], "refund", POLICY)
    assert_money(q.items_value, "0.00")
    assert_money(q.shipping_fee, "0.00")
    assert_money(q.restocking_fee, "0.00")
    assert_money(q.amount_due, "0.00")
    assert q.customer_pays_shipping is False
    assert q.needs_approval is False


def test_quote_accepts_a_generator():
    q = quote((item(unit_price=p) for p in ("1.00", "2.00")), "refund", Policy())
    assert_money(q.items_value, "3.00")
    assert_money(q.amount_due, "3.00")


def test_items_value_is_rounded_to_cents():
    q = quote([item(quantity=3, unit_price="0.335", reason="defective")], "refund", Policy())
    assert_money(q.items_value, "1.01")    # 1.005 → 1.01


@pytest.mark.parametrize("value,shipping,restocking,resolution,expected", [
    ("49.90", "5.90", "4.99", "refund", "39.01"),
    ("49.90", "0.00", "0.00", "refund", "49.90"),
    ("5.00", "5.90", "0.50", "refund", "0.00"),
    ("6.40", "5.90", "0.50", "refund", "0.00"),
    ("6.41", "5.90", "0.50", "refund", "0.01"),
    ("49.90", "5.90", "4.99", "exchange", "0.00"),
    ("49.90", "5.90", "4.99", "store_credit", "0.00"),
    ("10.005", "0", "0", "refund", "10.01"),
])
def test_amount_due(value, shipping, restocking, resolution, expected):
    assert_money(amount_due(D(value), D(shipping), D(restocking), resolution), expected)


cents = st.integers(0, 10**7).map(lambda c: Decimal(c).scaleb(-2))
requested_items = st.lists(
    st.builds(RequestedItem, line_id=st.sampled_from(["L1", "L2", "L3"]),
              quantity=st.integers(1, 20), reason=st.sampled_from(REASONS), unit_price=cents),
    max_size=6)
policies = st.builds(Policy, shipping_fee=st.integers(0, 2000).map(lambda c: Decimal(c).scaleb(-2)),
                     restocking_fee_rate=st.integers(0, 100).map(lambda p: Decimal(p).scaleb(-2)),
                     approval_threshold=st.integers(0, 10**6).map(Decimal))


@settings(max_examples=500)
@given(requested_items, st.sampled_from(["refund", "exchange", "store_credit"]), policies)
def test_quote_invariants(items, resolution, policy):
    q = quote(items, resolution, policy)
    for amount in (q.items_value, q.shipping_fee, q.restocking_fee, q.amount_due):
        assert isinstance(amount, Decimal)
        assert amount.as_tuple().exponent == -2
        assert amount >= 0
    value = sum((it.unit_price * it.quantity for it in items), Decimal("0"))
    customer_value = sum((it.unit_price * it.quantity for it in items
                          if it.reason not in SHOP_REASONS), Decimal("0"))
    assert q.items_value == value           # prices in cents: no rounding needed
    customer_pays = bool(items) and all(it.reason in CUSTOMER_REASONS for it in items)
    assert q.customer_pays_shipping is customer_pays
    assert q.shipping_fee == (policy.shipping_fee if customer_pays else 0)
    assert q.restocking_fee == money(customer_value * policy.restocking_fee_rate)
    assert q.restocking_fee <= customer_value
    if resolution == "refund":
        assert q.amount_due == max(Decimal(0), value - q.shipping_fee - q.restocking_fee)
        assert q.amount_due <= q.items_value
    else:
        assert q.amount_due == 0
    assert q.needs_approval is (value > policy.approval_threshold
                                or any(it.reason == "other" for it in items))
    assert ("return_shipping_fee" in q.notes) is (customer_pays and q.shipping_fee > 0)
    assert ("restocking_fee" in q.notes) is (q.restocking_fee > 0)

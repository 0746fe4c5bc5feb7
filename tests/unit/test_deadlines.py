"""Refund deadline, L242-4 surcharge, reminder schedules and backoff, with explicit clocks."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rma_service.domain.deadlines import (
    RefundStatus,
    days_late,
    dispute_reminders,
    label_reminders,
    next_attempt_at,
    refund_due_at,
    refund_reminders,
    refund_status,
    surcharge_rate,
)

UTC = timezone.utc
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
CREATED = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)
DUE_14 = CREATED + 14 * DAY
LEGAL = Decimal("0.0716")  # any legal interest rate setting


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


aware_datetimes = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1),
                               timezones=st.just(UTC))


# --- due date -------------------------------------------------------------------------------

class TestRefundDueAt:
    def test_scan_before_created_plus_14_days_keeps_14_days(self) -> None:
        assert refund_due_at(CREATED, CREATED + 3 * DAY, None) == DUE_14

    def test_scan_after_created_plus_14_days_moves_due_date_to_scan(self) -> None:
        scan = CREATED + 20 * DAY
        assert refund_due_at(CREATED, scan, None) == scan

    def test_evidence_exactly_at_created_plus_14_days(self) -> None:
        assert refund_due_at(CREATED, DUE_14, None) == DUE_14

    def test_receipt_earlier_than_scan_is_the_evidence(self) -> None:
        receipt = CREATED + 18 * DAY
        assert refund_due_at(CREATED, CREATED + 25 * DAY, receipt) == receipt

    def test_receipt_without_scan(self) -> None:
        receipt = CREATED + 16 * DAY
        assert refund_due_at(CREATED, None, receipt) == receipt

    def test_no_evidence_reports_created_plus_days(self) -> None:
        assert refund_due_at(CREATED, None, None) == DUE_14

    def test_days_is_a_setting(self) -> None:
        assert refund_due_at(CREATED, None, None, days=30) == CREATED + 30 * DAY

    def test_naive_datetime_is_refused(self) -> None:
        with pytest.raises(ValueError, match="created_at must be a timezone-aware"):
            refund_due_at(datetime(2026, 11, 2), None, None)

    @given(created=aware_datetimes, scan=st.none() | aware_datetimes,
           receipt=st.none() | aware_datetimes)
    def test_never_before_created_plus_14_days_nor_the_evidence(
            self, created: datetime, scan: datetime | None, receipt: datetime | None) -> None:
        due = refund_due_at(created, scan, receipt)
        assert due >= created + 14 * DAY
        evidence = [x for x in (scan, receipt) if x is not None]
        if evidence:
            assert due >= min(evidence)
            assert due in (created + 14 * DAY, min(evidence))


# --- days late ------------------------------------------------------------------------------

class TestDaysLate:
    @pytest.mark.parametrize(("now", "expected"), [
        (DUE_14 - HOUR, 0),
        (DUE_14, 0),
        (DUE_14 + DAY - timedelta(microseconds=1), 0),
        (DUE_14 + DAY, 1),
        (DUE_14 + 2 * DAY - timedelta(seconds=1), 1),
        (DUE_14 + 31 * DAY, 31),
    ])
    def test_whole_days_past_due_while_unrefunded(self, now: datetime, expected: int) -> None:
        assert days_late(DUE_14, now) == expected

    def test_measured_at_the_refund_once_refunded(self) -> None:
        assert days_late(DUE_14, DUE_14 + 40 * DAY, refunded_at=DUE_14 + 3 * DAY + HOUR) == 3

    def test_refund_before_due_is_zero(self) -> None:
        assert days_late(DUE_14, DUE_14 + 40 * DAY, refunded_at=DUE_14 - DAY) == 0

    @given(due=aware_datetimes, now=aware_datetimes, refunded=st.none() | aware_datetimes)
    def test_never_negative(self, due: datetime, now: datetime,
                            refunded: datetime | None) -> None:
        assert days_late(due, now, refunded) >= 0


# --- L242-4 surcharge -----------------------------------------------------------------------

class TestSurchargeRate:
    @pytest.mark.parametrize(("late", "expected"), [
        (0, Decimal("0")),
        (1, LEGAL),
        (10, LEGAL),
        (11, Decimal("0.05")),
        (20, Decimal("0.05")),
        (21, Decimal("0.10")),
        (30, Decimal("0.10")),
        (31, Decimal("0.20")),
        (60, Decimal("0.20")),
        (61, Decimal("0.50")),
        (90, Decimal("0.50")),
        (91, Decimal("0.55")),
        (120, Decimal("0.55")),
        (121, Decimal("0.60")),
        (150, Decimal("0.60")),
        (151, Decimal("0.65")),
        (360, Decimal("0.95")),
        (361, Decimal("1.00")),
        (390, Decimal("1.00")),
        (391, Decimal("1.00")),
        (10_000, Decimal("1.00")),
    ])
    def test_bands(self, late: int, expected: Decimal) -> None:
        rate = surcharge_rate(late, LEGAL)
        assert rate == expected
        assert isinstance(rate, Decimal)

    def test_negative_days_are_refused(self) -> None:
        with pytest.raises(ValueError):
            surcharge_rate(-1, LEGAL)

    @given(late=st.integers(min_value=0, max_value=5000),
           legal=st.decimals(min_value=Decimal("0"), max_value=Decimal("0.05"), places=4))
    def test_monotonic_non_decreasing_and_capped(self, late: int, legal: Decimal) -> None:
        assert surcharge_rate(late, legal) <= surcharge_rate(late + 1, legal) <= Decimal("1.00")


# --- status ---------------------------------------------------------------------------------

class TestRefundStatus:
    def status(self, *, scan: datetime | None = CREATED + 2 * DAY, received: datetime | None = None,
               refunded: datetime | None = None, now: datetime) -> RefundStatus:
        return refund_status(CREATED, scan, received, refunded, now, legal_interest_rate=LEGAL)

    def test_on_time_before_due(self) -> None:
        assert self.status(now=DUE_14 - HOUR) == RefundStatus(DUE_14, False, 0, Decimal("0"))

    def test_at_the_due_instant_not_yet_overdue(self) -> None:
        assert self.status(now=DUE_14) == RefundStatus(DUE_14, False, 0, Decimal("0"))

    def test_overdue_within_the_first_day(self) -> None:
        assert self.status(now=DUE_14 + HOUR) == RefundStatus(DUE_14, True, 0, Decimal("0"))

    def test_overdue_one_day(self) -> None:
        assert self.status(now=DUE_14 + DAY) == RefundStatus(DUE_14, True, 1, LEGAL)

    def test_overdue_eleven_days(self) -> None:
        assert self.status(now=DUE_14 + 11 * DAY) == RefundStatus(DUE_14, True, 11, Decimal("0.05"))

    def test_late_refund_keeps_its_lateness_but_is_no_longer_overdue(self) -> None:
        status = self.status(refunded=DUE_14 + 12 * DAY, now=DUE_14 + 100 * DAY)
        assert status == RefundStatus(DUE_14, False, 12, Decimal("0.05"))

    def test_refund_on_time(self) -> None:
        status = self.status(refunded=DUE_14 - DAY, now=DUE_14 + 100 * DAY)
        assert status == RefundStatus(DUE_14, False, 0, Decimal("0"))

    def test_no_evidence_is_never_overdue(self) -> None:
        status = self.status(scan=None, now=DUE_14 + 50 * DAY)
        assert status == RefundStatus(DUE_14, False, 0, Decimal("0"))

    def test_late_evidence_moves_the_deadline(self) -> None:
        received = CREATED + 20 * DAY
        status = self.status(scan=None, received=received, now=received + 2 * DAY)
        assert status == RefundStatus(received, True, 2, LEGAL)

    def test_settings(self) -> None:
        status = refund_status(CREATED, CREATED, None, None, CREATED + 40 * DAY, days=30,
                               legal_interest_rate=Decimal("0.08"))
        assert status == RefundStatus(CREATED + 30 * DAY, True, 10, Decimal("0.08"))


# --- reminders ------------------------------------------------------------------------------

class TestRefundReminders:
    @pytest.mark.parametrize(("now", "expected"), [
        (DUE_14 - 3 * DAY - timedelta(seconds=1), []),
        (DUE_14 - 3 * DAY, [("refund_due_soon:3", DUE_14 - 3 * DAY)]),
        (DUE_14 - DAY - timedelta(seconds=1), [("refund_due_soon:3", DUE_14 - 3 * DAY)]),
        (DUE_14 - DAY, [("refund_due_soon:1", DUE_14 - DAY)]),
        (DUE_14, [("refund_due_soon:1", DUE_14 - DAY)]),
        (DUE_14 + timedelta(seconds=1), [("refund_overdue:0", DUE_14)]),
        (DUE_14 + DAY - timedelta(seconds=1), [("refund_overdue:0", DUE_14)]),
        (DUE_14 + DAY, [("refund_overdue:1", DUE_14 + DAY)]),
        (DUE_14 + 9 * DAY + HOUR, [("refund_overdue:9", DUE_14 + 9 * DAY)]),
    ])
    def test_schedule(self, now: datetime, expected: list[tuple[str, datetime]]) -> None:
        assert refund_reminders(DUE_14, now) == expected

    def test_overdue_day_matches_days_late(self) -> None:
        now = DUE_14 + 5 * DAY + 7 * HOUR
        [(key, _)] = refund_reminders(DUE_14, now)
        assert key == f"refund_overdue:{days_late(DUE_14, now)}"

    def test_custom_soon_days(self) -> None:
        assert refund_reminders(DUE_14, DUE_14 - 6 * DAY, soon_days=(7, 2)) == [
            ("refund_due_soon:7", DUE_14 - 7 * DAY)]
        assert refund_reminders(DUE_14, DUE_14 - DAY, soon_days=(7, 2)) == [
            ("refund_due_soon:2", DUE_14 - 2 * DAY)]

    def test_soon_days_must_be_positive(self) -> None:
        with pytest.raises(ValueError):
            refund_reminders(DUE_14, DUE_14, soon_days=(3, 0))

    @given(offset=st.integers(min_value=-10 * 86400, max_value=60 * 86400))
    def test_keys_never_go_back_as_time_passes(self, offset: int) -> None:
        """A later run never lists an occurrence earlier than an earlier run did."""
        now = DUE_14 + timedelta(seconds=offset)
        before = refund_reminders(DUE_14, now)
        after = refund_reminders(DUE_14, now + HOUR)
        if before:
            assert after and after[0][1] >= before[0][1]
            assert before[0][1] <= now


class TestLabelReminders:
    ISSUED = at(2026, 11, 3, 14, 0)

    @pytest.mark.parametrize(("elapsed", "expected"), [
        (7 * DAY - timedelta(seconds=1), []),
        (7 * DAY, [("label_unused:7", ISSUED + 7 * DAY)]),
        (28 * DAY - timedelta(seconds=1), [("label_unused:7", ISSUED + 7 * DAY)]),
        (28 * DAY, [("label_expired:28", ISSUED + 28 * DAY)]),
        (90 * DAY, [("label_expired:28", ISSUED + 28 * DAY)]),
    ])
    def test_schedule(self, elapsed: timedelta, expected: list[tuple[str, datetime]]) -> None:
        assert label_reminders(self.ISSUED, self.ISSUED + elapsed) == expected

    def test_settings(self) -> None:
        assert label_reminders(self.ISSUED, self.ISSUED + 5 * DAY, remind_days=5,
                               expire_days=10) == [("label_unused:5", self.ISSUED + 5 * DAY)]

    def test_remind_must_come_before_expiry(self) -> None:
        with pytest.raises(ValueError):
            label_reminders(self.ISSUED, self.ISSUED, remind_days=28, expire_days=28)


class TestDisputeReminders:
    WAITING = at(2026, 11, 10, 8, 15, 30)
    STAMP = "20261110T081530Z"

    @pytest.mark.parametrize(("elapsed", "roles"), [
        (48 * HOUR - timedelta(seconds=1), []),
        (48 * HOUR, ["handler"]),
        (96 * HOUR - timedelta(seconds=1), ["handler"]),
        (96 * HOUR, ["handler", "admin"]),
        (30 * DAY, ["handler", "admin"]),
    ])
    def test_schedule(self, elapsed: timedelta, roles: list[str]) -> None:
        hours = {"handler": 48, "admin": 96}
        expected = [(f"dispute_no_reply:{role}:{self.STAMP}", self.WAITING + hours[role] * HOUR)
                    for role in roles]
        assert dispute_reminders(self.WAITING, self.WAITING + elapsed) == expected

    def test_nobody_waiting(self) -> None:
        assert dispute_reminders(None, self.WAITING + 30 * DAY) == []

    def test_a_new_waiting_period_gets_new_keys(self) -> None:
        later = self.WAITING + 5 * DAY
        [(key, _)] = dispute_reminders(later, later + 48 * HOUR)
        assert key == "dispute_no_reply:handler:20261115T081530Z"

    def test_stamp_is_utc_whatever_the_offset(self) -> None:
        paris = self.WAITING.astimezone(timezone(timedelta(hours=1)))
        assert dispute_reminders(paris, paris + 48 * HOUR)[0][0].endswith(self.STAMP)

    def test_settings(self) -> None:
        assert dispute_reminders(self.WAITING, self.WAITING + 24 * HOUR, handler_hours=24,
                                 admin_hours=72) == [
            (f"dispute_no_reply:handler:{self.STAMP}", self.WAITING + 24 * HOUR)]

    def test_admin_must_come_after_handler(self) -> None:
        with pytest.raises(ValueError):
            dispute_reminders(self.WAITING, self.WAITING, handler_hours=96, admin_hours=48)


# --- webhook backoff ------------------------------------------------------------------------

class TestNextAttemptAt:
    FIRST = at(2026, 11, 25, 12, 0)

    def test_exponential_from_30_seconds(self) -> None:
        delays = [next_attempt_at(self.FIRST, n, self.FIRST) - self.FIRST  # type: ignore[operator]
                  for n in range(1, 13)]
        assert delays == [timedelta(seconds=30 * 2 ** i) for i in range(10)] + [6 * HOUR] * 2

    def test_counted_from_now(self) -> None:
        now = self.FIRST + HOUR
        assert next_attempt_at(self.FIRST, 3, now) == now + timedelta(minutes=2)

    def test_full_sequence_gives_up_after_three_days(self) -> None:
        now, attempts, times = self.FIRST, 1, [self.FIRST]
        while (nxt := next_attempt_at(self.FIRST, attempts, now)) is not None:
            times.append(nxt)
            now, attempts = nxt, attempts + 1
        assert len(times) == 21
        assert times[-1] <= self.FIRST + 3 * DAY < times[-1] + 6 * HOUR

    def test_last_attempt_exactly_at_the_limit_is_allowed(self) -> None:
        now = self.FIRST + 3 * DAY - 6 * HOUR
        assert next_attempt_at(self.FIRST, 15, now) == self.FIRST + 3 * DAY
        assert next_attempt_at(self.FIRST, 15, now + timedelta(seconds=1)) is None

    def test_give_up_after_is_a_setting(self) -> None:
        limit = timedelta(seconds=29)
        assert next_attempt_at(self.FIRST, 1, self.FIRST, give_up_after=limit) is None

    def test_huge_attempt_counts_do_not_overflow(self) -> None:
        assert next_attempt_at(self.FIRST, 10_000, self.FIRST) == self.FIRST + 6 * HOUR

    def test_attempts_must_be_positive(self) -> None:
        with pytest.raises(ValueError):
            next_attempt_at(self.FIRST, 0, self.FIRST)

    @given(attempts=st.integers(min_value=1, max_value=200),
           elapsed=st.integers(min_value=0, max_value=4 * 86400))
    def test_never_beyond_the_limit_and_after_now(self, attempts: int, elapsed: int) -> None:
        now = self.FIRST + timedelta(seconds=elapsed)
        nxt = next_attempt_at(self.FIRST, attempts, now)
        if nxt is not None:
            assert now < nxt <= self.FIRST + 3 * DAY

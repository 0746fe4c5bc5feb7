"""Refund deadline, lateness surcharge, reminder schedules and delivery backoff.

Pure rules: every function takes ``now`` (or the instants it needs) explicitly, so tests and
``rma run-jobs --now`` can freeze the clock. Times are timezone-aware datetimes (UTC), money
rates are ``Decimal`` fractions (``Decimal("0.05")`` is 5 %).

Reminder schedules
------------------
``refund_reminders``, ``label_reminders`` and ``dispute_reminders`` return a list of
``(key, at)`` pairs: the occurrences that are due at ``now`` (``at <= now``, except that
``refund_overdue:0`` waits until ``now`` is past the due date). The key is stable
for a given occurrence, so a scheduler records "sent" under a unique (subject, key) pair and
never sends twice, however many schedulers run and however often they run.

An occurrence is only listed while its message is still true. After downtime (or when a
schedule is replayed with ``--now``) the scheduler therefore sends what applies *now*, not a
backlog: "refund due in 3 days" is dropped once "due in 1 day" applies, "due soon" once the
refund is overdue, "overdue for 4 days" once it is 5 days overdue, "your label is unused" once
the RMA expires.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal

_DAY = timedelta(days=1)
_MONTH = 30  # days: L242-4 counts "each further month of delay" as a started 30-day period
_ZERO = Decimal("0")
_RATE_CAP = Decimal("1.00")
_STEP_AFTER_90_DAYS = Decimal("0.05")
# (last day late of the band, rate); day 1..10 uses the legal interest rate instead.
_SURCHARGE_BANDS = (
    (20, Decimal("0.05")),
    (30, Decimal("0.10")),
    (60, Decimal("0.20")),
    (90, Decimal("0.50")),
)


def _aware(**values: datetime | None) -> None:
    for name, value in values.items():
        if value is not None and value.utcoffset() is None:
            raise ValueError(f"{name} must be a timezone-aware datetime, got {value!r}")


def _evidence_at(first_scan_at: datetime | None, received_at: datetime | None) -> datetime | None:
    """The earlier of the first carrier scan and the receipt, or None when neither exists."""
    present = [at for at in (first_scan_at, received_at) if at is not None]
    return min(present, default=None)


def refund_due_at(created_at: datetime, first_scan_at: datetime | None,
                  received_at: datetime | None, *, days: int = 14) -> datetime:
    """When the refund is due (EU 2011/83 art. 13, Code de la consommation L221-24).

    The later of ``created_at + days`` and the evidence date, the evidence date being the
    earlier of the first carrier scan (proof of sending) and the receipt at the warehouse.

    Without any evidence the result is ``created_at + days``: the earliest the refund can be
    due. It is reported as such, but the shop may withhold the refund until evidence of the
    return exists, so ``refund_status`` never calls such a refund overdue.
    """
    _aware(created_at=created_at, first_scan_at=first_scan_at, received_at=received_at)
    earliest = created_at + timedelta(days=days)
    evidence = _evidence_at(first_scan_at, received_at)
    return earliest if evidence is None else max(earliest, evidence)


def days_late(due_at: datetime, now: datetime, refunded_at: datetime | None = None) -> int:
    """Whole days elapsed past ``due_at``: until ``now`` while unrefunded, else until the refund.

    Only completed days count (``due_at + 23 h 59`` is 0 days late, ``due_at + 24 h`` is 1).
    A refund at or before ``due_at`` is 0 days late. Never negative.
    """
    _aware(due_at=due_at, now=now, refunded_at=refunded_at)
    end = now if refunded_at is None else refunded_at
    if end <= due_at:
        return 0
    return (end - due_at) // _DAY


def surcharge_rate(days_late: int, legal_interest_rate: Decimal) -> Decimal:
    """The L242-4 increase of the sums due, as a fraction of them, for ``days_late`` whole days.

    Code de la consommation L242-4: the sums due are increased by "the legal interest rate if
    the refund happens at the latest ten days past the deadline, 5 % if the delay is between
    ten and twenty days, 10 % between twenty and thirty days, 20 % between thirty and sixty
    days, 50 % between sixty and ninety days, and five further points per new month of delay
    up to the price of the product".

    The text's bands share their end points ("between ten and twenty", "between twenty and
    thirty"); with whole days late each end point belongs to the *lower* band, since "at the
    latest ten days" explicitly includes day 10:

    =========  ==========================================================
    days late  rate
    =========  ==========================================================
    0          0 (on time)
    1 – 10     ``legal_interest_rate`` (the setting, applied as given)
    11 – 20    0.05
    21 – 30    0.10
    31 – 60    0.20
    61 – 90    0.50
    91 +       0.50 + 0.05 per started 30-day period past day 90
               (91–120 → 0.55, 121–150 → 0.60, …), capped at 1.00
    =========  ==========================================================

    The cap of 1.00 (reached on day 361) stands for "up to the price of the product". What
    the text adds after that point ("then the legal interest rate") is not modelled here.
    """
    if days_late < 0:
        raise ValueError(f"days_late must not be negative, got {days_late}")
    if days_late == 0:
        return _ZERO
    if days_late <= 10:
        return legal_interest_rate
    for last_day, rate in _SURCHARGE_BANDS:
        if days_late <= last_day:
            return rate
    months_past_90 = -(-(days_late - 90) // _MONTH)  # started 30-day periods
    return min(_SURCHARGE_BANDS[-1][1] + _STEP_AFTER_90_DAYS * months_past_90, _RATE_CAP)


@dataclass(frozen=True)
class RefundStatus:
    """The refund deadline as the API shows it (``refund`` object of a Return).

    ``overdue`` is True only while the refund is outstanding, evidence of the return exists and
    ``now`` is past ``due_at``. ``days_late`` and ``surcharge_rate`` are measured at the refund
    once it is made, so a late refund keeps showing how late it was (with ``overdue`` False).
    """

    due_at: datetime
    overdue: bool
    days_late: int
    surcharge_rate: Decimal


def refund_status(created_at: datetime, first_scan_at: datetime | None,
                  received_at: datetime | None, refunded_at: datetime | None, now: datetime,
                  *, days: int = 14, legal_interest_rate: Decimal) -> RefundStatus:
    """Due date, lateness and L242-4 surcharge of one return's refund at ``now``.

    Without evidence (no scan, no receipt) the refund cannot be late: ``overdue`` is False and
    ``days_late`` 0, whatever ``now`` is (see ``refund_due_at``).
    """
    _aware(refunded_at=refunded_at, now=now)
    due_at = refund_due_at(created_at, first_scan_at, received_at, days=days)
    if _evidence_at(first_scan_at, received_at) is None:
        return RefundStatus(due_at=due_at, overdue=False, days_late=0, surcharge_rate=_ZERO)
    late = days_late(due_at, now, refunded_at)
    return RefundStatus(due_at=due_at, overdue=refunded_at is None and now > due_at,
                        days_late=late, surcharge_rate=surcharge_rate(late, legal_interest_rate))


def refund_reminders(due_at: datetime, now: datetime, *,
                     soon_days: Iterable[int] = (3, 1)) -> list[tuple[str, datetime]]:
    """The refund reminder due at ``now``, as ``[(key, at)]`` (empty or one element).

    Schedule: ``refund_due_soon:<k>`` at ``due_at - k days`` for each k of ``soon_days``
    (to the handler/team), ``refund_overdue:0`` at ``due_at`` (listed once ``now`` is past it,
    like ``RefundStatus.overdue``: a refund made exactly at ``due_at`` is on time), then
    ``refund_overdue:<n>`` at ``due_at + n days`` daily (to the admin); ``n`` equals
    ``days_late`` at that moment. Only the latest occurrence reached is returned (see the
    module docstring).

    The caller asks only while the refund is outstanding, and sends ``refund_overdue:*`` only
    when ``refund_status(...).overdue`` (not without evidence of the return).
    """
    _aware(due_at=due_at, now=now)
    soon = sorted(set(soon_days))
    if any(k <= 0 for k in soon):
        raise ValueError(f"soon_days must be positive, got {soon}")
    if now > due_at:
        n = (now - due_at) // _DAY
        return [(f"refund_overdue:{n}", due_at + n * _DAY)]
    for k in soon:  # closest to the due date first
        at = due_at - k * _DAY
        if at <= now:
            return [(f"refund_due_soon:{k}", at)]
    return []


def label_reminders(label_issued_at: datetime, now: datetime, *, remind_days: int = 7,
                    expire_days: int = 28) -> list[tuple[str, datetime]]:
    """The unused-label occurrence due at ``now``, as ``[(key, at)]`` (empty or one element).

    ``label_unused:<remind_days>`` at ``label_issued_at + remind_days`` (remind the customer),
    replaced by ``label_expired:<expire_days>`` at ``label_issued_at + expire_days`` (expire the
    RMA and void the label). The caller asks only while the label is unused (status
    ``authorized``).
    """
    _aware(label_issued_at=label_issued_at, now=now)
    if not 0 < remind_days < expire_days:
        raise ValueError(f"need 0 < remind_days < expire_days, got {remind_days}, {expire_days}")
    for key, days in (("label_expired", expire_days), ("label_unused", remind_days)):
        at = label_issued_at + timedelta(days=days)
        if at <= now:
            return [(f"{key}:{days}", at)]
    return []


def dispute_reminders(waiting_since: datetime | None, now: datetime, *, handler_hours: int = 48,
                      admin_hours: int = 96) -> list[tuple[str, datetime]]:
    """Reminders for a dispute whose customer waits for the handler, as ``[(key, at)]``.

    ``waiting_since`` is when the customer started waiting: the *oldest* customer message
    after the handler's last message (a customer writing again must not push the reminder
    back), or the opening of the dispute while the handler has not written at all. None when
    the handler has the last word: nothing is due.

    ``dispute_no_reply:handler:<stamp>`` at ``waiting_since + handler_hours`` (to the handler)
    and ``dispute_no_reply:admin:<stamp>`` at ``waiting_since + admin_hours`` (to the admin);
    both stay listed (both are still true at 100 h). ``<stamp>`` is ``waiting_since`` as
    ``YYYYMMDDTHHMMSSZ``, so every new waiting period gets fresh keys.
    """
    _aware(waiting_since=waiting_since, now=now)
    if not 0 < handler_hours < admin_hours:
        raise ValueError(
            f"need 0 < handler_hours < admin_hours, got {handler_hours}, {admin_hours}")
    if waiting_since is None:
        return []
    stamp = waiting_since.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    due: list[tuple[str, datetime]] = []
    for role, hours in (("handler", handler_hours), ("admin", admin_hours)):
        at = waiting_since + timedelta(hours=hours)
        if at <= now:
            due.append((f"dispute_no_reply:{role}:{stamp}", at))
    return due


def next_attempt_at(first_attempt_at: datetime, attempts: int, now: datetime, *,
                    give_up_after: timedelta = timedelta(days=3),
                    base: timedelta = timedelta(seconds=30),
                    cap: timedelta = timedelta(hours=6)) -> datetime | None:
    """When to retry a failed webhook delivery, or None to give up.

    ``attempts`` is the number of attempts made so far (≥ 1), ``now`` the end of the last one.
    The delay doubles from ``base``: 30 s, 1 min, 2 min, … (``base · 2^(attempts-1)``), capped
    at ``cap`` (6 h, from the 11th retry on). None once the next attempt would fall after
    ``first_attempt_at + give_up_after`` (the contract's 3 days). Deterministic, no jitter:
    deliveries are spread by their own first-attempt times.
    """
    _aware(first_attempt_at=first_attempt_at, now=now)
    if attempts < 1:
        raise ValueError(f"attempts must be at least 1, got {attempts}")
    factor = min(2 ** (attempts - 1), cap // base)  # bounded before multiplying: no overflow
    candidate = now + min(base * factor, cap)
    if candidate > first_attempt_at + give_up_after:
        return None
    return candidate

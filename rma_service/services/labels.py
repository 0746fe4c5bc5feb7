"""Prepaid return labels: requested with the authorization, issued by the ``issue_labels`` job,
voided and reissued, and followed through the carrier's tracking events.

Life of a label (``Label.status``)
----------------------------------
``pending`` → ``issued``    the job got a shipment from the carrier and stored the PDF;
``pending`` → ``failed``    the carrier refused the request (4xx: the data must be fixed first;
                            an agent then reissues the label);
``pending`` | ``issued`` | ``failed`` → ``voided``   the return was cancelled or expired, or the
                            label was reissued. The API's ``label.status`` is this column:
                            ``pending`` reads "on its way".

Issuance is the job's, never the request's
------------------------------------------
``request_label`` only writes a pending row inside the authorization transaction; the
``issue_labels`` job (every 30 s) calls the carrier. Creating a return therefore stays fast and
never depends on the carrier being up: a carrier that is down leaves the return authorized
with ``label.status`` ``pending``, and a later run issues the label. Until then
``GET …/label.pdf`` (and the customers' label link) answer 404 ``not_found`` "no label yet"
(the customers' page says the label is being prepared). Self-issued labels go through the job
too (one path, one set of guarantees; the delay is one job interval).

``issue_due`` step by step, for each claimed label:

1. claim (``services/claims.py``: a short committed transaction sets ``locked_until``;
   PostgreSQL ``FOR UPDATE SKIP LOCKED``, SQLite a conditional UPDATE): several schedulers
   never work on the same label;
2. read what the carrier needs, end the read transaction;
3. call the carrier OUTSIDE any transaction, with the reference ``<rma code>-<label id>``: it
   is the carrier's idempotency key, stable across retries, so a retry after a crash (or after
   a timeout the carrier had in fact served) gives back the same shipment, never a second one;
   render our own PDF when the carrier gives none (the self carrier), also outside;
4. store the outcome in ONE short transaction: tracking number, shipment id, cost, PDF,
   ``issued_at``, ``expires_at``, status ``issued``, the audit event ``label_issued`` and the
   webhook ``return.label_issued``, all or nothing. The row is either still pending or fully
   issued, never half-written.

If the return was cancelled (or received, or the label reissued) while the carrier was being
called, the shipment is not kept: its ids are stored on the voided row and it is voided at the
carrier. Failures: a retryable ``CarrierError`` (down, timeout, garbled answer, 429) keeps the
label ``pending`` with ``attempts`` + 1, ``last_error`` and ``next_attempt_at`` backed off
(30 s, 1 min, 2 min, … capped at 1 h; retried until it works, the admin sees the error); a
refusal (4xx) makes it ``failed`` with the carrier's message and an audit event
``label_failed``. Messages never carry the API key.

Voiding at the carrier: an outbox flag
--------------------------------------
``void_current`` (cancel, expiry, reissue) runs inside the caller's transaction and never calls
the carrier: it marks the label ``voided`` and, when a carrier shipment exists, sets
``next_attempt_at`` = now — the flag. The same job then calls ``void_shipment`` after the
commit, retries it with backoff, and clears the flag (audit event ``label_carrier_voided``;
a refusal gives ``label_void_failed``). A crash never loses a void and a rollback never sends
one. The self carrier has nothing to void. A pending label voided after an unanswered call
(timeout, 5xx, garbled answer, a call still running or cut by a crash: ``may_have_shipment``)
is flagged too although no shipment id is known: the job asks the carrier again with the same
reference, which gives back the shipment it may have booked, and voids that; a refusal means
there never was one.

Tracking events (``POST /api/v1/carrier-events/{carrier}``)
------------------------------------------------------------
See ``record_tracking_event``: signature checked first, duplicates by ``(carrier, event_id)``,
statuses only move forward (``domain.tracking``), the first scan ships the return and is its
proof of shipment, delivery is recorded but receipt stays an agent's act.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Optional

from sqlalchemy import func, select, update
from sqlalchemy.orm.attributes import flag_modified
from sqlalchemy.orm.exc import StaleDataError

from ..adapters import signing
from ..adapters.carriers import SELF, CarrierError, ShipmentRequest, ShipmentResult, build_carrier
from ..adapters.pdf import Address, LabelDocument, LabelItem
from ..clock import rfc3339
from ..domain import deadlines, rma_number, tracking
from ..domain.rma_number import format_number
from ..errors import ApiError, NotFound
from ..extensions import db
from ..models import CarrierEvent, Label, Return
from . import settings
from .audit import emit, record, transition
from .claims import STOP, RunBudget, claim_locked, insert_ignore, release, wallclock
from .newrows import new
from .representation import current_label, return_payload

log = logging.getLogger(__name__)

ACTOR = "scheduler"
# Backoff of the carrier calls of one label: 30 s, 1 min, 2 min, … at most 1 h, never giving up
# (a retryable error may pass by itself; last_error and attempts tell the agents meanwhile).
RETRY_BASE = timedelta(seconds=30)
RETRY_CAP = timedelta(hours=1)
_NEVER_GIVE_UP = timedelta(days=365 * 100)
# Time one label may take in the job beyond the carrier's own timeouts (rendering, database).
_RENDER_BUDGET_SECONDS = 30.0


# --- requesting, voiding, reissuing (inside the callers' transactions) -----------------------

def request_label(ret: Return, now: datetime) -> Label:
    """A pending label for ``ret`` (called inside the authorization transaction); the
    ``issue_labels`` job issues it."""
    cfg = settings()
    label = new(Label, {"return_id": ret.id, "carrier": str(cfg.get("CARRIER") or SELF),
                        "service": str(cfg.get("CARRIER_SERVICE") or "standard"), "status": "pending",
                        "attempts": 0, "next_attempt_at": now, "created_at": now})
    ret.labels.append(label)  # and label.ret (a backref): its return_id once the return is written
    return label


def needs_carrier_void(label: Label) -> bool:
    """Whether voiding ``label`` must also be told to its carrier (a shipment exists there)."""
    return bool(label.carrier_shipment_id) and label.carrier.lower() != SELF


def may_have_shipment(label: Label) -> bool:
    """Whether the carrier may hold a shipment of this pending label that we never heard of: a
    call to create it went unanswered (a timeout or a 5xx the carrier had in fact served, a
    garbled answer: ``attempts``), or is running, or was cut short by a crash (``locked_until``).
    Voiding such a label asks the carrier again with the same reference, which gives the
    shipment back if there is one, and voids it (``_void_at_carrier``)."""
    return (label.status == "pending" and label.carrier.lower() != SELF and not label.carrier_shipment_id
            and bool(label.attempts or label.locked_until))


def void_current(ret: Return, now: datetime, actor: str) -> None:
    """Void the return's current label, inside the caller's transaction. The carrier is told
    after the commit, by the label job (``next_attempt_at`` is the outbox flag)."""
    label = current_label(ret)
    if label is not None and label.status in ("pending", "issued", "failed"):
        at_carrier = needs_carrier_void(label) or may_have_shipment(label)
        label.status = "voided"
        label.voided_at = now
        label.attempts, label.last_error = 0, None
        label.next_attempt_at = now if at_carrier else None
        record(ret, "label_voided", actor, now, data={"tracking_number": label.tracking_number})


def void_and_reissue(number: str, actor: str, now: datetime) -> Return:
    """Void the current label (voided at the carrier after the commit, by the label job) and
    request a new one (a new tracking number once the job issues it). Authorized returns only:
    before, there is no label; after the first scan, the parcel is on its way."""
    from .returns import get_return  # late: returns imports this module lazily too

    ret = get_return(number, for_update=True)
    if ret.status != "authorized":
        raise ApiError(409, "invalid_transition",
                       f"A label can only be reissued while the return is authorized; this one is {ret.status}.",
                       current_status=ret.status, action="reissue_label")
    old = current_label(ret)
    void_current(ret, now, actor)
    request_label(ret, now)
    _touch(ret, now)
    record(ret, "reissue_label", actor, now,
           data={"voided_tracking_number": old.tracking_number if old is not None else None})
    db.session.commit()
    return ret


def downloadable(ret: Return) -> Optional[Label]:
    """The label the customer may print: the current one, issued, with its PDF."""
    label = current_label(ret)
    if label is not None and label.status == "issued" and label.pdf:
        return label
    return None


def stored_pdf(number: str) -> tuple[str, bytes]:
    """(RMA number, PDF) of the label to serve for ``number`` (as typed), in one query: the
    bytes stored when the label was issued, the same on every download. 404 ``not_found``
    when there is no such return, no label yet (pending, failed) or only a voided one."""
    from .returns import get_return

    code = rma_number.parse(number)
    if code is None:
        raise NotFound("No return with this RMA number.")
    r, t = Return.__table__, Label.__table__
    # The current label (``current_label``): the newest one not voided.
    row = db.session.execute(
        select(t.c.status, t.c.pdf).select_from(r.join(t, t.c.return_id == r.c.id))
        .where(r.c.rma_code == code, t.c.status != "voided").order_by(t.c.id.desc()).limit(1)).first()
    if row is not None and row.status == "issued" and row.pdf:
        return format_number(code), row.pdf
    raise NotFound(missing_label_reason(get_return(number)))  # (a 404 of its own without a return)


def missing_label_reason(ret: Return) -> str:
    """Why ``downloadable`` gave nothing, in the words of a 404."""
    label = current_label(ret)
    if label is not None and label.status in ("voided", "expired"):
        return "This return's label was voided; it can no longer be used."
    return "This return has no label yet."


# --- the issue_labels job ---------------------------------------------------------------------

@dataclass(frozen=True)
class _Work:
    """What one claimed label needs from the carrier, read before the call."""

    label_id: int
    return_id: int
    kind: str  # "issue" | "void"
    carrier: str
    attempts: int
    created_at: datetime
    shipment_id: Optional[str] = None
    tracking_number: Optional[str] = None
    request: Optional[ShipmentRequest] = None
    document: Optional[dict[str, Any]] = None  # LabelDocument fields but the number and dates


def due_candidates(now: datetime):
    """Labels with a carrier call due at ``now``: pending ones to issue (retryable failures
    included: they stay pending), voided ones to void at the carrier. Reads ``ix_labels_due``."""
    t = Label.__table__
    return (select(t.c.id).where(t.c.next_attempt_at.is_not(None), t.c.next_attempt_at <= now,
                                 t.c.status.in_(("pending", "voided")))
            .order_by(t.c.next_attempt_at, t.c.id))


def issue_due(now: datetime, limit: int = 50) -> int:
    """The ``issue_labels`` job: issue the pending labels that are due at ``now`` and void at
    the carrier the voided ones that wait for it. Claims ``limit`` labels at a time and goes on
    until nothing is due or the run's time budget is used. Returns the number of labels issued.
    Carrier calls happen outside any transaction (see the module docstring)."""
    cfg = settings()
    table = Label.__table__
    lease = timedelta(seconds=int(cfg["JOB_LEASE_SECONDS"]))
    carriers: dict[str, Any] = {}
    budget = RunBudget()
    issued = 0
    try:
        while not budget.exhausted():
            claimed_at = wallclock()
            ids = claim_locked(table, due_candidates(now), now_wall=claimed_at, lease=lease, limit=limit)
            if not ids:
                break
            for position, label_id in enumerate(ids):
                work = _load(label_id, now)
                if work is None:
                    continue
                # Never start a carrier call that could still run when the claim expires.
                if STOP.is_set() or wallclock() + _call_budget(work.carrier, cfg) > claimed_at + lease:
                    if not STOP.is_set() and _call_budget(work.carrier, cfg) >= lease:
                        log.error("RMA_JOB_LEASE_SECONDS (%s) is shorter than what one %s label may take "
                                  "(%s s): raise it or lower the carrier's timeouts", lease.total_seconds(),
                                  work.carrier, _call_budget(work.carrier, cfg).total_seconds())
                    release(table, ids[position:])
                    return issued
                if work.kind == "void":
                    _void_at_carrier(work, carriers, now)
                elif _issue(work, carriers, now):
                    issued += 1
            if len(ids) < limit:
                break
    finally:
        for carrier in carriers.values():
            close = getattr(carrier, "close", None)
            if close is not None:
                close()
        db.session.rollback()
    return issued


def _call_budget(carrier: str, cfg: dict[str, Any]) -> timedelta:
    """The longest one label can take: the carrier's timeouts times its tries, twice (the
    shipment and the label download), plus rendering."""
    if carrier.lower() == SELF:
        return timedelta(seconds=_RENDER_BUDGET_SECONDS)
    prefix = f"CARRIER_{re.sub(r'[^A-Z0-9]+', '_', carrier.upper())}_"

    def number(key: str, default: float) -> float:
        try:
            return float(cfg.get(prefix + key) or default)
        except (TypeError, ValueError):
            return default

    per_try = number("CONNECT_TIMEOUT", 3.05) + number("READ_TIMEOUT", 10)
    tries = number("RETRIES", 3) + 1
    return timedelta(seconds=2 * per_try * tries + _RENDER_BUDGET_SECONDS)


def _retry_at(created_at: datetime, attempts: int, now: datetime) -> datetime:
    at = deadlines.next_attempt_at(created_at, attempts, now, give_up_after=_NEVER_GIVE_UP,
                                   base=RETRY_BASE, cap=RETRY_CAP)
    return at if at is not None else now + RETRY_CAP


def _carrier(name: str, carriers: dict[str, Any]):
    if name not in carriers:
        carriers[name] = build_carrier(name, settings())
    return carriers[name]


def _warehouse() -> Address:
    cfg = settings()
    return Address(name=cfg.get("WAREHOUSE_NAME") or f"{cfg.get('SHOP_NAME') or 'Shop'} Returns",
                   line1=cfg["WAREHOUSE_LINE1"], line2=cfg.get("WAREHOUSE_LINE2") or None,
                   postal_code=cfg["WAREHOUSE_POSTAL_CODE"], city=cfg["WAREHOUSE_CITY"],
                   country=str(cfg["WAREHOUSE_COUNTRY"]).upper())


def _valid_days() -> int:
    cfg = settings()
    value = cfg.get("LABEL_VALID_DAYS")
    return int(value if value not in (None, "") else cfg.get("LABEL_EXPIRY_DAYS", 28))


def _release_one(label_id: int, **values: Any) -> None:
    db.session.execute(update(Label).where(Label.id == label_id)
                       .values(locked_until=None, **values).execution_options(synchronize_session=False))
    db.session.commit()


def _load(label_id: int, now: datetime) -> Optional[_Work]:
    """Read what the carrier call needs and end the read transaction; None when the claimed
    label has nothing left to do (handled here)."""
    label = db.session.get(Label, label_id, populate_existing=True)
    if label is None:
        db.session.rollback()
        return None
    ret = label.ret
    base = dict(label_id=label.id, return_id=ret.id, carrier=label.carrier, attempts=label.attempts or 0,
                created_at=label.created_at)
    if label.status == "voided":
        if label.next_attempt_at is None or label.carrier.lower() == SELF:
            _release_one(label.id, next_attempt_at=None)
            return None
        # Without a shipment id, a call that may have created the shipment went unanswered: the
        # void asks the carrier for it again with the same reference first.
        work = _Work(kind="void", shipment_id=label.carrier_shipment_id, tracking_number=label.tracking_number,
                     request=None if label.carrier_shipment_id else _shipment_request(ret, label), **base)
        db.session.rollback()
        return work
    if label.status != "pending":
        _release_one(label.id, next_attempt_at=None)
        return None
    if ret.status != "authorized":
        # Received (or finished) without this label: nothing to ask the carrier for, but a
        # shipment an unanswered call may have created (our claim is ``locked_until`` now).
        void_at_carrier = label.carrier.lower() != SELF and bool(label.attempts)
        result = db.session.execute(update(Label).where(Label.id == label.id, Label.status == "pending")
                                    .values(status="voided", voided_at=now, locked_until=None,
                                            next_attempt_at=now if void_at_carrier else None)
                                    .execution_options(synchronize_session=False))
        if result.rowcount == 1:
            record(ret, "label_voided", ACTOR, now, data={"tracking_number": None,
                                                          "reason": f"the return is {ret.status}"})
        db.session.commit()
        return None
    order = ret.order
    request = _shipment_request(ret, label)
    sender, recipient = request.sender, request.recipient
    cfg = settings()
    same_carrier = label.carrier.lower() == str(cfg.get("CARRIER") or SELF).lower()
    document = dict(
        rma_number=format_number(ret.rma_code),
        carrier_name=(cfg.get("CARRIER_DISPLAY_NAME") if same_carrier else None) or label.carrier,
        service=label.service, sender=sender, recipient=recipient, order_number=order.order_number,
        items=[LabelItem(sku=i.sku, name=i.name, quantity=i.quantity, reason=i.reason) for i in ret.items],
        locale=ret.locale or "en", page_format=cfg.get("LABEL_FORMAT") or "4x6",
        qr_payload=format_number(ret.rma_code))
    work = _Work(kind="issue", request=request, document=document, **base)
    db.session.rollback()
    return work


def _shipment_request(ret: Return, label: Label) -> ShipmentRequest:
    """What the carrier is asked for ``label``; its reference is the carrier's idempotency key."""
    order = ret.order
    sender = Address(name=order.ship_name, line1=order.ship_line1, line2=order.ship_line2 or None,
                     postal_code=order.ship_postal_code, city=order.ship_city, country=order.ship_country)
    return ShipmentRequest(reference=f"{ret.rma_code}-{label.id}", sender=sender, recipient=_warehouse(),
                           weight_grams=None, service=label.service)


def _render(work: _Work, tracking_number: str, issued_at: datetime, expires_at: datetime) -> bytes:
    from zoneinfo import ZoneInfo

    from ..adapters.pdf import render_label_pdf  # WeasyPrint is imported on the first render only

    zone = ZoneInfo(settings().get("TIMEZONE") or "UTC")
    assert work.document is not None
    return render_label_pdf(LabelDocument(tracking_number=tracking_number, issued_at=issued_at.astimezone(zone),
                                          expires_at=expires_at.astimezone(zone), **work.document))


def _issue(work: _Work, carriers: dict[str, Any], now: datetime) -> bool:
    """Create the shipment, render if needed, store. True when the label was issued."""
    issued_at = now
    expires_at = issued_at + timedelta(days=_valid_days())
    try:
        carrier = _carrier(work.carrier, carriers)
        assert work.request is not None
        result = carrier.create_shipment(work.request)
    except CarrierError as exc:
        _store_failure(work, exc.message, exc.retryable, now)
        return False
    except ValueError as exc:  # a carrier setting missing or malformed (the message names it)
        _store_failure(work, f"The carrier {work.carrier} is not configured: {exc}.", True, now)
        return False
    except Exception:
        log.exception("label %s: carrier call failed unexpectedly", work.label_id)
        _store_failure(work, "Unexpected error while asking the carrier; see the service log.", True, now)
        return False
    try:
        pdf = result.label_pdf or _render(work, result.tracking_number, issued_at, expires_at)
    except Exception:
        log.exception("label %s: rendering failed", work.label_id)
        # The shipment exists at the carrier; the retry asks again with the same reference.
        _store_failure(work, "The label could not be rendered; see the service log.", True, now)
        return False
    return _store_issued(work, result, pdf, issued_at, expires_at, carriers, now)


def _store_issued(work: _Work, result: ShipmentResult, pdf: bytes, issued_at: datetime,
                  expires_at: datetime, carriers: dict[str, Any], now: datetime) -> bool:
    """One transaction: the label fully issued with its audit event and webhook, or — when
    the return moved on meanwhile — the shipment recorded on the voided label and voided."""
    for _ in range(3):
        try:
            # PostgreSQL: the return's row lock serialises this with cancel / expire / reissue,
            # which lock it first too. SQLite: the version bump below makes the later of two
            # racing writers fail (StaleDataError) instead of overwriting the other.
            ret = db.session.scalar(select(Return).where(Return.id == work.return_id).with_for_update()
                                    .execution_options(populate_existing=True))
            if ret is None or ret.status != "authorized":
                db.session.rollback()
                break
            done = db.session.execute(
                update(Label).where(Label.id == work.label_id, Label.status == "pending")
                .values(status="issued", tracking_number=result.tracking_number,
                        carrier_shipment_id=result.carrier_shipment_id, pdf=pdf, cost=result.cost,
                        currency=result.currency, issued_at=issued_at, expires_at=expires_at,
                        attempts=Label.attempts + 1, last_error=None, next_attempt_at=None, locked_until=None)
                .execution_options(synchronize_session=False))
            if done.rowcount != 1:
                db.session.rollback()
                break
            _touch(ret, now)
            db.session.flush()  # the version check
            db.session.get(Label, work.label_id, populate_existing=True)
            record(ret, "label_issued", ACTOR, now, data={
                "carrier": work.carrier, "tracking_number": result.tracking_number,
                "expires_at": rfc3339(expires_at),
                **({"cost": str(result.cost), "currency": result.currency} if result.cost is not None else {})})
            emit("return.label_issued", return_payload(ret, now), now, ret.id)
            db.session.commit()
            log.info("label %s issued: %s %s", work.label_id, work.carrier, result.tracking_number)
            return True
        except StaleDataError:
            db.session.rollback()
    _store_unneeded_shipment(work, result, carriers, now)
    return False


def _store_unneeded_shipment(work: _Work, result: ShipmentResult, carriers: dict[str, Any],
                             now: datetime) -> None:
    """The return was cancelled, received or given a new label while the carrier worked: keep
    the shipment's ids on the (voided) label and void it at the carrier right away."""
    ret = db.session.scalar(select(Return).where(Return.id == work.return_id).with_for_update())
    label = db.session.get(Label, work.label_id, populate_existing=True, with_for_update=True)
    if ret is None or label is None:
        db.session.rollback()
        return
    label.tracking_number = label.tracking_number or result.tracking_number
    label.carrier_shipment_id = label.carrier_shipment_id or result.carrier_shipment_id
    if label.status == "pending":
        label.status, label.voided_at = "voided", now
        record(ret, "label_voided", ACTOR, now, data={"tracking_number": label.tracking_number,
                                                      "reason": f"the return is {ret.status}"})
    label.attempts, label.last_error = 0, None
    void = label.status == "voided" and needs_carrier_void(label)
    label.next_attempt_at = now if void else None
    if not void:
        label.locked_until = None
    db.session.commit()
    if void:  # still ours: the claim holds
        _void_at_carrier(_Work(label_id=label.id, return_id=ret.id, kind="void", carrier=label.carrier,
                               attempts=0, created_at=now, shipment_id=label.carrier_shipment_id,
                               tracking_number=label.tracking_number), carriers, now)


def _store_failure(work: _Work, message: str, retryable: bool, now: datetime) -> None:
    """A failed attempt: retryable → still pending, retried later; otherwise failed. Written
    only if the label is still pending (a concurrent void wins)."""
    attempts = work.attempts + 1
    values: dict[str, Any] = {"attempts": attempts, "last_error": message, "locked_until": None}
    if retryable:
        values["next_attempt_at"] = _retry_at(work.created_at, attempts, now)
    else:
        values.update(status="failed", next_attempt_at=None)
    result = db.session.execute(update(Label).where(Label.id == work.label_id, Label.status == "pending")
                                .values(**values).execution_options(synchronize_session=False))
    if result.rowcount != 1:
        db.session.execute(update(Label).where(Label.id == work.label_id).values(locked_until=None)
                           .execution_options(synchronize_session=False))
    elif not retryable:
        ret = db.session.get(Return, work.return_id)
        record(ret, "label_failed", ACTOR, now, data={"carrier": work.carrier, "error": message})
    db.session.commit()
    log.log(logging.INFO if retryable else logging.WARNING, "label %s: %s (retryable=%s, attempt %s)",
            work.label_id, message, retryable, attempts)


def _void_at_carrier(work: _Work, carriers: dict[str, Any], now: datetime) -> None:
    """Tell the carrier a voided label's shipment is cancelled; retried with backoff. Without
    a shipment id (``may_have_shipment``), the carrier is first asked again with the label's
    reference: it gives back the shipment an unanswered call created, which is then voided; a
    refusal means there never was one, and nothing is left to void."""
    found: dict[str, Any] = {}
    shipment_id = work.shipment_id
    try:
        carrier = _carrier(work.carrier, carriers)
        if shipment_id is None:
            assert work.request is not None
            try:
                result = carrier.create_shipment(work.request)
            except CarrierError as exc:
                if exc.retryable:
                    raise
            else:
                shipment_id = result.carrier_shipment_id
                found = {"carrier_shipment_id": shipment_id, "tracking_number": result.tracking_number}
        if shipment_id is not None:
            carrier.void_shipment(shipment_id)
        error: Optional[str] = None
        retryable = False
    except CarrierError as exc:
        error, retryable = exc.message, exc.retryable
    except ValueError as exc:
        error, retryable = f"The carrier {work.carrier} is not configured: {exc}.", True
    except Exception:
        log.exception("label %s: void at the carrier failed unexpectedly", work.label_id)
        error, retryable = "Unexpected error while voiding at the carrier; see the service log.", True
    attempts = work.attempts + 1
    if error is None:
        values: dict[str, Any] = {"next_attempt_at": None, "last_error": None, "attempts": attempts}
    elif retryable:
        values = {"next_attempt_at": _retry_at(now, attempts, now), "last_error": error, "attempts": attempts}
    else:
        values = {"next_attempt_at": None, "last_error": f"Void refused: {error}", "attempts": attempts}
    db.session.execute(update(Label).where(Label.id == work.label_id, Label.status == "voided")
                       .values(locked_until=None, **values, **found).execution_options(synchronize_session=False))
    if shipment_id is not None and (error is None or not retryable):
        ret = db.session.get(Return, work.return_id)
        data = {"carrier": work.carrier, "tracking_number": found.get("tracking_number", work.tracking_number)}
        record(ret, "label_carrier_voided" if error is None else "label_void_failed", ACTOR, now,
               data=data if error is None else {**data, "error": error})
    db.session.commit()


# --- carrier tracking events ------------------------------------------------------------------

_CARRIER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")
SIGNATURE_HEADERS = ("RMA-Signature", "Carrier-Signature")


def carrier_secrets(carrier: str) -> list[str]:
    """The secrets ``carrier`` signs its events with (``RMA_CARRIER_<NAME>_SECRET``,
    comma-separated during a rotation); empty for an unknown carrier."""
    if not _CARRIER_NAME.fullmatch(carrier):
        return []
    raw = settings().get(f"CARRIER_{re.sub(r'[^A-Z0-9]+', '_', carrier.upper())}_SECRET")
    if not raw:
        return []
    values = raw if isinstance(raw, (list, tuple)) else str(raw).split(",")
    return [s.strip() for s in values if s and s.strip()]


def verify_carrier_signature(carrier: str, body: bytes, headers: Any, now: datetime) -> None:
    """401 ``unauthorized`` unless ``body`` is signed by ``carrier`` within the tolerance.
    An unknown carrier gets the same answer as a bad signature (carriers are not enumerable)."""
    tolerance = int(settings().get("CARRIER_EVENT_TOLERANCE_SECONDS") or 300)
    secrets = carrier_secrets(carrier)
    header = next((headers.get(h) for h in SIGNATURE_HEADERS if headers.get(h)), None)
    if not secrets or not signing.verify(secrets, body, header, now=now.timestamp(), tolerance=tolerance):
        raise ApiError(401, "unauthorized",
                       "Sign the body with the carrier's secret: 'RMA-Signature: t=<unix seconds>,v1=<hex "
                       "HMAC-SHA256 of \"<t>.<body>\">', t within "
                       f"{tolerance} s of now.")


def record_tracking_event(carrier: str, event: dict[str, Any], now: datetime) -> dict[str, Any]:
    """Store one tracking event of ``carrier`` and apply it, in one transaction.

    * duplicate ``(carrier, event_id)`` → nothing changes (``duplicate``: true);
    * unknown tracking number → stored unmatched (``matched``: false), nothing else;
    * the label's ``tracking_status`` moves only forward (``tracking.advances``): an older event
      arriving late is stored and moves nothing back;
    * a scan proving the carrier has the parcel (``tracking.is_first_scan``) sets
      ``Return.first_scan_at`` to the earliest such ``occurred_at`` (the proof of shipment of the
      refund deadline, even when it arrives after a later one) and, on an authorized return,
      applies the state machine's ``ship`` (→ ``in_transit``, webhook ``return.in_transit``);
    * ``delivered`` writes the audit event ``parcel_delivered``; receiving stays an agent's act.

    Events of a voided label are stored and move that label's tracking status, but not the
    return (an audit event ``voided_label_scanned`` tells the agents when such a parcel moves).
    """
    carrier = carrier.lower()
    occurred_at: datetime = event["occurred_at"]
    status = tracking.normalise(event["status"])
    label_id = db.session.scalar(
        select(Label.id).where(Label.tracking_number == event["tracking_number"],
                               func.lower(Label.carrier) == carrier).order_by(Label.id.desc()).limit(1))
    ret = label = None
    if label_id is not None:
        # Lock order as everywhere: the return, then its label.
        return_id = db.session.scalar(select(Label.return_id).where(Label.id == label_id))
        ret = db.session.scalar(select(Return).where(Return.id == return_id).with_for_update()
                                .execution_options(populate_existing=True))
        label = db.session.get(Label, label_id, populate_existing=True, with_for_update=True)
    table = CarrierEvent.__table__
    inserted = db.session.execute(insert_ignore(table, {
        "carrier": carrier, "event_id": event["event_id"], "label_id": label_id,
        "tracking_number": event["tracking_number"], "raw_status": event["status"][:64], "status": status,
        "occurred_at": occurred_at, "received_at": now,
    }).returning(table.c.id)).scalar_one_or_none()
    outcome = {"event_id": event["event_id"], "duplicate": inserted is None, "matched": label is not None,
               "status": status, "applied": False}
    if inserted is None:
        db.session.rollback()
        return outcome
    if label is not None and ret is not None and status is not None:
        outcome["applied"] = _apply(ret, label, carrier, event, status, occurred_at, now)
    db.session.commit()
    return outcome


def _apply(ret: Return, label: Label, carrier: str, event: dict[str, Any], status: str,
           occurred_at: datetime, now: datetime) -> bool:
    actor = f"carrier:{carrier}"
    data = {"tracking_number": label.tracking_number, "event_id": event["event_id"], "status": status,
            "occurred_at": rfc3339(occurred_at)}
    before = label.tracking_status
    advanced = tracking.advances(before, status)
    if advanced:
        label.tracking_status, label.tracking_updated_at = status, occurred_at
    if label.status == "voided":
        if advanced and not tracking.is_first_scan(before) and tracking.is_first_scan(status):
            record(ret, "voided_label_scanned", actor, now, data=data)
        if advanced:
            _touch(ret, now)
        return advanced
    changed = advanced
    if tracking.is_first_scan(status):
        if ret.first_scan_at is None or occurred_at < ret.first_scan_at:
            ret.first_scan_at = occurred_at
            changed = True
        if ret.status == "authorized":
            transition(ret, "ship", actor, now, data=data)
            changed = True
    if advanced and status == tracking.DELIVERED:
        record(ret, "parcel_delivered", actor, now, data=data)
    if changed:
        _touch(ret, now)
    return changed


def _touch(ret: Return, now: datetime) -> None:
    """``updated_at`` = now, always bumping the version: on SQLite, where nothing is locked
    while reading, the later of two racing writers of one return then fails (StaleDataError →
    409, the carrier retries) instead of overwriting the other (e.g. moving a label back)."""
    flag_modified(ret, "updated_at")
    ret.updated_at = now

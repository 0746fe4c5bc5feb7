"""The scheduler's jobs, declared in ONE table.

Every job is ``function(now) -> count`` (what it did: reminders sent, disputes assigned,
labels issued, webhooks delivered, mails sent, rows purged). It runs inside an application context, claims its
work in the database (``services/claims.py``) and is safe to run at any moment, twice, in
several processes at once, and to be killed at any point:

* reminders are recorded under a unique key in the same transaction as the messages they
  queue (never twice, never lost: a killed transaction is rolled back and redone);
* webhooks and mails are claimed with an expiring lease and marked sent in a committed
  transaction right after the receiver accepted them (the only repeat possible is a process
  killed between the receiver's "OK" and that commit; the repeat carries the same event id /
  Message-ID).

``rma scheduler`` runs each job every ``interval`` (``scheduler.py``);
``rma run-jobs --once [--now …]`` runs them all once, in the order of the table: the sweeps
that queue messages come before the jobs that send them.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Optional, Union

from .services import settings

log = logging.getLogger(__name__)


def refund_reminders(now: datetime) -> int:
    from .services.reminders import refund_sweep
    return refund_sweep(now)


def label_reminders(now: datetime) -> int:
    from .services.reminders import label_sweep
    return label_sweep(now)


def dispute_reminders(now: datetime) -> int:
    from .services.reminders import dispute_sweep
    return dispute_sweep(now)


def assign_disputes(now: datetime) -> int:
    from .services.disputes import assign_waiting
    return assign_waiting(now, actor="scheduler")


def issue_labels(now: datetime) -> int:
    from .services.labels import issue_due
    return issue_due(now)


def deliver_webhooks(now: datetime) -> int:
    from .services.webhooks import deliver_due
    return deliver_due(now)


def send_mail(now: datetime) -> int:
    from .services.notifications import send_due
    return send_due(now)


def purge_idempotency(now: datetime) -> int:
    from .services.idempotency import purge
    return purge(now, int(settings()["IDEMPOTENCY_TTL_HOURS"]))


@dataclass(frozen=True)
class Job:
    name: str
    interval: timedelta
    run: Callable[[datetime], int]
    description: str


JOBS: tuple[Job, ...] = (
    Job("refund_reminders", timedelta(minutes=1), refund_reminders,
        "refund due in 3 d / 1 d → handler or team; overdue, then daily → also admins (+ webhooks)"),
    Job("label_reminders", timedelta(minutes=5), label_reminders,
        "label unused 7 d → customer; 28 d → the return expires, the label is voided"),
    Job("assign_disputes", timedelta(minutes=5), assign_disputes,
        "give disputes waiting without a handler to an available one"),
    Job("dispute_reminders", timedelta(minutes=5), dispute_reminders,
        "customer waiting for the handler 48 h → handler; 96 h → admins"),
    Job("issue_labels", timedelta(seconds=30), issue_labels,
        "issue the pending labels with the carrier (retries with backoff); void voided ones at the carrier"),
    Job("deliver_webhooks", timedelta(seconds=5), deliver_webhooks,
        "POST due webhook deliveries (signed, in order per return, backoff for 3 days)"),
    Job("send_mail", timedelta(seconds=15), send_mail, "send queued mails over SMTP (backoff for 3 days)"),
    Job("purge_idempotency", timedelta(hours=1), purge_idempotency, "forget Idempotency-Keys older than the TTL"),
)
JOBS_BY_NAME = {job.name: job for job in JOBS}


def run_job(job: Job, now: datetime) -> int:
    """Run one job (inside an application context); the session is clean afterwards."""
    from .extensions import db
    try:
        return job.run(now)
    finally:
        db.session.rollback()
        db.session.remove()


def run_once(now: datetime, names: Optional[Iterable[str]] = None) -> list[tuple[str, Union[int, Exception]]]:
    """Run every job (or the ``names`` given) once at ``now``, in table order. A failing job
    is logged and reported; the others still run."""
    wanted = set(names) if names else None
    if wanted:
        unknown = wanted - set(JOBS_BY_NAME)
        if unknown:
            raise ValueError(f"unknown job(s): {', '.join(sorted(unknown))}")
    results: list[tuple[str, Union[int, Exception]]] = []
    for job in JOBS:
        if wanted is not None and job.name not in wanted:
            continue
        try:
            results.append((job.name, run_job(job, now)))
        except Exception as exc:  # one broken job must not stop the others
            log.exception("job %s failed", job.name)
            results.append((job.name, exc))
    return results

"""``flask rma scheduler``: the jobs of ``jobs.JOBS``, each on its interval, in one process.

APScheduler 3 ``BlockingScheduler``: one interval job per row of the table, each run inside
``app.app_context()`` with ``now = clock.now()``. A job never overlaps itself in a process
(``max_instances=1``); runs missed while busy are coalesced into one. Any number of these
processes may run against one database (see ``jobs.py``).

SIGTERM / SIGINT: no new runs start, running jobs stop after their current batch (their
claimed-but-unsent rows are given back), then the process exits 0.
"""
from __future__ import annotations

import logging
import signal
from datetime import datetime, timezone
from typing import Optional

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.blocking import BlockingScheduler
from flask import Flask

from . import clock
from .jobs import JOBS, Job, run_job
from .services.claims import STOP

log = logging.getLogger(__name__)


def _runner(app: Flask, job: Job):
    def run() -> None:
        if STOP.is_set():
            return
        with app.app_context():
            now = clock.now()
            try:
                count = run_job(job, now)
            except Exception:
                log.exception("job %s failed at %s", job.name, clock.rfc3339(now))
                return
            if count:
                log.info("%s: %s", job.name, count)
    run.__name__ = job.name
    return run


def build_scheduler(app: Flask, jobs: tuple[Job, ...] = JOBS,
                    executor: Optional[ThreadPoolExecutor] = None) -> BlockingScheduler:
    scheduler = BlockingScheduler(
        timezone=timezone.utc,
        executors={"default": executor or ThreadPoolExecutor(max_workers=max(1, len(jobs)))},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
    )
    first = datetime.now(timezone.utc)
    for job in jobs:
        scheduler.add_job(_runner(app, job), "interval", seconds=job.interval.total_seconds(), id=job.name,
                          name=job.name, next_run_time=first)
    return scheduler


def run_scheduler(app: Flask, jobs: tuple[Job, ...] = JOBS, *, install_signals: bool = True) -> None:
    """Run until SIGTERM/SIGINT; returns after the running jobs finished their batch."""
    if not log.isEnabledFor(logging.DEBUG):  # APScheduler logs every run at INFO: too chatty
        logging.getLogger("apscheduler").setLevel(logging.WARNING)
    executor = ThreadPoolExecutor(max_workers=max(1, len(jobs)))
    scheduler = build_scheduler(app, jobs, executor)
    STOP.clear()

    def stop(signum: int, _frame: Optional[object]) -> None:
        log.info("scheduler: %s received, finishing the running jobs", signal.Signals(signum).name)
        STOP.set()
        if scheduler.running:
            scheduler.shutdown(wait=False)

    if install_signals:
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
    log.info("scheduler: started with %s", ", ".join(f"{j.name} every {j.interval}" for j in jobs))
    scheduler.start()  # blocks until shutdown
    # shutdown(wait=False) returned at once (a signal handler must not block); wait here for
    # the jobs still running to finish their batch.
    executor.shutdown(wait=True)
    log.info("scheduler: stopped")

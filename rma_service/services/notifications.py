"""Mail through the outbox: queued in the caller's transaction, sent by the scheduler's
``send_mail`` job after the commit.

A mail is rendered when it is queued and stored as subject, text and html — except the
customer's confirmation of a new return: POST /api/v1/returns is the API's busiest write and
its three Jinja renders were about 8 % of its CPU. That one is queued with ``render_later``:
the row holds template, locale and a JSON context (subject NULL), and ``send_due`` renders it
before its first attempt and stores the result in the row, so that every retry sends the same
mail and the admin sees what was sent. The context is frozen when the mail is queued (shop
name and base URL included): rendered later, the mail says what it would have said then.

Templates live in ``templates/email/<locale>/<name>.subject.txt``, ``.txt`` and ``.html``
(autoescaped), in English and French. Each mail gets a unique ``Message-ID`` when it is
queued and keeps it on every retry, so a receiving server (or person) can tell a retry from a
new mail.

Delivery guarantee: a mail is marked ``sent`` in its own committed transaction as soon as the
SMTP server accepted it. A scheduler killed between the server's "250" and that commit sends
it again after the lease (at-least-once, same ``Message-ID``); nothing else sends twice.
"""
from __future__ import annotations

import logging
import math
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Optional

from babel.dates import format_date, format_datetime
from babel.numbers import format_currency, format_decimal
from flask import current_app
from sqlalchemy import bindparam, select, update

from ..adapters.mail import MailError, MailSession, SmtpSettings
from ..domain.deadlines import next_attempt_at
from ..domain.rma_number import format_number
from ..extensions import db
from ..models import Agent, MailMessage, Return
from ..redact import for_log
from . import settings
from .claims import STOP, RunBudget, claim_locked, select_ids, wallclock
from .newrows import new

log = logging.getLogger(__name__)

LOCALES = ("en", "fr")
TEMPLATES = ("return_created", "label_unused_reminder", "return_expired", "refund_due_soon",
             "refund_overdue", "dispute_no_reply",
             # disputes (services/disputes.py)
             "dispute_assigned", "dispute_message_to_handler", "dispute_message_to_customer", "dispute_resolved")
# Sent automatically: RFC 3834, so that out-of-office replies stay quiet.
HEADERS = {"Auto-Submitted": "auto-generated"}


def _locale(locale: Optional[str]) -> str:
    locale = (locale or "en").lower()[:2]
    return locale if locale in LOCALES else "en"


def _helpers(locale: str) -> dict[str, Any]:
    """Formatting functions the templates call, bound to the mail's language."""
    return {
        "format_date": lambda value: format_date(value, "long", locale=locale) if value else "",
        "format_datetime": lambda value: (format_datetime(value, "d MMMM y HH:mm 'UTC'", tzinfo=value.tzinfo,
                                                          locale=locale) if value else ""),
        "format_money": lambda amount, currency: format_currency(Decimal(amount), currency, locale=locale),
        "format_percent": lambda rate: format_decimal(Decimal(rate) * 100, "#,##0.##", locale=locale) + " %",
    }


def _shop() -> dict[str, Any]:
    """What every template may show of the shop (a queued context may carry its own)."""
    cfg = settings()
    return {"shop_name": cfg["SHOP_NAME"], "base_url": cfg["BASE_URL"].rstrip("/")}


def _render_context(locale: str, context: dict[str, Any]) -> dict[str, Any]:
    return {**_shop(), "locale": locale, **_helpers(locale), **context}


def _subject(env, base: str, ctx: dict[str, Any]) -> str:
    subject = env.get_template(f"{base}.subject.txt").render(ctx)
    return " ".join(subject.split())[:300]  # one line: no header injection through a name


def render(template: str, locale: str, context: dict[str, Any]) -> tuple[str, str, str]:
    """(subject, text, html) of a template in ``locale`` (unknown locales fall back to English)."""
    locale = _locale(locale)
    ctx = _render_context(locale, context)
    env = current_app.jinja_env
    base = f"email/{locale}/{template}"
    subject = _subject(env, base, ctx)
    text = env.get_template(f"{base}.txt").render(ctx).strip() + "\n"
    html = env.get_template(f"{base}.html").render(ctx)  # autoescaped (.html)
    return subject, text, html


def render_subject(template: str, locale: str, context: dict[str, Any]) -> str:
    """The subject alone (the admin shows a queued mail before the scheduler renders it)."""
    locale = _locale(locale)
    return _subject(current_app.jinja_env, f"email/{locale}/{template}", _render_context(locale, context))


# What a context queued with ``render_later`` may hold: what JSON gives back unchanged. Exact
# types: a str subclass (Markup, an Enum) would come back as a plain str, a tuple as a list.
_JSON_SCALARS = frozenset({str, int, float, bool, type(None)})


def _check_json(value: Any, path: str = "context") -> None:
    """Refuse (TypeError, naming the key) a value the row's JSON column would not give back
    as it is: the mail rendered later must be the mail that would be rendered now."""
    kind = type(value)
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise TypeError(f"{path}: key {key!r} is not a string; a mail queued with render_later "
                                f"needs a JSON context")
            _check_json(item, f"{path}.{key}")
    elif kind is list:
        for i, item in enumerate(value):
            _check_json(item, f"{path}[{i}]")
    elif kind not in _JSON_SCALARS or (kind is float and not math.isfinite(value)):
        raise TypeError(f"{path} is {kind.__name__} {value!r:.40}, which JSON does not carry unchanged; a mail "
                        f"queued with render_later needs str, int, float, bool, None, list and dict values "
                        f"(dates and amounts as strings, as in representation.return_payload)")


def _message_id() -> str:
    domain = str(settings()["SMTP_SENDER"]).rpartition("@")[2] or "rma.invalid"
    return f"<{uuid.uuid4().hex}.rma@{domain}>"


def enqueue_mail(to: str, template: str, locale: str, context: dict[str, Any], now: datetime,
                 return_id: Optional[int] = None, *, ret: Optional[Return] = None,
                 render_later: bool = False) -> MailMessage:
    """Render ``template`` and queue it in the current transaction (the caller commits).
    Pass ``ret`` rather than ``return_id`` for a return that may not be flushed yet.

    ``render_later``: queue it unrendered (subject NULL); ``send_due`` renders it before the
    first attempt. ``context`` must then be JSON as it is (str, int, float, bool, None, list,
    dict with str keys; TypeError otherwise), and must not change afterwards."""
    locale = _locale(locale)
    values = {"message_id": _message_id(), "to": to, "template": template, "locale": locale, "return_id": return_id,
              "status": "pending", "attempts": 0, "next_attempt_at": now, "created_at": now}
    if render_later:
        _check_json(context)
        values["context"] = {**_shop(), **context}
    else:
        values["subject"], values["text"], values["html"] = render(template, locale, context)
    if ret is not None:
        values["ret"] = ret
    return new(MailMessage, values)


# --- who gets staff mail --------------------------------------------------------------------

def team_email() -> str:
    cfg = settings()
    return cfg.get("TEAM_EMAIL") or cfg["SMTP_SENDER"]


def staff_locale() -> str:
    return _locale(settings().get("STAFF_LOCALE"))


def admin_emails() -> list[str]:
    """Active admins; the team address when there is none (a reminder never goes nowhere)."""
    emails = list(db.session.scalars(select(Agent.email).where(Agent.role == "admin", Agent.active.is_(True))
                                     .order_by(Agent.id)))
    return emails or [team_email()]


def return_handler(ret: Return) -> Optional[Agent]:
    """The dispute handler of the return (its latest dispute with one), if any and active."""
    for dispute in reversed(ret.disputes):
        if dispute.handler is not None and dispute.handler.active:
            return dispute.handler
    return None


# --- contexts -------------------------------------------------------------------------------

def return_context(ret: Return, now: datetime, payload: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """What every return mail may show; ``payload`` is ``representation.return_payload``."""
    from .representation import return_payload
    payload = payload or return_payload(ret, now)
    return {
        "rma_number": format_number(ret.rma_code),
        "customer_name": ret.customer_name,
        "customer_email": ret.customer_email,
        "order_number": payload["order_number"],
        "status": ret.status,
        "items": payload["items"],
        "label": payload["label"],
        "refund": payload["refund"],
        "status_url": payload["links"]["status_page"],
        "admin_url": f"{settings()['BASE_URL'].rstrip('/')}/admin/",
    }


def notify_return_created(ret: Return, now: datetime, payload: Optional[dict[str, Any]] = None) -> MailMessage:
    """The customer's confirmation, with the link to the status page (queued, not sent; not
    rendered either: the scheduler renders it, out of the request)."""
    return enqueue_mail(ret.customer_email, "return_created", ret.locale, return_context(ret, now, payload), now,
                        ret=ret, render_later=True)


class ShownMail:
    """A mail as the admin's return page shows it: the row, with the subject a mail not
    rendered yet will have (rendered for display only; the row is not changed)."""

    def __init__(self, mail: MailMessage) -> None:
        self._mail = mail
        self.subject = mail.subject if mail.subject is not None else _display_subject(mail)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._mail, name)


def _display_subject(mail: MailMessage) -> str:
    try:
        return render_subject(mail.template, mail.locale, mail.context or {})
    except Exception as exc:  # shown as its template: the page must open whatever the row holds
        log.warning("mail %s: no subject to show (%s): %s", mail.id, mail.template, for_log(exc))
        return f"({mail.template or 'mail'}, not rendered)"


def mails_of_return(return_id: int) -> list[ShownMail]:
    """Every mail about a return, oldest first (the admin's return page)."""
    return [ShownMail(mail) for mail in db.session.scalars(
        select(MailMessage).where(MailMessage.return_id == return_id).order_by(MailMessage.id))]


def send_again(mail_id: int, return_id: int, now: datetime) -> MailMessage:
    """Queue a failed mail again (the address fixed, the SMTP server back): a new round of
    attempts with the same ``Message-ID``. Only a ``failed`` mail of that return."""
    from ..errors import ApiError
    mail = db.session.get(MailMessage, mail_id)
    if mail is None or mail.return_id != return_id:
        raise ApiError(404, "not_found", "No such mail for this return.")
    if mail.status != "failed":
        raise ApiError(409, "conflict", "Only a mail that failed can be sent again.")
    mail.status, mail.attempts, mail.first_attempt_at, mail.next_attempt_at = "pending", 0, None, now
    mail.locked_until = None
    db.session.commit()
    return mail


# --- the send_mail job ----------------------------------------------------------------------

def smtp_settings() -> SmtpSettings:
    cfg = settings()
    return SmtpSettings(host=str(cfg["SMTP_HOST"]), port=int(cfg["SMTP_PORT"]),
                        username=cfg.get("SMTP_USERNAME") or None, password=cfg.get("SMTP_PASSWORD") or None,
                        use_tls=bool(cfg.get("SMTP_STARTTLS")), sender=str(cfg["SMTP_SENDER"]),
                        timeout=float(cfg.get("SMTP_TIMEOUT") or 10))


@dataclass(frozen=True)
class _Claimed:
    id: int
    to: str
    subject: str
    text: str
    html: Optional[str]
    message_id: str
    attempts: int
    first_attempt_at: Optional[datetime]


def send_due(now: datetime) -> int:
    """Send the mails that are due, several SMTP connections at once; returns how many were
    handed to the SMTP server. A refusal is retried with the webhook backoff for 3 days from
    the first attempt, then the mail is ``failed``."""
    cfg = settings()
    table = MailMessage.__table__
    lease = timedelta(seconds=int(cfg["JOB_LEASE_SECONDS"]))
    smtp = smtp_settings()
    # An SMTP conversation is several commands, each bounded by the timeout: never start one
    # that could still run when the claim expires.
    margin = timedelta(seconds=smtp.timeout * 3 + 5)
    if lease <= margin:
        raise RuntimeError(f"RMA_JOB_LEASE_SECONDS ({lease.total_seconds():.0f}) must exceed 3 × "
                           f"RMA_SMTP_TIMEOUT + 5 s ({margin.total_seconds():.0f})")
    engine = db.engine  # worker threads have no app context: they get the engine itself
    # One SMTP connection per sending thread for the whole run, not one per mail.
    local = threading.local()
    sessions: list[MailSession] = []
    sessions_lock = threading.Lock()

    def session() -> MailSession:
        if not hasattr(local, "session"):
            local.session = MailSession(smtp)
            with sessions_lock:
                sessions.append(local.session)
        return local.session

    budget = RunBudget()
    sent = 0
    try:
        with ThreadPoolExecutor(max(1, int(cfg["MAIL_CONCURRENCY"])), thread_name_prefix="mail") as pool:
            while not budget.exhausted():
                candidates = (select_ids(table).where(table.c.status == "pending", table.c.next_attempt_at <= now)
                              .order_by(table.c.next_attempt_at))  # the index's order: a LIMIT stops early
                claimed_at = wallclock()
                ids = claim_locked(table, candidates, now_wall=claimed_at, lease=lease,
                                   limit=int(cfg["JOB_BATCH_SIZE"]))
                if not ids:
                    break
                rows = db.session.execute(select(table).where(table.c.id.in_(ids)).order_by(table.c.id)).all()
                db.session.rollback()  # end the read transaction: sends happen outside any
                claimed = _rendered(engine, rows, now)
                deadline = claimed_at + lease - margin
                outcomes = list(pool.map(lambda c: _send_one(engine, session, c, now, deadline), claimed))
                sent += outcomes.count("sent")
                if "released" in outcomes:
                    break  # out of time (or stopping): the next run takes the rest
    finally:
        for s_ in sessions:
            s_.close()
    return sent


def _rendered(engine, rows: list, now: datetime) -> list[_Claimed]:
    """The claimed rows as mails to send. Those queued unrendered (subject NULL) are rendered
    here, in the job's thread (the one with the application context), and stored in their rows
    in one committed transaction before any is sent: retries send the same mail, and the admin
    sees what was sent. A mail that cannot be rendered (template missing, bad context) is
    ``failed`` at once with the reason, like an address the server can never accept; the
    others go on."""
    table = MailMessage.__table__
    claimed: list[_Claimed] = []
    stored: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    for r in rows:
        subject, text, html = r.subject, r.text, r.html
        if subject is None or text is None:
            try:
                if not r.template:
                    raise LookupError("the mail has neither a subject and text nor a template")
                subject, text, html = render(r.template, r.locale, r.context or {})
            except Exception as exc:  # whatever the template or the context does wrong
                error = f"could not render template {r.template} ({r.locale}): {type(exc).__name__}: {exc}"
                failed.append({"b_id": r.id, "attempts": r.attempts + 1, "first_attempt_at": r.first_attempt_at or now,
                               "last_error": error[:500]})
                log.warning("mail %s to %s failed for good: %s", r.id, for_log(r.to), for_log(error))
                continue
            stored.append({"b_id": r.id, "subject": subject, "text": text, "html": html})
        claimed.append(_Claimed(r.id, r.to, subject, text, html, r.message_id, r.attempts, r.first_attempt_at))
    if stored or failed:
        with engine.begin() as conn:
            if stored:
                conn.execute(update(table).where(table.c.id == bindparam("b_id"), table.c.subject.is_(None)), stored)
            if failed:
                conn.execute(update(table).where(table.c.id == bindparam("b_id"), table.c.status == "pending")
                             .values(status="failed", locked_until=None), failed)
    return claimed


def _send_one(engine, session: Callable[[], MailSession], mail: _Claimed, now: datetime, deadline: datetime) -> str:
    """Send one claimed mail: "sent", "failed" (an attempt that failed) or "released"."""
    table = MailMessage.__table__
    if wallclock() > deadline or STOP.is_set():
        # Too late to start a send that could outlive the claim (or shutting down): give it back.
        with engine.begin() as conn:
            conn.execute(update(table).where(table.c.id == mail.id).values(locked_until=None))
        return "released"
    try:
        session().send(mail.to, mail.subject, mail.text, mail.html, message_id=mail.message_id, headers=HEADERS)
    except (MailError, ValueError) as exc:
        attempts = mail.attempts + 1
        first = mail.first_attempt_at or now
        retry_at = None if isinstance(exc, ValueError) else next_attempt_at(first, attempts, now)
        values: dict[str, Any] = {"attempts": attempts, "first_attempt_at": first, "last_error": str(exc)[:500],
                                  "locked_until": None}
        if retry_at is None:
            values["status"] = "failed"
            log.warning("mail %s to %s failed for good: %s", mail.id, for_log(mail.to), for_log(exc))
        else:
            values["next_attempt_at"] = retry_at
            log.info("mail %s to %s failed (attempt %s), retry at %s: %s", mail.id, for_log(mail.to), attempts,
                     retry_at, for_log(exc))
        with engine.begin() as conn:
            conn.execute(update(table).where(table.c.id == mail.id, table.c.status == "pending").values(**values))
        return "failed"
    # Accepted by the server: record it at once (the at-least-once window is this commit).
    with engine.begin() as conn:
        conn.execute(update(table).where(table.c.id == mail.id).values(
            status="sent", sent_at=now, attempts=mail.attempts + 1, first_attempt_at=mail.first_attempt_at or now,
            last_error=None, locked_until=None))
    return "sent"

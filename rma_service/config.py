"""Configuration: the only module that reads ``os.environ``.

Every setting is an ``RMA_<NAME>`` environment variable; the table of them is in the README
and is generated from ``SETTINGS`` below (``flask rma settings`` prints it). ``create_app``
takes an optional mapping of overrides (tests pass theirs there).
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
INSTANCE = ROOT / "instance"


def _bool(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _list(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _number(kind: type, low: Any, high: Any = None, places: int | None = None) -> Callable[[str], Any]:
    """A parser of ``kind`` (int, float, Decimal) that refuses values outside [low, high] (and,
    for a Decimal, with more than ``places`` decimals): a negative window, a restocking fee of
    200 % or a dispute capacity of 0 would otherwise start a service that misbehaves (or answers
    500) much later, far from the typo."""
    def parse(value: str) -> Any:
        try:
            number = kind(value.strip())
        except (ValueError, ArithmeticError):
            raise ValueError(f"not a number: {value.strip()!r}") from None
        if (kind is not int and not math.isfinite(number)) or number < low or (high is not None and number > high):
            raise ValueError(f"{value.strip()} is out of range ({low} to {high if high is not None else '…'})")
        if places is not None and number != number.quantize(Decimal(1).scaleb(-places)):
            raise ValueError(f"{value.strip()} has more than {places} decimal places")
        return number
    return parse


def _days_list(value: str) -> list[int]:
    return [_number(int, 1)(x) for x in _list(value)]


def _carrier_name(value: str) -> str:
    value = value.strip()
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}", value):
        raise ValueError("RMA_CARRIER must be `self` or a carrier name of letters, digits, `-` and `_` (at most 32)")
    return value


def _env(value: str) -> str:
    """``Production`` or ``prod`` must not run as a third mode that requires the secret key
    but drops the Secure cookies: only the two names the settings table gives are accepted."""
    value = value.strip().lower()
    if value not in ("development", "production"):
        raise ValueError(f"RMA_ENV must be development or production, not {value!r}")
    return value


def _label_format(value: str) -> str:
    value = value.strip().lower()
    if value not in ("4x6", "a4"):
        raise ValueError(f"RMA_LABEL_FORMAT must be 4x6 or a4, not {value!r}")
    return value


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    parse: Callable[[str], Any]
    doc: str


SETTINGS: list[Setting] = [
    Setting("ENV", "development", _env, "`development` or `production` (any other value is refused). Production requires `RMA_SECRET_KEY` and sets secure cookies; `flask rma demo-data` refuses to run there without `--force`."),
    Setting("SECRET_KEY", None, str, "Signs sessions, CSRF and status-page tokens. Required in production: at least 32 characters, not an example value; make one with `python -c \"import secrets; print(secrets.token_urlsafe(48))\"`."),
    Setting("DATABASE_URL", f"sqlite:///{INSTANCE / 'rma.sqlite3'}", str, "SQLAlchemy URL; `postgresql+psycopg://user@host/db` selects PostgreSQL."),
    Setting("BASE_URL", "http://127.0.0.1:5000", str, "Public base URL, used in links (API `links`, mails, status pages)."),
    Setting("SHOP_NAME", "Demo Shop", str, "Shown on pages, mails and labels."),
    Setting("MAX_CONTENT_LENGTH", 1_048_576, _number(int, 1024), "Largest request body in bytes (API); larger → 413 `payload_too_large`."),
    Setting("RETURN_WINDOW_DAYS", 30, _number(int, 1), "Return window, counted from delivery."),
    Setting("NON_RETURNABLE_CATEGORIES", ["gift_card", "hygiene", "perishable", "final_sale"], _list, "Comma-separated order-line categories that cannot be returned."),
    Setting("RETURN_SHIPPING_FEE", Decimal("5.90"), _number(Decimal, 0, places=2), "Return shipping fee deducted when the customer pays return shipping (reasons that are not the shop's fault)."),
    Setting("RESTOCKING_FEE_RATE", Decimal("0"), _number(Decimal, 0, 1, places=4), "Restocking fee as a fraction of the items' value for customer-fault reasons (e.g. `0.10`)."),
    Setting("APPROVAL_THRESHOLD", Decimal("500.00"), _number(Decimal, 0, places=2), "Returns worth more than this need an agent's approval; below it they are authorized automatically."),
    Setting("RESOLUTIONS", ["refund", "exchange", "store_credit"], _list, "Resolutions the shop offers."),
    Setting("REFUND_DEADLINE_DAYS", 14, _number(int, 1), "Days to refund (EU Directive 2011/83/EU art. 13)."),
    Setting("LEGAL_INTEREST_RATE", Decimal("0.0721"), _number(Decimal, 0, 1, places=4), "French legal interest rate (fraction) applied to refunds up to 10 days late (L242-4)."),
    Setting("DISPUTE_CAPACITY", 20, _number(int, 1), "Most open disputes one handler carries; a dispute opened when every handler is full waits unassigned until one has room."),
    Setting("IDEMPOTENCY_TTL_HOURS", 24, _number(int, 1), "How long an `Idempotency-Key` is remembered."),
    Setting("RATELIMIT_ENABLED", True, _bool, "Turn rate limiting off (`false`) only for load tests."),
    Setting("RATELIMIT_STORAGE_URI", "memory://", str, "Flask-Limiter storage. `memory://` counts per worker process (with `make run`'s 2 workers a client gets twice the limit); set `redis://127.0.0.1:6379` when several workers run."),
    Setting("RATELIMIT_API", "600/minute", str, "Rate limit per API key."),
    Setting("RATELIMIT_LOGIN", "5/minute", str, "Admin sign-in attempts per IP address and email (and at most 30/minute per IP address)."),
    # Customer pages (/returns/)
    Setting("RATELIMIT_WEB", "10/minute", str, "Rate limit of the customer pages' order lookups and return submissions, counted per client address and, separately, per order number (a friendly page answers 429)."),
    Setting("PHOTO_MAX_BYTES", 10_485_760, _number(int, 1024), "Largest photo a customer may attach to an item, in bytes. JPEG, PNG and WebP only; each photo is re-encoded (metadata such as GPS position removed) before it is stored."),
    Setting("PHOTO_MAX_SIDE", 2000, _number(int, 100), "Photos are scaled down to at most this many pixels on their longer side when stored."),
    Setting("PHOTOS_PER_ITEM", 3, _number(int, 0, 20), "Photos a customer may attach to each returned item."),
    Setting("UPLOAD_MAX_BYTES", 41_943_040, _number(int, 1024), "Largest request body of the customers' return form with its photos, in bytes (the API keeps `RMA_MAX_CONTENT_LENGTH`)."),
    Setting("TIMEZONE", "Europe/Paris", str, "Time zone in which customers read dates and times on the pages (IANA name)."),
    Setting("LOG_LEVEL", "INFO", str, "Logging level."),
    Setting("PROXY_COUNT", 0, _number(int, 0, 10), "Reverse proxies in front of the service (nginx, a load balancer) whose `X-Forwarded-For`, `-Proto` and `-Host` are trusted. With 0 the client address is the connecting one: behind a proxy every client would share the proxy's address, and with it the per-address rate limits of sign-in and the customer pages."),
    # Mail (sent by the scheduler from the outbox)
    Setting("SMTP_HOST", "localhost", str, "SMTP server the scheduler hands mail to."),
    Setting("SMTP_PORT", 25, _number(int, 1, 65535), "SMTP port."),
    Setting("SMTP_USERNAME", None, str, "SMTP login (none: no login)."),
    Setting("SMTP_PASSWORD", None, str, "SMTP password."),
    Setting("SMTP_STARTTLS", False, _bool, "Upgrade the SMTP connection with STARTTLS."),
    Setting("SMTP_SENDER", "returns@example.com", str, "`From` address of every mail; its domain ends the `Message-ID`s."),
    Setting("SMTP_TIMEOUT", 10, _number(int, 1), "Seconds before an SMTP connection or command gives up."),
    Setting("TEAM_EMAIL", None, str, "Returns team address: refund reminders of returns without a dispute handler, and admin reminders when no admin agent exists. Default: `RMA_SMTP_SENDER`."),
    Setting("STAFF_LOCALE", "en", str, "Language of the mails to agents and the team (`en` or `fr`); customers get their order's language."),
    # Reminders (domain defaults; see domain/deadlines.py)
    Setting("REFUND_REMINDER_DAYS", [3, 1], _days_list, "Days before the refund deadline at which the handler/team is reminded (comma-separated)."),
    Setting("LABEL_REMINDER_DAYS", 7, _number(int, 1), "Days after the label was issued, while unused, at which the customer is reminded."),
    Setting("LABEL_EXPIRY_DAYS", 28, _number(int, 1), "Days after the label was issued, while unused, at which the RMA expires and the label is voided."),
    Setting("DISPUTE_HANDLER_HOURS", 48, _number(int, 1), "Hours a customer waits for the dispute handler's reply before the handler is reminded."),
    Setting("DISPUTE_ADMIN_HOURS", 96, _number(int, 1), "Hours a customer waits for the dispute handler's reply before the admins are told."),
    # Scheduler and webhook delivery
    Setting("WEBHOOK_CONNECT_TIMEOUT", 3.0, _number(float, 0.1), "Seconds to connect to a webhook endpoint."),
    Setting("WEBHOOK_TIMEOUT", 10.0, _number(float, 0.1), "Seconds to wait for a webhook endpoint's answer; longer is a failed attempt (retried with backoff for 3 days)."),
    Setting("WEBHOOK_PROXY", None, str, "HTTP(S) proxy for webhook requests (the environment's proxy variables and ~/.netrc are not used for them)."),
    Setting("WEBHOOK_CONCURRENCY", 8, _number(int, 1, 64), "Webhook requests one scheduler process sends in parallel (events of one return to one endpoint are always sent one after the other). Each sender holds a database connection during a run: keep it plus `RMA_MAIL_CONCURRENCY` under the pool size (20)."),
    Setting("MAIL_CONCURRENCY", 4, _number(int, 1, 64), "SMTP connections one scheduler process uses in parallel."),
    Setting("JOB_BATCH_SIZE", 200, _number(int, 1), "Rows a job claims at a time."),
    Setting("JOB_LEASE_SECONDS", 300, _number(int, 1), "How long a claimed webhook or mail stays reserved for the scheduler that claimed it; after a crash, others take it over once this has passed. Must exceed the webhook and SMTP timeouts."),
    # Prepaid return labels and carrier tracking (services/labels.py, adapters/carriers.py)
    Setting("CARRIER", "self", _carrier_name, "Carrier that issues the return labels: `self` (the service numbers and prints its own labels, no carrier API) or the name of a carrier with the JSON API of `adapters/carriers.py`, configured by the `RMA_CARRIER_<NAME>_…` settings below."),
    Setting("CARRIER_SERVICE", "standard", str, "Carrier service (product) asked for each label, e.g. `standard`, `relay`."),
    Setting("CARRIER_DISPLAY_NAME", "La Poste", str, "Carrier name printed on the label (\"hand the parcel to …\")."),
    Setting("LABEL_FORMAT", "4x6", _label_format, "Page format of the labels the service prints: `4x6` (4×6 in thermal label) or `a4` (label in the top-left quarter of an A4 page)."),
    Setting("LABEL_VALID_DAYS", None, _number(int, 1), "Days a label stays valid after it is issued (printed on it as its expiry date). Default: `RMA_LABEL_EXPIRY_DAYS`, the day the unused label is voided and the return expires."),
    Setting("WAREHOUSE_NAME", None, str, "Return address (the label's recipient): name. Default: `<RMA_SHOP_NAME> Returns`. Set all the `RMA_WAREHOUSE_…` settings in production."),
    Setting("WAREHOUSE_LINE1", "4 allée Newton", str, "Return address: first street line."),
    Setting("WAREHOUSE_LINE2", None, str, "Return address: second street line (optional)."),
    Setting("WAREHOUSE_POSTAL_CODE", "69800", str, "Return address: postal code."),
    Setting("WAREHOUSE_CITY", "Saint-Priest", str, "Return address: city."),
    Setting("WAREHOUSE_COUNTRY", "FR", str, "Return address: country (ISO 3166-1 alpha-2)."),
    # One set per carrier: <NAME> is the carrier name in capitals, `-` as `_` (RMA_CARRIER_COLISSIMO_URL).
    Setting("CARRIER_<NAME>_URL", None, str, "Base URL of that carrier's API (required for a carrier other than `self`). Optional too: `RMA_CARRIER_<NAME>_CONNECT_TIMEOUT` (3.05 s), `_READ_TIMEOUT` (10 s), `_RETRIES` (3, on 5xx and network errors)."),
    Setting("CARRIER_<NAME>_API_KEY", None, str, "That carrier's API key, sent as `Authorization: Bearer …` (never logged)."),
    Setting("CARRIER_<NAME>_SECRET", None, str, "Secret with which that carrier signs its tracking events to `POST /api/v1/carrier-events/<name>` (`RMA-Signature` or `Carrier-Signature: t=…,v1=…`). Comma-separated to rotate (old and new both accepted). Without it the carrier's events are refused (401)."),
    Setting("CARRIER_EVENT_TOLERANCE_SECONDS", 300, _number(int, 1), "Largest gap between a tracking event's signature timestamp and now; older (replayed) or future signatures are refused (401)."),
]

_DEV_SECRET = "dev-only-secret-change-me"
CODE_ONLY = frozenset({"TESTING", "WTF_CSRF_ENABLED"})
_MIN_SECRET_LENGTH = 32
# Marks of example values (the old docker-compose.yml shipped one): anyone can read them.
_PLACEHOLDER_MARKS = ("change-me", "change_me", "changeme", "dev-only-secret", "replace-me", "your-secret")
_MAKE_SECRET = 'make one with: python -c "import secrets; print(secrets.token_urlsafe(48))"'


def _check_secret_key(key: str) -> None:
    """A production key signs sessions and status-page tokens: a short or published one lets
    anyone forge them. The message never repeats the key (it ends up in logs)."""
    if len(key) < _MIN_SECRET_LENGTH:
        raise RuntimeError(f"RMA_SECRET_KEY is too short for production ({len(key)} characters, at least "
                           f"{_MIN_SECRET_LENGTH}); {_MAKE_SECRET}")
    if any(mark in key.lower() for mark in _PLACEHOLDER_MARKS):
        raise RuntimeError(f"RMA_SECRET_KEY is an example value, not a secret; {_MAKE_SECRET}")


def load_config(overrides: dict[str, Any] | None = None, environ: dict[str, str] | None = None) -> dict[str, Any]:
    """Settings from ``RMA_*`` variables, then ``overrides`` (keys without the prefix)."""
    environ = os.environ if environ is None else environ
    overrides = dict(overrides or {})
    cfg: dict[str, Any] = {}
    for s in SETTINGS:
        raw = environ.get(f"RMA_{s.name}")
        try:
            cfg[s.name] = s.parse(raw) if raw not in (None, "") else s.default
        except ValueError as exc:  # one line naming the variable, not a traceback from int()
            message = str(exc) if str(exc).startswith("RMA_") else f"RMA_{s.name}: {exc}"
            raise ValueError(message) from None
    for key, value in overrides.items():
        cfg[key.removeprefix("RMA_")] = value
    # Settings read by name elsewhere (carriers, SMTP …) pass through untouched; switches only
    # the code sets (the test suite's) never come from the environment: RMA_TESTING would
    # skip the production key check, RMA_WTF_CSRF_ENABLED=false would turn CSRF off.
    for key, value in environ.items():
        if key.startswith("RMA_") and key[4:] not in cfg and key[4:] not in CODE_ONLY:
            cfg[key[4:]] = value
    cfg["ENV"] = _env(cfg["ENV"])
    if not cfg.get("SECRET_KEY"):
        if cfg["ENV"] == "production" and not cfg.get("TESTING"):
            raise RuntimeError(f"RMA_SECRET_KEY is required in production; {_MAKE_SECRET}")
        cfg["SECRET_KEY"] = _DEV_SECRET
    elif cfg["ENV"] == "production":
        _check_secret_key(cfg["SECRET_KEY"])
    return cfg


def flask_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """The Flask and extension keys derived from our settings."""
    production = cfg["ENV"] == "production"
    return {
        "SECRET_KEY": cfg["SECRET_KEY"],
        "SQLALCHEMY_DATABASE_URI": cfg["DATABASE_URL"],
        "SQLALCHEMY_ENGINE_OPTIONS": engine_options(cfg["DATABASE_URL"]),
        "MAX_CONTENT_LENGTH": cfg["MAX_CONTENT_LENGTH"],
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": production,
        "REMEMBER_COOKIE_SECURE": production,
        "REMEMBER_COOKIE_HTTPONLY": True,
        # memory:// is limits' memory storage without its thread per request (extensions._MemoryStorage).
        "RATELIMIT_STORAGE_URI": re.sub(r"^memory://", "rma-memory://", cfg["RATELIMIT_STORAGE_URI"]),
        "RATELIMIT_HEADERS_ENABLED": True,
        "RATELIMIT_ENABLED": cfg["RATELIMIT_ENABLED"],
        "TESTING": bool(cfg.get("TESTING")),
        "WTF_CSRF_ENABLED": cfg.get("WTF_CSRF_ENABLED", True),
        # A form stays valid for a working day (a receiving station's page stays open for hours).
        "WTF_CSRF_TIME_LIMIT": 12 * 3600,
        "BABEL_DEFAULT_TIMEZONE": cfg.get("TIMEZONE") or "UTC",
        "API_TITLE": "RMA service",
        "API_VERSION": "v1",
        "OPENAPI_VERSION": "3.0.3",
        "OPENAPI_URL_PREFIX": "/api",
        "OPENAPI_JSON_PATH": "v1/openapi.json",
        # Swagger UI is served from the pinned swagger-ui-bundle package, not from a CDN.
        "OPENAPI_SWAGGER_UI_PATH": "docs",
        "OPENAPI_SWAGGER_UI_URL": "/api/swagger-ui/",
        "JSON_SORT_KEYS": False,
    }


def engine_options(url: str) -> dict[str, Any]:
    """``hide_parameters``: a database error's message (logged with its traceback) shows the
    statement but not the values bound to it: webhook secrets, password hashes, stored answers."""
    if url.startswith("sqlite"):
        # Each connection waits for the write lock instead of failing at once.
        return {"connect_args": {"timeout": 30}, "hide_parameters": True}
    # No pool_pre_ping: connections idle for a while are pinged instead (rma_service._ping_idle_connections).
    return {"pool_size": 10, "max_overflow": 10, "hide_parameters": True}

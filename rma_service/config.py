"""Configuration: the only module that reads ``os.environ``.

Every setting is an ``RMA_<NAME>`` environment variable; the table of them is in the README
and is generated from ``SETTINGS`` below (``flask rma settings`` prints it). ``create_app``
takes an optional mapping of overrides (tests pass theirs there).
"""
from __future__ import annotations

import os
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


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    parse: Callable[[str], Any]
    doc: str


SETTINGS: list[Setting] = [
    Setting("ENV", "development", str, "`development` or `production`. Production requires `RMA_SECRET_KEY` and sets secure cookies."),
    Setting("SECRET_KEY", None, str, "Signs sessions, CSRF and status-page tokens. Required outside development."),
    Setting("DATABASE_URL", f"sqlite:///{INSTANCE / 'rma.sqlite3'}", str, "SQLAlchemy URL; `postgresql+psycopg://user@host/db` selects PostgreSQL."),
    Setting("BASE_URL", "http://127.0.0.1:5000", str, "Public base URL, used in links (API `links`, mails, status pages)."),
    Setting("SHOP_NAME", "Demo Shop", str, "Shown on pages, mails and labels."),
    Setting("MAX_CONTENT_LENGTH", 1_048_576, int, "Largest request body in bytes (API); larger → 413 `payload_too_large`."),
    Setting("RETURN_WINDOW_DAYS", 30, int, "Return window, counted from delivery."),
    Setting("NON_RETURNABLE_CATEGORIES", ["gift_card", "hygiene", "perishable", "final_sale"], _list, "Comma-separated order-line categories that cannot be returned."),
    Setting("RETURN_SHIPPING_FEE", Decimal("5.90"), Decimal, "Return shipping fee deducted when the customer pays return shipping (reasons that are not the shop's fault)."),
    Setting("RESTOCKING_FEE_RATE", Decimal("0"), Decimal, "Restocking fee as a fraction of the items' value for customer-fault reasons (e.g. `0.10`)."),
    Setting("APPROVAL_THRESHOLD", Decimal("500.00"), Decimal, "Returns worth more than this need an agent's approval; below it they are authorized automatically."),
    Setting("RESOLUTIONS", ["refund", "exchange", "store_credit"], _list, "Resolutions the shop offers."),
    Setting("REFUND_DEADLINE_DAYS", 14, int, "Days to refund (EU Directive 2011/83/EU art. 13)."),
    Setting("LEGAL_INTEREST_RATE", Decimal("0.0721"), Decimal, "French legal interest rate (fraction) applied to refunds up to 10 days late (L242-4)."),
    Setting("IDEMPOTENCY_TTL_HOURS", 24, int, "How long an `Idempotency-Key` is remembered."),
    Setting("RATELIMIT_ENABLED", True, _bool, "Turn rate limiting off (`false`) only for load tests."),
    Setting("RATELIMIT_STORAGE_URI", "memory://", str, "Flask-Limiter storage (`redis://127.0.0.1:6379` when several workers run)."),
    Setting("RATELIMIT_API", "600/minute", str, "Rate limit per API key."),
    Setting("LOG_LEVEL", "INFO", str, "Logging level."),
]

_DEV_SECRET = "dev-only-secret-change-me"


def load_config(overrides: dict[str, Any] | None = None, environ: dict[str, str] | None = None) -> dict[str, Any]:
    """Settings from ``RMA_*`` variables, then ``overrides`` (keys without the prefix)."""
    environ = os.environ if environ is None else environ
    overrides = dict(overrides or {})
    cfg: dict[str, Any] = {}
    for s in SETTINGS:
        raw = environ.get(f"RMA_{s.name}")
        cfg[s.name] = s.parse(raw) if raw not in (None, "") else s.default
    for key, value in overrides.items():
        cfg[key.removeprefix("RMA_")] = value
    # Settings read by name elsewhere (carriers, SMTP …) pass through untouched.
    for key, value in environ.items():
        if key.startswith("RMA_") and key[4:] not in cfg:
            cfg[key[4:]] = value
    if not cfg.get("SECRET_KEY"):
        if cfg["ENV"] != "development" and not cfg.get("TESTING"):
            raise RuntimeError("RMA_SECRET_KEY is required outside development")
        cfg["SECRET_KEY"] = _DEV_SECRET
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
        "RATELIMIT_STORAGE_URI": cfg["RATELIMIT_STORAGE_URI"],
        "RATELIMIT_HEADERS_ENABLED": True,
        "RATELIMIT_ENABLED": cfg["RATELIMIT_ENABLED"],
        "TESTING": bool(cfg.get("TESTING")),
        "WTF_CSRF_ENABLED": cfg.get("WTF_CSRF_ENABLED", True),
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
    if url.startswith("sqlite"):
        # Each connection waits for the write lock instead of failing at once.
        return {"connect_args": {"timeout": 30}}
    return {"pool_pre_ping": True, "pool_size": 10, "max_overflow": 10}

"""Test fixtures: a real database (SQLite by default, PostgreSQL when
``RMA_TEST_DATABASE_URL`` is set), the schema built by the Alembic migrations, a real HTTP
server for concurrency tests, and helpers to call the API like the shop backend does."""
from __future__ import annotations

import os
import threading
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator

import pytest
from sqlalchemy import text
from werkzeug.serving import make_server

from rma_service import create_app
from rma_service.extensions import db

pytest_plugins = ["tests.smtp_server"]

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)


def _database_url(tmp_path_factory) -> str:
    url = os.environ.get("RMA_TEST_DATABASE_URL")
    if url:
        return url
    return f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.sqlite3'}"


@pytest.fixture(scope="session")
def database_url(tmp_path_factory) -> str:
    return _database_url(tmp_path_factory)


@pytest.fixture(scope="session")
def _schema(database_url) -> str:
    """Build the schema once per session through the migrations (which tests them too)."""
    from flask_migrate import upgrade
    app = create_app({"DATABASE_URL": database_url, "TESTING": True})
    with app.app_context():
        if database_url.startswith("postgresql"):
            db.session.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            db.session.execute(text("CREATE SCHEMA public"))
            db.session.commit()
        upgrade()
        upgrade()  # safe to run twice
    return database_url


def _truncate() -> None:
    tables = list(reversed(db.metadata.sorted_tables))
    if db.engine.dialect.name == "postgresql":
        db.session.execute(text("TRUNCATE " + ", ".join(t.name for t in tables) + " RESTART IDENTITY CASCADE"))
    else:
        for table in tables:
            db.session.execute(table.delete())
    db.session.commit()


@pytest.fixture
def app_config() -> dict[str, Any]:
    """Override in a test module to change settings."""
    return {}


@pytest.fixture
def app(_schema, app_config):
    config = {"DATABASE_URL": _schema, "TESTING": True, "SECRET_KEY": "test-secret",
              "BASE_URL": "http://rma.test", "RATELIMIT_ENABLED": False, **app_config}
    application = create_app(config)
    with application.app_context():
        _truncate()
    yield application
    with application.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def api_key(app) -> str:
    from rma_service.services.apikeys import create_api_key
    with app.app_context():
        return create_api_key("shop", NOW)[1]


class Api:
    """Calls the JSON API as the shop backend would."""

    def __init__(self, client, key: str):
        self.client, self.key = client, key

    def _headers(self, extra=None):
        return {"Authorization": f"Bearer {self.key}", **(extra or {})}

    def get(self, path, **kw):
        return self.client.get(f"/api/v1{path}", headers=self._headers(kw.pop("headers", None)), **kw)

    def post(self, path, json=None, **kw):
        return self.client.post(f"/api/v1{path}", json=json, headers=self._headers(kw.pop("headers", None)), **kw)

    def put(self, path, json=None, **kw):
        return self.client.put(f"/api/v1{path}", json=json, headers=self._headers(kw.pop("headers", None)), **kw)


@pytest.fixture
def api(client, api_key) -> Api:
    return Api(client, api_key)


def order_body(**overrides) -> dict[str, Any]:
    delivered = overrides.pop("delivered_at", (NOW - timedelta(days=3)).isoformat())
    body = {
        "customer": {"email": "ada@example.com", "name": "Ada Lovelace", "locale": "en"},
        "shipping_address": {"name": "Ada Lovelace", "line1": "12 rue de la Paix", "postal_code": "75002",
                             "city": "Paris", "country": "FR"},
        "placed_at": (NOW - timedelta(days=6)).isoformat(),
        "delivered_at": delivered,
        "currency": "EUR",
        "lines": [
            {"line_id": "L1", "sku": "SHIRT-M", "name": "Linen shirt", "quantity": 2, "unit_price": "49.90"},
            {"line_id": "L2", "sku": "SOCKS", "name": "Wool socks", "quantity": 5, "unit_price": "9.50"},
            {"line_id": "L3", "sku": "GIFT", "name": "Gift card", "quantity": 1, "unit_price": "25.00",
             "category": "gift_card"},
        ],
    }
    body.update(overrides)
    return body


def return_body(order_number="1001", email="ada@example.com", items=None, **extra) -> dict[str, Any]:
    return {"order_number": order_number, "email": email,
            "items": items or [{"line_id": "L1", "quantity": 1, "reason": "too_small"}], **extra}


@pytest.fixture
def frozen_now():
    from rma_service import clock
    with clock.frozen(NOW):
        yield NOW


@pytest.fixture
def order(api, frozen_now):
    resp = api.put("/orders/1001", json=order_body())
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


def count(app, model) -> int:
    from sqlalchemy import func, select
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model))


class LiveServer:
    def __init__(self, app):
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.thread.join(5)


@pytest.fixture
def live_server(app) -> Iterator[LiveServer]:
    server = LiveServer(app)
    yield server
    server.stop()


# --- a real browser (Playwright driving Debian's chromium; never `playwright install`) ---
CHROMIUM = os.environ.get("RMA_TEST_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="session")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no chromium at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, live_server):
    """A fresh browser context (cookies, locale) per test; ``page.base`` is the server URL."""
    context = browser.new_context(base_url=live_server.url, locale="en-GB")
    pg = context.new_page()
    pg.set_default_timeout(10_000)
    pg.base = live_server.url
    yield pg
    context.close()

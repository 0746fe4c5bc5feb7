"""The RMA service: ``create_app`` builds the Flask application."""
from __future__ import annotations

import logging
import time
from typing import Any, Optional

from flask import Flask, Request, Response, jsonify, request, send_from_directory
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from sqlalchemy import event, text
from sqlalchemy.exc import DisconnectionError
from werkzeug.routing import IntegerConverter

from .config import ROOT, flask_config, load_config
from .extensions import babel, csrf, db, init_limiter, limiter, login_manager, migrate

# Content-Security-Policy defaults, by what the answer is (a view or blueprint that sets its own
# keeps it: the admin view, a customer photo). No third-party host anywhere.
# Pages (customer pages, error pages): only the service's own CSS, no inline script or style,
# forms to this origin, never framed (the status page has a cancel button: no clickjacking).
PAGE_CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; object-src 'none'; "
            "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
# JSON answers, problem+json errors and every other file: nothing to load, nothing to run.
NOTHING_CSP = "default-src 'none'; frame-ancestors 'none'"
# A PDF is drawn by the browser's own viewer, which a policy on its content could only break.
PDF_CSP = "frame-ancestors 'none'"


class RowIdConverter(IntegerConverter):
    """``<int:…>`` in a route is a row id: a number beyond the database's integer column (which
    could only overflow it: a 500) is no route at all, so the answer is 404."""

    def __init__(self, url_map, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", 2**31 - 1)  # PostgreSQL integer
        super().__init__(url_map, *args, **kwargs)


class _SessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie session; a request without the cookie (every API call: a shop's
    backend sends none) gets its empty session without building the signing serializer, and
    an API answer gets no session work (nor ``Vary: Cookie``) afterwards."""

    def open_session(self, app: Flask, request: Request) -> Optional[SecureCookieSession]:
        if app.secret_key and not request.cookies.get(self.get_cookie_name(app)):
            return self.session_class()
        return super().open_session(app, request)

    def save_session(self, app: Flask, session: Any, response: Response) -> None:
        # The JSON API never uses the session (Flask-Login merely looks into it): its answers
        # don't vary with a cookie, so no Vary: Cookie and nothing to save unless changed.
        if request.blueprint == "api" and not session.modified:
            return
        super().save_session(app, session, response)


class RmaFlask(Flask):
    """Flask, remembering ``ensure_sync``'s answer per function. Flask asks
    ``inspect.iscoroutinefunction`` about every hook and the view on every request (18 times
    for a create-return, ~2 % of its CPU); the answer for a given function never changes.
    (Per-request callables, ``after_this_request`` closures, would fill the memo: it is
    emptied when it reaches a size no set of hooks and views has.)"""

    _SYNC_MEMO_SIZE = 4096

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sync_memo: dict[Any, Any] = {}

    def ensure_sync(self, func: Any) -> Any:
        try:
            return self._sync_memo[func]
        except KeyError:
            pass
        except TypeError:  # unhashable
            return super().ensure_sync(func)
        if len(self._sync_memo) >= self._SYNC_MEMO_SIZE:
            self._sync_memo.clear()
        found = self._sync_memo[func] = super().ensure_sync(func)
        return found


def create_app(config: Optional[dict[str, Any]] = None) -> Flask:
    cfg = load_config(config)
    app = RmaFlask(__name__, template_folder=str(ROOT / "templates"), static_folder="static",
                   instance_path=str(ROOT / "instance"))
    app.config.update(flask_config(cfg))
    app.config["RMA"] = cfg
    app.json.sort_keys = False  # keep the contract's field order in responses
    app.session_interface = _SessionInterface()
    app.url_map.converters["int"] = RowIdConverter  # before any route is added
    logging.basicConfig(level=cfg["LOG_LEVEL"], format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if str(cfg["LOG_LEVEL"]).upper() != "DEBUG":
        for chatty in ("weasyprint", "fontTools"):  # a line per font subset and stylesheet at INFO
            logging.getLogger(chatty).setLevel(logging.WARNING)
    if cfg["PROXY_COUNT"]:
        from werkzeug.middleware.proxy_fix import ProxyFix
        n = int(cfg["PROXY_COUNT"])
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)  # type: ignore[method-assign]

    if cfg["DATABASE_URL"].startswith("sqlite:///"):
        (ROOT / "instance").mkdir(exist_ok=True)

    db.init_app(app)
    with app.app_context():
        _tune_sqlite(db.engine)
        _ping_idle_connections(db.engine)
    migrate.init_app(app, db, directory=str(ROOT / "migrations"), render_as_batch=True)
    csrf.init_app(app)
    login_manager.init_app(app)
    babel.init_app(app, locale_selector=_select_locale)
    init_limiter(app)
    # One Api per application (it holds the app's OpenAPI spec), so tests can build many apps.
    from .api.openapi import RmaApi
    api = RmaApi(app)

    from .errors import register_error_handlers
    register_error_handlers(app)

    from .api import blp as api_blp, init_app as init_api
    init_api(app, api)
    csrf.exempt(api_blp)
    from .web import bp as web_bp
    from .admin import bp as admin_bp
    app.register_blueprint(web_bp)
    app.register_blueprint(admin_bp)

    from .cli import register_cli
    register_cli(app)

    _register_core_routes(app)
    app.after_request(_security_headers)
    return app


_DEFAULT_HEADERS = (("X-Content-Type-Options", "nosniff"), ("X-Frame-Options", "DENY"),
                    ("Referrer-Policy", "same-origin"))


def _security_headers(response: Response) -> Response:
    """Safe defaults on every answer; headers a view or a blueprint set (the admin view's CSP, a
    photo's sandbox) run first and are kept. The customers' status links carry their token:
    the referrer never leaves this origin."""
    from .api.openapi import DOCS_ENDPOINT, docs_policy
    headers = response.headers
    present = {name.lower() for name, _value in headers.items()}  # one pass (each lookup is one)
    for name, value in _DEFAULT_HEADERS:
        if name.lower() not in present:
            headers.add(name, value)
    if "content-security-policy" not in present:
        if response.mimetype == "text/html":
            docs = request.endpoint == DOCS_ENDPOINT and not response.direct_passthrough
            headers["Content-Security-Policy"] = docs_policy(response.get_data()) if docs else PAGE_CSP
        elif response.mimetype == "application/pdf":
            headers["Content-Security-Policy"] = PDF_CSP
        else:
            headers["Content-Security-Policy"] = NOTHING_CSP
    return response


LOCALES = ("en", "fr")


def _select_locale() -> str:
    """The customer's explicit choice (``?lang=`` on a page, kept in the session), then the
    language of the order or return the page is about (``g.locale_hint``, set by the view),
    then the browser's; English by default."""
    from flask import g, has_request_context, session
    if not has_request_context():
        return "en"
    for choice in (session.get("lang"), g.get("locale_hint")):
        if choice in LOCALES:
            return choice
    return request.accept_languages.best_match(LOCALES) or "en"


# A pooled connection unused for longer than this is pinged before it is handed out.
IDLE_PING_SECONDS = 1.0


def _ping_idle_connections(engine) -> None:
    """Pessimistic disconnect handling for the connections that can have gone stale: those
    that sat in the pool (a firewall's or the server's idle timeout, a restart while the
    service was quiet). SQLAlchemy's ``pool_pre_ping`` pings on every checkout: one more
    round trip per request, ~3 % of a create-return's throughput on PostgreSQL. A connection
    checked in less than ``IDLE_PING_SECONDS`` ago was working a moment ago and is taken as it
    is; if the database dropped it in that moment, that request fails, SQLAlchemy invalidates
    the whole pool on the disconnect, and the next requests connect afresh
    (tests/integration/test_operations.py). A failed ping makes the pool retry with a new
    connection (``DisconnectionError``, as documented for the ``checkout`` event)."""
    if engine.dialect.name == "sqlite":
        return  # in-process: nothing to go stale

    @event.listens_for(engine, "connect")
    def _connected(_dbapi_conn, record):
        record.info["rma_checked_in"] = time.monotonic()

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_conn, record):
        if record is not None:
            record.info["rma_checked_in"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_conn, record, _proxy):
        if time.monotonic() - record.info.get("rma_checked_in", 0.0) > IDLE_PING_SECONDS:
            try:
                engine.dialect.do_ping(dbapi_conn)
            except engine.dialect.loaded_dbapi.Error as exc:
                raise DisconnectionError() from exc


def _tune_sqlite(engine) -> None:
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn, _record):
        cur = dbapi_conn.cursor()
        # WAL lets readers work while one writer writes; foreign keys are off by default.
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()


def _register_core_routes(app: Flask) -> None:
    import swagger_ui_bundle

    @app.get("/healthz")
    @limiter.exempt
    def healthz():
        try:
            db.session.execute(text("SELECT 1"))
        except Exception:
            app.logger.exception("health check: database unreachable")
            return jsonify(status="unavailable"), 503
        return jsonify(status="ok")

    @app.get("/api/swagger-ui/<path:filename>")
    @limiter.exempt
    def swagger_ui_assets(filename: str):
        """Swagger UI from the pinned swagger-ui-bundle package: docs work offline."""
        return send_from_directory(swagger_ui_bundle.swagger_ui_path, filename, max_age=86400)

    @app.get("/")
    def index():
        from flask import redirect, url_for
        return redirect(url_for("web.start"))

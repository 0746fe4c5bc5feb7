"""What an operator runs and reads: the configuration's refusals, the logs (database errors,
gunicorn's access log), concurrent schema upgrades, the demo data in production and the
docker-compose file.
"""
from __future__ import annotations

import base64
import logging
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from rma_service import create_app
from rma_service.config import _DEV_SECRET, flask_config, load_config
from rma_service.extensions import db
from rma_service.models import Agent, ApiKey, Order

ROOT = Path(__file__).resolve().parents[2]
STRONG_SECRET = "Zq3" + "x7Kp" * 10
needs_postgresql = pytest.mark.skipif(
    not os.environ.get("RMA_TEST_DATABASE_URL", "").startswith("postgresql"),
    reason="concurrent migrations are a PostgreSQL matter (docker-compose)")


def clean_env(**settings: str) -> dict[str, str]:
    """This process's environment without its ``RMA_*`` settings, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RMA_")}
    env.update({"PYTHONUNBUFFERED": "1", **settings})
    return env


# --- database errors in the logs --------------------------------------------------------------

def test_a_database_error_logs_the_statement_but_not_its_parameters(app, caplog):
    """A failing statement is logged with ``log.exception``: the log must show what failed,
    never the values bound to it (webhook secrets, password hashes, stored responses)."""
    secret = "whsec_" + secrets.token_hex(16)
    log = logging.getLogger("rma_service.test_operations")
    with app.app_context(), caplog.at_level(logging.ERROR):
        try:
            db.session.execute(text("INSERT INTO no_such_table (secret) VALUES (:secret)"), {"secret": secret})
        except DBAPIError as exc:
            error = exc
            log.exception("could not store the webhook endpoint")
        else:
            pytest.fail("the insert into a missing table succeeded")
        finally:
            db.session.rollback()
    assert "no_such_table" in str(error)
    assert secret not in str(error) and secret not in repr(error)
    assert "no_such_table" in caplog.text and secret not in caplog.text


# --- gunicorn's access log --------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_gunicorn_access_log_never_records_an_api_key_or_a_status_token(tmp_path):
    """``curl -u "$KEY:"`` sends the API key as the Basic user name; gunicorn's default
    access log format (``%(u)s``) would write it to the log of every request. A customer's
    status link carries its token in the path (and in the Referer of the next page): whoever
    reads the log could open the return. Run as ``make run`` runs it: from the repository
    root, which holds gunicorn.conf.py."""
    from flask_migrate import upgrade
    url = f"sqlite:///{tmp_path / 'rma.sqlite3'}"
    with create_app({"DATABASE_URL": url, "TESTING": True}).app_context():
        upgrade()
    access_log = tmp_path / "access.log"
    port = _free_port()
    env = clean_env(RMA_DATABASE_URL=url, RMA_ENV="development")
    with open(tmp_path / "gunicorn.log", "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}",
                                 "-w", "1", "--access-logfile", str(access_log), "wsgi:app"],
                                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "gunicorn.log").read_text()
            try:
                if _get(f"{base}/healthz") == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "gunicorn did not answer /healthz"
            time.sleep(0.2)
        basic = base64.b64encode(b"rma_secretkey:").decode()
        status = _get(f"{base}/api/v1/returns", {"Authorization": f"Basic {basic}", "User-Agent": "curl/8.5.0"})
        assert status == 401
        _get(f"{base}/returns/status/TOKEN-ONE.abc/label.pdf?x=1",
             {"Referer": f"{base}/returns/status/TOKEN-TWO.def", "User-Agent": "curl/8.5.0"})
        deadline = time.monotonic() + 10
        while "label.pdf" not in (access_log.read_text() if access_log.exists() else ""):
            assert time.monotonic() < deadline, "no access log line for the requests"
            time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(20)
    log = access_log.read_text()
    line = next(ln for ln in log.splitlines() if "/api/v1/returns" in ln)
    assert "rma_secretkey" not in log
    assert line.startswith("127.0.0.1 ")
    assert '"GET /api/v1/returns HTTP/1.1" 401' in line and '"curl/8.5.0"' in line
    status_line = next(ln for ln in log.splitlines() if "label.pdf" in ln)
    assert "TOKEN-ONE" not in log and "TOKEN-TWO" not in log
    assert '"GET /returns/status/***/label.pdf?x=1 HTTP/1.1"' in status_line
    assert f'"{base}/returns/status/***"' in status_line


# --- concurrent `flask db upgrade` ------------------------------------------------------------

def _connect(database_url: str, dbname: str = "postgres", autocommit: bool = True):
    """A plain psycopg connection to ``dbname`` on the server of ``database_url``."""
    import psycopg
    url = make_url(database_url)
    return psycopg.connect(host=url.host or "127.0.0.1", port=url.port or 5432, user=url.username,
                           password=url.password, dbname=dbname, autocommit=autocommit)


def _lock_waiters(database_url: str, dbname: str) -> int:
    with _connect(database_url) as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'",
                            (dbname,)).fetchone()[0]


@needs_postgresql
def test_two_upgrades_started_at_once_on_an_empty_database_both_succeed(database_url, tmp_path):
    """docker-compose used to start the web service and the scheduler together, each running
    ``flask db upgrade``: on an empty database one failed with a UniqueViolation.

    To make both reach the database at the same moment, the test holds an uncommitted
    ``alembic_version`` table of its own until both upgrades are blocked on a lock, then
    rolls it back: without a lock between the upgrades both create the schema at once."""
    from alembic.script import ScriptDirectory
    dbname = f"rma_ops_{secrets.token_hex(6)}"
    with _connect(database_url) as conn:
        conn.execute(f'CREATE DATABASE "{dbname}"')
    target_url = make_url(database_url).set(database=dbname).render_as_string(hide_password=False)
    env = clean_env(RMA_DATABASE_URL=target_url, RMA_ENV="development")
    logs = [tmp_path / f"upgrade-{i}.log" for i in range(2)]
    procs: list[subprocess.Popen] = []
    try:
        barrier = _connect(database_url, dbname, autocommit=False)
        barrier.execute("CREATE TABLE alembic_version (version_num varchar(32) NOT NULL)")
        try:
            for log in logs:
                with log.open("wb") as out:
                    procs.append(subprocess.Popen([sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"],
                                                  cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT))
            deadline = time.monotonic() + 60
            while _lock_waiters(database_url, dbname) < 2:
                assert all(p.poll() is None for p in procs), [log.read_text() for log in logs]
                assert time.monotonic() < deadline, "the two upgrades never both waited"
                time.sleep(0.1)
        finally:
            barrier.rollback()
            barrier.close()
        codes = [p.wait(120) for p in procs]
        assert codes == [0, 0], "\n".join(log.read_text() for log in logs)
        head = ScriptDirectory(str(ROOT / "migrations")).get_current_head()
        with _connect(database_url, dbname) as conn:
            assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(head,)]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        with _connect(database_url) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


# --- the secret key and RMA_ENV ---------------------------------------------------------------

@pytest.mark.parametrize("weak", ["change-me-to-a-long-random-string", _DEV_SECRET, "change-me",
                                  "s3cr3t-but-only-31-characters!!", "please-changeme-" + "x" * 40])
def test_production_refuses_a_short_or_placeholder_secret_key(weak):
    with pytest.raises(RuntimeError) as info:
        load_config(environ={"RMA_ENV": "production", "RMA_SECRET_KEY": weak})
    message = str(info.value)
    assert "RMA_SECRET_KEY" in message and 'python -c "import secrets; print(secrets.token_urlsafe(48))"' in message
    assert weak not in message


def test_production_requires_a_secret_key_and_says_how_to_make_one():
    with pytest.raises(RuntimeError, match=r"RMA_SECRET_KEY is required.*secrets\.token_urlsafe\(48\)"):
        load_config(environ={"RMA_ENV": "production"})


@pytest.mark.parametrize("variable", ["RMA_TESTING", "RMA_WTF_CSRF_ENABLED"])
def test_test_switches_are_not_read_from_the_environment(variable):
    """RMA_TESTING=1 would skip the production key check (and put Flask in testing mode);
    RMA_WTF_CSRF_ENABLED=false would turn CSRF protection off."""
    with pytest.raises(RuntimeError, match="RMA_SECRET_KEY is required"):
        load_config(environ={"RMA_ENV": "production", "RMA_TESTING": "1"})
    cfg = load_config(environ={variable: "false" if "CSRF" in variable else "1"})
    assert flask_config(cfg)["TESTING"] is False and flask_config(cfg)["WTF_CSRF_ENABLED"] is True


def test_production_accepts_a_long_random_secret_key():
    cfg = load_config(environ={"RMA_ENV": "production", "RMA_SECRET_KEY": secrets.token_urlsafe(48)})
    assert flask_config(cfg)["SESSION_COOKIE_SECURE"] is True


def test_development_keeps_working_without_a_secret_key():
    assert load_config(environ={})["SECRET_KEY"] == _DEV_SECRET
    assert load_config(environ={"RMA_SECRET_KEY": "short"})["SECRET_KEY"] == "short"


@pytest.mark.parametrize("raw", [" Production ", "PRODUCTION", "production\n"])
def test_rma_env_is_read_whatever_its_case_and_spaces(raw):
    cfg = load_config(environ={"RMA_ENV": raw, "RMA_SECRET_KEY": STRONG_SECRET})
    assert cfg["ENV"] == "production"
    assert flask_config(cfg)["SESSION_COOKIE_SECURE"] is True


@pytest.mark.parametrize("raw", ["prod", "staging", "dev", "productions"])
def test_an_unknown_rma_env_is_refused_naming_the_allowed_values(raw):
    with pytest.raises(ValueError, match=r"RMA_ENV must be development or production"):
        load_config(environ={"RMA_ENV": raw, "RMA_SECRET_KEY": STRONG_SECRET})
    with pytest.raises(ValueError, match=r"RMA_ENV must be development or production"):
        load_config({"ENV": raw, "SECRET_KEY": STRONG_SECRET}, environ={})



@pytest.mark.parametrize("name, raw, said", [
    ("RMA_DISPUTE_CAPACITY", "0", "0 is out of range"),           # every dispute triage answered 500
    ("RMA_RESTOCKING_FEE_RATE", "2", "2 is out of range (0 to 1)"),  # a 200 % fee
    ("RMA_RETURN_WINDOW_DAYS", "-5", "-5 is out of range"),
    ("RMA_RETURN_SHIPPING_FEE", "NaN", "NaN is out of range"),
    ("RMA_APPROVAL_THRESHOLD", "500,00", "not a number: '500,00'"),
    ("RMA_WEBHOOK_TIMEOUT", "inf", "inf is out of range"),
    ("RMA_REFUND_REMINDER_DAYS", "3, 0", "0 is out of range"),
    ("RMA_SMTP_PORT", "smtp", "not a number: 'smtp'"),
    ("RMA_JOB_LEASE_SECONDS", "0", "0 is out of range (1 to"),
    ("RMA_RESTOCKING_FEE_RATE", "0.12345", "0.12345 has more than 4 decimal places"),  # stored as 0.1235
    ("RMA_RETURN_SHIPPING_FEE", "5.905", "5.905 has more than 2 decimal places"),
])
def test_a_setting_out_of_range_stops_the_start_naming_the_variable(name, raw, said):
    with pytest.raises(ValueError) as info:
        load_config(environ={name: raw})
    assert str(info.value).startswith(f"{name}: ") and said in str(info.value)


def test_settings_in_range_are_read_with_their_types():
    from decimal import Decimal
    cfg = load_config(environ={"RMA_DISPUTE_CAPACITY": " 5 ", "RMA_RESTOCKING_FEE_RATE": "0.10",
                               "RMA_WEBHOOK_TIMEOUT": "2.5", "RMA_REFUND_REMINDER_DAYS": "5, 2, 1",
                               "RMA_PHOTOS_PER_ITEM": "0"})
    assert (cfg["DISPUTE_CAPACITY"], cfg["RESTOCKING_FEE_RATE"], cfg["WEBHOOK_TIMEOUT"]) == (5, Decimal("0.10"), 2.5)
    assert cfg["REFUND_REMINDER_DAYS"] == [5, 2, 1] and cfg["PHOTOS_PER_ITEM"] == 0
    assert isinstance(cfg["RESTOCKING_FEE_RATE"], Decimal)

# --- demo data in production ------------------------------------------------------------------

def _rows(app, model) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model))


@pytest.mark.parametrize("app_config", [{"ENV": "production", "SECRET_KEY": STRONG_SECRET}])
def test_demo_data_is_refused_in_production(app):
    result = app.test_cli_runner().invoke(args=["rma", "demo-data"])
    assert result.exit_code != 0
    assert "production" in result.output and "--force" in result.output
    assert "demo-password" not in result.output
    assert (_rows(app, Agent), _rows(app, ApiKey), _rows(app, Order)) == (0, 0, 0)


@pytest.mark.parametrize("app_config", [{"ENV": "production", "SECRET_KEY": STRONG_SECRET}])
def test_demo_data_in_production_with_force(app):
    result = app.test_cli_runner().invoke(args=["rma", "demo-data", "--force"])
    assert result.exit_code == 0, result.output
    assert _rows(app, Agent) == 3 and _rows(app, Order) == 24


# --- docker-compose.yml -----------------------------------------------------------------------

def test_compose_requires_a_secret_and_only_the_web_service_migrates():
    yaml = pytest.importorskip("yaml")
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    web, scheduler = compose["services"]["web"], compose["services"]["scheduler"]
    for service in (web, scheduler):
        assert service["environment"]["RMA_SECRET_KEY"].startswith("${RMA_SECRET_KEY:?")
        assert service["restart"] == "unless-stopped"
    assert "db upgrade" not in " ".join(scheduler["command"])
    assert scheduler["depends_on"]["web"] == {"condition": "service_healthy"}
    assert scheduler["healthcheck"] == {"disable": True}


def test_the_readme_configuration_table_is_the_one_the_code_prints(app):
    """`flask rma settings` prints the settings table from config.SETTINGS; the README shows
    the same table, so an operator reads the defaults the code has."""
    printed = app.test_cli_runner().invoke(args=["rma", "settings"])
    assert printed.exit_code == 0, printed.output
    table = [line for line in printed.output.splitlines() if line.startswith("|")]
    readme = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    start = readme.index(table[0])
    assert readme[start:start + len(table)] == table


@pytest.mark.parametrize("app_config, seen", [
    ({"PROXY_COUNT": 1}, "203.0.113.7"),   # behind one trusted proxy: the client's address
    ({}, "127.0.0.1"),                     # by default a forged header changes nothing
])
def test_the_client_address_behind_a_trusted_proxy(app, app_config, seen):
    """Rate limits per address (sign-in, customer pages) count the client, not the proxy."""
    from flask import request

    @app.get("/_client")
    def client_address():
        return {"address": request.remote_addr, "scheme": request.scheme}

    resp = app.test_client().get("/_client", headers={"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"},
                                 environ_base={"REMOTE_ADDR": "127.0.0.1"})
    assert resp.get_json()["address"] == seen
    assert resp.get_json()["scheme"] == ("https" if app_config else "http")


def test_weasyprint_progress_stays_out_of_an_info_log(app):
    """Their own level, not the root's (which the test run's migrations set to WARNING)."""
    assert logging.getLogger("weasyprint").level == logging.WARNING
    assert logging.getLogger("fontTools").level == logging.WARNING


# --- stale database connections (rma_service._ping_idle_connections) -------------------------

needs_postgresql_server = pytest.mark.skipif(
    not os.environ.get("RMA_TEST_DATABASE_URL", "").startswith("postgresql"),
    reason="connections dropped by the database server: a PostgreSQL matter")


def _drop_the_service_connections(app) -> int:
    """What a server restart or an idle timeout does to the pool: every other session of the
    database is terminated (this one, made for the purpose, excepted)."""
    from sqlalchemy import create_engine
    engine = create_engine(app.config["SQLALCHEMY_DATABASE_URI"])
    try:
        with engine.begin() as conn:
            return len(conn.execute(text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()")).all())
    finally:
        engine.dispose()


@needs_postgresql_server
def test_a_connection_idle_in_the_pool_is_pinged_and_replaced(app, api, order, monkeypatch):
    import rma_service
    monkeypatch.setattr(rma_service, "IDLE_PING_SECONDS", 0.05)
    assert api.get("/orders/1001").status_code == 200
    assert _drop_the_service_connections(app) >= 1
    time.sleep(0.1)  # idle for longer than IDLE_PING_SECONDS: pinged at checkout, replaced
    assert api.get("/orders/1001").status_code == 200


@needs_postgresql_server
def test_a_connection_dropped_while_busy_fails_one_request_then_the_pool_recovers(app, api, order):
    """A connection checked in a moment ago is not pinged (one round trip less per request):
    if the server dropped it in that moment, that request fails with the usual 500 problem
    and no detail; SQLAlchemy invalidates the pool on the disconnect and the next request
    connects afresh."""
    assert api.get("/orders/1001").status_code == 200
    assert _drop_the_service_connections(app) >= 1
    resp = api.get("/orders/1001")
    assert resp.status_code == 500 and resp.get_json()["code"] == "internal_error"
    assert api.get("/orders/1001").status_code == 200


def test_ensure_sync_is_remembered_per_function_and_stays_bounded(app, monkeypatch):
    """rma_service.RmaFlask memoizes Flask's ensure_sync: a plain function is returned as it
    is, a coroutine function still goes to async_to_sync, and per-request callables cannot
    grow the memo without bound."""
    import functools

    def plain():
        return 1

    async def coroutine():
        return 2

    monkeypatch.setattr(app, "async_to_sync", lambda func: ("wrapped", func))
    assert app.ensure_sync(plain) is plain and app.ensure_sync(plain) is plain
    assert app.ensure_sync(coroutine) == ("wrapped", coroutine)
    for _ in range(app._SYNC_MEMO_SIZE + 10):
        assert app.ensure_sync(functools.partial(plain))() == 1
    assert len(app._sync_memo) <= app._SYNC_MEMO_SIZE

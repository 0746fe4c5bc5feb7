"""Migration 0008 (mail_messages: template, locale, context; subject and text nullable) up and
down again, with rows, on a database of its own (a SQLite file, or a fresh PostgreSQL database
next to the test database)."""
from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import datetime, timezone

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect, select, text
from flask import current_app
from sqlalchemy.engine import make_url

from rma_service import create_app
from rma_service.extensions import db

WHEN = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)


@pytest.fixture
def own_database(database_url, tmp_path) -> Iterator[str]:
    if not database_url.startswith("postgresql"):
        yield f"sqlite:///{tmp_path / 'migrations.sqlite3'}"
        return
    import psycopg
    url = make_url(database_url)
    name = f"rma_mig_{secrets.token_hex(6)}"

    def admin_connection():
        return psycopg.connect(host=url.host or "127.0.0.1", port=url.port or 5432, user=url.username,
                               password=url.password, dbname="postgres", autocommit=True)
    with admin_connection() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin_connection() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _insert(**row) -> None:
    values = {"to": "ada@example.com", "status": "pending", "attempts": 0, "next_attempt_at": WHEN,
              "created_at": WHEN, **row}
    db.session.execute(db.metadata.tables["mail_messages"].insert().values(**values))
    db.session.commit()


def _columns() -> dict[str, bool]:
    return {c["name"]: c["nullable"] for c in inspect(db.engine).get_columns("mail_messages")}


def _read(statement, params=None) -> list[tuple]:
    """Read and end the transaction (PostgreSQL: an ALTER TABLE would wait for it)."""
    try:
        return [tuple(r) for r in db.session.execute(statement, params)]
    finally:
        db.session.rollback()


def _version() -> str:
    [(version,)] = _read(text("SELECT version_num FROM alembic_version"))
    return version


def _rows() -> list[tuple]:
    return _read(text("SELECT message_id, subject, text, html, status FROM mail_messages ORDER BY id"))


def test_0008_upgrades_with_the_rows_and_downgrades_without_losing_a_pending_mail(own_database):
    app = create_app({"DATABASE_URL": own_database, "TESTING": True})
    with app.app_context():
        try:
            upgrade(revision="0007")
            # A mail of the old code: rendered when queued.
            db.session.execute(text(
                "INSERT INTO mail_messages (message_id, \"to\", subject, text, html, status, attempts, "
                "next_attempt_at, created_at) VALUES ('<old@x>', 'ada@example.com', 'Your return', 'Hello\n', "
                "'<p>Hello</p>', 'sent', 1, :at, :at)"),
                {"at": WHEN if db.engine.dialect.name == "postgresql" else WHEN.replace(tzinfo=None)})
            db.session.commit()

            upgrade(revision="0008")
            assert _version() == "0008"
            columns = _columns()
            assert columns["subject"] and columns["text"] and columns["template"] and columns["context"]
            assert _rows() == [("<old@x>", "Your return", "Hello\n", "<p>Hello</p>", "sent")]
            # The migrated table is the model's (types, NULLs, indexes, constraints).
            only_mails = {"compare_type": True,
                          "include_name": lambda name, type_, parents: type_ != "table" or name == "mail_messages",
                          "include_object": lambda obj, name, type_, *_: type_ != "table" or name == "mail_messages"}
            assert compare_metadata(MigrationContext.configure(db.session.connection(), opts=only_mails),
                                    db.metadata) == []
            db.session.rollback()
            indexes = {i["name"] for i in inspect(db.engine).get_indexes("mail_messages")}
            assert {"ix_mail_messages_due", "ix_mail_messages_return_id"} <= indexes

            context = {"rma_number": "RMA-7K3M-9Q2X", "items": [{"line_id": "L1", "quantity": 1, "comment": None}],
                       "label": None}
            _insert(message_id="<pending@x>", template="return_created", locale="fr", context=context)
            mails = db.metadata.tables["mail_messages"]
            assert _read(select(mails.c.context).where(mails.c.message_id == "<pending@x>")) == [(context,)]

            # A pending mail not rendered yet: 0007 could neither render nor send it. Refused, unchanged
            # (`flask db downgrade` prints "Error: " and the message, and exits with status 1).
            config = current_app.extensions["migrate"].migrate.get_config()
            with pytest.raises(RuntimeError, match=r"^1 pending mail\(s\) are not rendered yet.*"
                                                   r"`flask --app wsgi rma run-jobs --once --job send_mail`"):
                command.downgrade(config, "0007")
            db.session.rollback()
            assert _version() == "0008" and "context" in _columns()

            # Rendered (the job ran), or failed for good: the downgrade goes through. A failed mail
            # that was never rendered gets a placeholder naming its template, and stays failed.
            db.session.execute(text("UPDATE mail_messages SET subject = 'Votre retour', text = 'Bonjour\n' "
                                    "WHERE message_id = '<pending@x>'"))
            db.session.commit()
            _insert(message_id="<broken@x>", template="no_such_template", locale="en", context={}, status="failed",
                    attempts=1, last_error="could not render template no_such_template (en): TemplateNotFound")
            downgrade(revision="0007")
            assert _version() == "0007"
            columns = _columns()
            assert not columns["subject"] and not columns["text"]
            assert not {"template", "locale", "context"} & set(columns)
            assert _rows() == [("<old@x>", "Your return", "Hello\n", "<p>Hello</p>", "sent"),
                               ("<pending@x>", "Votre retour", "Bonjour\n", None, "pending"),
                               ("<broken@x>", "[not rendered] no_such_template",
                                "This mail was never rendered (template no_such_template).\n", None, "failed")]

            upgrade(revision="0008")
            assert _version() == "0008" and len(_rows()) == 3
        finally:
            db.session.remove()
            db.engine.dispose()

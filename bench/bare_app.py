"""The baseline of the create-return benchmark: the least a Flask + Flask-SQLAlchemy
endpoint can do to turn a small JSON body into one row.

``BENCH_DATABASE_URL=... gunicorn -w 2 -k sync bench.bare_app:app`` (or ``bare_app:app``
from inside ``bench/``). ``POST /insert`` with ``{"name": str, "quantity": int}`` inserts one
row in ``bench_item`` and answers 201 with the row; ``GET /healthz`` answers 200.

The table is created when the module is imported (several workers may race to do so; the
loser sees the table the winner made). For SQLite the connections get the same pragmas and
lock timeout as the service (``rma_service._tune_sqlite`` and ``config.engine_options``), so
the comparison measures the service's own work, not a different journal mode.
"""
from __future__ import annotations

import os
import time
from datetime import datetime, timezone

from flask import Flask, jsonify, request
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import event, inspect

DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "sqlite:////tmp/rma_bench_bare.sqlite3")

app = Flask(__name__)
app.config["SQLALCHEMY_DATABASE_URI"] = DATABASE_URL
if DATABASE_URL.startswith("sqlite"):
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = {"connect_args": {"timeout": 30}}
db = SQLAlchemy(app)


class BenchItem(db.Model):
    __tablename__ = "bench_item"
    id = db.Column(db.Integer, primary_key=True)
    name = db.Column(db.String(100), nullable=False)
    quantity = db.Column(db.Integer, nullable=False)
    created_at = db.Column(db.DateTime(timezone=True), nullable=False)


def _tune_sqlite(engine) -> None:
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn, _record):
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()


def _create_table() -> None:
    for attempt in range(20):
        try:
            db.create_all()
            return
        except Exception:  # another worker created it at the same moment
            db.session.rollback()
            db.engine.dispose()
            if inspect(db.engine).has_table("bench_item"):
                return
            time.sleep(0.1 * (attempt + 1))
    db.create_all()


with app.app_context():
    _tune_sqlite(db.engine)
    _create_table()
    db.engine.dispose()  # no connection inherited across a fork


@app.post("/insert")
def insert():
    body = request.get_json(force=True, silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("name"), str) \
            or not isinstance(body.get("quantity"), int):
        return jsonify(error="name (string) and quantity (integer) are required"), 422
    item = BenchItem(name=body["name"][:100], quantity=body["quantity"], created_at=datetime.now(timezone.utc))
    db.session.add(item)
    db.session.flush()  # INSERT … RETURNING id; no reload after the commit
    payload = {"id": item.id, "name": item.name, "quantity": item.quantity,
               "created_at": item.created_at.isoformat()}
    db.session.commit()
    return jsonify(payload), 201


@app.get("/healthz")
def healthz():
    return jsonify(status="ok")

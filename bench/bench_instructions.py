#!/usr/bin/env python
"""Instructions per request of create-return and of the bare insert, counted by valgrind.

    python bench/bench_instructions.py [--requests N] [--db sqlite|postgresql|both]

The throughput benchmark (bench_create_return.py) moves by ±10 % between runs on this
shared 2-core machine, more than most single changes to the create path are worth.
valgrind's callgrind counts the instructions the application process executes instead:
the same code gives the same count (within about 1 %: RMA numbers and uuids are random)
whatever else the machine does, so a change can be measured before it is kept.

For each database and each target (the service's ``POST /api/v1/returns`` and the baseline
``POST /insert`` of bench/bare_app.py, the same request bodies as the throughput benchmark),
a child Python process runs under ``valgrind --tool=callgrind`` twice: once with N measured
requests and once with none, everything else identical (imports, app, migrations done
beforehand, orders pushed, warm-up requests). The difference divided by N is the cost of one
request in the application process: Flask, the service, SQLAlchemy, the driver; not the
database server, not HTTP parsing by gunicorn (the Flask test client calls the app). The
ratio bare / create-return of these counts is the server-side half of the throughput target.

Needs valgrind (Debian package ``valgrind``); PostgreSQL as for bench_create_return.py, whose
database ``rma_bench`` it recreates (don't run the two at once).
A run takes 2-4 minutes per database on 2 cores (the four children run two at a time).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
WARM_UP = 100
ORDERS = 50


# ---------------------------------------------------------------- child (under valgrind)


def _child(target: str, database_url: str, n: int) -> None:
    """Build the app, prepare, warm up, then ``n`` requests; nothing printed."""
    from bench.bench_create_return import EMAIL, order_body, order_number
    if target == "bare":
        os.environ["BENCH_DATABASE_URL"] = database_url
        from bench.bare_app import app
        client = app.test_client()

        def request(i: int) -> None:
            body = json.dumps({"name": f"item {i}", "quantity": i % 7 + 1}).encode()
            resp = client.post("/insert", data=body, headers={"Content-Type": "application/json"})
            assert resp.status_code == 201, resp.get_data()
    else:
        from wsgi import app
        client = app.test_client()
        auth = {"Authorization": f"Bearer {os.environ['BENCH_API_KEY']}", "Content-Type": "application/json"}
        orders = order_body(datetime.now(timezone.utc))
        for i in range(ORDERS):
            resp = client.put(f"/api/v1/orders/{order_number(i, ORDERS)}", data=orders, headers=auth)
            assert resp.status_code in (200, 201), resp.get_data()

        def request(i: int) -> None:
            body = json.dumps({"order_number": order_number(i, ORDERS), "email": EMAIL,
                               "items": [{"line_id": "L1", "quantity": 1, "reason": "too_small"}],
                               "resolution": "refund"}).encode()
            resp = client.post("/api/v1/returns", data=body, headers=auth)
            assert resp.status_code == 201, resp.get_data()

    for i in range(WARM_UP + n):
        request(i)


# ---------------------------------------------------------------- parent


def _count(target: str, database_url: str, n: int, env: dict[str, str]) -> int:
    proc = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", "--trace-children=no",
         sys.executable, __file__, "--child", target, "--database-url", database_url, "--requests", str(n)],
        cwd=ROOT, env=env, capture_output=True, text=True)
    found = re.search(r"Collected : (\d+)", proc.stderr)
    if proc.returncode != 0 or not found:
        raise SystemExit(f"{target} with {n} requests failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return int(found.group(1))


def _prepare(db: str, workdir: Path) -> tuple[dict[str, str], dict[str, str]]:
    """(database URL per target, environment of the children): fresh databases, the
    service's schema and an API key, as bench_create_return.py prepares them."""
    from bench.bench_create_return import environments, flask_cli
    env, bare_env = environments(db, workdir)
    env["PYTHONHASHSEED"] = "0"
    flask_cli(env, "db", "upgrade")
    env["BENCH_API_KEY"] = flask_cli(env, "rma", "create-api-key", "bench").strip().splitlines()[-1].strip()
    return {"service": env["RMA_DATABASE_URL"], "bare": bare_env["BENCH_DATABASE_URL"]}, env


def measure(db: str, n: int) -> dict[str, float]:
    workdir = Path(tempfile.mkdtemp(prefix="rma-instr-"))
    try:
        urls, env = _prepare(db, workdir)
        # Two at a time, service beside bare (separate databases or tables): two writers on one
        # SQLite file would wait for each other's locks, and waiting costs instructions too.
        # The run with the measured requests finds the other run's rows (a few hundred: no
        # measurable effect on one insert).
        counts = {}
        with ThreadPoolExecutor(2) as pool:
            for k in (0, n):
                jobs = [("service", k), ("bare", k)]
                counts.update(zip(jobs, pool.map(lambda job: _count(job[0], urls[job[0]], job[1], env), jobs)))
        return {target: (counts[(target, n)] - counts[(target, 0)]) / n for target in ("service", "bare")}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=200, help="measured requests per target (default 200)")
    ap.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    ap.add_argument("--child", choices=["service", "bare"], help=argparse.SUPPRESS)
    ap.add_argument("--database-url", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        _child(args.child, args.database_url, args.requests)
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (Debian: apt-get install valgrind)", file=sys.stderr)
        return 2
    started = datetime.now(timezone.utc)
    rows = []
    for db in (["sqlite", "postgresql"] if args.db == "both" else [args.db]):
        per = measure(db, args.requests)
        rows.append((db, per["service"], per["bare"]))
        print(f"{db:10s} instructions per request: create-return {per['service'] / 1e6:6.2f} M   "
              f"bare insert {per['bare'] / 1e6:5.2f} M   bare / create-return = {per['bare'] / per['service']:.1%}",
              flush=True)
    print(f"\n{started:%Y-%m-%d %H:%M} UTC · {args.requests} requests per target (+{WARM_UP} warm-up) · "
          f"application process only (Flask test client), counted by callgrind")
    return 0


if __name__ == "__main__":
    sys.exit(main())

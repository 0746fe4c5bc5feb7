"""Reminder sweep and webhook delivery at scale (issue 7).

    . .venv/bin/activate
    python bench/bench_reminders.py                 # the full run (~5–10 min on 2 cores)
    python bench/bench_reminders.py --due 20000 --big 200000    # a quicker look
    python bench/bench_reminders.py --write-readme  # also put the figures in bench/README.md

Two measurements, on PostgreSQL (database ``rma_bench_reminders``, dropped and created here,
dropped again at the end unless ``--keep``), with a fast local webhook receiver (an asyncio
HTTP/1.1 server in its own process, keep-alive, answering 204 and counting event ids):

1. Throughput: ``--due`` (100,000) returns whose "refund due in 3 days" reminder is due.
   The ``refund_reminders`` sweep records them (reminder row, outbox event, webhook delivery,
   mail row each), then ``deliver_webhooks`` POSTs them, signed, to the receiver.
   Reported: reminders/s, deliveries/s (target ≥ 1,000/s), duplicates (must be 0).
2. Scaling: the same sweep (reminders + deliveries) of ``--scale-due`` (1,000) due reminders
   among ``--small`` (10,000) returns, then among ``--big`` (1,000,000) returns, in this run.
   Around the due ones: 80 % finished returns (no hint), 20 % open ones with a hint in the next
   30 days, and one delivered webhook per return (history). With ``EXPLAIN (ANALYZE, BUFFERS)``
   of both due-selection queries on the big database.

Everything goes through the service's own code (``services.reminders.refund_sweep``,
``services.webhooks.deliver_due``) in this process, as the scheduler runs it. Rows are
bulk-loaded with COPY. PostgreSQL must answer on 127.0.0.1:5432 as ``postgres`` without a
password (``--pg`` to change).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import re
import socket
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterable, Iterator

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from psycopg.types.json import Json  # noqa: E402

DB_NAME = "rma_bench_reminders"
SECRET = "whsec_bench_0123456789abcdef"


# --- the receiver -----------------------------------------------------------------------------

def _receiver_main(port_queue: "multiprocessing.Queue[int]") -> None:
    """A minimal HTTP/1.1 server: 204 to every POST, ``GET /stats`` → counts as JSON."""
    ids: set[str] = set()
    stats: dict[str, Any] = {"posts": 0, "duplicates": 0, "first": None, "last": None}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                match = re.search(rb"(?i)content-length:\s*(\d+)", head)
                body = await reader.readexactly(int(match.group(1))) if match else b""
                if head.startswith(b"GET /stats"):
                    payload = json.dumps({**stats, "distinct": len(ids)}).encode()
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                                 + str(len(payload)).encode() + b"\r\n\r\n" + payload)
                elif head.startswith(b"POST /reset"):
                    ids.clear()
                    stats.update(posts=0, duplicates=0, first=None, last=None)
                    writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
                else:
                    stats["last"] = time.monotonic()
                    if stats["first"] is None:
                        stats["first"] = stats["last"]
                    stats["posts"] += 1
                    event_id = body[7:43].decode(errors="replace")  # {"id":"<36 chars>",...
                    if event_id in ids:
                        stats["duplicates"] += 1
                    ids.add(event_id)
                    writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
        port_queue.put(server.sockets[0].getsockname()[1])
        async with server:
            await server.serve_forever()

    asyncio.run(main())


class Receiver:
    def __init__(self) -> None:
        ctx = multiprocessing.get_context("fork")
        queue = ctx.Queue()
        self.process = ctx.Process(target=_receiver_main, args=(queue,), daemon=True)
        self.process.start()
        self.port = queue.get(timeout=10)
        self.url = f"http://127.0.0.1:{self.port}/hooks/rma"

    def _request(self, method: str, path: str) -> bytes:
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
            sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode())
            data = b""
            while b"\r\n\r\n" not in data:
                data += sock.recv(65536)
            head, _, body = data.partition(b"\r\n\r\n")
            match = re.search(rb"(?i)content-length:\s*(\d+)", head)
            length = int(match.group(1)) if match else 0
            while len(body) < length:
                body += sock.recv(65536)
            return body

    def stats(self) -> dict[str, Any]:
        """posts, distinct ids, duplicates, and ``seconds`` from the first POST to the last."""
        raw = json.loads(self._request("GET", "/stats"))
        first, last = raw.pop("first"), raw.pop("last")
        raw["seconds"] = round(last - first, 3) if first is not None else 0.0
        return raw

    def reset(self) -> None:
        self._request("POST", "/reset")

    def stop(self) -> None:
        self.process.terminate()
        self.process.join(5)


# --- the database -----------------------------------------------------------------------------

def admin_conn(pg: str) -> psycopg.Connection:
    return psycopg.connect(f"postgresql://{pg}/postgres", autocommit=True)


def recreate_database(pg: str) -> None:
    with admin_conn(pg) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB_NAME}")


def drop_database(pg: str) -> None:
    with admin_conn(pg) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")


def make_app(url: str, concurrency: int, batch: int):
    from rma_service import create_app
    return create_app({"DATABASE_URL": url, "TESTING": True, "SECRET_KEY": "bench", "LOG_LEVEL": "WARNING",
                       "BASE_URL": "https://rma.bench", "TEAM_EMAIL": "team@bench.test",
                       "WEBHOOK_CONCURRENCY": concurrency, "JOB_BATCH_SIZE": batch,
                       "WEBHOOK_TIMEOUT": 10.0, "JOB_LEASE_SECONDS": 300})


def copy_rows(conn: psycopg.Connection, table, rows: Iterable[dict[str, Any]]) -> int:
    """COPY ``rows`` into ``table`` (an SQLAlchemy Table); columns missing from a row get the
    model's scalar default, so columns other people add to the models do not break the load."""
    rows = iter(rows)
    first = next(rows, None)
    if first is None:
        return 0
    defaults = {}
    for column in table.columns:
        if column.name in first:
            continue
        default = column.default
        if default is not None and getattr(default, "is_scalar", False):
            defaults[column.name] = default.arg
        elif not column.nullable and column.server_default is None and not column.primary_key:
            raise RuntimeError(f"{table.name}.{column.name}: no value and no default for COPY")
    names = list(first) + list(defaults)
    n = 0
    with conn.cursor() as cur:
        with cur.copy(f'COPY {table.name} ({", ".join(chr(34) + c + chr(34) for c in names)}) FROM STDIN') as copy:
            for row in _chain(first, rows):
                values = [row[c] for c in first] + list(defaults.values())
                copy.write_row([Json(v) if isinstance(v, (dict, list)) else v for v in values])
                n += 1
    return n


def _chain(first, rest) -> Iterator:
    yield first
    yield from rest


def _code(i: int) -> str:
    from rma_service.domain.rma_number import ALPHABET, check_symbol
    body = ""
    for _ in range(7):
        i, r = divmod(i, 32)
        body = ALPHABET[r] + body
    return body + check_symbol(body)


def seed(url_psycopg: str, *, total: int, due: int, now: datetime, endpoint_url: str, history: bool,
         first_id: int = 1) -> None:
    """``total`` returns of one order, ``due`` of them with a refund reminder due at ``now``:
    received 12 days ago (due in 2 days: "due in 3 days" applies). Of the others, 80 % are
    finished (refunded, no hint) and 20 % open with a hint in the next 30 days."""
    from rma_service.models import Order, OutboxEvent, Return, WebhookDelivery, WebhookEndpoint
    with psycopg.connect(url_psycopg) as conn:
        conn.execute("TRUNCATE returns, orders, outbox_events, webhook_deliveries, webhook_endpoints, "
                     "mail_messages, reminders_sent, events RESTART IDENTITY CASCADE")
        endpoint_id = str(uuid.uuid4())
        copy_rows(conn, WebhookEndpoint.__table__, [{
            "id": endpoint_id, "url": endpoint_url, "events": ["return.refund_due_soon", "return.closed"],
            "secret": SECRET, "created_at": now - timedelta(days=400)}])
        copy_rows(conn, Order.__table__, [{
            "id": 1, "order_number": "BENCH-1", "customer_email": "bench@example.com", "customer_name": "Bench",
            "locale": "en", "ship_name": "Bench", "ship_line1": "1 rue du Banc", "ship_postal_code": "75001",
            "ship_city": "Paris", "ship_country": "FR", "placed_at": now - timedelta(days=500), "currency": "EUR",
            "created_at": now - timedelta(days=500), "updated_at": now - timedelta(days=500)}])
        # Due ones spread evenly among the others.
        step = max(1, total // max(due, 1))

        def returns() -> Iterator[dict[str, Any]]:
            made_due = 0
            for i in range(total):
                is_due = made_due < due and i % step == 0
                if is_due:
                    made_due += 1
                    created = now - timedelta(days=12)
                    status, received, hint, refunded = "received", created, now - timedelta(minutes=1), None
                elif i % 5:  # finished
                    created = now - timedelta(days=30 + i % 300)
                    status, received, hint, refunded = "refunded", created + timedelta(days=3), None, \
                        created + timedelta(days=10)
                else:  # open, nothing due for a while
                    created = now - timedelta(days=i % 10)
                    status, received, hint, refunded = "authorized", None, now + timedelta(days=1 + i % 30), None
                yield {"id": first_id + i, "rma_code": _code(first_id + i), "order_id": 1, "status": status,
                       "resolution": "refund", "customer_email": f"c{i % 50000}@example.com",
                       "customer_name": f"Customer {i}", "locale": "en", "currency": "EUR",
                       "created_at": created, "updated_at": created, "received_at": received,
                       "refunded_at": refunded, "shipping_fee": Decimal("0.00"), "restocking_fee": Decimal("0.00"),
                       "amount_refunded": Decimal("0.00"), "version": 1, "refund_reminder_at": hint,
                       "label_reminder_at": None}

        copy_rows(conn, Return.__table__, returns())
        conn.execute("SELECT setval(pg_get_serial_sequence('returns', 'id'), %s)", (first_id + total,))
        if history:  # one delivered webhook per return
            copy_rows(conn, OutboxEvent.__table__, ({
                "id": first_id + i, "event_id": str(uuid.UUID(int=first_id + i)), "type": "return.closed",
                "return_id": first_id + i, "payload": {"n": i}, "created_at": now - timedelta(days=20)}
                for i in range(total)))
            copy_rows(conn, WebhookDelivery.__table__, ({
                "id": first_id + i, "outbox_event_id": first_id + i, "endpoint_id": endpoint_id,
                "status": "delivered", "attempts": 1, "first_attempt_at": now - timedelta(days=20),
                "next_attempt_at": now - timedelta(days=20), "delivered_at": now - timedelta(days=20),
                "last_status_code": 204, "created_at": now - timedelta(days=20)} for i in range(total)))
            for table in ("outbox_events", "webhook_deliveries"):
                conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), %s)", (first_id + total,))
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")


# --- measuring --------------------------------------------------------------------------------

def run_until_done(fn, now: datetime) -> int:
    total = 0
    while True:
        n = fn(now)
        total += n
        if n == 0:
            return total


def deliver_in_processes(url: str, now: datetime, processes: int, concurrency: int, batch: int) -> int:
    """``processes`` schedulers' worth of ``flask rma run-jobs --once --job deliver_webhooks``
    side by side, each run again until nothing is left."""
    import subprocess
    env = {**os.environ, "RMA_DATABASE_URL": url, "RMA_SECRET_KEY": "bench", "RMA_LOG_LEVEL": "WARNING",
           "RMA_WEBHOOK_CONCURRENCY": str(concurrency), "RMA_JOB_BATCH_SIZE": str(batch),
           "RMA_JOB_LEASE_SECONDS": "300"}
    command = [sys.executable, "-m", "flask", "--app", "wsgi", "rma", "run-jobs", "--once",
               "--job", "deliver_webhooks", "--now", now.isoformat().replace("+00:00", "Z")]
    delivered = 0
    while True:
        procs = [subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
                 for _ in range(processes)]
        counts = [int(p.communicate()[0].strip().rpartition(": ")[2] or 0) for p in procs]
        delivered += sum(counts)
        if not any(counts):
            return delivered


def sweep(app, now: datetime, *, explain_limit: int = 0, processes: int = 1,
          url: str = "", concurrency: int = 16, batch: int = 500) -> dict[str, Any]:
    """The reminder sweep, then the delivery of what it queued (with ``explain_limit``, the
    delivery claim is EXPLAINed in between, while the deliveries are due)."""
    from rma_service.extensions import db
    from rma_service.services.reminders import refund_sweep
    from rma_service.services.webhooks import deliver_due
    result: dict[str, Any] = {}
    with app.app_context():
        started = time.perf_counter()
        reminders = run_until_done(refund_sweep, now)
        swept = time.perf_counter()
        if explain_limit:
            result["explain_deliveries"] = explain(app, now, explain_limit, "deliveries")
            db.session.remove()
        resumed = time.perf_counter()
        if processes > 1:
            delivered = deliver_in_processes(url, now, processes, concurrency, batch)
        else:
            delivered = run_until_done(deliver_due, now)
        done = time.perf_counter()
        db.session.remove()
    result.update(reminders=reminders, reminder_seconds=swept - started, delivered=delivered,
                  delivery_seconds=done - resumed, total_seconds=(swept - started) + (done - resumed))
    return result


def explain(app, now: datetime, limit: int, which: str) -> dict[str, str]:
    from sqlalchemy.dialects import postgresql

    from rma_service.extensions import db
    from rma_service.models import Return, WebhookDelivery
    from rma_service.services.claims import claim_query
    from rma_service.services.reminders import due_query
    from rma_service.services.webhooks import due_candidates
    if which == "reminders":
        queries = {"reminders (the refund_reminders claim, before the sweep)":
                   due_query(Return.refund_reminder_at, now, limit, lock=True)}
    else:
        queries = {"deliveries (the deliver_webhooks claim, before the delivery)":
                   claim_query(WebhookDelivery.__table__, due_candidates(now), datetime.now(timezone.utc), limit)}
    plans = {}
    with app.app_context():
        with db.engine.connect() as conn:
            for name, query in queries.items():
                compiled = query.compile(dialect=postgresql.psycopg.dialect())
                rows = conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + str(compiled),
                                            compiled.params).scalars().all()
                conn.rollback()
                plans[name] = "\n".join(rows)
    return plans


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--due", type=int, default=100_000, help="due reminders of the throughput run")
    parser.add_argument("--small", type=int, default=10_000, help="returns of the scaling baseline")
    parser.add_argument("--big", type=int, default=1_000_000, help="returns of the scaling run")
    parser.add_argument("--scale-due", type=int, default=1_000, help="due reminders of the scaling runs")
    parser.add_argument("--concurrency", type=int, default=16, help="RMA_WEBHOOK_CONCURRENCY")
    parser.add_argument("--batch", type=int, default=500, help="RMA_JOB_BATCH_SIZE")
    parser.add_argument("--processes", type=int, default=1,
                        help="deliver with this many `rma run-jobs` processes side by side (default: "
                             "one, in this process)")
    parser.add_argument("--pg", default="postgres@127.0.0.1:5432", help="user@host:port")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--no-history", action="store_true", help="no delivered webhook per return")
    parser.add_argument("--only", choices=["throughput", "scaling"], help="run one of the two measurements")
    parser.add_argument("--write-readme", action="store_true",
                        help='(re)write the "## Reminders and webhooks" section of bench/README.md')
    args = parser.parse_args()

    url = f"postgresql+psycopg://{args.pg}/{DB_NAME}"
    url_psycopg = f"postgresql://{args.pg}/{DB_NAME}"
    recreate_database(args.pg)
    receiver = Receiver()
    results: dict[str, Any] = {"args": vars(args), "cpus": os.cpu_count()}
    try:
        from flask_migrate import upgrade
        app = make_app(url, args.concurrency, args.batch)
        with app.app_context():
            upgrade(directory=str(ROOT / "migrations"))
        now = datetime.now(timezone.utc).replace(microsecond=0)

        # 1. Throughput
        if args.only != "scaling":
            print(f"seeding {args.due:,} due reminders …", flush=True)
            started = time.perf_counter()
            seed(url_psycopg, total=args.due, due=args.due, now=now, endpoint_url=receiver.url, history=False)
            print(f"  seeded in {time.perf_counter() - started:.1f} s", flush=True)
            receiver.reset()
            r = sweep(app, now, processes=args.processes, url=url, concurrency=args.concurrency,
                      batch=args.batch)
            stats = receiver.stats()
            # Deliveries per second as the receiver saw them: from the first POST to the last
            # (so that the start-up of `rma run-jobs` processes does not count).
            r.update(receiver=stats, reminders_per_second=r["reminders"] / r["reminder_seconds"],
                     deliveries_per_second=stats["posts"] / stats["seconds"] if stats["seconds"] else 0.0)
            results["throughput"] = r
            print(f"  {r['reminders']:,} reminders in {r['reminder_seconds']:.1f} s "
                  f"({r['reminders_per_second']:,.0f}/s); {r['delivered']:,} deliveries in "
                  f"{r['delivery_seconds']:.1f} s, {stats['seconds']:.1f} s from the first POST to the last "
                  f"({r['deliveries_per_second']:,.0f}/s); receiver: {stats}", flush=True)

        # 2. Scaling
        for name, total in () if args.only == "throughput" else (("small", args.small), ("big", args.big)):
            print(f"seeding {total:,} returns, {args.scale_due:,} due …", flush=True)
            started = time.perf_counter()
            seed(url_psycopg, total=total, due=args.scale_due, now=now, endpoint_url=receiver.url,
                 history=not args.no_history)
            print(f"  seeded in {time.perf_counter() - started:.1f} s", flush=True)
            if name == "big":
                results["explain"] = explain(app, now, args.batch, "reminders")
            receiver.reset()
            r = sweep(app, now, explain_limit=args.batch if name == "big" else 0)
            results.setdefault("explain", {}).update(r.pop("explain_deliveries", {}))
            r["receiver"] = receiver.stats()
            r["returns"] = total
            results[name] = r
            print(f"  sweep: {r['reminders']:,} reminders in {r['reminder_seconds']:.2f} s + "
                  f"{r['delivered']:,} deliveries in {r['delivery_seconds']:.2f} s = {r['total_seconds']:.2f} s; "
                  f"receiver: {r['receiver']}", flush=True)
    finally:
        receiver.stop()
        if not args.keep:
            drop_database(args.pg)

    if args.only:
        print(json.dumps({k: v for k, v in results.items() if k != "explain"}, indent=2, default=str))
        return 0
    report = markdown(results)
    print()
    print(report)
    if args.write_readme:
        write_readme(report)
    ok = (results["throughput"]["deliveries_per_second"] >= 1000
          and all(results[k]["receiver"]["duplicates"] == 0 for k in ("throughput", "small", "big")))
    return 0 if ok else 1


def markdown(res: dict[str, Any]) -> str:
    t, small, big = res["throughput"], res["small"], res["big"]
    ratio = big["total_seconds"] / small["total_seconds"] if small["total_seconds"] else float("nan")
    lines = [
        "## Reminders and webhooks",
        "",
        "```sh",
        ". .venv/bin/activate",
        "python bench/bench_reminders.py --write-readme   # PostgreSQL on 127.0.0.1:5432, ~5–10 min",
        "```",
        "",
        "`bench/bench_reminders.py` (see its docstring) drives the service's own sweep code — the",
        "`refund_reminders` job, then `deliver_webhooks` — against PostgreSQL (database",
        "`rma_bench_reminders`, created and dropped by the script) and a local asyncio receiver",
        "(HTTP/1.1 keep-alive, 204, counts event ids). Rows are loaded with COPY.",
        f"Measured on {datetime.now(timezone.utc):%Y-%m-%d}, {res['cpus']} CPUs, "
        f"{'one process' if res['args']['processes'] == 1 else str(res['args']['processes']) + ' delivery processes'}, "
        f"`RMA_WEBHOOK_CONCURRENCY={res['args']['concurrency']}`, `RMA_JOB_BATCH_SIZE={res['args']['batch']}`.",
        "",
        f"### A sweep of {t['reminders']:,} due reminders",
        "",
        "| step | count | seconds | per second |",
        "| --- | ---: | ---: | ---: |",
        f"| reminders recorded (reminder row, outbox event, webhook delivery, mail row) | {t['reminders']:,} "
        f"| {t['reminder_seconds']:.1f} | {t['reminders_per_second']:,.0f} |",
        f"| webhooks delivered (signed POST, 2xx, marked delivered) | {t['delivered']:,} "
        f"| {t['receiver']['seconds']:.1f} | **{t['deliveries_per_second']:,.0f}** |",
        "",
        "Deliveries per second as the receiver saw them (first POST to last). "
        f"Receiver: {t['receiver']['posts']:,} POSTs, {t['receiver']['distinct']:,} distinct event ids, "
        f"{t['receiver']['duplicates']} duplicates. Target ≥ 1,000 deliveries/s: "
        f"{'met' if t['deliveries_per_second'] >= 1000 else 'missed'}.",
        "",
        f"### Cost follows the due items, not the returns ({big['reminders']:,} due)",
        "",
        "| returns in the database | due | reminder sweep (s) | delivery (s) | whole sweep (s) |",
        "| ---: | ---: | ---: | ---: | ---: |",
        f"| {small['returns']:,} (baseline) | {small['reminders']:,} | {small['reminder_seconds']:.2f} "
        f"| {small['delivery_seconds']:.2f} | {small['total_seconds']:.2f} |",
        f"| {big['returns']:,} | {big['reminders']:,} | {big['reminder_seconds']:.2f} "
        f"| {big['delivery_seconds']:.2f} | {big['total_seconds']:.2f} |",
        "",
        f"{big['returns'] // small['returns']}× the returns, same due items: the sweep takes "
        f"{ratio:.2f}× the baseline's time. Each return also has one delivered webhook in its history "
        "(80 % of the returns are finished, 20 % open with a hint in the next 30 days). The due-selection "
        "queries read the same number of index entries in both (see the plans: `rows=500` per claim, "
        "one index range scan each). What can differ is the price of a due row: in the big table every "
        "due return sits on its own heap page, often not cached yet (`shared read` in the plans), while "
        "the small table is cached whole.",
        "",
        "Why: every return carries `refund_reminder_at` (and `label_reminder_at`), the earliest "
        "instant a reminder can be due, NULL once none can be; the sweep reads `WHERE "
        "refund_reminder_at <= now` through a partial index (`WHERE refund_reminder_at IS NOT NULL`) "
        "and writes the next instant back. Deliveries are read through `(status, next_attempt_at)`; "
        "the per-return order check is an index lookup per candidate.",
        "",
        f"`EXPLAIN (ANALYZE, BUFFERS)` of the two due-selection queries with {big['returns']:,} returns:",
        "",
    ]
    for name, plan in res["explain"].items():
        lines += [f"{name}:", "", "```", plan, "```", ""]
    return "\n".join(lines).rstrip() + "\n"


def write_readme(report: str) -> None:
    path = ROOT / "bench" / "README.md"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    heading = "## Reminders and webhooks"
    if heading in text:  # replace our own section only
        start = text.index(heading)
        nxt = text.find("\n## ", start + len(heading))
        text = text[:start] + report + ("\n" + text[nxt + 1:] if nxt != -1 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + report
    path.write_text(text)
    print(f"wrote the section to {path}")


if __name__ == "__main__":
    sys.exit(main())

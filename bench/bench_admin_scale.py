#!/usr/bin/env python
"""The admin view and the KPIs on a million returns (PostgreSQL).

    python bench/bench_admin_scale.py [--returns 1000000] [--reuse] [--requests 60]
                                      [--kpi-requests 15] [--explain bench/admin_explain.txt]
                                      [--json out.json]

1. Database ``rma_bench_admin`` (dropped and recreated, unless ``--reuse`` finds it loaded with
   as many returns as asked): the schema by the migrations (``flask db upgrade``, in-process).
2. Load, generated (seeded, so every run builds the same shop): two years of a fashion shop
   with ``--returns`` returns (default 1 000 000) and 2.5 orders per return (a 40 % return
   rate, usual for clothing), 1–3 lines per order, 1–2 items per return, a label per
   authorized return, the audit trail (≈ 6 events per return) and the disputes. Statuses
   follow each return's life up to now: the old ones are finished (refunded, closed,
   rejected, cancelled, expired, a few stuck and overdue), the recent ones spread over the
   queues. Rows go in with ``COPY`` through psycopg, two processes in parallel (orders; the
   rest), with the migrations' secondary indexes dropped during the load and rebuilt after
   it, then ``VACUUM ANALYZE``. About 3–5 minutes on 2 cores.
3. Measure through the Flask test client, signed in as an agent (the real login form, CSRF
   token and all), each scenario warmed up once then requested ``--requests`` times
   (``--kpi-requests`` for the dashboards): every queue's first page, a deep page of "all"
   (a cursor two years back), a filtered list, search by RMA number, order number, tracking
   number and email (each a different existing value per request), the return page, the KPI
   dashboard for the last month and the last year, and ``GET /api/v1/kpis`` for a year.
   Latency p50 / p95 / max per scenario, against the targets: lists and searches p95 ≤ 50 ms,
   the year's KPIs ≤ 500 ms.
4. ``--explain FILE``: the SQL each scenario ran, with ``EXPLAIN (ANALYZE, BUFFERS)``.

Exit status 0 when every target is met, 1 otherwise, 2 when a request failed.
"""
from __future__ import annotations

import argparse
import bisect
import itertools
import json
import math
import multiprocessing as mp
import random
import re
import statistics
import sys
import time
from array import array
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from rma_service.domain.rma_number import check_symbol  # noqa: E402

DB = "rma_bench_admin"
ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
DSN = f"postgresql://postgres@127.0.0.1:5432/{DB}"
URL = f"postgresql+psycopg://postgres@127.0.0.1:5432/{DB}"
SEED = 20261125
ORDERS_PER_RETURN = 2.5
CUSTOMERS = 600_000
SKUS = 2_000
DAY = 86_400
PASSWORD = "bench-password-123"
TARGET_LIST_MS = 50.0
TARGET_KPI_YEAR_MS = 500.0

REASONS = [("too_small", 22), ("too_large", 18), ("changed_mind", 15), ("not_as_described", 12),
           ("damaged", 8), ("defective", 8), ("wrong_item", 6), ("arrived_late", 5), ("other", 6)]
SHOP_FAULT = {"damaged", "defective", "wrong_item", "not_as_described"}
PRODUCTS = ["Linen shirt", "Selvedge jeans", "Wool socks", "Rain jacket", "Canvas sneakers", "Wrap dress",
            "Hoodie", "Cotton T-shirt", "Cashmere scarf", "Chelsea boots", "Chino trousers", "Denim jacket"]
COLOURS = ["navy", "black", "white", "olive", "sand", "rust", "grey", "indigo"]
SIZES = ["XS", "S", "M", "L", "XL"]
CITIES = [("75011", "Paris", "FR"), ("69003", "Lyon", "FR"), ("13001", "Marseille", "FR"),
          ("10115", "Berlin", "DE"), ("1050", "Bruxelles", "BE"), ("28013", "Madrid", "ES")]
FIRST = ["Ada", "Alan", "Marie", "Simone", "Louis", "Emma", "Hugo", "Chloé", "Lucas", "Léa", "Noah", "Jade",
         "Mia", "Liam", "Zoé", "Arthur", "Inès", "Jules", "Lina", "Gabriel", "Sofia", "Paul", "Anna", "Max",
         "Clara", "Victor", "Eva", "Sacha", "Nina", "Tom", "Alice", "Adam", "Rose", "Nathan", "Lou", "Ethan",
         "Camille", "Oscar", "Manon", "Elias"]
LAST = ["Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand", "Leroy", "Moreau",
        "Simon", "Laurent", "Lefebvre", "Michel", "Garcia", "David", "Bertrand", "Roux", "Vincent", "Fournier",
        "Morel", "Girard", "Andre", "Mercier", "Dupont", "Lambert", "Bonnet", "Francois", "Martinez", "Legrand",
        "Muller", "Schmidt", "Weber", "Rossi", "Lopez", "Janssens", "Peeters", "Novak", "Haddad", "Keller"]
COMMENTS = ["Too tight on the shoulders", "Colour differs from the photos", "Seam came apart after one wash",
            "Ordered two sizes, keeping one", "Arrived after the event", None, None, None, None, None]
AGENTS = [("admin@bench.example", "Bench Admin", "admin", True)] + [
    (f"handler{k}@bench.example", name, "agent", True) for k, name in enumerate(
        ["Camille Martin", "Sam Lee", "Nora Haddad", "Jonas Weber", "Inès Garcia", "Tom Dubois", "Lea Rossi"], 1)] + [
    ("desk@bench.example", "Receiving Desk", "agent", False)]


# ---------------------------------------------------------------- deterministic shop

def mix(n: int) -> int:
    """A 64-bit hash of n (splitmix64): the same facts of an order in both load processes."""
    z = (n + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return z ^ (z >> 31)


def n_lines(h: int) -> int:
    r = h % 100
    return 1 if r < 50 else 2 if r < 85 else 3


def customer(c: int) -> tuple[str, str]:
    first, last = FIRST[c % len(FIRST)], LAST[(c // len(FIRST)) % len(LAST)]
    plain = (first + "." + last).lower().translate(str.maketrans("éèï", "eei"))
    return f"{plain}{c // 1600}@example.com", f"{first} {last}"


def line_facts(j: int, line: int) -> tuple[str, str, int, str]:
    """(sku, name, quantity, unit price) of line ``line`` (0-based) of order ``j``."""
    h = mix(j * 4 + line + 1)
    u = (h % 10_000) / 10_000
    k = int(SKUS * u * u)  # a few best sellers, a long tail
    product = PRODUCTS[k % len(PRODUCTS)]
    name = f"{product}, {COLOURS[(k * 7 + k // 12) % len(COLOURS)]}, {SIZES[(k * 3 + k // 96) % len(SIZES)]}"
    price = 19 + (k * 37) % 160
    return f"SKU-{k:05d}", name, 1 + (h >> 20) % 2, f"{price}.{(k * 7) % 10}0"


class Clock:
    """Times as seconds after BASE, written in PostgreSQL's text form without datetime objects."""

    def __init__(self, now: int):
        self.now = now
        self.base = (now // DAY - 800) * DAY
        start = datetime.fromtimestamp(self.base, timezone.utc)
        self.days = [(start + timedelta(days=d)).strftime("%Y-%m-%d") for d in range(830)]

    def ts(self, sec) -> str:
        if sec is None:
            return "\\N"
        sec = int(sec) - self.base
        d, s = divmod(sec, DAY)
        h, s = divmod(s, 3600)
        m, s = divmod(s, 60)
        return f"{self.days[d]} {h:02d}:{m:02d}:{s:02d}+00"


def day_weights(start: int, days: int) -> list[float]:
    """How busy each day is: growth over the two years, a yearly wave, the January sales and
    the weeks after Black Friday, quiet Sundays."""
    out = []
    for d in range(days):
        day = datetime.fromtimestamp(start + d * DAY, timezone.utc)
        w = (1 + 0.4 * d / days) * (1 + 0.15 * math.cos(2 * math.pi * (day.timetuple().tm_yday - 20) / 365))
        if day.month == 1 and day.day <= 25:
            w *= 1.6
        if (day.month == 11 and day.day >= 28) or (day.month == 12 and day.day <= 12):
            w *= 1.45
        w *= {0: 1.25, 6: 0.55}.get(day.weekday(), 1.0)
        out.append(w)
    return out


def spans(n_returns: int, now: int) -> dict:
    ret_start = now - 730 * DAY
    order_start = ret_start - 35 * DAY
    return {"R": n_returns, "O": int(n_returns * ORDERS_PER_RETURN), "ret_start": ret_start,
            "ret_span": now - 3600 - ret_start, "order_start": order_start, "order_span": now - DAY - order_start}


ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def rma_code(i: int) -> str:
    """Distinct, random-looking codes: a bijection of i over 32**7, then the check symbol."""
    n = (i * 0x5DEECE66D + 0xB) % (32 ** 7)
    body = "".join(ALPHABET[(n >> (5 * k)) & 31] for k in range(6, -1, -1))
    return body + check_symbol(body)


# ---------------------------------------------------------------- load: orders

def _copy(conn, table: str, columns: str, rows_iter, chunk: int = 20_000) -> int:
    n = 0
    with conn.cursor() as cur, cur.copy(f"COPY {table} ({columns}) FROM STDIN") as cp:
        buf = []
        for line in rows_iter:
            buf.append(line)
            if len(buf) >= chunk:
                cp.write("".join(buf))
                n += len(buf)
                buf.clear()
        if buf:
            cp.write("".join(buf))
            n += len(buf)
    return n


def load_orders(n_returns: int, now: int) -> str:
    t0 = time.perf_counter()
    s, clk = spans(n_returns, now), Clock(now)
    O = s["O"]
    conn = psycopg.connect(DSN)
    conn.execute("SET session_replication_role = replica")  # no FK triggers during the load
    lines_out: list[str] = []

    def orders():
        line_id = 0
        for j in range(O):
            h = mix(j)
            placed = s["order_start"] + j * s["order_span"] // O + h % 600
            delivered = placed + 2 * DAY + (h >> 8) % (2 * DAY)
            c = (h >> 12) % CUSTOMERS
            nl = n_lines(h)
            units = 0
            for line in range(nl):
                sku, name, qty, price = line_facts(j, line)
                units += qty
                line_id += 1
                lines_out.append(f"{line_id}\t{j + 1}\tL{line + 1}\t{sku}\t{name}\t{qty}\t{price}\t\\N\t\\N\t0\n")
            postal, city, country = CITIES[c % len(CITIES)]
            ts_placed = clk.ts(placed)
            email, name = customer(c)
            yield (f"{j + 1}\tSO-{100000000 + j}\t{email}\t{name}\t{'fr' if country in ('FR', 'BE') else 'en'}\t"
                   f"{name}\t{c % 200} rue des Lilas\t{postal}\t{city}\t{country}\t{ts_placed}\t{clk.ts(delivered)}\t"
                   f"EUR\t{ts_placed}\t{ts_placed}\t{units}\n")

    def lines():
        yield from lines_out

    n_orders = _copy(conn, "orders", "id, order_number, customer_email, customer_name, locale, ship_name, ship_line1, "
                     "ship_postal_code, ship_city, ship_country, placed_at, delivered_at, currency, created_at, "
                     "updated_at, units", orders())
    n_lines_ = _copy(conn, "order_lines", "id, order_id, line_id, sku, name, quantity, unit_price, category, "
                     "returnable, reserved_quantity", lines())
    conn.commit()
    conn.close()
    return f"orders {n_orders:,}, order lines {n_lines_:,} in {time.perf_counter() - t0:.0f} s"


# ---------------------------------------------------------------- load: returns and the rest

def load_returns(n_returns: int, now: int) -> str:
    t0 = time.perf_counter()
    s, clk = spans(n_returns, now), Clock(now)
    R, O = s["R"], s["O"]
    rng = random.Random(SEED)
    # Order line ids as the other process numbers them: sum of the lines of the orders before.
    first_line = array("l", [0]) * O
    acc = 0
    for j in range(O):
        first_line[j] = acc
        acc += n_lines(mix(j))
    reasons = [r for r, _ in REASONS]
    weights = [w for _, w in REASONS]
    conns = {t: psycopg.connect(DSN) for t in ("returns", "return_items", "labels", "events", "disputes")}
    for conn in conns.values():
        conn.execute("SET session_replication_role = replica")
    cols = {
        "returns": "id, rma_code, order_id, status, resolution, customer_email, customer_name, locale, currency, "
                   "created_at, updated_at, authorized_at, first_scan_at, received_at, inspected_at, refunded_at, "
                   "closed_at, shipping_fee, restocking_fee, amount_refunded, refund_reference, reject_reason, version, "
                   "refund_reminder_at, label_reminder_at",
        "return_items": "id, return_id, order_line_id, line_id, sku, name, quantity, reason, comment, unit_price, "
                        "received_quantity, condition, disposition, refurbish_status, triage_note, triaged_at, created_at",
        "labels": "id, return_id, carrier, service, status, tracking_number, carrier_shipment_id, cost, currency, "
                  "tracking_status, tracking_updated_at, attempts, issued_at, expires_at, voided_at, created_at",
        "events": "id, return_id, dispute_id, type, at, actor, from_status, to_status, data",
        "disputes": "id, return_id, status, handler_id, customer_email, amount_at_stake, outcome, resolved_amount, "
                    "opened_at, assigned_at, resolved_at",
    }
    cursors = {t: conns[t].cursor() for t in conns}
    managers = {t: cursors[t].copy(f"COPY {t} ({cols[t]}) FROM STDIN") for t in conns}  # keep them alive
    copies = {t: managers[t].__enter__() for t in conns}
    bufs: dict[str, list[str]] = {t: [] for t in conns}
    counts = dict.fromkeys(conns, 0)
    ids = dict.fromkeys(conns, 0)
    recheck = "1970-01-01 00:00:00+00"  # open returns: "look at the reminders at the next sweep"
    N = "\\N"

    def put(table: str, line: str) -> None:
        buf = bufs[table]
        buf.append(line)
        if len(buf) >= 20_000:
            copies[table].write("".join(buf))
            counts[table] += len(buf)
            buf.clear()

    def event(rid, type_, at, actor, frm, to, data="{}", dispute_id=None):
        if at is None or at > now:
            return
        ids["events"] += 1
        put("events", f"{ids['events']}\t{rid}\t{dispute_id or N}\t{type_}\t{clk.ts(at)}\t{actor}\t{frm or N}\t{to or N}\t{data}\n")

    handlers = list(range(2, 2 + 7))
    # Creation times follow day_weights (inverse of its cumulative distribution), in id order.
    busy = day_weights(s["ret_start"], s["ret_span"] // DAY + 1)
    cumulative = list(itertools.accumulate(busy))
    total = cumulative[-1]
    for i in range(1, R + 1):
        x = (i - 1 + rng.random()) / R * total
        d = bisect.bisect_left(cumulative, x)
        within = (x - (cumulative[d - 1] if d else 0)) / busy[d]
        created = min(s["ret_start"] + d * DAY + int(within * DAY), now - 3600)
        j = int((created - rng.uniform(4, 30) * DAY - s["order_start"]) * O / s["order_span"])
        j = min(max(j, 0), O - 1)
        h = mix(j)
        c = (h >> 12) % CUSTOMERS
        email, name = customer(c)
        locale = "fr" if CITIES[c % len(CITIES)][2] in ("FR", "BE") else "en"
        nl = n_lines(h)
        k = 1 if (nl == 1 or rng.random() < 0.75) else 2
        items = []
        for line in range(k):
            sku, pname, qty, price = line_facts(j, line)
            quantity = 1 if qty == 1 or rng.random() < 0.85 else 2
            reason = rng.choices(reasons, weights)[0]
            comment = COMMENTS[rng.randrange(len(COMMENTS))] if reason != "other" else "Not what I expected"
            items.append([line, sku, pname, quantity, reason, comment, price])
        value = sum(float(it[6]) * it[3] for it in items)
        customer_pays = all(it[4] not in SHOP_FAULT for it in items)
        fee = 5.90 if customer_pays else 0.0
        u = rng.random()
        resolution = "refund" if u < 0.85 else "exchange" if u < 0.95 else "store_credit"
        needs_approval = any(it[4] == "other" for it in items) or rng.random() < 0.03
        # The life of the return, as instants (None: never happens).
        authorized = rejected = cancelled = expired = first_scan = delivered = received = None
        inspected = refunded = closed = dispute_open = dispute_resolved = None
        triaged: list = []
        if needs_approval:
            decided = created + int(rng.uniform(0.1, 2.5) * DAY)
            if rng.random() < 0.3:
                rejected = decided
            else:
                authorized = decided
        else:
            authorized = created
        fate = rng.random()
        if authorized is not None:
            if fate < 0.04:
                cancelled = authorized + int(rng.uniform(0.1, 3) * DAY)
            elif fate < 0.08:
                expired = authorized + 28 * DAY
            else:
                first_scan = authorized + int(rng.uniform(0.3, 6) * DAY)
                delivered = first_scan + int(rng.uniform(1, 4) * DAY)
                received = delivered + int(rng.uniform(0.05, 2) * DAY)
                disputed = rng.random() < 0.025
                t = received
                for n, it in enumerate(items):
                    t += int(rng.uniform(0.02, 1.5) * DAY)
                    if disputed and n == 0:
                        disp = "dispute"
                    else:
                        disp = "restock" if rng.random() < 0.72 else "refurbish"
                    triaged.append((t, disp))
                last = max(t for t, _ in triaged)
                if disputed:
                    dispute_open = triaged[0][0]
                    dispute_resolved = dispute_open + int(rng.uniform(0.5, 9) * DAY)
                    inspected = max(last, dispute_resolved)
                else:
                    inspected = last
                if resolution == "refund":
                    late = rng.random()
                    if late < 0.003:
                        refunded = None  # stuck: overdue forever
                    elif late < 0.06:
                        refunded = inspected + int(rng.uniform(8, 40) * DAY)
                    else:
                        refunded = inspected + int(rng.uniform(0.05, 3) * DAY)
                else:
                    closed = inspected + int(rng.uniform(0.05, 2) * DAY)

        def done(t):
            return t is not None and t <= now

        if done(rejected):
            status, updated = "rejected", rejected
        elif done(cancelled):
            status, updated = "cancelled", cancelled
        elif done(expired):
            status, updated = "expired", expired
        elif done(refunded):
            status, updated = "refunded", refunded
        elif done(closed):
            status, updated = "closed", closed
        elif done(inspected):
            status, updated = "inspected", inspected
        elif done(dispute_open):
            status, updated = "disputed", dispute_open
        elif done(received):
            status, updated = "received", max([received] + [t for t, _ in triaged if t <= now])
        elif done(first_scan):
            status, updated = "in_transit", first_scan
        elif done(authorized):
            status, updated = "authorized", authorized
        else:
            status, updated = "requested", created
        final = status in ("rejected", "cancelled", "expired", "refunded", "closed")
        due = max(0.0, round(sum(float(it[6]) * it[3] for it in items) - fee, 2)) if resolution == "refund" else 0.0
        amount_refunded = due if status == "refunded" else 0.0
        ts_created = clk.ts(created)
        put("returns", "\t".join((
            str(i), rma_code(i), str(j + 1), status, resolution, email, name, locale, "EUR", clk.ts(created),
            clk.ts(updated), clk.ts(authorized if done(authorized) else None),
            clk.ts(first_scan if done(first_scan) else None), clk.ts(received if done(received) else None),
            clk.ts(inspected if done(inspected) else None), clk.ts(refunded if done(refunded) else None),
            clk.ts(closed if done(closed) else None), f"{fee:.2f}", "0.00", f"{amount_refunded:.2f}",
            f"PSP-{i}" if status == "refunded" else N, "Outside the return policy" if status == "rejected" else N,
            "1", N if final else recheck, N if final else recheck)) + "\n")
        for n, it in enumerate(items):
            line, sku, pname, quantity, reason, comment, price = it
            ids["return_items"] += 1
            tri = triaged[n] if n < len(triaged) and done(triaged[n][0]) else None
            got = done(received)
            disp = tri[1] if tri else "pending"
            refurb = N
            if disp == "refurbish":
                refurb = "pending" if now - tri[0] < 12 * DAY else ("refurbished" if rng.random() < 0.8 else "recycled")
            put("return_items", "\t".join((
                str(ids["return_items"]), str(i), str(first_line[j] + line + 1), f"L{line + 1}", sku, pname,
                str(quantity), reason, comment or N, price, str(quantity if got else 0),
                ("like_new" if disp == "restock" else "used" if disp == "refurbish" else "damaged") if tri else N,
                disp, refurb, N, clk.ts(tri[0]) if tri else N, ts_created)) + "\n")
        if done(authorized):
            ids["labels"] += 1
            label_status = "voided" if status == "cancelled" else "expired" if status == "expired" else "issued"
            tracking = "delivered" if done(delivered) else "in_transit" if done(first_scan) else N
            tracked_at = delivered if done(delivered) else first_scan if done(first_scan) else None
            put("labels", "\t".join((
                str(ids["labels"]), str(i), "colissimo", "standard", label_status, f"6A{i:011d}", f"SHP{i}", "4.95",
                "EUR", tracking, clk.ts(tracked_at), "1", clk.ts(authorized + 60), clk.ts(authorized + 28 * DAY),
                clk.ts(cancelled if status == "cancelled" else None), clk.ts(authorized))) + "\n")
        # The audit trail.
        event(i, "create", created, "api:shop", None, "requested", '{"quote": {}}')
        if authorized is not None:
            event(i, "approve", authorized, "agent:handler1@bench.example" if needs_approval else "policy",
                  "requested", "authorized", "{}" if needs_approval else '{"automatic": true}')
        event(i, "reject", rejected, "agent:handler2@bench.example", "requested", "rejected",
              '{"reason": "Outside the return policy"}')
        event(i, "cancel", cancelled, "api:shop", "authorized", "cancelled")
        event(i, "expire", expired, "system", "authorized", "expired")
        event(i, "ship", first_scan, "carrier:colissimo", "authorized", "in_transit")
        event(i, "receive", received, "agent:desk@bench.example", "in_transit", "received")
        dispute_id = None
        if dispute_open is not None and done(dispute_open):
            ids["disputes"] += 1
            dispute_id = ids["disputes"]
            resolved = dispute_resolved if done(dispute_resolved) else None
            put("disputes", "\t".join((
                str(dispute_id), str(i), "resolved" if resolved else "open", str(rng.choice(handlers)), email,
                f"{float(items[0][6]) * items[0][3]:.2f}", "accept" if resolved else N,
                f"{float(items[0][6]) * items[0][3]:.2f}" if resolved else N, clk.ts(dispute_open),
                clk.ts(dispute_open + 60), clk.ts(resolved))) + "\n")
        for n, (t, disp) in enumerate(triaged):
            event(i, "triage", t, "agent:desk@bench.example", None, None,
                  f'{{"line_id": "L{items[n][0] + 1}", "disposition": "{disp}"}}')
        if dispute_id:
            event(i, "dispute", dispute_open, "agent:desk@bench.example", "received", "disputed", dispute_id=dispute_id)
            event(i, "resolve", dispute_resolved, "agent:handler3@bench.example", "disputed", "inspected",
                  dispute_id=dispute_id)
        else:
            event(i, "inspect", inspected, "agent:desk@bench.example", "received", "inspected")
        event(i, "refund", refunded, "api:shop", "inspected", "refunded", f'{{"amount": "{due:.2f}"}}')
        event(i, "close", closed, "agent:handler1@bench.example", "inspected", "closed")

    for t in conns:
        if bufs[t]:
            copies[t].write("".join(bufs[t]))
            counts[t] += len(bufs[t])
        managers[t].__exit__(None, None, None)
        conns[t].commit()
        conns[t].close()
    return ", ".join(f"{t} {n:,}" for t, n in counts.items()) + f" in {time.perf_counter() - t0:.0f} s"


def _run(target, args, queue):
    try:
        queue.put((True, target(*args)))
    except BaseException as exc:  # noqa: BLE001 - reported by the parent
        import traceback
        queue.put((False, traceback.format_exc()))


# ---------------------------------------------------------------- prepare

def loaded_count() -> int | None:
    try:
        with psycopg.connect(DSN) as conn:
            return conn.execute("SELECT count(*) FROM returns").fetchone()[0]
    except psycopg.OperationalError:
        return None
    except psycopg.errors.UndefinedTable:
        return None


def prepare(n_returns: int) -> None:
    t0 = time.perf_counter()
    with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {DB}")
    from flask_migrate import upgrade
    from rma_service import create_app
    app = create_app({"DATABASE_URL": URL, "SECRET_KEY": "bench", "LOG_LEVEL": "WARNING"})
    with app.app_context():
        upgrade()
        from rma_service.extensions import db
        db.engine.dispose()
    print(f"schema by the migrations: {time.perf_counter() - t0:.1f} s", flush=True)

    with psycopg.connect(DSN, autocommit=True) as conn:
        # Secondary indexes (not primary keys, not unique constraints) go during the load.
        indexes = conn.execute(
            "SELECT i.indexname, i.indexdef FROM pg_indexes i JOIN pg_class c ON c.relname = i.indexname "
            "WHERE i.schemaname = 'public' AND i.tablename IN ('orders', 'order_lines', 'returns', 'return_items', "
            "'labels', 'events', 'disputes') AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = c.oid)"
        ).fetchall()
        for name, _ in indexes:
            conn.execute(f'DROP INDEX "{name}"')
        from werkzeug.security import generate_password_hash
        pw = generate_password_hash(PASSWORD)
        with conn.cursor() as cur:
            for k, (email, name, role, disputes) in enumerate(AGENTS, 1):
                cur.execute("INSERT INTO agents (id, email, name, password_hash, role, handles_disputes, active, away, "
                            "created_at) VALUES (%s, %s, %s, %s, %s, %s, true, false, now())",
                            (k, email, name, pw, role, disputes))
    now = int(time.time())
    t1 = time.perf_counter()
    queue: mp.Queue = mp.Queue()
    procs = [mp.Process(target=_run, args=(fn, (n_returns, now), queue)) for fn in (load_orders, load_returns)]
    for p in procs:
        p.start()
    for _ in procs:
        ok, message = queue.get()
        print(("  " if ok else "  FAILED ") + message, flush=True)
        if not ok:
            for p in procs:
                p.terminate()
            sys.exit(2)
    for p in procs:
        p.join()
    print(f"COPY: {time.perf_counter() - t1:.0f} s", flush=True)

    t2 = time.perf_counter()
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute("SET maintenance_work_mem = '1GB'")
        conn.execute("SET max_parallel_maintenance_workers = 2")
        for name, ddl in indexes:
            conn.execute(ddl)
        for table in ("agents", "orders", "order_lines", "returns", "return_items", "labels", "events", "disputes"):
            conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                         f"(SELECT COALESCE(max(id), 1) FROM {table}))")
        print(f"indexes rebuilt: {time.perf_counter() - t2:.0f} s", flush=True)
        t3 = time.perf_counter()
        conn.execute("VACUUM (ANALYZE)")
        print(f"VACUUM ANALYZE: {time.perf_counter() - t3:.0f} s", flush=True)
    print(f"load total: {time.perf_counter() - t0:.0f} s", flush=True)


# ---------------------------------------------------------------- measure

class SqlLog:
    """The statements a request runs, to EXPLAIN them afterwards."""

    def __init__(self, engine):
        from sqlalchemy import event
        self.on, self.statements = False, []

        @event.listens_for(engine, "before_cursor_execute")
        def _log(conn, cursor, statement, parameters, context, executemany):
            if self.on and not statement.lstrip().upper().startswith(("SAVEPOINT", "RELEASE")):
                self.statements.append((statement, parameters))


def measure(args) -> int:
    from rma_service import create_app
    from rma_service.extensions import db
    app = create_app({"DATABASE_URL": URL, "SECRET_KEY": "bench", "RATELIMIT_ENABLED": False, "LOG_LEVEL": "WARNING"})
    client = app.test_client()
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', client.get("/admin/login").get_data(as_text=True))[1]
    resp = client.post("/admin/login", data={"email": "desk@bench.example", "password": PASSWORD, "csrf_token": token})
    assert resp.status_code == 302, resp.status_code
    from rma_service.services.apikeys import create_api_key
    with app.app_context():
        api_key = create_api_key("bench-kpis", datetime.now(timezone.utc))[1]
        sqllog = SqlLog(db.engine)
        rows = db.session.execute(db.text(
            "SELECT r.rma_code, o.order_number, r.customer_email, l.tracking_number FROM returns r "
            "JOIN orders o ON o.id = r.order_id JOIN labels l ON l.return_id = r.id "
            "WHERE r.id IN (SELECT (random() * (SELECT max(id) FROM returns))::int + 1 FROM generate_series(1, 400))"
        )).all()
        oldest = db.session.execute(db.text("SELECT created_at, id FROM returns ORDER BY created_at, id LIMIT 1 OFFSET "
                                            "(SELECT LEAST(5000, count(*) / 2) FROM returns)")).one()
        counts = dict(db.session.execute(db.text("SELECT status, count(*) FROM returns GROUP BY status")).all())
    rng = random.Random(7)
    rng.shuffle(rows)
    print("statuses: " + ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])), flush=True)

    from rma_service.services.queues import encode_cursor

    class _R:
        created_at, id = oldest

    deep = encode_cursor(_R)
    today = datetime.now(timezone.utc).date()
    month = (today - timedelta(days=29)).isoformat()
    year = (today - timedelta(days=364)).isoformat()

    def pick(k):
        return lambda n: rows[n % len(rows)][k]

    def fmt(code):
        return f"RMA-{code[:4]}-{code[4:]}"

    list_scenarios = [(f"queue {q}", lambda n, q=q: f"/admin/queues/{q}") for q in (
        "to_approve", "awaiting_parcel", "in_transit", "to_receive", "to_triage", "disputed", "refund_due",
        "refund_overdue", "all")]
    list_scenarios += [
        ("all, deep page (2 years back)", lambda n: f"/admin/queues/all?after={deep}"),
        ("all, filtered (refunded, one month)", lambda n: f"/admin/queues/all?status=refunded&created_from={month}"),
        ("search RMA number", lambda n: f"/admin/search?q={fmt(pick(0)(n)).lower()}"),
        ("search order number", lambda n: f"/admin/search?q={pick(1)(n)}"),
        ("search tracking number", lambda n: f"/admin/search?q={pick(3)(n)}"),
        ("search email", lambda n: f"/admin/search?q={pick(2)(n)}"),
        ("station scan (tracking)", lambda n: f"/admin/receiving?code={pick(3)(n)}"),
        ("return page", lambda n: f"/admin/returns/{fmt(pick(0)(n))}"),
    ]
    kpi_scenarios = [
        ("KPI dashboard, month", lambda n: f"/admin/kpis?from={month}&to={today}", None),
        ("KPI dashboard, year", lambda n: f"/admin/kpis?from={year}&to={today}", TARGET_KPI_YEAR_MS),
        ("API /kpis, year", lambda n: f"/api/v1/kpis?from={year}&to={today}", TARGET_KPI_YEAR_MS),
    ]
    headers = {"Authorization": f"Bearer {api_key}"}
    results, failed, explained = [], False, []

    def run(name, url_of, count, target):
        nonlocal failed
        load = wait_quiet(args.quiet, args.max_wait)
        get = (lambda u: client.get(u, headers=headers)) if url_of(0).startswith("/api/") else client.get
        resp = get(url_of(10_000))  # warm-up (and the SQL to explain)
        if args.explain:
            sqllog.on, sqllog.statements = True, []
            get(url_of(10_001))
            sqllog.on = False
            explained.append((name, list(sqllog.statements)))
        times = []
        for n in range(count):
            url = url_of(n)
            t = time.perf_counter()
            resp = get(url)
            times.append((time.perf_counter() - t) * 1000)
            if resp.status_code not in (200, 302):
                print(f"  {name}: {url} answered {resp.status_code}", flush=True)
                failed = True
        times.sort()
        p95 = times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))]
        row = {"scenario": name, "n": count, "load1": load, "p50_ms": round(statistics.median(times), 1), "p95_ms": round(p95, 1),
               "max_ms": round(times[-1], 1), "target_ms": target,
               "ok": target is None or (p95 if target == TARGET_LIST_MS else statistics.median(times)) <= target}
        # the year's KPIs: every request must meet it, so judge the p95 as well
        if target == TARGET_KPI_YEAR_MS:
            row["ok"] = p95 <= target
        results.append(row)
        print(f"  {name:<38} load {load:4.1f}  p50 {row['p50_ms']:>7.1f} ms   p95 {row['p95_ms']:>7.1f} ms   max {row['max_ms']:>7.1f} ms"
              f"   {'target ' + str(int(target)) + ' ms ' + ('ok' if row['ok'] else 'MISSED') if target else ''}",
              flush=True)

    print(f"\nlatency through the Flask test client, signed in ({args.requests} requests per list scenario, "
          f"{args.kpi_requests} per KPI scenario):", flush=True)
    for name, url_of in list_scenarios:
        run(name, url_of, args.requests, TARGET_LIST_MS)
    for name, url_of, target in kpi_scenarios:
        run(name, url_of, args.kpi_requests, target)

    if args.explain:
        write_explain(args.explain, explained)
    if args.json:
        Path(args.json).write_text(json.dumps({"returns": sum(counts.values()), "statuses": counts,
                                               "results": results}, indent=2))
    if failed:
        return 2
    return 0 if all(r["ok"] for r in results) else 1


def loadavg() -> float:
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def wait_quiet(threshold: float, max_wait: float) -> float:
    """Measure on a calm machine: wait (up to max_wait seconds) until the 1-minute load average
    drops below threshold. Returns the load average at the start of the measurement."""
    deadline = time.monotonic() + max_wait
    announced = False
    while loadavg() > threshold and time.monotonic() < deadline:
        if not announced:
            print(f"  (waiting for the machine to calm down: load {loadavg():.1f} > {threshold})", flush=True)
            announced = True
        time.sleep(5)
    return loadavg()


def write_explain(path: str, explained) -> None:
    out = []
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute("SET work_mem = '64MB'")  # as services.kpis sets it for its transaction
        for name, statements in explained:
            out.append(f"==================== {name} ({len(statements)} statements)")
            for sql, params in statements:
                if not sql.lstrip().upper().startswith("SELECT") or "FROM agents" in sql and "disputes" not in sql:
                    continue
                try:
                    plan = conn.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + sql, params or None).fetchall()
                except psycopg.Error as exc:
                    plan = [(f"(not explained: {exc})",)]
                out.append("-- " + " ".join(sql.split())[:2000])
                out.extend(r[0] for r in plan)
                out.append("")
    Path(path).write_text("\n".join(out))
    print(f"\nplans written to {path}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--returns", type=int, default=1_000_000)
    parser.add_argument("--reuse", action="store_true", help="keep the loaded database when it has --returns rows")
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--kpi-requests", type=int, default=15)
    parser.add_argument("--explain", metavar="FILE")
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument("--quiet", type=float, default=2.0,
                        help="wait before each scenario until the 1-minute load average is below this (default 2.0)")
    parser.add_argument("--max-wait", type=float, default=600, help="longest wait for a quiet machine, seconds")
    args = parser.parse_args()
    if args.reuse and loaded_count() == args.returns:
        print(f"reusing {DB}: {args.returns:,} returns", flush=True)
    else:
        prepare(args.returns)
    return measure(args)


if __name__ == "__main__":
    sys.exit(main())

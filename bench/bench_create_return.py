#!/usr/bin/env python
"""Create-return throughput and latency against a bare Flask + SQLAlchemy insert.

    python bench/bench_create_return.py [--requests N] [--concurrency C] [--db sqlite|postgresql|both]
                                        [--rounds R] [--orders K] [--idempotency] [--json out.json]

For each database: a fresh database (SQLite: a file in a temporary directory; PostgreSQL: the
database ``rma_bench``, dropped and recreated), the schema by ``flask db upgrade``, an API key
by ``flask rma create-api-key``, then two gunicorn servers with the same flags
(``-w 2 -k sync``, 127.0.0.1, free ports): the service (``wsgi:app``) and the baseline
(``bench.bare_app:app``, one JSON body → one row). ``K`` orders are pushed through the API,
each with lines of 100 000 units delivered two days ago, so that every return request is
eligible and auto-authorized (the common path: return + items + audit event + outbox event
+ status change + label request). Both servers are warmed up, then loaded in ``R``
alternating rounds of ``N / R`` requests each (service, bare, service, bare …) so that drift
on the machine affects both alike. The client is a pool of ``C`` threads speaking
``http.client`` (one connection per request: gunicorn's sync workers close it anyway).

Besides throughput and latency, each load is metered from /proc: CPU per request of the
gunicorn workers ("app"), of the PostgreSQL backends of the bench database ("db"), and of
everything else on the machine ("other load": other people's processes make throughput noisy;
CPU per request barely moves with them).

Every non-2xx answer counts as an error and the first bodies are printed: a benchmark that
measures 4xx measures nothing, and the run exits with status 2 when there are any (1 when the
target is missed, 0 when it is met).
"""
from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Optional

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
PG_BENCH_DB = "rma_bench"
PG_BENCH_URL = f"postgresql+psycopg://postgres@127.0.0.1:5432/{PG_BENCH_DB}"
TARGET_RATIO = 0.50
GUNICORN_FLAGS = ["-w", "2", "-k", "sync", "--log-level", "warning", "--timeout", "60"]
EMAIL = "ada@example.com"


# ---------------------------------------------------------------- results


@dataclass
class Result:
    db: str
    target: str
    requests: int = 0
    errors: int = 0
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds, successful requests only
    samples: list[str] = field(default_factory=list)      # first error answers
    cpu: dict[str, float] = field(default_factory=dict)   # CPU seconds: app, db, client, machine

    def cpu_ms(self, what: str) -> Optional[float]:
        if what not in self.cpu or not self.requests:
            return None
        return self.cpu[what] / self.requests * 1000

    @property
    def throughput(self) -> float:
        return (self.requests - self.errors) / self.elapsed if self.elapsed else 0.0

    def pct(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        xs = sorted(self.latencies)
        k = min(len(xs) - 1, max(0, int(round(p / 100 * len(xs) + 0.5)) - 1))  # nearest rank
        return xs[k] * 1000

    def merge(self, other: "Result") -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.elapsed += other.elapsed
        self.latencies += other.latencies
        for k, v in other.cpu.items():
            self.cpu[k] = self.cpu.get(k, 0.0) + v
        for s in other.samples:
            if len(self.samples) < 5:
                self.samples.append(s)

    def as_dict(self) -> dict:
        return {"db": self.db, "target": self.target, "requests": self.requests, "errors": self.errors,
                "elapsed_s": round(self.elapsed, 3), "throughput_rps": round(self.throughput, 1),
                "p50_ms": round(self.pct(50), 2), "p90_ms": round(self.pct(90), 2),
                "p99_ms": round(self.pct(99), 2), "mean_ms": round(statistics.fmean(self.latencies) * 1000, 2)
                if self.latencies else None,
                "cpu_ms_per_request": {k: round(self.cpu_ms(k), 3) for k in self.cpu},
                "error_samples": self.samples}


# ---------------------------------------------------------------- HTTP load


def _post(port: int, path: str, body: bytes, headers: dict[str, str], method: str = "POST") -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def run_load(db: str, target: str, port: int, path: str, n: int, concurrency: int,
             make_request: Callable[[int], tuple[bytes, dict[str, str]]], start_index: int = 0,
             method: str = "POST") -> Result:
    """Send ``n`` requests with ``concurrency`` threads; request ``i`` is ``make_request(i)``."""
    result = Result(db, target, requests=n)
    counter = itertools.count(start_index)
    stop_at = start_index + n
    lock = threading.Lock()

    def worker():
        lat, errs, samples = [], 0, []
        while True:
            i = next(counter)
            if i >= stop_at:
                break
            body, headers = make_request(i)
            t0 = time.perf_counter()
            try:
                status, data = _post(port, path, body, headers, method)
            except Exception as exc:  # connection refused, reset, timeout …
                status, data = 0, repr(exc).encode()
            dt = time.perf_counter() - t0
            if 200 <= status < 300:
                lat.append(dt)
            else:
                errs += 1
                if len(samples) < 5:
                    samples.append(f"HTTP {status}: {data[:600].decode('utf-8', 'replace')}")
        with lock:
            result.latencies.extend(lat)
            result.errors += errs
            for s in samples:
                if len(result.samples) < 5:
                    result.samples.append(s)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result.elapsed = time.perf_counter() - t0
    return result


# ---------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, name: str, app: str, env: dict[str, str], logdir: Path):
        self.name, self.port = name, free_port()
        self.log_path = logdir / f"gunicorn-{name}.log"
        self._log = open(self.log_path, "wb")
        cmd = [sys.executable, "-m", "gunicorn", *GUNICORN_FLAGS, "-b", f"127.0.0.1:{self.port}",
               "--chdir", str(ROOT), app]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def wait_healthy(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                status, _ = _post(self.port, "/healthz", b"", {}, method="GET")
                if status == 200:
                    return
            except Exception:  # not listening yet
                pass
            time.sleep(0.2)
        self.stop()
        raise SystemExit(f"{self.name}: gunicorn did not become healthy; log:\n{self.log_tail()}")

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # the arbiter stops its workers gracefully
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


# ---------------------------------------------------------------- CPU accounting (Linux /proc)

TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_cpu(pid: int) -> Optional[float]:
    """User + system CPU seconds of a process (all its threads), None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK
    except (OSError, IndexError, ValueError):
        return None


def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").glob("[0-9]*"):
        try:
            if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(d.name))
        except (OSError, IndexError, ValueError):
            pass
    return out


def _machine_busy() -> Optional[float]:
    """CPU seconds the whole machine spent busy since boot (all cores; not idle, iowait, steal)."""
    try:
        user, nice, system, idle, iowait, irq, softirq = (
            int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:8])
        return (user + nice + system + irq + softirq) / TICK
    except (OSError, ValueError, IndexError):
        return None


def _pg_backends() -> list[int]:
    import psycopg
    try:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            return [r[0] for r in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s", (PG_BENCH_DB,)).fetchall()]
    except psycopg.Error:
        return []


class CpuMeter:
    """CPU spent during a load by the gunicorn workers ("app"), the PostgreSQL backends of the
    bench database ("db"), this client ("client") and the whole machine ("machine"); what is
    left of "machine" is load from elsewhere, which makes throughput figures noisy."""

    def __init__(self, server: "Server", db: str):
        self.server, self.db = server, db

    def _snapshot(self) -> dict:
        workers = _children(self.server.proc.pid)
        backends = _pg_backends() if self.db == "postgresql" else []
        ru = resource.getrusage(resource.RUSAGE_SELF)
        return {"app": {p: _proc_cpu(p) for p in workers}, "db": {p: _proc_cpu(p) for p in backends},
                "client": ru.ru_utime + ru.ru_stime, "machine": _machine_busy()}

    def start(self) -> None:
        self.before = self._snapshot()

    def stop(self) -> dict[str, float]:
        after = self._snapshot()
        out: dict[str, float] = {}
        for k in ("app", "db"):
            total = 0.0
            for pid, cpu in after[k].items():
                if cpu is not None:
                    total += cpu - (self.before[k].get(pid) or 0.0)  # a backend born during the load starts at 0
            if after[k]:
                out[k] = total
        out["client"] = after["client"] - self.before["client"]
        if after["machine"] is not None and self.before["machine"] is not None:
            out["machine"] = after["machine"] - self.before["machine"]
        return out


# ---------------------------------------------------------------- databases


def prepare_postgresql() -> str:
    import psycopg
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {PG_BENCH_DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {PG_BENCH_DB}")
    return PG_BENCH_URL


def flask_cli(env: dict[str, str], *args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"flask {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


# ---------------------------------------------------------------- bodies


def order_body(now: datetime) -> bytes:
    return json.dumps({
        "customer": {"email": EMAIL, "name": "Ada Lovelace", "locale": "en"},
        "shipping_address": {"name": "Ada Lovelace", "line1": "12 rue de la Paix", "postal_code": "75002",
                             "city": "Paris", "country": "FR"},
        "placed_at": (now - timedelta(days=5)).isoformat(),
        "delivered_at": (now - timedelta(days=2)).isoformat(),
        "currency": "EUR",
        "lines": [
            {"line_id": "L1", "sku": "SHIRT-M", "name": "Linen shirt", "quantity": 100_000, "unit_price": "49.90"},
            {"line_id": "L2", "sku": "SOCKS", "name": "Wool socks", "quantity": 100_000, "unit_price": "9.50"},
            {"line_id": "L3", "sku": "GIFT", "name": "Gift card", "quantity": 1, "unit_price": "25.00",
             "category": "gift_card"},
        ],
    }).encode()


def order_number(i: int, n_orders: int) -> str:
    return f"B{i % n_orders:06d}"


# ---------------------------------------------------------------- one database


def environments(db: str, dbdir: Path) -> tuple[dict[str, str], dict[str, str]]:
    """The environments of the service (``RMA_DATABASE_URL``) and of the baseline
    (``BENCH_DATABASE_URL``) on fresh databases: SQLite files in ``dbdir``, or ``rma_bench``."""
    if db == "sqlite":
        service_url = f"sqlite:///{dbdir / 'rma.sqlite3'}"
        bare_url = f"sqlite:///{dbdir / 'bare.sqlite3'}"
    else:
        service_url = bare_url = prepare_postgresql()
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("RMA_", "BENCH_"))}
    service_env = {**base_env, "RMA_DATABASE_URL": service_url, "RMA_ENV": "development",
                   "RMA_RATELIMIT_API": "100000/minute", "RMA_BASE_URL": "http://127.0.0.1"}
    return service_env, {**base_env, "BENCH_DATABASE_URL": bare_url}


def bench_database(db: str, args, workdir: Path) -> list[Result]:
    print(f"\n== {db} ==", flush=True)
    dbdir = workdir / db
    dbdir.mkdir()
    service_env, bare_env = environments(db, dbdir)

    t0 = time.perf_counter()
    flask_cli(service_env, "db", "upgrade")
    key = flask_cli(service_env, "rma", "create-api-key", "bench").strip().splitlines()[-1].strip()
    print(f"schema and API key ready ({time.perf_counter() - t0:.1f} s)", flush=True)

    service = Server(f"{db}-service", args.service_app, service_env, dbdir)
    bare = Server(f"{db}-bare", "bench.bare_app:app", bare_env, dbdir)
    try:
        service.wait_healthy()
        bare.wait_healthy()
        auth = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

        # Orders, through the API like the shop backend pushes them.
        now = datetime.now(timezone.utc)
        body = order_body(now)
        t0 = time.perf_counter()
        res = _push_orders(db, service.port, auth, body, args)
        if res.errors:
            _print_errors(res)
            raise SystemExit(f"{db}: could not create the orders")
        print(f"{args.orders} orders pushed ({time.perf_counter() - t0:.1f} s)", flush=True)

        seq = itertools.count()

        def return_request(i: int) -> tuple[bytes, dict[str, str]]:
            payload = json.dumps({"order_number": order_number(i, args.orders), "email": EMAIL,
                                  "items": [{"line_id": "L1", "quantity": 1, "reason": "too_small"}],
                                  "resolution": "refund"}).encode()
            if args.idempotency:
                return payload, {**auth, "Idempotency-Key": f"bench-{db}-{next(seq)}"}
            return payload, auth

        def bare_request(i: int) -> tuple[bytes, dict[str, str]]:
            return (json.dumps({"name": f"item {i}", "quantity": i % 7 + 1}).encode(),
                    {"Content-Type": "application/json"})

        # Warm-up: imports, connection pools, SQLite page cache, PostgreSQL plans.
        warm = max(50, args.requests // 20)
        for target, srv, path, make in (("create-return", service, "/api/v1/returns", return_request),
                                         ("bare-insert", bare, "/insert", bare_request)):
            w = run_load(db, target, srv.port, path, warm, args.concurrency, make, start_index=10_000_000)
            if w.errors:
                _print_errors(w, "warm-up")
                raise SystemExit(f"{db}/{target}: errors during warm-up")

        totals = {"create-return": Result(db, "create-return"), "bare-insert": Result(db, "bare-insert")}
        sizes = [args.requests // args.rounds + (1 if r < args.requests % args.rounds else 0)
                 for r in range(args.rounds)]
        for r, per_round in enumerate(sizes):
            for target, srv, path, make in (("create-return", service, "/api/v1/returns", return_request),
                                             ("bare-insert", bare, "/insert", bare_request)):
                meter = CpuMeter(srv, db)
                meter.start()
                res = run_load(db, target, srv.port, path, per_round, args.concurrency, make,
                               start_index=sum(sizes[:r]))
                res.cpu = meter.stop()
                totals[target].merge(res)
                print(f"  round {r + 1}/{args.rounds} {target:13s} {res.throughput:8.1f} req/s  "
                      f"p50 {res.pct(50):6.2f} ms  p99 {res.pct(99):7.2f} ms  errors {res.errors}  "
                      f"CPU ms/req: app {_fmt(res.cpu_ms('app'))} db {_fmt(res.cpu_ms('db'))} "
                      f"other {_fmt(_other_ms(res))}", flush=True)
        for res in totals.values():
            if res.errors:
                _print_errors(res)
        return list(totals.values())
    finally:
        for srv in (service, bare):
            srv.stop()


def _push_orders(db: str, port: int, auth: dict[str, str], body: bytes, args) -> Result:
    result = Result(db, "orders", requests=args.orders)
    counter = itertools.count()
    lock = threading.Lock()

    def worker():
        while True:
            i = next(counter)
            if i >= args.orders:
                return
            try:
                status, data = _post(port, f"/api/v1/orders/{order_number(i, args.orders)}", body, auth, "PUT")
            except Exception as exc:  # connection refused, reset, bad status line …
                status, data = 0, repr(exc).encode()
            if status not in (200, 201):
                with lock:
                    result.errors += 1
                    if len(result.samples) < 5:
                        result.samples.append(f"HTTP {status}: {data[:600].decode('utf-8', 'replace')}")

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(args.concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return result


def _revision() -> str:
    try:
        return subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True,
                              text=True, timeout=10).stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


def _fmt(x: Optional[float], spec: str = ".2f") -> str:
    return "—" if x is None else format(x, spec)


def _other_ms(res: Result) -> Optional[float]:
    """CPU per request spent by processes that are not part of the benchmark."""
    if "machine" not in res.cpu:
        return None
    ours = sum(res.cpu.get(k, 0.0) for k in ("app", "db", "client"))
    return max(0.0, res.cpu["machine"] - ours) / res.requests * 1000


def _other_share(res: Result) -> Optional[float]:
    other = _other_ms(res)
    if other is None or not res.elapsed:
        return None
    return other * res.requests / 1000 / (res.elapsed * (os.cpu_count() or 1))


def _print_errors(res: Result, what: str = "") -> None:
    print(f"!! {res.db}/{res.target}{' ' + what if what else ''}: {res.errors} non-2xx answers; first ones:",
          file=sys.stderr)
    for s in res.samples:
        print("   " + s, file=sys.stderr)


# ---------------------------------------------------------------- main


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=2000, help="measured requests per target and database")
    ap.add_argument("--concurrency", type=int, default=4, help="client threads")
    ap.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    ap.add_argument("--rounds", type=int, default=3, help="alternating service/bare rounds")
    ap.add_argument("--orders", type=int, default=200, help="orders the returns are spread over")
    ap.add_argument("--idempotency", action="store_true", help="send a unique Idempotency-Key with each return")
    ap.add_argument("--json", metavar="OUT", help="also write the results as JSON")
    ap.add_argument("--service-app", default="wsgi:app", metavar="MODULE:APP",
                    help="WSGI app served as the service (to compare a variant; PYTHONPATH is passed on)")
    args = ap.parse_args(argv)

    dbs = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    started = datetime.now(timezone.utc)
    workdir = Path(tempfile.mkdtemp(prefix="rma-bench-"))
    results: list[Result] = []
    try:
        for db in dbs:
            results += bench_database(db, args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    print(f"\n{started:%Y-%m-%d %H:%M} UTC · {_revision()} · {os.cpu_count()} CPUs · "
          f"Python {platform.python_version()} · "
          f"gunicorn {' '.join(GUNICORN_FLAGS[:4])} · {args.requests} requests × concurrency "
          f"{args.concurrency} · {args.rounds} rounds{' · Idempotency-Key' if args.idempotency else ''}\n")
    print("| db | target | requests | errors | throughput req/s | p50 ms | p99 ms "
          "| app CPU ms/req | db CPU ms/req | other load |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        share = _other_share(r)
        print(f"| {r.db} | {r.target} | {r.requests} | {r.errors} | {r.throughput:.1f} | "
              f"{r.pct(50):.2f} | {r.pct(99):.2f} | {_fmt(r.cpu_ms('app'))} | {_fmt(r.cpu_ms('db'))} | "
              f"{'—' if share is None else format(share, '.0%')} |")
    print()
    summary = []
    ok = True
    for db in dbs:
        svc = next(r for r in results if r.db == db and r.target == "create-return")
        bare = next(r for r in results if r.db == db and r.target == "bare-insert")
        ratio = svc.throughput / bare.throughput if bare.throughput else 0.0
        verdict = "PASS" if ratio >= TARGET_RATIO else "FAIL"
        ok &= ratio >= TARGET_RATIO
        svc_cpu = sum(svc.cpu_ms(k) or 0.0 for k in ("app", "db"))
        bare_cpu = sum(bare.cpu_ms(k) or 0.0 for k in ("app", "db"))
        cpu_ratio = bare_cpu / svc_cpu if svc_cpu else None
        summary.append({"db": db, "ratio": round(ratio, 3), "verdict": verdict,
                        "cpu_ratio": round(cpu_ratio, 3) if cpu_ratio else None})
        print(f"{db:10s} create-return / bare-insert throughput = {ratio:6.1%}  "
              f"(target ≥ {TARGET_RATIO:.0%})  {verdict}"
              + (f"   [server CPU per request: bare / create-return = {cpu_ratio:.1%}]" if cpu_ratio else ""))
    noisy = [r for r in results if (_other_share(r) or 0) > 0.10]
    if noisy:
        print(f"\nnote: other processes used more than 10 % of the machine during "
              f"{', '.join(sorted({f'{r.db}/{r.target}' for r in noisy}))}: absolute figures are noisy, "
              "the ratio (alternating rounds) and the CPU per request less so.")
    errors = sum(r.errors for r in results)
    if errors:
        print(f"\n!! {errors} requests failed: these figures are not valid.", file=sys.stderr)

    if args.json:
        Path(args.json).write_text(json.dumps({
            "date": started.isoformat(), "revision": _revision(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "args": vars(args), "gunicorn": GUNICORN_FLAGS, "results": [r.as_dict() for r in results],
            "ratios": summary}, indent=2) + "\n")
    if errors:
        return 2
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

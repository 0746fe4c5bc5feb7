"""Benchmark of the return label PDF: python bench/bench_labels.py [--renders 50] [--cold-runs 3] [--downloads 200] [--db-url URL]

Prints one table:

* import: ``import rma_service.adapters.pdf`` in a fresh interpreter, and whether that loaded
  WeasyPrint (it must not: the app starts without it);
* cold render: a fresh interpreter importing the module and rendering one label, everything
  included (WeasyPrint import, fontconfig, stylesheet compilation, first layout); median of
  ``--cold-runs`` interpreters;
* warm render: median and p90 of ``--renders`` renders in this process after one warm-up
  (target ≤ 60 ms median), wall clock and CPU time of this process; the garbage collection a
  render leaves behind runs inside it, so it is counted. Two CPU-time figures put it in
  context: the part spent encoding the barcodes and the QR code and writing them as SVG
  (before WeasyPrint), and a baseline, the same renderer laying out two pages that hold one
  word each: the cost of WeasyPrint itself on this machine, which no change to the label
  can remove;
* app start: ``create_app()`` in a fresh interpreter, imports included (target ≤ 1 s), and
  whether that loaded WeasyPrint (it must not: only the label job's first render does);
* stored label download (target ≤ 5 ms median): ``GET /api/v1/returns/{rma}/label.pdf``
  through the app (Flask test client, bearer key checked, return and label read from the
  database), median and p90 of ``--downloads`` downloads of a label the ``issue_labels`` job
  issued; SQLite in a temporary directory, or ``--db-url postgresql+psycopg://…`` (a database
  that may be emptied).

The sample is a typical label: French, 4×6 in, two items, weight, dates and a status-page URL in
the QR code. Times are wall clock: run it on an idle machine.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere, without installing the package
    sys.path.insert(0, str(ROOT))

WARM_TARGET_MS = 60.0
DOWNLOAD_TARGET_MS = 5.0
APP_READY_TARGET_S = 1.0


def sample_document() -> Any:
    from datetime import datetime, timezone

    from rma_service.adapters.pdf import Address, LabelDocument, LabelItem

    return LabelDocument(
        rma_number="RMA-7K3P-9XQ2",
        tracking_number="SI4006381333931",
        carrier_name="Retours Acme",
        service="Retour standard",
        sender=Address(name="Jeanne Dupont-Moreau", line1="12 rue des Lilas", line2="Bâtiment B",
                       postal_code="75011", city="Paris", country="FR"),
        recipient=Address(name="Acme – Service retours", line1="4 allée Newton",
                          postal_code="69800", city="Saint-Priest", country="FR"),
        order_number="CMD-100234",
        items=[LabelItem(sku="SHIRT-BLUE-M", name="Chemise en lin, bleu", quantity=2,
                         reason="too_small"),
               LabelItem(sku="JKT-042", name="Veste de pluie", quantity=1, reason="damaged")],
        locale="fr",
        page_format="4x6",
        weight_grams=1250,
        qr_payload="https://returns.example.com/s/eyJyIjoiUk1BLTdLM1AtOVhRMiJ9.c2ln",
        issued_at=datetime(2026, 11, 25, 9, 30, tzinfo=timezone.utc),
        expires_at=datetime(2026, 12, 23, 23, 59, tzinfo=timezone.utc),
    )


# --- Measures run in a fresh interpreter (this script called with --child) -----------------------

def child_import() -> dict[str, Any]:
    started = time.perf_counter()
    import rma_service
    package_done = time.perf_counter()
    import rma_service.adapters.pdf  # noqa: F401
    done = time.perf_counter()
    del rma_service
    return {"package_ms": (package_done - started) * 1000, "total_ms": (done - started) * 1000,
            "weasyprint_loaded": "weasyprint" in sys.modules}


def child_cold() -> dict[str, Any]:
    started = time.perf_counter()
    from rma_service.adapters.pdf import render_label_pdf
    pdf = render_label_pdf(sample_document())
    done = time.perf_counter()
    return {"total_ms": (done - started) * 1000, "pdf_bytes": len(pdf)}


def in_fresh_interpreter(measure: str) -> dict[str, Any]:
    result = subprocess.run([sys.executable, __file__, "--child", measure], cwd=ROOT,
                            capture_output=True, text=True, check=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    figures: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return figures


# --- Measures in this process ---------------------------------------------------------------------

def bench_warm(renders: int) -> tuple[list[float], list[float]]:
    """Wall-clock and CPU milliseconds of each render, after one warm-up render.

    CPU time (this process only) moves much less than wall-clock time when other processes
    load the machine, which helps tell a slow renderer from a busy machine.
    """
    from rma_service.adapters.pdf import render_label_pdf

    document = sample_document()
    render_label_pdf(document)  # warm-up: imports, fonts, stylesheet
    wall, cpu = [], []
    for _ in range(renders):
        started, started_cpu = time.perf_counter(), time.process_time()
        render_label_pdf(document)
        wall.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - started_cpu) * 1000)
    return wall, cpu


def bench_warm_parts(renders: int) -> tuple[float, float]:
    """Median CPU milliseconds of (the barcodes and QR code of the sample, a baseline render).

    The baseline goes through the label's own renderer (stylesheet, fonts, fetcher) with a
    document of two pages, label and packing slip, holding one word each.
    """
    from rma_service.adapters import pdf

    document = sample_document()
    renderer = pdf._renderer()
    baseline = ('<body class="fmt-4x6"><div class="label">x</div>'
                '<div class="slip">x</div></body>')

    def codes() -> None:
        pdf._code128_data_uri(document.rma_number, bar_height_mm=13)
        pdf._code128_data_uri(document.tracking_number, bar_height_mm=16)
        pdf._qr_data_uri(document.qr_payload or document.rma_number)

    def render_baseline() -> bytes:
        with renderer.lock, pdf._collection_paused():  # as render_label_pdf does
            html = renderer.html(string=baseline, url_fetcher=renderer.url_fetcher)
            written: bytes = html.write_pdf(stylesheets=[renderer.css],
                                            font_config=renderer.font_config)
        return written

    pages = renderer.html(string=baseline, url_fetcher=renderer.url_fetcher).render(
        stylesheets=[renderer.css], font_config=renderer.font_config).pages
    assert len(pages) == 2, f"the baseline has {len(pages)} pages, not 2"
    medians = []
    for measure in (codes, render_baseline):
        measure()
        cpu = []
        for _ in range(renders):
            started_cpu = time.process_time()
            measure()
            cpu.append((time.process_time() - started_cpu) * 1000)
        medians.append(statistics.median(cpu))
    return medians[0], medians[1]


def child_app() -> dict[str, Any]:
    """``create_app`` ready to serve, in a fresh interpreter: imports, configuration,
    extensions, blueprints, the OpenAPI document; no request served, no database touched."""
    started = time.perf_counter()
    from rma_service import create_app
    imported = time.perf_counter()
    create_app({"DATABASE_URL": "sqlite://", "TESTING": True, "SECRET_KEY": "bench"})
    done = time.perf_counter()
    return {"import_ms": (imported - started) * 1000, "total_ms": (done - started) * 1000,
            "weasyprint_loaded": "weasyprint" in sys.modules}


def bench_download(downloads: int = 200, db_url: str | None = None) -> dict[str, float] | None:
    """Stored label download, GET /api/v1/returns/{rma}/label.pdf through the app (≤ 5 ms).

    Builds the schema with the migrations, pushes an order, creates a return (authorized by
    the policy), lets the ``issue_labels`` job issue its label (self carrier: our own PDF),
    then times ``downloads`` downloads through the Flask test client after 20 warm-up ones.
    Every download must be 200 with the same bytes. Keys: median_ms, p90_ms, min_ms, bytes.
    """
    import tempfile
    from datetime import datetime, timedelta, timezone

    from flask_migrate import upgrade
    from sqlalchemy import text

    from rma_service import clock, create_app
    from rma_service.extensions import db
    from rma_service.services.apikeys import create_api_key
    from rma_service.services.labels import issue_due

    now = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
    with tempfile.TemporaryDirectory() as tmp:
        url = db_url or f"sqlite:///{tmp}/bench_labels.sqlite3"
        app = create_app({"DATABASE_URL": url, "TESTING": True, "SECRET_KEY": "bench",
                          "RATELIMIT_ENABLED": False, "LOG_LEVEL": "WARNING"})
        with app.app_context():
            if url.startswith("postgresql"):
                db.session.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
                db.session.execute(text("CREATE SCHEMA public"))
                db.session.commit()
            upgrade()
            key = create_api_key("bench", now)[1]
        client = app.test_client()
        headers = {"Authorization": f"Bearer {key}"}
        with clock.frozen(now):
            order = {
                "customer": {"email": "jeanne@example.fr", "name": "Jeanne Dupont", "locale": "fr"},
                "shipping_address": {"name": "Jeanne Dupont", "line1": "12 rue des Lilas", "postal_code": "75011",
                                     "city": "Paris", "country": "FR"},
                "placed_at": (now - timedelta(days=6)).isoformat(), "delivered_at": (now - timedelta(days=3)).isoformat(),
                "currency": "EUR",
                "lines": [{"line_id": "L1", "sku": "SHIRT-M", "name": "Chemise en lin", "quantity": 2,
                           "unit_price": "49.90"}]}
            assert client.put("/api/v1/orders/B1", json=order, headers=headers).status_code == 201
            created = client.post("/api/v1/returns", headers=headers, json={
                "order_number": "B1", "email": "jeanne@example.fr",
                "items": [{"line_id": "L1", "quantity": 1, "reason": "too_small"}]})
            assert created.status_code == 201, created.get_json()
            number = created.get_json()["rma_number"]
            with app.app_context():
                assert issue_due(now) == 1
            path = f"/api/v1/returns/{number}/label.pdf"
            first = client.get(path, headers=headers)
            assert first.status_code == 200 and first.data.startswith(b"%PDF-")
            for _ in range(20):  # warm-up: connections, caches, code paths
                client.get(path, headers=headers)
            times = []
            for _ in range(downloads):
                started = time.perf_counter()
                response = client.get(path, headers=headers)
                times.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200 and response.data == first.data
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
    return {"median_ms": statistics.median(times), "p90_ms": statistics.quantiles(times, n=10)[-1],
            "min_ms": min(times), "bytes": float(len(first.data))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--renders", type=int, default=50, help="warm renders to time")
    parser.add_argument("--cold-runs", type=int, default=3, help="fresh interpreters to time")
    parser.add_argument("--downloads", type=int, default=200, help="label downloads to time")
    parser.add_argument("--db-url", help="database of the download benchmark (default: SQLite in a temp dir)")
    parser.add_argument("--child", choices=("import", "cold", "app"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps({"import": child_import, "cold": child_cold, "app": child_app}[args.child]()))
        return

    imported = in_fresh_interpreter("import")
    colds = [in_fresh_interpreter("cold") for _ in range(args.cold_runs)]
    apps = [in_fresh_interpreter("app") for _ in range(args.cold_runs)]
    warm, warm_cpu = bench_warm(args.renders)
    codes_cpu, baseline_cpu = bench_warm_parts(args.renders)
    download = bench_download(args.downloads, args.db_url)

    import weasyprint

    app_s = statistics.median(a["total_ms"] for a in apps) / 1000
    app_weasy = any(a["weasyprint_loaded"] for a in apps)
    warm_median = statistics.median(warm)
    warm_p90 = statistics.quantiles(warm, n=10)[-1]
    cold_ms = statistics.median(c["total_ms"] for c in colds)
    rows = [
        ("import adapters.pdf, fresh interpreter", f"{imported['total_ms']:.1f} ms",
         "weasyprint loaded: " + ("YES (must not)" if imported["weasyprint_loaded"] else "no")),
        ("  of which the package rma_service", f"{imported['package_ms']:.1f} ms",
         "rma_service/__init__.py and what it imports"),
        ("  of which adapters.pdf itself", f"{imported['total_ms'] - imported['package_ms']:.1f} ms",
         "standard library only"),
        (f"cold render, fresh interpreter (median of {len(colds)})", f"{cold_ms:.0f} ms",
         "imports, fonts, stylesheet included"),
        (f"warm render median ({len(warm)} renders)", f"{warm_median:.1f} ms",
         f"target ≤ {WARM_TARGET_MS:.0f} ms: " + ("ok" if warm_median <= WARM_TARGET_MS
                                                   else "MISSED")),
        ("warm render p90", f"{warm_p90:.1f} ms", f"min {min(warm):.1f}, max {max(warm):.1f}"),
        ("warm render CPU time, median", f"{statistics.median(warm_cpu):.1f} ms",
         f"p90 {statistics.quantiles(warm_cpu, n=10)[-1]:.1f} (less sensitive to other load)"),
        ("  of which barcodes and QR code, CPU", f"{codes_cpu:.1f} ms",
         "python-barcode and segno, SVG written as data: URIs"),
        ("baseline: two one-word pages, CPU", f"{baseline_cpu:.1f} ms",
         "same renderer: WeasyPrint's own cost on this machine"),
        ("label size", f"{colds[0]['pdf_bytes'] / 1024:.1f} KiB", "2 pages"),
        (f"create_app ready, fresh interpreter (median of {len(apps)})", f"{app_s:.2f} s",
         f"target ≤ {APP_READY_TARGET_S:.0f} s: " + ("ok" if app_s <= APP_READY_TARGET_S else "MISSED")
         + ", weasyprint loaded: " + ("YES (must not)" if app_weasy else "no")),
    ]
    if download is None:
        rows.append(("stored label download", "skipped", f"target ≤ {DOWNLOAD_TARGET_MS:.0f} ms"))
    else:
        rows += [
            (f"stored label download median ({args.downloads})", f"{download['median_ms']:.2f} ms",
             f"target ≤ {DOWNLOAD_TARGET_MS:.0f} ms: "
             + ("ok" if download["median_ms"] <= DOWNLOAD_TARGET_MS else "MISSED")
             + f"; GET …/label.pdf, {download['bytes'] / 1024:.1f} KiB, "
             + ("SQLite" if not args.db_url else args.db_url.split(":", 1)[0])),
            ("stored label download p90", f"{download['p90_ms']:.2f} ms", f"min {download['min_ms']:.2f}"),
        ]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"Return label benchmark: Python {platform.python_version()}, WeasyPrint "
          f"{weasyprint.__version__}, {os.cpu_count()} CPUs, load average {load:.2f}")
    width = max(len(name) for name, _, _ in rows)
    for name, value, note in rows:
        print(f"  {name:<{width}}  {value:>10}  {note}")
    print(f"create_app ready in {app_s:.2f} s, weasyprint loaded: {app_weasy}")
    if imported["weasyprint_loaded"]:
        sys.exit("importing rma_service.adapters.pdf loaded weasyprint")
    if app_weasy:
        sys.exit("create_app loaded weasyprint")


if __name__ == "__main__":
    main()

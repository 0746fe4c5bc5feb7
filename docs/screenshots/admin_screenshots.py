#!/usr/bin/env python
"""Screenshots of the admin view for the README, taken by Playwright (Debian's chromium).

    python docs/screenshots/admin_screenshots.py [--database-url URL] [--out docs/screenshots]

Default database: the one ``bench/bench_admin_scale.py`` loads (a million returns), so the
pages show real volumes. The script picks an overdue return with two items and a comment,
gives it a customer photo and two agents' notes (once), and captures: a work queue, that
return's page, the receiving station and the KPI dashboard for the last 12 months.
"""
from __future__ import annotations

import argparse
import io
import sys
import threading
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from sqlalchemy import select  # noqa: E402
from werkzeug.serving import make_server  # noqa: E402

from rma_service import clock, create_app  # noqa: E402
from rma_service.domain.rma_number import format_number  # noqa: E402
from rma_service.extensions import db  # noqa: E402
from rma_service.models import Agent, Event, Photo, Return, ReturnItem  # noqa: E402

EMAIL, PASSWORD = "admin@bench.example", "bench-password-123"


def shirt_photo() -> bytes:
    """A plain product photo: a shirt on a light background (drawn, no file needed)."""
    from PIL import Image, ImageDraw
    img = Image.new("RGB", (480, 480), (236, 232, 225))
    d = ImageDraw.Draw(img)
    d.polygon([(150, 110), (200, 90), (240, 120), (280, 90), (330, 110), (400, 170), (360, 215), (330, 195),
               (330, 400), (150, 400), (150, 195), (120, 215), (80, 170)], fill=(48, 70, 112))
    d.line([(240, 120), (240, 400)], fill=(36, 54, 90), width=3)
    d.line([(300, 250), (320, 300), (290, 330)], fill=(200, 60, 50), width=6)  # the tear
    out = io.BytesIO()
    img.save(out, "JPEG", quality=85)
    return out.getvalue()


def prepare(app) -> str:
    from rma_service.services import notes
    from rma_service.services.agents import create_agent
    with app.app_context():
        if db.session.scalar(select(Agent).where(Agent.email == EMAIL)) is None:
            create_agent(EMAIL, "Alex Admin", "admin", PASSWORD, True, clock.now())
        marked = db.session.scalar(select(Event.return_id).where(Event.type == "note", Event.actor == "agent:" + EMAIL))
        if marked:
            return format_number(db.session.get(Return, marked).rma_code)
        days = int(app.config["RMA"]["REFUND_DEADLINE_DAYS"])
        ret = db.session.scalar(
            select(Return).join(ReturnItem, ReturnItem.return_id == Return.id)
            .where(Return.status == "inspected", Return.resolution == "refund",
                   Return.created_at < clock.now() - timedelta(days=days + 12), ReturnItem.comment.is_not(None))
            .group_by(Return.id).having(db.func.count(ReturnItem.id) == 2).order_by(Return.created_at.desc()).limit(1))
        ret = ret or db.session.scalar(select(Return).where(Return.status == "inspected").limit(1))
        db.session.add(Photo(return_item_id=ret.items[0].id, content_type="image/jpeg", data=shirt_photo(),
                             created_at=ret.created_at))
        db.session.commit()
        number = format_number(ret.rma_code)
        notes.add_note(number, "Customer called: the seam tore on the first wear. Photo matches what arrived.",
                       "agent:camille@example.com", clock.now() - timedelta(days=2))
        notes.add_note(number, "Refund approved by finance, waiting for the PSP batch.", "agent:" + EMAIL, clock.now())
        return number


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/rma_bench_admin")
    parser.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    args = parser.parse_args()
    app = create_app({"DATABASE_URL": args.database_url, "SECRET_KEY": "screenshots", "RATELIMIT_ENABLED": False,
                      "SHOP_NAME": "Maison Lin", "LOG_LEVEL": "WARNING"})
    number = prepare(app)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    from playwright.sync_api import sync_playwright
    out = Path(args.out)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1440, "height": 960}, device_scale_factor=1)
        page.goto(base + "/admin/login")
        page.fill("#email", EMAIL)
        page.fill("#password", PASSWORD)
        page.press("#password", "Enter")
        page.wait_for_url("**/admin/queues/**")
        shots = [
            ("admin-queue.png", "/admin/queues/to_receive", False),
            ("admin-return.png", f"/admin/returns/{number}", True),
            ("admin-station.png", None, False),
            ("admin-dashboard.png", "/admin/kpis?from={a}&to={b}", True),
        ]
        today = clock.now().date()
        for name, path, full in shots:
            if path is None:  # the station: scan a parcel that is in transit
                page.goto(base + "/admin/queues/in_transit")
                rma = page.locator("a.rma").first.inner_text()
                page.goto(base + "/admin/receiving")
                page.keyboard.type(rma)
                page.keyboard.press("Enter")
                page.wait_for_selector("#receive")
            else:
                page.goto(base + path.format(a=today.replace(year=today.year - 1) + timedelta(days=1), b=today))
            if name == "admin-queue.png":
                page.keyboard.press("Tab")  # show the focus ring on the skip link … then on a row link
                page.focus("a.rma")
            page.screenshot(path=str(out / name), full_page=full)
            print(out / name)
        browser.close()
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())

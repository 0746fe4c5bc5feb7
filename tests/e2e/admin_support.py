"""Helpers of the admin view's tests: agents, sign-in with the form's CSRF token, returns
made through the shop API (as in production), and direct looks at the database."""
from __future__ import annotations

import re
from typing import Any, Optional

from sqlalchemy import select

from rma_service.extensions import db
from rma_service.models import Label, Return

from tests.conftest import order_body

PASSWORD = "correct-horse-battery"
CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def make_agent(app, email: str = "alex@example.com", name: str = "Alex Admin", role: str = "admin",
               disputes: bool = False, password: str = PASSWORD) -> int:
    from rma_service import clock
    from rma_service.services.agents import create_agent
    with app.app_context():
        return create_agent(email, name, role, password, disputes, clock.now()).id


def csrf_token(html: str) -> str:
    match = CSRF_RE.search(html)
    assert match, "no CSRF token in the page"
    return match.group(1)


def login(client, email: str = "alex@example.com", password: str = PASSWORD):
    token = csrf_token(client.get("/admin/login").get_data(as_text=True))
    return client.post("/admin/login", data={"email": email, "password": password, "csrf_token": token})


def post_form(client, page_url: str, action_url: str, data: Optional[dict[str, Any]] = None, **kw):
    """Post a form as a browser would: with the CSRF token of the page it sits on."""
    token = csrf_token(client.get(page_url).get_data(as_text=True))
    return client.post(action_url, data={"csrf_token": token, **(data or {})}, **kw)


def put_order(api, number: str, lines: Optional[list[dict]] = None, **overrides) -> dict:
    body = order_body(**overrides)
    if lines is not None:
        body["lines"] = lines
    resp = api.put(f"/orders/{number}", json=body)
    assert resp.status_code in (200, 201), resp.get_json()
    return resp.get_json()


def create_return(api, order_number: str, items: list[dict], email: str = "ada@example.com",
                  resolution: str = "refund") -> dict:
    resp = api.post("/returns", json={"order_number": order_number, "email": email, "items": items,
                                      "resolution": resolution})
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


def get_return(app, number: str) -> Return:
    """The return as stored now (detached: read its columns only)."""
    from rma_service.domain.rma_number import parse
    with app.app_context():
        ret = db.session.scalar(select(Return).where(Return.rma_code == parse(number)))
        for item in ret.items:
            _ = item.disposition
        db.session.expunge_all()
        return ret


def set_tracking(app, number: str, tracking_number: str, tracking_status: Optional[str] = None) -> None:
    """What the label job and the carrier would have done: an issued label with a tracking number."""
    from rma_service.domain.rma_number import parse
    with app.app_context():
        ret = db.session.scalar(select(Return).where(Return.rma_code == parse(number)))
        label = db.session.scalar(select(Label).where(Label.return_id == ret.id).order_by(Label.id.desc()))
        if label is None:
            label = Label(return_id=ret.id, carrier="self")
            db.session.add(label)
        label.status, label.tracking_number, label.tracking_status = "issued", tracking_number, tracking_status
        db.session.commit()


def png_bytes(size: tuple[int, int] = (48, 32), colour: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    """A small real PNG, as the customers' pages store a photo once it is re-encoded."""
    from io import BytesIO

    from PIL import Image
    buffer = BytesIO()
    Image.new("RGB", size, colour).save(buffer, "PNG")
    return buffer.getvalue()


def customer_return(app, items: list[dict], order_number: str = "1001", email: str = "ada@example.com",
                    submission: Optional[str] = None, photos: Optional[dict[str, list[bytes]]] = None,
                    resolution: str = "refund") -> str:
    """A return as the customers' pages make it: actor "customer", the submission's key, and
    the photos (PNG, already re-encoded) on their items. Returns the RMA number."""
    from rma_service import clock
    from rma_service.domain.rma_number import format_number
    from rma_service.services import returns as returns_svc
    photos = photos or {}
    data = {"order_number": order_number, "email": email, "resolution": resolution, "submission": submission,
            "items": [{**item, "photos": [("image/png", blob) for blob in photos.get(item["line_id"], [])]}
                      for item in items]}
    with app.app_context():
        return format_number(returns_svc.create_return(data, "customer", clock.now()).rma_code)


def photo_ids(app, number: str) -> list[int]:
    from rma_service.domain.rma_number import parse
    from rma_service.models import Photo, ReturnItem
    with app.app_context():
        ret_id = db.session.scalar(select(Return.id).where(Return.rma_code == parse(number)))
        return list(db.session.scalars(select(Photo.id).join(ReturnItem, Photo.return_item_id == ReturnItem.id)
                                       .where(ReturnItem.return_id == ret_id).order_by(Photo.id)))


def open_dispute(api, number: str, line_id: str = "L1") -> int:
    """Receive everything announced (shop API), then triage ``line_id`` as disputed."""
    assert api.post(f"/returns/{number}/receive", json={}).status_code == 200
    resp = api.post(f"/returns/{number}/items/{line_id}/triage",
                    json={"disposition": "dispute", "condition": "damaged", "note": "scratched"})
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()["dispute"]["id"]


def flashes(page: str, category: str = "error") -> list[str]:
    """The flash messages of a category on an admin page, as text."""
    import html
    return [html.unescape(m) for m in re.findall(rf'<p class="flash {category}">(.*?)</p>', page, re.S)]

"""Helpers to drive the customer pages with Flask's test client, as a browser without
JavaScript would: read the CSRF token and field names from the page, post the form."""
from __future__ import annotations

import html
import re
from typing import Any, Optional

from rma_service.extensions import db
from rma_service.models import Return

_CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')
_DRAFT = re.compile(r'id="draft" name="draft" type="hidden" value="([^"]+)"')
_LINE = re.compile(r'name="(lines-\d+)-line_id" type="hidden" value="([^"]+)"')


def csrf(page: str) -> str:
    match = _CSRF.search(page)
    assert match, "no CSRF token on the page"
    return match.group(1)


def text_of(page: str) -> str:
    """The visible text of a page, whitespace collapsed."""
    body = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", page, flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", body))).strip()


def lookup(client, order_number: str = "1001", email: str = "ada@example.com", **kw):
    page = client.get("/returns/").get_data(as_text=True)
    return client.post("/returns/", data={"csrf_token": csrf(page), "order_number": order_number,
                                          "email": email}, **kw)


def items_form(page: str, lines: dict[str, tuple], resolution: Optional[str] = "refund") -> dict[str, Any]:
    """Form data for the items page: ``lines`` maps line_id → (quantity, reason[, comment])."""
    data: dict[str, Any] = {"csrf_token": csrf(page)}
    if resolution:
        data["resolution"] = resolution
    for prefix, line_id in _LINE.findall(page):
        data[f"{prefix}-line_id"] = line_id
        if line_id in lines:
            quantity, reason, *rest = lines[line_id]
            data[f"{prefix}-selected"] = "y"
            data[f"{prefix}-quantity"] = str(quantity)
            data[f"{prefix}-reason"] = reason
            data[f"{prefix}-comment"] = rest[0] if rest else ""
    return data


def review(client, lines: dict[str, tuple], resolution: Optional[str] = "refund", **kw):
    """Send the items page and follow its redirect (Post/Redirect/Get): the answer is the
    summary page, or the items page again with its problems."""
    page = client.get("/returns/order").get_data(as_text=True)
    kw.setdefault("follow_redirects", True)
    return client.post("/returns/order/review", data=items_form(page, lines, resolution), **kw)


def submit(client, review_page: str, photos: Optional[dict[int, list]] = None, **kw):
    """Send the summary's form; ``photos`` maps the item's index on the summary to a list of
    ``(BytesIO, filename, content_type)``."""
    draft = _DRAFT.search(review_page)
    assert draft, "no draft on the summary page"
    data: dict[str, Any] = {"csrf_token": csrf(review_page), "draft": html.unescape(draft.group(1))}
    for index, files in (photos or {}).items():
        data[f"photos-{index}"] = files
    return client.post("/returns/order/submit", data=data, content_type="multipart/form-data", **kw)


def start_return(client, lines: dict[str, tuple], order_number: str = "1001", email: str = "ada@example.com",
                 resolution: str = "refund", photos: Optional[dict[int, list]] = None) -> str:
    """The whole flow; returns the status token of the new return."""
    assert lookup(client, order_number, email).status_code == 302
    summary = review(client, lines, resolution)
    assert summary.status_code == 200, text_of(summary.get_data(as_text=True))[:2000]
    done = submit(client, summary.get_data(as_text=True), photos)
    assert done.status_code == 302, text_of(done.get_data(as_text=True))[:2000]
    match = re.search(r"/returns/status/([^/]+)/confirmation$", done.headers["Location"])
    assert match
    return match.group(1)


def return_for(app, token: str) -> Return:
    from rma_service.services.tokens import read_status_token
    from sqlalchemy import select
    with app.app_context():
        ret = db.session.scalar(select(Return).where(Return.rma_code == read_status_token(token)))
        db.session.expunge_all()
        return ret


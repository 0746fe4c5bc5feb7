"""Every answer of the service carries the browser's safety headers: never framed (the
customer's status page has a cancel button: no clickjacking), never sniffed into another type,
no referrer leaking the status page's token, and a Content-Security-Policy without any
third-party host — the customer pages' as strict as the admin view's, the API docs' just wide
enough for the locally served Swagger UI, and the JSON answers' allowing nothing at all. A
real browser shows the pages and Swagger UI working under those policies."""
from __future__ import annotations

import base64
import hashlib
import re
from urllib.parse import urlsplit

import pytest

from rma_service.admin import CSP as ADMIN_CSP
from tests.conftest import return_body

JSON_CSP = "default-src 'none'; frame-ancestors 'none'"


def _policy(header: str) -> dict[str, list[str]]:
    directives = {}
    for part in header.split(";"):
        name, *values = part.split()
        directives[name] = values
    return directives


def _assert_common(resp, where: str) -> dict[str, list[str]]:
    headers = resp.headers
    assert headers.get("X-Content-Type-Options") == "nosniff", where
    assert headers.get("X-Frame-Options") == "DENY", where
    assert headers.get("Referrer-Policy") in ("no-referrer", "same-origin"), where
    csp = headers.get("Content-Security-Policy")
    assert csp, where
    policy = _policy(csp)
    assert policy["frame-ancestors"] == ["'none'"], where
    # No host anywhere: only keywords ('self', 'none', hashes) and data:/blob: schemes.
    for name, values in policy.items():
        for value in values:
            assert value.startswith("'") or value in ("data:", "blob:"), (where, name, value)
    return policy


def _assert_page(resp, where: str) -> None:
    policy = _assert_common(resp, where)
    assert resp.mimetype == "text/html", where
    assert policy["default-src"] == ["'self'"], where
    for directive in ("script-src", "style-src"):
        assert "'unsafe-inline'" not in policy[directive] and "'unsafe-eval'" not in policy[directive], where
    assert policy["object-src"] == ["'none'"] and policy["base-uri"] == ["'none'"], where
    assert policy["form-action"] == ["'self'"], where


@pytest.fixture
def status_path(api, order) -> str:
    resp = api.post("/returns", json=return_body())
    assert resp.status_code == 201
    return urlsplit(resp.get_json()["links"]["status_page"]).path


def test_customer_pages_have_a_strict_policy_and_are_never_framed(client, status_path, frozen_now):
    _assert_page(client.get("/returns/"), "start page")
    _assert_page(client.get(status_path), "status page")
    _assert_page(client.get(status_path + "/cancel"), "cancel confirmation")


def test_error_pages_have_the_page_policy(client):
    for path in ("/nowhere", "/returns/status/not-a-token"):
        resp = client.get(path)
        assert resp.status_code == 404, path
        _assert_page(resp, path)


def test_api_answers_and_api_errors_allow_nothing(client, api, order):
    for resp, where in ((api.get("/orders/1001"), "answer"), (client.get("/api/v1/returns"), "401"),
                        (api.get("/returns/RMA-0000-0000"), "404"), (client.get("/healthz"), "health"),
                        (client.get("/api/v1/openapi.json"), "spec")):
        assert resp.mimetype in ("application/json", "application/problem+json"), where
        _assert_common(resp, where)
        assert resp.headers["Content-Security-Policy"] == JSON_CSP, where


def test_api_answers_do_not_vary_with_a_cookie_but_pages_do(client, api, order, status_path, frozen_now):
    """The API never uses the session: no ``Vary: Cookie`` (a cache may share its answers
    whatever cookie comes along); a page, whose language and sign-in come from the session
    cookie, keeps it."""
    for resp in (api.get("/orders/1001"), api.post("/returns", json=return_body(
            items=[{"line_id": "L2", "quantity": 1, "reason": "too_large"}]))):
        assert resp.status_code in (200, 201), resp.get_json()
        assert "Cookie" not in resp.headers.get("Vary", ""), resp.headers
    assert "Cookie" in client.get(status_path).headers.get("Vary", "")


def test_api_docs_allow_only_their_own_initializer(client):
    resp = client.get("/api/docs")
    assert resp.status_code == 200
    policy = _assert_common(resp, "/api/docs")
    assert policy["default-src"] == ["'none'"]
    assert "'unsafe-inline'" not in policy["script-src"] and "'unsafe-eval'" not in policy["script-src"]
    # The one inline script (Swagger UI's initializer) is allowed by its hash, nothing else inline.
    inline = re.findall(r"<script>(.*?)</script>", resp.get_data(as_text=True), flags=re.S)
    assert len(inline) == 1
    digest = base64.b64encode(hashlib.sha256(inline[0].encode()).digest()).decode()
    assert policy["script-src"] == ["'self'", f"'sha256-{digest}'"]
    assert policy["connect-src"] == ["'self'"]  # the spec and "Try it out", same origin only


def test_stricter_headers_of_a_view_win(app, client):
    """The admin view's own policy and a view's own CSP are kept, not replaced by the defaults."""
    @app.get("/__test/sandboxed")
    def _sandboxed():
        return "x", 200, {"Content-Security-Policy": "default-src 'none'; sandbox", "Referrer-Policy": "no-referrer"}

    resp = client.get("/admin/login")
    assert resp.headers["Content-Security-Policy"] == ADMIN_CSP
    resp = client.get("/__test/sandboxed")
    assert resp.headers["Content-Security-Policy"] == "default-src 'none'; sandbox"
    assert resp.headers["Referrer-Policy"] == "no-referrer"
    assert resp.headers["X-Frame-Options"] == "DENY"


def test_static_files_are_not_sniffed(client):
    resp = client.get("/static/app.css")
    assert resp.status_code == 200
    assert resp.headers["X-Content-Type-Options"] == "nosniff"


# --- in a real browser ---------------------------------------------------------------------------

def _watch(page) -> list[str]:
    """Console messages and page errors that tell of a blocked resource or script."""
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
    return problems


def test_swagger_ui_renders_every_operation_under_its_policy(page):
    problems = _watch(page)
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto("/api/docs")
    page.locator(".opblock").first.wait_for()
    assert page.locator(".opblock").count() >= 25
    assert page.locator(".opblock-summary-path", has_text="/api/v1/returns/{rma_number}/approve").count() == 1
    # Swagger UI shows the bearer scheme (the "Authorize" button) and, in an operation, the
    # documented Idempotency-Key header.
    assert page.locator("button.authorize").count() == 1
    page.locator(".opblock-summary-path", has_text="/api/v1/returns/{rma_number}/approve").click()
    page.get_by_text("Idempotency-Key", exact=True).first.wait_for()
    csp = [p for p in problems if "Content Security Policy" in p or "Content-Security-Policy" in p]
    assert csp == [], csp
    assert [p for p in problems if p.startswith("pageerror")] == []
    assert all(url.startswith(page.base) for url in requests), requests


def test_customer_status_page_has_no_csp_violation(page, status_path, frozen_now):
    problems = _watch(page)
    page.goto(status_path)
    assert page.locator("h1").count() >= 1
    # The stylesheet applied (the policy lets the page's own CSS through).
    assert page.evaluate("getComputedStyle(document.querySelector('.skip-link')).position") == "absolute"
    page.goto(status_path + "/cancel")
    assert [p for p in problems if "Content Security Policy" in p] == []
    # The page refuses to be framed by another page.
    page.set_content(f'<iframe src="{page.base}{status_path}"></iframe>')
    page.wait_for_timeout(300)
    frame = page.frames[-1]
    assert frame.url in ("about:blank", "") or "chrome-error" in frame.url or frame.locator("h1").count() == 0

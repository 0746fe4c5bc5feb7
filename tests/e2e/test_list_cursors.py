"""A list's cursor is opaque: one a client altered is a 422 ``validation_error`` naming
``cursor`` in the API (the first page in the admin's queues), never a 500 from a value the
database refuses — an id past 64 bits, a time without its zone, digits other than 0-9."""
from __future__ import annotations

import base64

import pytest

from tests.conftest import return_body
from tests.e2e.admin_support import login, make_agent


def b64(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


ALTERED_IDS = ["99999999999999999999", "9223372036854775808", "-1", "0", "²", "1e3", "", "12|3", "٣"]


def assert_invalid_cursor(resp) -> None:
    assert resp.status_code == 422, resp.get_data(as_text=True)
    assert resp.content_type == "application/problem+json"
    body = resp.get_json()
    assert body["code"] == "validation_error" and body["errors"] == {"cursor": ["Invalid cursor."]}


@pytest.mark.parametrize("path, prefix", [("/returns", "r"), ("/disputes", "d")])
@pytest.mark.parametrize("raw_id", ALTERED_IDS)
def test_an_altered_id_cursor_is_a_422(api, order, path, prefix, raw_id):
    assert_invalid_cursor(api.get(f"{path}?cursor={b64(prefix + raw_id)}"))


@pytest.mark.parametrize("path, prefix", [("/returns", "r"), ("/disputes", "d")])
def test_a_cursor_of_another_list_or_not_base64_is_a_422(api, order, path, prefix):
    other = "d" if prefix == "r" else "r"
    assert_invalid_cursor(api.get(f"{path}?cursor={b64(other + '5')}"))
    assert_invalid_cursor(api.get(f"{path}?cursor=%25%25%25"))


def page_through(api, path: str, key: str, limit: int) -> list:
    """Every item of a list, following the cursors the API gives out."""
    seen, cursor = [], None
    while True:
        page = api.get(f"{path}?limit={limit}" + (f"&cursor={cursor}" if cursor else "")).get_json()
        seen += [item[key] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return seen


def test_the_cursors_the_api_gives_out_still_page_through_every_return(api, order):
    made = []
    for _ in range(5):
        resp = api.post("/returns", json=return_body(items=[{"line_id": "L2", "quantity": 1, "reason": "too_small"}]))
        assert resp.status_code == 201
        made.append(resp.get_json()["rma_number"])
    assert page_through(api, "/returns", "rma_number", 2) == made[::-1]


@pytest.mark.parametrize("raw", [
    "2026-01-01T00:00:00+00:00|99999999999999999999",   # id past 64 bits
    "2026-01-01T00:00:00|5",                            # no time zone
    "2026-13-01T00:00:00+00:00|5",                      # no such month
    "2026-01-01T00:00:00+00:00|²",
    "just text",
])
def test_an_altered_queue_cursor_shows_the_first_page(app, client, api, order, raw):
    number = api.post("/returns", json=return_body()).get_json()["rma_number"]
    make_agent(app)
    login(client)
    first = client.get("/admin/queues/all")
    resp = client.get(f"/admin/queues/all?cursor={b64(raw)}")
    assert resp.status_code == 200
    assert number in resp.get_data(as_text=True)
    assert first.status_code == 200


@pytest.mark.parametrize("raw", [
    "2026-01-01T00:00:00|0b9f0a52-1f3c-4f7e-9a55-3b1d2c3e4f50",   # no time zone
    "2026-01-01T00:00:00+00:00|" + "x" * 37,                     # longer than an endpoint id
    "2026-01-01T00:00:00+00:00|",
    "yesterday|0b9f0a52-1f3c-4f7e-9a55-3b1d2c3e4f50",
])
def test_an_altered_endpoint_list_cursor_is_a_422(api, raw):
    assert_invalid_cursor(api.get(f"/webhook-endpoints?cursor={b64(raw)}"))


@pytest.mark.parametrize("raw_id", [i for i in ALTERED_IDS if i])  # (an empty cursor is no cursor)
def test_an_altered_delivery_list_cursor_is_a_422(api, raw_id):
    endpoint = api.post("/webhook-endpoints", json={"url": "https://shop.example/hooks", "events": ["*"]})
    assert endpoint.status_code == 201, endpoint.get_json()
    assert_invalid_cursor(api.get(f"/webhook-endpoints/{endpoint.get_json()['id']}/deliveries?cursor={b64(raw_id)}"))


def test_the_endpoint_and_delivery_cursors_the_api_gives_out_still_page(api, order):
    made = [api.post("/webhook-endpoints", json={"url": f"https://shop.example/hooks/{i}", "events": ["*"]})
            .get_json()["id"] for i in range(3)]
    seen = page_through(api, "/webhook-endpoints", "id", 2)
    assert sorted(seen) == sorted(made) and len(seen) == 3
    for _ in range(2):
        assert api.post("/returns", json=return_body(items=[{"line_id": "L2", "quantity": 1, "reason": "too_small"}])).status_code == 201
    deliveries = page_through(api, f"/webhook-endpoints/{made[0]}/deliveries", "id", 3)
    assert len(deliveries) == len(set(deliveries)) == 4   # return.created + return.authorized, twice

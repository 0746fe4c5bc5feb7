"""``/api/v1/webhook-endpoints``: create, read, list, delete, rotate, deliveries, redeliver —
and every error a shop backend can hit (status, code, nothing written)."""
from __future__ import annotations

import pytest

from rma_service.models import WebhookDelivery, WebhookEndpoint
from tests.conftest import count

URL = "https://shop.example/hooks/rma"


def create(api, url=URL, events=("return.created", "return.refunded"), **kw):
    return api.post("/webhook-endpoints", json={"url": url, "events": list(events)}, **kw)


def delete(api, endpoint_id):
    return api.client.delete(f"/api/v1/webhook-endpoints/{endpoint_id}",
                             headers={"Authorization": f"Bearer {api.key}"})


def test_create_returns_the_secret_once(api, app):
    resp = create(api)
    assert resp.status_code == 201
    body = resp.get_json()
    assert list(body)[:4] == ["id", "url", "events", "created_at"]
    assert body["url"] == URL and body["events"] == ["return.created", "return.refunded"]
    assert body["secret"].startswith("whsec_") and len(body["secret"]) > 40

    got = api.get(f"/webhook-endpoints/{body['id']}")
    assert got.status_code == 200
    assert got.get_json() == {k: body[k] for k in ("id", "url", "events", "created_at")}
    assert "secret" not in got.get_json()
    assert count(app, WebhookEndpoint) == 1


def test_loopback_and_http_urls_and_all_events(api):
    resp = create(api, url="http://127.0.0.1:8080/hook", events=["*"])
    assert resp.status_code == 201 and resp.get_json()["events"] == ["*"]
    dup = create(api, events=["return.created", "return.created"])
    assert dup.get_json()["events"] == ["return.created"]


@pytest.mark.parametrize("body, field", [
    ({"url": "ftp://shop.example/hook", "events": ["return.created"]}, "url"),
    ({"url": "javascript:alert(1)", "events": ["return.created"]}, "url"),
    ({"url": "/relative/hook", "events": ["return.created"]}, "url"),
    ({"url": "https://user:pw@shop.example/hook", "events": ["return.created"]}, "url"),
    ({"url": "https://shop.example/" + "a" * 2000, "events": ["return.created"]}, "url"),
    ({"events": ["return.created"]}, "url"),
    ({"url": URL, "events": []}, "events"),
    ({"url": URL, "events": ["return.teleported"]}, "events.0"),
    ({"url": URL, "events": "return.created"}, "events"),
    ({"url": URL}, "events"),
    ({"url": URL, "events": ["return.created"], "secret": "mine"}, "secret"),
])
def test_invalid_endpoint_is_422_and_nothing_is_written(api, app, body, field):
    resp = api.post("/webhook-endpoints", json=body)
    assert resp.status_code == 422
    problem = resp.get_json()
    assert resp.content_type == "application/problem+json"
    assert problem["code"] == "validation_error"
    assert field in problem["errors"], problem["errors"]
    assert count(app, WebhookEndpoint) == 0


def test_unknown_ids_are_404(api, app):
    for path in ("/webhook-endpoints/0b8f5a52-4a0e-4f0e-9c1e-000000000000",
                 "/webhook-endpoints/not-a-uuid", "/webhook-endpoints/" + "x" * 300):
        resp = api.get(path)
        assert resp.status_code == 404 and resp.get_json()["code"] == "not_found"
    assert delete(api, "0b8f5a52-4a0e-4f0e-9c1e-000000000000").status_code == 404
    resp = api.post("/webhook-endpoints/0b8f5a52-4a0e-4f0e-9c1e-000000000000/rotate-secret")
    assert resp.status_code == 404 and resp.get_json()["code"] == "not_found"
    endpoint = create(api).get_json()
    resp = api.post(f"/webhook-endpoints/{endpoint['id']}/deliveries/999/redeliver")
    assert resp.status_code == 404 and resp.get_json()["code"] == "not_found"


def test_delete_is_soft_and_final(api, app):
    endpoint = create(api).get_json()
    assert delete(api, endpoint["id"]).status_code == 204
    assert api.get(f"/webhook-endpoints/{endpoint['id']}").status_code == 404
    assert delete(api, endpoint["id"]).status_code == 404
    assert api.get("/webhook-endpoints").get_json()["items"] == []
    assert count(app, WebhookEndpoint) == 1  # kept for the record of its deliveries


def test_list_newest_first_with_a_stable_cursor(api, frozen_now):
    from datetime import timedelta

    from rma_service import clock
    ids = []
    for i in range(5):
        with clock.frozen(frozen_now + timedelta(minutes=i)):
            ids.append(create(api, url=f"https://shop.example/hooks/{i}").get_json()["id"])
    first = api.get("/webhook-endpoints?limit=2").get_json()
    assert [e["id"] for e in first["items"]] == ids[::-1][:2]
    assert all("secret" not in e for e in first["items"])
    with clock.frozen(frozen_now + timedelta(hours=1)):
        create(api, url="https://shop.example/hooks/new")  # added meanwhile: cursor still valid
    second = api.get(f"/webhook-endpoints?limit=2&cursor={first['next_cursor']}").get_json()
    third = api.get(f"/webhook-endpoints?limit=2&cursor={second['next_cursor']}").get_json()
    assert [e["id"] for e in second["items"] + third["items"]] == ids[::-1][2:]
    assert third["next_cursor"] is None
    bad = api.get("/webhook-endpoints?cursor=zzz")
    assert bad.status_code == 422 and bad.get_json()["code"] == "validation_error"
    assert api.get("/webhook-endpoints?limit=0").status_code == 422


def test_rotate_secret(api, frozen_now):
    endpoint = create(api).get_json()
    resp = api.post(f"/webhook-endpoints/{endpoint['id']}/rotate-secret")
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["secret"] != endpoint["secret"] and body["secret"].startswith("whsec_")
    assert body["previous_secret_expires_at"] == "2026-11-26T12:00:00Z"
    assert "secret" not in api.get(f"/webhook-endpoints/{endpoint['id']}").get_json()


def test_deliveries_list_and_redeliver_only_failed(api, app, order):
    endpoint = create(api, events=["*"]).get_json()
    api.post("/returns", json={"order_number": "1001", "email": "ada@example.com",
                               "items": [{"line_id": "L1", "quantity": 1, "reason": "too_small"}]})
    listed = api.get(f"/webhook-endpoints/{endpoint['id']}/deliveries").get_json()
    assert [d["event_type"] for d in listed["items"]] == ["return.authorized", "return.created"]
    assert {d["status"] for d in listed["items"]} == {"pending"}
    pending = listed["items"][0]
    resp = api.post(f"/webhook-endpoints/{endpoint['id']}/deliveries/{pending['id']}/redeliver")
    assert resp.status_code == 409 and resp.get_json()["code"] == "conflict"
    assert api.get(f"/webhook-endpoints/{endpoint['id']}/deliveries?status=failed").get_json()["items"] == []
    assert api.get(f"/webhook-endpoints/{endpoint['id']}/deliveries?status=nope").status_code == 422
    # Another endpoint's delivery is not found under this one.
    other = create(api, url="https://other.example/hook").get_json()
    resp = api.post(f"/webhook-endpoints/{other['id']}/deliveries/{pending['id']}/redeliver")
    assert resp.status_code == 404
    assert count(app, WebhookDelivery) == 2


def test_create_is_idempotent(api, app):
    first = create(api, headers={"Idempotency-Key": "hook-1"})
    again = create(api, headers={"Idempotency-Key": "hook-1"})
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json() == first.get_json()
    assert count(app, WebhookEndpoint) == 1


def test_requires_an_api_key(client, app):
    resp = client.post("/api/v1/webhook-endpoints", json={"url": URL, "events": ["return.created"]})
    assert resp.status_code == 401 and resp.get_json()["code"] == "unauthorized"
    assert client.get("/api/v1/webhook-endpoints").status_code == 401
    assert count(app, WebhookEndpoint) == 0

"""Racing requests through a real threaded HTTP server on the real database."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import requests

from rma_service.models import IdempotencyKey, Return
from tests.conftest import count, order_body, return_body


def _race(n, fn):
    barrier = threading.Barrier(n)

    def run(i):
        barrier.wait(timeout=10)
        return fn(i)

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(run, range(n)))


def test_twenty_racing_requests_never_return_more_than_ordered(app, api, api_key, frozen_now, live_server):
    lines = [{"line_id": "L1", "sku": "MUG", "name": "Mug", "quantity": 5, "unit_price": "12.00"}]
    assert api.put("/orders/R1", json=order_body(lines=lines)).status_code == 201
    headers = {"Authorization": f"Bearer {api_key}"}
    body = return_body("R1", items=[{"line_id": "L1", "quantity": 1, "reason": "changed_mind"}])

    results = _race(20, lambda i: requests.post(f"{live_server.url}/api/v1/returns", json=body,
                                                headers=headers, timeout=60))
    statuses = sorted(r.status_code for r in results)
    assert statuses == [201] * 5 + [422] * 15, [r.text for r in results if r.status_code not in (201, 422)]
    assert {r.json()["code"] for r in results if r.status_code == 422} == {"quantity_exceeded"}
    assert count(app, Return) == 5
    line = api.get("/orders/R1").get_json()["lines"][0]
    assert line["returnable_quantity"] == 0
    assert line["eligibility"]["reason_code"] == "already_returned"


def test_retried_post_with_same_key_creates_one_return(app, api, order):
    headers = {"Idempotency-Key": "order-1001-return-1"}
    first = api.post("/returns", json=return_body(), headers=headers)
    second = api.post("/returns", json=return_body(), headers=headers)
    assert first.status_code == 201 and second.status_code == 201
    assert second.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert second.get_json() == first.get_json()
    assert second.headers["Location"] == first.headers["Location"]
    assert count(app, Return) == 1


def test_same_key_other_body_is_refused(app, api, order):
    headers = {"Idempotency-Key": "k-1"}
    api.post("/returns", json=return_body(), headers=headers)
    other = return_body(items=[{"line_id": "L2", "quantity": 1, "reason": "damaged"}])
    resp = api.post("/returns", json=other, headers=headers)
    assert resp.status_code == 422 and resp.get_json()["code"] == "idempotency_key_reused"
    assert count(app, Return) == 1


def test_error_answers_are_replayed_too(app, api, order):
    headers = {"Idempotency-Key": "k-err"}
    bad = return_body(items=[{"line_id": "L3", "quantity": 1, "reason": "damaged"}])
    first = api.post("/returns", json=bad, headers=headers)
    second = api.post("/returns", json=bad, headers=headers)
    assert first.status_code == second.status_code == 422
    assert second.headers["Idempotent-Replayed"] == "true"


def test_a_conflict_is_not_replayed_a_retry_runs_again(app, api, order):
    """A 409 depends on the return's state at that moment: once the state has changed, a
    retry with the same key runs (a stored 409 would be replayed for a day)."""
    number = api.post("/returns", json=return_body(items=[
        {"line_id": "L1", "quantity": 1, "reason": "other", "comment": "Colour differs"}])).get_json()["rma_number"]
    headers = {"Idempotency-Key": "receive-1"}
    first = api.post(f"/returns/{number}/receive", headers=headers)
    assert first.status_code == 409 and first.get_json()["code"] == "invalid_transition"
    assert api.post(f"/returns/{number}/approve").status_code == 200
    retry = api.post(f"/returns/{number}/receive", headers=headers)
    assert retry.status_code == 200 and retry.get_json()["status"] == "received"
    assert "Idempotent-Replayed" not in retry.headers
    replay = api.post(f"/returns/{number}/receive", headers=headers)
    assert replay.status_code == 200 and replay.headers["Idempotent-Replayed"] == "true"


def test_keys_are_scoped_to_the_api_key(app, api, order):
    from rma_service.services.apikeys import create_api_key
    from tests.conftest import NOW, Api
    with app.app_context():
        other_key = create_api_key("other-shop-tool", NOW)[1]
    other = Api(api.client, other_key)
    headers = {"Idempotency-Key": "shared"}
    assert api.post("/returns", json=return_body(), headers=headers).status_code == 201
    assert other.post("/returns", json=return_body(), headers=headers).status_code == 201
    assert count(app, Return) == 2


def test_two_retries_racing_create_one_return(app, api, api_key, order, live_server):
    headers = {"Authorization": f"Bearer {api_key}", "Idempotency-Key": "race-key"}
    results = _race(8, lambda i: requests.post(f"{live_server.url}/api/v1/returns", json=return_body(),
                                               headers=headers, timeout=60))
    statuses = [r.status_code for r in results]
    assert statuses.count(201) >= 1 and set(statuses) <= {201, 409}, [r.text for r in results]
    assert {r.json()["code"] for r in results if r.status_code == 409} <= {"conflict"}
    created = [r for r in results if r.status_code == 201]
    assert len({r.json()["rma_number"] for r in created}) == 1
    assert sum(1 for r in created if "Idempotent-Replayed" not in r.headers) == 1
    assert count(app, Return) == 1
    assert count(app, IdempotencyKey) == 1
    # once the first has finished, a retry replays it
    again = requests.post(f"{live_server.url}/api/v1/returns", json=return_body(), headers=headers, timeout=60)
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["rma_number"] == created[0].json()["rma_number"]

"""``POST /api/v1/carrier-events/{carrier}``: signed tracking events from the carrier, through
the HTTP app. The label is issued first by the job against a real local HTTP carrier."""
from __future__ import annotations

import io
import json
from datetime import datetime, timedelta

import pytest
from pytest_httpserver import HTTPServer
from sqlalchemy import func, select

from rma_service.adapters.signing import sign
from rma_service.clock import rfc3339
from rma_service.extensions import db
from rma_service.models import CarrierEvent, Label, OutboxEvent, Return
from rma_service.services.labels import issue_due
from tests.conftest import NOW, return_body
from tests.integration.test_labels_service import created, use_acme

SECRET = "whsec_acme_tracking_1"
TRACKING = "ACME000111"


@pytest.fixture
def shipped(app, api, order, httpserver: HTTPServer) -> str:
    """An authorized return whose acme label is issued (tracking ACME000111); its RMA number."""
    use_acme(app, httpserver.url_for("/v1"), CARRIER_ACME_SECRET=SECRET)
    httpserver.expect_oneshot_request("/v1/shipments", method="POST").respond_with_json(created(TRACKING), status=201)
    resp = api.post("/returns", json=return_body())
    assert resp.status_code == 201
    with app.app_context():
        assert issue_due(NOW) == 1
    return resp.get_json()["rma_number"]


def event(event_id: str = "ev_1", status: str = "picked_up", occurred_at: datetime = NOW + timedelta(days=1),
          tracking_number: str = TRACKING, **extra) -> dict:
    return {"event_id": event_id, "tracking_number": tracking_number, "status": status,
            "occurred_at": rfc3339(occurred_at), **extra}


def post(client, body, *, carrier: str = "acme", secret: str = SECRET, t: datetime = NOW,
         header: str = "RMA-Signature", raw: bytes | None = None, signature: str | None = None, **headers):
    data = raw if raw is not None else json.dumps(body).encode()
    if signature is None:
        signature = sign(secret, data, int(t.timestamp()))
    return client.post(f"/api/v1/carrier-events/{carrier}", data=data, content_type="application/json",
                       headers={header: signature, **headers} if header else headers)


def state(app, number: str) -> dict:
    """Everything an event may change, to compare before and after."""
    code = number.replace("RMA-", "").replace("-", "")
    with app.app_context():
        ret = db.session.scalar(select(Return).where(Return.rma_code == code))
        label = ret.labels[-1]
        return {"status": ret.status, "first_scan_at": ret.first_scan_at, "received_at": ret.received_at,
                "updated_at": ret.updated_at, "version": ret.version,
                "tracking_status": label.tracking_status, "tracking_updated_at": label.tracking_updated_at,
                "carrier_events": db.session.scalar(select(func.count()).select_from(CarrierEvent)),
                "outbox": db.session.scalar(select(func.count()).select_from(OutboxEvent))}


def event_log(api, number: str) -> list[dict]:
    return api.get(f"/returns/{number}/events").get_json()["items"]


# --- authentication ---------------------------------------------------------------------------

@pytest.mark.parametrize("case", ["missing", "wrong_secret", "stale", "future", "tampered", "unknown_carrier",
                                  "garbage", "bearer_instead"])
def test_a_bad_signature_is_401_and_changes_nothing(app, api, client, shipped, case):
    before = state(app, shipped)
    body = event()
    kwargs: dict = {}
    if case == "missing":
        kwargs = {"header": None}
    elif case == "wrong_secret":
        kwargs = {"secret": "not-the-secret"}
    elif case == "stale":
        kwargs = {"t": NOW - timedelta(seconds=301)}
    elif case == "future":
        kwargs = {"t": NOW + timedelta(seconds=301)}
    elif case == "tampered":
        signed = json.dumps(body).encode()
        kwargs = {"signature": sign(SECRET, signed, int(NOW.timestamp())),
                  "raw": json.dumps({**body, "status": "delivered"}).encode()}
    elif case == "unknown_carrier":
        kwargs = {"carrier": "nobody"}
    elif case == "garbage":
        kwargs = {"signature": "t=abc,v1=zz"}
    elif case == "bearer_instead":
        kwargs = {"header": None, "Authorization": f"Bearer {api.key}"}

    resp = post(client, body, **kwargs)

    assert resp.status_code == 401
    assert resp.mimetype == "application/problem+json"
    assert resp.get_json()["code"] == "unauthorized"
    assert state(app, shipped) == before


def test_the_signature_is_checked_before_the_body(app, client, shipped):
    resp = post(client, None, raw=b"{not json", signature="t=1,v1=00")
    assert resp.status_code == 401 and resp.get_json()["code"] == "unauthorized"


def test_carrier_signature_header_and_a_rotated_secret_are_accepted(app, client, shipped):
    app.config["RMA"]["CARRIER_ACME_SECRET"] = f"whsec_new, {SECRET}"
    resp = post(client, event(), header="Carrier-Signature")
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["applied"] is True


# --- the tracking rules -----------------------------------------------------------------------

def test_first_scan_ships_the_return_and_sets_the_refund_deadline(app, api, client, shipped):
    scanned = NOW + timedelta(days=20)  # later than created_at + 14 days: the deadline follows it
    resp = post(client, event(status="Pris en charge", occurred_at=scanned))

    assert resp.status_code == 200
    assert resp.get_json() == {"event_id": "ev_1", "duplicate": False, "matched": True, "status": "in_transit",
                               "applied": True}
    body = api.get(f"/returns/{shipped}").get_json()
    assert body["status"] == "in_transit"
    assert body["refund"]["due_at"] == rfc3339(scanned)
    ship = event_log(api, shipped)[-1]
    assert ship["type"] == "ship" and ship["actor"] == "carrier:acme"
    assert ship["data"]["from"] == "authorized" and ship["data"]["to"] == "in_transit"
    assert ship["data"]["tracking_number"] == TRACKING
    with app.app_context():
        assert db.session.scalar(select(OutboxEvent.type).order_by(OutboxEvent.id.desc()).limit(1)) == \
            "return.in_transit"
        stored = db.session.scalar(select(CarrierEvent))
        assert (stored.carrier, stored.raw_status, stored.status, stored.occurred_at) == \
            ("acme", "Pris en charge", "in_transit", scanned)
        assert stored.label_id == db.session.scalar(select(Label.id))


def test_a_replayed_event_changes_nothing(app, api, client, shipped):
    assert post(client, event()).status_code == 200
    before, trail = state(app, shipped), event_log(api, shipped)

    resp = post(client, event(), t=NOW + timedelta(seconds=5))  # signed again: a carrier's retry

    assert resp.status_code == 200
    assert resp.get_json()["duplicate"] is True and resp.get_json()["applied"] is False
    assert state(app, shipped) == before and event_log(api, shipped) == trail


def test_an_older_event_arriving_late_does_not_move_the_status_back(app, api, client, shipped):
    delivered_at, picked_up_at = NOW + timedelta(days=3), NOW + timedelta(days=1)
    assert post(client, event("ev_2", "out_for_delivery", NOW + timedelta(days=2))).status_code == 200
    assert post(client, event("ev_3", "delivered", delivered_at)).status_code == 200
    assert state(app, shipped)["first_scan_at"] == NOW + timedelta(days=2)

    late = post(client, event("ev_1", "picked_up", picked_up_at))

    assert late.status_code == 200
    assert late.get_json()["applied"] is True  # it is the earliest scan: the proof of shipment moves back
    after = state(app, shipped)
    assert after["tracking_status"] == "delivered" and after["tracking_updated_at"] == delivered_at
    assert after["first_scan_at"] == picked_up_at
    assert after["status"] == "in_transit" and after["carrier_events"] == 3

    older = post(client, event("ev_0", "out_for_delivery", NOW + timedelta(days=2, hours=1)))
    assert older.get_json()["applied"] is False
    assert state(app, shipped)["tracking_status"] == "delivered"


def test_delivered_is_recorded_but_receipt_stays_an_agents_act(app, api, client, shipped):
    resp = post(client, event("ev_9", "delivered", NOW + timedelta(days=2)))

    assert resp.status_code == 200 and resp.get_json()["status"] == "delivered"
    body = api.get(f"/returns/{shipped}").get_json()
    assert body["status"] == "in_transit"  # the delivery scan is also the first scan
    assert all(item["received_quantity"] == 0 for item in body["items"])
    types = [e["type"] for e in event_log(api, shipped)]
    assert types[-2:] == ["ship", "parcel_delivered"]
    assert state(app, shipped)["received_at"] is None
    assert api.post(f"/returns/{shipped}/receive", json={}).status_code == 200  # the agent receives


def test_an_unknown_status_word_is_stored_and_moves_nothing(app, client, shipped):
    before = state(app, shipped)
    resp = post(client, event(status="exception"))
    assert resp.status_code == 200
    assert resp.get_json() == {"event_id": "ev_1", "duplicate": False, "matched": True, "status": None,
                               "applied": False}
    after = state(app, shipped)
    assert after["carrier_events"] == before["carrier_events"] + 1
    assert {k: v for k, v in after.items() if k != "carrier_events"} == \
        {k: v for k, v in before.items() if k != "carrier_events"}


def test_an_unknown_tracking_number_is_accepted_and_stored_unmatched(app, client, shipped):
    before = state(app, shipped)
    resp = post(client, event(tracking_number="NOT-OURS-1"))
    assert resp.status_code == 202
    assert resp.get_json()["matched"] is False and resp.get_json()["applied"] is False
    with app.app_context():
        stored = db.session.scalar(select(CarrierEvent))
        assert stored.label_id is None and stored.tracking_number == "NOT-OURS-1"
    assert state(app, shipped)["status"] == before["status"] == "authorized"
    again = post(client, event(tracking_number="NOT-OURS-1"))
    assert again.status_code == 200 and again.get_json()["duplicate"] is True


def test_a_batch_of_events(app, api, client, shipped):
    resp = post(client, {"events": [event("ev_1", "picked_up"), event("ev_2", "delivered", NOW + timedelta(days=2)),
                                    event("ev_1", "picked_up")]})
    assert resp.status_code == 200
    items = resp.get_json()["items"]
    assert [(i["event_id"], i["duplicate"], i["status"]) for i in items] == \
        [("ev_1", False, "in_transit"), ("ev_2", False, "delivered"), ("ev_1", True, "in_transit")]
    assert state(app, shipped)["tracking_status"] == "delivered"


def test_events_of_a_voided_label_do_not_move_the_return(app, api, client, shipped, httpserver):
    httpserver.expect_request("/v1/shipments/shp_1/void", method="POST").respond_with_data("", status=204)
    assert api.post(f"/returns/{shipped}/cancel").status_code == 200
    resp = post(client, event())
    assert resp.status_code == 200 and resp.get_json()["matched"] is True
    after = state(app, shipped)
    assert after["status"] == "cancelled" and after["first_scan_at"] is None
    assert after["tracking_status"] == "in_transit"
    assert event_log(api, shipped)[-1]["type"] == "voided_label_scanned"


# --- validation -------------------------------------------------------------------------------

@pytest.mark.parametrize(("body", "field"), [
    ({k: v for k, v in event().items() if k != "occurred_at"}, "occurred_at"),
    (event(occurred_at=NOW) | {"occurred_at": "2026-11-26T10:00:00"}, "occurred_at"),  # no offset
    (event() | {"event_id": ""}, "event_id"),
    (event() | {"tracking_number": 42}, "tracking_number"),
    (event() | {"status": "x" * 65}, "status"),
    ({"events": [event("ev_1"), {"event_id": "ev_2"}]}, "events.1.occurred_at"),
    ({"events": []}, "events"),
    ([event()], "_schema"),
])
def test_an_invalid_event_is_422_and_nothing_is_stored(app, client, shipped, body, field):
    before = state(app, shipped)
    resp = post(client, body)
    assert resp.status_code == 422
    problem = resp.get_json()
    assert problem["code"] == "validation_error" and field in problem["errors"], problem
    assert state(app, shipped) == before


def test_a_body_that_is_not_json_is_422(app, client, shipped):
    resp = post(client, None, raw=b"tracking=1")
    assert resp.status_code == 422 and resp.get_json()["code"] == "validation_error"


def test_the_endpoint_is_in_the_openapi_document(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    operation = spec["paths"]["/api/v1/carrier-events/{carrier}"]["post"]
    assert operation["security"] == []
    assert "202" in operation["responses"] and "401" in operation["responses"]
    assert "/api/v1/returns/{rma_number}/label/reissue" in spec["paths"]


# --- unreadable bodies and unstorable characters: 422 (never a 500), nothing stored -----------

@pytest.mark.parametrize("raw", [
    b"[" * 100_000 + b"]" * 100_000,                          # RecursionError in the decoder
    b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
    b'{"events": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    json.dumps(event()).replace('"ev_1"', "1" * 5000).encode(),  # an integer beyond 4300 digits
    b"\xff\xfe{}",                                             # not UTF-8
], ids=["list", "object", "events", "long_integer", "not_utf8"])
def test_an_unreadable_body_is_the_same_422_as_malformed_json(app, client, shipped, raw):
    """Whatever stops the decoder, the answer is the one a malformed body gets."""
    before = state(app, shipped)
    resp = post(client, None, raw=raw)
    assert resp.status_code == 422 and resp.mimetype == "application/problem+json"
    problem = resp.get_json()
    assert problem["code"] == "validation_error" and problem["errors"] == {"_schema": ["Send a JSON object."]}
    assert problem == post(client, None, raw=b"{not json").get_json()
    assert state(app, shipped) == before


@pytest.mark.parametrize("content_type", ["application/json", "text/plain"])
@pytest.mark.parametrize("body, field, message", [
    (event(event_id="ev_\udc00"), "event_id", "Unpaired surrogate characters (U+D800 to U+DFFF) are not allowed."),
    (event(status="picked_up\ud83d"), "status", "Unpaired surrogate characters (U+D800 to U+DFFF) are not allowed."),
    ({"events": [event("ev_1"), event("ev_2", tracking_number="ACME\x00")]}, "events.1.tracking_number",
     "NUL characters (U+0000) are not allowed."),
])
def test_unstorable_characters_are_422_after_the_signature(app, client, shipped, content_type, body, field, message):
    """A lone surrogate escape cannot be encoded for the database (a 500), a NUL cannot be
    stored by PostgreSQL: refused with the field named, whatever the Content-Type, and only
    once the signature is good (an unsigned one is still a 401)."""
    raw = json.dumps(body).encode()
    assert b"\\ud" in raw or b"\\u0000" in raw
    before = state(app, shipped)
    unsigned = client.post("/api/v1/carrier-events/acme", data=raw, content_type=content_type,
                           headers={"RMA-Signature": "t=1,v1=00"})
    assert unsigned.status_code == 401 and unsigned.get_json()["code"] == "unauthorized"
    resp = client.post("/api/v1/carrier-events/acme", data=raw, content_type=content_type,
                       headers={"RMA-Signature": sign(SECRET, raw, int(NOW.timestamp()))})
    assert resp.status_code == 422 and resp.mimetype == "application/problem+json"
    assert resp.get_json()["code"] == "validation_error" and resp.get_json()["errors"] == {field: [message]}
    assert state(app, shipped) == before


def test_unstorable_characters_in_a_field_the_service_ignores_are_harmless(app, client, shipped):
    resp = post(client, event(note="carrier's own \udc00 field"))
    assert resp.status_code == 200 and resp.get_json()["applied"] is True


def test_an_escaped_surrogate_pair_is_one_character_and_accepted(app, client, shipped):
    raw = json.dumps(event(event_id="ev_😀"))
    assert "\\ud83d\\ude00" in raw
    resp = post(client, None, raw=raw.encode())
    assert resp.status_code == 200 and resp.get_json()["event_id"] == "ev_😀"


@pytest.mark.parametrize("app_config", [{"MAX_CONTENT_LENGTH": 10_000}])
def test_a_chunked_body_over_the_limit_is_413(app, client, shipped, app_config):
    """Sent chunked (no Content-Length, the server ends the stream), a larger body was cut at the
    limit; the prefix then failed the signature (401). It is a 413, before anything is parsed."""
    from werkzeug.test import EnvironBuilder
    from werkzeug.wrappers import Request
    raw = json.dumps(event()).encode() + b" " * 20_000
    before = state(app, shipped)
    environ = EnvironBuilder(path="/api/v1/carrier-events/acme", method="POST", input_stream=io.BytesIO(raw),
                             content_type="application/json",
                             headers={"RMA-Signature": sign(SECRET, raw, int(NOW.timestamp())),
                                      "Transfer-Encoding": "chunked"}).get_environ()
    del environ["CONTENT_LENGTH"]
    environ["wsgi.input_terminated"] = True
    resp = client.open(Request(environ))
    assert resp.status_code == 413 and resp.get_json()["code"] == "payload_too_large"
    assert state(app, shipped) == before

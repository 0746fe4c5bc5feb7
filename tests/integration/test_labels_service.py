"""Prepaid return labels end to end: the ``issue_labels`` job against the self carrier and a
real local HTTP carrier (pytest-httpserver), PDFs read back through the API with pypdf and zbar,
failures that leave nothing half-written, void and reissue."""
from __future__ import annotations

import base64
import io
import json
import socket
import threading
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from pypdf import PdfReader
from pytest_httpserver import HTTPServer
from sqlalchemy import func, select
from werkzeug import Request, Response

from rma_service.domain import rma_number
from rma_service.extensions import db
from rma_service.models import Event, Label, OutboxEvent, Return
from rma_service.services.labels import issue_due
from tests.conftest import NOW, order_body, return_body
from tests.integration.test_label_pdf import decode_first_page, needs_poppler_and_zbar, page_texts

API_KEY = "sk_test_never-shown-7c1d"
CARRIER_PDF = b"%PDF-1.7\n% the carrier's own label\n%%EOF\n"


# --- helpers ------------------------------------------------------------------------------------

@pytest.fixture
def acme(app, httpserver: HTTPServer) -> HTTPServer:
    """The carrier of new labels is ``acme``, a real HTTP server on 127.0.0.1."""
    use_acme(app, httpserver.url_for("/v1"))
    return httpserver


def use_acme(app, url: str, **extra: str) -> None:
    app.config["RMA"].update({"CARRIER": "acme", "CARRIER_ACME_URL": url, "CARRIER_ACME_API_KEY": API_KEY,
                              "CARRIER_ACME_RETRIES": "0", "CARRIER_ACME_READ_TIMEOUT": "2",
                              "CARRIER_ACME_CONNECT_TIMEOUT": "1", **extra})


def created(tracking: str = "ACME000111", shipment: str = "shp_1", **extra) -> dict:
    return {"tracking_number": tracking, "shipment_id": shipment,
            "label": {"pdf_base64": base64.b64encode(CARRIER_PDF).decode()}, **extra}


def new_return(api, **body) -> dict:
    resp = api.post("/returns", json=return_body(**body))
    assert resp.status_code == 201, resp.get_json()
    assert resp.get_json()["status"] == "authorized"
    return resp.get_json()


def run(app, now=NOW) -> int:
    with app.app_context():
        return issue_due(now)


def run_while_carrier_stalls(app, carrier, release) -> int:
    """One label run against a carrier that holds its answer until ``release`` (the run times
    out); afterwards the carrier answers, late, and its request is in its log."""
    try:
        return run(app)
    finally:
        release.set()
        deadline = time.monotonic() + 10
        while len(carrier.log) < 1 and time.monotonic() < deadline:
            time.sleep(0.01)


def label_rows(app, number: str) -> list[Label]:
    code = number.replace("RMA-", "").replace("-", "")
    with app.app_context():
        rows = db.session.scalars(select(Label).join(Return).where(Return.rma_code == code)
                                  .order_by(Label.id)).all()
        db.session.expunge_all()
        return list(rows)


def event_types(api, number: str) -> list[str]:
    return [e["type"] for e in api.get(f"/returns/{number}/events").get_json()["items"]]


def outbox_types(app) -> list[str]:
    with app.app_context():
        return list(db.session.scalars(select(OutboxEvent.type).order_by(OutboxEvent.id)))


def assert_nothing_issued(app, api, number: str, *, label_status: str) -> dict:
    """The return is consistent after a failed issuance: authorized, its label pending or
    failed with nothing of an issued label written."""
    body = api.get(f"/returns/{number}").get_json()
    assert body["status"] == "authorized"
    assert body["label"]["status"] == label_status
    assert body["label"]["tracking_number"] is None and body["label"]["url"] is None
    [label] = label_rows(app, number)
    assert label.status == label_status
    assert (label.tracking_number, label.carrier_shipment_id, label.pdf, label.issued_at, label.expires_at,
            label.cost) == (None, None, None, None, None, None)
    assert label.locked_until is None
    assert "label_issued" not in event_types(api, number)
    assert "return.label_issued" not in outbox_types(app)
    resp = api.get(f"/returns/{number}/label.pdf")
    assert resp.status_code == 404 and resp.get_json()["code"] == "not_found"
    assert API_KEY not in (label.last_error or "")
    return body


# --- the self carrier: our own label, read back through the API --------------------------------

@needs_poppler_and_zbar
def test_self_label_is_issued_by_the_job_and_read_back_through_the_api(app, api, client, order, tmp_path):
    ret = new_return(api, items=[{"line_id": "L1", "quantity": 2, "reason": "too_small"},
                                 {"line_id": "L2", "quantity": 1, "reason": "damaged"}])
    number = ret["rma_number"]
    assert ret["label"] == {"carrier": "self", "tracking_number": None, "status": "pending",
                            "expires_at": None, "url": None}
    waiting = api.get(f"/returns/{number}/label.pdf")
    assert waiting.status_code == 404
    assert waiting.get_json()["code"] == "not_found" and waiting.get_json()["detail"] == "This return has no label yet."

    assert run(app) == 1
    assert run(app) == 0  # nothing left to do

    body = api.get(f"/returns/{number}").get_json()
    label = body["label"]
    assert label["status"] == "issued" and label["carrier"] == "self"
    assert label["tracking_number"].startswith("SI") and len(label["tracking_number"]) == 15
    assert label["expires_at"] == "2026-12-23T12:00:00Z"  # issued now + RMA_LABEL_VALID_DAYS (28)
    assert label["url"] == f"http://rma.test/api/v1/returns/{number}/label.pdf"

    downloads = [api.get(f"/returns/{number}/label.pdf") for _ in range(3)]
    assert all(d.status_code == 200 and d.mimetype == "application/pdf" for d in downloads)
    pdf = downloads[0].data
    assert {d.data for d in downloads} == {pdf}  # stored once, served as is

    label_page, slip = page_texts(pdf)[:2]
    for text in (number.casefold(), label["tracking_number"].casefold(), "ada lovelace", "12 rue de la paix",
                 "75002 paris", "demo shop returns", "4 allée newton", "69800 saint-priest", "1001"):
        assert text in label_page, text
    for text in ("linen shirt", "wool socks", "too small", "damaged", "23 dec 2026"):
        assert text in slip, text
    assert {number, label["tracking_number"]} <= decode_first_page(pdf, tmp_path)  # Code 128 + QR

    # The customers' page serves the same stored bytes.
    status_path = body["links"]["status_page"].removeprefix("http://rma.test")
    page_download = client.get(f"{status_path}/label.pdf")
    assert page_download.status_code == 200 and page_download.data == pdf

    assert event_types(api, number)[-1] == "label_issued"
    assert outbox_types(app).count("return.label_issued") == 1
    with app.app_context():
        payload = db.session.scalar(select(OutboxEvent.payload).where(OutboxEvent.type == "return.label_issued"))
    assert payload["label"]["tracking_number"] == label["tracking_number"]


def test_french_a4_label_follows_the_locale_and_the_format_setting(app, api, frozen_now):
    app.config["RMA"]["LABEL_FORMAT"] = "a4"
    api.put("/orders/2001", json=order_body(customer={"email": "zoe@exemple.fr", "name": "Zoé Durand",
                                                      "locale": "fr"}))
    number = new_return(api, order_number="2001", email="zoe@exemple.fr")["rma_number"]
    assert run(app) == 1
    pdf = api.get(f"/returns/{number}/label.pdf").data
    reader = PdfReader(io.BytesIO(pdf))
    width, height = (float(v) for v in reader.pages[0].mediabox.upper_right)
    assert (round(width), round(height)) == (595, 842)
    text = page_texts(pdf)[0]
    assert "expéditeur" in text and "destinataire" in text and "23/12/2026" in text


# --- an HTTP carrier --------------------------------------------------------------------------

def test_http_carrier_label_is_stored_with_its_cost(app, api, order, acme):
    acme.expect_oneshot_request("/v1/shipments", method="POST").respond_with_json(
        created(cost="6.50", currency="EUR"), status=201)
    ret = new_return(api)
    number = ret["rma_number"]
    assert len(acme.log) == 0  # creating the return never calls the carrier

    assert run(app) == 1

    [(request, _)] = acme.log
    [label] = label_rows(app, number)
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert request.headers["Idempotency-Key"] == f"{number.replace('RMA-', '').replace('-', '')}-{label.id}"
    sent = request.get_json()
    assert sent["reference"] == request.headers["Idempotency-Key"] and sent["service"] == "standard"
    assert sent["from"] == {"name": "Ada Lovelace", "line1": "12 rue de la Paix", "line2": None,
                            "postal_code": "75002", "city": "Paris", "country": "FR"}
    assert sent["to"]["name"] == "Demo Shop Returns" and sent["to"]["country"] == "FR"

    assert (label.status, label.carrier, label.tracking_number, label.carrier_shipment_id) == \
        ("issued", "acme", "ACME000111", "shp_1")
    assert (label.cost, label.currency, label.attempts, label.next_attempt_at) == (Decimal("6.50"), "EUR", 1, None)
    assert api.get(f"/returns/{number}/label.pdf").data == CARRIER_PDF
    body = api.get(f"/returns/{number}").get_json()
    assert body["label"]["carrier"] == "acme" and body["label"]["tracking_number"] == "ACME000111"


def test_a_refusal_fails_the_label_with_the_carriers_message(app, api, order, acme):
    acme.expect_request("/v1/shipments", method="POST").respond_with_json(
        {"message": "postal code 75002 is not served"}, status=422)
    number = new_return(api)["rma_number"]

    assert run(app) == 0

    assert_nothing_issued(app, api, number, label_status="failed")
    [label] = label_rows(app, number)
    assert label.last_error == "The carrier acme refused the request (HTTP 422): postal code 75002 is not served"
    assert (label.attempts, label.next_attempt_at) == (1, None)
    events = api.get(f"/returns/{number}/events").get_json()["items"]
    assert events[-1]["type"] == "label_failed" and events[-1]["data"]["error"] == label.last_error
    assert run(app, NOW + timedelta(days=1)) == 0 and len(acme.log) == 1  # not asked again


def test_a_server_error_is_retried_later_with_the_same_reference(app, api, order, acme):
    acme.expect_ordered_request("/v1/shipments", method="POST").respond_with_data("down", status=503)
    acme.expect_ordered_request("/v1/shipments", method="POST").respond_with_json(created(), status=201)
    number = new_return(api)["rma_number"]

    assert run(app) == 0
    assert_nothing_issued(app, api, number, label_status="pending")
    [label] = label_rows(app, number)
    assert label.last_error == "The carrier acme is unavailable (HTTP 503); try again later."
    assert (label.attempts, label.next_attempt_at) == (1, NOW + timedelta(seconds=30))

    assert run(app, NOW + timedelta(seconds=10)) == 0 and len(acme.log) == 1  # not due yet
    assert run(app, NOW + timedelta(seconds=30)) == 1

    first, second = (request for request, _ in acme.log)
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"]
    [label] = label_rows(app, number)
    assert (label.status, label.tracking_number, label.attempts, label.last_error) == \
        ("issued", "ACME000111", 2, None)
    assert event_types(api, number).count("label_issued") == 1


def test_backoff_doubles_and_is_capped(app, api, order, acme):
    acme.expect_request("/v1/shipments", method="POST").respond_with_data("down", status=502)
    number = new_return(api)["rma_number"]
    now, delays = NOW, []
    for _ in range(9):
        run(app, now)
        [label] = label_rows(app, number)
        delays.append(label.next_attempt_at - now)
        now = label.next_attempt_at
    assert [int(d.total_seconds()) for d in delays] == [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]
    assert label.status == "pending" and label.attempts == 9


def test_a_carrier_that_does_not_answer_in_time_leaves_the_label_pending(app, api, order, acme):
    app.config["RMA"]["CARRIER_ACME_READ_TIMEOUT"] = "0.3"
    release = threading.Event()

    def stall(request: Request) -> Response:
        release.wait(timeout=10)
        return Response(json.dumps(created()), status=201, content_type="application/json")

    acme.expect_request("/v1/shipments", method="POST").respond_with_handler(stall)
    number = new_return(api)["rma_number"]
    assert run_while_carrier_stalls(app, acme, release) == 0

    assert_nothing_issued(app, api, number, label_status="pending")
    assert "did not answer in time" in label_rows(app, number)[0].last_error


@pytest.mark.parametrize(("answer", "detail"), [
    ("{not json", "the body is not JSON"),
    (json.dumps({"tracking_number": "T1", "shipment_id": "s1"}), "label is missing"),
    (json.dumps(created(tracking="")), "tracking_number is missing"),
])
def test_a_garbled_answer_leaves_the_label_pending(app, api, order, acme, answer, detail):
    acme.expect_request("/v1/shipments", method="POST").respond_with_data(
        answer, status=201, content_type="application/json")
    number = new_return(api)["rma_number"]

    assert run(app) == 0

    assert_nothing_issued(app, api, number, label_status="pending")
    [label] = label_rows(app, number)
    assert label.last_error.startswith("The carrier acme sent an invalid answer: ") and detail in label.last_error


def test_a_carrier_without_its_settings_is_a_clear_error_not_a_crash(app, api, order):
    app.config["RMA"]["CARRIER"] = "ghost"
    number = new_return(api)["rma_number"]
    assert run(app) == 0
    assert_nothing_issued(app, api, number, label_status="pending")
    assert label_rows(app, number)[0].last_error == (
        "The carrier ghost is not configured: carrier 'ghost' needs the setting CARRIER_GHOST_URL.")


def test_carrier_down_the_return_is_still_authorized_and_a_later_run_issues(app, api, order, httpserver):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    use_acme(app, dead)
    ret = new_return(api)
    assert ret["status"] == "authorized" and ret["label"]["status"] == "pending"

    assert run(app) == 0
    body = assert_nothing_issued(app, api, ret["rma_number"], label_status="pending")
    assert body["status"] == "authorized"
    assert "could not be reached" in label_rows(app, ret["rma_number"])[0].last_error

    use_acme(app, httpserver.url_for("/v1"))  # the carrier is back
    httpserver.expect_oneshot_request("/v1/shipments", method="POST").respond_with_json(created(), status=201)
    assert run(app, NOW + timedelta(minutes=1)) == 1
    assert api.get(f"/returns/{ret['rma_number']}").get_json()["label"]["status"] == "issued"


def test_return_cancelled_while_the_carrier_works_is_voided_at_the_carrier(app, api, order, acme):
    number = new_return(api)["rma_number"]
    cancel_answer = {}

    def create_then_cancel(request: Request) -> Response:
        # The carrier call runs outside any transaction: the customer can cancel meanwhile.
        cancel_answer["status"] = api.post(f"/returns/{number}/cancel").status_code
        return Response(json.dumps(created()), status=201, content_type="application/json")

    acme.expect_oneshot_request("/v1/shipments", method="POST").respond_with_handler(create_then_cancel)
    acme.expect_oneshot_request("/v1/shipments/shp_1/void", method="POST").respond_with_data("", status=204)

    assert run(app) == 0

    assert cancel_answer == {"status": 200}
    assert [request.path for request, _ in acme.log] == ["/v1/shipments", "/v1/shipments/shp_1/void"]
    [label] = label_rows(app, number)
    assert (label.status, label.tracking_number, label.carrier_shipment_id, label.pdf) == \
        ("voided", "ACME000111", "shp_1", None)
    assert (label.next_attempt_at, label.locked_until) == (None, None)
    types = event_types(api, number)
    assert "label_issued" not in types and types[-1] == "label_carrier_voided"
    assert "return.label_issued" not in outbox_types(app)
    assert api.get(f"/returns/{number}").get_json()["status"] == "cancelled"


def test_cancelling_an_issued_label_voids_it_at_the_carrier_after_the_commit(app, api, order, acme):
    acme.expect_oneshot_request("/v1/shipments", method="POST").respond_with_json(created(), status=201)
    number = new_return(api)["rma_number"]
    assert run(app) == 1

    assert api.post(f"/returns/{number}/cancel").status_code == 200
    assert len(acme.log) == 1  # the request itself never calls the carrier
    [label] = label_rows(app, number)
    assert label.status == "voided" and label.next_attempt_at == NOW  # the outbox flag

    acme.expect_ordered_request("/v1/shipments/shp_1/void", method="POST").respond_with_data("busy", status=503)
    acme.expect_ordered_request("/v1/shipments/shp_1/void", method="POST").respond_with_data("", status=204)
    run(app)
    [label] = label_rows(app, number)
    assert label.next_attempt_at == NOW + timedelta(seconds=30) and "HTTP 503" in label.last_error
    run(app, NOW + timedelta(seconds=30))
    [label] = label_rows(app, number)
    assert (label.next_attempt_at, label.last_error) == (None, None)
    assert [r.path for r, _ in acme.log].count("/v1/shipments/shp_1/void") == 2
    assert event_types(api, number)[-1] == "label_carrier_voided"
    assert api.get(f"/returns/{number}/label.pdf").get_json()["detail"] == \
        "This return's label was voided; it can no longer be used."


def outbox_payloads(app, number: str) -> dict[str, dict]:
    with app.app_context():
        ret_id = db.session.scalar(select(Return.id).where(Return.rma_code == rma_number.parse(number)))
        return {o.type: o.payload for o in db.session.scalars(
            select(OutboxEvent).where(OutboxEvent.return_id == ret_id).order_by(OutboxEvent.id))}


def test_the_shops_events_show_the_label_as_the_change_left_it(app, api, order, acme):
    """return.authorized carries the label just requested (and is the API's answer);
    return.cancelled the label just voided, not the one that was current before."""
    acme.expect_oneshot_request("/v1/shipments", method="POST").respond_with_json(created(), status=201)
    answer = new_return(api)
    number = answer["rma_number"]
    payloads = outbox_payloads(app, number)
    assert payloads["return.created"]["status"] == "requested" and payloads["return.created"]["label"] is None
    assert payloads["return.authorized"]["label"]["status"] == "pending"
    assert payloads["return.authorized"] == answer
    assert run(app) == 1

    assert api.post(f"/returns/{number}/cancel").status_code == 200
    cancelled = outbox_payloads(app, number)["return.cancelled"]
    assert cancelled["status"] == "cancelled"
    assert cancelled["label"]["status"] == "voided" and cancelled["label"]["url"] is None


# --- void and reissue -------------------------------------------------------------------------

def test_void_and_reissue_gives_a_new_tracking_number_and_voids_the_old_at_the_carrier(app, api, order, acme):
    acme.expect_ordered_request("/v1/shipments", method="POST").respond_with_json(created("ACME1", "shp_1"), status=201)
    number = new_return(api)["rma_number"]
    assert run(app) == 1

    resp = api.post(f"/returns/{number}/label/reissue")
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert body["status"] == "authorized"
    assert body["label"] == {"carrier": "acme", "tracking_number": None, "status": "pending",
                             "expires_at": None, "url": None}
    assert api.get(f"/returns/{number}/label.pdf").status_code == 404
    assert len(acme.log) == 1

    acme.expect_ordered_request("/v1/shipments/shp_1/void", method="POST").respond_with_data("", status=204)
    acme.expect_ordered_request("/v1/shipments", method="POST").respond_with_json(created("ACME2", "shp_2"), status=201)
    assert run(app, NOW + timedelta(minutes=1)) == 1

    paths = [request.path for request, _ in acme.log]
    assert paths == ["/v1/shipments", "/v1/shipments/shp_1/void", "/v1/shipments"]
    keys = [request.headers["Idempotency-Key"] for request, _ in acme.log]
    assert keys[1] == "void:shp_1" and keys[0] != keys[2]  # a new label, a new reference
    old, new = label_rows(app, number)
    assert (old.status, old.tracking_number, old.next_attempt_at) == ("voided", "ACME1", None)
    assert (new.status, new.tracking_number) == ("issued", "ACME2")
    assert api.get(f"/returns/{number}").get_json()["label"]["tracking_number"] == "ACME2"
    types = event_types(api, number)
    assert types[-5:] == ["label_issued", "label_voided", "reissue_label", "label_carrier_voided", "label_issued"]


def test_reissue_of_a_failed_self_label(app, api, order):
    number = new_return(api)["rma_number"]
    assert run(app) == 1
    first = api.get(f"/returns/{number}").get_json()["label"]["tracking_number"]
    assert api.post(f"/returns/{number}/label/reissue").status_code == 200
    assert run(app) == 1
    second = api.get(f"/returns/{number}").get_json()["label"]
    assert second["status"] == "issued" and second["tracking_number"] not in (None, first)
    assert [label.status for label in label_rows(app, number)] == ["voided", "issued"]
    assert all(label.next_attempt_at is None for label in label_rows(app, number))  # nothing to void


def test_reissue_only_while_authorized_and_nothing_written_otherwise(app, api, order):
    number = new_return(api)["rma_number"]
    assert api.post(f"/returns/{number}/cancel").status_code == 200
    before = (len(label_rows(app, number)), event_types(api, number))
    resp = api.post(f"/returns/{number}/label/reissue")
    assert resp.status_code == 409
    assert resp.get_json()["code"] == "invalid_transition" and resp.get_json()["current_status"] == "cancelled"
    assert (len(label_rows(app, number)), event_types(api, number)) == before

    assert api.post("/returns/RMA-0000-0000/label/reissue").status_code == 404
    assert api.client.post(f"/api/v1/returns/{number}/label/reissue").status_code == 401


# --- claims ---------------------------------------------------------------------------------

def test_two_schedulers_at_once_issue_each_label_once(app, api, order, acme):
    def slow_create(request: Request) -> Response:
        time.sleep(0.05)
        ref = request.headers["Idempotency-Key"]
        return Response(json.dumps(created(f"T-{ref}", f"S-{ref}")), status=201, content_type="application/json")

    acme.expect_request("/v1/shipments", method="POST").respond_with_handler(slow_create)
    numbers = [new_return(api, items=[{"line_id": "L2", "quantity": 1, "reason": "too_small"}])["rma_number"]
               for _ in range(4)]
    results: list[int] = []

    def scheduler() -> None:
        results.append(run(app))

    threads = [threading.Thread(target=scheduler) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert sum(results) == 4
    references = [request.headers["Idempotency-Key"] for request, _ in acme.log]
    assert len(references) == len(set(references)) == 4
    assert all(label_rows(app, n)[0].status == "issued" for n in numbers)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Event).where(Event.type == "label_issued")) == 4

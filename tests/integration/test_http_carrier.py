"""Carriers against a real local HTTP server (pytest-httpserver): success, refusals, retries,
timeouts and garbled answers, as the scheduler will meet them."""
from __future__ import annotations

import base64
import json
import socket
import threading
import time
from collections.abc import Iterator
from decimal import Decimal

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from rma_service.adapters.carriers import (
    CarrierError,
    HttpCarrier,
    SelfIssuedCarrier,
    ShipmentRequest,
    build_carrier,
)
from rma_service.adapters.pdf import Address

API_KEY = "sk_live_do-not-leak-4f9a"
PDF = b"%PDF-1.7\n% a carrier's label\n%%EOF\n"
REQUEST = ShipmentRequest(
    reference="RMA-7K3P-9XQ2/1",
    sender=Address(name="Jeanne Dupont", line1="12 rue des Lilas", postal_code="75011",
                   city="Paris", country="FR"),
    recipient=Address(name="Acme Returns", line1="4 allée Newton", line2="Quai 3",
                      postal_code="69800", city="Saint-Priest", country="FR"),
    weight_grams=1250,
    service="return-standard",
)
CREATED = {"tracking_number": "1Z999AA10123456784", "shipment_id": "shp_123",
           "label": {"pdf_base64": base64.b64encode(PDF).decode()}, "cost": "12.30",
           "currency": "EUR"}


@pytest.fixture
def carrier(httpserver: HTTPServer) -> Iterator[HttpCarrier]:
    """A carrier pointed at the local server; no backoff so that retries do not slow the suite."""
    client = HttpCarrier("acme", httpserver.url_for("/v1"), API_KEY, timeout=(2, 5), retries=2,
                         backoff=0)
    yield client
    client.close()


def assert_no_secret(error: CarrierError) -> None:
    assert API_KEY not in str(error) and API_KEY not in repr(error)
    assert "Traceback" not in error.message


def test_create_shipment_with_a_base64_label(httpserver: HTTPServer,
                                             carrier: HttpCarrier) -> None:
    httpserver.expect_oneshot_request("/v1/shipments", method="POST").respond_with_json(
        CREATED, status=201)

    result = carrier.create_shipment(REQUEST)

    assert result.tracking_number == "1Z999AA10123456784"
    assert result.carrier_shipment_id == "shp_123"
    assert result.label_pdf == PDF
    assert result.label_url is None
    assert result.cost == Decimal("12.30") and result.currency == "EUR"
    (request, _), = httpserver.log
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert request.headers["Idempotency-Key"] == "RMA-7K3P-9XQ2/1"
    assert request.get_json() == {
        "reference": "RMA-7K3P-9XQ2/1",
        "service": "return-standard",
        "label_format": "pdf",
        "parcel": {"weight_grams": 1250},
        "from": {"name": "Jeanne Dupont", "line1": "12 rue des Lilas", "line2": None,
                 "postal_code": "75011", "city": "Paris", "country": "FR"},
        "to": {"name": "Acme Returns", "line1": "4 allée Newton", "line2": "Quai 3",
               "postal_code": "69800", "city": "Saint-Priest", "country": "FR"},
    }


def test_create_shipment_with_a_label_url_downloads_it(httpserver: HTTPServer,
                                                       carrier: HttpCarrier) -> None:
    label_url = httpserver.url_for("/v1/labels/shp_123.pdf")
    httpserver.expect_oneshot_request("/v1/shipments", method="POST").respond_with_json(
        {**CREATED, "label": {"url": label_url}, "cost": None, "currency": None})
    httpserver.expect_oneshot_request("/v1/labels/shp_123.pdf", method="GET").respond_with_data(
        PDF, content_type="application/pdf")

    result = carrier.create_shipment(REQUEST)

    assert result.label_pdf == PDF
    assert result.label_url == label_url
    assert result.cost is None and result.currency is None
    download = httpserver.log[1][0]
    assert download.headers["Authorization"] == f"Bearer {API_KEY}"  # same host as the API


def test_the_api_key_is_not_sent_to_another_host(httpserver: HTTPServer) -> None:
    # Same server, reached as "localhost" for the API and as 127.0.0.1 for the label: two hosts.
    api = HttpCarrier("acme", f"http://localhost:{httpserver.port}/v1", API_KEY, retries=0)
    label_url = f"http://127.0.0.1:{httpserver.port}/storage/label.pdf"
    httpserver.expect_oneshot_request("/v1/shipments").respond_with_json(
        {**CREATED, "label": {"url": label_url}})
    httpserver.expect_oneshot_request("/storage/label.pdf").respond_with_data(
        PDF, content_type="application/pdf")

    assert api.create_shipment(REQUEST).label_pdf == PDF
    api.close()
    assert "Authorization" not in httpserver.log[1][0].headers


def test_a_refusal_is_not_retryable_and_quotes_the_carrier(httpserver: HTTPServer,
                                                          carrier: HttpCarrier) -> None:
    httpserver.expect_oneshot_request("/v1/shipments").respond_with_json(
        {"error": {"code": "invalid_postal_code",
                   "message": "Postal code 7501 is not valid for FR"}}, status=422)

    with pytest.raises(CarrierError) as caught:
        carrier.create_shipment(REQUEST)

    error = caught.value
    assert error.retryable is False
    assert error.status_code == 422
    assert "Postal code 7501 is not valid for FR" in error.message
    assert "acme" in error.message
    assert len(httpserver.log) == 1  # a refusal is never retried
    assert_no_secret(error)


def test_a_refusal_without_a_readable_message_still_explains_itself(
        httpserver: HTTPServer, carrier: HttpCarrier) -> None:
    httpserver.expect_oneshot_request("/v1/shipments").respond_with_data(
        "<html><body>Forbidden</body></html>", status=403, content_type="text/html")

    with pytest.raises(CarrierError) as caught:
        carrier.create_shipment(REQUEST)

    assert caught.value.retryable is False
    assert caught.value.message == "The carrier acme refused the request (HTTP 403)."


def test_too_many_requests_is_retryable(httpserver: HTTPServer, carrier: HttpCarrier) -> None:
    httpserver.expect_oneshot_request("/v1/shipments").respond_with_json(
        {"message": "slow down"}, status=429)

    with pytest.raises(CarrierError) as caught:
        carrier.create_shipment(REQUEST)

    assert caught.value.retryable is True and caught.value.status_code == 429


def test_a_server_error_is_retried_with_the_same_idempotency_key(
        httpserver: HTTPServer, carrier: HttpCarrier) -> None:
    httpserver.expect_oneshot_request("/v1/shipments").respond_with_data("busy", status=503)
    httpserver.expect_oneshot_request("/v1/shipments").respond_with_json(CREATED, status=201)

    result = carrier.create_shipment(REQUEST)

    assert result.tracking_number == "1Z999AA10123456784"
    assert len(httpserver.log) == 2
    keys = [request.headers["Idempotency-Key"] for request, _ in httpserver.log]
    assert keys == ["RMA-7K3P-9XQ2/1", "RMA-7K3P-9XQ2/1"]
    assert httpserver.log[0][0].get_data() == httpserver.log[1][0].get_data()


def test_server_errors_beyond_the_retries_are_retryable(httpserver: HTTPServer,
                                                        carrier: HttpCarrier) -> None:
    httpserver.expect_request("/v1/shipments").respond_with_data("down", status=502)

    with pytest.raises(CarrierError) as caught:
        carrier.create_shipment(REQUEST)

    assert caught.value.retryable is True
    assert caught.value.status_code == 502
    assert len(httpserver.log) == 3  # the first try and 2 retries
    assert_no_secret(caught.value)


def test_a_carrier_that_does_not_answer_in_time_is_retryable(httpserver: HTTPServer) -> None:
    release = threading.Event()

    def stall(request: Request) -> Response:
        release.wait(timeout=10)
        return Response(json.dumps(CREATED), status=201, content_type="application/json")

    httpserver.expect_request("/v1/shipments").respond_with_handler(stall)
    slow = HttpCarrier("acme", httpserver.url_for("/v1"), API_KEY, timeout=(2, 0.2), retries=1,
                       backoff=0)
    try:
        started = time.monotonic()
        with pytest.raises(CarrierError) as caught:
            slow.create_shipment(REQUEST)
        elapsed = time.monotonic() - started
    finally:
        release.set()
        slow.close()
        # Let the single-threaded server finish both stalled requests before the next test.
        deadline = time.monotonic() + 10
        while len(httpserver.log) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)

    assert caught.value.retryable is True
    assert caught.value.status_code is None
    assert "did not answer in time" in caught.value.message
    assert elapsed < 5
    assert len(httpserver.log) == 2  # the read timeout was retried once


def test_an_unreachable_carrier_is_retryable() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    down = HttpCarrier("acme", f"http://127.0.0.1:{port}/v1", API_KEY, retries=1, backoff=0)

    with pytest.raises(CarrierError) as caught:
        down.create_shipment(REQUEST)
    down.close()

    assert caught.value.retryable is True
    assert "could not be reached" in caught.value.message
    assert_no_secret(caught.value)


@pytest.mark.parametrize(("answer", "content_type", "detail"), [
    ("{not json", "application/json", "the body is not JSON"),
    ("[1, 2]", "application/json", "the body is not a JSON object"),
    (json.dumps({**CREATED, "tracking_number": ""}), "application/json",
     "tracking_number is missing"),
    (json.dumps({k: v for k, v in CREATED.items() if k != "shipment_id"}), "application/json",
     "shipment_id is missing"),
    (json.dumps({**CREATED, "label": {}}), "application/json",
     "label has neither pdf_base64 nor url"),
    (json.dumps({**CREATED, "label": {"pdf_base64": "%%% not base64 %%%"}}), "application/json",
     "label.pdf_base64 is not valid base64"),
    (json.dumps({**CREATED, "label": {"pdf_base64": base64.b64encode(b"<html>").decode()}}),
     "application/json", "the label is not a PDF"),
    (json.dumps({**CREATED, "cost": "twelve"}), "application/json", "cost is not a decimal"),
    (json.dumps({**CREATED, "currency": "euro"}), "application/json",
     "currency is not an ISO 4217 code"),
])
def test_a_garbled_answer_is_retryable_with_a_clear_message(
        httpserver: HTTPServer, carrier: HttpCarrier, answer: str, content_type: str,
        detail: str) -> None:
    httpserver.expect_oneshot_request("/v1/shipments").respond_with_data(
        answer, status=201, content_type=content_type)

    with pytest.raises(CarrierError) as caught:
        carrier.create_shipment(REQUEST)

    assert caught.value.retryable is True
    assert caught.value.message.startswith("The carrier acme sent an invalid answer: ")
    assert detail in caught.value.message
    assert_no_secret(caught.value)


def test_a_label_url_that_is_not_a_pdf_is_refused(httpserver: HTTPServer,
                                                  carrier: HttpCarrier) -> None:
    httpserver.expect_oneshot_request("/v1/shipments").respond_with_json(
        {**CREATED, "label": {"url": httpserver.url_for("/v1/labels/x")}})
    httpserver.expect_oneshot_request("/v1/labels/x").respond_with_data(
        "<html>login</html>", content_type="text/html")

    with pytest.raises(CarrierError, match="is text/html, not application/pdf") as caught:
        carrier.create_shipment(REQUEST)
    assert caught.value.retryable is True


def test_a_label_download_is_limited_in_size(httpserver: HTTPServer) -> None:
    small = HttpCarrier("acme", httpserver.url_for("/v1"), API_KEY, retries=0,
                        max_label_bytes=1024)
    httpserver.expect_oneshot_request("/v1/shipments").respond_with_json(
        {**CREATED, "label": {"url": httpserver.url_for("/v1/labels/big")}})
    httpserver.expect_oneshot_request("/v1/labels/big").respond_with_data(
        PDF + b"0" * 4096, content_type="application/pdf")

    with pytest.raises(CarrierError, match="larger than 1024 bytes"):
        small.create_shipment(REQUEST)
    small.close()


def test_void_shipment(httpserver: HTTPServer, carrier: HttpCarrier) -> None:
    # The server matches decoded paths; the raw URI shows the id escaped into one segment.
    httpserver.expect_oneshot_request("/v1/shipments/shp/123/void",
                                      method="POST").respond_with_json({"status": "voided"})

    carrier.void_shipment("shp/123")

    (request, _), = httpserver.log
    assert request.environ["REQUEST_URI"] == "/v1/shipments/shp%2F123/void"
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert request.headers["Idempotency-Key"] == "void:shp/123"


def test_void_refused_by_the_carrier(httpserver: HTTPServer, carrier: HttpCarrier) -> None:
    httpserver.expect_oneshot_request("/v1/shipments/shp_123/void").respond_with_json(
        {"detail": "Shipment already scanned; it cannot be voided"}, status=409)

    with pytest.raises(CarrierError, match="already scanned") as caught:
        carrier.void_shipment("shp_123")
    assert caught.value.retryable is False and caught.value.status_code == 409


# --- The self-issued carrier and the factory ---------------------------------------------------

def luhn_valid(number: str) -> bool:
    digits = [int(c) for c in reversed(number)]
    return sum(d if i % 2 == 0 else (d * 2 - 9 if d > 4 else d * 2)
               for i, d in enumerate(digits)) % 10 == 0


def test_self_issued_tracking_numbers_are_random_and_checked() -> None:
    carrier = SelfIssuedCarrier()
    results = [carrier.create_shipment(REQUEST) for _ in range(200)]
    numbers = {result.tracking_number for result in results}
    assert len(numbers) == 200
    for result in results:
        number = result.tracking_number
        assert len(number) == 15 and number.startswith("SI") and number[2:].isdigit()
        assert luhn_valid(number[2:])
        assert result.carrier_shipment_id == number
        assert result.label_pdf is None and result.label_url is None
    carrier.void_shipment(results[0].carrier_shipment_id)  # a no-op, never an error


def test_build_carrier() -> None:
    assert isinstance(build_carrier("self", {}), SelfIssuedCarrier)
    carrier = build_carrier("la-poste", {"CARRIER_LA_POSTE_URL": "https://api.example/v1/",
                                         "CARRIER_LA_POSTE_API_KEY": API_KEY,
                                         "CARRIER_LA_POSTE_RETRIES": "1"})
    assert isinstance(carrier, HttpCarrier)
    assert carrier.name == "la-poste"
    assert carrier.base_url == "https://api.example/v1"
    assert API_KEY not in repr(carrier)
    carrier.close()


@pytest.mark.parametrize(("settings", "message"), [
    ({"CARRIER_ACME_API_KEY": API_KEY}, "needs the setting CARRIER_ACME_URL"),
    ({"CARRIER_ACME_URL": "https://api.example"}, "needs the setting CARRIER_ACME_API_KEY"),
    ({"CARRIER_ACME_URL": "ftp://api.example", "CARRIER_ACME_API_KEY": API_KEY},
     "CARRIER_ACME_URL must be an http"),
    ({"CARRIER_ACME_URL": "https://api.example", "CARRIER_ACME_API_KEY": API_KEY,
      "CARRIER_ACME_READ_TIMEOUT": "soon"}, "CARRIER_ACME_READ_TIMEOUT must be a number"),
])
def test_build_carrier_names_the_missing_or_bad_setting(settings: dict[str, str],
                                                        message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        build_carrier("acme", settings)
    assert API_KEY not in str(caught.value)

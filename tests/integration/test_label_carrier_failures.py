"""Labels when the carrier misbehaves, each pinned by what a shop, a customer or an operator
would notice: a secret in an error text, a second shipment bought, a shipment never
voided at the carrier, a label job that crashes on a carrier's answer."""
from __future__ import annotations

import io
import json
import logging
import threading
from datetime import timedelta

import pytest
from pypdf import PdfReader
from werkzeug import Request, Response

from rma_service.adapters.pdf import Address, render_label_pdf
from tests.conftest import NOW
from tests.integration.test_label_pdf import (RMA, STATUS_URL, TRACKING, decode_first_page, make_document,
                                              needs_poppler_and_zbar, page_texts)
from tests.integration.test_labels_service import (API_KEY, CARRIER_PDF, acme, created, event_types,  # noqa: F401
                                                    label_rows, new_return, outbox_types, run,
                                                    run_while_carrier_stalls)


def stalled_then_served(answer: dict, release: threading.Event):
    """A carrier that books the shipment but answers after the caller's read timeout."""
    def handler(request: Request) -> Response:
        release.wait(timeout=10)
        return Response(json.dumps(answer), status=201, content_type="application/json")
    return handler


# --- the carrier's API key never reaches an error text, the audit trail or the log -------------

def test_an_api_key_echoed_by_the_carrier_is_not_stored_shown_or_logged(app, api, order, acme, caplog):
    acme.expect_request("/v1/shipments", method="POST").respond_with_json(
        {"message": f"Unknown API key 'Bearer {API_KEY}'"}, status=401)
    number = new_return(api)["rma_number"]
    caplog.set_level(logging.INFO)

    assert run(app) == 0

    [label] = label_rows(app, number)
    assert label.status == "failed"
    assert label.last_error.startswith("The carrier acme refused the request (HTTP 401): Unknown API key")
    events = api.get(f"/returns/{number}/events").get_json()["items"]
    assert events[-1]["type"] == "label_failed"
    assert API_KEY not in label.last_error
    assert API_KEY not in json.dumps(events)
    assert API_KEY not in caplog.text


# --- a shipment the carrier created is never lost ----------------------------------------------

def test_a_label_download_refused_after_the_shipment_was_created_is_retried_not_failed(app, api, order, acme):
    """The carrier booked the shipment but its label URL is not ready yet (404): a failed label
    would make the agent reissue, buying a second shipment while the first is never voided."""
    booked = {"tracking_number": "ACME000111", "shipment_id": "shp_1",
              "label": {"url": acme.url_for("/labels/shp_1.pdf")}}
    acme.expect_request("/v1/shipments", method="POST").respond_with_json(booked, status=201)
    downloads = []

    def label_file(request: Request) -> Response:
        downloads.append(request.path)
        if len(downloads) == 1:
            return Response("not ready", status=404, content_type="text/plain")
        return Response(CARRIER_PDF, content_type="application/pdf")

    acme.expect_request("/labels/shp_1.pdf", method="GET").respond_with_handler(label_file)
    number = new_return(api)["rma_number"]

    assert run(app) == 0
    [label] = label_rows(app, number)
    assert (label.status, label.attempts) == ("pending", 1)
    assert label.next_attempt_at == NOW + timedelta(seconds=30)
    assert "HTTP 404" in label.last_error
    assert "label_failed" not in event_types(api, number)

    assert run(app, NOW + timedelta(seconds=30)) == 1
    [label] = label_rows(app, number)
    assert (label.status, label.carrier_shipment_id, label.tracking_number) == ("issued", "shp_1", "ACME000111")
    keys = {request.headers["Idempotency-Key"] for request, _ in acme.log if request.path == "/v1/shipments"}
    assert len(keys) == 1  # the same reference: the same shipment, never a second one
    assert api.get(f"/returns/{number}/label.pdf").data == CARRIER_PDF


def test_a_return_cancelled_after_an_unanswered_carrier_call_voids_the_shipment_at_the_carrier(
        app, api, order, acme):
    """A timeout the carrier had in fact served, then the customer cancels: the shipment the
    carrier booked must be voided there (asked back with the same reference), not forgotten."""
    app.config["RMA"]["CARRIER_ACME_READ_TIMEOUT"] = "0.3"
    release = threading.Event()
    acme.expect_ordered_request("/v1/shipments", method="POST").respond_with_handler(
        stalled_then_served(created(), release))
    number = new_return(api)["rma_number"]
    assert run_while_carrier_stalls(app, acme, release) == 0
    assert label_rows(app, number)[0].status == "pending"

    assert api.post(f"/returns/{number}/cancel").status_code == 200
    acme.expect_ordered_request("/v1/shipments", method="POST").respond_with_json(created(), status=201)
    acme.expect_ordered_request("/v1/shipments/shp_1/void", method="POST").respond_with_data("", status=204)

    assert run(app) == 0

    paths = [request.path for request, _ in acme.log]
    assert paths == ["/v1/shipments", "/v1/shipments", "/v1/shipments/shp_1/void"]
    first, again = (request.headers["Idempotency-Key"] for request, _ in acme.log[:2])
    assert first == again
    [label] = label_rows(app, number)
    assert (label.status, label.carrier_shipment_id, label.tracking_number) == ("voided", "shp_1", "ACME000111")
    assert (label.next_attempt_at, label.locked_until, label.pdf) == (None, None, None)
    types = event_types(api, number)
    assert types[-1] == "label_carrier_voided" and "label_issued" not in types
    assert "return.label_issued" not in outbox_types(app)
    assert run(app, NOW + timedelta(hours=2)) == 0 and len(acme.log) == 3  # nothing left to do


def test_a_return_cancelled_during_a_carrier_call_that_times_out_voids_the_shipment(app, api, order, acme):
    app.config["RMA"]["CARRIER_ACME_READ_TIMEOUT"] = "0.5"
    release = threading.Event()
    cancelled = {}

    def cancel_then_stall(request: Request) -> Response:
        cancelled["status"] = api.post(f"/returns/{number}/cancel").status_code
        release.wait(timeout=10)
        return Response(json.dumps(created()), status=201, content_type="application/json")

    acme.expect_ordered_request("/v1/shipments", method="POST").respond_with_handler(cancel_then_stall)
    number = new_return(api)["rma_number"]
    assert run_while_carrier_stalls(app, acme, release) == 0
    assert cancelled == {"status": 200}
    acme.expect_ordered_request("/v1/shipments", method="POST").respond_with_json(created(), status=201)
    acme.expect_ordered_request("/v1/shipments/shp_1/void", method="POST").respond_with_data("", status=204)

    run(app, NOW + timedelta(minutes=1))

    assert [request.path for request, _ in acme.log][-1] == "/v1/shipments/shp_1/void"
    [label] = label_rows(app, number)
    assert (label.status, label.carrier_shipment_id, label.next_attempt_at) == ("voided", "shp_1", None)
    assert event_types(api, number)[-1] == "label_carrier_voided"


def test_a_shipment_the_carrier_refused_needs_no_void(app, api, order, acme):
    """The unanswered call had not booked anything, and asking again is refused: nothing to void."""
    acme.expect_ordered_request("/v1/shipments", method="POST").respond_with_data("down", status=503)
    number = new_return(api)["rma_number"]
    assert run(app) == 0
    assert api.post(f"/returns/{number}/cancel").status_code == 200
    acme.expect_ordered_request("/v1/shipments", method="POST").respond_with_json(
        {"message": "return cancelled by the shop"}, status=422)

    run(app)

    assert [request.path for request, _ in acme.log] == ["/v1/shipments", "/v1/shipments"]
    [label] = label_rows(app, number)
    assert (label.status, label.carrier_shipment_id, label.next_attempt_at, label.locked_until) == \
        ("voided", None, None, None)
    assert run(app, NOW + timedelta(hours=2)) == 0 and len(acme.log) == 2


def test_a_self_label_cancelled_before_the_job_needs_no_carrier_call(app, api, order):
    number = new_return(api)["rma_number"]
    assert api.post(f"/returns/{number}/cancel").status_code == 200
    [label] = label_rows(app, number)
    assert (label.status, label.next_attempt_at) == ("voided", None)


# --- an answer the database cannot hold does not crash the job ----------------------------------

def test_a_carrier_answer_too_long_to_store_leaves_that_label_pending_and_issues_the_others(app, api, order, acme):
    first = new_return(api, items=[{"line_id": "L2", "quantity": 1, "reason": "too_small"}])["rma_number"]
    second = new_return(api, items=[{"line_id": "L2", "quantity": 1, "reason": "too_small"}])["rma_number"]
    first_label = label_rows(app, first)[0]

    def answer(request: Request) -> Response:
        if request.headers["Idempotency-Key"].endswith(f"-{first_label.id}"):
            body = created(tracking="T" * 80, shipment="shp_long")
        else:
            body = created(tracking="ACME000222", shipment="shp_2")
        return Response(json.dumps(body), status=201, content_type="application/json")

    acme.expect_request("/v1/shipments", method="POST").respond_with_handler(answer)

    assert run(app) == 1

    [label] = label_rows(app, first)
    assert (label.status, label.tracking_number, label.locked_until) == ("pending", None, None)
    assert label.last_error == ("The carrier acme sent an invalid answer: tracking_number is longer "
                                "than 64 characters.")
    assert label_rows(app, second)[0].status == "issued"


def test_a_cost_too_large_to_store_is_an_invalid_answer(app, api, order, acme):
    acme.expect_request("/v1/shipments", method="POST").respond_with_json(
        created(cost="12345678901.50", currency="EUR"), status=201)
    number = new_return(api)["rma_number"]

    assert run(app) == 0

    [label] = label_rows(app, number)
    assert (label.status, label.cost, label.locked_until) == ("pending", None, None)
    assert label.last_error == "The carrier acme sent an invalid answer: cost is not a decimal."


# --- a long sender address never pushes the barcodes off the label ------------------------------

COMPANY = Address(  # a business customer, every line well within the API's limits (200)
    name="Société Européenne de Distribution et Logistique – Service Après-Vente",
    line1="Zone d'Activités Économiques du Parc des Grands Chênes, Bâtiment Les Érables, Hall 3, Porte 12",
    line2="À l'attention de Mme Anne-Sophie Lefèvre-Beauchamp, Responsable des Retours Clients, 2e étage",
    postal_code="13290", city="Aix-en-Provence Les Milles", country="FR")
LONGEST = Address(  # the longest address the API accepts
    name=("Établissements " + "Nom " * 50)[:200].strip(), line1=("Résidence " + "Rue " * 50)[:200].strip(),
    line2=("Bâtiment " + "Bât " * 50)[:200].strip(), postal_code="9" * 20,
    city=("Saint-" + "Ville " * 20)[:100].strip(), country="FR")


# Where the label ends on its first sheet, in PDF points from the bottom: the whole 4x6 page, the
# top-left quarter (148.5 mm high) of an A4 sheet.
LABEL_BOTTOM_PT = {"4x6": 0.0, "a4": 841.89 - 148.5 / 25.4 * 72}


def placed_texts(pdf: bytes) -> list[tuple[float, str]]:
    """(baseline height in points, text) of every piece of text drawn on page 1."""
    placed: list[tuple[float, str]] = []

    def visit(text, cm, tm, font_dict, font_size):
        if text.strip():
            placed.append((tm[4] * cm[1] + tm[5] * cm[3] + cm[5], text.strip()))

    PdfReader(io.BytesIO(pdf)).pages[0].extract_text(visitor_text=visit)
    return placed


@needs_poppler_and_zbar
@pytest.mark.parametrize("page_format", ["4x6", "a4"])
@pytest.mark.parametrize("sender", [COMPANY, LONGEST], ids=["company", "longest"])
def test_a_long_sender_address_keeps_the_label_on_one_sheet_with_every_code(sender, page_format, tmp_path):
    pdf = render_label_pdf(make_document(page_format=page_format, sender=sender))

    assert len(page_texts(pdf)) == 2  # the label, then the packing slip: never a label on two sheets
    placed = placed_texts(pdf)
    cut = [(y, text) for y, text in placed if y < LABEL_BOTTOM_PT[page_format] + 2]
    assert cut == []  # nothing drawn below the label's bottom edge (clipped, or on the A4's margin)
    label = " ".join(" ".join(text for _, text in placed).casefold().split())
    for expected in (TRACKING, RMA, "CMD-100234", "Valid until", "23 Dec 2026", "Acme Returns",
                     "69800 SAINT-PRIEST"):
        assert expected.casefold() in label, expected
    assert " ".join(sender.name.split()[:4]).casefold() in label
    assert decode_first_page(pdf, tmp_path) == {RMA, TRACKING, STATUS_URL}


def test_a_short_sender_address_keeps_its_ordinary_size():
    from rma_service.adapters.pdf import _context
    assert _context(make_document())["sender_font_pt"] == 8
    assert _context(make_document(sender=COMPANY))["sender_font_pt"] < 8


@pytest.mark.parametrize("tracking, shipment", [("ACME\u0000222", "shp_1"), ("ACME222", "shp\u00001"),
                                                ("ACME\n222", "shp_1")])
def test_a_control_character_in_the_carriers_ids_is_an_invalid_answer(app, api, order, acme, tracking, shipment):
    """PostgreSQL refuses NUL in text (the whole label batch crashed); a line break in a tracking
    number would break the label's barcode and the carrier-event lookup."""
    acme.expect_request("/v1/shipments", method="POST").respond_with_json(
        created(tracking=tracking, shipment=shipment), status=201)
    number = new_return(api)["rma_number"]

    assert run(app) == 0

    [label] = label_rows(app, number)
    assert (label.status, label.tracking_number, label.locked_until) == ("pending", None, None)
    assert "contains a control character" in label.last_error

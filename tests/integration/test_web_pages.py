"""The customer pages through HTTP (Flask's test client, like a browser without JavaScript),
on a real database: lookups, the summary, submitting with photos, the status link, CSRF."""
from __future__ import annotations

import io
import re
from datetime import timedelta

import pytest
from PIL import Image
from sqlalchemy import select

from rma_service.extensions import db
from rma_service.models import Event, Photo, Return
from tests import web_helpers
from tests.conftest import NOW, count, order_body
from tests.web_helpers import csrf, lookup, return_for, start_return, submit, text_of

_send_items = web_helpers.review


def review(client, lines: dict[str, tuple], resolution="refund", **kw):
    """The items page sent, and the redirect followed to the page that answers it: the
    summary (Post/Redirect/Get), or the items again with their problems."""
    kw.setdefault("follow_redirects", True)
    return _send_items(client, lines, resolution, **kw)


@pytest.fixture(autouse=True)
def _start_return_follows_the_redirect(monkeypatch):
    # tests.web_helpers.start_return reads the summary through this module's ``review``.
    monkeypatch.setattr(web_helpers, "review", review)


def _body(resp) -> str:
    return resp.get_data(as_text=True)


# --- finding the order ------------------------------------------------------------------------

def test_start_page_has_a_bound_label_for_each_field(client):
    page = _body(client.get("/returns/"))
    assert '<label class="label" for="order_number">' in page and 'id="order_number"' in page
    assert '<label class="label" for="email">' in page and 'id="email"' in page
    assert 'aria-describedby="order_number-hint"' in page
    assert 'lang="en"' in page


def test_unknown_order_and_wrong_email_get_the_same_answer(client, order):
    unknown = lookup(client, "9999", "ada@example.com")
    wrong = lookup(client, "1001", "eve@example.com")
    assert unknown.status_code == wrong.status_code == 422

    def normalised(resp):  # the echoed order number and email differ, nothing else
        return re.sub(r'value="[^"]*"', 'value=""', _body(resp))
    assert normalised(unknown) == normalised(wrong)
    text = text_of(_body(wrong))
    assert "We could not find an order with this number and email address" in text
    # the message is tied to both fields for screen readers
    assert 'aria-describedby="order_number-hint lookup-error"' in _body(wrong)
    assert 'aria-describedby="lookup-error"' in _body(wrong)
    with client.session_transaction() as session:
        assert "lookup" not in session


def test_lookup_is_case_and_space_tolerant_on_the_email(client, order):
    resp = lookup(client, " 1001 ", "  ADA@example.com ")
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/returns/order")


def test_empty_fields_are_reported_next_to_each_field(client):
    resp = lookup(client, "", "not-an-email")
    page = _body(resp)
    assert resp.status_code == 422
    assert 'id="order_number-error" role="alert"' in page
    assert 'id="email-error" role="alert"' in page
    assert 'aria-invalid="true"' in page
    assert "Enter your order number." in text_of(page)
    assert "Enter an email address like name@example.com." in text_of(page)


def test_items_page_without_lookup_goes_back_to_start(client):
    resp = client.get("/returns/order")
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/returns/")


def test_items_page_shows_every_line_and_disables_the_ineligible_with_the_reason(client, order):
    lookup(client)
    page = _body(client.get("/returns/order"))
    text = text_of(page)
    for name in ("Linen shirt", "Wool socks", "Gift card"):
        assert name in text
    # the gift card has no form entry, a disabled box and its reason tied to it
    assert re.search(r'<input type="checkbox" class="line-check" id="line-3-unavailable" disabled '
                     r'aria-describedby="line-3-unavailable-meta line-3-unavailable-why">', page)
    assert "Gift cards cannot be returned." in text
    assert len(re.findall(r'name="lines-\d+-line_id"', page)) == 2
    # money and dates in the reader's format
    assert "€49.90" in text and "You can request a return until December 22, 2026." in text
    # store credit is offered but never preselected
    assert re.search(r'id="resolution-refund" value="refund"\s+aria-describedby="resolution-refund-hint" checked', page)
    assert not re.search(r'id="resolution-store_credit"[^>]*checked', page)


def test_ineligible_reasons_in_plain_words(client, api, frozen_now):
    api.put("/orders/2001", json=order_body(delivered_at=None))
    api.put("/orders/2002", json=order_body(delivered_at=(NOW - timedelta(days=40)).isoformat(),
                                            placed_at=(NOW - timedelta(days=45)).isoformat(),
                                            lines=[{"line_id": "A", "sku": "S", "name": "Old shirt", "quantity": 1,
                                                    "unit_price": "10.00"},
                                                   {"line_id": "B", "sku": "F", "name": "Sale hat", "quantity": 1,
                                                    "unit_price": "5.00", "returnable": False}]))
    lookup(client, "2001")
    assert "Not delivered yet: you can return it once it has arrived." in text_of(_body(client.get("/returns/order")))
    lookup(client, "2002")
    text = text_of(_body(client.get("/returns/order")))
    assert "The return period ended on November 15, 2026." in text
    assert "Final sale: this item cannot be returned." in text
    assert "Nothing in this order can be returned right now." in text


# --- the summary --------------------------------------------------------------------------------

def test_summary_shows_amount_fee_and_deadlines(client, order):
    lookup(client)
    resp = review(client, {"L1": (1, "too_small"), "L2": (2, "changed_mind")})
    assert resp.status_code == 200
    text = text_of(_body(resp))
    assert "Value of the 3 items returned €68.90" in text
    assert "Return shipping, deducted" in text and "− €5.90" in text
    assert "Amount refunded to you €63.00" in text
    assert "Refund by December 9, 2026 at the latest." in text
    assert "Return period for this order: until December 22, 2026." in text
    assert count(client.application, Return) == 0  # nothing written before sending


def test_summary_shop_fault_means_no_fee(client, order):
    lookup(client)
    text = text_of(_body(review(client, {"L1": (1, "damaged")})))
    assert "Return shipping" not in text and "Amount refunded to you €49.90" in text


def test_store_credit_and_exchange_are_explicit_choices(client, order):
    lookup(client)
    text = text_of(_body(review(client, {"L1": (1, "too_small")}, resolution="store_credit")))
    assert "Store credit for you €44.00" in text
    text = text_of(_body(review(client, {"L1": (1, "too_small")}, resolution=None)))
    assert "Choose what you would like instead of the item." in text


def test_reason_other_requires_a_comment_shown_next_to_the_field(client, order):
    lookup(client)
    resp = review(client, {"L1": (1, "other")})
    page = _body(resp)
    assert resp.status_code == 422
    assert re.search(r'<p class="field-error" id="lines-0-comment-error" role="alert">.*required for', page)
    assert re.search(r'<textarea[^>]*aria-describedby="lines-0-comment-error"[^>]*'
                     r'aria-invalid="true"', page)
    assert '<a href="#lines-0-comment">' in page  # the error summary links to the field
    # the customer's choices are kept
    assert re.search(r'id="lines-0-selected" value="y" checked', page)


def test_nothing_ticked_and_too_many_units(client, order):
    lookup(client)
    assert "Tick at least one item to return." in text_of(_body(review(client, {})))
    resp = review(client, {"L1": (3, "too_small")})
    assert resp.status_code == 422
    assert "You can return at most 2 of this item." in text_of(_body(resp))


def test_change_button_brings_the_choices_back(client, order):
    lookup(client)
    summary = _body(review(client, {"L2": (2, "other", "Itchy wool")}))
    draft = re.search(r'id="edit-draft" name="draft" type="hidden" value="([^"]+)"', summary).group(1)
    page = _body(client.post("/returns/order/edit", data={"csrf_token": csrf(summary), "draft": draft},
                             follow_redirects=True))
    assert re.search(r'id="lines-1-selected" value="y" checked', page)
    assert '<option value="2" selected>2</option>' in page
    assert "Itchy wool</textarea>" in page
    assert not re.search(r'id="lines-0-selected" value="y" checked', page)


# --- sending, with photos --------------------------------------------------------------------

def _jpeg_with_gps() -> bytes:
    image = Image.new("RGB", (640, 480), (200, 30, 30))
    exif = image.getexif()
    exif[0x010F] = "SecretCam"           # Make
    exif[0x0132] = "2026:11:20 10:00:00"  # DateTime
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2] = "N", (48.0, 51.0, 24.0)
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif.tobytes(), comment=b"private comment")
    return out.getvalue()


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGBA", (32, 32), (0, 128, 255, 128)).save(out, "PNG")
    return out.getvalue()


def test_submit_creates_the_return_with_photos_stripped_of_metadata(app, client, order):
    raw = _jpeg_with_gps()
    assert b"SecretCam" in raw and b"private comment" in raw
    token = start_return(client, {"L1": (1, "damaged", "Torn seam")},
                         photos={0: [(io.BytesIO(raw), "IMG_0001.JPG", "image/jpeg"),
                                     (io.BytesIO(_png()), "detail.png", "image/png")]})
    ret = return_for(app, token)
    assert ret.status == "authorized" and ret.locale == "en"
    with app.app_context():
        photos = db.session.scalars(select(Photo).order_by(Photo.id)).all()
        assert [p.content_type for p in photos] == ["image/jpeg", "image/png"]
        stored = photos[0].data
        assert b"SecretCam" not in stored and b"private comment" not in stored and b"Exif" not in stored
        image = Image.open(io.BytesIO(stored))
        assert image.format == "JPEG" and image.size == (640, 480) and not image.getexif()
        assert photos[0].item.line_id == "L1" and photos[0].item.ret.id == ret.id
        assert db.session.scalar(select(Event.actor).where(Event.type == "create")) == "customer"


def test_refused_photo_is_reported_beside_its_field_and_nothing_is_written(app, client, order):
    lookup(client)
    summary = _body(review(client, {"L1": (1, "damaged")}))
    gif = io.BytesIO()
    Image.new("RGB", (10, 10)).save(gif, "GIF")
    resp = submit(client, summary, photos={0: [(io.BytesIO(gif.getvalue()), "x.gif", "image/gif")]},
                  follow_redirects=True)
    page = _body(resp)
    assert resp.status_code == 422
    assert re.search(r'<p class="field-error" id="photos-0-error" role="alert">.*JPEG, PNG or WebP', page)
    assert 'aria-describedby="photos-0-hint photos-0-error" aria-invalid="true"' in page
    assert count(app, Return) == 0 and count(app, Photo) == 0


def test_more_than_three_photos_or_a_too_large_photo_are_refused(app, client, order):
    lookup(client)
    summary = _body(review(client, {"L1": (1, "damaged")}))
    four = [(io.BytesIO(_png()), f"p{i}.png", "image/png") for i in range(4)]
    assert "Choose at most 3 photos for this item." in text_of(_body(submit(client, summary, photos={0: four},
                                                                          follow_redirects=True)))
    app.config["RMA"]["PHOTO_MAX_BYTES"] = 1000
    big = _jpeg_with_gps()
    assert len(big) > 1000
    text = text_of(_body(submit(client, summary, photos={0: [(io.BytesIO(big), "big.jpg", "image/jpeg")]},
                                follow_redirects=True)))
    assert "A photo is too large" in text
    assert count(app, Return) == 0


def test_upload_limit_gives_a_friendly_page(app, client, order):
    app.config["RMA"]["UPLOAD_MAX_BYTES"] = 50_000
    lookup(client)
    summary = _body(review(client, {"L1": (1, "damaged")}))
    resp = submit(client, summary, photos={0: [(io.BytesIO(b"x" * 60_000), "big.jpg", "image/jpeg")]})
    assert resp.status_code == 413
    assert "The files are too large" in text_of(_body(resp))
    assert count(app, Return) == 0


def test_photo_upload_larger_than_the_api_limit_is_accepted_on_the_form(app, client, order):
    app.config["MAX_CONTENT_LENGTH"] = 20_000  # the API's limit; the form has its own
    noise = Image.effect_noise((400, 400), 80).convert("RGB")
    out = io.BytesIO()
    noise.save(out, "JPEG", quality=95)
    assert len(out.getvalue()) > 20_000
    token = start_return(client, {"L1": (1, "damaged")},
                         photos={0: [(io.BytesIO(out.getvalue()), "noise.jpg", "image/jpeg")]})
    assert return_for(app, token).status == "authorized"
    assert count(app, Photo) == 1


def test_the_same_summary_sent_twice_makes_one_return(app, client, order):
    lookup(client)
    summary = _body(review(client, {"L1": (1, "too_small")}))
    first, second = submit(client, summary), submit(client, summary)
    assert first.status_code == second.status_code == 302
    assert first.headers["Location"] == second.headers["Location"]
    assert count(app, Return) == 1
    # a new summary is a new submission
    again = submit(client, _body(review(client, {"L1": (1, "too_small")})))
    assert again.status_code == 302 and again.headers["Location"] != first.headers["Location"]
    assert count(app, Return) == 2


def test_a_double_click_racing_itself_makes_one_return(app, client, order, live_server):
    import threading
    import requests
    lookup(client)
    summary = _body(review(client, {"L2": (1, "too_small")}))
    draft = re.search(r'id="draft" name="draft" type="hidden" value="([^"]+)"', summary).group(1)
    cookie = client.get_cookie("session").value
    barrier, answers = threading.Barrier(4), []

    def send():
        with requests.Session() as http:
            http.cookies.set("session", cookie)
            barrier.wait()
            answers.append(http.post(f"{live_server.url}/returns/order/submit", allow_redirects=False, timeout=60,
                                     data={"csrf_token": csrf(summary), "draft": draft},
                                     files={"photos-0": ("", b"", "application/octet-stream")}))
    threads = [threading.Thread(target=send) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert [a.status_code for a in answers] == [302] * 4, [a.text[:300] for a in answers]
    assert len({a.headers["Location"] for a in answers}) == 1
    assert count(app, Return) == 1


def test_units_taken_meanwhile_send_the_customer_back_to_the_items(app, client, api, order):
    lookup(client)
    summary = _body(review(client, {"L1": (2, "too_small")}))
    api.post("/returns", json={"order_number": "1001", "email": "ada@example.com",
                               "items": [{"line_id": "L1", "quantity": 1, "reason": "damaged"}]})
    resp = submit(client, summary, follow_redirects=True)
    assert resp.status_code == 422
    assert "You can return at most 1 of this item." in text_of(_body(resp))
    assert count(app, Return) == 1


def test_confirmation_page_has_number_next_steps_and_status_link(app, client, order):
    token = start_return(client, {"L1": (1, "too_small")})
    ret = return_for(app, token)
    page = _body(client.get(f"/returns/status/{token}/confirmation"))
    text = text_of(page)
    number = f"RMA-{ret.rma_code[:4]}-{ret.rma_code[4:]}"
    assert number in text
    assert "We have sent this information to ada@example.com" in text
    assert "What happens next" in text and "We refund €44.00 by December 9, 2026 at the latest." in text
    assert f'href="/returns/status/{token}"' in page
    assert "Your label is being prepared" in text  # until the label job has run


# --- the status link ----------------------------------------------------------------------------

def _issue_label(app, token: str, pdf: bytes = b"%PDF-1.4 test label\n%%EOF") -> None:
    """Stand in for the carrier: the label of the return is issued with these bytes."""
    from rma_service.services.representation import current_label
    from rma_service.services.tokens import read_status_token
    with app.app_context():
        ret = db.session.scalar(select(Return).where(Return.rma_code == read_status_token(token)))
        label = current_label(ret)
        label.status, label.pdf, label.tracking_number = "issued", pdf, "TRK123"
        label.issued_at, label.expires_at = NOW, NOW + timedelta(days=28)
        db.session.commit()


def test_label_download_is_the_stored_pdf_or_a_friendly_waiting_page(app, client, order):
    token = start_return(client, {"L1": (1, "too_small")})
    waiting = client.get(f"/returns/status/{token}/label.pdf")
    assert waiting.status_code == 202 and waiting.mimetype == "text/html"
    assert "Your label is on its way" in text_of(_body(waiting))
    _issue_label(app, token)
    resp = client.get(f"/returns/status/{token}/label.pdf")
    ret = return_for(app, token)
    assert resp.status_code == 200 and resp.mimetype == "application/pdf"
    assert resp.data == b"%PDF-1.4 test label\n%%EOF"
    assert f'filename="RMA-{ret.rma_code[:4]}-{ret.rma_code[4:]}-label.pdf"' in resp.headers["Content-Disposition"]
    page = _body(client.get(f"/returns/status/{token}"))
    assert f'href="/returns/status/{token}/label.pdf"' in page
    assert '<svg role="img"' in page and "QR code of your return" in page


def test_one_returns_token_never_opens_another(app, client, api, order):
    api.put("/orders/1002", json=order_body(customer={"email": "bob@example.com", "name": "Bob", "locale": "en"}))
    token_a = start_return(client, {"L1": (1, "too_small")})
    token_b = start_return(client, {"L2": (1, "too_large")}, order_number="1002", email="bob@example.com")
    a, b = return_for(app, token_a), return_for(app, token_b)
    _issue_label(app, token_a, b"%PDF-A")
    _issue_label(app, token_b, b"%PDF-B")
    number = lambda r: f"RMA-{r.rma_code[:4]}-{r.rma_code[4:]}"  # noqa: E731
    page_a = text_of(_body(client.get(f"/returns/status/{token_a}")))
    assert number(a) in page_a and number(b) not in page_a and "Wool socks" not in page_a
    assert client.get(f"/returns/status/{token_a}/label.pdf").data == b"%PDF-A"
    assert client.get(f"/returns/status/{token_b}/label.pdf").data == b"%PDF-B"
    # cancelling through A's link cancels A only
    page = _body(client.get(f"/returns/status/{token_a}/cancel"))
    client.post(f"/returns/status/{token_a}/cancel", data={"csrf_token": csrf(page)})
    assert return_for(app, token_a).status == "cancelled"
    assert return_for(app, token_b).status == "authorized"


@pytest.mark.parametrize("mangle", [
    # one symbol of the signature changed (not the last: its low bits are only padding)
    lambda t: t.split(".")[0] + "." + ("A" if t.split(".")[1][0] != "A" else "Q") + t.split(".")[1][1:],
    lambda t: t.split(".")[0] + ".",                            # signature removed
    lambda t: "eyJyIjoiMDAwMDAwMDAifQ." + t.split(".")[1],      # another return's payload
    lambda t: "nonsense",
])
def test_tampered_token_is_a_friendly_404(app, client, order, mangle):
    token = start_return(client, {"L1": (1, "too_small")})
    bad = mangle(token)
    for path in (f"/returns/status/{bad}", f"/returns/status/{bad}/label.pdf", f"/returns/status/{bad}/cancel",
                 f"/returns/status/{bad}/confirmation"):
        resp = client.get(path)
        assert resp.status_code == 404 and resp.mimetype == "text/html", path
        text = text_of(_body(resp))
        assert "We cannot find this page" in text and "Traceback" not in text
    resp = client.get(f"/returns/status/{bad}", headers={"Accept-Language": "fr"})
    assert "Cette page est introuvable" in text_of(_body(resp))


def test_timeline_in_plain_words(app, client, api, order):
    token = start_return(client, {"L1": (1, "too_small")})
    number = return_for(app, token)
    code = number.rma_code
    api.post(f"/returns/{code}/receive")
    text = text_of(_body(client.get(f"/returns/status/{token}")))
    assert "Return requested" in text and "Return accepted" in text and "Parcel received at our warehouse" in text
    assert "November 25, 2026, 1:00 PM" in text  # Paris time
    assert "We received your parcel" in text  # the headline
    assert "Cancel this return" not in text  # received: too late to cancel


def test_refund_and_its_date_on_the_status_page(app, client, api, order):
    token = start_return(client, {"L1": (1, "too_small")})
    code = return_for(app, token).rma_code
    text = text_of(_body(client.get(f"/returns/status/{token}")))
    assert "€44.00" in text and "Due by December 9, 2026 at the latest." in text
    api.post(f"/returns/{code}/receive")
    api.post(f"/returns/{code}/items/L1/triage", json={"disposition": "restock", "condition": "new"})
    api.post(f"/returns/{code}/refund", json={"amount": "44.00", "reference": "PAY-1"})
    text = text_of(_body(client.get(f"/returns/status/{token}")))
    assert "Refunded on November 25, 2026." in text and "Refunded: €44.00" in text
    assert "Item checked: Linen shirt" in text and "All items checked" in text
    assert "Your return label" not in text  # the parcel arrived: no label any more


def test_return_waiting_for_approval_says_so(app, client, order):
    token = start_return(client, {"L1": (1, "other", "Colour differs")})
    assert return_for(app, token).status == "requested"
    text = text_of(_body(client.get(f"/returns/status/{token}/confirmation")))
    assert "Our team checks your request first." in text and "Download the label" not in text
    resp = client.get(f"/returns/status/{token}/label.pdf")
    assert resp.status_code == 202 and "Our team checks return" in text_of(_body(resp))
    assert "Waiting for our approval" in text_of(_body(client.get(f"/returns/status/{token}")))


def test_cancel_after_shipping_is_refused_politely(app, client, api, order):
    token = start_return(client, {"L1": (1, "too_small")})
    page = _body(client.get(f"/returns/status/{token}"))
    assert "Cancel this return" in text_of(page)
    confirm = _body(client.get(f"/returns/status/{token}/cancel"))
    api.post(f"/returns/{return_for(app, token).rma_code}/receive")
    resp = client.post(f"/returns/status/{token}/cancel", data={"csrf_token": csrf(confirm)}, follow_redirects=True)
    assert "This return can no longer be cancelled" in text_of(_body(resp))
    assert return_for(app, token).status == "received"


def test_dispute_shows_the_handler_and_takes_a_message(app, client, api, order):
    from rma_service.models import Agent, Dispute, DisputeMessage
    token = start_return(client, {"L1": (1, "damaged")})
    code = return_for(app, token).rma_code
    api.post(f"/returns/{code}/receive")
    api.post(f"/returns/{code}/items/L1/triage", json={"disposition": "dispute", "condition": "used"})
    with app.app_context():
        agent = Agent(email="camille@example.com", name="Camille Martin", password_hash="x", role="agent",
                      handles_disputes=True)
        db.session.add(agent)
        dispute = db.session.scalar(select(Dispute))
        dispute.handler = agent
        db.session.commit()
    page = _body(client.get(f"/returns/status/{token}"))
    assert "Camille Martin handles your case personally" in text_of(page)
    assert '<label class="label" for="body">Write to Camille Martin</label>' in page
    empty = client.post(f"/returns/status/{token}/messages", data={"csrf_token": csrf(page), "body": "  "})
    assert empty.status_code == 422 and 'id="body-error" role="alert"' in _body(empty)
    resp = client.post(f"/returns/status/{token}/messages",
                       data={"csrf_token": csrf(page), "body": "The seam was torn on arrival."}, follow_redirects=True)
    assert "Your message was sent." in text_of(_body(resp))
    assert "The seam was torn on arrival." in text_of(_body(resp))
    with app.app_context():
        [message] = db.session.scalars(select(DisputeMessage)).all()
        assert message.author == "customer" and message.body == "The seam was torn on arrival."
        assert db.session.scalar(select(Dispute)).last_customer_message_at is not None


# --- CSRF ---------------------------------------------------------------------------------------

def test_forms_posted_without_their_csrf_token_change_nothing(app, client, order):
    assert app.config["WTF_CSRF_ENABLED"] is True
    # the lookup
    resp = client.post("/returns/", data={"order_number": "1001", "email": "ada@example.com"})
    assert resp.status_code == 400 and "This form has expired" in text_of(_body(resp))
    with client.session_transaction() as session:
        assert "lookup" not in session
    # the submission
    lookup(client)
    summary = _body(review(client, {"L1": (1, "too_small")}))
    draft = re.search(r'id="draft" name="draft" type="hidden" value="([^"]+)"', summary).group(1)
    resp = client.post("/returns/order/submit", data={"draft": draft}, content_type="multipart/form-data")
    assert resp.status_code == 400 and count(app, Return) == 0
    resp = client.post("/returns/order/submit", data={"draft": draft, "csrf_token": "forged"},
                       content_type="multipart/form-data")
    assert resp.status_code == 400 and count(app, Return) == 0
    # cancelling and writing
    token = start_return(client, {"L1": (1, "too_small")})
    events = count(app, Event)
    assert client.post(f"/returns/status/{token}/cancel").status_code == 400
    assert client.post(f"/returns/status/{token}/messages", data={"body": "hi"}).status_code == 400
    assert return_for(app, token).status == "authorized" and count(app, Event) == events


def test_csrf_token_from_another_session_is_refused(app, order):
    first, second = app.test_client(), app.test_client()
    page = _body(first.get("/returns/"))
    second.get("/returns/")
    resp = second.post("/returns/", data={"csrf_token": csrf(page), "order_number": "1001",
                                          "email": "ada@example.com"})
    assert resp.status_code == 400


# --- language --------------------------------------------------------------------------------------

def test_language_from_browser_then_switch_kept_in_session(client):
    assert 'lang="fr"' in _body(client.get("/returns/", headers={"Accept-Language": "fr-FR,fr;q=0.9"}))
    assert "Retourner un article" in text_of(_body(client.get("/returns/", headers={"Accept-Language": "fr"})))
    client.get("/returns/?lang=en", headers={"Accept-Language": "fr"})
    page = _body(client.get("/returns/", headers={"Accept-Language": "fr"}))
    assert "Return an item" in text_of(page) and 'lang="en"' in page
    assert 'href="/returns/?lang=fr" lang="fr" hreflang="fr">Français</a>' in page


def test_order_in_french_gives_french_pages_money_and_dates(app, client, api, frozen_now):
    api.put("/orders/3001", json=order_body(customer={"email": "marie@example.fr", "name": "Marie Curie",
                                                      "locale": "fr"}))
    lookup(client, "3001", "marie@example.fr")
    text = text_of(_body(client.get("/returns/order")))
    assert "Que souhaitez-vous retourner ?" in text
    assert "49,90 €" in text  # (a no-break space in the page)
    assert "Vous pouvez demander un retour jusqu’au 22 décembre 2026." in text
    assert "Les cartes cadeaux ne peuvent pas être retournées." in text
    summary = text_of(_body(review(client, {"L1": (1, "too_small")})))
    assert "Montant qui vous sera remboursé 44,00 €" in summary
    assert "Remboursement au plus tard le 9 décembre 2026." in summary
    token = start_return(client, {"L2": (1, "too_small")}, order_number="3001", email="marie@example.fr")
    assert return_for(app, token).locale == "fr"
    status = text_of(_body(client.get(f"/returns/status/{token}")))
    assert "Accepté : en attente de votre colis" in status and "Retour demandé" in status


def test_explicit_switch_sets_the_returns_language(app, client, order):
    client.get("/returns/?lang=fr")
    token = start_return(client, {"L1": (1, "too_small")})
    assert return_for(app, token).locale == "fr"  # the mails follow the page's language


def test_language_switch_on_the_summary_keeps_the_choices(client, order):
    lookup(client)
    page = _body(review(client, {"L2": (2, "other", "Itchy wool")}))
    assert 'href="/returns/order/review?lang=fr"' in page
    resp = client.get("/returns/order/review?lang=fr")
    assert resp.status_code == 200
    text = text_of(_body(resp))
    assert "Vérifiez et envoyez votre retour" in text
    assert "Wool socks × 2" in text and "Itchy wool" in text and "Autre motif" in text


def test_summary_address_without_choices_leads_back_to_a_page(client, order):
    lookup(client)
    resp = client.get("/returns/order/review?lang=fr")
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/returns/order")
    for path in ("/returns/order/submit", "/returns/order/edit"):
        resp = client.get(path)
        assert resp.status_code == 302 and resp.headers["Location"].endswith("/returns/order")


# --- rate limits ------------------------------------------------------------------------------------

@pytest.fixture
def limited_app(_schema):
    from rma_service import create_app
    from tests.conftest import _truncate
    application = create_app({"DATABASE_URL": _schema, "TESTING": True, "SECRET_KEY": "test-secret",
                              "BASE_URL": "http://rma.test", "RATELIMIT_ENABLED": True,
                              "RATELIMIT_WEB": "3/minute", "RATELIMIT_STORAGE_URI": "memory://"})
    with application.app_context():
        _truncate()
    yield application
    with application.app_context():
        db.session.remove()
        db.engine.dispose()


def test_lookups_are_limited_per_client_with_a_friendly_page(limited_app):
    client = limited_app.test_client()
    for _ in range(3):
        assert lookup(client, "7777", "x@example.com").status_code == 422
    resp = lookup(client, "7778", "x@example.com", headers={"Accept-Language": "fr"})
    assert resp.status_code == 429 and resp.mimetype == "text/html"
    assert "Retry-After" in resp.headers
    text = text_of(_body(resp))
    assert "Trop d’essais" in text and "Patientez une minute" in text
    # another client is not affected
    other = limited_app.test_client()
    assert lookup(other, "7779", "x@example.com", environ_base={"REMOTE_ADDR": "10.0.0.9"}).status_code == 422


def test_lookups_are_limited_per_order_across_clients(limited_app):
    statuses = []
    for i in range(4):
        client = limited_app.test_client()
        statuses.append(lookup(client, "1001", f"guess{i}@example.com",
                               environ_base={"REMOTE_ADDR": f"10.0.1.{i}"}).status_code)
    assert statuses == [422, 422, 422, 429]
    other_order = limited_app.test_client()
    assert lookup(other_order, "1002", "x@example.com", environ_base={"REMOTE_ADDR": "10.0.2.1"}).status_code == 422


def test_a_nul_character_in_a_form_gives_a_friendly_page(client, order):
    resp = lookup(client, "1001\x00", "ada@example.com")
    assert resp.status_code == 400 and resp.mimetype == "text/html"
    assert "This form contains a character we cannot accept" in text_of(_body(resp))
    with client.session_transaction() as session:
        assert "lookup" not in session


# --- Post/Redirect/Get: each step is a page of its own ------------------------------------------

def test_sending_the_items_redirects_to_the_summary_which_keeps_the_choices(client, order):
    """The summary is not the answer of a form: Back, a reload and the language switch read it
    again, with the customer's choices, without sending anything."""
    lookup(client)
    sent = _send_items(client, {"L2": (2, "other", "Itchy wool")}, follow_redirects=False)
    assert sent.status_code in (302, 303) and sent.headers["Location"].endswith("/returns/order/review")
    page = client.get("/returns/order/review")
    assert page.status_code == 200
    text = text_of(_body(page))
    assert "Check and send your return" in text and "Wool socks × 2" in text and "Itchy wool" in text
    # Back to the items: the choices are ticked again
    items = _body(client.get("/returns/order"))
    assert re.search(r'id="lines-1-selected" value="y" checked', items)
    assert '<option value="2" selected>2</option>' in items and "Itchy wool</textarea>" in items
    assert not re.search(r'id="lines-0-selected" value="y" checked', items)


def test_a_reloaded_summary_is_still_the_same_submission(app, client, order):
    lookup(client)
    first = _body(review(client, {"L1": (1, "too_small")}))
    reloaded = _body(client.get("/returns/order/review"))
    one, two = submit(client, first), submit(client, reloaded)
    assert one.status_code == two.status_code == 302
    assert one.headers["Location"] == two.headers["Location"]
    assert count(app, Return) == 1


def test_back_to_the_summary_after_sending_shows_the_order_with_the_new_return(app, client, order):
    lookup(client)
    done = submit(client, _body(review(client, {"L1": (1, "too_small")})))
    assert done.status_code == 302
    number = text_of(_body(client.get(done.headers["Location"])))
    number = re.search(r"RMA-[0-9A-Z]{4}-[0-9A-Z]{4}", number).group(0)
    back = client.get("/returns/order/review", follow_redirects=True)
    assert back.status_code == 200
    page = _body(back)
    assert f"Your return {number} has been sent." in text_of(page)
    assert not re.search(r'value="y" checked', page)  # a new, empty choice
    assert count(app, Return) == 1


def test_a_refused_photo_is_shown_on_the_summary_page_once(app, client, order):
    lookup(client)
    summary = _body(review(client, {"L1": (1, "damaged", "Torn")}))
    gif = io.BytesIO()
    Image.new("RGB", (10, 10)).save(gif, "GIF")
    resp = submit(client, summary, photos={0: [(io.BytesIO(gif.getvalue()), "x.gif", "image/gif")]})
    assert resp.status_code in (302, 303) and resp.headers["Location"].endswith("/returns/order/review")
    page = client.get("/returns/order/review")
    assert page.status_code == 422
    assert re.search(r'<p class="field-error" id="photos-0-error" role="alert">.*JPEG, PNG or WebP', _body(page))
    assert "Torn" in text_of(_body(page))
    again = client.get("/returns/order/review")
    assert again.status_code == 200 and 'id="photos-0-error"' not in _body(again)
    assert count(app, Return) == 0 and count(app, Photo) == 0
    assert submit(client, _body(again)).status_code == 302
    assert count(app, Return) == 1


def test_choices_too_large_for_the_session_cookie_still_reach_the_summary(app, client, api, frozen_now):
    import secrets
    lines = [{"line_id": f"L{n}", "sku": f"S{n}", "name": f"Item {n}", "quantity": 1, "unit_price": "10.00"}
             for n in range(6)]
    assert api.put("/orders/4001", json=order_body(lines=lines)).status_code == 201
    lookup(client, "4001")
    comments = {f"L{n}": secrets.token_urlsafe(750) for n in range(6)}  # 1000 characters each, no pattern
    resp = review(client, {line: (1, "other", comment) for line, comment in comments.items()})
    assert resp.status_code == 200
    assert "Check and send your return" in text_of(_body(resp))
    assert len(client.get_cookie("session").value) < 4000
    assert submit(client, _body(resp)).status_code == 302
    with app.app_context():
        ret = db.session.scalar(select(Return))
        assert {i.line_id: i.comment for i in ret.items} == comments


# --- finding the order: forgiving, never guessing ---------------------------------------------

@pytest.mark.parametrize("typed", ["demo-1017", "DEMO 1017", "#DEMO-1017", " DEMO-1017 ", "# demo-1017", "Demo-1017"])
def test_lookup_forgives_case_surrounding_spaces_and_a_leading_hash(client, api, frozen_now, typed):
    assert api.put("/orders/DEMO-1017", json=order_body()).status_code == 201
    resp = lookup(client, typed, "ada@example.com")
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/returns/order")
    assert "Order DEMO-1017" in text_of(_body(client.get("/returns/order")))


def test_lookup_does_not_guess_between_orders_or_drop_separators(client, api, frozen_now):
    assert api.put("/orders/DEMO-1017", json=order_body()).status_code == 201
    bob = {"email": "bob@example.com", "name": "Bob", "locale": "en"}
    assert lookup(client, "DEMO1017").status_code == 422  # separators are not dropped
    # a forgiven number with a wrong email: the same answer as an order that does not exist
    wrong, unknown = lookup(client, "demo-1017", "eve@example.com"), lookup(client, "demo-9999", "eve@example.com")
    assert wrong.status_code == unknown.status_code == 422

    def normalised(resp):
        return re.sub(r'value="[^"]*"', 'value=""', _body(resp))
    assert normalised(wrong) == normalised(unknown)
    # two orders that differ only by case: the exact number wins, anything else is not guessed
    assert api.put("/orders/demo-1017", json=order_body(customer=bob)).status_code == 201
    assert lookup(client, "demo-1017", "bob@example.com").status_code == 302
    assert "Order demo-1017" in text_of(_body(client.get("/returns/order")))
    assert lookup(client, "#DEMO-1017", "ada@example.com").status_code == 302
    assert "Order DEMO-1017" in text_of(_body(client.get("/returns/order")))
    for typed, email in (("Demo-1017", "ada@example.com"), ("Demo-1017", "bob@example.com")):
        resp = lookup(client, typed, email)
        assert resp.status_code == 422 and normalised(resp) == normalised(unknown)


def test_forgiven_spellings_of_one_order_share_its_rate_limit(limited_app):
    statuses = []
    for i, typed in enumerate(["DEMO-1017", "demo 1017", "#Demo-1017", " demo-1017 "]):
        client = limited_app.test_client()
        statuses.append(lookup(client, typed, f"guess{i}@example.com",
                               environ_base={"REMOTE_ADDR": f"10.0.3.{i}"}).status_code)
    assert statuses == [422, 422, 422, 429]


# --- the label page once the parcel has arrived ---------------------------------------------

def test_label_link_after_the_parcel_arrived_says_it_is_no_longer_needed(app, client, api, order):
    from rma_service.services.labels import issue_due
    issued = start_return(client, {"L1": (1, "too_small")})
    _issue_label(app, issued)
    api.post(f"/returns/{return_for(app, issued).rma_code}/receive")
    # received while its label was still being prepared: the label job voids it
    pending = start_return(client, {"L2": (1, "too_small")})
    api.post(f"/returns/{return_for(app, pending).rma_code}/receive")
    with app.app_context():
        issue_due(NOW)
    for token in (issued, pending):
        resp = client.get(f"/returns/status/{token}/label.pdf?lang=en")
        assert resp.mimetype == "text/html"
        text = text_of(_body(resp))
        assert "We have received the parcel of return" in text and "its label is no longer needed" in text
        assert "cancel" not in text.lower()
        text = text_of(_body(client.get(f"/returns/status/{token}/label.pdf?lang=fr")))
        assert "Nous avons bien reçu le colis du retour" in text and "son étiquette n’est plus nécessaire" in text
        assert "annulé" not in text
        text = text_of(_body(client.get(f"/returns/status/{token}/confirmation?lang=en")))
        assert "We have received your parcel: the label is no longer needed." in text
        assert "cancelled" not in text


def test_label_link_of_a_cancelled_or_expired_return_still_says_so(app, client, api, order):
    cancelled = start_return(client, {"L1": (1, "too_small")})
    page = _body(client.get(f"/returns/status/{cancelled}/cancel"))
    client.post(f"/returns/status/{cancelled}/cancel", data={"csrf_token": csrf(page)})
    text = text_of(_body(client.get(f"/returns/status/{cancelled}/label.pdf?lang=en")))
    assert "The label of return" in text and "was cancelled and can no longer be used." in text
    text = text_of(_body(client.get(f"/returns/status/{cancelled}/label.pdf?lang=fr")))
    assert "a été annulée et ne peut plus être utilisée." in text
    expired = start_return(client, {"L2": (1, "too_small")})
    with app.app_context():  # what the expiry job leaves: the return expired, its label voided
        ret = db.session.scalar(select(Return).where(Return.rma_code == return_for(app, expired).rma_code))
        ret.status = "expired"
        for label in ret.labels:
            label.status = "voided"
        db.session.commit()
    text = text_of(_body(client.get(f"/returns/status/{expired}/label.pdf?lang=en")))
    assert "has expired and can no longer be used." in text


# --- the refund card when nothing is due ---------------------------------------------------------

def _dispute_rejected(app, api, token: str) -> str:
    code = return_for(app, token).rma_code
    api.post(f"/returns/{code}/receive")
    api.post(f"/returns/{code}/items/L1/triage", json={"disposition": "dispute", "condition": "used"})
    dispute_id = api.get(f"/returns/{code}").get_json()["dispute"]["id"]
    resp = api.post(f"/disputes/{dispute_id}/resolve", json={"outcome": "reject", "note": "The seam was cut."})
    assert resp.status_code == 200, resp.get_json()
    return code


def test_nothing_to_refund_after_a_rejected_dispute_is_said_plainly(app, client, api, order):
    token = start_return(client, {"L1": (1, "damaged")})
    code = _dispute_rejected(app, api, token)
    text = text_of(_body(client.get(f"/returns/status/{token}")))
    assert "There is nothing to refund for this return." in text
    assert "€0.00" not in text and "Due by" not in text
    assert api.get(f"/returns/{code}").get_json()["status"] == "closed"  # by the policy: nothing due
    text = text_of(_body(client.get(f"/returns/status/{token}")))
    assert "There is nothing to refund for this return." in text
    assert "€0.00" not in text and "Due by" not in text
    text = text_of(_body(client.get(f"/returns/status/{token}?lang=fr")))
    assert "Il n’y a rien à vous rembourser pour ce retour." in text and "0,00" not in text


def test_exchange_and_store_credit_closed_say_what_happened(app, client, api, order):
    exchange = start_return(client, {"L1": (1, "too_small")}, resolution="exchange")
    credit = start_return(client, {"L2": (1, "too_small")}, resolution="store_credit")
    for token, line in ((exchange, "L1"), (credit, "L2")):
        code = return_for(app, token).rma_code
        api.post(f"/returns/{code}/receive")
        api.post(f"/returns/{code}/items/{line}/triage", json={"disposition": "restock", "condition": "new"})
        assert api.post(f"/returns/{code}/close", json={}).status_code == 200
    text = text_of(_body(client.get(f"/returns/status/{exchange}?lang=en")))
    assert "We have sent you the replacement." in text and "once we have checked" not in text
    text = text_of(_body(client.get(f"/returns/status/{credit}")))
    assert "We have issued your store credit." in text and "once we have checked" not in text
    # an exchange whose items were all refused: nothing to send
    rejected = start_return(client, {"L1": (1, "damaged")}, resolution="exchange")
    _dispute_rejected(app, api, rejected)
    text = text_of(_body(client.get(f"/returns/status/{rejected}")))
    assert "There is nothing to exchange for this return." in text and "replacement" not in text


def test_store_credit_timing_reads_the_same_before_and_after_sending(client, order):
    for lang, sentence in (("en", "We issue your store credit once we have checked the items."),
                           ("fr", "Nous émettons votre avoir une fois les articles vérifiés.")):
        client.get(f"/returns/?lang={lang}")
        lookup(client)
        assert sentence in text_of(_body(review(client, {"L2": (1, "too_small")}, resolution="store_credit")))
        token = start_return(client, {"L2": (1, "too_small")}, resolution="store_credit")
        assert sentence in text_of(_body(client.get(f"/returns/status/{token}")))
    for lang, sentence in (("en", "We send you the replacement once we have checked the items."),
                           ("fr", "Nous vous envoyons l’article de remplacement une fois les articles vérifiés.")):
        client.get(f"/returns/?lang={lang}")
        lookup(client)
        assert sentence in text_of(_body(review(client, {"L2": (1, "too_small")}, resolution="exchange")))


# --- wording -------------------------------------------------------------------------------------

def test_the_comment_label_says_when_it_is_required(client, order):
    lookup(client)
    page = _body(client.get("/returns/order"))
    assert '<label class="label" for="lines-0-comment">Comment (optional, required for “Other reason”)</label>' in page
    page = _body(client.get("/returns/order?lang=fr"))
    assert ('<label class="label" for="lines-0-comment">Commentaire (facultatif, obligatoire pour '
            '«\u00a0Autre motif\u00a0»)</label>') in page


def test_a_declined_return_reads_with_french_punctuation(app, client, api, order):
    token = start_return(client, {"L1": (1, "other", "Colour differs")})
    assert api.post(f"/returns/{return_for(app, token).rma_code}/reject",
                    json={"reason": "Photos manquantes"}).status_code == 200
    assert "Retour refusé\u00a0: Photos manquantes" in _body(client.get(f"/returns/status/{token}?lang=fr"))
    assert "Return declined: Photos manquantes" in _body(client.get(f"/returns/status/{token}?lang=en"))

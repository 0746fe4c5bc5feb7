"""The customer's status page during and after a dispute: each message under the name of the
person who wrote it, a decision worded for the return's resolution, and a message sent after
the decision given back instead of lost."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from rma_service.domain.rma_number import parse
from rma_service.extensions import db
from rma_service.models import Dispute, DisputeMessage
from rma_service.services import disputes as svc
from rma_service.services.tokens import status_token
from tests.conftest import NOW, count, return_body
from tests.e2e.admin_support import login, post_form
from tests.integration.test_disputes import PASSWORD, disputed_return, make_agent, new_order
from tests.web_helpers import csrf, text_of


def status_page(client, number: str) -> tuple[str, str]:
    with client.application.app_context():
        token = status_token(parse(number))
    resp = client.get(f"/returns/status/{token}")
    assert resp.status_code == 200
    return token, resp.get_data(as_text=True)


def test_each_message_shows_who_wrote_it_after_a_hand_over_and_an_admins_answer(app, client, api, order):
    make_agent(app, "grace@shop.test", "Grace Hopper")
    bea = make_agent(app, "bea@shop.test", "Bea Arthur")
    make_agent(app, "boss@shop.test", "Bob Boss", role="admin", disputes=False)
    number, dispute_id = disputed_return(api)
    assert api.post(f"/disputes/{dispute_id}/messages", json={"author": "handler", "body": "Photos please?"}).status_code == 201
    with app.app_context():
        svc.reassign(db.session.get(Dispute, dispute_id), bea, NOW, "agent:boss@shop.test")
    login(client, "boss@shop.test", PASSWORD)
    assert post_form(client, f"/admin/disputes/{dispute_id}", f"/admin/disputes/{dispute_id}/messages",
                     {"body": "Bob here, looking at it."}).status_code == 302

    _, page = status_page(app.test_client(), number)
    text = text_of(page)
    assert "Bea Arthur handles your case personally" in text
    assert "Grace Hopper · " in text and "Photos please?" in text     # her message keeps her name
    assert "Bob Boss · " in text and "Bob here, looking at it." in text
    assert "Bea Arthur · " not in text                                 # Bea wrote nothing yet


@pytest.mark.parametrize("resolution, locale, outcome, said", [
    ("exchange", "en", "accept", "the disputed items count in full towards your exchange."),
    ("store_credit", "en", "partial", "We count part of the disputed items towards your store credit: €20.00."),
    ("exchange", "en", "reject", "We cannot accept your claim for the disputed items."),
    ("store_credit", "fr", "accept", "les articles contestés comptent en totalité pour votre avoir."),
    ("refund", "en", "accept", "We accept your claim: the disputed items are refunded in full."),
    ("refund", "en", "reject", "We cannot refund the disputed items."),
])
def test_the_decision_is_worded_for_the_returns_resolution(app, client, api, frozen_now, resolution, locale,
                                                           outcome, said):
    new_order(api, "2001", "zoe@example.com", "Zoé", locale=locale)
    make_agent(app, "grace@shop.test", "Grace Hopper")
    resp = api.post("/returns", json=return_body("2001", "zoe@example.com", resolution=resolution))
    assert resp.status_code == 201, resp.get_json()
    number = resp.get_json()["rma_number"]
    assert api.post(f"/returns/{number}/receive", json={}).status_code == 200
    dispute_id = api.post(f"/returns/{number}/items/L1/triage",
                          json={"disposition": "dispute", "condition": "damaged"}).get_json()["dispute"]["id"]
    body = {"outcome": outcome, "note": "Checked."}
    if outcome == "partial":
        body["amount"] = "20.00"
    assert api.post(f"/disputes/{dispute_id}/resolve", json=body).status_code == 200

    text = text_of(status_page(client, number)[1]).replace("\u00a0", " ").replace("\u202f", " ")
    assert said.replace("\u00a0", " ") in text
    if resolution != "refund":
        assert "remboursés en totalité" not in text and "refunded in full" not in text


@pytest.mark.parametrize("locale, notice", [
    ("en", "Our decision was made before your message arrived, so it was not sent."),
    ("fr", "Notre décision a été prise avant l’arrivée de votre message"),
])
def test_a_message_sent_after_the_decision_is_given_back_not_lost(app, client, api, frozen_now, locale, notice):
    new_order(api, "2002", "zoe@example.com", "Zoé", locale=locale)
    make_agent(app, "grace@shop.test", "Grace Hopper")
    number, dispute_id = disputed_return(api, "2002", "zoe@example.com")
    token, page = status_page(client, number)          # the customer opens the page …
    assert api.post(f"/disputes/{dispute_id}/resolve",  # … and the handler decides meanwhile
                    json={"outcome": "reject", "note": "Worn."}).status_code == 200
    messages = count(app, DisputeMessage)

    resp = client.post(f"/returns/status/{token}/messages",
                       data={"csrf_token": csrf(page), "body": "But the sole came off on day one!"})
    assert resp.status_code == 409
    text = text_of(resp.get_data(as_text=True))
    assert notice in text.replace("\u00a0", " ")
    assert "But the sole came off on day one!" in text       # the words are given back
    assert "Worn." in text                                  # and the decision is on the page
    assert "Traceback" not in text and "conflict" not in text
    assert count(app, DisputeMessage) == messages
    with app.app_context():
        assert db.session.scalar(select(Dispute.status).where(Dispute.id == dispute_id)) == "resolved"

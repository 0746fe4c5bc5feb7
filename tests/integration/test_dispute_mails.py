"""Dispute mails say what happened to whom: an exchange or store credit is not promised a
refund, an admin who answers in the handler's place signs with their own name, and a dispute
that never had a handler is not said to be handed over."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from rma_service.extensions import db
from rma_service.models import Dispute, DisputeMessage, MailMessage
from rma_service.services import disputes as svc
from tests.conftest import NOW, count
from tests.e2e.admin_support import login, post_form
from tests.integration.test_disputes import (PASSWORD, dispute_item, dispute_of, disputed_return, make_agent,
                                             new_order)


def customer_mails(app, to="ada@example.com") -> list[MailMessage]:
    with app.app_context():
        rows = db.session.scalars(select(MailMessage).where(MailMessage.to == to).order_by(MailMessage.id)).all()
        db.session.expunge_all()
        return list(rows)


def last_mail(app, to) -> MailMessage:
    return customer_mails(app, to)[-1]


# --- the decision mail of a return that is not refunded in money ------------------------------

@pytest.mark.parametrize("resolution, locale, outcome, amount, said, not_said", [
    ("exchange", "en", "accept", None, "exchange", ("refunded", "Amount to be refunded")),
    ("store_credit", "en", "partial", "20.00", "store credit", ("We refund", "Amount to be refunded")),
    ("exchange", "fr", "accept", None, "échange", ("remboursés", "Montant qui vous sera remboursé")),
    ("store_credit", "fr", "partial", "20.00", "avoir", ("Nous remboursons", "Montant qui vous sera remboursé")),
])
def test_decision_mail_of_an_exchange_or_store_credit_does_not_promise_a_refund(
        app, api, frozen_now, resolution, locale, outcome, amount, said, not_said):
    make_agent(app, "grace@shop.test", "Grace")
    new_order(api, "1001", "ada@example.com", "Ada", locale=locale)
    resp = api.post("/returns", json={"order_number": "1001", "email": "ada@example.com", "resolution": resolution,
                                      "items": [{"line_id": "L1", "quantity": 1, "reason": "damaged"}]})
    assert resp.status_code == 201, resp.get_json()
    number = resp.get_json()["rma_number"]
    assert api.post(f"/returns/{number}/receive", json={}).status_code == 200
    dispute_id = dispute_item(api, number)["dispute"]["id"]
    body = {"outcome": outcome, "note": "Checked."}
    if amount:
        body["amount"] = amount
    assert api.post(f"/disputes/{dispute_id}/resolve", json=body).status_code == 200

    mail = last_mail(app, "ada@example.com")
    assert number in mail.subject
    for part in (mail.text, mail.html):
        assert said in part.lower()
        for phrase in not_said:
            assert phrase not in part


def test_decision_mail_of_a_refund_still_tells_the_amount_to_be_refunded(app, api, order):
    make_agent(app, "grace@shop.test", "Grace")
    _, dispute_id = disputed_return(api)
    assert api.post(f"/disputes/{dispute_id}/resolve", json={"outcome": "accept", "note": "Ok"}).status_code == 200
    mail = last_mail(app, "ada@example.com")
    assert "refunded in full (€49.90)" in mail.text and "Amount to be refunded for this return" in mail.text


# --- a reply is mailed under the name of the person who wrote it -----------------------------

def test_an_admin_reply_is_not_mailed_under_the_handlers_name(app, api, order, client):
    make_agent(app, "grace@shop.test", "Grace Hopper")
    make_agent(app, "boss@shop.test", "Bob Boss", role="admin", disputes=False)
    _, dispute_id = disputed_return(api)
    assert dispute_of(app, dispute_id)["handler"] == "grace@shop.test"
    login(client, "boss@shop.test", PASSWORD)
    resp = post_form(client, f"/admin/disputes/{dispute_id}", f"/admin/disputes/{dispute_id}/messages",
                     {"body": "Bob here, I looked at it myself."})
    assert resp.status_code == 302 and count(app, DisputeMessage) == 1

    mail = last_mail(app, "ada@example.com")
    assert "Bob here" in mail.text
    assert "Grace" not in mail.subject and "Bob Boss" in mail.subject
    for part in (mail.text, mail.html):
        assert "Bob Boss" in part
        assert "Grace Hopper, who handles" not in part


def test_the_handlers_own_reply_is_still_signed_as_the_handler(app, api, order):
    make_agent(app, "grace@shop.test", "Grace Hopper")
    number, dispute_id = disputed_return(api)
    assert api.post(f"/disputes/{dispute_id}/messages", json={"author": "handler", "body": "Photos?"}).status_code == 201
    mail = last_mail(app, "ada@example.com")
    assert mail.subject == f"Grace Hopper replied about your return {number}"
    assert "Grace Hopper, who handles the dispute about your return" in mail.text


# --- a dispute taken from the queue was not "handed over from another handler" -----------------

@pytest.mark.parametrize("app_config", [{"DISPUTE_CAPACITY": 1}])
def test_a_queued_dispute_given_by_hand_is_not_said_to_come_from_another_handler(app, api, order):
    grace = make_agent(app, "grace@shop.test", "Grace")
    new_order(api, "2002", "other@example.com")
    disputed_return(api, "2002", "other@example.com")        # Grace is full now
    _, dispute_id = disputed_return(api)
    assert dispute_of(app, dispute_id)["handler"] is None     # waits in the queue
    with app.app_context():
        svc.reassign(db.session.get(Dispute, dispute_id), grace, NOW, "agent:boss")
    mail = last_mail(app, "grace@shop.test")
    assert mail.subject.startswith("New dispute for you")
    assert "handed over" not in mail.text and "handed over" not in mail.html


def test_a_dispute_handed_over_by_hand_still_says_so(app, api, order):
    make_agent(app, "grace@shop.test", "Grace")
    bea = make_agent(app, "bea@shop.test", "Bea")
    _, dispute_id = disputed_return(api)
    assert dispute_of(app, dispute_id)["handler"] == "grace@shop.test"
    with app.app_context():
        svc.reassign(db.session.get(Dispute, dispute_id), bea, NOW, "agent:boss")
    mail = last_mail(app, "bea@shop.test")
    assert mail.subject.startswith("Dispute handed over to you")
    assert "It was handed over to you from another handler." in mail.text

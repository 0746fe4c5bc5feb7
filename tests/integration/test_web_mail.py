"""A return started on the customer pages is confirmed by mail, through a real SMTP server,
in the customer's language, with the link to the status page."""
from __future__ import annotations

import re
from urllib.parse import urlsplit

from tests.conftest import NOW, order_body
from tests.web_helpers import return_for, start_return, text_of


def _send_mail(app, smtp_server) -> list:
    from rma_service.jobs import run_once
    app.config["RMA"].update(SMTP_HOST=smtp_server.host, SMTP_PORT=smtp_server.port)
    with app.app_context():
        results = dict(run_once(NOW, names=["send_mail"]))
    assert not isinstance(results["send_mail"], Exception), results
    return smtp_server.wait_for(1)


def _status_link(message) -> str:
    text = message.get_body(("plain",)).get_content()
    match = re.search(r"http://rma\.test/returns/status/\S+", text)
    assert match, text
    return match.group(0)


def test_french_customer_gets_the_mail_in_french_with_the_status_link(app, client, api, frozen_now, smtp_server):
    api.put("/orders/3001", json=order_body(customer={"email": "marie@example.fr", "name": "Marie Curie",
                                                      "locale": "fr"}))
    token = start_return(client, {"L1": (1, "too_small")}, order_number="3001", email="marie@example.fr")
    [message] = _send_mail(app, smtp_server)
    assert message.rcpt_tos == ["marie@example.fr"]
    link = _status_link(message)
    assert link == f"http://rma.test/returns/status/{token}"
    number = "RMA-{0}-{1}".format(return_for(app, token).rma_code[:4], return_for(app, token).rma_code[4:])
    assert number in message["Subject"]
    body = message.get_body(("plain",)).get_content()
    assert "Bonjour Marie Curie" in body and "Suivez votre retour" in body
    # the link opens that return's page, in French
    page = client.get(urlsplit(link).path)
    assert page.status_code == 200
    text = text_of(page.get_data(as_text=True))
    assert number in text and "Historique" in text


def test_english_customer_gets_the_mail_in_english(app, client, order, smtp_server):
    token = start_return(client, {"L2": (1, "changed_mind")})
    [message] = _send_mail(app, smtp_server)
    assert message.rcpt_tos == ["ada@example.com"]
    assert _status_link(message) == f"http://rma.test/returns/status/{token}"
    assert "Bonjour" not in message.get_body(("plain",)).get_content()


def test_language_chosen_on_the_page_is_the_mails_language(app, client, order, smtp_server):
    client.get("/returns/?lang=fr")  # the order says English; the customer reads French
    token = start_return(client, {"L1": (1, "too_small")})
    [message] = _send_mail(app, smtp_server)
    assert "Bonjour" in message.get_body(("plain",)).get_content()
    assert _status_link(message).endswith(token)

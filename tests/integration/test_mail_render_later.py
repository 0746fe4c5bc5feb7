"""The customer's confirmation of a new return is queued unrendered (template, locale, JSON
context) and rendered by the ``send_mail`` job, which stores the rendered mail in the row
before sending it; a mail that cannot be rendered fails alone, with the reason."""
from __future__ import annotations

import logging
import socket
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from markupsafe import Markup
from sqlalchemy import select, update

from rma_service.extensions import db
from rma_service.models import MailMessage
from rma_service.services import notifications
from tests.conftest import NOW, order_body, return_body
from tests.outbox import run_jobs


@pytest.fixture
def app_config(smtp_server):
    return {"SMTP_HOST": smtp_server.host, "SMTP_PORT": smtp_server.port, "SMTP_SENDER": "retours@shop.test",
            "SHOP_NAME": "La Boutique", "SMTP_TIMEOUT": 5, "JOB_LEASE_SECONDS": 30}


def create_return(api, **kw) -> dict:
    resp = api.post("/returns", json=return_body(**kw))
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


def mails(app) -> list[MailMessage]:
    with app.app_context():
        rows = db.session.scalars(select(MailMessage).order_by(MailMessage.id)).all()
        db.session.expunge_all()
        return list(rows)


CONFIRMATIONS = {
    "en": ("Your return {number} for order 1002", "Hello Zoé <Durand>,", "Your return is approved.",
           "Follow my return"),
    "fr": ("Votre retour {number} pour la commande 1002", "Bonjour Zoé <Durand>,", "Votre retour est accepté",
           "Suivre mon retour"),
}


@pytest.mark.parametrize("locale", ["en", "fr"])
def test_the_confirmation_is_queued_unrendered_and_sent_rendered_by_the_scheduler(app, api, frozen_now,
                                                                                  smtp_server, locale):
    subject, greeting, approved, button = CONFIRMATIONS[locale]
    api.put("/orders/1002", json=order_body(customer={"email": "zoe@exemple.fr", "name": "Zoé <Durand>",
                                                      "locale": locale}))
    ret = create_return(api, order_number="1002", email="zoe@exemple.fr")
    number, status_link = ret["rma_number"], ret["links"]["status_page"]

    [queued] = mails(app)
    assert (queued.subject, queued.text, queued.html) == (None, None, None)
    assert (queued.template, queued.locale, queued.status, queued.to) == ("return_created", locale, "pending",
                                                                          "zoe@exemple.fr")
    assert queued.context["rma_number"] == number and queued.context["status_url"] == status_link
    assert queued.context["shop_name"] == "La Boutique"  # frozen when queued, like the links

    assert run_jobs(app, NOW, "send_mail") == {"send_mail": 1}
    [message] = smtp_server.wait_for(1)
    assert message.rcpt_tos == ["zoe@exemple.fr"] and message["From"] == "retours@shop.test"
    assert message["Subject"] == subject.format(number=number)
    assert message["Message-ID"] == queued.message_id
    assert message["Auto-Submitted"] == "auto-generated"
    text, html = message.iter_parts()
    assert greeting in text.get_content() and approved in text.get_content()
    assert status_link in text.get_content() and "La Boutique" in text.get_content()
    assert "Zoé &lt;Durand&gt;" in html.get_content() and f'href="{status_link}"' in html.get_content()
    assert button in html.get_content() and f'<html lang="{locale}">' in html.get_content()

    # The row now holds the mail as it was sent (the admin sees it, a retry would send it).
    [sent] = mails(app)
    assert sent.status == "sent" and sent.attempts == 1 and sent.sent_at == NOW
    assert sent.subject == message["Subject"]
    assert sent.text == text.get_content() and sent.html.strip() == html.get_content().strip()
    assert (sent.template, sent.locale, sent.context) == (queued.template, queued.locale, queued.context)
    assert run_jobs(app, NOW + timedelta(minutes=5), "send_mail") == {"send_mail": 0}
    assert len(smtp_server.messages) == 1


def test_the_mail_is_rendered_and_stored_before_the_first_attempt_and_retried_as_stored(app, api, order,
                                                                                         smtp_server):
    number = create_return(api)["rma_number"]
    with socket.socket() as closed:  # bound, not listening: the SMTP server is "down"
        closed.bind(("127.0.0.1", 0))
        app.config["RMA"]["SMTP_PORT"] = closed.getsockname()[1]
        try:
            assert run_jobs(app, NOW, "send_mail") == {"send_mail": 0}
        finally:
            app.config["RMA"]["SMTP_PORT"] = smtp_server.port
    [mail] = mails(app)
    assert mail.status == "pending" and mail.attempts == 1
    assert mail.subject == f"Your return {number} for order 1001" and "Hello Ada Lovelace," in mail.text

    # Whatever the settings say by the retry, the retry sends what the row holds.
    app.config["RMA"]["SHOP_NAME"] = "Renamed Shop"
    assert run_jobs(app, NOW + timedelta(seconds=30), "send_mail") == {"send_mail": 1}
    [message] = smtp_server.wait_for(1)
    assert message["Subject"] == mail.subject and message["Message-ID"] == mail.message_id
    assert message.get_body(("plain",)).get_content() == mail.text
    assert "La Boutique" in mail.text and "Renamed Shop" not in mail.text


def test_a_mail_that_cannot_be_rendered_fails_alone_with_the_reason(app, api, order, smtp_server, caplog):
    with app.app_context():  # queued first: the run meets the failures before the good mail
        missing = notifications.enqueue_mail("ada@example.com", "no_such_template", "en", {"x": 1}, NOW,
                                             render_later=True)
        bad_context = notifications.enqueue_mail("ada@example.com", "return_created", "fr", {"items": 5}, NOW,
                                                 render_later=True)  # the template loops over items
        db.session.commit()
    ret = create_return(api)
    *_, good = mails(app)
    with app.app_context():
        db.session.execute(update(MailMessage).values(return_id=good.return_id))
        db.session.commit()

    with caplog.at_level(logging.INFO, logger="rma_service"):
        assert run_jobs(app, NOW, "send_mail") == {"send_mail": 1}
    [message] = smtp_server.wait_for(1)
    assert message["Subject"] == f"Your return {ret['rma_number']} for order 1001"

    by_id = {m.id: m for m in mails(app)}
    assert by_id[good.id].status == "sent" and by_id[good.id].subject == message["Subject"]
    for mail, reason in ((missing, "TemplateNotFound"), (bad_context, "TypeError")):
        row = by_id[mail.id]
        assert row.status == "failed" and row.attempts == 1 and row.first_attempt_at == NOW, reason
        assert row.locked_until is None and row.subject is None and row.text is None
        assert row.last_error.startswith(f"could not render template {mail.template} ({mail.locale}): {reason}")
        assert f"mail {mail.id} to ***@example.com failed for good: could not render" in caplog.text
    assert "ada@example.com" not in caplog.text

    # Failed for good: the next runs leave them alone …
    assert run_jobs(app, NOW + timedelta(hours=1), "send_mail") == {"send_mail": 0}
    # … until an agent sends one again once its cause is fixed: rendered then, and sent.
    with app.app_context():
        db.session.execute(update(MailMessage).where(MailMessage.id == bad_context.id)
                           .values(context=good.context))
        db.session.commit()
        notifications.send_again(bad_context.id, good.return_id, NOW + timedelta(hours=2))
    assert run_jobs(app, NOW + timedelta(hours=2), "send_mail") == {"send_mail": 1}
    [_, again] = smtp_server.wait_for(2)
    assert again["Subject"] == f"Votre retour {ret['rma_number']} pour la commande 1001"
    assert again["Message-ID"] == bad_context.message_id
    assert by_id[missing.id].status == "failed"


@pytest.mark.parametrize("context, where", [
    ({"refund": {"amount_due": Decimal("49.90")}}, "context.refund.amount_due is Decimal"),
    ({"items": [{"at": datetime(2026, 1, 1, tzinfo=timezone.utc)}]}, "context.items[0].at is datetime"),
    ({"items": ("a", "b")}, "context.items is tuple"),
    ({"name": Markup("<b>Ada</b>")}, "context.name is Markup"),
    ({"totals": {1: "one"}}, "context.totals: key 1 is not a string"),
    ({"rate": float("nan")}, "context.rate is float nan"),
])
def test_a_context_json_would_not_give_back_unchanged_is_refused_when_queued(app, context, where):
    with app.app_context():
        with pytest.raises(TypeError, match="render_later") as info:
            notifications.enqueue_mail("ada@example.com", "return_created", "en", context, NOW, render_later=True)
        assert str(info.value).startswith(where)
        db.session.rollback()
        assert db.session.scalar(select(MailMessage.id)) is None

"""The webhook and mail adapters against real local servers (pytest-httpserver, aiosmtpd)."""
from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from rma_service.adapters import signing
from rma_service.adapters.mail import MailError, SmtpSettings, send_mail
from rma_service.adapters.webhooks import DeliveryResult, WebhookSender
from tests.smtp_server import SmtpServer, smtp_server  # noqa: F401  (fixture)

SECRET = "whsec_test_0123456789abcdef"
NOW = 1_795_000_000
BODY = json.dumps({"id": "evt_01", "type": "return.created", "created_at": "2026-11-18T08:26:40Z",
                   "data": {"rma_number": "RMA-7K2M-9QX4", "note": "Renvoyé à l'entrepôt"}},
                  ensure_ascii=False).encode()


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port that refuses connections: bound (so nobody else takes it), not listening."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture
def sender() -> Iterator[WebhookSender]:
    with WebhookSender(timeout=(1.0, 2.0)) as webhook_sender:
        yield webhook_sender


def assert_failed_without_secret(result: DeliveryResult) -> None:
    assert not result.ok
    assert result.error
    assert SECRET not in result.error
    assert result.duration_ms >= 0


# --- webhooks -------------------------------------------------------------------------------

class TestWebhookSender:
    def test_delivers_a_signed_body(self, httpserver: HTTPServer, sender: WebhookSender) -> None:
        httpserver.expect_oneshot_request("/hooks/rma", method="POST").respond_with_data(
            "", status=204)

        result = sender.deliver(httpserver.url_for("/hooks/rma"), BODY, SECRET, now=NOW)

        assert result.ok and result.status_code == 204 and result.error is None
        httpserver.check_assertions()
        [(request, _)] = httpserver.log
        assert request.get_data() == BODY
        assert request.headers["Content-Type"] == "application/json"
        assert request.headers["User-Agent"] == "rma-service"
        signature = request.headers["RMA-Signature"]
        assert signature.startswith(f"t={NOW},v1=")
        assert signing.verify([SECRET], request.get_data(), signature, now=NOW)
        assert not signing.verify(["another secret"], request.get_data(), signature, now=NOW)

    def test_signature_defaults_to_the_current_time(self, httpserver: HTTPServer,
                                                    sender: WebhookSender) -> None:
        httpserver.expect_oneshot_request("/hook").respond_with_data("ok")
        assert sender.deliver(httpserver.url_for("/hook"), BODY, SECRET).ok
        [(request, _)] = httpserver.log
        assert signing.verify([SECRET], BODY, request.headers["RMA-Signature"])

    def test_server_error_is_a_failure(self, httpserver: HTTPServer,
                                       sender: WebhookSender) -> None:
        httpserver.expect_oneshot_request("/hook").respond_with_data("boom", status=500)
        result = sender.deliver(httpserver.url_for("/hook"), BODY, SECRET, now=NOW)
        assert_failed_without_secret(result)
        assert result.status_code == 500
        assert result.error == "HTTP 500 INTERNAL SERVER ERROR"

    def test_redirect_is_a_failure_and_not_followed(self, httpserver: HTTPServer,
                                                    sender: WebhookSender) -> None:
        httpserver.expect_oneshot_request("/hook").respond_with_data(
            "", status=302, headers={"Location": httpserver.url_for("/elsewhere")})
        result = sender.deliver(httpserver.url_for("/hook"), BODY, SECRET, now=NOW)
        assert_failed_without_secret(result)
        assert result.status_code == 302
        assert [request.path for request, _ in httpserver.log] == ["/hook"]

    def test_slow_receiver_times_out(self, httpserver: HTTPServer) -> None:
        release = threading.Event()

        def slow(request: Request) -> Response:
            release.wait(5)
            return Response("too late")

        httpserver.expect_oneshot_request("/hook").respond_with_handler(slow)
        with WebhookSender(timeout=(1.0, 0.2)) as impatient:
            try:
                result = impatient.deliver(httpserver.url_for("/hook"), BODY, SECRET, now=NOW)
            finally:
                release.set()
        assert_failed_without_secret(result)
        assert result.status_code is None
        assert result.error is not None and result.error.startswith("read timeout")

    def test_connection_refused(self, closed_port: int, sender: WebhookSender) -> None:
        result = sender.deliver(f"http://127.0.0.1:{closed_port}/hook", BODY, SECRET, now=NOW)
        assert_failed_without_secret(result)
        assert result.status_code is None
        assert result.error is not None and result.error.startswith("connection error")
        assert "refused" in result.error.lower()

    def test_invalid_url_is_a_failure_not_an_exception(self, sender: WebhookSender) -> None:
        result = sender.deliver("not a url", BODY, SECRET, now=NOW)
        assert_failed_without_secret(result)
        assert result.error is not None and result.error.startswith("request error")

    def test_secret_in_a_failing_url_is_masked(self, closed_port: int,
                                               sender: WebhookSender) -> None:
        result = sender.deliver(f"http://127.0.0.1:{closed_port}/{SECRET}", BODY, SECRET)
        assert_failed_without_secret(result)


# --- mail -----------------------------------------------------------------------------------

class TestSendMail:
    def test_plain_text(self, smtp_server: SmtpServer) -> None:  # noqa: F811
        settings = SmtpSettings(smtp_server.host, smtp_server.port)
        send_mail(settings, "client@example.org", "Your return RMA-7K2M-9QX4", "Hello,\nthanks.")

        [message] = smtp_server.wait_for(1)
        assert message.mail_from == "returns@example.com"
        assert message.rcpt_tos == ["client@example.org"]
        assert message["From"] == "returns@example.com"
        assert message["To"] == "client@example.org"
        assert message["Subject"] == "Your return RMA-7K2M-9QX4"
        assert message["Date"]
        assert message["Message-ID"].endswith("@example.com>")
        assert message.get_content_type() == "text/plain"
        assert message.get_content() == "Hello,\nthanks.\n"

    def test_html_alternative_with_french_accents(
            self, smtp_server: SmtpServer) -> None:  # noqa: F811
        settings = SmtpSettings(smtp_server.host, smtp_server.port, sender="retours@boutique.fr")
        subject = "Votre retour RMA-7K2M-9QX4 a été reçu à l'entrepôt — ça avance"
        text = "Bonjour Zoé,\nnous avons bien reçu votre colis. Remboursement sous 14 jours.\n"
        html = "<p>Bonjour Zoé,</p><p>nous avons bien reçu votre colis : « déjà traité ».</p>\n"

        send_mail(settings, "zoe@exemple.fr", subject, text, html,
                  message_id="<outbox-42@boutique.fr>",
                  headers={"Reply-To": "sav@boutique.fr", "Auto-Submitted": "auto-generated"})

        [message] = smtp_server.wait_for(1)
        raw = message.as_bytes()
        assert "été".encode() not in raw.split(b"\n\n", 1)[0]  # headers are RFC 2047 encoded
        assert message["Subject"] == subject
        assert message["Message-ID"] == "<outbox-42@boutique.fr>"
        assert message["Reply-To"] == "sav@boutique.fr"
        assert message["Auto-Submitted"] == "auto-generated"
        assert message.get_content_type() == "multipart/alternative"
        plain, rich = message.iter_parts()
        assert plain.get_content_type() == "text/plain"
        assert plain.get_content_charset() == "utf-8"
        assert plain.get_content() == text
        assert rich.get_content_type() == "text/html"
        assert rich.get_content() == html

    def test_same_message_id_on_retry(self, smtp_server: SmtpServer) -> None:  # noqa: F811
        settings = SmtpSettings(smtp_server.host, smtp_server.port)
        for _ in range(2):
            send_mail(settings, "client@example.org", "Retry", "body", message_id="<evt-7@rma>")
        first, second = smtp_server.wait_for(2)
        assert first["Message-ID"] == second["Message-ID"] == "<evt-7@rma>"

    def test_nothing_listening_raises_mail_error(self, closed_port: int) -> None:
        settings = SmtpSettings("127.0.0.1", closed_port, username="shop", password="s3cr3t-pw")
        with pytest.raises(MailError, match="refused") as caught:
            send_mail(settings, "client@example.org", "Subject", "body")
        assert f"127.0.0.1:{closed_port}" in str(caught.value)
        assert "s3cr3t-pw" not in str(caught.value)
        assert "s3cr3t-pw" not in repr(settings)

    def test_login(self) -> None:
        logins: list[tuple[bytes, bytes]] = []

        def authenticator(server: object, session: object, envelope: object, mechanism: str,
                          auth_data: object) -> AuthResult:
            assert isinstance(auth_data, LoginPassword)
            logins.append((auth_data.login, auth_data.password))
            return AuthResult(success=auth_data.password == b"good-pw", handled=False)

        with SmtpServer(authenticator=authenticator, auth_require_tls=False) as server:
            good = SmtpSettings(server.host, server.port, username="shop", password="good-pw")
            send_mail(good, "client@example.org", "Subject", "body")
            assert len(server.wait_for(1)) == 1

            bad = SmtpSettings(server.host, server.port, username="shop", password="bad-pw")
            with pytest.raises(MailError, match="SMTPAuthenticationError 535") as caught:
                send_mail(bad, "client@example.org", "Subject", "body")
            assert "bad-pw" not in str(caught.value)
            assert len(server.messages) == 1
        assert logins[0] == (b"shop", b"good-pw")

    def test_header_injection_is_refused(self, smtp_server: SmtpServer) -> None:  # noqa: F811
        settings = SmtpSettings(smtp_server.host, smtp_server.port)
        with pytest.raises(ValueError):
            send_mail(settings, "client@example.org\r\nBcc: victim@example.org", "S", "body")
        assert smtp_server.messages == []

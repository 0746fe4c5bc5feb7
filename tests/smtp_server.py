"""A real SMTP server for tests (aiosmtpd), as a pytest plugin.

Register with ``pytest_plugins = ["tests.smtp_server"]`` in the root ``tests/conftest.py``,
or import the fixture into a test module: ``from tests.smtp_server import smtp_server``.

``smtp_server`` listens on 127.0.0.1 on a free port and keeps every message it receives, parsed
with the modern email policy, together with its SMTP envelope::

    def test_mail(smtp_server):
        send_mail(SmtpSettings(smtp_server.host, smtp_server.port), ...)
        [message] = smtp_server.wait_for(1)
        assert message["Subject"] == "..." and message.rcpt_tos == ["..."]

``SmtpServer(**smtp_kwargs)`` builds a variant (``authenticator=...``, ``auth_require_tls=False``
for a server that accepts a login), used as a context manager.
"""
from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

HOST = "127.0.0.1"


class ReceivedMessage(EmailMessage):
    """An ``EmailMessage`` as it arrived, with the envelope sender and recipients."""

    mail_from: str = ""
    rcpt_tos: list[str]


class SmtpServer:
    """An aiosmtpd server on a free loopback port collecting messages in ``.messages``."""

    def __init__(self, **smtp_kwargs: Any) -> None:
        self.host = HOST
        self.port = _free_port()
        self.messages: list[ReceivedMessage] = []
        self._arrived = threading.Condition()
        self._controller = Controller(self, hostname=self.host, port=self.port, **smtp_kwargs)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """aiosmtpd handler hook: parse and keep the message, then accept it."""
        # SMTP carries CRLF line ends; parse with Python's "\n" so contents compare as written.
        content = (envelope.original_content or b"").replace(b"\r\n", b"\n")
        message = BytesParser(_class=ReceivedMessage, policy=policy.default).parsebytes(content)
        assert isinstance(message, ReceivedMessage)
        message.mail_from = envelope.mail_from or ""
        message.rcpt_tos = list(envelope.rcpt_tos)
        with self._arrived:
            self.messages.append(message)
            self._arrived.notify_all()
        return "250 Message accepted for delivery"

    def wait_for(self, n: int, timeout: float = 5) -> list[ReceivedMessage]:
        """Wait until at least ``n`` messages arrived, return them all; fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while len(self.messages) < n:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"expected {n} message(s) within {timeout} s, "
                                         f"got {len(self.messages)}")
                self._arrived.wait(remaining)
            return list(self.messages)

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()

    def __enter__(self) -> SmtpServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A running SMTP server on 127.0.0.1 (``.host``, ``.port``, ``.messages``, ``.wait_for``)."""
    with SmtpServer() as server:
        yield server

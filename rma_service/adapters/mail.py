"""Sending mail over SMTP (smtplib), with optional STARTTLS and login."""
from __future__ import annotations

import smtplib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid


class MailError(Exception):
    """A mail could not be handed to the SMTP server. The message never carries the password."""


@dataclass(frozen=True)
class SmtpSettings:
    """Where and how to send. ``use_tls`` upgrades the connection with STARTTLS."""

    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    use_tls: bool = False
    sender: str = "returns@example.com"
    timeout: float = 10


def build_message(sender: str, to: str, subject: str, text: str, html: str | None = None, *,
                  message_id: str | None = None,
                  headers: Mapping[str, str] | None = None) -> EmailMessage:
    """A UTF-8 ``EmailMessage``: plain text, or multipart/alternative (text, html) with html.

    ``message_id`` (``<unique@domain>``) defaults to a fresh one on the sender's domain; pass
    a stable one (derived from the outbox row) so that a retried mail is recognisable.
    ``headers`` adds or replaces headers (``Reply-To``, ``Auto-Submitted``…). Raises
    ``ValueError`` for header values that cannot be sent (a line break in an address…).
    """
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = message_id or make_msgid(domain=sender.rpartition("@")[2] or None)
    for name, value in (headers or {}).items():
        del message[name]
        message[name] = value
    message.set_content(text)
    if html is not None:
        message.add_alternative(html, subtype="html")
    return message


def send_mail(settings: SmtpSettings, to: str, subject: str, text: str, html: str | None = None,
              *, message_id: str | None = None, headers: Mapping[str, str] | None = None) -> None:
    """Build the message (see ``build_message``) and hand it to the SMTP server.

    Raises ``MailError`` when the server cannot be reached, refuses the login or the
    recipients, or the connection breaks; the caller (the scheduler) decides about retries.
    """
    message = build_message(settings.sender, to, subject, text, html, message_id=message_id,
                            headers=headers)
    try:
        with smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout) as smtp:
            if settings.use_tls:
                smtp.starttls(context=ssl.create_default_context())
            if settings.username:
                smtp.login(settings.username, settings.password or "")
            smtp.send_message(message)
    except (smtplib.SMTPException, OSError) as exc:
        reason = _describe(exc)
        if settings.password:
            reason = reason.replace(settings.password, "***")
        raise MailError(f"could not send mail to {to} via {settings.host}:{settings.port}: "
                        f"{reason}") from exc


class MailSession:
    """One SMTP connection for many mails (a scheduler run sends a batch over it).

    Connects on the first ``send``, reuses the connection afterwards; a connection the server
    dropped while idle is re-opened once, transparently. Any other trouble closes it and
    raises ``MailError`` (the next ``send`` connects again). Not thread-safe: one per thread.
    """

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings
        self._smtp: smtplib.SMTP | None = None

    def send(self, to: str, subject: str, text: str, html: str | None = None, *,
             message_id: str | None = None, headers: Mapping[str, str] | None = None) -> None:
        """Like ``send_mail``, over this session's connection."""
        message = build_message(self.settings.sender, to, subject, text, html, message_id=message_id,
                                headers=headers)
        reused = self._smtp is not None
        try:
            try:
                self._connection().send_message(message)
            except smtplib.SMTPServerDisconnected:
                if not reused:
                    raise
                self.close()  # dropped while idle: one fresh connection, one more try
                self._connection().send_message(message)
        except (smtplib.SMTPException, OSError) as exc:
            self.close()
            reason = _describe(exc)
            if self.settings.password:
                reason = reason.replace(self.settings.password, "***")
            raise MailError(f"could not send mail to {to} via {self.settings.host}:{self.settings.port}: "
                            f"{reason}") from exc

    def _connection(self) -> smtplib.SMTP:
        if self._smtp is None:
            settings = self.settings
            smtp = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout)
            try:
                if settings.use_tls:
                    smtp.starttls(context=ssl.create_default_context())
                if settings.username:
                    smtp.login(settings.username, settings.password or "")
            except BaseException:
                smtp.close()
                raise
            self._smtp = smtp
        return self._smtp

    def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                smtp.close()

    def __enter__(self) -> MailSession:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _describe(exc: smtplib.SMTPException | OSError) -> str:
    """The server's answer for an SMTP refusal (``SMTPAuthenticationError 535 …``), else the
    error itself (``ConnectionRefusedError: [Errno 111] Connection refused``)."""
    if isinstance(exc, smtplib.SMTPResponseException):
        answer = exc.smtp_error
        text = answer.decode(errors="replace") if isinstance(answer, bytes) else str(answer)
        return f"{type(exc).__name__} {exc.smtp_code} {text}"
    return f"{type(exc).__name__}: {exc}"

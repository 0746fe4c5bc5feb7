"""Template helpers of the customer pages: money and dates in the reader's language, the QR
code, the plain-word labels of the service's codes."""
from __future__ import annotations

from flask import Flask
from flask_babel import format_date, format_time
from markupsafe import Markup

from . import texts


def qr_svg(payload: str, title: str = "") -> Markup:
    """The QR code of ``payload`` as inline SVG (segno), sized by CSS; black on white with
    the quiet zone the scanners need."""
    import segno
    svg = segno.make(payload, error="m", micro=False).svg_inline(
        scale=4, border=4, dark="#000", light="#fff", omitsize=True, title=title or None,
        svgclass="qr-code", lineclass=None)
    return Markup(svg.replace("<svg ", '<svg role="img" focusable="false" ', 1))


def when(value) -> str:
    """A moment, in the reader's time zone: "25 novembre 2026, 13:05", "November 25, 2026, 1:05 PM"."""
    if value is None:
        return ""
    return f"{format_date(value, 'long')}, {format_time(value, 'short')}"


def register_template_helpers(app: Flask) -> None:
    app.jinja_env.globals.update(
        qr_svg=qr_svg, money=texts.money, day=texts.day, when=when,
        status_label=texts.status_label, reason_label=texts.reason_label,
        resolution_labels=texts.RESOLUTION_LABELS, resolution_hints=texts.RESOLUTION_HINTS,
        ineligible_reason=texts.ineligible_reason, problem_message=texts.problem_message)

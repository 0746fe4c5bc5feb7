"""Prepaid return labels as PDF: page 1 is the label, page 2 the packing slip.

``render_label_pdf(LabelDocument(...))`` returns the bytes of the PDF. Nothing here needs a
Flask app: the template ``templates/labels/label.html`` is rendered by a standalone Jinja
environment and the stylesheet ``templates/labels/label.css`` is compiled by WeasyPrint.

Start-up cost: importing this module loads the standard library only. WeasyPrint (half a
second to import, plus fontconfig start-up), python-barcode (which drags Pillow in), segno,
Babel and Jinja are imported on the first render, and the Jinja environment, the compiled
stylesheet, the font configuration and the URL fetcher are then kept for the life of the
process, so later renders only lay out the document.

Nothing is fetched while rendering: the barcodes and the QR code are embedded as ``data:``
URIs, the only scheme the URL fetcher accepts (anything else stops the rendering with an
error), there is no base URL, and the fonts are system fonts (DejaVu Sans, fonts-dejavu-core).

Dates are printed as the calendar date of the datetime given: pass them already converted to
the time zone the customer should read (naive datetimes are printed as they are).
"""
from __future__ import annotations

import base64
import contextlib
import functools
import gc
import math
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "templates"
_TEMPLATE = "labels/label.html"
_STYLESHEET = TEMPLATES_DIR / "labels" / "label.css"

PAGE_FORMATS = ("4x6", "a4")
LOCALES = ("en", "fr")

# Code 128 geometry, in millimetres. 0.375 mm is 3 dots of a 203 dpi thermal printer and
# 3 pixels at 200 dpi; long codes get narrower bars (down to about 2 dots) to fit the label.
_BAR_MODULE_MM = 0.375
_BAR_MIN_MODULE_MM = 0.25
_BAR_MAX_WIDTH_MM = 90.0
_BAR_QUIET_MODULES = 12  # the symbology asks for at least 10 on each side

# The sender's address ("from") has room for 6 lines of 8 pt between the head and the
# warehouse's block. A longer one (a company, a building, "for the attention of": the API takes
# 200 characters a line) is set smaller, down to 5 pt, rather than pushing the barcodes and the
# dates off the label (label.css also stops it at that height, should the estimate fall short).
# A line of 8 pt holds about 64 characters on the label; words wrap, hence the margin.
_FROM_SIZES_PT = (8.0, 7.0, 6.0, 5.0)
_FROM_LINES_AT_8PT = 6
_FROM_CHARS_AT_8PT = 64 * 0.9

# Postal usage: these countries write the city before the postal code.
_CITY_FIRST = frozenset({"AU", "CA", "GB", "IE", "US"})

_MONTHS_EN = ("Jan", "Feb", "Mar", "Apr", "May", "Jun",
              "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

_STRINGS: dict[str, dict[str, str]] = {
    "en": {
        "title": "Return label",
        "return": "RETURN",
        "from": "From",
        "to": "To",
        "rma": "Return authorisation (RMA)",
        "tracking": "Tracking number",
        "order": "Order",
        "weight": "Weight",
        "issued": "Issued",
        "expires": "Valid until",
        "packing_slip": "Packing slip",
        "sku": "SKU",
        "item": "Item",
        "quantity": "Qty",
        "reason": "Reason",
        "instructions": ("Put this slip inside the parcel with the items listed below. "
                         "Stick the label (page 1) on the outside of the parcel, covering any "
                         "old label or barcode, and hand the parcel to {carrier}."),
        "deadline": "Please send it before {date}; after that date the label is no longer valid.",
        "thanks": "Thank you!",
    },
    "fr": {
        "title": "Étiquette de retour",
        "return": "RETOUR",
        "from": "Expéditeur",
        "to": "Destinataire",
        "rma": "Autorisation de retour (RMA)",
        "tracking": "Numéro de suivi",
        "order": "Commande",
        "weight": "Poids",
        "issued": "Émise le",
        "expires": "Valable jusqu’au",
        "packing_slip": "Bordereau de retour",
        "sku": "Réf.",
        "item": "Article",
        "quantity": "Qté",
        "reason": "Motif",
        "instructions": ("Placez ce bordereau dans le colis avec les articles ci-dessous. "
                         "Collez l’étiquette (page 1) sur le colis en masquant toute ancienne "
                         "étiquette ou tout ancien code-barres, puis confiez le colis à {carrier}."),
        "deadline": "Merci de l’envoyer avant le {date}\u00a0; passé cette date, l’étiquette n’est "
                    "plus valable.",
        "thanks": "Merci\u00a0!",
    },
}

# The return reasons of the API contract; an unknown code is printed as it is.
_REASONS: dict[str, dict[str, str]] = {
    "en": {
        "damaged": "Damaged", "defective": "Defective", "wrong_item": "Wrong item",
        "not_as_described": "Not as described", "too_small": "Too small",
        "too_large": "Too large", "changed_mind": "Changed my mind",
        "arrived_late": "Arrived late", "other": "Other",
    },
    "fr": {
        "damaged": "Endommagé", "defective": "Défectueux", "wrong_item": "Mauvais article",
        "not_as_described": "Non conforme à la description", "too_small": "Trop petit",
        "too_large": "Trop grand", "changed_mind": "Changement d’avis",
        "arrived_late": "Livré en retard", "other": "Autre",
    },
}


@dataclass(frozen=True)
class Address:
    name: str
    line1: str
    postal_code: str
    city: str
    country: str  # ISO 3166-1 alpha-2
    line2: str | None = None


@dataclass(frozen=True)
class LabelItem:
    sku: str
    name: str
    quantity: int
    reason: str  # a reason code of the API (damaged, too_small, …)


@dataclass(frozen=True)
class LabelDocument:
    rma_number: str
    tracking_number: str
    carrier_name: str
    service: str
    sender: Address      # the customer ("from")
    recipient: Address   # the warehouse ("to")
    order_number: str
    items: list[LabelItem]
    locale: str = "en"            # "en" | "fr"; "fr-FR", "fr_CA"… count as "fr", others as "en"
    page_format: str = "4x6"      # "4x6" (4×6 in) | "a4" (A4, label in the top-left quarter)
    weight_grams: int | None = None
    qr_payload: str | None = None  # defaults to the RMA number
    issued_at: datetime | None = None
    expires_at: datetime | None = None


def render_label_pdf(doc: LabelDocument) -> bytes:
    """The label (page 1) and the packing slip (page 2 and more if the list is long) as PDF.

    Raises ValueError for an unknown ``page_format``.
    """
    if doc.page_format not in PAGE_FORMATS:
        raise ValueError(f"page_format must be one of {PAGE_FORMATS}, not {doc.page_format!r}")
    renderer = _renderer()
    markup = renderer.template.render(_context(doc))
    with renderer.lock, _collection_paused():
        html = renderer.html(string=markup, url_fetcher=renderer.url_fetcher)
        pdf: bytes = html.write_pdf(stylesheets=[renderer.css],
                                    font_config=renderer.font_config)
    return pdf


@contextlib.contextmanager
def _collection_paused() -> Iterator[None]:
    """The cyclic garbage collector paused for the duration of a render.

    A render allocates objects that mostly live until it ends, thousands of them in reference
    cycles (computed styles, element trees, boxes). With the collector running, they are
    scanned again and again by the young generations and promoted to the old one, which brings
    a full collection of the whole process (tens of ms) every ten renders or so: 4.8 ms of GC
    per render on average. Paused, the garbage of a render is found by one young collection
    right after it: 2.1 ms. Nothing escapes collection, only its timing changes. Renders are
    serialised, so pauses cannot interleave, and a collector disabled by someone else stays so.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class _Renderer(NamedTuple):
    """Everything that is costly to build and safe to keep between renders."""
    template: Any           # jinja2.Template
    html: Callable[..., Any]  # weasyprint.HTML
    css: Any                # weasyprint.CSS, compiled once
    font_config: Any        # weasyprint.text.fonts.FontConfiguration
    url_fetcher: Any        # weasyprint.URLFetcher accepting data: URIs only
    # The font configuration (a Pango font map) is shared and WeasyPrint is not documented
    # as thread-safe: renders are serialised. Labels are rendered once and stored, so this
    # costs nothing that matters, even under a threaded server.
    lock: threading.Lock


@functools.cache
def _renderer() -> _Renderer:
    import jinja2
    import weasyprint
    from weasyprint.text.fonts import FontConfiguration

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES_DIR), autoescape=True,
                             trim_blocks=True, lstrip_blocks=True,
                             undefined=jinja2.StrictUndefined)
    font_config = FontConfiguration()
    url_fetcher = weasyprint.URLFetcher(allowed_protocols=("data",), allow_redirects=False,
                                        fail_on_errors=True)
    css = weasyprint.CSS(string=_STYLESHEET.read_text(encoding="utf-8"),
                         font_config=font_config, url_fetcher=url_fetcher)
    return _Renderer(template=env.get_template(_TEMPLATE), html=weasyprint.HTML, css=css,
                     font_config=font_config, url_fetcher=url_fetcher, lock=threading.Lock())


def _context(doc: LabelDocument) -> dict[str, Any]:
    lang = _language(doc.locale)
    strings = _STRINGS[lang]
    instructions = strings["instructions"].format(carrier=doc.carrier_name)
    if doc.expires_at is not None:
        instructions += " " + strings["deadline"].format(date=_format_date(doc.expires_at, lang))
    reasons = _REASONS[lang]
    sender_lines = _address_lines(doc.sender, lang)
    return {
        "lang": lang,
        "t": strings,
        "doc": doc,
        "page_format": doc.page_format,
        "sender_lines": sender_lines,
        "sender_font_pt": _sender_font_pt(sender_lines),
        "recipient_lines": _address_lines(doc.recipient, lang),
        "rma_barcode": _code128_data_uri(doc.rma_number, bar_height_mm=13),
        "tracking_barcode": _code128_data_uri(doc.tracking_number, bar_height_mm=16),
        "qr_code": _qr_data_uri(doc.qr_payload or doc.rma_number),
        "facts": _facts(doc, lang),
        "items": [(item, reasons.get(item.reason, item.reason)) for item in doc.items],
        "instructions": instructions,
    }


def _facts(doc: LabelDocument, lang: str) -> list[tuple[str, str]]:
    """(caption, value) pairs for the bottom line of the label; unknown values are left out."""
    strings = _STRINGS[lang]
    facts = [(strings["order"], doc.order_number)]
    if doc.weight_grams is not None:
        facts.append((strings["weight"], _format_weight(doc.weight_grams, lang)))
    if doc.issued_at is not None:
        facts.append((strings["issued"], _format_date(doc.issued_at, lang)))
    if doc.expires_at is not None:
        facts.append((strings["expires"], _format_date(doc.expires_at, lang)))
    return facts


def _language(locale: str) -> str:
    lang = locale.replace("_", "-").split("-", 1)[0].lower()
    return lang if lang in LOCALES else "en"


def _address_lines(address: Address, lang: str) -> list[str]:
    """The lines of an address in postal order, last lines in capitals as postal services ask."""
    country = address.country.upper()
    locality = (f"{address.city} {address.postal_code}" if country in _CITY_FIRST
                else f"{address.postal_code} {address.city}")
    lines = [address.name, address.line1, address.line2, locality.upper(),
             _country_name(country, lang).upper()]
    # The template joins the lines with newlines that break them (white-space: pre-line), so a
    # line break inside a line is made a space and a line of HTML white space only, which would
    # print as an empty line, is left out.
    return [line.replace("\r", " ").replace("\n", " ") for line in lines
            if line and line.strip(" \t\n\r\f")]


def _sender_font_pt(lines: list[str]) -> float:
    """The largest size of ``_FROM_SIZES_PT`` at which ``lines``, wrapped, fit the room of
    6 lines of 8 pt (the smallest size when none does)."""
    for size in _FROM_SIZES_PT:
        per_line = _FROM_CHARS_AT_8PT * 8.0 / size
        wrapped = sum(max(1, math.ceil(len(line) / per_line)) for line in lines)
        if wrapped * size <= _FROM_LINES_AT_8PT * 8.0:
            return size
    return _FROM_SIZES_PT[-1]


@functools.cache
def _country_name(code: str, lang: str) -> str:
    from babel import Locale

    name: str = Locale.parse(lang).territories.get(code, code)
    return name


def _format_date(moment: datetime, lang: str) -> str:
    if lang == "fr":
        return f"{moment.day:02d}/{moment.month:02d}/{moment.year}"
    return f"{moment.day} {_MONTHS_EN[moment.month - 1]} {moment.year}"


def _format_weight(grams: int, lang: str) -> str:
    if grams < 1000:
        return f"{grams} g"
    kilograms = f"{grams / 1000:.2f}".rstrip("0").rstrip(".")
    return (kilograms.replace(".", ",") if lang == "fr" else kilograms) + " kg"


def _code128_data_uri(data: str, *, bar_height_mm: float) -> str:
    """A Code 128 symbol of ``data`` as an SVG data URI, quiet zones included.

    python-barcode encodes (character sets, check symbol); the SVG is written here as a
    single path rather than by python-barcode's SVGWriter, which builds one ``<rect>`` per bar
    through minidom and no viewBox: generating it and drawing it in WeasyPrint both cost
    several times more. The bar width is chosen so that the symbol fits the label.
    """
    from barcode import Code128

    pattern = Code128(data).build()[0]  # "1101001…": one character per module, 1 = bar
    total = len(pattern) + 2 * _BAR_QUIET_MODULES
    module_mm = max(_BAR_MIN_MODULE_MM, min(_BAR_MODULE_MM, _BAR_MAX_WIDTH_MM / total))
    bars = [f"M{_BAR_QUIET_MODULES + run.start()} 0h{len(run.group())}v1h-{len(run.group())}z"
            for run in re.finditer("1+", pattern)]
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{total * module_mm:.3f}mm" '
           f'height="{bar_height_mm}mm" viewBox="0 0 {total} 1" preserveAspectRatio="none" '
           f'shape-rendering="crispEdges"><rect width="{total}" height="1" fill="#fff"/>'
           f'<path d="{"".join(bars)}" fill="#000"/></svg>')
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode("ascii")).decode("ascii")


def _qr_data_uri(payload: str) -> str:
    """A QR code of ``payload`` as an SVG data URI with a viewBox (CSS sets its size)."""
    import segno

    qr = segno.make(payload, error="m", micro=False)
    uri: str = qr.svg_data_uri(border=4, omitsize=True, svgclass=None, lineclass=None)
    return uri

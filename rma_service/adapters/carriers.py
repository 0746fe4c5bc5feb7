"""Carriers that issue prepaid return labels, behind one small interface.

``build_carrier(name, settings)`` returns the carrier to use:

* ``"self"``: :class:`SelfIssuedCarrier`. The service issues its own tracking number and
  renders the label itself (``adapters.pdf.render_label_pdf``); nothing leaves the process.
* any other name: :class:`HttpCarrier`, a carrier (or shipping aggregator) with a JSON API,
  configured by these settings, where ``NAME`` is the carrier name in capitals with ``-``
  turned into ``_`` (``colissimo`` → ``CARRIER_COLISSIMO_URL``, set in the environment as
  ``RMA_CARRIER_COLISSIMO_URL``: ``config.py`` passes unknown ``RMA_*`` variables through):

  - ``CARRIER_NAME_URL`` (required): base URL of the API, e.g. ``https://api.example/v1``
  - ``CARRIER_NAME_API_KEY`` (required): sent as ``Authorization: Bearer <key>``
  - ``CARRIER_NAME_CONNECT_TIMEOUT`` (default 3.05): seconds to open a connection
  - ``CARRIER_NAME_READ_TIMEOUT`` (default 10): seconds to wait for each read of the answer
  - ``CARRIER_NAME_RETRIES`` (default 3): retries on HTTP 500/502/503/504, connection errors
    and timeouts

The HTTP protocol, as the carrier must implement it::

    POST {base}/shipments         Idempotency-Key: <reference>
      {"reference", "service", "label_format", "parcel": {"weight_grams"},
       "from": {address}, "to": {address}}     address: name, line1, line2, postal_code, city, country
    → 2xx {"tracking_number", "shipment_id", "label": {"pdf_base64"} | {"url"},
           "cost": "12.30", "currency": "EUR"}   (cost and currency optional)
    POST {base}/shipments/{shipment_id}/void     Idempotency-Key: void:<shipment_id>   → 2xx

A label given as a URL is downloaded at once with the same session: it must be served as
``application/pdf``, start with ``%PDF-`` and weigh at most 10 MiB; the API key is sent along
only when the URL is on the API's own host.

POST is retried (urllib3 ``Retry``) because every request carries an idempotency key: a retry
of a request the carrier did receive gives back the same shipment. ``Retry-After`` headers are
not obeyed, so that a carrier cannot park a worker for minutes; failures surface at once as
retryable :class:`CarrierError` and the caller's outbox tries again later.

Every failure is a :class:`CarrierError` whose message can be shown to an agent as is: it names
the carrier, never the API key (which is not logged either), and never a stack trace.
``retryable`` is False when the carrier refused the request (4xx: fix the data first, the
carrier's own message is quoted) and True for everything that may pass by itself: 5xx after
the retries, 408/425/429, timeouts, connection errors, answers that cannot be read or stored
(not JSON, a field missing, bad base64, not a PDF, a tracking number over 64 characters, a
shipment id over 128, a cost of 10^10 or more), and any failure to download the label of a
shipment the carrier did create (asking again with the same reference gives it back). A key
the carrier quotes in its answer is replaced by ``[API key]``.
"""
from __future__ import annotations

import base64
import binascii
import logging
import re
import secrets
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ReadTimeoutError
from urllib3.util import Retry

from .pdf import Address

logger = logging.getLogger(__name__)

SELF = "self"
MAX_LABEL_BYTES = 10 * 1024 * 1024
_RETRY_STATUSES = (500, 502, 503, 504)
# 4xx answers that mean "not now" rather than "no": worth trying again later.
_RETRYABLE_CLIENT_STATUSES = frozenset({408, 425, 429})
_MESSAGE_MAX_CHARS = 300
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Labels.cost is Numeric(12, 2): 10 digits before the point.
_MAX_COST = Decimal("1e10")


class CarrierError(Exception):
    """A carrier call failed.

    ``message`` is fit to show to people (no secret, no stack trace); ``retryable`` says whether
    the same call may succeed later (carrier down, timeout, garbled answer) or not (the carrier
    refused the request: fix the data first); ``status_code`` is the carrier's HTTP status, if
    it answered.
    """

    def __init__(self, message: str, *, retryable: bool, status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.status_code = status_code


@dataclass(frozen=True)
class ShipmentRequest:
    reference: str  # idempotency reference, e.g. "RMA-7K3P-9XQ2/1" (RMA number + label attempt)
    sender: Address
    recipient: Address
    weight_grams: int | None
    service: str
    label_format: str = "pdf"


@dataclass(frozen=True)
class ShipmentResult:
    tracking_number: str
    carrier_shipment_id: str
    label_pdf: bytes | None   # None: render our own label (SelfIssuedCarrier)
    label_url: str | None     # where the carrier's label was downloaded from, if it gave a URL
    cost: Decimal | None
    currency: str | None      # ISO 4217


class Carrier(Protocol):
    name: str

    def create_shipment(self, req: ShipmentRequest) -> ShipmentResult: ...

    def void_shipment(self, carrier_shipment_id: str) -> None: ...


class SelfIssuedCarrier:
    """Labels issued by the service itself: random tracking numbers, no carrier API.

    Tracking numbers are ``SI`` + 12 random digits + a Luhn check digit (15 characters); the
    shipment id is the tracking number. Voiding is a no-op: nothing was booked anywhere.
    """

    name = SELF

    def create_shipment(self, req: ShipmentRequest) -> ShipmentResult:
        digits = f"{secrets.randbelow(10**12):012d}"
        tracking_number = f"SI{digits}{_luhn_check_digit(digits)}"
        return ShipmentResult(tracking_number=tracking_number,
                              carrier_shipment_id=tracking_number, label_pdf=None,
                              label_url=None, cost=None, currency=None)

    def void_shipment(self, carrier_shipment_id: str) -> None:
        """Nothing to cancel: no carrier knows about the shipment."""


class HttpCarrier:
    """A carrier with the JSON API described in the module docstring."""

    def __init__(self, name: str, base_url: str, api_key: str,
                 timeout: float | tuple[float, float] = (3.05, 10), retries: int = 3,
                 backoff: float = 0.2, *, max_label_bytes: int = MAX_LABEL_BYTES) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._timeout = timeout
        self._max_label_bytes = max_label_bytes
        retry = Retry(total=retries, connect=retries, read=retries, status=retries, other=0,
                      redirect=0, backoff_factor=backoff, status_forcelist=_RETRY_STATUSES,
                      allowed_methods=frozenset({"GET", "POST"}), raise_on_status=False,
                      respect_retry_after_header=False)
        self._session = requests.Session()
        self._session.headers["User-Agent"] = "rma-service"
        adapter = HTTPAdapter(max_retries=retry)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)

    def __repr__(self) -> str:  # never show the API key
        return f"HttpCarrier(name={self.name!r}, base_url={self.base_url!r})"

    def close(self) -> None:
        self._session.close()

    def create_shipment(self, req: ShipmentRequest) -> ShipmentResult:
        payload = {
            "reference": req.reference,
            "service": req.service,
            "label_format": req.label_format,
            "parcel": {"weight_grams": req.weight_grams},
            "from": asdict(req.sender),
            "to": asdict(req.recipient),
        }
        response = self._call("POST", f"{self.base_url}/shipments", json=payload,
                              headers=self._api_headers(idempotency_key=req.reference))
        body = self._json_object(response)
        label = body.get("label")
        if not isinstance(label, dict):
            raise self._invalid("label is missing")
        label_url: str | None = None
        if label.get("pdf_base64") is not None:
            label_pdf = self._decode_label(label["pdf_base64"])
        elif label.get("url") is not None:
            label_url = self._string(label, "url", "label.url")
            try:
                label_pdf = self._download_label(label_url)
            except CarrierError as exc:
                if exc.retryable:
                    raise
                # The shipment exists at the carrier by now: a refused download (a label not
                # ready yet, an expired link) must not fail the label, or an agent's reissue
                # would buy a second shipment while this one is never voided. The retry asks
                # again with the same reference and gets this shipment back.
                raise self._fail(f"The carrier {self.name} created the shipment but its label could "
                                 f"not be downloaded (HTTP {exc.status_code}); try again later.",
                                 retryable=True, status_code=exc.status_code) from None
        else:
            raise self._invalid("label has neither pdf_base64 nor url")
        cost, currency = self._cost(body)
        return ShipmentResult(tracking_number=self._string(body, "tracking_number", max_len=64),
                              carrier_shipment_id=self._string(body, "shipment_id", max_len=128),
                              label_pdf=label_pdf, label_url=label_url, cost=cost,
                              currency=currency)

    def void_shipment(self, carrier_shipment_id: str) -> None:
        url = f"{self.base_url}/shipments/{quote(carrier_shipment_id, safe='')}/void"
        self._call("POST", url,
                   headers=self._api_headers(idempotency_key=f"void:{carrier_shipment_id}"))

    # --- HTTP -------------------------------------------------------------------------------

    def _api_headers(self, *, idempotency_key: str | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self._api_key}", "Accept": "application/json"}
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        return headers

    def _call(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """Send with retries; any failure, or an answer that is not 2xx, raises CarrierError."""
        try:
            response = self._session.request(method, url, timeout=self._timeout,
                                             allow_redirects=False, **kwargs)
        except (requests.Timeout, requests.ConnectionError) as exc:
            if isinstance(exc, requests.Timeout) or _caused_by_read_timeout(exc):
                raise self._fail(f"The carrier {self.name} did not answer in time; "
                                 "try again later.", retryable=True) from exc
            raise self._fail(f"The carrier {self.name} could not be reached; try again later.",
                             retryable=True) from exc
        except requests.RequestException as exc:
            raise self._fail(f"The request to the carrier {self.name} failed; "
                             "try again later.", retryable=True) from exc
        if 200 <= response.status_code < 300:
            return response
        status = response.status_code
        try:
            if status >= 500 or status in _RETRYABLE_CLIENT_STATUSES:
                raise self._fail(f"The carrier {self.name} is unavailable (HTTP {status}); "
                                 "try again later.", retryable=True, status_code=status)
            if 300 <= status < 400:
                raise self._fail(f"The carrier {self.name} answered with a redirection "
                                 f"(HTTP {status}); check its URL setting.", retryable=False,
                                 status_code=status)
            reason = _carrier_message(response)
            raise self._fail(f"The carrier {self.name} refused the request (HTTP {status})"
                             + (f": {reason}" if reason else "."), retryable=False,
                             status_code=status)
        finally:
            response.close()

    def _download_label(self, url: str) -> bytes:
        """GET the label PDF at ``url``: at most ``max_label_bytes``, and a PDF."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise self._invalid("label.url is not an http(s) URL")
        # Our API key goes to the carrier's own host only, never to a storage host (a signed
        # S3 URL would even refuse a request carrying a second credential).
        base = urlsplit(self.base_url)
        headers = ({"Authorization": f"Bearer {self._api_key}"}
                   if (parts.scheme, parts.netloc) == (base.scheme, base.netloc) else {})
        headers["Accept"] = "application/pdf"
        with self._call("GET", url, headers=headers, stream=True) as response:
            content_type = response.headers.get("Content-Type", "").split(";")[0].strip()
            if content_type.lower() != "application/pdf":
                raise self._invalid(f"the label at label.url is {content_type or 'untyped'}, "
                                    "not application/pdf")
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > self._max_label_bytes:
                raise self._too_large()
            chunks: list[bytes] = []
            size = 0
            try:
                for chunk in response.iter_content(chunk_size=64 * 1024):
                    size += len(chunk)
                    if size > self._max_label_bytes:
                        raise self._too_large()
                    chunks.append(chunk)
            except requests.RequestException as exc:
                raise self._fail(f"The label download from the carrier {self.name} was cut "
                                 "short; try again later.", retryable=True) from exc
        return self._check_pdf(b"".join(chunks))

    # --- Reading the answer -----------------------------------------------------------------

    def _json_object(self, response: requests.Response) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            raise self._invalid("the body is not JSON") from None
        if not isinstance(body, dict):
            raise self._invalid("the body is not a JSON object")
        return body

    def _string(self, body: Mapping[str, Any], key: str, label: str | None = None, *,
                max_len: int | None = None) -> str:
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)  # numeric ids are common
        if not isinstance(value, str) or not value.strip():
            raise self._invalid(f"{label or key} is missing or empty")
        if max_len is not None and len(value.strip()) > max_len:  # what the labels table holds
            raise self._invalid(f"{label or key} is longer than {max_len} characters")
        if _CONTROL.search(value.strip()):  # NUL: PostgreSQL refuses it; a line break: no barcode
            raise self._invalid(f"{label or key} contains a control character")
        return value.strip()

    def _decode_label(self, data: object) -> bytes:
        if not isinstance(data, str):
            raise self._invalid("label.pdf_base64 is not a string")
        try:  # line breaks inside base64 (MIME style) are tolerated, nothing else
            pdf = base64.b64decode("".join(data.split()), validate=True)
        except (binascii.Error, ValueError):
            raise self._invalid("label.pdf_base64 is not valid base64") from None
        if len(pdf) > self._max_label_bytes:
            raise self._too_large()
        return self._check_pdf(pdf)

    def _check_pdf(self, pdf: bytes) -> bytes:
        if not pdf.startswith(b"%PDF-"):
            raise self._invalid("the label is not a PDF")
        return pdf

    def _cost(self, body: Mapping[str, Any]) -> tuple[Decimal | None, str | None]:
        raw_cost, currency = body.get("cost"), body.get("currency")
        cost: Decimal | None = None
        if raw_cost is not None:
            if isinstance(raw_cost, bool) or not isinstance(raw_cost, str | int | float):
                raise self._invalid("cost is not a decimal")
            try:
                cost = Decimal(str(raw_cost))  # str() first: a float would leak binary noise
            except InvalidOperation:
                raise self._invalid("cost is not a decimal") from None
            if not cost.is_finite() or cost < 0 or cost >= _MAX_COST:
                raise self._invalid("cost is not a decimal")
        if currency is not None and not (isinstance(currency, str)
                                         and re.fullmatch(r"[A-Z]{3}", currency)):
            raise self._invalid("currency is not an ISO 4217 code")
        return cost, currency

    # --- Errors -----------------------------------------------------------------------------

    def _invalid(self, detail: str) -> CarrierError:
        return self._fail(f"The carrier {self.name} sent an invalid answer: {detail}.",
                          retryable=True)

    def _too_large(self) -> CarrierError:
        return self._invalid(f"the label is larger than {self._max_label_bytes} bytes")

    def _fail(self, message: str, *, retryable: bool,
              status_code: int | None = None) -> CarrierError:
        if self._api_key:  # a carrier may quote the key it refused ("Unknown API key 'sk_…'")
            message = message.replace(self._api_key, "[API key]")
        logger.warning("carrier call failed: %s (retryable=%s)", message, retryable)
        return CarrierError(message, retryable=retryable, status_code=status_code)


def build_carrier(name: str, settings: Mapping[str, Any]) -> Carrier:
    """The carrier called ``name``, configured from ``settings`` (keys: see the module docstring).

    Raises ValueError when a required setting is missing or a value is malformed; the message
    names the setting, never its value.
    """
    if name.lower() == SELF:
        return SelfIssuedCarrier()
    prefix = f"CARRIER_{re.sub(r'[^A-Z0-9]+', '_', name.upper())}_"

    def setting(key: str, default: str | None = None) -> str:
        value = settings.get(prefix + key)
        if value is None or str(value).strip() == "":
            if default is None:
                raise ValueError(f"carrier {name!r} needs the setting {prefix}{key}")
            return default
        return str(value).strip()

    def number(key: str, default: str) -> float:
        try:
            return float(setting(key, default))
        except ValueError:
            raise ValueError(f"setting {prefix}{key} must be a number") from None

    base_url = setting("URL")
    if urlsplit(base_url).scheme not in ("http", "https"):
        raise ValueError(f"setting {prefix}URL must be an http(s) URL")
    retries = number("RETRIES", "3")
    if retries < 0 or retries != int(retries):
        raise ValueError(f"setting {prefix}RETRIES must be a whole number")
    return HttpCarrier(name, base_url, setting("API_KEY"),
                       timeout=(number("CONNECT_TIMEOUT", "3.05"), number("READ_TIMEOUT", "10")),
                       retries=int(retries))


def _luhn_check_digit(digits: str) -> int:
    """The Luhn (mod 10) check digit to append to ``digits``."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 0:  # every second digit from the right, starting with the last
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return (10 - total % 10) % 10


def _caused_by_read_timeout(exc: requests.ConnectionError) -> bool:
    """requests reports a read timeout that exhausted urllib3's retries as a ConnectionError."""
    reason = getattr(exc.args[0] if exc.args else None, "reason", None)
    return isinstance(reason, ReadTimeoutError)


def _carrier_message(response: requests.Response) -> str | None:
    """The human message in a carrier's error answer (JSON or plain text), cleaned and cut short."""
    try:
        body = response.json()
    except ValueError:
        content_type = response.headers.get("Content-Type", "")
        return _clean(response.text) if content_type.startswith("text/plain") else None
    if not isinstance(body, dict):
        return None
    for key in ("message", "detail", "error_description", "error", "title"):
        value = body.get(key)
        if isinstance(value, dict):
            value = value.get("message")
        if isinstance(value, str) and value.strip():
            return _clean(value)
    errors = body.get("errors")
    if isinstance(errors, list):
        messages = [e if isinstance(e, str) else e.get("message") or e.get("detail")
                    for e in errors if isinstance(e, str | dict)]
        joined = "; ".join(m for m in messages if isinstance(m, str) and m.strip())
        return _clean(joined) if joined else None
    return None


def _clean(text: str) -> str | None:
    text = " ".join("".join(c for c in text if c.isprintable() or c.isspace()).split())
    if len(text) > _MESSAGE_MAX_CHARS:
        text = text[:_MESSAGE_MAX_CHARS - 1] + "…"
    return text or None

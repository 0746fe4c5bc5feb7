"""marshmallow schemas: each loads a request or documents a response of the contract."""
from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal, InvalidOperation

from babel import Locale
from babel.numbers import get_currency_precision, list_currencies
from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from .. import clock
from ..domain.policy import CONDITIONS, DISPOSITIONS, REASONS, RESOLUTIONS
from ..domain.status import STATUSES

Str = fields.String


_DECIMAL = re.compile(r"-?[0-9]{1,12}(?:\.[0-9]{1,12})?")
# ISO 4217 and ISO 3166-1 alpha-2 codes as Babel (CLDR) knows them; "ZZ" is CLDR's "unknown".
CURRENCIES = frozenset(list_currencies())
COUNTRIES = frozenset(code for code in Locale("en").territories if len(code) == 2 and code.isalpha()) - {"ZZ"}
# A delivery reported a little in the future is a clock difference; more is a mistake.
CLOCK_SKEW = timedelta(hours=1)


class Money(fields.Field):
    """A decimal string with at most two places (``"49.90"``); never a float."""

    default_error_messages = {
        "invalid": 'Send money as a decimal string with at most two places, e.g. "49.90".',
        "negative": "Must not be negative.",
    }

    def __init__(self, *, positive: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.positive = positive

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise self.make_error("invalid")
        # Digits and a decimal point only: no exponent ("1e2"), sign "+", "NaN" or "Infinity".
        if isinstance(value, str) and not _DECIMAL.fullmatch(value.strip()):
            raise self.make_error("invalid")
        try:
            amount = Decimal(str(value).strip())
        except InvalidOperation:
            raise self.make_error("invalid") from None
        if not amount.is_finite() or amount.as_tuple().exponent < -2 or abs(amount) >= Decimal("1e10"):
            raise self.make_error("invalid")
        if amount < 0 or (self.positive and amount == 0):
            raise ValidationError("Must be more than zero." if self.positive else "Must not be negative.")
        return amount.quantize(Decimal("0.01"))

    def _serialize(self, value, attr, obj, **kwargs):
        return None if value is None else str(value)


def _not_blank(value: str) -> None:
    if not value.strip():
        raise ValidationError("Must not be blank.")


def _with_cents(value: str) -> None:
    """Amounts are stored and refunded in hundredths (Money, NUMERIC(12, 2)), and the fee and
    approval settings have no currency of their own: a currency with other minor units (JPY
    has none, KWD three) would be told to refund 904.50 yen. Refused until they are supported."""
    if value.upper() in CURRENCIES and get_currency_precision(value.upper()) != 2:
        raise ValidationError(f"Only currencies with two decimal places are supported; {value.upper()} has "
                              f"{get_currency_precision(value.upper())}.")


def _known(codes: frozenset[str], error: str):
    def check(value: str) -> None:
        if value.upper() not in codes:
            raise ValidationError(error)
    return check


def text(max_len: int, **kw) -> fields.String:
    """A required piece of text: 1 to ``max_len`` characters, not only spaces."""
    return Str(validate=[validate.Length(min=1, max=max_len), _not_blank], **kw)


class StrictSchema(Schema):
    class Meta:
        unknown = RAISE


class CustomerIn(StrictSchema):
    email = fields.Email(required=True, validate=validate.Length(max=254))
    name = text(200, required=True)
    locale = Str(validate=validate.OneOf(["en", "fr"]), load_default="en")


class AddressIn(StrictSchema):
    name = text(200, required=True)
    line1 = text(200, required=True)
    line2 = Str(validate=validate.Length(max=200), allow_none=True)
    postal_code = text(20, required=True)
    city = text(100, required=True)
    country = Str(required=True, validate=[validate.Regexp(r"^[A-Za-z]{2}$", error="ISO 3166 alpha-2 code, e.g. FR."),
                                           _known(COUNTRIES, "Unknown country: send an ISO 3166 alpha-2 code, e.g. FR.")])


class OrderLineIn(StrictSchema):
    line_id = text(64, required=True)
    sku = text(64, required=True)
    name = text(300, required=True)
    quantity = fields.Integer(strict=True, required=True, validate=validate.Range(min=1, max=100_000))
    unit_price = Money(required=True)
    category = Str(validate=validate.Length(max=64), allow_none=True)
    returnable = fields.Boolean(allow_none=True)


class OrderIn(StrictSchema):
    customer = fields.Nested(CustomerIn, required=True)
    shipping_address = fields.Nested(AddressIn, required=True)
    placed_at = fields.AwareDateTime(required=True)
    delivered_at = fields.AwareDateTime(allow_none=True)
    currency = Str(required=True, validate=[validate.Regexp(r"^[A-Z]{3}$", error="ISO 4217 code, e.g. EUR."),
                                            _known(CURRENCIES, "Unknown currency: send an ISO 4217 code, e.g. EUR."),
                                            _with_cents])
    lines = fields.List(fields.Nested(OrderLineIn), required=True, validate=validate.Length(min=1, max=500))

    @validates_schema
    def _delivered_after_placed(self, data, **kwargs):
        if data.get("delivered_at") and data.get("placed_at") and data["delivered_at"] < data["placed_at"]:
            raise ValidationError("Cannot be before placed_at.", "delivered_at")

    @validates_schema
    def _not_in_the_future(self, data, **kwargs):
        # The return window counts from delivery: a future date would stretch it.
        latest = clock.now() + CLOCK_SKEW
        for field in ("placed_at", "delivered_at"):
            if data.get(field) and data[field] > latest:
                raise ValidationError("Cannot be in the future.", field)


class EligibilityOut(Schema):
    eligible = fields.Boolean()
    reason_code = Str(allow_none=True)


class OrderLineOut(Schema):
    line_id, sku, name = Str(), Str(), Str()
    quantity = fields.Integer()
    unit_price = Str(metadata={"example": "49.90"})
    category = Str(allow_none=True)
    returnable = fields.Boolean(allow_none=True)
    returnable_quantity = fields.Integer()
    eligibility = fields.Nested(EligibilityOut)


class OrderOut(Schema):
    order_number = Str()
    customer = fields.Dict()
    shipping_address = fields.Dict()
    placed_at = Str()
    delivered_at = Str(allow_none=True)
    currency = Str()
    lines = fields.List(fields.Nested(OrderLineOut))
    created_at, updated_at = Str(), Str()


class ReturnItemIn(StrictSchema):
    line_id = text(64, required=True)
    quantity = fields.Integer(strict=True, required=True, validate=validate.Range(min=1, max=100_000))
    reason = Str(required=True, validate=validate.OneOf(REASONS))
    comment = Str(validate=validate.Length(max=2000), allow_none=True)


class ReturnIn(StrictSchema):
    order_number = text(64, required=True)
    email = Str(required=True, validate=validate.Length(min=3, max=254))
    items = fields.List(fields.Nested(ReturnItemIn), required=True, validate=validate.Length(min=1, max=100))
    resolution = Str(validate=validate.OneOf(RESOLUTIONS), load_default="refund")


class ReturnItemOut(Schema):
    line_id, sku, name = Str(), Str(), Str()
    quantity = fields.Integer()
    reason = Str()
    comment = Str(allow_none=True)
    unit_price = Str()
    received_quantity = fields.Integer()
    condition = Str(allow_none=True)
    disposition = Str()


class LabelOut(Schema):
    carrier, tracking_number, status, expires_at, url = Str(), Str(allow_none=True), Str(), Str(allow_none=True), Str(allow_none=True)


class RefundOut(Schema):
    currency, amount_due, amount_refunded = Str(), Str(), Str()
    due_at, refunded_at = Str(allow_none=True), Str(allow_none=True)
    overdue = fields.Boolean()
    days_late = fields.Integer()
    surcharge_rate = Str()


class ReturnOut(Schema):
    rma_number = Str(metadata={"example": "RMA-7K3M-9Q2R"})
    status = Str(validate=validate.OneOf(STATUSES))
    order_number, resolution, created_at, updated_at = Str(), Str(), Str(), Str()
    customer = fields.Dict()
    items = fields.List(fields.Nested(ReturnItemOut))
    label = fields.Nested(LabelOut, allow_none=True)
    refund = fields.Nested(RefundOut)
    dispute = fields.Dict(allow_none=True)
    links = fields.Dict()


class ReturnPage(Schema):
    items = fields.List(fields.Nested(ReturnOut))
    next_cursor = Str(allow_none=True)


class ReturnListQuery(StrictSchema):
    status = Str(validate=validate.OneOf(STATUSES))
    order_number = Str(validate=validate.Length(max=64))
    email = Str(validate=validate.Length(max=254))
    created_from = fields.AwareDateTime()
    created_to = fields.AwareDateTime()
    limit = fields.Integer(load_default=25, validate=validate.Range(min=1, max=100))
    cursor = Str(validate=validate.Length(max=200))


class RejectIn(StrictSchema):
    reason = text(2000, required=True)


class ReceiveItemIn(StrictSchema):
    line_id = text(64, required=True)
    quantity = fields.Integer(strict=True, required=True, validate=validate.Range(min=0, max=100_000))


class ReceiveIn(StrictSchema):
    items = fields.List(fields.Nested(ReceiveItemIn), validate=validate.Length(min=1, max=100))


class TriageIn(StrictSchema):
    disposition = Str(required=True, validate=validate.OneOf(DISPOSITIONS))
    condition = Str(required=True, validate=validate.OneOf(CONDITIONS))
    note = Str(validate=validate.Length(max=2000), allow_none=True)


class RefundIn(StrictSchema):
    amount = Money(required=True, positive=True)
    reference = Str(validate=validate.Length(max=200), allow_none=True)


class CloseIn(StrictSchema):
    note = Str(validate=validate.Length(max=2000), allow_none=True)


class EventOut(Schema):
    type, at, actor = Str(), Str(), Str()
    data = fields.Dict()


class EventList(Schema):
    items = fields.List(fields.Nested(EventOut))


# --- disputes ---------------------------------------------------------------------------------

DISPUTE_STATUSES = ("open", "resolved")


def _not_blank(value: str) -> None:
    if not value.strip():
        raise ValidationError("Write a message.")


class DisputeMessageIn(StrictSchema):
    body = Str(required=True, validate=[validate.Length(min=1, max=5000, error="Write 1 to 5000 characters."),
                                        _not_blank])
    author = Str(required=True, validate=validate.OneOf(["customer", "handler"]))


class DisputeMessageOut(Schema):
    id = fields.Integer()
    author, body, created_at = Str(), Str(), Str()


class DisputeResolveIn(StrictSchema):
    outcome = Str(required=True, validate=validate.OneOf(["accept", "partial", "reject"]))
    amount = Money(positive=True, allow_none=True,
                   metadata={"description": "Required for `partial`: 0 < amount ≤ the disputed value."})
    note = text(2000, required=True, metadata={"description": "What the customer reads (the reason of a partial refund)."})


class DisputeOut(Schema):
    id = fields.Integer()
    status = Str(validate=validate.OneOf(DISPUTE_STATUSES))
    rma_number = Str(metadata={"example": "RMA-7K3M-9Q2R"})
    handler = fields.Dict(allow_none=True, metadata={"description": "{name, email}; null while unassigned."})
    currency = Str()
    amount_at_stake = Str(metadata={"example": "49.90"})
    outcome = Str(allow_none=True)
    resolved_amount = Str(allow_none=True)
    note = Str(allow_none=True)
    opened_at = Str()
    assigned_at = Str(allow_none=True)
    resolved_at = Str(allow_none=True)
    last_customer_message_at = Str(allow_none=True)
    last_handler_reply_at = Str(allow_none=True)
    messages = fields.List(fields.Nested(DisputeMessageOut))


class DisputePage(Schema):
    items = fields.List(fields.Nested(DisputeOut))
    next_cursor = Str(allow_none=True)


class DisputeListQuery(StrictSchema):
    status = Str(validate=validate.OneOf(DISPUTE_STATUSES))
    handler = Str(validate=validate.Length(min=1, max=254), metadata={"description": "The handler's email."})
    unassigned = fields.Boolean(metadata={"description": "Only disputes waiting for a handler."})
    limit = fields.Integer(load_default=25, validate=validate.Range(min=1, max=100))
    cursor = Str(validate=validate.Length(max=200))

"""``GET /api/v1/kpis``: the key figures of a period (definitions in services/kpis.py)."""
from __future__ import annotations

from marshmallow import Schema, fields

from .. import clock
from ..errors import ApiError
from ..services import kpis
from . import blp
from .schemas import StrictSchema


class KpiQuery(StrictSchema):
    from_ = fields.String(data_key="from", metadata={
        "description": "First day (YYYY-MM-DD, included) or RFC 3339 instant. Default: 30 days before `to`.",
        "example": "2026-11-01"})
    to = fields.String(metadata={
        "description": "Last day (YYYY-MM-DD, included) or RFC 3339 instant (excluded). Default: today.",
        "example": "2026-11-30"})


class RefundKpis(Schema):
    median_days = fields.Float(allow_none=True)
    p90_days = fields.Float(allow_none=True)
    on_time_rate = fields.Float(allow_none=True)
    overdue = fields.Integer()


class DisputeKpis(Schema):
    open = fields.Integer()
    median_resolution_hours = fields.Float(allow_none=True)


class KpisOut(Schema):
    orders = fields.Integer()
    returns = fields.Integer()
    return_rate = fields.Float(allow_none=True)
    item_return_rate = fields.Float(allow_none=True)
    reasons = fields.Dict(keys=fields.String(), values=fields.Integer())
    dispositions = fields.Dict(keys=fields.String(), values=fields.Integer())
    refund = fields.Nested(RefundKpis)
    disputes = fields.Nested(DisputeKpis)


@blp.route("/kpis", methods=["GET"])
@blp.arguments(KpiQuery, location="query")
@blp.response(200, KpisOut)
def get_kpis(args):
    """Key figures of a period: return rates, reasons, triage split, refund delays, disputes.

    Rates are fractions (0.25 = 25 %) with 4 decimals, null when their denominator is 0."""
    now = clock.now()
    try:
        period = kpis.parse_period(args.get("from_"), args.get("to"), now)
    except kpis.PeriodError as exc:
        raise ApiError(422, "validation_error", "The period is invalid.", errors={exc.field: [str(exc)]}) from None
    return kpis.compute(period, now)

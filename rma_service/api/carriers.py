"""Carrier tracking events: ``POST /api/v1/carrier-events/{carrier}`` (the carrier calls us).

Authenticated by the carrier's signature, not by a shop key (``PUBLIC_ENDPOINTS``): header
``RMA-Signature`` (or ``Carrier-Signature``) ``t=<unix seconds>,v1=<hex HMAC-SHA256 of
"<t>.<raw body>" with RMA_CARRIER_<NAME>_SECRET>``, ``t`` within
``RMA_CARRIER_EVENT_TOLERANCE_SECONDS`` of now. The signature is checked before the body is
even parsed: a missing or bad signature, a stale timestamp or an unknown carrier → 401
``unauthorized`` and nothing is written.

Body: one event ``{"event_id", "tracking_number", "status", "occurred_at"}`` or a batch
``{"events": [event, …]}`` (at most 100); ``status`` is the carrier's own word (normalised by
``domain.tracking``), ``occurred_at`` RFC 3339 with an offset. Unknown fields are ignored
(carriers add their own); a missing or malformed field (a NUL or a lone surrogate escape in a
text too) → 422 ``validation_error`` and nothing is written (a batch is validated whole first).
A body that is not JSON (malformed, nested too deeply, a number too long) → 422 too.

Answers (per event: ``{"event_id", "duplicate", "matched", "status", "applied"}``):

* 200 — stored and applied, or a duplicate of an event already stored (``duplicate``: true,
  nothing changed);
* 202 — stored, but no label carries this tracking number (``matched``: false). Not a 404: a
  carrier retries a 4xx/5xx for days, and the event is kept for the audit;
* a batch always answers 200 ``{"items": [...]}``, one result per event in order.

Retrying is always safe: events are deduplicated by ``(carrier, event_id)``.
"""
from __future__ import annotations

import json

from flask import jsonify, request
from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate, validates_schema

from .. import clock
from ..errors import ApiError, flatten_messages, invalid_characters
from ..services import labels as svc
from . import blp


def _text(max_len: int, **kw) -> fields.String:
    return fields.String(validate=validate.Length(min=1, max=max_len), **kw)


class CarrierEventIn(Schema):
    class Meta:
        unknown = EXCLUDE

    event_id = _text(128, required=True, metadata={"description": "The carrier's id of the event (deduplication key)."})
    tracking_number = _text(64, required=True)
    status = _text(64, required=True, metadata={"description": "The carrier's status word, e.g. 'picked_up', 'Livré'."})
    occurred_at = fields.AwareDateTime(required=True, metadata={"description": "RFC 3339 with an offset."})


class CarrierEventsIn(Schema):
    """One event, or several under ``events``."""

    class Meta:
        unknown = EXCLUDE

    events = fields.List(fields.Nested(CarrierEventIn), validate=validate.Length(min=1, max=100))
    event_id = fields.String()
    tracking_number = fields.String()
    status = fields.String()
    occurred_at = fields.String()

    @validates_schema
    def _one_or_many(self, data, **kwargs):
        if "events" in data and any(k in data for k in ("event_id", "tracking_number", "status", "occurred_at")):
            raise ValidationError("Send one event, or several under 'events', not both.", "events")


class CarrierEventResult(Schema):
    event_id = fields.String()
    duplicate = fields.Boolean(metadata={"description": "Already received: nothing changed."})
    matched = fields.Boolean(metadata={"description": "A label carries this tracking number."})
    status = fields.String(allow_none=True, metadata={"description": "Normalised status; null when unknown."})
    applied = fields.Boolean(metadata={"description": "The event moved the label or the return."})


class CarrierEventResults(Schema):
    items = fields.List(fields.Nested(CarrierEventResult))


def _parse(body: object) -> tuple[list[dict], bool]:
    """(events, batch?) or 422."""
    if not isinstance(body, dict):
        raise ApiError(422, "validation_error", "Send a JSON object.", errors={"_schema": ["Expected a JSON object."]})
    try:
        if "events" in body:
            data = CarrierEventsIn().load(body)
            return data["events"], True
        return [CarrierEventIn().load(body)], False
    except ValidationError as exc:
        raise ApiError(422, "validation_error", "The request has invalid fields.",
                       errors=flatten_messages(exc.messages)) from None


@blp.route("/carrier-events/<string:carrier>", methods=["POST"])
@blp.doc(security=[], requestBody={"required": True, "content": {"application/json": {"schema": CarrierEventIn}}},
         parameters=[{"in": "header", "name": "RMA-Signature", "required": True, "schema": {"type": "string"},
                      "description": "t=<unix seconds>,v1=<hex HMAC-SHA256 of \"<t>.<raw body>\"> "
                                     "(Carrier-Signature is accepted too)"}])
@blp.response(200, CarrierEventResult)
@blp.alt_response(202, schema=CarrierEventResult, description="Stored, no label with this tracking number.")
@blp.alt_response(401, description="Missing or bad signature, stale timestamp, unknown carrier.")
def carrier_events(carrier):
    """A carrier's tracking event(s), signed with its secret; duplicates and late events are harmless."""
    now = clock.now()
    body = request.get_data(cache=True)
    svc.verify_carrier_signature(carrier, body, request.headers, now)
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):  # malformed, not UTF-8, nested too deeply, a number too long
        raise ApiError(422, "validation_error", "The body is not JSON.",
                       errors={"_schema": ["Send a JSON object."]}) from None
    events, batch = _parse(payload)
    # A NUL or a lone surrogate escape cannot be stored: checked here, after the signature,
    # whatever the Content-Type (errors.BODY_CHECKED_BY_VIEW: the app's guard leaves this body
    # alone), in the fields kept only (carriers add their own, ignored).
    bad = invalid_characters({"events": events} if batch else events[0])
    if bad:
        raise ApiError(422, "validation_error", "The request has invalid fields.", errors=bad)
    results = [svc.record_tracking_event(carrier, event, now) for event in events]
    # Responses are built here (the decorators above document them): one shape or the other.
    if batch:
        return jsonify(CarrierEventResults().dump({"items": results}))
    result = results[0]
    response = jsonify(CarrierEventResult().dump(result))
    response.status_code = 202 if not result["matched"] and not result["duplicate"] else 200
    return response

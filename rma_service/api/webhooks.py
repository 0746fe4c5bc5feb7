"""Webhook endpoints of the shop: where the service POSTs its events, signed.

Each delivery is a POST of ``{"id", "type", "created_at", "data"}`` with
``RMA-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">``; ``id`` stays the
same on retries. Verify with every secret you hold (``adapters.signing.verify``): after
``rotate-secret`` deliveries carry one ``v1`` per valid secret for 24 hours.
"""
from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates

from .. import clock
from ..services import webhooks as svc
from . import blp
from .schemas import StrictSchema

EVENT_CHOICES = svc.EVENT_TYPES + (svc.ALL_EVENTS,)


class EndpointIn(StrictSchema):
    url = fields.URL(required=True, relative=False, schemes={"http", "https"}, require_tld=False,
                     validate=validate.Length(max=2000),
                     metadata={"example": "https://shop.example/hooks/rma"})
    events = fields.List(fields.String(validate=validate.OneOf(EVENT_CHOICES)), required=True,
                         validate=validate.Length(min=1, max=len(EVENT_CHOICES)),
                         metadata={"description": 'Event types to receive; "*" for all.'})

    @validates("url")
    def _no_credentials(self, value: str, **kwargs) -> None:
        from urllib.parse import urlsplit
        parts = urlsplit(value)
        if parts.username or parts.password:
            raise ValidationError("Put no credentials in the URL; verify the RMA-Signature header instead.")
        if parts.fragment:
            raise ValidationError("A webhook URL has no fragment (#…).")


class EndpointOut(Schema):
    id = fields.String()
    url = fields.String()
    events = fields.List(fields.String())
    created_at = fields.String()


class EndpointWithSecret(EndpointOut):
    secret = fields.String(metadata={"description": "Shown only here: store it to verify RMA-Signature."})
    previous_secret_expires_at = fields.String(
        metadata={"description": "After a rotation: until when deliveries are also signed with the previous secret."})


class EndpointPage(Schema):
    items = fields.List(fields.Nested(EndpointOut))
    next_cursor = fields.String(allow_none=True)


class ListQuery(StrictSchema):
    limit = fields.Integer(load_default=25, validate=validate.Range(min=1, max=100))
    cursor = fields.String(validate=validate.Length(max=200))


class DeliveryQuery(ListQuery):
    status = fields.String(validate=validate.OneOf(["pending", "delivered", "failed"]))


class DeliveryOut(Schema):
    id = fields.Integer()
    event_id = fields.String()
    event_type = fields.String()
    status = fields.String()
    attempts = fields.Integer()
    next_attempt_at = fields.String(allow_none=True)
    last_status_code = fields.Integer(allow_none=True)
    last_error = fields.String(allow_none=True)
    delivered_at = fields.String(allow_none=True)
    created_at = fields.String()


class DeliveryPage(Schema):
    items = fields.List(fields.Nested(DeliveryOut))
    next_cursor = fields.String(allow_none=True)


@blp.route("/webhook-endpoints", methods=["POST"])
@blp.arguments(EndpointIn)
@blp.response(201, EndpointWithSecret)
def create_webhook_endpoint(data):
    """Register an endpoint. The answer carries its signing secret (shown only here and on rotation)."""
    endpoint = svc.create_endpoint(data["url"], data["events"], clock.now())
    return svc.endpoint_payload(endpoint, with_secret=True)


@blp.route("/webhook-endpoints", methods=["GET"])
@blp.arguments(ListQuery, location="query")
@blp.response(200, EndpointPage)
def list_webhook_endpoints(args):
    """Endpoints, newest first (no secrets)."""
    page, next_cursor = svc.list_endpoints(args["limit"], args.get("cursor"))
    return {"items": [svc.endpoint_payload(e) for e in page], "next_cursor": next_cursor}


@blp.route("/webhook-endpoints/<string:endpoint_id>", methods=["GET"])
@blp.response(200, EndpointOut)
def get_webhook_endpoint(endpoint_id):
    """One endpoint (no secret)."""
    return svc.endpoint_payload(svc.get_endpoint(endpoint_id))


@blp.route("/webhook-endpoints/<string:endpoint_id>", methods=["DELETE"])
@blp.response(204)
def delete_webhook_endpoint(endpoint_id):
    """Stop sending to this endpoint; its undelivered events are given up."""
    svc.delete_endpoint(endpoint_id, clock.now())


@blp.route("/webhook-endpoints/<string:endpoint_id>/rotate-secret", methods=["POST"])
@blp.response(200, EndpointWithSecret)
def rotate_webhook_secret(endpoint_id):
    """A new secret. The previous one stays valid for 24 hours: meanwhile every delivery is
    signed with both (``t=…,v1=<new>,v1=<previous>``), so switch the receiver at leisure."""
    endpoint = svc.rotate_secret(endpoint_id, clock.now())
    return svc.endpoint_payload(endpoint, with_secret=True)


@blp.route("/webhook-endpoints/<string:endpoint_id>/deliveries", methods=["GET"])
@blp.arguments(DeliveryQuery, location="query")
@blp.response(200, DeliveryPage)
def list_webhook_deliveries(args, endpoint_id):
    """Deliveries to this endpoint, newest first (``?status=failed`` to find what to redeliver)."""
    page, next_cursor = svc.list_deliveries(endpoint_id, args.get("status"), args["limit"], args.get("cursor"))
    return {"items": [svc.delivery_payload(d) for d in page], "next_cursor": next_cursor}


@blp.route("/webhook-endpoints/<string:endpoint_id>/deliveries/<int:delivery_id>/redeliver", methods=["POST"])
@blp.response(202, DeliveryOut)
def redeliver_webhook(endpoint_id, delivery_id):
    """Queue a failed delivery again (same event id; retried with backoff for 3 more days)."""
    return svc.delivery_payload(svc.redeliver(endpoint_id, delivery_id, clock.now()))

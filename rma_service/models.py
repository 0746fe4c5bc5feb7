"""Typed SQLAlchemy 2.0 models. No business rules and no commits here: services own both.

Conventions: every datetime is timezone-aware UTC (``UTCDateTime``), money is ``Numeric``
read back as ``Decimal`` (``Money``), enumerations are short strings whose allowed values live
in ``domain/``.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Optional

from sqlalchemy import (JSON, Boolean, DateTime, ForeignKey, Index, Integer, LargeBinary,
                        Numeric, String, Text, TypeDecorator, UniqueConstraint, event, func, text)
from sqlalchemy.orm import Mapped, class_mapper, mapped_column, relationship

from .extensions import db


class UTCDateTime(TypeDecorator):
    """Stores UTC; always returns aware UTC datetimes, also on SQLite (which keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Optional[datetime], dialect) -> Optional[datetime]:
        if value is None:
            return None
        if value.tzinfo is not timezone.utc:
            if value.tzinfo is None:
                raise ValueError("naive datetime given to the database; use UTC-aware datetimes")
            value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Optional[datetime], dialect) -> Optional[datetime]:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


class Money(TypeDecorator):
    """Decimal with two places, exact on PostgreSQL; on SQLite stored as text so no float
    ever touches an amount."""

    impl = Numeric(12, 2)
    cache_ok = True
    precision, scale = 12, 2
    quantum = Decimal("0.01")  # 10 ** -scale

    def load_dialect_impl(self, dialect):
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(24))
        return dialect.type_descriptor(Numeric(self.precision, self.scale))

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        value = Decimal(value).quantize(self.quantum)
        return str(value) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return Decimal(value).quantize(self.quantum)


class Rate(Money):
    """A fraction with four places (0.1000 = 10 %), exact like Money."""

    impl = Numeric(7, 4)
    cache_ok = True
    precision, scale = 7, 4
    quantum = Decimal("0.0001")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def unattached(model: type, values: dict[str, Any]) -> Any:
    """A ``model`` object holding ``values`` as if they had been loaded, outside any session,
    built without the ORM's attribute events: about a tenth of the constructor's CPU. For the
    busiest request (a new return): the order it reads (services/orders.py ``read_order``) and
    the rows it writes with services/newrows.py. Attribute *set* listeners (the reminder
    hints above) do not run: give every value they would have set. A relationship is set
    with ``set_committed_value``, or given here when it is a many-to-one."""
    manager = _managers.get(model)
    if manager is None:
        manager = _managers.setdefault(model, class_mapper(model).class_manager)
    obj = manager.new_instance()
    obj.__dict__.update(values)
    return obj


_managers: dict[type, Any] = {}  # model → its ClassManager (looked up once: not free either)


def new_uuid() -> str:
    return str(uuid.uuid4())


Model = db.Model


class Agent(Model):
    __tablename__ = "agents"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default="agent")  # agent | admin
    handles_disputes: Mapped[bool] = mapped_column(Boolean, default=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    away: Mapped[bool] = mapped_column(Boolean, default=False)
    last_assigned_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    # Flask-Login protocol
    @property
    def is_active(self) -> bool:
        return self.active

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def is_anonymous(self) -> bool:
        return False

    def get_id(self) -> str:
        return str(self.id)


class ApiKey(Model):
    __tablename__ = "api_keys"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)


class Order(Model):
    __tablename__ = "orders"
    __table_args__ = (Index("ix_orders_placed_units", "placed_at", "units"),
                      # the customers' lookup whatever the case (services/orders.py)
                      Index("ix_orders_order_number_lower", func.lower(text("order_number"))))
    id: Mapped[int] = mapped_column(primary_key=True)
    order_number: Mapped[str] = mapped_column(String(64), unique=True)
    customer_email: Mapped[str] = mapped_column(String(254), index=True)
    customer_name: Mapped[str] = mapped_column(String(200))
    locale: Mapped[str] = mapped_column(String(5), default="en")
    ship_name: Mapped[str] = mapped_column(String(200))
    ship_line1: Mapped[str] = mapped_column(String(200))
    ship_line2: Mapped[Optional[str]] = mapped_column(String(200))
    ship_postal_code: Mapped[str] = mapped_column(String(20))
    ship_city: Mapped[str] = mapped_column(String(100))
    ship_country: Mapped[str] = mapped_column(String(2))
    placed_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    delivered_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    currency: Mapped[str] = mapped_column(String(3))
    # Units ordered over all lines, kept by services.orders (the KPIs' item return rate).
    units: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    lines: Mapped[list["OrderLine"]] = relationship(back_populates="order", order_by="OrderLine.id",
                                                    cascade="all, delete-orphan")


class OrderLine(Model):
    __tablename__ = "order_lines"
    __table_args__ = (UniqueConstraint("order_id", "line_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    line_id: Mapped[str] = mapped_column(String(64))
    sku: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(300))
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price: Mapped[Decimal] = mapped_column(Money)
    category: Mapped[Optional[str]] = mapped_column(String(64))
    returnable: Mapped[Optional[bool]] = mapped_column(Boolean)
    # Units held by returns that are open or completed (not rejected/cancelled/expired).
    # Moved only by one conditional UPDATE, so racing requests can never over-reserve.
    reserved_quantity: Mapped[int] = mapped_column(Integer, default=0)

    order: Mapped[Order] = relationship(back_populates="lines")


# "Look at this return's reminders at the next sweep": the value a reminder hint takes when
# the return is created or one of the facts its schedule depends on changes.
REMINDER_RECHECK = datetime(1970, 1, 1, tzinfo=timezone.utc)


class Return(Model):
    __tablename__ = "returns"
    __table_args__ = (
        Index("ix_returns_status_created", "status", "created_at", "id"),
        Index("ix_returns_created", "created_at", "id"),
        # Refunds of a period with what their due date needs (covering, for the KPIs).
        Index("ix_returns_refund_kpi", "refunded_at", "created_at", "first_scan_at", "received_at"),
        # The reminder sweeps read only these (partial) indexes: their cost follows the number
        # of returns due, not the number of returns (finished returns have NULL hints).
        Index("ix_returns_refund_reminder_at", "refund_reminder_at",
              postgresql_where=text("refund_reminder_at IS NOT NULL"),
              sqlite_where=text("refund_reminder_at IS NOT NULL")),
        Index("ix_returns_label_reminder_at", "label_reminder_at",
              postgresql_where=text("label_reminder_at IS NOT NULL"),
              sqlite_where=text("label_reminder_at IS NOT NULL")),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    # The eight canonical symbols, without prefix or hyphens (e.g. "7K3M9Q2X").
    rma_code: Mapped[str] = mapped_column(String(8), unique=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    resolution: Mapped[str] = mapped_column(String(16), default="refund")
    customer_email: Mapped[str] = mapped_column(String(254), index=True)
    customer_name: Mapped[str] = mapped_column(String(200))
    locale: Mapped[str] = mapped_column(String(5), default="en")
    currency: Mapped[str] = mapped_column(String(3))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    authorized_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    first_scan_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    received_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    inspected_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    refunded_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime, index=True)
    closed_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    shipping_fee: Mapped[Decimal] = mapped_column(Money, default=Decimal("0"))
    restocking_fee: Mapped[Decimal] = mapped_column(Money, default=Decimal("0"))
    # The policy's rate when the return was made: the fee follows the units kept (what arrived,
    # what a dispute counted); None for returns made before 0007, which keep their quoted fee.
    restocking_fee_rate: Mapped[Optional[Decimal]] = mapped_column(Rate)
    # Set when a dispute is resolved: replaces the items' value in the amount due.
    adjusted_amount: Mapped[Optional[Decimal]] = mapped_column(Money)
    amount_refunded: Mapped[Decimal] = mapped_column(Money, default=Decimal("0"))
    refund_reference: Mapped[Optional[str]] = mapped_column(String(200))
    reject_reason: Mapped[Optional[str]] = mapped_column(Text)
    # Optimistic lock: a concurrent change of the same return fails instead of being lost.
    version: Mapped[int] = mapped_column(Integer, default=1)
    # Reminder hints, kept by services/reminders.py: no refund (label) reminder of this return
    # can be due before this instant; NULL: none ever again. A lower bound, never late: any
    # change of status, resolution, created_at, first_scan_at or received_at through the ORM
    # resets both to REMINDER_RECHECK (see the listener below), so the next sweep recomputes.
    refund_reminder_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime, default=REMINDER_RECHECK)
    label_reminder_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime, default=REMINDER_RECHECK)

    __mapper_args__ = {"version_id_col": version}

    order: Mapped[Order] = relationship()
    items: Mapped[list["ReturnItem"]] = relationship(back_populates="ret", order_by="ReturnItem.id",
                                                     cascade="all, delete-orphan")
    labels: Mapped[list["Label"]] = relationship(back_populates="ret", order_by="Label.id")
    disputes: Mapped[list["Dispute"]] = relationship(back_populates="ret", order_by="Dispute.id")


def _recheck_reminders(target: Return, value, oldvalue, initiator) -> None:
    """A fact of the reminder schedule changed: the sweeps look at this return again.
    (Code that changes these columns with a bulk UPDATE must reset the hints itself.)"""
    target.refund_reminder_at = REMINDER_RECHECK
    target.label_reminder_at = REMINDER_RECHECK


for _attribute in (Return.status, Return.resolution, Return.created_at, Return.first_scan_at,
                   Return.received_at):
    event.listen(_attribute, "set", _recheck_reminders)


# Search by customer email, case-insensitive, newest first.
Index("ix_returns_email_lower", func.lower(Return.customer_email), Return.created_at)
# The refunds still open: "refund due" and "refund overdue" read only this small index.
_OPEN_REFUND = text("resolution = 'refund' AND status IN ('authorized', 'in_transit', 'received', 'disputed', "
                    "'inspected')")
Index("ix_returns_open_refund", Return.status, Return.created_at, Return.id, Return.first_scan_at,
      Return.received_at, postgresql_where=_OPEN_REFUND, sqlite_where=_OPEN_REFUND)


class ReturnItem(Model):
    __tablename__ = "return_items"
    __table_args__ = (
        # KPIs: the items of the returns created in a period (covering), items triaged in a period.
        Index("ix_return_items_created_kpi", "created_at", "reason", "quantity", "sku"),
        Index("ix_return_items_triaged", "triaged_at", "disposition"),
        # The refurbish queue: only pending items are in this index.
        Index("ix_return_items_refurbish_pending", "id",
              postgresql_where=text("refurbish_status = 'pending'"),
              sqlite_where=text("refurbish_status = 'pending'")),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    return_id: Mapped[int] = mapped_column(ForeignKey("returns.id", ondelete="CASCADE"), index=True)
    order_line_id: Mapped[int] = mapped_column(ForeignKey("order_lines.id"), index=True)
    line_id: Mapped[str] = mapped_column(String(64))
    sku: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(300))
    quantity: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(32))
    comment: Mapped[Optional[str]] = mapped_column(Text)
    unit_price: Mapped[Decimal] = mapped_column(Money)
    received_quantity: Mapped[int] = mapped_column(Integer, default=0)
    condition: Mapped[Optional[str]] = mapped_column(String(16))
    disposition: Mapped[str] = mapped_column(String(16), default="pending")
    refurbish_status: Mapped[Optional[str]] = mapped_column(String(16))  # pending | refurbished | recycled
    triage_note: Mapped[Optional[str]] = mapped_column(Text)
    triaged_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    # The return's created_at, copied on insert (see below): the KPIs count a period's items
    # from one index instead of joining a year of returns with their items.
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    ret: Mapped[Return] = relationship(back_populates="items")
    photos: Mapped[list["Photo"]] = relationship(back_populates="item", order_by="Photo.id",
                                                 cascade="all, delete-orphan")


@event.listens_for(ReturnItem, "before_insert")
def _copy_return_created_at(mapper, connection, target: ReturnItem) -> None:
    """An item carries its return's creation time (see ReturnItem.created_at)."""
    if target.created_at is None:
        if target.ret is not None and target.ret.created_at is not None:
            target.created_at = target.ret.created_at
        else:
            target.created_at = connection.scalar(
                Return.__table__.select().with_only_columns(Return.__table__.c.created_at)
                .where(Return.__table__.c.id == target.return_id))


class Photo(Model):
    __tablename__ = "photos"
    id: Mapped[int] = mapped_column(primary_key=True)
    return_item_id: Mapped[int] = mapped_column(ForeignKey("return_items.id", ondelete="CASCADE"), index=True)
    content_type: Mapped[str] = mapped_column(String(32))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    item: Mapped[ReturnItem] = relationship(back_populates="photos")


class Event(Model):
    """The audit trail: one row per status change and per notable act, never updated."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_return", "return_id", "id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    return_id: Mapped[Optional[int]] = mapped_column(ForeignKey("returns.id", ondelete="CASCADE"))
    dispute_id: Mapped[Optional[int]] = mapped_column(ForeignKey("disputes.id", ondelete="CASCADE"), index=True)
    type: Mapped[str] = mapped_column(String(48))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(String(254))
    from_status: Mapped[Optional[str]] = mapped_column(String(16))
    to_status: Mapped[Optional[str]] = mapped_column(String(16))
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    ret: Mapped[Optional["Return"]] = relationship()


class IdempotencyKey(Model):
    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("api_key_id", "key"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    api_key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default="running")  # running | done
    response_status: Mapped[Optional[int]] = mapped_column(Integer)
    response_body: Mapped[Optional[str]] = mapped_column(Text)
    response_headers: Mapped[Optional[dict[str, str]]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class WebhookEndpoint(Model):
    __tablename__ = "webhook_endpoints"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    url: Mapped[str] = mapped_column(String(2000))
    events: Mapped[list[str]] = mapped_column(JSON)
    secret: Mapped[str] = mapped_column(String(100))
    previous_secret: Mapped[Optional[str]] = mapped_column(String(100))
    previous_secret_expires_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    deleted_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)


class OutboxEvent(Model):
    """A domain event to tell the shop about, written in the transaction of the change."""

    __tablename__ = "outbox_events"
    # A return's events in order: the webhook job's "is an earlier event still pending?" check.
    __table_args__ = (Index("ix_outbox_events_return_order", "return_id", "id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[str] = mapped_column(String(36), unique=True, default=new_uuid)
    type: Mapped[str] = mapped_column(String(48))
    return_id: Mapped[Optional[int]] = mapped_column(ForeignKey("returns.id", ondelete="SET NULL"), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    ret: Mapped[Optional["Return"]] = relationship()


class WebhookDelivery(Model):
    """One event to one endpoint; claimed by a scheduler with ``locked_until``."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("outbox_event_id", "endpoint_id"),
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    outbox_event_id: Mapped[int] = mapped_column(ForeignKey("outbox_events.id", ondelete="CASCADE"))
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # The 3 days of retries count from the first attempt, not from the event: a delivery held
    # back behind an earlier event of the same return still gets its full 3 days.
    first_attempt_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    locked_until: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    last_status_code: Mapped[Optional[int]] = mapped_column(Integer)
    last_error: Mapped[Optional[str]] = mapped_column(Text)
    delivered_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    event: Mapped[OutboxEvent] = relationship()
    endpoint: Mapped[WebhookEndpoint] = relationship()


class MailMessage(Model):
    """A mail to send, written in the transaction of the change; sent by the scheduler.

    Either rendered when queued (``subject``, ``text``, ``html``), or queued as what renders
    it (``template``, ``locale``, ``context``, subject NULL) and rendered by the ``send_mail``
    job before its first attempt, which stores the rendered mail in the row (services/
    notifications.py). ``template``, ``locale`` and ``context`` stay as they were written."""

    __tablename__ = "mail_messages"
    __table_args__ = (Index("ix_mail_messages_due", "status", "next_attempt_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[str] = mapped_column(String(200), unique=True)
    to: Mapped[str] = mapped_column(String(254))
    # NULL until rendered (a mail queued with ``render_later``).
    subject: Mapped[Optional[str]] = mapped_column(String(300))
    text: Mapped[Optional[str]] = mapped_column(Text)
    html: Mapped[Optional[str]] = mapped_column(Text)
    template: Mapped[Optional[str]] = mapped_column(String(64))
    locale: Mapped[Optional[str]] = mapped_column(String(8))
    # none_as_null: a mail rendered when queued has SQL NULL here, not the JSON value null.
    context: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON(none_as_null=True))
    return_id: Mapped[Optional[int]] = mapped_column(ForeignKey("returns.id", ondelete="SET NULL"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | sent | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Retries go on for 3 days from the first attempt (not from queueing: after downtime, a
    # mail still gets its 3 days).
    first_attempt_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    locked_until: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    last_error: Mapped[Optional[str]] = mapped_column(Text)
    sent_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    ret: Mapped[Optional["Return"]] = relationship()



class Label(Model):
    __tablename__ = "labels"
    __table_args__ = (
        # Parcels the carrier reports delivered (the admin's "to receive" queue).
        Index("ix_labels_delivered", "return_id",
              postgresql_where=text("tracking_status = 'delivered' AND status <> 'voided'"),
              sqlite_where=text("tracking_status = 'delivered' AND status <> 'voided'")),
        # The label job's work: a carrier call due (issue a pending label, void a voided one
        # at the carrier). next_attempt_at is NULL once nothing is left to do (partial index).
        Index("ix_labels_due", "next_attempt_at",
              postgresql_where=text("next_attempt_at IS NOT NULL"),
              sqlite_where=text("next_attempt_at IS NOT NULL")),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    return_id: Mapped[int] = mapped_column(ForeignKey("returns.id", ondelete="CASCADE"), index=True)
    carrier: Mapped[str] = mapped_column(String(32))
    service: Mapped[str] = mapped_column(String(32), default="standard")
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | issued | failed | voided | expired
    tracking_number: Mapped[Optional[str]] = mapped_column(String(64), index=True)
    carrier_shipment_id: Mapped[Optional[str]] = mapped_column(String(128))
    pdf: Mapped[Optional[bytes]] = mapped_column(LargeBinary)
    cost: Mapped[Optional[Decimal]] = mapped_column(Money)
    currency: Mapped[Optional[str]] = mapped_column(String(3))
    tracking_status: Mapped[Optional[str]] = mapped_column(String(24))
    tracking_updated_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    # The next carrier call due for this label (services/labels.py): creating the shipment
    # while "pending", voiding it at the carrier once "voided"; NULL when none is left.
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    locked_until: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    last_error: Mapped[Optional[str]] = mapped_column(Text)
    issued_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    expires_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    voided_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    ret: Mapped[Return] = relationship(back_populates="labels")


class CarrierEvent(Model):
    __tablename__ = "carrier_events"
    __table_args__ = (UniqueConstraint("carrier", "event_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    carrier: Mapped[str] = mapped_column(String(32))
    event_id: Mapped[str] = mapped_column(String(128))
    label_id: Mapped[Optional[int]] = mapped_column(ForeignKey("labels.id", ondelete="SET NULL"), index=True)
    tracking_number: Mapped[str] = mapped_column(String(64))
    raw_status: Mapped[str] = mapped_column(String(64))
    status: Mapped[Optional[str]] = mapped_column(String(24))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Dispute(Model):
    __tablename__ = "disputes"
    __table_args__ = (Index("ix_disputes_status_handler", "status", "handler_id"),
                      Index("ix_disputes_resolved", "resolved_at", "opened_at"))
    id: Mapped[int] = mapped_column(primary_key=True)
    return_id: Mapped[int] = mapped_column(ForeignKey("returns.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="open")  # open | resolved
    handler_id: Mapped[Optional[int]] = mapped_column(ForeignKey("agents.id"))
    customer_email: Mapped[str] = mapped_column(String(254), index=True)
    amount_at_stake: Mapped[Decimal] = mapped_column(Money, default=Decimal("0"))
    findings: Mapped[Optional[str]] = mapped_column(Text)
    outcome: Mapped[Optional[str]] = mapped_column(String(16))  # accept | partial | reject
    resolved_amount: Mapped[Optional[Decimal]] = mapped_column(Money)
    resolution_note: Mapped[Optional[str]] = mapped_column(Text)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    assigned_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    resolved_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    last_customer_message_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    last_handler_reply_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)

    ret: Mapped[Return] = relationship(back_populates="disputes")
    handler: Mapped[Optional[Agent]] = relationship()
    messages: Mapped[list["DisputeMessage"]] = relationship(back_populates="dispute", order_by="DisputeMessage.id",
                                                            cascade="all, delete-orphan")


class DisputeMessage(Model):
    __tablename__ = "dispute_messages"
    id: Mapped[int] = mapped_column(primary_key=True)
    dispute_id: Mapped[int] = mapped_column(ForeignKey("disputes.id", ondelete="CASCADE"), index=True)
    author: Mapped[str] = mapped_column(String(16))  # customer | handler
    agent_id: Mapped[Optional[int]] = mapped_column(ForeignKey("agents.id"))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    dispute: Mapped[Dispute] = relationship(back_populates="messages")
    agent: Mapped[Optional["Agent"]] = relationship()  # who wrote it, for the team's side


class ReminderSent(Model):
    """One row per reminder occurrence: the unique key is what makes "exactly once" hold
    when several schedulers sweep at the same time."""

    __tablename__ = "reminders_sent"
    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(120), unique=True)
    kind: Mapped[str] = mapped_column(String(48))
    return_id: Mapped[Optional[int]] = mapped_column(ForeignKey("returns.id", ondelete="CASCADE"), index=True)
    dispute_id: Mapped[Optional[int]] = mapped_column(ForeignKey("disputes.id", ondelete="CASCADE"))
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

"""admin view and KPIs: units per order, search and KPI indexes

Revision ID: 0004
Revises: 0002
Create Date: 2026-11-26 12:00:00

Two copies of facts, so that a year of KPIs reads indexes only (no join of a year of returns
with their items, no join of a year of orders with their lines):

- ``orders.units``: the units ordered over all lines (kept by ``services.orders``);
- ``return_items.created_at``: the creation time of the item's return (set on insert, see
  ``models.py``; a return's ``created_at`` never changes).

Indexes, each for a query of the admin view or of ``services/kpis.py`` (EXPLAINs in
``bench/README.md``):

- ``ix_returns_email_lower``: search by customer email, case-insensitive, newest first.
- ``ix_returns_open_refund``: the refunds still open (partial: a few thousand rows of a
  million), covering what the "refund due" and "refund overdue" queues and counts need.
- ``ix_returns_refund_kpi``: refunds made in a period with what the due date needs (covering).
- ``ix_labels_delivered``: labels the carrier reports delivered (the "to receive" queue probes
  it for the few authorized returns; partial, return ids only).
- ``ix_orders_placed_units``: orders and units placed in a period (covering).
- ``ix_return_items_created_kpi``: items of the returns created in a period, with reason, units
  and SKU (covering: per-reason and per-product figures read only this index).
- ``ix_return_items_triaged``: items triaged in a period, by disposition (covering).
- ``ix_return_items_refurbish_pending``: the refurbish queue (partial: only pending items).
- ``ix_disputes_resolved``: disputes resolved in a period.

Only tables of 0001 are touched, so the revision can sit on any chain after it.
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0002'
branch_labels = None
depends_on = None


OPEN_REFUND = ("resolution = 'refund' AND status IN ('authorized', 'in_transit', 'received', 'disputed', "
               "'inspected')")


def upgrade():
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.add_column(sa.Column('units', sa.Integer(), nullable=False, server_default='0'))
    op.execute("UPDATE orders SET units = (SELECT COALESCE(SUM(order_lines.quantity), 0) "
               "FROM order_lines WHERE order_lines.order_id = orders.id)")
    with op.batch_alter_table('return_items', schema=None) as batch_op:
        batch_op.add_column(sa.Column('created_at', sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE return_items SET created_at = (SELECT returns.created_at FROM returns "
               "WHERE returns.id = return_items.return_id)")
    with op.batch_alter_table('return_items', schema=None) as batch_op:
        batch_op.alter_column('created_at', existing_type=sa.DateTime(timezone=True), nullable=False)

    op.create_index('ix_orders_placed_units', 'orders', ['placed_at', 'units'], unique=False)
    op.create_index('ix_returns_email_lower', 'returns', [sa.text('lower(customer_email)'), 'created_at'],
                    unique=False)
    op.create_index('ix_returns_open_refund', 'returns',
                    ['status', 'created_at', 'id', 'first_scan_at', 'received_at'], unique=False,
                    postgresql_where=sa.text(OPEN_REFUND), sqlite_where=sa.text(OPEN_REFUND))
    op.create_index('ix_returns_refund_kpi', 'returns',
                    ['refunded_at', 'created_at', 'first_scan_at', 'received_at'], unique=False)
    op.create_index('ix_labels_delivered', 'labels', ['return_id'], unique=False,
                    postgresql_where=sa.text("tracking_status = 'delivered' AND status <> 'voided'"),
                    sqlite_where=sa.text("tracking_status = 'delivered' AND status <> 'voided'"))
    op.create_index('ix_return_items_created_kpi', 'return_items',
                    ['created_at', 'reason', 'quantity', 'sku'], unique=False)
    op.create_index('ix_return_items_triaged', 'return_items', ['triaged_at', 'disposition'], unique=False)
    op.create_index('ix_return_items_refurbish_pending', 'return_items', ['id'], unique=False,
                    postgresql_where=sa.text("refurbish_status = 'pending'"),
                    sqlite_where=sa.text("refurbish_status = 'pending'"))
    op.create_index('ix_disputes_resolved', 'disputes', ['resolved_at', 'opened_at'], unique=False)


def downgrade():
    op.drop_index('ix_disputes_resolved', table_name='disputes')
    op.drop_index('ix_return_items_refurbish_pending', table_name='return_items')
    op.drop_index('ix_return_items_triaged', table_name='return_items')
    op.drop_index('ix_return_items_created_kpi', table_name='return_items')
    op.drop_index('ix_labels_delivered', table_name='labels')
    op.drop_index('ix_returns_refund_kpi', table_name='returns')
    op.drop_index('ix_returns_open_refund', table_name='returns')
    op.drop_index('ix_returns_email_lower', table_name='returns')
    op.drop_index('ix_orders_placed_units', table_name='orders')
    with op.batch_alter_table('return_items', schema=None) as batch_op:
        batch_op.drop_column('created_at')
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_column('units')

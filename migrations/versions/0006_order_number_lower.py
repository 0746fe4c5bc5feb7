"""orders: an index on lower(order_number) for the customers' lookup

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 04:00:00

The customers' page finds an order whatever the case of the number typed ("demo-1017" for
"DEMO-1017", services/orders.py ``customer_order_number``). The exact spelling reads the
unique index; the case-insensitive fallback compares ``lower(order_number)``, which without
this expression index reads the whole orders table.
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade():
    op.create_index("ix_orders_order_number_lower", "orders", [sa.text("lower(order_number)")], unique=False)


def downgrade():
    op.drop_index("ix_orders_order_number_lower", table_name="orders")

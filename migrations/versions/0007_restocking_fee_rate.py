"""returns: the restocking fee rate of the policy the return was made under

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 06:30:00

The restocking fee was computed once, on the units announced, and kept whatever arrived: a
customer announcing two shirts and sending one paid the fee on two, and an item that never
arrived or whose dispute the shop refused still cost its fee. The fee now follows the units
kept (services/returns.py ``recount_restocking_fee``), at the rate of the policy the return
was made under, stored here. Returns made before this revision have no rate and keep the fee
they were quoted.
"""
from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("returns") as batch:
        batch.add_column(sa.Column("restocking_fee_rate", sa.Numeric(7, 4).with_variant(sa.String(24), "sqlite"),
                                   nullable=True))


def downgrade():
    with op.batch_alter_table("returns") as batch:
        batch.drop_column("restocking_fee_rate")

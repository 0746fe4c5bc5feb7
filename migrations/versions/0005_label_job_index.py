"""labels: the label job's partial index on next_attempt_at

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 15:00:00

``labels.next_attempt_at`` is when the next carrier call for a label is due: creating the
shipment of a pending label, or voiding at the carrier the shipment of a voided one. Once no
call is left it is NULL, so the partial index ``ix_labels_due`` holds only the labels the
``issue_labels`` job has work for, however many labels exist.

Labels written before this revision kept ``next_attempt_at`` after they were issued: it is
cleared for every label that is not pending (none of them has a carrier call left: voids at
the carrier did not exist before).
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade():
    op.execute("UPDATE labels SET next_attempt_at = NULL WHERE status <> 'pending'")
    op.create_index("ix_labels_due", "labels", ["next_attempt_at"], unique=False,
                    postgresql_where=sa.text("next_attempt_at IS NOT NULL"),
                    sqlite_where=sa.text("next_attempt_at IS NOT NULL"))


def downgrade():
    op.drop_index("ix_labels_due", table_name="labels",
                  postgresql_where=sa.text("next_attempt_at IS NOT NULL"),
                  sqlite_where=sa.text("next_attempt_at IS NOT NULL"))

"""reminder hints on returns, first attempt of webhook deliveries and mails

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 09:00:00

``returns.refund_reminder_at`` / ``returns.label_reminder_at``: the earliest instant a reminder
of the return can be due (NULL: never again), each behind a partial index, so that a reminder
sweep reads only the returns that are due. Open returns start at 1970-01-01 ("look at it at the
next sweep"), which computes the real hint.

``webhook_deliveries.first_attempt_at``, ``mail_messages.first_attempt_at``: the 3 days of
retries count from the first attempt.
``ix_outbox_events_return_order`` (return_id, id): "is an earlier event of this return still
pending?", asked for every webhook delivery candidate.
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

FINAL = ('rejected', 'cancelled', 'expired', 'refunded', 'closed')


def _recheck_literal() -> str:
    # SQLite keeps naive UTC text in SQLAlchemy's format (compared as text); PostgreSQL a timestamptz.
    if op.get_bind().dialect.name == 'sqlite':
        return "'1970-01-01 00:00:00.000000'"
    return "'1970-01-01T00:00:00+00:00'"


def upgrade():
    with op.batch_alter_table('returns', schema=None) as batch_op:
        batch_op.add_column(sa.Column('refund_reminder_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('label_reminder_at', sa.DateTime(timezone=True), nullable=True))
    final = ", ".join(f"'{s}'" for s in FINAL)
    recheck = _recheck_literal()
    op.execute(f"UPDATE returns SET refund_reminder_at = {recheck}, label_reminder_at = {recheck} "
               f"WHERE status NOT IN ({final})")
    op.create_index('ix_returns_refund_reminder_at', 'returns', ['refund_reminder_at'], unique=False,
                    postgresql_where=sa.text('refund_reminder_at IS NOT NULL'),
                    sqlite_where=sa.text('refund_reminder_at IS NOT NULL'))
    op.create_index('ix_returns_label_reminder_at', 'returns', ['label_reminder_at'], unique=False,
                    postgresql_where=sa.text('label_reminder_at IS NOT NULL'),
                    sqlite_where=sa.text('label_reminder_at IS NOT NULL'))

    with op.batch_alter_table('webhook_deliveries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('first_attempt_at', sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE webhook_deliveries SET first_attempt_at = created_at WHERE attempts > 0")
    op.create_index('ix_outbox_events_return_order', 'outbox_events', ['return_id', 'id'], unique=False)
    with op.batch_alter_table('mail_messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('first_attempt_at', sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE mail_messages SET first_attempt_at = created_at WHERE attempts > 0")


def downgrade():
    with op.batch_alter_table('mail_messages', schema=None) as batch_op:
        batch_op.drop_column('first_attempt_at')
    op.drop_index('ix_outbox_events_return_order', table_name='outbox_events')
    with op.batch_alter_table('webhook_deliveries', schema=None) as batch_op:
        batch_op.drop_column('first_attempt_at')
    op.drop_index('ix_returns_label_reminder_at', table_name='returns')
    op.drop_index('ix_returns_refund_reminder_at', table_name='returns')
    with op.batch_alter_table('returns', schema=None) as batch_op:
        batch_op.drop_column('label_reminder_at')
        batch_op.drop_column('refund_reminder_at')

"""mail_messages: a mail may be queued unrendered (template, locale, context)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 10:10:00

The customer's confirmation mail was rendered (three Jinja templates) inside POST
/api/v1/returns, the API's busiest write. It is now queued as what renders it — template,
locale and a JSON context — with subject and text NULL, and the ``send_mail`` job renders it
before the first attempt and stores the result in the row (services/notifications.py).

Downgrade: the old code needs a subject and a text in every row, and a migration cannot render
(the templates and settings belong to the application). So the downgrade refuses while a
*pending* mail is still unrendered — it would otherwise go out with a placeholder or never —
and says how to render them first (run the ``send_mail`` job: it renders every due mail
before trying to send it, even with the SMTP server down). Unrendered mails that are not
pending (only ``failed`` ones: their render failed) get a placeholder subject and text naming
their template, and stay ``failed``: nobody sends them unless an agent asks to.
"""
from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

PLACEHOLDER_SUBJECT = "[not rendered] "  # + the template's name
# SQLite rebuilds the table (a column's NULL changes); only mail_messages itself is reflected,
# not the tables its foreign key points to (whose expression indexes SQLite cannot reflect).
BATCH = {"reflect_kwargs": {"resolve_fks": False}}


def upgrade():
    with op.batch_alter_table("mail_messages", **BATCH) as batch:
        batch.add_column(sa.Column("template", sa.String(64), nullable=True))
        batch.add_column(sa.Column("locale", sa.String(8), nullable=True))
        batch.add_column(sa.Column("context", sa.JSON(), nullable=True))
        batch.alter_column("subject", existing_type=sa.String(300), nullable=True)
        batch.alter_column("text", existing_type=sa.Text(), nullable=True)


def downgrade():
    conn = op.get_bind()
    mails = sa.table("mail_messages", sa.column("id", sa.Integer), sa.column("status", sa.String),
                     sa.column("subject", sa.String), sa.column("text", sa.Text),
                     sa.column("template", sa.String))
    unrendered = mails.c.subject.is_(None) | mails.c.text.is_(None)
    pending = conn.scalar(sa.select(sa.func.count()).select_from(mails)
                          .where(unrendered, mails.c.status == "pending"))
    if pending:
        raise RuntimeError(
            f"{pending} pending mail(s) are not rendered yet and revision 0007 cannot render them. "
            "Render them first, then downgrade again: stop the web workers (no new returns), run "
            "`flask --app wsgi rma run-jobs --once --job send_mail` until this error is gone (it "
            "renders every due mail before sending it, even if the SMTP server is down).")
    conn.execute(sa.update(mails).where(unrendered).values(
        subject=sa.func.coalesce(mails.c.subject,
                                 PLACEHOLDER_SUBJECT + sa.func.coalesce(mails.c.template, "mail")),
        text=sa.func.coalesce(mails.c.text, "This mail was never rendered (template "
                              + sa.func.coalesce(mails.c.template, "unknown") + ").\n")))
    with op.batch_alter_table("mail_messages", **BATCH) as batch:
        batch.alter_column("text", existing_type=sa.Text(), nullable=False)
        batch.alter_column("subject", existing_type=sa.String(300), nullable=False)
        batch.drop_column("context")
        batch.drop_column("locale")
        batch.drop_column("template")

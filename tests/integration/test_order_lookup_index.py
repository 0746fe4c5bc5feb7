"""The customers' case-insensitive order lookup reads an index, not the whole orders table
(migration 0006: an expression index on lower(order_number))."""
from __future__ import annotations

from sqlalchemy import func, select, text

from rma_service.extensions import db
from rma_service.models import Order


def test_the_case_insensitive_lookup_can_use_its_index(app):
    with app.app_context():
        column = Order.__table__.c.order_number
        query = select(column).where(func.lower(column).in_(["demo-1017", "demo 1017"]))
        sql = str(query.compile(db.engine, compile_kwargs={"literal_binds": True}))
        if db.engine.dialect.name == "postgresql":
            db.session.execute(text("SET LOCAL enable_seqscan = off"))  # an empty table: plan as if large
            plan = "\n".join(db.session.execute(text(f"EXPLAIN {sql}")).scalars())
        else:
            plan = "\n".join(str(row[-1]) for row in db.session.execute(text(f"EXPLAIN QUERY PLAN {sql}")))
        db.session.rollback()
    assert "ix_orders_order_number_lower" in plan, plan

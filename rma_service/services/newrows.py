"""A new return's rows, written without the ORM's unit of work: one statement on
PostgreSQL, one INSERT per table through the driver's cursor on SQLite.

Creating a return is the API's busiest write: the return, its items, the audit events, the
shop's outbox events and their deliveries, the label request and the customer's mail, about
ten rows in seven tables, all new. Through the unit of work, the bookkeeping for those rows
(change tracking, dependency sorting, a RETURNING per row to learn ids nobody reads) cost
more CPU than everything else in the request together.

The services still build model objects, because the payloads, the mail and the label code
read them; but they are built without attribute events (``models.unattached``) and only
*where they go* changes. Inside ``staging()`` the helpers that
create rows (``audit.record``, ``audit.emit``, ``notifications.enqueue_mail``,
``labels.request_label``) hand them to the stage rather than to the session (``new``), and
``write(root)`` inserts the return's object graph plus everything staged, parents first,
asking the database for ids only where a child row needs one. The objects stay transient
(not in the session): read them, don't change them; reload the return to change it.
Mapper events (``before_insert``) do not run here: set such values when building the objects.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from functools import cache
from typing import Any

from sqlalchemy import (
    JSON,
    Integer,
    TypeDecorator,
    bindparam,
    column,
    func,
    insert,
    inspect,
    select,
    true,
)
from sqlalchemy.orm import RelationshipDirection

from ..extensions import db
from ..models import unattached
from .dbapi import Prepared, driver_errors

_STAGE = "rma_new_rows"


def new(model: type, values: dict[str, Any]) -> Any:
    """A new row of ``model`` for the current transaction, like ``add(model(**values))``.
    While a return is being created (``staging``) the object is built without attribute
    events (``models.unattached``: the rows are written by ``write``, which reads the values
    and the many-to-one references from the object itself), about a tenth of the constructor's
    CPU; otherwise it is constructed and added to the session as usual."""
    stage = db.session.info.get(_STAGE)
    if stage is None:
        obj = model(**values)
        db.session.add(obj)
    else:
        obj = unattached(model, values)
        stage.append(obj)
    return obj


@contextmanager
def staging() -> Iterator[list]:
    """Collect the rows that ``new`` receives until the block ends (see ``write``)."""
    stage: list = []
    db.session.info[_STAGE] = stage
    try:
        yield stage
    finally:
        db.session.info.pop(_STAGE, None)


class _Shape:
    """How the objects of one model become rows: columns with their defaults, and the
    many-to-one references that give foreign key values once the parent has an id."""

    def __init__(self, model: type) -> None:
        mapper = inspect(model)
        self.table = mapper.local_table
        self.pk = mapper.primary_key[0]
        self.pk_attr = mapper.get_property_by_column(self.pk).key
        # An integer primary key is the database's to give.
        self.db_pk = isinstance(self.pk.type, Integer) and self.pk.autoincrement in ("auto", True)
        self.columns = []  # (attribute, column key, column default)
        for prop in mapper.column_attrs:
            column = prop.columns[0]
            if column is self.pk and self.db_pk:
                continue
            self.columns.append((prop.key, column.key, column.default))
        self.column_key = {attr: key for attr, key, _default in self.columns}
        self.column_key[self.pk_attr] = self.pk.key
        self.parents = []  # (relationship, [(attribute of the FK, attribute of the parent's key)])
        for rel in mapper.relationships:
            if rel.direction is RelationshipDirection.MANYTOONE:
                pairs = [(mapper.get_property_by_column(local).key,
                          rel.mapper.get_property_by_column(remote).key)
                         for local, remote in rel.local_remote_pairs]
                self.parents.append((rel.key, pairs))
        self.pairs = dict(self.parents)
        # Types whose Python-side conversion must run before a value travels as JSON.
        self.decorators = {column.key: column.type for column in self.table.columns
                           if isinstance(column.type, TypeDecorator)}
        self.children = [rel.key for rel in mapper.relationships
                         if rel.direction is RelationshipDirection.ONETOMANY]
        # Built once: a statement object reused is compiled once and hashed once.
        self.insert = insert(self.table)
        self.insert_returning = insert(self.table).returning(self.pk, sort_by_parameter_order=True)

    def row(self, obj: Any) -> dict[str, Any]:
        # The objects are transient (never in a session): values go straight to their
        # __dict__, as a load would put them, without attribute events.
        state = obj.__dict__
        for rel, pairs in self.parents:
            parent = state.get(rel)
            if parent is not None:
                for fk_attr, key_attr in pairs:
                    state[fk_attr] = getattr(parent, key_attr)
        values = {}
        for attr, key, default in self.columns:
            if attr in state:
                values[key] = state[attr]
            elif default is None:
                values[key] = None
            else:
                value = default.arg(None) if default.is_callable else default.arg
                state[attr] = value  # as the unit of work would: the object shows it
                values[key] = value
        return values


@cache
def _shape(model: type) -> _Shape:
    return _Shape(model)


@cache
def _rank() -> dict[Any, int]:
    """Tables in foreign key order, parents first (computed once: sorting is not free)."""
    return {table: rank for rank, table in enumerate(db.metadata.sorted_tables)}


def _graph(root: Any, staged: list) -> list:
    """The root, the objects reachable through its one-to-many collections (items,
    their photos, labels), and the staged objects; each once."""
    seen: dict[int, Any] = {}
    todo = [root, *staged]
    for obj in todo:  # grows while it is read: breadth first, in creation order
        if id(obj) not in seen:
            seen[id(obj)] = obj
            for key in _shape(type(obj)).children:
                todo.extend(obj.__dict__.get(key) or ())
    return list(seen.values())


def write(root: Any, staged: list) -> None:
    """Insert ``root`` (a new Return), its collections and ``staged`` in the current
    transaction, parents before children, rows of a table in creation order (audit trail,
    outbox). ``root.id`` is set; the other objects' ids only where a child needed them."""
    objects = _graph(root, staged)
    groups: dict[Any, list] = defaultdict(list)  # table → objects, in creation order
    for obj in objects:
        groups[_shape(type(obj)).table].append(obj)
    ordered = sorted(groups.items(), key=lambda item: _rank()[item[0]])
    new = {id(obj) for obj in objects}
    conn = db.session.connection()
    root_first = len(ordered[0][1]) == 1 and ordered[0][1][0] is root
    if conn.dialect.name == "postgresql" and root_first:
        links = {id(obj): tuple(_parents(obj, new)) for obj in objects}  # (relationship, new parent)
        if _joinable(root, links) and _write_one_statement(conn, root, ordered, links):
            return
    _write_per_table(conn, objects, ordered, new)


def _parents(obj: Any, new: set) -> Iterator[tuple[str, Any]]:
    """The new parents of ``obj`` (``new``: ids of the objects being inserted)."""
    for rel, _pairs in _shape(type(obj)).parents:
        parent = obj.__dict__.get(rel)
        if parent is not None and id(parent) in new:
            yield rel, parent


def _write_per_table(conn, objects: list, ordered: list, new: set) -> None:
    """One executemany per table; RETURNING only for the parents of other new rows and for
    outbox events (their deliveries are inserted from their ids)."""
    from .audit import fan_out
    needed = {id(parent) for obj in objects for _rel, parent in _parents(obj, new)}
    if conn.dialect.name == "sqlite":
        _write_sqlite(conn, ordered, needed)
        return
    for table, group in ordered:
        shape = _shape(type(group[0]))
        rows = [shape.row(obj) for obj in group]
        if shape.db_pk and (table.name == _OUTBOX or any(id(obj) in needed for obj in group)):
            ids = conn.execute(shape.insert_returning, rows).scalars().all()
            for obj, new_id in zip(group, ids):
                setattr(obj, shape.pk_attr, new_id)
            if table.name == _OUTBOX:
                fan_out(conn, ids)
        else:
            conn.execute(shape.insert, rows)


# SQLite: the rows go to the driver's cursor (see services/dbapi.py for why). Each
# table's INSERT is SQL text made once per process, its values converted by the very bind
# processors SQLAlchemy would use (dates as SQLite stores them, JSON, decimals), and an id
# comes from the cursor's ``lastrowid``, one row at a time, only where a child row or a
# delivery needs it.
_sqlite_inserts: dict[Any, tuple[str, list]] = {}  # table → (SQL, [(column key, processor)])


@cache
def _sqlite_deliveries() -> Prepared:
    """``audit.deliveries_insert`` for the outbox events with ids from ``first`` to ``last``."""
    from ..models import OutboxEvent
    from .audit import deliveries_insert
    o = OutboxEvent.__table__
    events = (select(o.c.id, o.c.type, o.c.created_at)
              .where(o.c.id.between(bindparam("first"), bindparam("last"))).subquery("events"))
    return Prepared(deliveries_insert(events, "sqlite"))


def _sqlite_insert(table: Any, shape: _Shape, dialect: Any) -> tuple[str, list]:
    found = _sqlite_inserts.get(table)
    if found is None:
        keys = [key for _attr, key, _default in shape.columns]
        # SQLAlchemy writes the SQL: "INSERT INTO t (a, b, …) VALUES (?, ?, …)", parameters in ``keys`` order.
        sql = shape.insert.compile(dialect=dialect, column_keys=keys).string
        processors = [(key, table.c[key].type.dialect_impl(dialect).bind_processor(dialect)) for key in keys]
        found = _sqlite_inserts.setdefault(table, (sql, processors))
    return found


def _write_sqlite(conn, ordered: list, needed: set) -> None:
    dialect = conn.dialect
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        for table, group in ordered:
            shape = _shape(type(group[0]))
            sql, processors = _sqlite_insert(table, shape, dialect)
            rows = []
            for obj in group:
                values = shape.row(obj)
                # Every value through its processor, None included (JSON's None is 'null', as in Core).
                rows.append([values[key] if process is None else process(values[key])
                             for key, process in processors])
            if shape.db_pk and (table.name == _OUTBOX or any(id(obj) in needed for obj in group)):
                ids = []
                for obj, row in zip(group, rows):
                    with driver_errors(dialect, sql, row):
                        cursor.execute(sql, row)
                    ids.append(cursor.lastrowid)
                    setattr(obj, shape.pk_attr, cursor.lastrowid)
                if table.name == _OUTBOX:
                    # The events' deliveries. One writer at a time: the rows just inserted
                    # took consecutive ids (SQLite gives max(rowid) + 1).
                    _sqlite_deliveries().run(conn, {"first": ids[0], "last": ids[-1]})
            else:
                with driver_errors(dialect, sql, rows, many=len(rows) > 1):
                    cursor.executemany(sql, rows)
    finally:
        cursor.close()


# PostgreSQL: everything in one statement, one round trip, one parameter per table —
#   WITH returns_new AS (INSERT INTO returns (…) SELECT … FROM json_to_recordset(:t0) AS v0(n, …)
#                        ORDER BY n RETURNING id),
#        events_new AS (INSERT INTO events (…, return_id) SELECT v1.…, returns_new.id
#                       FROM json_to_recordset(:t1) AS v1(n, …) JOIN returns_new ON true ORDER BY n), …
#        webhook_deliveries_new AS (INSERT INTO webhook_deliveries … SELECT … FROM outbox_events_new …)
#   SELECT id FROM returns_new
# Each table's rows travel as one JSON array: the statement stays short and has a few
# parameters whatever the number of rows, so the driver keeps its parsed form, and its SQL
# depends only on which tables take part. The data-modifying CTEs run in no set order, so
# each table's rows are one INSERT whose SELECT is ordered: ids follow creation order within
# a table, which is what readers rely on (audit trail, webhook order). A child's parent is
# the root (one row: a cross join); the outbox events' deliveries are selected from the
# events' CTE and the subscribed endpoints (audit.deliveries_insert).
_OUTBOX = "outbox_events"
_statements: dict[tuple, Prepared] = {}  # layout → statement; a handful (which tables, which parents)


def _joinable(root: Any, links: dict[int, tuple]) -> bool:
    return all(parent is root for found in links.values() for _rel, parent in found)


class _NotJson(Exception):
    """A value JSON cannot carry (bytes): the rows go through the per-table path."""


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        raise _NotJson
    return value


# About a hundred values per new return: most travel as they are, decided by one set lookup.
_AS_IS = frozenset({str, int, bool, float, type(None), dict, list})


def _write_one_statement(conn, root: Any, ordered: list, links_of: dict[int, tuple]) -> bool:
    """False (nothing written) when the rows do not fit one statement. ``links_of``: each
    object's new parents, by ``id``."""
    position = {id(obj): t for t, (_table, group) in enumerate(ordered) for obj in group}
    dialect = conn.dialect
    params: dict[str, Any] = {}
    layout = []  # the statement's shape: tables, and how their rows find their parents
    try:
        for t, (table, group) in enumerate(ordered):
            shape = _shape(type(group[0]))
            links, rows = set(), []
            decorators = shape.decorators
            for i, obj in enumerate(group):
                links.add(tuple(sorted((rel, position[id(parent)]) for rel, parent in links_of[id(obj)])))
                row = {"n": i}
                for key, value in shape.row(obj).items():
                    if key in decorators:
                        value = decorators[key].process_bind_param(value, dialect)
                    row[key] = value if type(value) in _AS_IS else _json_value(value)
                rows.append(row)
            if len(links) > 1:
                return False  # rows of one table with different parents: not one INSERT … SELECT
            params[f"t{t}"] = rows
            layout.append((table.name, links.pop()))
    except _NotJson:
        return False
    key = tuple(layout)
    stmt = _statements.get(key)
    if stmt is None:
        stmt = _statements.setdefault(key, Prepared(_build_statement(ordered, layout, dialect.name)))
    rows, _count = stmt.run(conn, params)  # on psycopg's cursor (services/dbapi.py)
    root.id = rows[0][0]
    for _table, group in ordered:
        for obj in group:
            for rel, parent in links_of[id(obj)]:
                if parent is root:
                    for fk_attr, key_attr in _shape(type(obj)).pairs[rel]:
                        obj.__dict__[fk_attr] = getattr(root, key_attr)  # transient: no events needed
    return True


def _build_statement(ordered: list, layout: list, dialect: str):
    """The WITH … statement for one layout (built once per layout, then reused: its SQL is
    compiled once)."""
    from .audit import deliveries_insert
    parents_of_others = {pt for _name, links in layout for _rel, pt in links}
    ctes, deliveries = [], []  # a CTE per table (by position); the outbox's deliveries
    for t, ((table, group), (_name, links)) in enumerate(zip(ordered, layout)):
        shape = _shape(type(group[0]))
        from_parent = {}  # column key → expression of the root's CTE
        for rel, pt in links:
            parent_shape = _shape(type(ordered[pt][1][0]))
            for fk_attr, key_attr in shape.pairs[rel]:
                from_parent[shape.column_key[fk_attr]] = ctes[pt].c[parent_shape.column_key[key_attr]]
        bound = [key for _attr, key, _default in shape.columns if key not in from_parent]
        v = (func.json_to_recordset(bindparam(f"t{t}", type_=JSON()))
             .table_valued(column("n", Integer), *[column(key, table.c[key].type) for key in bound])
             .render_derived(name=f"v{t}", with_types=True))
        select_from = v
        for pt in sorted({pt for _rel, pt in links}):
            select_from = select_from.join(ctes[pt], true())
        query = (select(*[v.c[key] for key in bound], *from_parent.values())
                 .select_from(select_from).order_by(v.c.n))
        stmt = insert(table).from_select(bound + list(from_parent), query)
        if table.name == _OUTBOX:
            stmt = stmt.returning(table.c.id, table.c.type, table.c.created_at)
        elif t in parents_of_others or t == 0:
            stmt = stmt.returning(table.c[shape.pk.key])
        ctes.append(stmt.cte(f"{table.name}_new"))
        if table.name == _OUTBOX:
            deliveries.append(deliveries_insert(ctes[-1], dialect).cte("webhook_deliveries_new"))
    return select(ctes[0].c[_shape(type(ordered[0][1][0])).pk.key]).add_cte(*ctes, *deliveries)

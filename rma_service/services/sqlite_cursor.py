"""Prebuilt Core statements run on SQLite's own cursor: the few statements of a new return.

SQLite runs in-process: a simple statement costs it a few microseconds, and SQLAlchemy's
execution path around it (cached-compilation lookup, execution context, generic parameter
and result processing, the result object) costs many times that. For the statements of the
busiest request (read the order, reserve its units, insert the new rows: services/orders.py,
services/returns.py, services/newrows.py) the statement is compiled once per dialect and run
on the cursor of the session's own connection (same transaction, same locks), its values
converted by the very processors SQLAlchemy would use (public ``TypeEngine.dialect_impl`` /
``bind_processor`` / ``result_processor``), driver errors raised as SQLAlchemy's.

Other databases run the statement through SQLAlchemy as usual. Engine events
(``before_cursor_execute``) do not see what runs here; sqlite3's trace callback does.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Optional

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError


@contextmanager
def driver_errors(dialect: Any, sql: Optional[str], params: Any = None, many: bool = False) -> Iterator[None]:
    """Re-raise the driver's exceptions as SQLAlchemy would (IntegrityError, OperationalError,
    …): callers handle SQLAlchemy's exceptions, not sqlite3's."""
    try:
        yield
    except dialect.dbapi.Error as exc:
        raise DBAPIError.instance(sql, params, exc, dialect.dbapi.Error, dialect=dialect, ismulti=many) from exc


class Prepared:
    """A Core statement with named bind parameters, run with ``run(conn, params)``: rows as
    tuples (processed like SQLAlchemy's) and the row count."""

    def __init__(self, statement: Any) -> None:
        self.statement = statement
        self._sqlite: Optional[tuple] = None

    def _compiled(self, dialect: Any) -> tuple:
        if self._sqlite is None:
            compiled = self.statement.compile(dialect=dialect)
            binds = [(name, compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect))
                     for name in compiled.positiontup]
            fixed = dict(compiled.params)  # the statement's own values (literals)
            results = None
            if getattr(self.statement, "selected_columns", None) is not None and self.statement.is_select:
                results = [column.type.dialect_impl(dialect).result_processor(dialect, None)
                           for column in self.statement.selected_columns]
            self._sqlite = (compiled.string, binds, fixed, results)
        return self._sqlite

    def run(self, conn: Connection, params: dict[str, Any]) -> tuple[list[tuple], int]:
        dialect = conn.dialect
        if dialect.name != "sqlite":
            result = conn.execute(self.statement, params)
            return (result.all() if result.returns_rows else []), result.rowcount
        sql, binds, fixed, results = self._compiled(dialect)
        values = []
        for name, process in binds:
            value = params[name] if name in params else fixed[name]
            values.append(value if process is None else process(value))
        cursor = conn.connection.cursor()
        try:
            with driver_errors(dialect, sql, values):
                cursor.execute(sql, values)
                rows = cursor.fetchall() if results is not None else []
            if results is not None and any(results):
                rows = [tuple(row[i] if process is None else process(row[i]) for i, process in enumerate(results))
                        for row in rows]
            return rows, cursor.rowcount
        finally:
            cursor.close()

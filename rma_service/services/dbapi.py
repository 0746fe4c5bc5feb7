"""Prebuilt Core statements run on the driver's own cursor: the statements of a new return.

A simple statement costs SQLite (in-process) a few microseconds and PostgreSQL one round
trip; SQLAlchemy's execution path around it (cached-compilation lookup, execution context,
generic parameter and result processing, the result object) costs many times what the
driver itself spends. For the statements of the busiest request (read the order, reserve its
units, insert the new rows: services/orders.py, services/returns.py, services/newrows.py) the
statement is compiled once per dialect and run on the cursor of the session's own connection
(same transaction, same locks), its values converted by the very processors SQLAlchemy would
use (public ``TypeEngine.dialect_impl`` / ``bind_processor`` / ``result_processor``, the latter
with the type codes of the first answer, as SQLAlchemy does), driver errors raised as
SQLAlchemy's. A statement whose compiled form needs more than that (escaped parameter names)
and other databases go through SQLAlchemy as usual.

Engine events (``before_cursor_execute``) do not see what runs here; sqlite3's trace callback
does.
"""
from __future__ import annotations

from functools import cache
from typing import Any, Optional

from psycopg import RawCursor
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError


class driver_errors:
    """``with driver_errors(dialect, sql, params):`` re-raises the driver's exceptions as
    SQLAlchemy would (IntegrityError, OperationalError, …): callers handle SQLAlchemy's
    exceptions, not the driver's. (A class: cheaper than a generator context manager, and
    it wraps every statement of a new return.)"""

    __slots__ = ("dialect", "sql", "params", "many")

    def __init__(self, dialect: Any, sql: Optional[str], params: Any = None, many: bool = False) -> None:
        self.dialect, self.sql, self.params, self.many = dialect, sql, params, many

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: Any, _traceback: Any) -> bool:
        base = self.dialect.dbapi.Error
        if exc is not None and isinstance(exc, base):
            raise DBAPIError.instance(self.sql, self.params, exc, base, dialect=self.dialect,
                                      ismulti=self.many) from exc
        return False


class Prepared:
    """A Core statement with named bind parameters, run with ``run(conn, params)``: rows as
    tuples (processed like SQLAlchemy's) and the row count."""

    def __init__(self, statement: Any) -> None:
        self.statement = statement
        self._compiled: dict[str, Optional[tuple]] = {}  # dialect name → (compiled, bind processors)
        self._results: dict[str, list] = {}  # dialect name → (position, result processor), from the first answer

    def _for(self, dialect: Any) -> Optional[tuple]:
        if dialect.name not in self._compiled:
            # psycopg: PostgreSQL's own $n placeholders, run on a RawCursor. With %(name)s,
            # psycopg parses the placeholders out of the SQL on every execution of a statement
            # longer than 4 kB (it caches shorter ones): the new return's WITH statement is.
            compiled = self.statement.compile(dialect=_numeric_dollar() if dialect.name == "postgresql" else dialect)
            found = None
            if not compiled.escaped_bind_names:
                # By the name each parameter has in the SQL text (anonymous ones included).
                processors = [(name, bind.type.dialect_impl(dialect).bind_processor(dialect))
                              for bind, name in compiled.bind_names.items()]
                found = (compiled, [(name, process) for name, process in processors if process is not None])
            self._compiled[dialect.name] = found
        return self._compiled[dialect.name]

    def run(self, conn: Connection, params: dict[str, Any]) -> tuple[list[tuple], int]:
        dialect = conn.dialect
        found = self._for(dialect) if (dialect.name, dialect.driver) in _DRIVERS else None
        if found is None:
            result = conn.execute(self.statement, params)
            return (result.all() if result.returns_rows else []), result.rowcount
        compiled, bind_processors = found
        sql = compiled.string
        values = compiled.construct_params(params)  # the statement's own values and ``params``
        for name, process in bind_processors:
            values[name] = process(values[name])
        args = [values[name] for name in compiled.positiontup] if compiled.positional else values
        driver_conn = conn.connection.dbapi_connection
        cursor = RawCursor(driver_conn) if dialect.name == "postgresql" else driver_conn.cursor()
        try:
            with driver_errors(dialect, sql, args):
                cursor.execute(sql, args)
                # (Not cursor.description to tell: psycopg builds a Column object per column each time.)
                rows = cursor.fetchall() if self.statement.is_select else []
            if rows:
                results = self._results.get(dialect.name)
                if results is None:  # (position, processor) of the columns that have one
                    columns = self.statement.selected_columns
                    result_processors = [column.type.dialect_impl(dialect).result_processor(dialect, described[1])
                                         for column, described in zip(columns, cursor.description)]
                    results = self._results.setdefault(dialect.name, [
                        (i, process) for i, process in enumerate(result_processors) if process is not None])
                if results:
                    processed = []
                    for row in rows:
                        row = list(row)
                        for i, process in results:
                            row[i] = process(row[i])
                        processed.append(tuple(row))
                    rows = processed
            return rows, cursor.rowcount
        finally:
            cursor.close()


@cache
def _numeric_dollar() -> Any:
    from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg
    return PGDialect_psycopg(paramstyle="numeric_dollar")


# The drivers whose cursor this module uses (the service's own: SQLite's and psycopg 3).
_DRIVERS = frozenset({("sqlite", "pysqlite"), ("postgresql", "psycopg")})

"""SQLite statements in one trip to the driver's thread.

aiosqlite runs the sqlite3 connection on a thread of its own; every call crosses to it and
back (a queue put, a wake-up, a ``call_soon_threadsafe`` write to the event loop's pipe).
SQLAlchemy's stock cursor for it makes three or four such trips per statement: make a
cursor, execute, fetch the rows, close. On the inbound group commit (some twenty statements)
and the dispatcher's outcome recording, the trips cost more CPU than SQLite's own work.

``OneTripCursor`` makes one: a single function on the driver's thread makes the sqlite3
cursor, executes, fetches every row and closes, and hands back the rows with the
description, row count and last row id. Nothing else changes: the same connection, the same
transaction control (``BEGIN IMMEDIATE`` from gateway.store.database), the same errors
(sqlite3's, raised on the caller's side), rows buffered as SQLAlchemy's own non-streaming
cursor buffers them. Server-side cursors (``stream_results``) keep aiosqlite's cursor.

``gateway.store.database.Database`` passes :func:`dbapi` as the engine's ``module``; the URL
stays ``sqlite+aiosqlite``.

:func:`run_statement` goes one step further for statements the caller already rendered
(gateway.store.driver_sql's batched inserts and updates): inside a transaction it hands the
statement to the driver's thread from the event loop itself, without SQLAlchemy's greenlet
and execution context, which together cost several times the trip.
"""

import collections
import sqlite3
from collections.abc import Sequence
from typing import Any

import aiosqlite
from sqlalchemy.connectors.asyncio import AsyncAdapt_dbapi_cursor
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.util.concurrency import await_

_Outcome = tuple[Any, list[Any] | None, int, int | None]
"""(description, rows or None, rowcount, lastrowid) of one statement."""


def _run(conn: sqlite3.Connection, operation: str, parameters: Any, many: bool) -> _Outcome:
    """On the driver's thread: the whole statement, cursor to close."""
    cursor = conn.cursor()
    try:
        if many:
            cursor.executemany(operation, parameters)
        elif parameters is None:
            cursor.execute(operation)
        else:
            cursor.execute(operation, parameters)
        description = cursor.description
        rows = cursor.fetchall() if description else None
        return description, rows, cursor.rowcount, cursor.lastrowid
    finally:
        cursor.close()


class OneTripCursor(AsyncAdapt_dbapi_cursor):
    """A buffered cursor whose statement crosses to the driver's thread once."""

    __slots__ = ("_description", "_lastrowid", "_rowcount")

    def __init__(self, adapt_connection: AsyncAdapt_aiosqlite_connection) -> None:
        # No aiosqlite cursor: _run makes (and closes) the sqlite3 one on the driver's thread.
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._cursor = None  # type: ignore[assignment]
        self._soft_closed_memoized = {}  # type: ignore[assignment]
        self._rows = collections.deque()
        self._description: Any = None
        self._rowcount = -1
        self._lastrowid: int | None = None

    @property
    def description(self) -> Any:
        return self._description

    @property
    def rowcount(self) -> int:
        return self._rowcount

    @property
    def lastrowid(self) -> int:
        return self._lastrowid  # type: ignore[return-value]

    @property
    def arraysize(self) -> int:
        return 1

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        pass

    async def _async_soft_close(self) -> None:
        pass

    def close(self) -> None:
        self._rows.clear()

    def _trip(self, operation: Any, parameters: Any, many: bool) -> Any:
        driver: Any = self._connection  # aiosqlite.Connection (its _execute is untyped)
        try:
            description, rows, rowcount, lastrowid = await_(
                driver._execute(_run, driver._conn, operation, parameters, many)
            )
        except Exception as error:
            self._adapt_connection._handle_exception(error)
        self._description = description
        self._rows = collections.deque(rows) if rows is not None else collections.deque()
        self._rowcount = rowcount
        self._lastrowid = lastrowid
        return None

    def execute(self, operation: Any, parameters: Any = None) -> Any:
        return self._trip(operation, parameters, False)

    def executemany(self, operation: Any, seq_of_parameters: Sequence[Any]) -> Any:
        return self._trip(operation, seq_of_parameters, True)

    def nextset(self) -> None:
        self._rows.clear()

    def setinputsizes(self, *inputsizes: Any) -> None:
        pass


class _Connection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ()
    _cursor_cls = OneTripCursor  # type: ignore[assignment]


class _Dbapi(AsyncAdapt_aiosqlite_dbapi):
    def connect(self, *arg: Any, **kw: Any) -> AsyncAdapt_aiosqlite_connection:
        stock = super().connect(*arg, **kw)
        return _Connection(self, stock._connection)


def dbapi() -> AsyncAdapt_aiosqlite_dbapi:
    """The DBAPI module for ``create_async_engine(..., module=dbapi())``."""
    return _Dbapi(aiosqlite, sqlite3)


async def run_statement(
    conn: AsyncConnection, operation: str, parameters: Any, *, many: bool
) -> list[Any] | None:
    """One driver-level statement in ``conn``'s transaction; its rows (plain tuples) or None.

    On a connection of this module the statement goes from the event loop straight to
    aiosqlite's thread: no greenlet and no SQLAlchemy execution context, which cost several
    times the trip itself. SQLite's errors come back as SQLAlchemy's (``IntegrityError`` and
    so on, parameters hidden), as through the engine. Elsewhere (PostgreSQL) it is
    ``exec_driver_sql``.
    """
    sync = conn.sync_connection
    # Outside a transaction the engine must begin one first (a bare statement would commit
    # on its own).
    in_transaction = sync is not None and conn.in_transaction()
    adapted: object = sync.connection.dbapi_connection if sync and in_transaction else None
    if not isinstance(adapted, _Connection):
        result = await conn.exec_driver_sql(operation, parameters)
        return [tuple(row) for row in result.all()] if result.returns_rows else None
    driver: Any = adapted._connection  # aiosqlite.Connection (its _execute is untyped)
    try:
        _, rows, _, _ = await driver._execute(_run, driver._conn, operation, parameters, many)
    except sqlite3.Error as error:
        raise DBAPIError.instance(
            operation, parameters, error, sqlite3.Error, hide_parameters=True, dialect=conn.dialect
        ) from error
    found: list[Any] | None = rows
    return found


__all__ = ["OneTripCursor", "dbapi", "run_statement"]

"""Streaming large result sets as plain tuples, and inserting many, for the set-based
passes of reconciliation.

A million rows through SQLAlchemy's result machinery cost about twice what the driver
itself needs, so the batch engine reads through the driver connection of the same
transaction: aiosqlite's cursor (``fetchmany``) on SQLite, an asyncpg cursor on PostgreSQL.
The statement is still built with SQLAlchemy Core and compiled for the dialect with its
parameters inlined; only integers and short strings are ever inlined (ids, type names).
While the caller works on one batch, the next is already being fetched.

``stream_windows`` goes further for the biggest reads: the database computes the next
window of rows while the caller classifies the current one. On SQLite that only works when
the database does all of a window's work in one step: the sqlite3 module releases the GIL
around each ``sqlite3_step`` but holds it while it builds a row, so a thread building rows
would take turns with the caller instead of running beside it.
"""

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

Row = tuple[Any, ...]


def compile_inline(conn: AsyncConnection, query: sa.Select[Any]) -> str:
    return str(query.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))


async def _driver(conn: AsyncConnection) -> Any:
    # Make sure the transaction really began on the driver connection (asyncpg starts its
    # transaction lazily, and its cursors need one).
    await conn.execute(sa.text("SELECT 1"))
    raw = await conn.get_raw_connection()
    return raw.driver_connection


async def _started(job: Awaitable[Any]) -> "asyncio.Future[Any]":
    """Schedule ``job`` and let it reach the driver's queue before the caller goes on with
    synchronous work (a task that never ran has not asked for anything yet)."""
    future = asyncio.ensure_future(job)
    await asyncio.sleep(0)
    return future


async def stream_rows(
    conn: AsyncConnection, query: sa.Select[Any], *, batch: int = 20_000
) -> AsyncGenerator[list[Row], None]:
    """Yield the rows of ``query`` in batches of at most ``batch`` tuples, in the caller's
    transaction."""
    sql = compile_inline(conn, query)
    driver = await _driver(conn)
    if conn.dialect.name == "sqlite":
        cursor = await driver.execute(sql)
        pending = await _started(cursor.fetchmany(batch))
        try:
            while True:
                rows = await pending
                if not rows:
                    break
                pending = await _started(cursor.fetchmany(batch))
                yield rows
        finally:
            if not pending.done():
                with contextlib.suppress(Exception):
                    await pending
            await cursor.close()
        return
    chunk: list[Row] = []
    async for record in driver.cursor(sql, prefetch=batch):
        chunk.append(tuple(record))
        if len(chunk) >= batch:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


async def stream_windows(
    conn: AsyncConnection, query: sa.Select[Any], *, after: int, upto: int, step: int
) -> AsyncGenerator[list[Row], None]:
    """Yield the rows of ``query`` for the consecutive windows (``after``, ``upto``] of
    width ``step`` from ``after`` to ``upto``, one list per window that has rows, in the
    caller's transaction. ``query`` takes the window's bounds as the bind parameters
    ``after`` and ``upto``; the driver gets its other parameters as they are, so they must
    be ints and strings (type names, JSON paths), as ``compile_inline`` requires.

    On SQLite the next window is computed while the caller works on the current one. The
    statement must make SQLite compute every row of a window before it returns the first
    (an ``ORDER BY`` on an expression, which needs a sort): the sqlite3 module runs that
    first step in ``execute``, without the GIL, and builds the rows in ``fetchall``. The
    statement is compiled once (and the driver prepares it once): a window binds its
    bounds."""
    bounds = [(lo, min(lo + step, upto)) for lo in range(after, upto, max(1, step))]
    if conn.dialect.name != "sqlite":
        for lo, hi in bounds:
            rows: list[Row] = []
            async for chunk in stream_rows(conn, query.params(after=lo, upto=hi)):
                rows.extend(chunk)
            if rows:
                yield rows
        return
    if not bounds:
        return
    compiled = query.compile(dialect=conn.dialect)

    def execute(lo: int, hi: int) -> Awaitable[Any]:
        state = compiled.construct_expanded_state({"after": lo, "upto": hi})
        job: Awaitable[Any] = driver.execute(state.statement, state.positional_parameters)
        return job

    driver = await _driver(conn)
    pending: asyncio.Future[Any] | None = await _started(execute(*bounds[0]))
    try:
        for n in range(len(bounds)):
            assert pending is not None
            cursor = await pending
            pending = None
            try:
                rows = await cursor.fetchall()
            finally:
                await cursor.close()
            if n + 1 < len(bounds):
                pending = await _started(execute(*bounds[n + 1]))
            if rows:
                yield rows
    finally:
        if pending is not None:
            with contextlib.suppress(Exception):
                await (await pending).close()


async def insert_rows(
    conn: AsyncConnection, table: sa.Table, columns: Sequence[str], rows: Sequence[Row]
) -> None:
    """Plain ``INSERT`` of many tuples through the driver's ``executemany``, in the
    caller's transaction: no per-row parameter processing, so only for columns whose
    Python values the driver takes as they are (ints, strings, bytes)."""
    if not rows:
        return
    if conn.dialect.paramstyle == "qmark":
        marks = ", ".join("?" for _ in columns)
    else:
        marks = ", ".join(f"${n}" for n in range(1, len(columns) + 1))
    names = ", ".join(columns)
    sql = f"INSERT INTO {table.name} ({names}) VALUES ({marks})"
    await conn.exec_driver_sql(sql, list(rows))


async def all_rows(conn: AsyncConnection, query: sa.Select[Any]) -> list[Row]:
    """Every row of ``query`` (see ``stream_rows``)."""
    rows: list[Row] = []
    async for chunk in stream_rows(conn, query):
        rows.extend(chunk)
    return rows


__all__ = ["Row", "all_rows", "compile_inline", "insert_rows", "stream_rows", "stream_windows"]

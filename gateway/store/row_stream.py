"""Streaming large result sets as plain tuples, and inserting many, for the set-based
passes of reconciliation.

A million rows through SQLAlchemy's result machinery cost about twice what the driver
itself needs, so the batch engine reads through the driver connection of the same
transaction: aiosqlite's cursor (``fetchmany``) on SQLite, an asyncpg cursor on PostgreSQL.
The statement is still built with SQLAlchemy Core and compiled for the dialect with its
parameters inlined; only integers and short strings are ever inlined (ids, type names).
While the caller works on one batch, the next is already being fetched.
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

Row = tuple[Any, ...]


def compile_inline(conn: AsyncConnection, query: sa.Select[Any]) -> str:
    return str(query.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))


async def stream_rows(
    conn: AsyncConnection, query: sa.Select[Any], *, batch: int = 20_000
) -> AsyncIterator[list[Row]]:
    """Yield the rows of ``query`` in batches of at most ``batch`` tuples, in the caller's
    transaction."""
    sql = compile_inline(conn, query)
    # Make sure the transaction really began on the driver connection (asyncpg starts its
    # transaction lazily, and its cursors need one).
    await conn.execute(sa.text("SELECT 1"))
    raw = await conn.get_raw_connection()
    driver: Any = raw.driver_connection
    if conn.dialect.name == "sqlite":
        cursor = await driver.execute(sql)
        try:
            pending = asyncio.ensure_future(cursor.fetchmany(batch))
            while True:
                rows = await pending
                if not rows:
                    break
                pending = asyncio.ensure_future(cursor.fetchmany(batch))
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


__all__ = ["Row", "all_rows", "compile_inline", "insert_rows", "stream_rows"]

"""Engines and transactions for SQLite (embedded default) and PostgreSQL (scale-out).

SQLite runs in WAL mode with ``synchronous=FULL`` so that whatever we acknowledge survives a
power cut, and every transaction starts with ``BEGIN IMMEDIATE``: one writer at a time, taken
up front, so two processes never deadlock upgrading a read lock. PostgreSQL uses asyncpg and
``FOR UPDATE SKIP LOCKED`` for outbox claims (see gateway/outbox.py).
"""

import operator
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from gateway.errors import ConfigError

SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=FULL",
    "PRAGMA busy_timeout=30000",
    "PRAGMA foreign_keys=ON",
)


def normalise_url(url: str, base_dir: Path) -> str:
    """Pick async drivers and anchor a relative SQLite path at ``base_dir``."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        parsed = parsed.set(drivername="sqlite+aiosqlite")
        db = parsed.database
        if db and db != ":memory:" and not Path(db).is_absolute():
            parsed = parsed.set(database=str(base_dir / db))
    elif backend == "postgresql":
        parsed = parsed.set(drivername="postgresql+asyncpg")
    else:
        raise ConfigError(
            f"database.url: unsupported database {backend!r}; use sqlite or postgresql"
        )
    return parsed.render_as_string(hide_password=False)


class Database:
    """An async engine plus the transaction discipline the gateway relies on."""

    def __init__(
        self, url: str, *, base_dir: Path = Path("."), pool_size: int = 5, echo: bool = False
    ):
        self.url = normalise_url(url, base_dir)
        self.dialect = make_url(self.url).get_backend_name()
        kwargs: dict[str, Any] = {"echo": echo}
        if self.is_sqlite:
            database = make_url(self.url).database
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            # Pooled connections: opening one (and its PRAGMAs) costs more than a commit.
            kwargs.update(pool_size=pool_size, max_overflow=pool_size)
            kwargs["connect_args"] = {"timeout": 30}
        else:
            kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        if self.is_sqlite:
            _install_sqlite_hooks(self.engine)

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """One unit of work: commits on success, rolls back on any exception."""
        async with self.engine.begin() as conn:
            yield conn

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[AsyncConnection]:
        """A read-only transaction: a consistent view that never blocks writers.

        On SQLite it starts with a plain (deferred) BEGIN instead of BEGIN IMMEDIATE, so long
        reads (evidence verification, reports) leave the writer lock free.
        """
        async with self.engine.connect() as conn:
            conn = await conn.execution_options(gateway_read_only=True)
            async with conn.begin():
                yield conn

    connect = snapshot

    async def dispose(self) -> None:
        await self.engine.dispose()

    async def ping(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
        except Exception:
            return False
        return True

    def redacted_url(self) -> str:
        return make_url(self.url).render_as_string(hide_password=True)


def dialect_insert(conn: AsyncConnection, table: sa.Table) -> sqlite.Insert | postgresql.Insert:
    """An INSERT that supports ``on_conflict_do_nothing`` on either backend."""
    if conn.dialect.name == "sqlite":
        return sqlite.insert(table)
    return postgresql.insert(table)


async def insert_numbered(
    conn: AsyncConnection, table: sa.Table, rows: Sequence[Mapping[str, Any]]
) -> list[int]:
    """Insert rows in one batch and return their integer ids, in input order.

    SQLite cannot return ids of an ``executemany`` in order, and SQLAlchemy falls back to one
    INSERT per row; under ``BEGIN IMMEDIATE`` we hold the only writer lock, so numbering the
    rows ourselves from ``max(id) + 1`` is safe and keeps it one statement. PostgreSQL
    returns ordered ids from its batched RETURNING.
    """
    if not rows:
        return []
    if conn.dialect.name == "sqlite":
        last = (await conn.execute(sa.select(sa.func.max(table.c.id)))).scalar()
        start = (last or 0) + 1
        ids = list(range(start, start + len(rows)))
        await execute_rows(
            conn, table.insert(), [{**row, "id": i} for row, i in zip(rows, ids, strict=True)]
        )
        return ids
    result = await conn.execute(
        table.insert().returning(table.c.id, sort_by_parameter_order=True), list(rows)
    )
    return list(result.scalars().all())


def driver_processor(
    column: sa.ColumnElement[Any], dialect: Dialect
) -> Callable[[Any], Any] | None:
    """What turns a Python value into the driver's value for ``column`` on ``dialect`` (None
    when the driver takes it as it is). A type decorator's processor exists only on its
    dialect implementation: the bare type would hand SQLite a naive datetime to format."""
    return column.type.dialect_impl(dialect).bind_processor(dialect)


async def bulk_insert(
    conn: AsyncConnection,
    table: sa.Table,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    constants: Mapping[str, Any] | None = None,
) -> None:
    """Insert many rows with one driver ``executemany``, without SQLAlchemy's per-row
    parameter processing (which costs more than SQLite's own insert).

    ``rows`` hold plain driver-ready values (int, str, bytes, None) for ``columns``, in that
    order; each of ``constants`` is the same for every row and goes through its column's
    type once (datetimes belong there).
    """
    if not rows:
        return
    fixed = dict(constants or {})
    names = [*columns, *fixed]
    compiled = (
        table.insert().values({n: sa.bindparam(n) for n in names}).compile(dialect=conn.dialect)
    )
    order = compiled.positiontup
    if order is None:
        raise TypeError(f"bulk_insert needs a positional paramstyle, not {conn.dialect.name}")
    for name, value in fixed.items():
        process = driver_processor(table.c[name], conn.dialect)
        fixed[name] = process(value) if process is not None else value
    # Each row is extended with the constants and reordered into the statement's order.
    tail = tuple(fixed.values())
    index = {name: i for i, name in enumerate(names)}
    picks = [index[name] for name in order]
    if picks == list(range(len(names))):
        params: list[Any] = [(*row, *tail) for row in rows] if tail else [tuple(r) for r in rows]
    else:
        pick = operator.itemgetter(*picks)
        params = [pick((*row, *tail)) for row in rows]
    await conn.exec_driver_sql(compiled.string, params)


async def execute_rows(
    conn: AsyncConnection, statement: sa.Insert | sa.Update, rows: Sequence[Mapping[str, Any]]
) -> None:
    """``conn.execute(statement, rows)`` as one driver ``executemany``, without SQLAlchemy's
    per-row parameter processing (which costs more than the database's own work on hot
    paths). The statement is compiled once for the first row's keys; each row becomes a
    tuple in the statement's parameter order, a value going through its bind's type
    processor only where that type has one (datetimes, dates); a bind no row names must
    carry its own value (``.values(updated_at=now)``). Every row must have the same keys.
    """
    if not rows:
        return
    dialect = conn.dialect
    compiled = statement.compile(dialect=dialect, column_keys=list(rows[0]))
    order = compiled.positiontup
    if order is None:
        raise TypeError(f"execute_rows needs a positional paramstyle, not {dialect.name}")
    per_row: list[tuple[int, str, Callable[[Any], Any] | None]] = []
    template: list[Any] = []
    for position, name in enumerate(order):
        bind = compiled.binds[name]
        process = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if name in rows[0]:
            per_row.append((position, name, process))
            template.append(None)
            continue
        value = bind.effective_value
        if value is None and bind.required:
            raise TypeError(f"execute_rows: no row names the parameter {name!r}")
        template.append(process(value) if process is not None else value)
    params = []
    for row in rows:
        values = list(template)
        for position, name, convert in per_row:
            value = row[name]
            values[position] = convert(value) if convert is not None else value
        params.append(tuple(values))
    await conn.exec_driver_sql(compiled.string, params)


def _install_sqlite_hooks(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take over transaction control from the driver so we can say BEGIN IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in SQLITE_PRAGMAS:
            cursor.execute(pragma)
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        read_only = conn.get_execution_options().get("gateway_read_only", False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


__all__ = [
    "Database",
    "bulk_insert",
    "dialect_insert",
    "driver_processor",
    "execute_rows",
    "insert_numbered",
    "normalise_url",
]

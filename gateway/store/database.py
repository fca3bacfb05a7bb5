"""Engines and transactions for SQLite (embedded default) and PostgreSQL (scale-out).

SQLite runs in WAL mode with ``synchronous=FULL`` so that whatever we acknowledge survives a
power cut, and every transaction starts with ``BEGIN IMMEDIATE``: one writer at a time, taken
up front, so two processes never deadlock upgrading a read lock. PostgreSQL uses asyncpg and
``FOR UPDATE SKIP LOCKED`` for outbox claims (see gateway/dispatch/outbox.py).
"""

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from gateway.errors import ConfigError
from gateway.store import sqlite_driver

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


class PayloadSealer(Protocol):
    """Seals bytes that carry personal data before they are stored (the PII key ring)."""

    def seal(self, data: bytes, *, bound_to: str) -> bytes: ...

    def unseal(self, blob: bytes, *, bound_to: str) -> bytes: ...


PING_AFTER_IDLE_SECONDS = 30.0
"""A pooled PostgreSQL connection that sat idle longer than this is pinged before it is used;
one in steady use is not (see ``Database``)."""
_SEALER = "gateway_sealer"
_IDLE_SINCE = "gateway_idle_since"
STAGE_EVIDENCE = "gateway_stage_evidence"
"""Connection info key: leaves of this connection are staged (Database.stage_evidence)."""


def sealer_of(conn: AsyncConnection) -> PayloadSealer | None:
    """The sealer of the database ``conn`` belongs to (None for a store built without one,
    as some tests and tools do)."""
    sealer: PayloadSealer | None = conn.info.get(_SEALER)
    return sealer


def _ping_idle_connections(engine: AsyncEngine) -> None:
    """Pessimistic disconnect handling for connections that sat idle in the pool.

    SQLAlchemy's ``pool_pre_ping`` pings on every checkout, and asyncpg's ping is three round
    trips (BEGIN, an empty query, ROLLBACK): on a busy pool that was a third of a delivery's
    recording transaction. A connection used moments ago was alive then, so only one idle
    for ``PING_AFTER_IDLE_SECONDS`` (across a database restart or a firewall's idle timeout,
    say) is pinged; a dead one is replaced before anyone uses it (``DisconnectionError``
    makes the pool connect afresh). A connection that dies while in steady use fails its
    transaction, as it would with ``pool_pre_ping`` too, and SQLAlchemy then drops the whole
    pool, so the caller's retry gets a fresh connection."""

    @event.listens_for(engine.sync_engine, "checkin")
    def _idle_from(_dbapi_connection: Any, record: Any) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.pop(_IDLE_SINCE, None)
        if since is None or time.monotonic() - since < PING_AFTER_IDLE_SECONDS:
            return
        try:
            dbapi_connection.ping()
        except Exception as exc:
            raise sa.exc.DisconnectionError(f"pooled connection is gone: {exc}") from exc


class Database:
    """An async engine plus the transaction discipline the gateway relies on.

    With ``sealer`` (the composition root always gives one), every connection carries it, so
    code that writes or reads packet bytes inside a transaction seals and opens them
    (gateway.dispatch.outbox) without a key being passed through every call.
    """

    def __init__(
        self,
        url: str,
        *,
        base_dir: Path = Path("."),
        pool_size: int = 5,
        echo: bool = False,
        sealer: PayloadSealer | None = None,
    ):
        self.url = normalise_url(url, base_dir)
        self.dialect = make_url(self.url).get_backend_name()
        # A failed statement's error carries its parameters (reply text, references, ids)
        # into the log unless they are hidden: personal data stays out of logs.
        kwargs: dict[str, Any] = {"echo": echo, "hide_parameters": True}
        if self.is_sqlite:
            database = make_url(self.url).database
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            # Pooled connections: opening one (and its PRAGMAs) costs more than a commit.
            kwargs.update(pool_size=pool_size, max_overflow=pool_size)
            kwargs["connect_args"] = {"timeout": 30}
            # One trip to aiosqlite's thread per statement (gateway.store.sqlite_driver).
            kwargs["module"] = sqlite_driver.dbapi()
        else:
            kwargs.update(pool_size=pool_size, max_overflow=pool_size)
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        if not self.is_sqlite:
            _ping_idle_connections(self.engine)
        self.sealer = sealer
        if self.is_sqlite:
            _install_sqlite_hooks(self.engine)
        self.stage_evidence = False
        """On PostgreSQL, evidence leaves go to staging for the cluster's sequencer
        (gateway.evidence.log); ``serve`` turns it on, and one of its processes sequences."""
        if not self.is_sqlite:

            @event.listens_for(self.engine.sync_engine, "checkout")
            def _carry_staging(_dbapi_connection: Any, record: Any, _proxy: Any) -> None:
                record.info[STAGE_EVIDENCE] = self.stage_evidence

        if sealer is not None:

            @event.listens_for(self.engine.sync_engine, "connect")
            def _carry_sealer(_dbapi_connection: Any, record: Any) -> None:
                record.info[_SEALER] = sealer

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
    "STAGE_EVIDENCE",
    "Database",
    "PayloadSealer",
    "dialect_insert",
    "normalise_url",
    "sealer_of",
]

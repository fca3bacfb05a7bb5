"""PostgreSQL pool liveness: a pooled connection that sat idle is pinged before use and
replaced when it is dead; one in steady use is not pinged (asyncpg's ping is three round
trips, a third of a delivery's recording transaction)."""

import asyncpg  # type: ignore[import-untyped]
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect
from sqlalchemy.engine import make_url

from gateway.store import database
from gateway.store.database import Database

pytestmark = pytest.mark.postgres


@pytest.fixture
def pings(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the driver-level pings (one entry per ping)."""
    seen: list[int] = []
    adapter = asyncpg_dialect.AsyncAdapt_asyncpg_connection
    original = adapter.ping

    def counted(self: asyncpg_dialect.AsyncAdapt_asyncpg_connection) -> None:
        seen.append(1)
        original(self)  # type: ignore[no-untyped-call]

    monkeypatch.setattr(adapter, "ping", counted)
    return seen


async def _backend(db: Database) -> int:
    async with db.transaction() as conn:
        return int((await conn.execute(sa.text("SELECT pg_backend_pid()"))).scalar_one())


async def _terminate(url: str, pid: int) -> None:
    parsed = make_url(url)
    admin = await asyncpg.connect(
        user=parsed.username,
        password=parsed.password,
        host=parsed.host,
        port=parsed.port,
        database=parsed.database,
    )
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await admin.close()


async def test_connections_in_steady_use_are_not_pinged(
    postgres_url: str, pings: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    db = Database(postgres_url, pool_size=1)
    try:
        first = await _backend(db)
        for _ in range(5):
            assert await _backend(db) == first
        assert pings == []
        # The same traffic with every connection counting as idle: pinged at each checkout.
        monkeypatch.setattr(database, "PING_AFTER_IDLE_SECONDS", 0.0)
        for _ in range(5):
            assert await _backend(db) == first
        assert len(pings) == 5
    finally:
        await db.dispose()


async def test_an_idle_dead_connection_is_replaced_before_use(
    postgres_url: str, pings: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(database, "PING_AFTER_IDLE_SECONDS", 0.0)
    db = Database(postgres_url, pool_size=1)
    try:
        dead = await _backend(db)
        await _terminate(postgres_url, dead)
        # The ping finds it gone and the pool connects afresh: the caller sees nothing.
        alive = await _backend(db)
        assert alive != dead
        assert pings
    finally:
        await db.dispose()


async def test_a_recently_used_dead_connection_fails_once_then_recovers(
    postgres_url: str, pings: list[int]
) -> None:
    db = Database(postgres_url, pool_size=1)
    try:
        dead = await _backend(db)
        await _terminate(postgres_url, dead)
        # Not idle long enough to be pinged: the transaction fails, as it would mid-use ...
        with pytest.raises(sa.exc.DBAPIError):
            await _backend(db)
        # ... and the pool is dropped, so the retry gets a fresh connection.
        assert await _backend(db) != dead
        assert pings == []
    finally:
        await db.dispose()

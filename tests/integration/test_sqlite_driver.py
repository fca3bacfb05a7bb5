"""SQLite statements in one trip to aiosqlite's thread (gateway.store.sqlite_driver): the
same rows, counts, ids, errors and transactions as the stock cursor gives, on a real SQLite
file."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from gateway.store.database import Database
from gateway.store.sqlite_driver import OneTripCursor, run_statement

METADATA = sa.MetaData()
NOTES = sa.Table(
    "driver_notes",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("key", sa.String(16), nullable=False, unique=True),
    sa.Column("n", sa.Integer, nullable=False),
)


@pytest.fixture
async def notes_db(tmp_path: Path) -> AsyncIterator[Database]:
    db = Database(f"sqlite:///{tmp_path / 'notes.db'}")
    async with db.transaction() as conn:
        await conn.run_sync(METADATA.create_all)
    yield db
    await db.dispose()


async def test_rows_counts_and_ids_come_back_from_one_trip(notes_db: Database) -> None:
    async with notes_db.transaction() as conn:
        raw = await conn.get_raw_connection()
        assert isinstance(raw.dbapi_connection.cursor(), OneTripCursor)  # type: ignore[union-attr]
        first = await conn.execute(NOTES.insert().values(key="a", n=1))
        assert first.inserted_primary_key == (1,)
        await conn.execute(NOTES.insert(), [{"key": "b", "n": 2}, {"key": "c", "n": 3}])
        changed = await conn.execute(NOTES.update().where(NOTES.c.n >= 2).values(n=NOTES.c.n * 10))
        assert changed.rowcount == 2
        nothing = await conn.execute(sa.select(NOTES.c.key).where(NOTES.c.n > 1000))
        assert nothing.all() == []
    async with notes_db.connect() as conn:
        rows = (await conn.execute(sa.select(NOTES.c.key, NOTES.c.n).order_by(NOTES.c.id))).all()
        streamed = [
            tuple(r)
            async for r in await conn.stream(sa.select(NOTES.c.key, NOTES.c.n).order_by(NOTES.c.id))
        ]
    assert [tuple(r) for r in rows] == [("a", 1), ("b", 20), ("c", 30)] == streamed


async def test_a_refused_statement_raises_and_rolls_the_transaction_back(
    notes_db: Database,
) -> None:
    with pytest.raises(IntegrityError):
        async with notes_db.transaction() as conn:
            await conn.execute(NOTES.insert().values(key="x", n=1))
            await conn.execute(NOTES.insert().values(key="x", n=2))
    async with notes_db.connect() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(NOTES))).scalar() == 0


async def test_a_statement_run_at_the_driver_is_part_of_the_transaction(
    notes_db: Database,
) -> None:
    """``run_statement`` skips the engine but not the transaction: its rows land, its reads
    see them, and a refusal is SQLAlchemy's IntegrityError (parameters hidden) that rolls
    back the whole transaction."""
    insert = "INSERT INTO driver_notes (key, n) VALUES (?, ?)"
    async with notes_db.transaction() as conn:
        assert await run_statement(conn, insert, [("a", 1), ("b", 2)], many=True) is None
        read = "SELECT key, n FROM driver_notes ORDER BY id"
        assert await run_statement(conn, read, None, many=False) == [("a", 1), ("b", 2)]
    with pytest.raises(IntegrityError) as refused:
        async with notes_db.transaction() as conn:
            await run_statement(conn, insert, [("c", 3)], many=True)
            await run_statement(conn, insert, [("a", 9)], many=True)
    assert "parameters hidden" in str(refused.value)
    async with notes_db.connect() as conn:
        keys = (await conn.execute(sa.select(NOTES.c.key).order_by(NOTES.c.id))).scalars()
        assert list(keys) == ["a", "b"]

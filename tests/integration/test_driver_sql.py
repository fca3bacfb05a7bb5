"""Batched driver statements (gateway.store.driver_sql) on each backend: compiled once per
shape, yet every call's own literal values are the ones executed."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from gateway.store import driver_sql
from gateway.store.database import Database
from gateway.store.driver_sql import bulk_insert, execute_rows, insert_numbered
from gateway.store.types import UtcDateTime

METADATA = sa.MetaData()
ITEMS = sa.Table(
    "driver_sql_items",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("n", sa.BigInteger, nullable=False),
    sa.Column("at", UtcDateTime(), nullable=True),
)
T1 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
T2 = datetime(2026, 3, 2, 17, 30, 15, 250000, tzinfo=UTC)


@pytest.fixture
async def items_db(database_url: str) -> AsyncIterator[Database]:
    db = Database(database_url)
    async with db.transaction() as conn:
        await conn.run_sync(METADATA.create_all)
    yield db
    await db.dispose()


async def rows(db: Database) -> list[tuple[int, str, int, datetime | None]]:
    async with db.connect() as conn:
        result = await conn.execute(sa.select(ITEMS).order_by(ITEMS.c.id))
        return [tuple(r) for r in result.all()]  # type: ignore[misc]


def stamp(at: datetime) -> sa.Update:
    """The same shape every time; only the carried value differs."""
    return (
        ITEMS.update()
        .where(ITEMS.c.id == sa.bindparam("b_id"), ITEMS.c.state == "open")
        .values(n=sa.bindparam("b_n"), at=at)
    )


async def test_numbered_inserts_and_carried_values_of_one_shape_compiled_once(
    items_db: Database,
) -> None:
    async with items_db.transaction() as conn:
        ids = await insert_numbered(
            conn, ITEMS, [{"state": "open", "n": k, "at": None} for k in range(5)]
        )
        more = await insert_numbered(conn, ITEMS, [{"state": "closed", "n": 9, "at": None}])
    assert ids == sorted(ids) and len(set(ids)) == 5 and more[0] > ids[-1]

    driver_sql._PLANS.clear()
    async with items_db.transaction() as conn:
        await execute_rows(conn, stamp(T1), [{"b_id": ids[0], "b_n": 10}])
        plans = len(driver_sql._PLANS)
        await execute_rows(
            conn, stamp(T2), [{"b_id": ids[1], "b_n": 11}, {"b_id": more[0], "b_n": 12}]
        )
        assert len(driver_sql._PLANS) == plans == 1, "the second call compiled again"
        # Another literal in the WHERE clause: same shape, its own value.
        closed = (
            ITEMS.update()
            .where(ITEMS.c.id == sa.bindparam("b_id"), ITEMS.c.state == "closed")
            .values(n=sa.bindparam("b_n"), at=T1)
        )
        await execute_rows(conn, closed, [{"b_id": more[0], "b_n": 13}])
        assert len(driver_sql._PLANS) == 1

    found = {r[0]: r[1:] for r in await rows(items_db)}
    assert found[ids[0]] == ("open", 10, T1)
    assert found[ids[1]] == ("open", 11, T2)
    assert found[ids[2]] == ("open", 2, None)
    assert found[more[0]] == ("closed", 13, T1), "the closed row took the open-only update"


async def test_bulk_insert_reorders_columns_and_processes_constants(items_db: Database) -> None:
    async with items_db.transaction() as conn:
        await bulk_insert(conn, ITEMS, ["n", "id", "state"], [(7, 1, "a"), (8, 2, "b")])
        await bulk_insert(conn, ITEMS, ["n", "id", "state"], [(9, 3, "c")], constants={"at": T2})
    assert await rows(items_db) == [(1, "a", 7, None), (2, "b", 8, None), (3, "c", 9, T2)]

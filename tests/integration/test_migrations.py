"""The Alembic migrations build exactly the schema the table models declare."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection

from gateway.store.database import Database
from gateway.store.migrate import current_revision, upgrade
from gateway.store.tables import METADATA


def _diff(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": False})
    return list(compare_metadata(context, METADATA))


async def test_migrations_match_the_models(database_url: str) -> None:
    """On each backend (PostgreSQL when GATEWAY_TEST_POSTGRES_URL is set)."""
    db = Database(database_url)
    try:
        await upgrade(db)
        async with db.connect() as conn:
            diff = await conn.run_sync(_diff)
        assert diff == [], f"models and migrations differ; add a migration: {diff}"
        assert await current_revision(db) is not None
    finally:
        await db.dispose()


async def test_upgrade_twice_is_a_no_op(tmp_path):
    db = Database("sqlite:///" + str(tmp_path / "m.db"))
    try:
        await upgrade(db)
        first = await current_revision(db)
        await upgrade(db)
        assert await current_revision(db) == first
    finally:
        await db.dispose()

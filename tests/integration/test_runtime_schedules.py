"""The reconciliation engine on ``serve``'s timer: a scheduled run completes and is recorded
like a CLI run; while another run is in progress the scheduled one is skipped, not failed;
``engine_every_seconds = 0`` leaves runs to the CLI."""

import asyncio
import logging

import pytest
import sqlalchemy as sa

from gateway.bootstrap import build
from gateway.clock import to_datetime
from gateway.reconciliation.runs import start
from gateway.runtime import reconciliation_run, run_workers
from gateway.store.database import Database
from gateway.store.migrate import upgrade
from gateway.store.recon_tables import ReconRun
from tests.conftest import ConfigFactory

RUNS = ReconRun.__table__  # type: ignore[attr-defined]


async def runs(db: Database) -> list[tuple[int, str, bool]]:
    async with db.connect() as conn:
        rows = await conn.execute(
            sa.select(RUNS.c.id, RUNS.c.state, RUNS.c.dry_run).order_by(RUNS.c.id)
        )
        return [tuple(r) for r in rows.all()]


async def test_a_scheduled_run_completes_and_a_busy_one_is_skipped(
    make_config: ConfigFactory, tmp_path, caplog: pytest.LogCaptureFixture
) -> None:
    _, settings, agencies = make_config(
        database_url=f"sqlite:///{tmp_path / 'gw.db'}",
        agencies={"AGY_A": {"url": "http://127.0.0.1:9/unused"}},
    )
    gateway = build(settings, agencies)
    try:
        await upgrade(gateway.db)
        report = await reconciliation_run(gateway)
        assert report is not None and report["state"] == "completed"
        assert await runs(gateway.db) == [(1, "completed", False)]
        # A run left running (another process, or a crash waiting for --resume).
        await start(
            gateway.db,
            settings={},
            dry_run=False,
            full=False,
            now=to_datetime(gateway.clock.now()),
        )
        with caplog.at_level(logging.WARNING, logger="gateway.runtime"):
            assert await reconciliation_run(gateway) is None
        assert "reconciliation run 2 is still running" in caplog.text
        assert await runs(gateway.db) == [(1, "completed", False), (2, "running", False)]
    finally:
        await gateway.aclose()


async def test_serve_runs_the_engine_on_its_timer(make_config: ConfigFactory, tmp_path) -> None:
    _, settings, agencies = make_config(
        database_url=f"sqlite:///{tmp_path / 'gw.db'}",
        agencies={"AGY_A": {"url": "http://127.0.0.1:9/unused"}},
    )
    gateway = build(settings, agencies)
    try:
        await upgrade(gateway.db)
        stop = asyncio.Event()
        workers = asyncio.create_task(run_workers(gateway, stop))
        for _ in range(100):
            if await runs(gateway.db):
                break
            await asyncio.sleep(0.05)
        stop.set()
        await workers
        assert await runs(gateway.db) == [(1, "completed", False)]
    finally:
        await gateway.aclose()
    idle = settings.model_copy(
        update={"schedules": settings.schedules.model_copy(update={"engine_every_seconds": 0})}
    )
    gateway = build(idle, agencies)
    try:
        stop = asyncio.Event()
        workers = asyncio.create_task(run_workers(gateway, stop))
        await asyncio.sleep(0.3)
        stop.set()
        await workers
        assert await runs(gateway.db) == [(1, "completed", False)]
    finally:
        await gateway.aclose()

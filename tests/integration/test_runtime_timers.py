"""``serve``'s timers fire again and again, not only at start-up: the ``every`` scheduler is
observed running its job several times, and a run that raises is logged and followed by the
next one; under ``run_workers`` the reconciliation engine's timer completes several runs."""

import asyncio
import logging
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway.bootstrap import build
from gateway.runtime import every, run_workers
from gateway.store.database import Database
from gateway.store.migrate import upgrade
from gateway.store.recon_tables import ReconRun
from tests.conftest import ConfigFactory

RUNS = ReconRun.__table__  # type: ignore[attr-defined]
FIRINGS = 4
HANG_GUARD = 60.0
"""Only against a hang: the tests wait for events, never for a time."""


async def test_every_fires_repeatedly_and_survives_a_failing_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stop = asyncio.Event()
    runs: list[int] = []

    async def job() -> None:
        runs.append(len(runs) + 1)
        if len(runs) == 2:
            raise RuntimeError("the second run fails")
        if len(runs) == FIRINGS:
            stop.set()

    with caplog.at_level(logging.ERROR, logger="gateway.runtime"):
        await asyncio.wait_for(every(0.01, stop, job, "tick"), HANG_GUARD)
    assert runs == list(range(1, FIRINGS + 1)), "the timer went on after the failed run"
    failures = [r for r in caplog.records if "scheduled job tick failed" in r.getMessage()]
    assert len(failures) == 1 and failures[0].exc_info is not None


async def test_every_stops_when_told_between_runs() -> None:
    stop = asyncio.Event()
    runs = 0

    async def job() -> None:
        nonlocal runs
        runs += 1
        stop.set()

    await asyncio.wait_for(every(3600, stop, job, "once"), HANG_GUARD)
    assert runs == 1, "stop ends the wait for the next run at once"


async def completed_runs(db: Database) -> int:
    async with db.connect() as conn:
        return int(
            (
                await conn.execute(sa.select(sa.func.count()).where(RUNS.c.state == "completed"))
            ).scalar_one()
        )


async def test_serve_runs_the_engine_again_and_again(
    make_config: ConfigFactory, tmp_path: Path
) -> None:
    _, settings, agencies = make_config(
        database_url=f"sqlite:///{tmp_path / 'gw.db'}",
        agencies={"AGY_A": {"url": "http://127.0.0.1:9/unused"}},
    )
    often = settings.model_copy(
        update={"schedules": settings.schedules.model_copy(update={"engine_every_seconds": 0.05})}
    )
    gateway = build(often, agencies)
    try:
        await upgrade(gateway.db)
        stop = asyncio.Event()
        workers = asyncio.create_task(run_workers(gateway, stop))

        async def several_runs() -> None:
            while True:
                if await completed_runs(gateway.db) >= 3:
                    return
                await asyncio.sleep(0.05)

        try:
            await asyncio.wait_for(several_runs(), HANG_GUARD)
        finally:
            stop.set()
            await workers
        assert await completed_runs(gateway.db) >= 3
    finally:
        await gateway.aclose()

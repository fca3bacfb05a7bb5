"""The events pass runs in a worker process (gateway.reconciliation.columnar_worker), on a
real store (SQLite file, and PostgreSQL when GATEWAY_TEST_POSTGRES_URL is set): the worker is
not the test's process, a worker killed with SIGKILL in the middle of a run fails the run
with an error naming it, the run resumes, and the next pass gets a fresh worker."""

import asyncio
import json
import os
import signal
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway.reconciliation import columnar_worker
from gateway.reconciliation.columnar_worker import ColumnarWorkerLost, EventsJob
from tests.integration.test_recon_engine import (
    MISMATCHES,
    RUNS,
    World,
    kinds,
    seed_breaks,
    world as world,
)


def worker_pid() -> int:
    """The pid of the pool's one process, started if need be (the executor keeps its
    processes by pid)."""
    pool = columnar_worker.executor()
    pool.submit(os.getpid).result()
    (pid,) = pool._processes
    return pid


async def test_the_events_pass_runs_in_another_process_and_reuses_it(world: World) -> None:
    job = EventsJob(
        url=world.db.url, run_id=0, after=0, upto=0, emit_after=0, window=10, rules=None
    )
    await columnar_worker.run_events_pass(job)
    pid = worker_pid()
    assert pid != os.getpid()
    await columnar_worker.run_events_pass(job)
    assert worker_pid() == pid, "one worker, reused pass after pass"


async def test_a_worker_killed_during_a_run_fails_it_resumably_and_a_new_worker_takes_over(
    world: World, tmp_path: Path
) -> None:
    await seed_breaks(world, tmp_path)
    before = await world.count(MISMATCHES)
    # The one worker is held opening a FIFO nobody writes to, so the run's events pass waits
    # in the pool's queue behind it until the worker is killed.
    hold = tmp_path / "hold"
    os.mkfifo(hold)
    pool = columnar_worker.executor()
    held = pool.submit(os.open, str(hold), os.O_RDONLY)
    (pid,) = pool._processes
    running = asyncio.create_task(world.engine().run())
    # The pool's queue has no event to wait on: look until the run's pass is in it.
    while len(pool._pending_work_items) < 2 and not running.done():  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    os.kill(pid, signal.SIGKILL)

    with pytest.raises(ColumnarWorkerLost) as lost:
        await running
    assert f"process {pid} was killed by SIGKILL" in str(lost.value)
    with pytest.raises(BrokenProcessPool):
        held.result()
    async with world.db.connect() as conn:
        run_id, state, checkpoint, error = (
            await conn.execute(sa.select(RUNS.c.id, RUNS.c.state, RUNS.c.checkpoint, RUNS.c.error))
        ).one()
    assert f"run {run_id}" in str(lost.value) and f"--resume {run_id}" in str(lost.value)
    assert state == "failed" and error.startswith("ColumnarWorkerLost: ")
    assert json.loads(checkpoint).get("pass", "events") == "events"
    assert await world.count(MISMATCHES) == before, "no window of breaks was committed"

    resumed = await world.engine().resume(run_id)
    assert resumed.run.state == "completed" and resumed.run.resumes == 1
    assert worker_pid() != pid, "a new worker"
    found = kinds(await world.mismatches())
    assert found["unknown_placement"] == 1 and found["wrong_agency"] == 1


async def test_shutdown_stops_the_worker_and_the_next_pass_starts_another(world: World) -> None:
    pid = worker_pid()
    process = columnar_worker.executor()._processes[pid]
    columnar_worker.shutdown()
    assert process.exitcode is not None
    job = EventsJob(
        url=world.db.url, run_id=0, after=0, upto=0, emit_after=0, window=10, rules=None
    )
    await columnar_worker.run_events_pass(job)
    assert worker_pid() != pid

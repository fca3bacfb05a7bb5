"""Roles shared by many processes on one database (gateway.cluster), on both backends: leases
taken by compare and set, work stopped when its role is lost, one scheduler across
processes with failover, allocation rounds that cannot overlap, and evidence leaves staged
without the log's lock and sequenced in order (PostgreSQL)."""

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from gateway.bootstrap import Gateway, build
from gateway.cluster import ALLOCATION_ROUND, LeaseStore, holding
from gateway.errors import RoleHeld
from gateway.evidence.log import (
    SEQUENCE_BATCH,
    EvidenceLog,
    LeafInput,
    append_leaves,
    append_leaves_sequenced,
    sequence_all,
    staged_count,
)
from gateway.evidence.signed_note import NoteSigner, NoteVerifier, generate_key
from gateway.runtime import run_workers
from gateway.store.cluster_tables import ClusterRun
from gateway.store.database import Database
from gateway.store.migrate import upgrade
from gateway.store.tables import EvidenceLeaf
from tests.conftest import ConfigFactory

RUNS = ClusterRun.__table__  # type: ignore[attr-defined]
LEAVES = EvidenceLeaf.__table__  # type: ignore[attr-defined]
NOW = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
WITHIN = 60.0
"""A deadline for what must happen, never a measure of how fast it happens."""


def store_at(db: Database, offset: float) -> LeaseStore:
    """A lease store whose clock runs ``offset`` seconds ahead of the real one."""
    return LeaseStore(db, clock=lambda: time.time() + offset)


async def test_a_running_lease_has_one_holder_and_a_takeover_raises_the_token(
    db: Database,
) -> None:
    a, b = store_at(db, 0), store_at(db, 0)
    first = await a.acquire("schedulers", "a", seconds=30)
    assert first is not None and first.token == 1
    assert await b.acquire("schedulers", "b", seconds=30) is None
    renewed = await a.acquire("schedulers", "a", seconds=30)
    assert renewed is not None and renewed.token == 1

    taken = await store_at(db, 31).acquire("schedulers", "b", seconds=30)
    assert taken is not None and (taken.holder, taken.token) == ("b", 2)
    assert await a.acquire("schedulers", "a", seconds=30) is None


async def test_processes_racing_for_a_free_role_elect_exactly_one(db: Database) -> None:
    stores = [LeaseStore(db) for _ in range(8)]
    won = await asyncio.gather(
        *(s.acquire("evidence-sequencer", f"p{n}", seconds=30) for n, s in enumerate(stores))
    )
    assert len([lease for lease in won if lease is not None]) == 1


async def test_a_held_role_is_refused_and_free_again_once_released(db: Database) -> None:
    store = LeaseStore(db)
    async with holding(store, ALLOCATION_ROUND, "cli-1", seconds=30):
        with pytest.raises(RoleHeld, match="allocation-round role is held by cli-1"):
            async with holding(store, ALLOCATION_ROUND, "cli-2", seconds=30):
                pass
    async with holding(store, ALLOCATION_ROUND, "cli-2", seconds=30) as lease:
        assert lease.token == 2


async def test_work_stops_when_its_role_is_taken_over(db: Database) -> None:
    started = asyncio.Event()

    async def work_forever() -> None:
        async with holding(LeaseStore(db), "schedulers", "old", seconds=0.6):
            started.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(work_forever())
    await asyncio.wait_for(started.wait(), WITHIN)
    # Another process whose clock says the lease has long expired takes the role.
    assert await store_at(db, 3600).acquire("schedulers", "new", seconds=7200) is not None
    with pytest.raises(RoleHeld, match="schedulers role was lost"):
        await asyncio.wait_for(task, WITHIN)


async def gateway_on(make_config: ConfigFactory, database_url: str) -> Gateway:
    _, settings, agencies = make_config(
        database_url=database_url, agencies={"AGY_A": {"url": "http://127.0.0.1:9/unused"}}
    )
    fast = settings.model_copy(
        update={
            "schedules": settings.schedules.model_copy(
                update={"checkpoint_every_seconds": 0.1, "engine_every_seconds": 0}
            ),
            "cluster": settings.cluster.model_copy(update={"lease_seconds": 3}),
        }
    )
    return build(fast, agencies)


async def holders_of(db: Database, job: str) -> list[str]:
    async with db.connect() as conn:
        rows = await conn.execute(
            sa.select(RUNS.c.holder).where(RUNS.c.job == job).order_by(RUNS.c.id)
        )
        return list(rows.scalars())


async def wait_for_runs(db: Database, job: str, done: Callable[[list[str]], bool]) -> list[str]:
    async def poll() -> list[str]:
        while True:
            holders = await holders_of(db, job)
            if done(holders):
                return holders
            await asyncio.sleep(0.05)

    return await asyncio.wait_for(poll(), WITHIN)


async def test_two_processes_run_the_schedulers_once_and_fail_over(
    make_config: ConfigFactory, database_url: str
) -> None:
    first = await gateway_on(make_config, database_url)
    second = await gateway_on(make_config, database_url)
    try:
        await upgrade(first.db)
        stop_first, stop_second = asyncio.Event(), asyncio.Event()
        a = asyncio.create_task(run_workers(first, stop_first))
        [leader] = set(await wait_for_runs(first.db, "checkpoint", lambda h: len(h) >= 1))
        b = asyncio.create_task(run_workers(second, stop_second))
        seen = len(await holders_of(first.db, "checkpoint"))
        # The second process stands by while the first holds the role.
        holders = await wait_for_runs(first.db, "checkpoint", lambda h: len(h) >= seen + 5)
        assert set(holders) == {leader}

        # The leader stops and releases its role: the other process takes the schedulers.
        stop_first.set()
        await a
        after = await wait_for_runs(first.db, "checkpoint", lambda h: h[-1] != leader)
        assert len(set(after)) == 2
        stop_second.set()
        await b
    finally:
        await first.aclose()
        await second.aclose()


async def test_an_allocation_round_refuses_to_overlap_another(
    make_config: ConfigFactory, database_url: str
) -> None:
    gateway = await gateway_on(make_config, database_url)
    try:
        await upgrade(gateway.db)
        async with holding(LeaseStore(gateway.db), ALLOCATION_ROUND, "other", seconds=30):
            with pytest.raises(RoleHeld, match="allocation-round role is held by other"):
                await gateway.placements.allocate()
        report = await gateway.placements.allocate()
        assert report.placed == 0
    finally:
        await gateway.aclose()


def leaf(ref: str) -> LeafInput:
    return LeafInput(kind="action", ref=ref, fields={"n": ref})


async def seqs(db: Database) -> list[tuple[int, str]]:
    async with db.connect() as conn:
        rows = await conn.execute(sa.select(LEAVES.c.seq, LEAVES.c.ref).order_by(LEAVES.c.seq))
        return [(int(s), str(r)) for s, r in rows]


@pytest.mark.postgres
async def test_staged_writers_do_not_wait_for_each_other_and_the_log_stays_in_order(
    postgres_url: str,
) -> None:
    db = Database(postgres_url)
    try:
        await upgrade(db)
        db.stage_evidence = True
        private, public = generate_key("cluster.test/evidence")
        log = EvidenceLog(db, NoteSigner.from_text(private), "cluster.test/evidence")
        async with db.transaction() as slow:
            assert await append_leaves(slow, [leaf("slow:1"), leaf("slow:2")], now=NOW) == []

            # A second writer commits while the first is still open: no lock between them.
            async def quick() -> None:
                async with db.transaction() as conn:
                    assert await append_leaves(conn, [leaf("quick:1")], now=NOW) == []

            await asyncio.wait_for(quick(), WITHIN)
            assert await sequence_all(db) == 1
            assert await seqs(db) == [(0, "quick:1")]
        # A caller that stores its seq gets one at once, after what was sequenced.
        async with db.transaction() as conn:
            assert await append_leaves_sequenced(conn, [leaf("now:1")], now=NOW) == [1]
        assert await staged_count(db) == 2
        checkpoint = await log.checkpoint(now=NOW)  # sequences what waits first
        assert checkpoint is not None and checkpoint.tree_size == 4
        assert await seqs(db) == [(0, "quick:1"), (1, "now:1"), (2, "slow:1"), (3, "slow:2")]
        report = await log.verify([NoteVerifier.from_text(public)])
        assert report.ok, report.problems
        proof = await log.inclusion_proof(3)
        assert proof.tree_size == 4
    finally:
        await db.dispose()


@pytest.mark.postgres
async def test_the_sequencer_waits_for_a_direct_writer_and_numbers_after_its_commit(
    postgres_url: str,
) -> None:
    """A process that appends directly (not staged) holds the log's lock until it commits;
    the sequencer must queue behind it, or both would take the same seq."""
    db = Database(postgres_url)
    try:
        await upgrade(db)
        db.stage_evidence = True
        async with db.transaction() as conn:
            assert await append_leaves(conn, [leaf("staged:1"), leaf("staged:2")], now=NOW) == []
        async with db.transaction() as direct:
            assert await append_leaves_sequenced(direct, [leaf("direct:1")], now=NOW) == [0]
            sequencer = asyncio.create_task(sequence_all(db))
            await _advisory_lock_waiter(db)
            assert not sequencer.done()
        assert await asyncio.wait_for(sequencer, WITHIN) == 2
        assert await seqs(db) == [(0, "direct:1"), (1, "staged:1"), (2, "staged:2")]
    finally:
        await db.dispose()


@pytest.mark.postgres
async def test_an_idle_sequencer_takes_no_lock_and_a_busy_one_counts_every_batch(
    postgres_url: str,
) -> None:
    """With nothing staged the sequencer returns at once, even while a writer holds the
    log's lock (an idle sequencer must never stall the writers); with more than one batch
    staged, ``sequence_all`` returns the whole count."""
    db = Database(postgres_url)
    try:
        await upgrade(db)
        db.stage_evidence = True
        async with db.transaction() as direct:
            assert await append_leaves_sequenced(direct, [leaf("direct:1")], now=NOW) == [0]
            assert await asyncio.wait_for(sequence_all(db), WITHIN) == 0
        many = SEQUENCE_BATCH + 3
        async with db.transaction() as conn:
            staged = [leaf(f"many:{n}") for n in range(many)]
            assert await append_leaves(conn, staged, now=NOW) == []
        assert await sequence_all(db) == many
        assert await staged_count(db) == 0
        async with db.connect() as conn:
            top = (await conn.execute(sa.select(sa.func.max(LEAVES.c.seq)))).scalar_one()
        assert top == many
    finally:
        await db.dispose()


async def _advisory_lock_waiter(db: Database) -> None:
    query = sa.text(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    )
    deadline = time.monotonic() + WITHIN
    while time.monotonic() < deadline:
        async with db.connect() as conn:
            if (await conn.execute(query)).scalar():
                return
        await asyncio.sleep(0.01)
    pytest.fail("the sequencer never queued on the evidence log's advisory lock")


async def test_sqlite_and_unstaged_databases_number_leaves_at_once(db: Database) -> None:
    db.stage_evidence = True  # ignored on SQLite; on PostgreSQL the flag is read at checkout
    async with db.transaction() as conn:
        numbered = await append_leaves(conn, [leaf("a:1")], now=NOW)
    if db.is_sqlite:
        assert numbered == [0]
    else:
        assert numbered == []
        assert await sequence_all(db) == 1
    assert await seqs(db) == [(0, "a:1")]

"""Several ``serve`` processes on one PostgreSQL under inbound and outbound load, SIGKILLed at
random and restarted: nothing is lost, nothing arrives twice with different bytes, the
evidence log verifies with every packet, receipt and inbound message attested once, and no
scheduled job ever ran in two processes at once."""

import asyncio
import itertools
import json
import random
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway.bench.cluster_fleet import (
    ClusterSetup,
    ServeFleet,
    ServeProcess,
    counting_agency,
    inbound_requests,
    outbox_settled,
    post_balanced,
    seed,
    write_config,
)
from gateway.bench.counting_agency import AgencyServers
from gateway.bench.load import PreparedRequest
from gateway.bootstrap import build, load_config
from gateway.evidence.log import staged_count
from gateway.store.cluster_tables import ClusterRun
from gateway.store.database import Database
from gateway.store.tables import DeliveryAttempt, EvidenceLeaf, InboundMessage, OutboxItem

pytestmark = pytest.mark.postgres

PLACEMENTS = 160
EVENTS = 240
PROCESSES = 3
KILLS = 4
Run = tuple[str, str, int, datetime, datetime | None]
"""(job, holder, token, started_at, finished_at) of a scheduled run."""
RUNS = ClusterRun.__table__  # type: ignore[attr-defined]
LEAVES = EvidenceLeaf.__table__  # type: ignore[attr-defined]
OUTBOX = OutboxItem.__table__  # type: ignore[attr-defined]
INBOUND = InboundMessage.__table__  # type: ignore[attr-defined]
ATTEMPTS = DeliveryAttempt.__table__  # type: ignore[attr-defined]


async def chaos_under_load(
    fleet: ServeFleet, rng: random.Random, events: list[PreparedRequest]
) -> tuple[list[ServeProcess], dict[str, int]]:
    """Post the events in ``KILLS + 1`` slices; while each of the first ``KILLS`` slices is in
    flight, SIGKILL a random live process at a random moment and start another in its place.
    The kills follow the load, not the clock, so they land under load on a fast machine as on
    a slow one; one process is always left serving. Returns the processes killed and every
    event's final status."""
    killed: list[ServeProcess] = []
    statuses: dict[str, int] = {}
    for n in range(KILLS + 1):
        if len(fleet.live()) < 2:
            await fleet.started()
        posting = asyncio.create_task(
            post_balanced(fleet.urls, events[n :: KILLS + 1], concurrency=8)
        )
        if n < KILLS:
            await asyncio.sleep(rng.uniform(0.0, 0.2))
            victim = rng.choice(fleet.live())
            killed.append(victim)
            await fleet.replace(victim)
        statuses.update((await posting).statuses)
    return killed, statuses


async def settled(url: str, agencies: AgencyServers) -> None:
    """Until every packet has reached the agency and the outbox has nothing in flight."""
    while True:
        if agencies.distinct >= PLACEMENTS and await outbox_settled(url):
            return
        await asyncio.sleep(0.2)


def overlapping_runs(
    rows: list[Run],
    ended_at: dict[int, float],
) -> list[str]:
    """Pairs of runs of one job by different holders whose times overlap; a run without an
    end (its process was killed) ends when its process did."""
    by_job: dict[str, list[tuple[float, float, str, int]]] = defaultdict(list)
    for job, holder, token, started, finished in rows:
        pid = int(holder.split(":")[-2])
        end = finished.timestamp() if finished is not None else ended_at[pid]
        by_job[job].append((started.timestamp(), end, holder, token))
    problems = []
    for job, runs in by_job.items():
        runs.sort()
        for (_s1, e1, h1, t1), (s2, _e2, h2, t2) in itertools.pairwise(runs):
            if h1 != h2 and (s2 < e1 or t2 <= t1):
                problems.append(f"{job}: {h1} (token {t1}) until {e1}, {h2} (token {t2}) at {s2}")
    return problems


async def test_killed_serve_processes_lose_nothing(postgres_url: str, tmp_path: Path) -> None:
    rng = random.Random(20261207)
    agencies = None
    fleet = None
    try:
        # The agency needs its keys before it listens, and the config needs its URL.
        placeholder = ClusterSetup(tmp_path, postgres_url, "http://127.0.0.1:9/hooks")
        agency = write_config(placeholder)
        agencies = AgencyServers([counting_agency(placeholder, agency, latency=0.005)])
        await agencies.start()
        setup = ClusterSetup(tmp_path, postgres_url, agencies.urls["CLUSTER1"])
        write_config(setup)
        await seed(setup, PLACEMENTS)
        events = await inbound_requests(setup, agency, EVENTS)

        fleet = ServeFleet(setup, PROCESSES)
        await fleet.start()
        killed, statuses = await chaos_under_load(fleet, rng, events)
        await asyncio.wait_for(settled(postgres_url, agencies), timeout=120)
        await fleet.stop()
        assert len(killed) == KILLS

        # Nothing lost, nothing changed: every packet reached the agency, every event got
        # a 2xx, and no id came twice with different bytes.
        [counter] = agencies.agencies
        assert counter.changed == set()
        assert counter.refused == 0
        assert counter.distinct == PLACEMENTS
        assert len(statuses) == EVENTS

        settings, agency_configs = load_config(setup.config_path, base_dir=setup.workdir)
        gateway = build(settings, agency_configs)
        try:
            await gateway.evidence.checkpoint(now=datetime.now().astimezone())
            report = await gateway.evidence.verify([gateway.note_verifier])
            assert report.ok, report.problems
            assert await staged_count(gateway.db) == 0
            async with gateway.db.connect() as conn:
                stored = set((await conn.execute(sa.select(INBOUND.c.external_id))).scalars())
                assert stored >= set(statuses)
                columns = (RUNS.c.job, RUNS.c.holder, RUNS.c.token, RUNS.c.started_at)
                runs: list[Run] = [
                    (str(job), str(holder), int(token), started, finished)
                    for job, holder, token, started, finished in await conn.execute(
                        sa.select(*columns, RUNS.c.finished_at)
                    )
                ]
            # One leaf per attested row: packets, inbound messages, receipts.
            assert await leaves_per_row(gateway.db, "packet", OUTBOX) == (0, 0)
            assert await leaves_per_row(gateway.db, "inbound", INBOUND) == (0, 0)
            _, doubled = await leaves_per_row(gateway.db, "receipt", ATTEMPTS)
            assert doubled == 0
        finally:
            await gateway.aclose()

        ended_at = {p.pid: p.ended_at or 0.0 for p in fleet.processes}
        unfinished = [r for r in runs if r[4] is None and not killed_pid(r, killed)]
        assert unfinished == []
        assert {r[0] for r in runs} >= {"checkpoint", "sla"}
        assert overlapping_runs(runs, ended_at) == []
    finally:
        if fleet is not None:
            await fleet.stop()
        if agencies is not None:
            await agencies.aclose()


def killed_pid(row: Run, killed: list[ServeProcess]) -> bool:
    return int(row[1].split(":")[-2]) in {p.pid for p in killed}


async def leaves_per_row(db: Database, kind: str, table: sa.Table) -> tuple[int, int]:
    """(rows without a leaf of ``kind``, rows with more than one)."""
    async with db.connect() as conn:
        bodies = (await conn.execute(sa.select(LEAVES.c.body).where(LEAVES.c.kind == kind))).all()
        ids = set((await conn.execute(sa.select(table.c.id))).scalars())
    field = {"packet": "outbox_id", "inbound": "inbound_id", "receipt": "attempt_id"}[kind]
    attested = [json.loads(body)[field] for (body,) in bodies]
    return len(ids - set(attested)), len(attested) - len(set(attested))

"""Benchmark ``chaos-dispatch``: how many deliveries are sent twice when dispatcher processes
are SIGKILLed at random, with outcomes group-committed (the dispatcher) against outcomes
committed once per whole batch (the baseline), in the same run.

Theory of operation
-------------------
Each side gets a fresh store (a SQLite file, or a database created on the PostgreSQL server of
``database_url`` and dropped afterwards) seeded with ``placements`` placements, one
``placement.created`` packet each, split over counting agencies on loopback
(gateway.bench.counting_agency: they verify every signature and log every copy of every
``webhook-id``). A fleet of ``workers`` dispatcher processes drains the outbox as ``serve``
does (gateway.bench.chaos_workers).

The kills are planned before either side runs, the same for both: ``kills`` points drawn at
random over the run's progress (distinct ids the agencies have received). At a random moment
up to ``KILL_JITTER_SECONDS`` after the agencies pass a point, a random worker that holds
leases (one that is dispatching, not one still starting) is SIGKILLed and a fresh one
started. Right after the kill the benchmark reads which packets the dead worker held under
lease; once the run is over, gateway.bench.chaos_tally tells for each kill how many of those
had reached an agency, in flight (no answer yet) or answered but not recorded, and checks
that every duplicate is one of them.

So a kill's cost is what it catches unrecorded: requests in flight, at most the agencies'
``concurrency`` each, which no way of recording can avoid (nobody knows whether they
arrived; the agency deduplicates them on ``webhook-id``), plus answers not yet committed,
which is what the recording decides: about one commit's worth with group commit, up to two
whole batches (one per lane) without. The duplicate rate (duplicates / distinct ids) is that
cost times the kill density, ``kills / placements``.

Nothing may be lost and no id may arrive with different bytes.
"""

import asyncio
import random
import statistics
import time
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import sqlalchemy as sa

from gateway.bench.chaos_tally import Kill, KillTally, Lease, Tally, tally
from gateway.bench.chaos_workers import (
    ChaosSetup,
    Fleet,
    Recording,
    Worker,
    agency_ids,
    chaos_agency,
    make_keys,
    scratch_store,
    seed,
)
from gateway.bench.counting_agency import AgencyServers, CountingAgency
from gateway.bench.report import Progress, context, load_average
from gateway.dispatch.outbox import OUTBOX, counts_by_state
from gateway.errors import GatewayError
from gateway.keys import sandbox_keys
from gateway.store.database import Database

TARGET_DUPLICATE_RATE = 0.005
"""Issue 15: well under 0.5% of deliveries sent twice under the chaos."""
UNUSED_ENDPOINT = "http://127.0.0.1:9/unused"
WATCH_SECONDS = 0.02
"""How often the benchmark looks whether the agencies have passed the next kill point."""
KILL_JITTER_SECONDS = 0.5
"""A kill lands at a random moment up to this long after its point."""
SIDES: tuple[tuple[str, Recording], ...] = (("baseline", "whole-batch"), ("ours", "group-commit"))

OC = OUTBOX.c


def plan_kills(packets: int, kills: int, rng: random.Random) -> list[int]:
    """``kills`` distinct progress points (distinct ids received), uniform over the run."""
    if packets < 2:
        return []
    return sorted(rng.sample(range(1, packets), min(kills, packets - 1)))


async def held_leases(db: Database, worker_id: str, lease_seconds: int) -> tuple[Lease, ...]:
    """The packets ``worker_id`` held under lease, unrecorded (read right after its death,
    long before its leases expire and another worker takes them)."""
    async with db.connect() as conn:
        rows = await conn.execute(
            sa.select(OC.dedupe_key, OC.lease_expires_at).where(
                OC.lease_owner == worker_id, OC.state == "leased"
            )
        )
        return tuple(
            Lease(key, expires.timestamp() - lease_seconds, expires.timestamp())
            for key, expires in rows.all()
        )


async def outbox_keys(db: Database) -> list[str]:
    async with db.connect() as conn:
        return list((await conn.execute(sa.select(OC.dedupe_key))).scalars().all())


class Chaos:
    """The killing side of one run: SIGKILLs a random dispatching worker each time the
    agencies pass the next planned point, and notes what the dead worker held."""

    def __init__(
        self,
        *,
        servers: AgencyServers,
        db: Database,
        plan: list[int],
        lease_seconds: int,
        rng: random.Random,
        say: Progress,
        side: str,
    ) -> None:
        self._servers = servers
        self._db = db
        self._plan = plan
        self._lease_seconds = lease_seconds
        self._rng = rng
        self._say = say
        self._side = side
        self.kills: list[Kill] = []

    async def __call__(self, fleet: Fleet) -> None:
        for n, point in enumerate(self._plan, start=1):
            while self._servers.distinct < point:
                if fleet.done:
                    return
                await asyncio.sleep(WATCH_SECONDS)
            victim: Worker | None = None
            while victim is None:
                if fleet.done:
                    return
                # A random moment after the point, so that the kill's phase against the
                # sends, answers and commits is random too.
                await asyncio.sleep(self._rng.uniform(0, KILL_JITTER_SECONDS))
                victim = await self._dispatching(fleet)
            assert victim.worker_id is not None
            at, progress = time.time(), self._servers.distinct
            await fleet.kill(victim)
            leases = await held_leases(self._db, victim.worker_id, self._lease_seconds)
            self.kills.append(Kill(victim.worker_id, at, progress, leases))
            self._say(
                f"{self._side}: kill {n}/{len(self._plan)} at {progress} ids received, "
                f"{len(leases)} leases held"
            )

    async def _dispatching(self, fleet: Fleet) -> Worker | None:
        """A random worker that holds leases (is dispatching), if any."""
        async with self._db.connect() as conn:
            owners = set(
                (
                    await conn.execute(
                        sa.select(OC.lease_owner).where(OC.state == "leased").distinct()
                    )
                ).scalars()
            )
        victims = [w for w in fleet.victims() if w.worker_id in owners]
        return self._rng.choice(victims) if victims else None


async def run_side(
    base: ChaosSetup,
    recording: Recording,
    *,
    side: str,
    placements: int,
    workers: int,
    plan: list[int],
    server_url: str | None,
    seed_value: int,
    latency: float,
    say: Progress,
) -> dict[str, Any]:
    """One chaos run (module docstring); its report."""
    servers = AgencyServers(
        [
            CountingAgency(
                agency_id,
                sandbox_keys(chaos_agency(agency_id, UNUSED_ENDPOINT, 1), base.workdir)[0],
                latency=latency,
            )
            for agency_id, _ in base.endpoints
        ]
    )
    await servers.start()
    try:
        async with scratch_store(server_url, base.workdir, side) as url:
            setup = base.with_run(url, list(servers.urls.items()), recording)
            say(f"{side}: seeding {placements} placements")
            await seed(setup, placements, seed=seed_value)
            db = Database(url, base_dir=base.workdir)
            try:
                packets = await outbox_keys(db)
                chaos = Chaos(
                    servers=servers,
                    db=db,
                    plan=[p for p in plan if p < len(packets)],
                    lease_seconds=base.lease_seconds,
                    rng=random.Random(seed_value),
                    say=say,
                    side=side,
                )
                fleet = Fleet(setup, workers)
                say(f"{side}: {workers} workers dispatching {len(packets)} packets")
                started = time.perf_counter()
                await fleet.run(chaos)
                seconds = time.perf_counter() - started
                async with db.connect() as conn:
                    states = await counts_by_state(conn)
            finally:
                await db.dispose()
    finally:
        await servers.aclose()
    changed = {key for a in servers.agencies for key in a.changed}
    result = tally(packets, servers.arrivals(), chaos.kills, changed=changed)
    say(
        f"{side}: {result.duplicates} duplicates in {result.distinct} ids, "
        f"{len(chaos.kills)} kills, {seconds:.1f} s"
    )
    return side_report(
        result,
        seconds=seconds,
        states=states,
        refused=sum(a.refused for a in servers.agencies),
        workers_started=fleet.spawned,
        recording=recording,
    )


def side_report(
    result: Tally,
    *,
    seconds: float,
    states: dict[str, int],
    refused: int,
    workers_started: int,
    recording: str,
) -> dict[str, Any]:
    kills = len(result.kills)
    return {
        "recording": recording,
        "placements": result.packets,
        "deliveries_received": result.received,
        "distinct_ids": result.distinct,
        "duplicates": result.duplicates,
        "duplicate_rate": round(result.duplicates / max(result.distinct, 1), 5),
        "ids_lost": result.lost,
        "ids_changed_bytes": result.changed,
        "not_delivered": sum(n for state, n in states.items() if state != "delivered"),
        "refused_requests": refused,
        "kills": kills,
        "duplicates_per_kill": round(result.duplicates / kills, 2) if kills else None,
        "at_kills": {
            "in_flight": result.in_flight,
            "answered_not_recorded": result.answered_not_recorded,
            "leased_unsent": sum(k.unsent for k in result.kills),
            "in_flight_per_kill": _spread([k.in_flight for k in result.kills]),
            "answered_not_recorded_per_kill": _spread(
                [k.answered_not_recorded for k in result.kills]
            ),
        },
        "duplicates_explained": result.explained,
        "duplicates_unexplained": result.unexplained,
        "workers_started": workers_started,
        "seconds": round(seconds, 1),
        "per_kill": [_kill_row(k) for k in result.kills],
    }


def _spread(values: list[int]) -> dict[str, float] | None:
    if not values:
        return None
    return {
        "mean": round(statistics.fmean(values), 2),
        "median": statistics.median(values),
        "max": max(values),
    }


def _kill_row(k: KillTally) -> dict[str, int]:
    return {
        "progress": k.progress,
        "leased": k.leased,
        "in_flight": k.in_flight,
        "answered_not_recorded": k.answered_not_recorded,
        "unsent": k.unsent,
    }


async def run(
    *,
    placements: int = 10_000,
    kills: int = 90,
    workers: int = 2,
    agencies: int = 2,
    concurrency: int = 8,
    batch_size: int = 50,
    lease_seconds: int = 10,
    agency_latency_ms: int = 50,
    database_url: str | None = None,
    seed_value: int = 20260101,
    progress: bool = False,
) -> dict[str, Any]:
    """Run the benchmark; return the report (see the module docstring)."""
    if placements < 10 or kills < 0 or not 1 <= workers <= 4 or not 1 <= agencies <= 8:
        raise GatewayError("placements must be >= 10, kills >= 0, workers 1-4, agencies 1-8")
    if agency_latency_ms < 0:
        raise GatewayError("agency_latency_ms must not be negative")
    say = Progress(progress, "chaos-dispatch")
    started, load_at_start = time.perf_counter(), load_average()
    plan = plan_kills(placements, kills, random.Random(seed_value))
    sides: dict[str, dict[str, Any]] = {}
    with TemporaryDirectory(prefix="gateway-bench-chaos-") as tmp:
        base = ChaosSetup(
            workdir=Path(tmp),
            database_url=f"sqlite:///{Path(tmp) / 'unused.db'}",
            endpoints=tuple((agency_id, UNUSED_ENDPOINT) for agency_id in agency_ids(agencies)),
            concurrency=concurrency,
            batch_size=batch_size,
            lease_seconds=lease_seconds,
        )
        make_keys(base)
        for side, recording in SIDES:
            sides[side] = await run_side(
                base,
                recording,
                side=side,
                placements=placements,
                workers=workers,
                plan=plan,
                server_url=database_url,
                seed_value=seed_value,
                latency=agency_latency_ms / 1000,
                say=say,
            )
    ours, baseline = sides["ours"], sides["baseline"]
    per_kill, baseline_per_kill = ours["duplicates_per_kill"], baseline["duplicates_per_kill"]
    return {
        "benchmark": "chaos-dispatch",
        "measure": (
            "deliveries sent twice when dispatcher processes are SIGKILLed at random: outcomes "
            "group-committed vs committed once per whole batch"
        ),
        "placements": placements,
        "kills": ours["kills"],
        "duplicate_rate": ours["duplicate_rate"],
        "baseline_duplicate_rate": baseline["duplicate_rate"],
        "target_duplicate_rate": TARGET_DUPLICATE_RATE,
        "meets_target": ours["duplicate_rate"] < TARGET_DUPLICATE_RATE,
        "duplicates_per_kill": per_kill,
        "baseline_duplicates_per_kill": baseline_per_kill,
        "unrecorded_at_kills": {
            side: {k: sides[side]["at_kills"][k] for k in ("in_flight", "answered_not_recorded")}
            for side in ("ours", "baseline")
        },
        "ratio": round(per_kill / baseline_per_kill, 3) if per_kill and baseline_per_kill else None,
        "nothing_lost": ours["ids_lost"] == 0 == baseline["ids_lost"],
        "no_changed_bytes": ours["ids_changed_bytes"] == 0 == baseline["ids_changed_bytes"],
        "all_duplicates_explained": ours["duplicates_unexplained"]
        == 0
        == baseline["duplicates_unexplained"],
        "ours": ours,
        "baseline": baseline,
        "setup": {
            "ours": "Dispatcher as bootstrap builds it: outcomes recorded as they complete "
            "(group commit)",
            "baseline": "the same, but a batch's outcomes recorded once after its last send",
            "workers": workers,
            "agencies": agencies,
            "agency_retry_concurrency": concurrency,
            "dispatch_batch_size": batch_size,
            "dispatch_lanes": 2,
            "lease_seconds": lease_seconds,
            "kill_points": "uniform over distinct ids received, the same for both sides; each kill "
            f"up to {KILL_JITTER_SECONDS} s after its point, of a worker holding leases",
            "agency": "aiohttp on loopback: verify the signature, log every copy, answer 200",
            "agency_latency_ms": agency_latency_ms,
            "seed": seed_value,
        },
        "context": context(
            database=_database_kind(database_url),
            load_at_start=load_at_start,
            pinning={},
        ),
        "wall_seconds": round(time.perf_counter() - started, 1),
    }


def _database_kind(database_url: str | None) -> str:
    if database_url is None:
        return "sqlite+aiosqlite file in a temp dir (WAL, synchronous=FULL, BEGIN IMMEDIATE)"
    return "postgresql (asyncpg), a database created for each side and dropped after"


__all__ = ["TARGET_DUPLICATE_RATE", "Chaos", "plan_kills", "run", "run_side"]

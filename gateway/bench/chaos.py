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

The kills are planned before either side runs, the same for both, by one of two profiles:

* ``burst`` (the default, the harsh one): every packet is due at once, so the workers
  dispatch flat out, and ``kills`` points are drawn at random over the run's progress
  (distinct ids the agencies have received). At a random moment up to
  ``KILL_JITTER_SECONDS`` after the agencies pass a point, a random worker that holds leases
  (one that is dispatching, not one idle or still starting) is SIGKILLed. Every kill lands
  mid-dispatch, with the most in flight and unrecorded that the settings allow.
* ``steady`` (issue 15's profile): an intake hands placements to the dispatcher at a steady
  ``rate`` a second, as production's intake does: the packets are held back until the first
  workers are up, then come due one every ``1 / rate`` seconds in the order they were
  queued. The kills land at uniformly random times over the run (``placements / rate``
  seconds), each on a random live worker, dispatching or idle, as crashes do.

Each kill is followed by another worker in the victim's place: one started ahead in standby,
at once (``standby``; by default under ``steady`` only, whose kills can come faster than a
worker starts on a loaded machine), else a fresh one, forked in well under a second
(gateway.bench.chaos_workers.Fleet). Right after the kill the benchmark reads which packets
the dead worker held under lease; once the run is over, gateway.bench.chaos_tally tells for
each kill how many of those had reached an agency, in flight (no answer yet) or answered but
not recorded, and checks that every duplicate is one of them. From the workers' recording
logs (gateway.bench.chaos_workers.TimedRecorder) it also tells how long answers waited
before they were on record, and under ``steady`` whether the workers kept up with the
intake (how long after it was due each packet first arrived).

So a kill's cost is what it catches unrecorded: requests in flight, at most the agencies'
``concurrency`` each, which no way of recording can avoid (nobody knows whether they
arrived; the agency deduplicates them on ``webhook-id``), plus answers not yet committed,
which is what the recording decides: about one commit's worth with group commit, up to two
whole batches (one per lane) without. The duplicate rate (duplicates / distinct ids) is that
cost times the kill density, ``kills / placements``. Under ``steady`` a kill catches what one
worker has unrecorded at a random moment: its share of the rate times how long a packet
stays unrecorded (the agency's answer time plus the answer-to-commit time), so the rate and
the agency's latency set the cost much as the recording does.

Nothing may be lost and no id may arrive with different bytes.
"""

import asyncio
import random
import statistics
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any, Literal

import sqlalchemy as sa

from gateway.bench.chaos_tally import (
    Arrival,
    Kill,
    KillTally,
    Lease,
    Recorded,
    Tally,
    answer_to_commit,
    spread_ms,
    tally,
)
from gateway.bench.chaos_workers import (
    ChaosSetup,
    Fleet,
    Recording,
    Worker,
    agency_ids,
    chaos_agency,
    make_keys,
    read_timings,
    scratch_store,
    seed,
)
from gateway.bench.counting_agency import AgencyServers, CountingAgency
from gateway.bench.report import Progress, context, load_average
from gateway.clock import to_datetime
from gateway.dispatch.outbox import OUTBOX, counts_by_state
from gateway.errors import GatewayError
from gateway.evidence.log import sequence_all
from gateway.keys import sandbox_keys
from gateway.runtime import run_sequencer
from gateway.store.database import Database

TARGET_DUPLICATE_RATE = 0.005
"""Issue 15: well under 0.5% of deliveries sent twice under the chaos."""
UNUSED_ENDPOINT = "http://127.0.0.1:9/unused"
WATCH_SECONDS = 0.02
"""How often the benchmark looks whether the agencies have passed the next kill point."""
KILL_JITTER_SECONDS = 0.5
"""A kill lands at a random moment up to this long after its point."""
SIDES: tuple[tuple[str, Recording], ...] = (("baseline", "whole-batch"), ("ours", "group-commit"))
Profile = Literal["burst", "steady"]
HELD_BACK = timedelta(days=1)
"""How far ahead the steady intake's packets are due until it hands them over."""
INTAKE_LEAD_SECONDS = 0.5
"""The steady intake's first packet is due this long after the schedule is written."""
SEQUENCE_EVERY_SECONDS = 0.2
"""The benchmark's evidence sequencer, as ``[cluster] sequence_every_seconds``."""

OC = OUTBOX.c


def plan_kills(packets: int, kills: int, rng: random.Random) -> list[int]:
    """``kills`` distinct progress points (distinct ids received), uniform over the run."""
    if packets < 2:
        return []
    return sorted(rng.sample(range(1, packets), min(kills, packets - 1)))


def plan_kill_times(seconds: float, kills: int, rng: random.Random) -> list[float]:
    """``kills`` moments (seconds after the intake's first packet), uniform over a run of
    ``seconds``."""
    return sorted(rng.uniform(0, seconds) for _ in range(kills))


@dataclass(frozen=True, slots=True)
class KillPlan:
    """When the kills land: after progress ``points`` (``burst``) or at ``times`` seconds
    into a steady intake of ``rate`` packets a second (``steady``)."""

    profile: Profile
    points: tuple[int, ...] = ()
    times: tuple[float, ...] = ()
    rate: float = 0.0

    @classmethod
    def make(
        cls, profile: Profile, *, packets: int, kills: int, rate: float, rng: random.Random
    ) -> "KillPlan":
        if profile == "burst":
            return cls(profile, points=tuple(plan_kills(packets, kills, rng)))
        return cls(profile, times=tuple(plan_kill_times(packets / rate, kills, rng)), rate=rate)

    def within(self, packets: int) -> "KillPlan":
        """The plan for a run of ``packets`` (a point past the last packet cannot happen)."""
        points = tuple(p for p in self.points if p < packets)
        times = tuple(t for t in self.times if t < packets / self.rate) if self.rate else ()
        return KillPlan(self.profile, points, times, self.rate)

    def __len__(self) -> int:
        return len(self.points) + len(self.times)


async def hold_back(db: Database) -> None:
    """Make every packet due only far in the future (the steady intake hands them over)."""
    async with db.transaction() as conn:
        later = to_datetime(time.time()) + HELD_BACK
        await conn.execute(OUTBOX.update().values(run_at=later))


async def hand_over(db: Database, rate: float) -> dict[str, float]:
    """The steady intake: packet ``i`` (in queue order) comes due ``i / rate`` seconds after
    a moment just ahead; return when each packet is due (Unix seconds), by dedupe key."""
    start = time.time() + INTAKE_LEAD_SECONDS
    async with db.transaction() as conn:
        rows = (await conn.execute(sa.select(OC.id, OC.dedupe_key).order_by(OC.id))).all()
        due = {key: start + i / rate for i, (_, key) in enumerate(rows)}
        await conn.execute(
            OUTBOX.update().where(OC.id == sa.bindparam("item")),
            [{"item": item, "run_at": to_datetime(due[key])} for item, key in rows],
        )
    return due


def intake_report(due: dict[str, float], arrivals: dict[str, list[Arrival]]) -> dict[str, Any]:
    """Whether the workers kept up with the steady intake: how long after it was due each
    packet first reached its agency, and the rate the agencies saw over the run."""
    lag = [arrivals[key][0].received_at - at for key, at in due.items() if key in arrivals]
    first = [copies[0].received_at for copies in arrivals.values()]
    seconds = max(first) - min(due.values()) if first and due else 0.0
    return {
        "due_to_first_arrival_ms": spread_ms(lag),
        "delivered_rate_per_second": round(len(first) / seconds, 1) if seconds > 0 else None,
    }


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
    """The killing side of one run (module docstring): SIGKILLs a worker at each point or
    moment of the plan, and notes what the dead worker held. Under ``steady`` it is also the
    intake: it hands the packets over once the first workers are up."""

    def __init__(
        self,
        *,
        servers: AgencyServers,
        db: Database,
        plan: KillPlan,
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
        self.due: dict[str, float] = {}
        """When each packet came due, under the steady intake."""

    async def __call__(self, fleet: Fleet) -> None:
        victims = (
            self._after_points(fleet) if self._plan.profile == "burst" else self._at_times(fleet)
        )
        n = 0
        async for victim in victims:
            n += 1
            assert victim.worker_id is not None
            at, progress = time.time(), self._servers.distinct
            await fleet.kill(victim)
            leases = await held_leases(self._db, victim.worker_id, self._lease_seconds)
            self.kills.append(Kill(victim.worker_id, at, progress, leases))
            self._say(
                f"{self._side}: kill {n}/{len(self._plan)} at {progress} ids received, "
                f"{len(leases)} leases held"
            )

    async def _after_points(self, fleet: Fleet) -> AsyncIterator[Worker]:
        """``burst``: a random dispatching worker, a random moment after each point."""
        for point in self._plan.points:
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
            yield victim

    async def _at_times(self, fleet: Fleet) -> AsyncIterator[Worker]:
        """``steady``: hand the packets over once the fleet is up, then a random live worker
        at each planned moment."""
        while len(fleet.victims()) < fleet.size:
            if fleet.done:
                return
            await asyncio.sleep(WATCH_SECONDS)
        self.due = await hand_over(self._db, self._plan.rate)
        start = min(self.due.values(), default=time.time())
        self._say(f"{self._side}: intake handing over {self._plan.rate:g} packets a second")
        for moment in self._plan.times:
            await asyncio.sleep(max(0.0, start + moment - time.time()))
            while not fleet.victims():
                # Every worker is a fresh one still starting: the crash waits for one.
                if fleet.done:
                    return
                await asyncio.sleep(WATCH_SECONDS)
            if fleet.done:
                return
            yield self._rng.choice(fleet.victims())

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


async def sequencing(db: Database, fleet_done: asyncio.Event) -> None:
    """The evidence sequencer of a fleet that stages its leaves (gateway.runtime), until the
    fleet is done, then once more for what was staged last."""
    await run_sequencer(db, fleet_done, idle_seconds=SEQUENCE_EVERY_SECONDS)
    await sequence_all(db)


async def run_side(
    base: ChaosSetup,
    recording: Recording,
    *,
    side: str,
    placements: int,
    workers: int,
    plan: KillPlan,
    standby: int,
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
    timings = base.workdir / f"timings-{side}"
    timings.mkdir()
    await servers.start()
    try:
        async with scratch_store(server_url, base.workdir, side) as url:
            setup = base.with_run(url, list(servers.urls.items()), recording, timings)
            say(f"{side}: seeding {placements} placements")
            await seed(setup, placements, seed=seed_value)
            db = Database(url, base_dir=base.workdir)
            try:
                packets = await outbox_keys(db)
                if plan.profile == "steady":
                    await hold_back(db)
                chaos = Chaos(
                    servers=servers,
                    db=db,
                    plan=plan.within(len(packets)),
                    lease_seconds=base.lease_seconds,
                    rng=random.Random(seed_value),
                    say=say,
                    side=side,
                )
                fleet = Fleet(setup, workers, standby)
                fleet_done = asyncio.Event()
                staging = base.stage_evidence and not db.is_sqlite
                sequencer = asyncio.create_task(sequencing(db, fleet_done)) if staging else None
                say(f"{side}: {workers} workers dispatching {len(packets)} packets")
                started, load_before = time.perf_counter(), load_average()
                try:
                    await fleet.run(chaos)
                finally:
                    fleet_done.set()
                    if sequencer is not None:
                        await sequencer
                seconds = time.perf_counter() - started
                async with db.connect() as conn:
                    states = await counts_by_state(conn)
            finally:
                await db.dispose()
    finally:
        await servers.aclose()
    changed = {key for a in servers.agencies for key in a.changed}
    arrivals = servers.arrivals()
    result = tally(packets, arrivals, chaos.kills, changed=changed)
    recorded = [
        Recorded(line["begin"], line["commit"], line["keys"], line["answered"])
        for line in read_timings(timings)
    ]
    say(
        f"{side}: {result.duplicates} duplicates in {result.distinct} ids, "
        f"{len(chaos.kills)} kills, {seconds:.1f} s"
    )
    report = side_report(
        result,
        seconds=seconds,
        states=states,
        refused=sum(a.refused for a in servers.agencies),
        workers_started=fleet.spawned,
        recording=recording,
    )
    if chaos.due:
        report["intake"] = intake_report(chaos.due, arrivals)
    report["answer_to_commit"] = answer_to_commit(recorded, arrivals)
    report["load_average"] = {"before": load_before, "after": load_average()}
    return report


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
    profile: Profile = "burst",
    rate: float = 100.0,
    standby: int | None = None,
    stage_evidence: bool = True,
    database_url: str | None = None,
    seed_value: int = 20260101,
    progress: bool = False,
) -> dict[str, Any]:
    """Run the benchmark; return the report (see the module docstring). ``rate`` (packets a
    second) is the ``steady`` intake's; ``standby`` workers wait, started, to replace a
    killed one at once (default: none under ``burst``, ``workers`` under ``steady``, whose
    kills come every few seconds, faster than a worker starts on a loaded machine);
    ``stage_evidence`` as ``[cluster] stage_evidence``."""
    if placements < 10 or kills < 0 or not 1 <= workers <= 4 or not 1 <= agencies <= 8:
        raise GatewayError("placements must be >= 10, kills >= 0, workers 1-4, agencies 1-8")
    if agency_latency_ms < 0 or rate <= 0:
        raise GatewayError("agency_latency_ms must not be negative, rate must be positive")
    if standby is None:
        standby = 0 if profile == "burst" else workers
    say = Progress(progress, "chaos-dispatch")
    started, load_at_start = time.perf_counter(), load_average()
    plan = KillPlan.make(
        profile, packets=placements, kills=kills, rate=rate, rng=random.Random(seed_value)
    )
    sides: dict[str, dict[str, Any]] = {}
    with TemporaryDirectory(prefix="gateway-bench-chaos-") as tmp:
        base = ChaosSetup(
            workdir=Path(tmp),
            database_url=f"sqlite:///{Path(tmp) / 'unused.db'}",
            endpoints=tuple((agency_id, UNUSED_ENDPOINT) for agency_id in agency_ids(agencies)),
            concurrency=concurrency,
            batch_size=batch_size,
            lease_seconds=lease_seconds,
            stage_evidence=stage_evidence,
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
                standby=standby,
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
        "agency_answer_to_commit_ms": {
            side: sides[side]["answer_to_commit"]["agency_answer_to_commit_ms"]
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
            "standby_workers": standby,
            "agencies": agencies,
            "agency_retry_concurrency": concurrency,
            "dispatch_batch_size": batch_size,
            "dispatch_lanes": 2,
            "lease_seconds": lease_seconds,
            "profile": profile,
            "kill_points": (
                "uniform over distinct ids received, the same for both sides; each kill up to "
                f"{KILL_JITTER_SECONDS} s after its point, of a worker holding leases"
                if profile == "burst"
                else "uniform in time over the intake's run, the same moments for both sides; "
                "each of a random live worker, dispatching or idle"
            ),
            "intake": (
                "every packet due at once"
                if profile == "burst"
                else f"{rate:g} packets a second, from when the first workers are up"
            ),
            "evidence": "staged, one sequencer (serve's default on PostgreSQL)"
            if stage_evidence and database_url is not None
            else "appended under the evidence lock by each recorder",
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


__all__ = [
    "TARGET_DUPLICATE_RATE",
    "Chaos",
    "KillPlan",
    "Profile",
    "hand_over",
    "hold_back",
    "plan_kill_times",
    "plan_kills",
    "run",
    "run_side",
]

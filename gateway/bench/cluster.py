"""Benchmark ``cluster``: inbound and outbound throughput of 1, 2 and 4 ``serve`` processes
sharing one PostgreSQL database, against one process in the same run.

Theory of operation
-------------------
For each fleet size N the benchmark creates a database on the PostgreSQL server of
``database_url`` (dropped afterwards), writes a deployment's configuration
(gateway.bench.cluster_fleet), places ``placements`` cases with one counting agency on
loopback (gateway.bench.counting_agency: it verifies every signature and answers after
``agency_latency_ms``), and starts N real ``agency-gateway serve`` subprocesses.

* Outbound: the N dispatchers drain the ``placements`` packets, sharing the outbox by their
  leases; the rate counts the packets the agency received after the last process came up,
  over the time from then until the outbox has nothing pending or leased.
* Inbound: ``events`` signed agency events (acknowledgements, contacts, payments) are posted
  by this process with ``concurrency`` in flight, each to the next process in turn, as a
  load balancer does; the rate is 2xx answers over the time from the first POST to the
  last answer. Every event is stored raw with its evidence leaf, staged on PostgreSQL.

The baseline is N = 1 in the same run; the target is that sharing the work costs nothing:
each fleet's rate in each direction at least ``TARGET_SCALING`` of one process's. On a
machine with fewer CPUs than processes the inbound rate cannot grow with N (the load
generator shares the CPUs too); what the numbers show is that coordination (leases, the
evidence sequencer, the scheduler lease) does not make more processes slower.
"""

import asyncio
import time
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from gateway.bench.chaos_workers import scratch_store
from gateway.bench.cluster_fleet import (
    ClusterSetup,
    ServeFleet,
    counting_agency,
    inbound_requests,
    outbox_settled,
    post_balanced,
    row_count,
    seed,
    status_counts,
    write_config,
)
from gateway.bench.counting_agency import AgencyServers
from gateway.bench.report import Progress, context, load_average, rate
from gateway.errors import GatewayError

TARGET_SCALING = 0.9
"""Each fleet's throughput, inbound and outbound, at least this share of one process's."""
SIZES = (1, 2, 4)
SETTLE_TIMEOUT_SECONDS = 600.0


async def _until_settled(url: str, agencies: AgencyServers, placements: int) -> None:
    deadline = time.monotonic() + SETTLE_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if agencies.distinct >= placements and await outbox_settled(url):
            return
        await asyncio.sleep(0.05)
    raise GatewayError(f"the outbox did not drain within {SETTLE_TIMEOUT_SECONDS:.0f} s")


async def measure(
    workdir: Path,
    url: str,
    size: int,
    *,
    placements: int,
    events: int,
    concurrency: int,
    agency_latency_ms: int,
    say: Progress,
) -> dict[str, Any]:
    """One fleet of ``size`` processes on the empty database ``url`` (module docstring)."""
    placeholder = ClusterSetup(workdir, url, "http://127.0.0.1:9/hooks")
    agency = write_config(placeholder)
    agencies = AgencyServers(
        [counting_agency(placeholder, agency, latency=agency_latency_ms / 1000)]
    )
    await agencies.start()
    fleet: ServeFleet | None = None
    try:
        setup = ClusterSetup(
            workdir,
            url,
            agencies.urls[agency.id],
            # Long enough that a process starved of CPU on a busy machine is not taken for
            # dead (its packets would be sent again: same bytes, but wasted work).
            dispatch_lease_seconds=60,
            checkpoint_every_seconds=5,
            reconcile_every_seconds=30,
        )
        write_config(setup)
        say(f"{size} process(es): seeding {placements} placements")
        await seed(setup, placements)
        requests = await inbound_requests(setup, agency, events)
        fleet = ServeFleet(setup, size)
        say(f"{size} process(es): starting")
        await fleet.start()
        started, before = time.perf_counter(), agencies.distinct
        await _until_settled(url, agencies, placements)
        out_seconds = time.perf_counter() - started
        say(f"{size} process(es): outbound done, posting {events} events")
        load = await post_balanced(fleet.urls, requests, concurrency=concurrency)
        rss = [p.peak_rss_mb() for p in fleet.processes]
        await fleet.stop()
        [counter] = agencies.agencies
        return {
            "processes": size,
            "outbound": {
                "packets": placements - before,
                "sent_before_all_were_up": before,
                "seconds": round(out_seconds, 3),
                "rate_per_s": rate(placements - before, out_seconds),
                "duplicates": counter.received - counter.distinct,
                "changed": len(counter.changed),
            },
            "inbound": {
                "events": len(load.statuses),
                "statuses": status_counts(load),
                "seconds": round(load.seconds, 3),
                "rate_per_s": rate(len(load.statuses), load.seconds),
                "stored": await row_count(url, "inbound_messages"),
            },
            "evidence_leaves": await row_count(url, "evidence_leaves"),
            "evidence_staged": await row_count(url, "evidence_staged"),
            "peak_rss_mb": [r for r in rss if r is not None],
        }
    finally:
        if fleet is not None:
            await fleet.stop()
        await agencies.aclose()


async def run(
    *,
    database_url: str,
    sizes: tuple[int, ...] = SIZES,
    placements: int = 2000,
    events: int = 4000,
    concurrency: int = 32,
    agency_latency_ms: int = 20,
    progress: bool = False,
) -> dict[str, Any]:
    """Run the benchmark; return the report (module docstring)."""
    if not database_url.startswith("postgresql"):
        raise GatewayError("bench cluster needs --database-url postgresql://... (CREATEDB)")
    if 1 not in sizes:
        sizes = (1, *sizes)
    say = Progress(progress, "cluster")
    load_at_start = load_average()
    fleets: list[dict[str, Any]] = []
    for size in sizes:
        with TemporaryDirectory(prefix=f"gateway-bench-cluster-{size}-") as tmp:
            async with scratch_store(database_url, Path(tmp), f"cluster_{size}") as url:
                fleets.append(
                    await measure(
                        Path(tmp),
                        url,
                        size,
                        placements=placements,
                        events=events,
                        concurrency=concurrency,
                        agency_latency_ms=agency_latency_ms,
                        say=say,
                    )
                )
    one = next(f for f in fleets if f["processes"] == 1)
    for fleet in fleets:
        for side in ("inbound", "outbound"):
            base = one[side]["rate_per_s"]
            fleet[side]["ratio_to_one_process"] = (
                round(fleet[side]["rate_per_s"] / base, 3) if base else None
            )
    met = all(
        (f[side]["ratio_to_one_process"] or 0) >= TARGET_SCALING
        for f in fleets
        for side in ("inbound", "outbound")
    )
    return {
        "benchmark": "cluster",
        "target": f"each fleet >= {TARGET_SCALING} x one process's rate, inbound and outbound",
        "target_met": met,
        "baseline": "one serve process, same run",
        "fleets": fleets,
        "load": {
            "placements": placements,
            "events": events,
            "concurrency": concurrency,
            "agency_latency_ms": agency_latency_ms,
        },
        "context": context(
            database="postgresql",
            pinning={"serve": None, "load": None},
            load_at_start=load_at_start,
        ),
    }


__all__ = ["SIZES", "TARGET_SCALING", "measure", "run"]

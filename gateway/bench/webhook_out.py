"""Benchmark ``webhook-out``: outbound packets delivered and recorded per second, against a raw
aiohttp client loop posting the same payloads to the same receiver.

Ours is the production dispatcher as ``gateway.bootstrap.build`` wires it: outbox claim with a
lease, Standard Webhooks ``v1`` signing, POST through ``WebhookAdapter``, then one transaction
per batch with the attempts and receipts, their evidence leaves, the state changes and the
``ReconciliationHooks`` (ack and first-activity expectations). The store is seeded the way
production fills it (intake, then allocation queues one ``placement.created`` per case), before
the clock starts. The baseline posts the same payload bytes with ``concurrency`` in flight and
records nothing.

The receiver is the bare aiohttp app (read the body, answer 200) in its own process on one
CPU; the sender being measured (dispatcher or raw loop) runs in a fresh process on the other
CPU, and times itself from its first claim or POST to its last answer. Besides the rate
``ratio``, the report gives ``cpu_ratio``: baseline sender CPU per packet over ours.
"""

import time
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import sqlalchemy as sa

from gateway.bench.child import (
    HOST,
    STOP,
    Child,
    ChildMain,
    Finished,
    ParentLink,
    Ready,
    cpu_plan,
    peak_rss_mb,
)
from gateway.bench.dataset import (
    DATABASE_KIND,
    BenchSetup,
    build_gateway,
    check_concurrency,
    copy_database,
    counts,
    seed_template,
)
from gateway.bench.load import post_payloads, serve_bare
from gateway.bench.report import Progress, context, load_average, rate, summarise
from gateway.dispatch.outbox import open_payload
from gateway.errors import GatewayError
from gateway.heap import settle_heap
from gateway.store.tables import DeliveryAttempt, EvidenceLeaf, Expectation, OutboxItem

TARGET_RATIO = 0.7
RECEIVER_PATH = "/hooks"

OUTBOX = OutboxItem.__table__  # type: ignore[attr-defined]
ATTEMPTS = DeliveryAttempt.__table__  # type: ignore[attr-defined]
LEAVES = EvidenceLeaf.__table__  # type: ignore[attr-defined]
EXPECTATIONS = Expectation.__table__  # type: ignore[attr-defined]


async def dispatching_sender(link: ParentLink, setup: BenchSetup) -> None:
    """Child main (ours): drain the seeded outbox with the gateway's dispatcher."""
    gateway = build_gateway(setup)
    try:
        if not await gateway.db.ping():
            raise GatewayError(f"benchmark store {setup.database_path} cannot be opened")
        dispatcher = await gateway.dispatcher()
        settle_heap()  # as ``serve`` does once built
        cpu0, started = time.process_time(), time.perf_counter()
        stats = await dispatcher.drain_once()
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu0
    finally:
        await gateway.aclose()
    link.send(
        Finished(
            peak_rss_mb(),
            {
                "seconds": seconds,
                "cpu_seconds": cpu,
                "delivered": stats.delivered,
                "claimed": stats.claimed,
                "retried": stats.retried,
                "dead": stats.dead,
                "unknown": stats.unknown,
                "lease_lost": stats.lease_lost,
            },
        )
    )


async def measure(
    name: str, main: ChildMain, args: tuple[Any, ...], *, receiver: Child, cpu: int | None
) -> dict[str, Any]:
    """Run one sender in a fresh child; report its rate, RSS and CPU, and the receiver's CPU."""
    receiver_cpu0 = receiver.cpu_seconds()
    child = Child(name, main, *args, cpu=cpu)
    try:
        finished = await child.expect(Finished)
    finally:
        await child.close()
    receiver_cpu = receiver.cpu_seconds() - receiver_cpu0
    r = dict(finished.result)
    seconds = float(r.pop("seconds"))
    sender_cpu = float(r.pop("cpu_seconds"))
    return {
        "rate_per_s": rate(int(r["delivered"]), seconds),
        "seconds": round(seconds, 3),
        **r,
        "peak_rss_mb": finished.peak_rss_mb,
        "sender_cpu_percent": round(100 * sender_cpu / seconds, 1),
        "sender_cpu_ms_per_packet": round(1000 * sender_cpu / max(int(r["delivered"]), 1), 3),
        "receiver_cpu_percent": round(100 * receiver_cpu / seconds, 1),
    }


async def outbox_payloads(setup: BenchSetup) -> list[bytes]:
    """The packets' exact bytes (opened: they are sealed at rest), for the raw loop."""
    gateway = build_gateway(setup)  # the store as the gateway opens it, key ring included
    try:
        async with gateway.db.connect() as conn:
            rows = await conn.execute(
                sa.select(OUTBOX.c.dedupe_key, OUTBOX.c.payload).order_by(OUTBOX.c.id)
            )
            return [open_payload(conn, key, stored) or b"" for key, stored in rows.all()]
    finally:
        await gateway.aclose()


async def store_counts(path: Path) -> dict[str, int]:
    """What one measured round left in its store."""
    return await counts(
        path,
        {
            "delivered_rows": sa.select(sa.func.count())
            .select_from(OUTBOX)
            .where(OUTBOX.c.state == "delivered"),
            "not_delivered_rows": sa.select(sa.func.count())
            .select_from(OUTBOX)
            .where(OUTBOX.c.state != "delivered"),
            "attempts": sa.select(sa.func.count()).select_from(ATTEMPTS),
            "receipt_evidence_leaves": sa.select(sa.func.count())
            .select_from(LEAVES)
            .where(LEAVES.c.kind == "receipt"),
            "expectations": sa.select(sa.func.count()).select_from(EXPECTATIONS),
        },
    )


async def run(
    *,
    count: int = 4000,
    concurrency: int = 32,
    rounds: int = 3,
    batch_size: int = 200,
    progress: bool = False,
) -> dict[str, Any]:
    """Run the benchmark; return the report (see the module docstring)."""
    check_concurrency(concurrency)
    if count < 1 or rounds < 1 or not 1 <= batch_size <= 1000:
        raise GatewayError("count and rounds must be at least 1, batch_size 1-1000")
    say = Progress(progress, "webhook-out")
    sender_cpu, receiver_cpu = cpu_plan()
    started, load_at_start = time.perf_counter(), load_average()
    per_round: list[dict[str, Any]] = []
    with TemporaryDirectory(prefix="gateway-bench-out-") as tmp:
        workdir = Path(tmp)
        template = BenchSetup(
            workdir=workdir,
            database_path=workdir / "template.db",
            concurrency=concurrency,
            batch_size=batch_size,
        )
        say(f"seeding the outbox with {count} packets")
        await seed_template(template, count)
        payloads = await outbox_payloads(template)
        receiver = Child("bench-receiver", serve_bare, cpu=receiver_cpu)
        try:
            ready = await receiver.expect(Ready)
            base_url = f"http://{HOST}:{ready.port}"
            for n in range(1, rounds + 1):
                baseline = await measure(
                    "bench-raw-sender",
                    post_payloads,
                    (base_url, RECEIVER_PATH, payloads, concurrency),
                    receiver=receiver,
                    cpu=sender_cpu,
                )
                say(f"round {n}/{rounds}: baseline {baseline['rate_per_s']}/s")
                round_db = workdir / f"round-{n}.db"
                copy_database(template.database_path, round_db)
                ours = await measure(
                    "bench-dispatcher",
                    dispatching_sender,
                    (template.with_database(round_db).with_endpoint(base_url + RECEIVER_PATH),),
                    receiver=receiver,
                    cpu=sender_cpu,
                )
                ours.update(await store_counts(round_db))
                ratio = ours["rate_per_s"] / baseline["rate_per_s"]
                say(f"round {n}/{rounds}: ours {ours['rate_per_s']}/s, ratio {ratio:.3f}")
                per_round.append(
                    {"round": n, "baseline": baseline, "ours": ours, "ratio": round(ratio, 3)}
                )
            receiver.send(STOP)
            receiver_rss = (await receiver.expect(Finished)).peak_rss_mb
        finally:
            await receiver.close()
    summary = summarise(per_round, cpu_key="sender_cpu_ms_per_packet")
    return {
        "benchmark": "webhook-out",
        "measure": "packets delivered and recorded/s vs a raw aiohttp client loop",
        "ratio": summary["ratio"],
        "cpu_ratio": summary["cpu_ratio"],
        "target_ratio": TARGET_RATIO,
        "target": f">= {TARGET_RATIO} of the raw aiohttp client loop's rate",
        "target_met": summary["ratio"] >= TARGET_RATIO,
        "meets_target": summary["ratio"] >= TARGET_RATIO,
        "ours": summary["ours"],
        "baseline": summary["baseline"],
        "count": count,
        "concurrency": concurrency,
        "rounds": rounds,
        "delivered": sum(r["ours"]["delivered_rows"] for r in per_round),
        "delivered_expected": count * rounds,
        "per_round": per_round,
        "setup": {
            "ours": "Dispatcher.drain_once + WebhookAdapter + ReconciliationHooks (bootstrap)",
            "baseline": "aiohttp ClientSession loop, same payload bytes, nothing recorded",
            "receiver": "aiohttp handler: await request.read(), answer 200",
            "agency_retry_concurrency": concurrency,
            "dispatch_batch_size": batch_size,
            "signature": "Standard Webhooks v1 (HMAC-SHA256)",
            "payload_bytes_avg": round(sum(map(len, payloads)) / len(payloads)),
            "receiver_peak_rss_mb": receiver_rss,
            "order": "baseline then ours in every round; each round on a fresh copy of the store",
        },
        "context": context(
            database=DATABASE_KIND,
            load_at_start=load_at_start,
            pinning={"sender": sender_cpu, "receiver": receiver_cpu},
        ),
        "wall_seconds": round(time.perf_counter() - started, 1),
    }


__all__ = ["TARGET_RATIO", "run"]

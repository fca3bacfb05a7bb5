"""``/metrics`` of a real app after real work: packets delivered to one agency's server and
refused by another's (attempts, latency, circuit), signed events received over HTTP (inbound by
status, last seen), a reconciliation run a day later (run and pass durations, the last run read
from the database, SLA breaches and breaks by kind), the outbox backlog and its oldest item;
an SFTP file batch and the agency's result files picked up; mail to a law firm and its
mailbox read.
Parsed with prometheus_client's own parser, on SQLite and PostgreSQL; every value is checked
against what the database or the test itself knows."""

import hashlib
import json
import shutil
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp import web
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from pytest_aiohttp import AiohttpClient, AiohttpServer

from gateway.bootstrap import Gateway, build
from gateway.clock import ManualClock, to_datetime
from gateway.config.agencies import AgencyConfig, WebhookAgency
from gateway.config.settings import GatewaySettings
from gateway.demo.data import generate_accounts, write_csv
from gateway.inbound.service import InboundService
from gateway.keys import sandbox_keys
from gateway.metrics import Metrics
from gateway.monitoring.cluster import ClusterCollector
from gateway.monitoring.polls import metered
from gateway.runtime import channel_pollers, mailbox_readers, reconciliation_run
from gateway.sandbox.dovecot import free_port
from gateway.sandbox.law_firm import SandboxLawFirm
from gateway.server import create_app
from gateway.signing import sign
from gateway.store.database import Database
from gateway.store.migrate import upgrade
from gateway.store.tables import Case, Expectation, InboundMessage, OutboxItem, Placement
from tests.conftest import import_and_allocate
from tests.integration.email_setup import FIRM, firm_of, write_firm_config
from tests.integration.sftp_harness import AGENCY_ID, seed, start_world

ConfigFactory = Callable[..., tuple[Path, GatewaySettings, dict[str, AgencyConfig]]]
OUTBOX = OutboxItem.__table__  # type: ignore[attr-defined]
PLACEMENTS = Placement.__table__  # type: ignore[attr-defined]
CASES = Case.__table__  # type: ignore[attr-defined]
EXPECTATIONS = Expectation.__table__  # type: ignore[attr-defined]
INBOUND = InboundMessage.__table__  # type: ignore[attr-defined]
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
DAY = 24 * 3600.0
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """Every sample of an exposition, keyed by (name, sorted labels)."""
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def signed(gateway: Gateway, agency_id: str, body: bytes, *, good: bool = True) -> dict[str, str]:
    agency = gateway.agencies[agency_id]
    assert isinstance(agency, WebhookAgency)
    _verify, signing = sandbox_keys(agency, gateway.settings.base_dir)
    msg_id = "evt_" + hashlib.sha256(body).hexdigest()[:20]
    ts = int(gateway.clock.now())
    signature = sign(msg_id, ts, body, signing)
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": signature if good else signature[:-4] + "AAA=",
    }


def ack(placement: Mapping[str, Any], at: float) -> bytes:
    data = {
        "placement_id": placement["id"],
        "agency_case_ref": "REF-1",
        "balance": {"amount_minor": placement["balance_minor"], "currency": "CNY"},
    }
    envelope = {"type": "placement.acknowledged", "timestamp": to_datetime(at).isoformat()}
    return json.dumps({**envelope, "data": data}).encode()


async def rows(gateway: Gateway, stmt: sa.Select[Any]) -> list[dict[str, Any]]:
    async with gateway.db.connect() as conn:
        return [dict(r) for r in (await conn.execute(stmt)).mappings().all()]


async def test_metrics_after_deliveries_inbound_events_and_a_reconciliation_run(
    tmp_path: Path,
    database_url: str,
    make_config: ConfigFactory,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> None:
    async def up(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"ok": True})

    async def down(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=503, text="maintenance")

    agency_app = web.Application()
    agency_app.router.add_post("/up", up)
    agency_app.router.add_post("/down", down)
    server = await aiohttp_server(agency_app)
    _path, settings, agencies = make_config(
        database_url=database_url,
        agencies={
            "AGY_UP": {"scheme": "v1", "url": str(server.make_url("/up"))},
            "AGY_DOWN": {
                "scheme": "v1",
                "url": str(server.make_url("/down")),
                "retry": {"circuit_failure_threshold": 2},
            },
        },
    )
    write_csv(list(generate_accounts(16, seed=5, as_of=date(2026, 3, 1))), tmp_path / "a.csv")
    clock = ManualClock(START.timestamp())
    gateway = build(settings, agencies, clock=clock)
    try:
        await upgrade(gateway.db)
        assert await import_and_allocate(gateway, tmp_path / "a.csv") == 16
        placed = await rows(gateway, sa.select(PLACEMENTS).order_by(PLACEMENTS.c.id))
        n_up = sum(p["agency_id"] == "AGY_UP" for p in placed)
        n_down = sum(p["agency_id"] == "AGY_DOWN" for p in placed)
        assert n_up >= 2 and n_down >= 2  # both agencies got work: the test means something

        stats = await (await gateway.dispatcher()).drain_once()
        assert (stats.delivered, stats.retried) == (n_up, n_down)

        client = await aiohttp_client(
            create_app(inbound=gateway.inbound, db=gateway.db, metrics_=gateway.metrics)
        )
        first_up = next(p for p in placed if p["agency_id"] == "AGY_UP")
        clock.advance(3600)
        acked_at = clock.now()
        body = ack(first_up, acked_at)
        url = "/v1/agencies/AGY_UP/events"
        response = await client.post(url, data=body, headers=signed(gateway, "AGY_UP", body))
        assert response.status == 200, await response.text()
        forged = ack(first_up, acked_at).replace(b"REF-1", b"REF-2")
        headers = signed(gateway, "AGY_UP", forged, good=False)
        assert (await client.post(url, data=forged, headers=headers)).status == 401

        clock.advance(DAY)  # every other acknowledgement is now overdue
        report = await reconciliation_run(gateway)
        assert report is not None and report["state"] == "completed"

        response = await client.get("/metrics")
        assert response.status == 200
        text = await response.text()
        m = parse(text)

        # Deliveries: attempts by agency, channel and outcome; one latency per attempt.
        attempts = "gateway_delivery_attempts_total"
        assert value(m, attempts, agency="AGY_UP", channel="webhook", outcome="delivered") == n_up
        assert (
            value(m, attempts, agency="AGY_DOWN", channel="webhook", outcome="transient") == n_down
        )
        assert value(m, attempts, agency="AGY_UP", channel="webhook", outcome="transient") is None
        latency = "gateway_delivery_duration_seconds_count"
        assert value(m, latency, agency="AGY_UP", channel="webhook") == n_up
        assert value(m, latency, agency="AGY_DOWN", channel="webhook") == n_down

        # The refusing agency's circuit opened; the other's stayed closed.
        circuit = "gateway_circuit_state"
        assert value(m, circuit, agency="AGY_DOWN", state="open") == 1
        assert value(m, circuit, agency="AGY_DOWN", state="closed") == 0
        assert value(m, circuit, agency="AGY_UP", state="closed") == 1
        assert value(m, "gateway_circuit_consecutive_failures", agency="AGY_DOWN") == n_down

        # Inbound: by agency and status; last seen is when the accepted event was stored.
        inbound = "gateway_inbound_requests_total"
        assert value(m, inbound, agency="AGY_UP", status="200") == 1
        assert value(m, inbound, agency="AGY_UP", status="401") == 1
        seen = "gateway_inbound_last_seen_timestamp_seconds"
        assert value(m, seen, agency="AGY_UP") == acked_at
        assert value(m, seen, agency="AGY_DOWN") is None

        # The outbox: what AGY_DOWN refused waits, queued at allocation (a day and an hour ago).
        assert value(m, "gateway_outbox_items", state="pending") == n_down
        assert value(m, "gateway_outbox_items", state="dead") == 0
        assert value(m, "gateway_outbox_oldest_pending_age_seconds") == DAY + 3600
        due_age = value(m, "gateway_outbox_oldest_due_age_seconds")
        assert due_age is not None and 0 < due_age < DAY + 3600  # due after a backoff

        # SLA: every delivered placement but the acknowledged one missed its acknowledgement.
        breached = await rows(
            gateway,
            sa.select(EXPECTATIONS.c.agency_id, EXPECTATIONS.c.kind).where(
                EXPECTATIONS.c.state == "breached"
            ),
        )
        assert {(r["agency_id"], r["kind"]) for r in breached} == {("AGY_UP", "ack")}
        assert value(m, "gateway_sla_breaches", agency="AGY_UP", kind="missing_ack") == n_up - 1
        assert value(m, "gateway_open_mismatches", kind="missing_ack") == n_up - 1
        assert value(m, "gateway_open_mismatches", kind="dead_delivery") == 0

        # Reconciliation: this process's run and passes, and the last run as stored.
        assert value(m, "gateway_reconcile_run_duration_seconds_count") == 1
        passes = set(report["seconds"])
        assert passes and all(
            value(m, "gateway_reconcile_pass_duration_seconds_count", **{"pass": p}) == 1
            for p in passes
        )
        assert value(m, "gateway_reconcile_last_run_state", state="completed") == 1
        assert value(m, "gateway_reconcile_last_run_state", state="failed") == 0
        assert value(m, "gateway_reconcile_last_run_finished_timestamp_seconds") == clock.now()
        assert value(m, "gateway_reconcile_last_run_duration_seconds") == 0  # the clock stood

        assert value(m, "gateway_agency_endpoint_disabled", agency="AGY_DOWN") == 0

        # Labels are agency ids and fixed sets: no case or placement id reaches the exposition.
        cases = await rows(gateway, sa.select(CASES.c.id))
        assert [c["id"] for c in cases if c["id"] in text] == []
        assert [p["id"] for p in placed if p["id"] in text] == []
    finally:
        await gateway.aclose()


async def pending(collector: ClusterCollector) -> int:
    snapshot = await collector.refresh()
    assert snapshot is not None
    return snapshot.outbox["pending"]


async def test_the_cluster_numbers_are_read_once_per_cache_period(
    tmp_path: Path, database_url: str, make_config: ConfigFactory
) -> None:
    """A burst of scrapes costs one read; the next period reads again and sees the change."""
    _path, settings, agencies = make_config(
        database_url=database_url,
        agencies={"AGY_C": {"scheme": "v1", "url": "http://127.0.0.1:9/hooks"}},
    )
    write_csv(list(generate_accounts(3, seed=6, as_of=date(2026, 3, 1))), tmp_path / "a.csv")
    clock = ManualClock(START.timestamp())
    gateway = build(settings, agencies, clock=clock)
    ticks = [0.0]
    collector = ClusterCollector(
        db=gateway.db,
        agencies={"AGY_C": "webhook"},
        clock=clock.now,
        cache_seconds=10,
        monotonic=lambda: ticks[0],
    )
    try:
        await upgrade(gateway.db)
        assert await pending(collector) == 0
        assert await import_and_allocate(gateway, tmp_path / "a.csv") == 3
        ticks[0] = 9.0
        assert await pending(collector) == 0  # still the cached read
        ticks[0] = 10.0
        assert await pending(collector) == 3
    finally:
        await gateway.aclose()


async def test_sftp_batches_and_result_pickups_are_counted_by_agency(
    tmp_path: Path, database_url: str, aiohttp_client: AiohttpClient
) -> None:
    """One file batch is one upload (one latency) and as many attempts as cases; the agency's
    result files, picked up by the scheduler's wrapped poller, count by result."""
    world = await start_world(tmp_path, database_url)
    try:
        await seed(world, 12)
        gateway = world.gateway()
        try:
            dispatcher = await gateway.dispatcher()
            assert (await dispatcher.drain_once()).delivered == 12
            assert await world.agency_behind().process_once() >= 1
            [pickup] = channel_pollers(dispatcher)
            counted = metered(
                pickup, gateway.metrics, source="sftp_pickup", clock=gateway.clock.now
            )
            results = await counted.poll_once()
            assert results and sum(results.values()) >= 1
            client = await aiohttp_client(
                create_app(inbound=gateway.inbound, db=gateway.db, metrics_=gateway.metrics)
            )
            m = parse(await (await client.get("/metrics")).text())
            at = {"agency": AGENCY_ID, "channel": "sftp"}
            assert value(m, "gateway_delivery_attempts_total", **at, outcome="delivered") == 12
            assert value(m, "gateway_delivery_duration_seconds_count", **at) == 1
            polled = {"source": "sftp_pickup", "agency": AGENCY_ID}
            assert {
                result: value(m, "gateway_poll_results_total", **polled, result=result)
                for result in results
            } == {result: float(n) for result, n in results.items()}
            assert value(m, "gateway_polls_total", **polled, outcome="ok") == 1
            assert value(m, "gateway_poll_last_success_timestamp_seconds", **polled) is not None
            [newest] = await rows(
                gateway,
                sa.select(sa.func.max(INBOUND.c.received_at).label("at")).where(
                    INBOUND.c.agency_id == AGENCY_ID
                ),
            )
            assert newest["at"] is not None  # the result files were stored as inbound messages
            seen = value(m, "gateway_inbound_last_seen_timestamp_seconds", agency=AGENCY_ID)
            assert seen == newest["at"].timestamp()
        finally:
            await gateway.aclose()
    finally:
        await world.aclose()


async def test_metrics_answer_without_the_database_and_say_the_cluster_numbers_are_missing(
    tmp_path: Path, aiohttp_client: AiohttpClient
) -> None:
    """A database that cannot be opened takes the cluster numbers away, not the endpoint."""
    missing = tmp_path / "no-such-folder" / "gateway.db"
    db = Database(f"sqlite:///{missing}")
    metrics = Metrics(channels={"AGY": "webhook"})
    metrics.attempts("AGY", "delivered", [0.02])
    inbound = InboundService(
        db=db, trust={}, clock=ManualClock(START.timestamp()), metrics=metrics, max_body_bytes=1024
    )
    try:
        client = await aiohttp_client(create_app(inbound=inbound, db=db, metrics_=metrics))
        response = await client.get("/metrics")
        assert response.status == 200
        m = parse(await response.text())
        assert value(m, "gateway_cluster_read_ok") == 0
        attempts = "gateway_delivery_attempts_total"
        assert value(m, attempts, agency="AGY", channel="webhook", outcome="delivered") == 1
        assert value(m, "gateway_outbox_items", state="pending") is None
    finally:
        await inbound.aclose()
        await db.dispose()


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
async def test_mail_to_a_law_firm_and_its_mailbox_polls_are_counted_by_agency(
    tmp_path: Path, seed_placements: Any
) -> None:
    """Packets mailed to the sandbox firm count on the ``email`` channel; the firm's replies,
    read from its mailbox by the scheduler's wrapped reader, count by message kind."""
    base = tmp_path / "config"
    _, settings, agencies = write_firm_config(
        base,
        database_url="sqlite:///" + str(tmp_path / "g.db"),
        smtp_port=free_port(),
        imap_port=free_port(),
    )
    firm = SandboxLawFirm(agency=firm_of(agencies), base_dir=base, seed=3, fault_rate=0.0)
    await firm.start()
    try:
        agencies[FIRM] = firm.updated_agency()
        clock = ManualClock(START.timestamp())
        gateway = build(settings, agencies, clock=clock)
        try:
            await upgrade(gateway.db)
            placed = await seed_placements(gateway.db, agencies, 4, clock)
            assert (await (await gateway.dispatcher()).drain_once()).delivered == len(placed)
            assert await firm.drain(timeout=30)
            if firm.reply_path_skipped is not None:
                pytest.skip(f"reply path skipped: {firm.reply_path_skipped}")
            [reader] = mailbox_readers(gateway)
            counted = metered(reader, gateway.metrics, source="mailbox", clock=clock.now)
            polled = await counted.poll_once()
            assert sum(polled.values()) == firm.stats.replies_appended >= 1
            m = parse(generate_latest(gateway.metrics.registry).decode())
            at = {"agency": FIRM, "channel": "email"}
            sent = value(m, "gateway_delivery_attempts_total", **at, outcome="delivered")
            assert sent == len(placed)
            assert value(m, "gateway_delivery_duration_seconds_count", **at) == len(placed)
            where = {"source": "mailbox", "agency": FIRM}
            assert {
                kind: value(m, "gateway_poll_results_total", **where, result=kind)
                for kind in polled
            } == {kind: float(n) for kind, n in polled.items()}
            assert value(m, "gateway_polls_total", **where, outcome="ok") == 1
            assert value(m, "gateway_poll_last_success_timestamp_seconds", **where) == clock.now()
        finally:
            await gateway.aclose()
    finally:
        await firm.aclose()

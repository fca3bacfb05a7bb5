"""Waiver, instalment and pause requests on the wire, and the decision back: a webhook agency
posts them to the real inbound API and the real webhook adapter delivers ``request.decided``
to the sandbox webhook agency on loopback; an SFTP agency drops them in a result file that
the real asyncssh pickup reads, and gets the decision as a DECISION batch it reads back
(SQLite, and PostgreSQL when configured). The law-firm email reply sheet is in
tests/integration/test_email_replies.py."""

import hashlib
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from pytest_aiohttp import AiohttpClient

from adapters.sftp.layouts import ParsedRecord, RecordWriter
from adapters.sftp.parsing import read_records
from gateway.bootstrap import Gateway
from gateway.clock import ManualClock
from gateway.concessions.decisions import ConcessionService
from gateway.concessions.requests import list_requests
from gateway.config.agencies import AgencyConfig, WebhookAgency
from gateway.config.settings import GatewaySettings
from gateway.keys import sandbox_keys
from gateway.runtime import bound_socket
from gateway.server import create_app
from gateway.signing import sign
from tests.conftest import Seeder
from tests.integration.sftp_harness import AGENCY_ID, SftpWorld, seed, start_world
from tests.integration.test_sftp_pickup import pickup_of, put
from tests.sandbox_world import serve_sandbox

ConfigFactory = Callable[..., tuple[Path, GatewaySettings, dict[str, AgencyConfig]]]
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Staff:
    name: str
    role: str


def requests_for(pid: str, at: datetime) -> list[dict[str, Any]]:
    """One request of each kind on placement ``pid``."""
    day = at.date()
    stamp = at.isoformat().replace("+00:00", "Z")
    return [
        {
            "type": "waiver.requested",
            "timestamp": stamp,
            "data": {
                "placement_id": pid,
                "request_id": f"W-{pid}",
                "waive_amount": {"amount_minor": 100, "currency": "CNY"},
                "reason": "hardship",
            },
        },
        {
            "type": "instalment.requested",
            "timestamp": stamp,
            "data": {
                "placement_id": pid,
                "request_id": f"I-{pid}",
                "instalments": 2,
                "first_due_date": (day + timedelta(days=10)).isoformat(),
                "frequency": "monthly",
                "total": {"amount_minor": 1000, "currency": "CNY"},
                "reason": "salary is monthly",
            },
        },
        {
            "type": "pause.requested",
            "timestamp": stamp,
            "data": {
                "placement_id": pid,
                "request_id": f"P-{pid}",
                "pause_from": day.isoformat(),
                "pause_until": (day + timedelta(days=7)).isoformat(),
                "reason": "hospitalisation",
            },
        },
    ]


def service(gateway: Gateway) -> ConcessionService:
    return ConcessionService(
        db=gateway.db,
        clock=gateway.clock,
        agencies=gateway.agencies,
        concessions=gateway.settings.concessions,
        four_eyes=gateway.settings.four_eyes,
    )


async def test_a_webhook_agency_asks_over_http_and_its_sandbox_gets_the_decisions(
    make_config: ConfigFactory,
    seed_placements: Seeder,
    database_url: str,
    aiohttp_client: AiohttpClient,
) -> None:
    sock = bound_socket("127.0.0.1", 0)
    _, settings, agencies = make_config(
        database_url=database_url,
        agencies={"AGY_REQ": {"url": f"http://127.0.0.1:{sock.getsockname()[1]}/hooks"}},
    )
    agency = agencies["AGY_REQ"]
    assert isinstance(agency, WebhookAgency)
    clock = ManualClock(START.timestamp())
    async with AsyncExitStack() as stack:
        sandbox, gateway = await serve_sandbox(stack, sock, settings, agencies, agency, clock)
        await gateway.inbound.start()
        [(pid, *_)] = await seed_placements(gateway.db, agencies, 1, clock)
        dispatcher = await gateway.dispatcher()
        assert (await dispatcher.drain_once()).delivered == 1
        client = await aiohttp_client(
            create_app(inbound=gateway.inbound, db=gateway.db, metrics_=gateway.metrics)
        )
        _verify, signing = sandbox_keys(agency, settings.base_dir)
        ack = {
            "type": "placement.acknowledged",
            "timestamp": START.isoformat(),
            "data": {
                "placement_id": pid,
                "agency_case_ref": "R-1",
                "balance": {"amount_minor": 1, "currency": "CNY"},
            },
        }
        for envelope in [ack, *requests_for(pid, START)]:
            body = json.dumps(envelope).encode()
            msg_id = "evt_" + hashlib.sha256(body).hexdigest()[:24]
            ts = int(clock.now())
            headers = {
                "content-type": "application/json",
                "webhook-id": msg_id,
                "webhook-timestamp": str(ts),
                "webhook-signature": sign(msg_id, ts, body, signing),
            }
            async with client.post(
                f"/v1/agencies/{agency.id}/events", data=body, headers=headers
            ) as answer:
                assert answer.status == 200, await answer.text()
        async with gateway.db.connect() as conn:
            pending = await list_requests(conn, states=["pending"])
        assert sorted(r.kind for r in pending) == ["instalment", "pause", "waiver"]
        decide = service(gateway)
        await decide.decide(f"AGY_REQ/W-{pid}", approve=True, person=Staff("li", "operator"))
        await decide.decide(f"AGY_REQ/I-{pid}", approve=True, person=Staff("li", "operator"))
        await decide.decide(
            f"AGY_REQ/P-{pid}", approve=False, person=Staff("li", "operator"), reason="no proof"
        )
        stats = await dispatcher.drain_once()
        assert (stats.delivered, stats.dead) == (3, 0)
        assert sandbox.stats.packets_by_type["request.decided"] == 3
        assert dict(sandbox.stats.packets_refused) == {}
        assert sandbox.planner.cases[pid].decisions == {
            f"W-{pid}": "approved",
            f"I-{pid}": "approved",
            f"P-{pid}": "rejected",
        }
        assert not sandbox.planner.cases[pid].recalled


@pytest.fixture
async def sftp_world(tmp_path: Path, database_url: str) -> AsyncIterator[SftpWorld]:
    world = await start_world(tmp_path, database_url)
    yield world
    await world.aclose()


async def test_an_sftp_agency_asks_in_a_result_file_and_reads_the_decisions_batch(
    sftp_world: SftpWorld,
) -> None:
    world = sftp_world
    await seed(world, 1)
    gateway = world.gateway()
    try:
        assert (await (await gateway.dispatcher()).drain_once()).delivered == 1
        async with gateway.db.connect() as conn:
            [pid] = (await conn.execute(sa.text("select id from placements"))).scalars()
        now = datetime.now(UTC).replace(microsecond=0)
        ack = {
            "type": "placement.acknowledged",
            "timestamp": now.isoformat().replace("+00:00", "Z"),
            "data": {
                "placement_id": pid,
                "agency_case_ref": "R-1",
                "balance": {"amount_minor": 1, "currency": "CNY"},
            },
        }
        writer = RecordWriter(world.agency.sftp.layout, "result")
        chunk, errors = writer.write_records([ack, *requests_for(pid, now)])
        assert errors == []
        name = f"{AGENCY_ID}_LENDERX_RESULT_{now:%Y%m%d}_0001.csv"
        put(world, name, writer.start() + chunk + writer.finish())
        assert await (await pickup_of(gateway)).poll_once() == {"done": 1}
        async with gateway.db.connect() as conn:
            pending = {r.kind: r for r in await list_requests(conn, states=["pending"])}
        assert pending.keys() == {"waiver", "instalment", "pause"}
        assert [(i.amount_minor) for i in pending["instalment"].terms.schedule] == [500, 500]
        decide = service(gateway)
        for kind in ("waiver", "instalment", "pause"):
            await decide.decide(pending[kind].id, approve=True, person=Staff("li", "operator"))
        stats = await (await gateway.dispatcher()).drain_once()
        assert (stats.delivered, stats.dead) == (3, 0)
    finally:
        await gateway.aclose()
    [batch] = [n for n in world.files("inbox") if "_DECISION_" in n and n.endswith(".csv")]
    with (world.path("inbox") / batch).open("rb") as stream:
        rows = list(read_records(stream, world.agency.sftp.layout, "request.decided"))
    assert all(isinstance(r, ParsedRecord) for r in rows) and len(rows) == 3
    by_id = {
        r.record["data"]["request_id"]: r.record["data"]
        for r in rows
        if isinstance(r, ParsedRecord)
    }
    assert by_id[f"W-{pid}"]["decision"] == "approved"
    assert by_id[f"W-{pid}"]["terms"]["waive_amount"] == {"amount_minor": 100, "currency": "CNY"}
    assert by_id[f"I-{pid}"]["terms"]["total"] == {"amount_minor": 1000, "currency": "CNY"}
    assert by_id[f"P-{pid}"]["terms"]["pause_until"] == (now.date() + timedelta(days=7)).isoformat()
    agency = world.agency_behind()
    await agency.process_once()
    assert agency.stats.rejections == []
    assert agency.stats.packets_by_type["request.decided"] == 3

"""A statement travels to a webhook agency as a ``settlement.statement`` packet, and the
agency answers on the real inbound API (``create_app`` on loopback, both databases):
``settlement.confirmed`` of the sent revision and hash locks it; another hash or revision
is a 422; ``settlement.disputed`` opens a ``settlement_disputed`` mismatch."""

import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from gateway.clock import ManualClock
from gateway.inbound.service import InboundService, InboundTrust
from gateway.metrics import Metrics
from gateway.server import create_app
from gateway.settlement.packets import queue_statement
from gateway.settlement.statements import StatementService
from gateway.signing import generate_hmac_secret, parse_hmac_secret, sign
from gateway.store.database import Database
from gateway.store.tables import Mismatch, OutboxItem
from schemas.packets import SettlementStatement
from tests.settlement_world import NOW, Seeded, agency, seed, service

Client = TestClient[web.Request, web.Application]
ROWS = [
    Seeded("P1", "M1", date(2026, 2, 1), date(2026, 3, 1), "primary", date(2026, 3, 5), 300_000),
    Seeded("P2", "M2", date(2026, 1, 1), date(2026, 2, 1), "primary", date(2026, 3, 9), 99_999),
    Seeded("P3", "M2", date(2026, 1, 1), date(2026, 2, 1), "primary", date(2026, 4, 9), 50_000),
]


@dataclass
class World:
    client: Client
    db: Database
    statements: StatementService
    key: Any

    async def post(self, event_type: str, data: dict[str, object]) -> tuple[int, Any]:
        body = json.dumps({"type": event_type, "timestamp": NOW.isoformat(), "data": data}).encode()
        msg_id = "evt_" + hashlib.sha256(body).hexdigest()[:24]
        ts = int(NOW.timestamp())
        headers = {
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(ts),
            "webhook-signature": sign(msg_id, ts, body, [self.key]),
        }
        async with self.client.post("/v1/agencies/FIRM/events", data=body, headers=headers) as r:
            return r.status, json.loads(await r.read())


@pytest.fixture
async def world(db: Database, aiohttp_client: AiohttpClient) -> AsyncIterator[World]:
    firm = agency()
    await seed(db, firm.id, ROWS)
    key = parse_hmac_secret(generate_hmac_secret())
    inbound = InboundService(
        db=db,
        trust={"FIRM": InboundTrust("FIRM", (key,), 300)},
        clock=ManualClock(NOW.timestamp()),
        metrics=Metrics(),
        max_body_bytes=65_536,
    )
    client = await aiohttp_client(create_app(inbound=inbound, db=db, metrics_=Metrics()))
    yield World(client, db, service(db, firm, sender=queue_statement), key)
    await inbound.aclose()


async def _state(db: Database, sid: int) -> str:
    async with db.snapshot() as conn:
        return str(
            (
                await conn.execute(
                    sa.text("SELECT state FROM settlement_statements WHERE id = :i"), {"i": sid}
                )
            ).scalar_one()
        )


async def test_the_packet_carries_totals_lines_and_hash(world: World) -> None:
    sid = await world.statements.build("FIRM", "2026-03", actor="ops:ann")
    sha = await world.statements.issue(sid, actor="ops:bob")
    async with world.db.snapshot() as conn:
        ob = OutboxItem.__table__.c  # type: ignore[attr-defined]
        rows = (await conn.execute(sa.select(ob.placement_id, ob.packet_type, ob.payload))).all()
    [(where, packet_type, payload)] = rows
    assert (where, packet_type) == (f"statement:{sid}", "settlement.statement")
    packet = SettlementStatement.model_validate_json(payload)
    assert packet.data.sha256 == sha and packet.data.revision == 1
    assert [line.placement_id for line in packet.data.lines] == ["P1", "P2"]
    view = await world.statements.show(sid)
    assert packet.data.total.amount_minor == view.statement["total_minor"]
    assert (
        sum(line.commission.amount_minor for line in packet.data.lines if line.commission)
        == view.statement["lines_minor"]
    )


async def test_a_confirmation_of_another_hash_or_revision_is_422(world: World) -> None:
    sid = await world.statements.build("FIRM", "2026-03", actor="ops:ann")
    sha = await world.statements.issue(sid, actor="ops:bob")
    status, doc = await world.post(
        "settlement.confirmed", {"statement_id": sid, "revision": 1, "sha256": "0" * 64}
    )
    assert status == 422 and doc["type"].endswith("/settlement-answer-refused"), doc
    assert sha in doc["detail"]
    status, doc = await world.post(
        "settlement.confirmed", {"statement_id": sid, "revision": 2, "sha256": sha}
    )
    assert status == 422 and "revision 1, not 2" in doc["detail"], doc
    assert await _state(world.db, sid) == "issued"
    status, doc = await world.post(
        "settlement.confirmed", {"statement_id": sid, "revision": 1, "sha256": sha}
    )
    assert status == 200, doc
    assert await _state(world.db, sid) == "confirmed"
    status, doc = await world.post(
        "settlement.disputed",
        {
            "statement_id": sid,
            "revision": 1,
            "line_nos": [1],
            "reason": "late",
            "claimed": {"amount_minor": 1, "currency": "CNY"},
        },
    )
    assert status == 422 and "confirmed" in doc["detail"], doc


async def test_a_dispute_by_webhook_opens_a_mismatch_with_the_lines(world: World) -> None:
    sid = await world.statements.build("FIRM", "2026-03", actor="ops:ann")
    await world.statements.issue(sid, actor="ops:bob")
    status, doc = await world.post(
        "settlement.disputed",
        {
            "statement_id": sid,
            "revision": 1,
            "line_nos": [2],
            "reason": "P2 was ours at a higher rate",
            "claimed": {"amount_minor": 17_999, "currency": "CNY"},
        },
    )
    assert status == 200, doc
    assert await _state(world.db, sid) == "disputed"
    async with world.db.snapshot() as conn:
        M = Mismatch.__table__.c  # type: ignore[attr-defined]
        [row] = (
            await conn.execute(
                sa.select(M.kind, M.placement_id, M.event_id, M.theirs).where(
                    M.kind == "settlement_disputed"
                )
            )
        ).all()
    assert row.placement_id == "P2" and row.event_id is not None
    assert json.loads(row.theirs)["claimed_minor"] == 17_999

"""A webhook agency fetches its statement's XLSX and PDF from the real app on loopback
(``create_app``, both databases): the packet names the path; a signed request for its own
statement gets the exact bytes with their SHA-256; another agency's statement, an unknown one
and a bad signature are refused; every request is recorded in ``document_fetches``."""

import base64
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
from gateway.settlement.documents import renderer
from gateway.settlement.fetch import StatementDocumentFetch
from gateway.settlement.packets import queue_statement
from gateway.signing import generate_hmac_secret, parse_hmac_secret, sign
from gateway.store.database import Database
from gateway.store.document_tables import DocumentFetch
from gateway.store.statement_tables import SettlementDocument
from gateway.store.tables import OutboxItem
from schemas.packets import SettlementStatement
from tests.settlement_world import NOW, Seeded, agency, seed, service

Client = TestClient[web.Request, web.Application]
FETCHES = DocumentFetch.__table__  # type: ignore[attr-defined]
ROWS = [
    Seeded("P1", "M1", date(2026, 2, 1), date(2026, 3, 1), "primary", date(2026, 3, 5), 300_000),
    Seeded("Q1", "M1", date(2026, 2, 1), date(2026, 3, 1), "primary", date(2026, 3, 6), 10_000),
]


@dataclass
class World:
    client: Client
    db: Database
    keys: dict[str, Any]

    async def fetch(
        self, agency_id: str, body: dict[str, object], *, key_of: str | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        raw = json.dumps(body).encode()
        msg_id = "req_" + hashlib.sha256(raw).hexdigest()[:20]
        ts = int(NOW.timestamp())
        headers = {
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(ts),
            "webhook-signature": sign(msg_id, ts, raw, [self.keys[key_of or agency_id]]),
        }
        path = f"/v1/agencies/{agency_id}/settlement-documents"
        async with self.client.post(path, data=raw, headers=headers) as r:
            return r.status, dict(r.headers), await r.read()


@pytest.fixture
async def world(db: Database, aiohttp_client: AiohttpClient) -> AsyncIterator[World]:
    await seed(db, "FIRM", ROWS[:1])
    await seed(db, "OTHER", ROWS[1:])
    keys = {a: parse_hmac_secret(generate_hmac_secret()) for a in ("FIRM", "OTHER")}
    trust = {a: InboundTrust(a, (k,), 300) for a, k in keys.items()}
    clock = ManualClock(NOW.timestamp())
    inbound = InboundService(
        db=db, trust=trust, clock=clock, metrics=Metrics(), max_body_bytes=65_536
    )
    app = create_app(
        inbound=inbound,
        db=db,
        metrics_=Metrics(),
        statement_documents=StatementDocumentFetch(db=db, trust=trust, clock=clock),
    )
    yield World(await aiohttp_client(app), db, keys)
    await inbound.aclose()


async def _issue(db: Database, agency_id: str) -> int:
    statements = service(db, agency(agency_id), renderer=renderer(None), sender=queue_statement)
    sid = await statements.build(agency_id, "2026-03", actor="ops:ann")
    await statements.issue(sid, actor="ops:bob")
    return sid


async def test_the_agency_fetches_the_documents_its_packet_names(world: World) -> None:
    sid = await _issue(world.db, "FIRM")
    async with world.db.snapshot() as conn:
        ob = OutboxItem.__table__.c  # type: ignore[attr-defined]
        [payload] = (await conn.execute(sa.select(ob.payload))).scalars()
        d = SettlementDocument.__table__.c  # type: ignore[attr-defined]
        stored = {
            r.kind: bytes(r.body)
            for r in await conn.execute(sa.select(d.kind, d.body).where(d.statement_id == sid))
        }
    packet = SettlementStatement.model_validate_json(payload)
    assert {doc.kind for doc in packet.data.documents} == {"xlsx", "pdf"}
    for doc in packet.data.documents:
        assert doc.fetch == "/v1/agencies/FIRM/settlement-documents"
        status, headers, body = await world.fetch("FIRM", {"statement_id": sid, "kind": doc.kind})
        assert status == 200, body
        assert body == stored[doc.kind] and hashlib.sha256(body).hexdigest() == doc.sha256
        digest = base64.b64encode(bytes.fromhex(doc.sha256)).decode()
        assert headers["Repr-Digest"] == f"sha-256=:{digest}:"
        assert doc.name in headers["Content-Disposition"]
    async with world.db.snapshot() as conn:
        rows = (
            await conn.execute(
                sa.select(FETCHES.c.placement_id, FETCHES.c.outcome, FETCHES.c.status)
            )
        ).all()
    assert sorted(rows) == [(f"statement:{sid}", "served", 200)] * 2


async def test_another_agencys_statement_is_not_found_and_refusals_are_recorded(
    world: World,
) -> None:
    theirs = await _issue(world.db, "OTHER")
    status, _, body = await world.fetch("FIRM", {"statement_id": theirs, "kind": "pdf"})
    assert status == 404, body
    status, _, body = await world.fetch("FIRM", {"statement_id": theirs + 100, "kind": "pdf"})
    assert status == 404, body
    # signed with another agency's key
    status, _, _ = await world.fetch(
        "OTHER", {"statement_id": theirs, "kind": "pdf"}, key_of="FIRM"
    )
    assert status == 401
    status, _, body = await world.fetch("OTHER", {"statement_id": theirs, "kind": "docx"})
    assert status == 422, body
    status, _, body = await world.fetch("OTHER", {"statement_id": theirs, "kind": "pdf"})
    assert status == 200 and body.startswith(b"%PDF")
    async with world.db.snapshot() as conn:
        rows = (
            await conn.execute(
                sa.select(FETCHES.c.agency_id, FETCHES.c.outcome).order_by(FETCHES.c.id)
            )
        ).all()
    assert [tuple(r) for r in rows] == [
        ("FIRM", "not_found"),
        ("FIRM", "not_found"),
        ("OTHER", "unauthorised"),
        ("OTHER", "invalid"),
        ("OTHER", "served"),
    ]

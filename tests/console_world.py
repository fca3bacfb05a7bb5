"""A small, deterministic gateway world for the ops console tests and screenshots.

Two webhook agencies backed by a stub agency server on loopback (it answers 200, or 400 for
the placements it is told to refuse), a real config and keys written by ``make_config``, a
real SQLite database, accounts imported and allocated, packets dispatched for real, signed
agency events received through the real inbound service, an SLA check a few days later, and
three console users. The mismatches it leaves: ``ack_balance_differs``,
``conflicting_duplicate``, ``unknown_placement``, ``dead_delivery`` and SLA breaches.
"""

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from aiohttp import web

from gateway.bootstrap import Gateway, build
from gateway.clock import ManualClock, to_datetime
from gateway.config.agencies import WebhookAgency
from gateway.console import accounts
from gateway.demo.data import generate_accounts, write_csv
from gateway.intake.service import import_file
from gateway.keys import sandbox_keys
from gateway.reconciliation.sla import run_sla_checks
from gateway.server import create_app
from gateway.signing import sign
from gateway.store.migrate import upgrade
from gateway.store.tables import Mismatch, Placement

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
PASSWORD = "correct horse battery staple"
USERS = {"ada": "admin", "olga": "operator", "vic": "viewer"}
ALPHA, BETA = "AGY_ALPHA", "AGY_BETA"


@dataclass
class StubAgency:
    """An agency endpoint that stores nothing and refuses the placements in ``refuse``."""

    refuse: set[str] = field(default_factory=set)
    received: list[dict[str, Any]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        self.received.append(body)
        if body["data"]["placement_id"] in self.refuse:
            return web.json_response({"error": "unknown product code"}, status=400)
        return web.json_response({"status": "stored"})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/hooks", self.handle)
        return app


@dataclass
class ConsoleWorld:
    gateway: Gateway
    clock: ManualClock
    stub: StubAgency
    placements: dict[str, list[tuple[str, str, int]]]
    """agency id -> (placement id, case id, balance) in placement id order."""

    async def post_event(self, agency_id: str, event_type: str, data: dict[str, Any]) -> int:
        """Sign and receive one agency event through the real inbound service."""
        agency = self.gateway.agencies[agency_id]
        assert isinstance(agency, WebhookAgency)
        _verify, signing = sandbox_keys(agency, self.gateway.settings.base_dir)
        now = to_datetime(self.clock.now())
        body = json.dumps({"type": event_type, "timestamp": now.isoformat(), "data": data}).encode()
        msg_id = "evt_" + hashlib.sha256(agency_id.encode() + body).hexdigest()[:24]
        ts = int(self.clock.now())
        headers = [
            ("content-type", "application/json"),
            ("webhook-id", msg_id),
            ("webhook-timestamp", str(ts)),
            ("webhook-signature", sign(msg_id, ts, body, signing)),
        ]
        answer = await self.gateway.inbound.receive(agency_id, headers, body)
        return answer.status

    async def mismatch_id(self, kind: str) -> int:
        m = Mismatch.__table__.c  # type: ignore[attr-defined]
        async with self.gateway.db.snapshot() as conn:
            found = await conn.execute(sa.select(m.id).where(m.kind == kind).order_by(m.id))
            return int(found.scalars().first() or 0)


def console_app(gateway: Gateway) -> web.Application:
    """The gateway's app with the console, as ``serve`` builds it."""
    return create_app(
        inbound=gateway.inbound,
        db=gateway.db,
        metrics_=gateway.metrics,
        console=gateway.console_services(),
    )


async def build_world(
    make_config: Any,
    tmp_path: Path,
    agency_url: str,
    stub: StubAgency,
    *,
    accounts_n: int = 24,
    database_url: str | None = None,
    language: str = "en",
) -> ConsoleWorld:
    """Everything in the module docstring (on ``database_url``, by default a SQLite file in
    ``tmp_path``); the caller closes ``world.gateway``."""
    _config, settings, agencies = make_config(
        database_url=database_url or "sqlite:///" + str(tmp_path / "console.db"),
        agencies={
            ALPHA: {"scheme": "v1", "url": agency_url},
            BETA: {"scheme": "v1a", "url": agency_url},
        },
        console={"language": language},
    )
    clock = ManualClock(START.timestamp())
    gateway = build(settings, agencies, clock=clock)
    await upgrade(gateway.db)
    await gateway.inbound.start()
    for name, role in USERS.items():
        await accounts.add_user(gateway.db, name, role, PASSWORD, now=START)
    path = tmp_path / "accounts.csv"
    write_csv(generate_accounts(accounts_n, seed=11, as_of=START.date()), path)
    await import_file(
        path,
        db=gateway.db,
        pii=gateway.pii,
        placements=gateway.placements,
        allocation=settings.allocation,
        clock=clock,
        confirmation="off",
    )
    await gateway.placements.allocate()
    p = Placement.__table__.c  # type: ignore[attr-defined]
    async with gateway.db.snapshot() as conn:
        rows = (
            await conn.execute(
                sa.select(p.agency_id, p.id, p.case_id, p.balance_minor).order_by(p.id)
            )
        ).all()
    placements: dict[str, list[tuple[str, str, int]]] = {ALPHA: [], BETA: []}
    for agency_id, pid, case_id, balance in rows:
        placements[agency_id].append((pid, case_id, balance))
    world = ConsoleWorld(gateway, clock, stub, placements)
    stub.refuse.add(placements[BETA][-1][0])
    clock.advance(60)
    dispatcher = await gateway.dispatcher()
    await dispatcher.drain_once()
    clock.advance(3600)

    alpha = placements[ALPHA]
    (p0, _c0, b0), (p1, _c1, b1), (p2, _c2, b2) = alpha[0], alpha[1], alpha[2]
    cny = "CNY"
    await world.post_event(
        ALPHA,
        "placement.acknowledged",
        {
            "placement_id": p0,
            "agency_case_ref": "ALPHA-0",
            "balance": {"amount_minor": b0 + 5_000, "currency": cny},
        },
    )
    for pid, b, ref in ((p1, b1, "ALPHA-1"), (p2, b2, "ALPHA-2")):
        await world.post_event(
            ALPHA,
            "placement.acknowledged",
            {
                "placement_id": pid,
                "agency_case_ref": ref,
                "balance": {"amount_minor": b, "currency": cny},
            },
        )
    clock.advance(600)
    paid_at = to_datetime(clock.now()).isoformat()
    await world.post_event(
        ALPHA,
        "payment.reported",
        {
            "placement_id": p1,
            "payment_id": "PAY-1001",
            "amount": {"amount_minor": 10_000, "currency": cny},
            "paid_at": paid_at,
        },
    )
    clock.advance(60)
    await world.post_event(
        ALPHA,
        "payment.reported",
        {
            "placement_id": p1,
            "payment_id": "PAY-1001",
            "amount": {"amount_minor": 12_000, "currency": cny},
            "paid_at": paid_at,
        },
    )
    await world.post_event(
        ALPHA,
        "contact.attempted",
        {
            "placement_id": p2,
            "channel": "call",
            "outcome": "reached",
            "attempted_at": paid_at,
            "effective": True,
        },
    )
    await world.post_event(
        ALPHA,
        "payment.reported",
        {
            "placement_id": "PL-AC9999999999-1",
            "payment_id": "PAY-9",
            "amount": {"amount_minor": 3_000, "currency": cny},
            "paid_at": paid_at,
        },
    )
    for pid, _case, b in placements[BETA][:2]:
        await world.post_event(BETA, "placement.acknowledged", {
            "placement_id": pid, "agency_case_ref": f"B-{pid[-6:]}",
            "balance": {"amount_minor": b, "currency": cny}})  # fmt: skip
    clock.advance(4 * 24 * 3600)
    async with gateway.db.transaction() as conn:
        await run_sla_checks(conn, now=to_datetime(clock.now()))
    clock.advance(3600)
    return world


__all__ = [
    "ALPHA",
    "BETA",
    "PASSWORD",
    "START",
    "USERS",
    "ConsoleWorld",
    "StubAgency",
    "build_world",
]

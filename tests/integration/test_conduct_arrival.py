"""Conduct violations raised as contact attempts arrive through the real inbound API
(``create_app`` on loopback, events signed by the agency), on both databases: a third
party contacted about the debt, a contact while the case has a standing hold (an approved
pause) or while the placement is disputed, quiet hours and the daily cap; then the batch
run raises none of them again. Also ``violation_counts`` and the QA sample's draw (the
same world: the contacts carry recordings)."""

import hashlib
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from gateway.clock import ManualClock, to_datetime
from gateway.conduct import qa, violation_counts
from gateway.config.agencies import AgencyConfig
from gateway.config.settings import ReconciliationSection
from gateway.errors import QaRefused
from gateway.inbound.service import InboundService, InboundTrust
from gateway.metrics import Metrics
from gateway.privacy.pii import PiiKeyRing
from gateway.reconciliation.contact_rules import ContactRules
from gateway.reconciliation.engine import ReconEngine
from gateway.reconciliation.recorder import ArrivalPolicy
from gateway.server import create_app
from gateway.signing import SigningKey, sign
from gateway.store.case_tables import CaseHold
from gateway.store.database import Database
from gateway.store.tables import EvidenceLeaf, Mismatch
from tests.integration.test_inbound_api import agency_config, key_pair

MISMATCHES = Mismatch.__table__  # type: ignore[attr-defined]
HOLDS = CaseHold.__table__  # type: ignore[attr-defined]
LEAVES = EvidenceLeaf.__table__  # type: ignore[attr-defined]
START = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai
SETTINGS = ReconciliationSection(timezone="Asia/Shanghai", max_effective_calls_per_day=2)
Client = TestClient[web.Request, web.Application]
PII = PiiKeyRing.parse(PiiKeyRing.generate_line("k1"))


@dataclass
class World:
    client: Client
    db: Database
    clock: ManualClock
    key: SigningKey
    agencies: dict[str, AgencyConfig]
    placed: list[tuple[str, str]]
    """(placement id, case id) held by AGY_A, acknowledged."""

    async def contact(self, placement_id: str, at: datetime, **extra: object) -> int:
        """Post one contact attempt; returns its agency event id."""
        data: dict[str, object] = {
            "placement_id": placement_id,
            "channel": "call",
            "outcome": "reached",
            "attempted_at": at.isoformat(),
            "effective": True,
            **extra,
        }
        await self.post("contact.attempted", data, at)
        async with self.db.connect() as conn:
            return int(
                (await conn.execute(sa.text("SELECT max(id) FROM agency_events"))).scalar_one()
            )

    async def post(self, event_type: str, data: Mapping[str, object], at: datetime) -> None:
        body = json.dumps(
            {"type": event_type, "timestamp": at.isoformat(), "data": dict(data)}
        ).encode()
        msg_id = "evt_" + hashlib.sha256(body).hexdigest()[:24]
        ts = int(self.clock.now())
        headers = {
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(ts),
            "webhook-signature": sign(msg_id, ts, body, [self.key]),
        }
        path = "/v1/agencies/AGY_A/events"
        async with self.client.post(path, data=body, headers=headers) as response:
            assert response.status == 200, await response.text()

    async def mismatches(self) -> dict[str, tuple[str, str, int | None]]:
        """dedupe key → (kind, severity, event id)."""
        async with self.db.connect() as conn:
            rows = await conn.execute(
                sa.select(
                    MISMATCHES.c.dedupe_key,
                    MISMATCHES.c.kind,
                    MISMATCHES.c.severity,
                    MISMATCHES.c.event_id,
                )
            )
            return {r[0]: (r[1], r[2], r[3]) for r in rows.all()}


@pytest.fixture
async def world(
    db: Database, seed_placements: Any, aiohttp_client: AiohttpClient
) -> AsyncIterator[World]:
    clock = ManualClock((START + timedelta(days=1)).timestamp())
    agencies = {"AGY_A": agency_config("AGY_A", "v1")}
    placed = await seed_placements(db, agencies, 3, clock, seed=3)
    signing, verifying = key_pair("v1")
    inbound = InboundService(
        db=db,
        trust={"AGY_A": InboundTrust("AGY_A", (verifying,), 10**9)},
        clock=clock,
        metrics=Metrics(),
        max_body_bytes=8192,
        arrival=ArrivalPolicy(ContactRules.from_settings(SETTINGS)),
    )
    client = await aiohttp_client(create_app(inbound=inbound, db=db, metrics_=inbound._metrics))
    world = World(client, db, clock, signing, agencies, [(p[0], p[1]) for p in placed])
    for n, (pid, _case, _agency, balance) in enumerate(placed):
        ack = {
            "placement_id": pid,
            "agency_case_ref": f"R-{n}",
            "balance": {"amount_minor": balance, "currency": "CNY"},
        }
        await world.post("placement.acknowledged", ack, START - timedelta(days=1))
    yield world
    await inbound.aclose()


async def test_violations_are_raised_on_arrival_and_never_again_by_the_batch_run(
    world: World,
) -> None:
    (p1, _c1), (p2, c2), (p3, _c3) = world.placed
    minute = timedelta(minutes=1)

    # Third parties: locating the debtor is allowed; talking about the debt is not, nor is
    # a third-party contact that does not say it only located.
    located = await world.contact(
        p1, START, party="third_party", purpose="locate", channel="sms", effective=False
    )
    about_debt = await world.contact(
        p1,
        START + minute,
        party="third_party",
        purpose="debt",
        collector_id="C-7",
        recording_ref="rec/1.mp3",
        effective=False,
    )
    unsaid = await world.contact(
        p1, START + 2 * minute, party="third_party", channel="visit", effective=False
    )
    guarantor = await world.contact(p1, START + 3 * minute, party="guarantor", effective=False)

    # A standing hold on case 2 (an approved pause stands as a PAUSE hold), placed an hour
    # before the contact; a hold released before the contact does not count.
    async with world.db.transaction() as conn:
        await conn.execute(
            HOLDS.insert(),
            [
                {
                    "case_id": c2,
                    "code": "PAUSE",
                    "source": "ops",
                    "placed_by": "ops:ana",
                    "placed_at": START - timedelta(hours=1),
                },
                {
                    "case_id": c2,
                    "code": "DECEASED",
                    "source": "ops",
                    "placed_by": "ops:ana",
                    "placed_at": START - timedelta(days=3),
                    "released_at": START - timedelta(days=2),
                    "released_by": "ops:ana",
                },
            ],
        )
    during_hold = await world.contact(p2, START + 10 * minute, collector_id="C-8")

    # A dispute opened at 10:00 local: a contact made before it (reported after) is fine,
    # one after it is a violation.
    await world.post(
        "dispute.opened", {"placement_id": p3, "reason": "not my loan"}, START + 60 * minute
    )
    before_dispute = await world.contact(p3, START + 30 * minute, effective=False)
    during_dispute = await world.contact(p3, START + 90 * minute, effective=False)

    # Quiet hours 22:00-08:00 Shanghai: 23:30 and 07:00 the next morning are inside.
    late = await world.contact(p1, datetime(2026, 3, 2, 15, 30, tzinfo=UTC), effective=False)
    early = await world.contact(p1, datetime(2026, 3, 2, 23, 0, tzinfo=UTC), effective=False)

    # The cap: two effective calls a day per debtor; the third of the day breaks it.
    calls = [await world.contact(p1, START + timedelta(hours=h)) for h in (2, 3, 4)]

    found = await world.mismatches()
    assert found == {
        f"third_party_contact:event:{about_debt}": ("third_party_contact", "high", about_debt),
        f"third_party_contact:event:{unsaid}": ("third_party_contact", "high", unsaid),
        f"contact_during_hold:event:{during_hold}": ("contact_during_hold", "high", during_hold),
        f"contact_during_dispute:event:{during_dispute}": (
            "contact_during_dispute",
            "high",
            during_dispute,
        ),
        f"contact_rule_violation:event:{late}:quiet_hours": (
            "contact_rule_violation",
            "high",
            late,
        ),
        f"contact_rule_violation:event:{early}:quiet_hours": (
            "contact_rule_violation",
            "high",
            early,
        ),
        f"contact_rule_violation:event:{calls[2]}:daily_effective_calls": (
            "contact_rule_violation",
            "high",
            calls[2],
        ),
    }
    assert located not in {e for _k, _s, e in found.values()}
    assert guarantor not in {e for _k, _s, e in found.values()}
    assert before_dispute not in {e for _k, _s, e in found.values()}

    # The batch run judges the same contacts with the same rules: nothing new.
    engine = ReconEngine(db=world.db, agencies=world.agencies, settings=SETTINGS, clock=world.clock)
    report = await engine.run()
    counts = report.as_dict()["counts"]
    assert counts["contacts"]["violations"] == 3 and counts["new"] == {}, counts
    assert await world.mismatches() == found

    # violation_counts: per agency and kind, over the period they were raised in.
    async with world.db.connect() as conn:
        now = to_datetime(world.clock.now())
        counts = await violation_counts(
            conn, start=now - timedelta(days=1), end=now + timedelta(seconds=1)
        )
        assert counts == {
            "AGY_A": {
                "third_party_contact": 2,
                "contact_during_hold": 1,
                "contact_during_dispute": 1,
                "contact_rule_violation": 3,
            }
        }
        assert (
            await violation_counts(conn, start=now + timedelta(days=1), end=now + timedelta(days=2))
            == {}
        )

    # The QA sample of March: the recorded calls only; drawn once, reproducibly.
    shanghai = ZoneInfo("Asia/Shanghai")
    for n in range(6):
        await world.contact(
            p1,
            START + timedelta(days=3, minutes=n),
            collector_id=f"C-{n % 3}",
            recording_ref=f"rec/{n}.mp3",
            effective=n % 2 == 0,
        )
    async with world.db.transaction() as conn:
        first = await qa.draw_month(
            conn, "AGY_A", "2026-03", size=4, zone=shanghai, actor="ops:ana", now=now
        )
    assert first.new and first.candidates == 7 and len(first.items) == 4
    # Stratified by collector: the three collectors of the month each come up before any
    # twice (C-7 made one recorded call, C-0..C-2 two each).
    assert len({i.collector_id for i in first.items[:3]}) == 3
    async with world.db.transaction() as conn:
        again = await qa.draw_month(
            conn, "AGY_A", "2026-03", size=10, zone=shanghai, actor="ops:bo", now=now
        )
    assert not again.new and again.items == first.items

    # Review: requested → failed raises recording_qa_failed; a reviewed item is final.
    item = first.items[0]
    async with world.db.transaction() as conn:
        await qa.review(conn, item.id, "request", actor="ops:ana", note=None, pii=PII, now=now)
        done = await qa.review(
            conn, item.id, "fail", actor="ops:bo", note="threatening tone", pii=PII, now=now
        )
    assert (done.state, done.reviewer, done.note) == ("failed", "ops:bo", "threatening tone")
    with pytest.raises(QaRefused, match="failed"):
        async with world.db.transaction() as conn:
            await qa.review(conn, item.id, "pass", actor="ops:bo", note=None, pii=PII, now=now)
    found = await world.mismatches()
    assert found[f"recording_qa_failed:qa:{item.id}"] == (
        "recording_qa_failed",
        "medium",
        item.event_id,
    )
    async with world.db.connect() as conn:
        leaves = (
            await conn.execute(
                sa.select(LEAVES.c.kind, LEAVES.c.ref).where(
                    LEAVES.c.kind.in_(["qa_draw", "qa_review"])
                )
            )
        ).all()
        stored = (
            await conn.execute(
                sa.text("SELECT note_sealed FROM qa_samples WHERE id = :i"), {"i": item.id}
            )
        ).scalar_one()
    assert sorted(leaves) == [
        ("qa_draw", "qa:AGY_A:2026-03"),
        ("qa_review", f"qa_samples:{item.id}"),
        ("qa_review", f"qa_samples:{item.id}"),
    ]
    assert b"threatening" not in bytes(stored)

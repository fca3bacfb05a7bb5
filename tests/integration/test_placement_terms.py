"""The end of a placement's term on real databases (SQLite, and PostgreSQL when configured):
expiry recalls after the grace, the warning packet once per term and only where the contract
asks for it, renewal by ops, and escalation to the legal tier (off, auto, approval)."""

import asyncio
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
import sqlalchemy as sa

from gateway.allocation.placements import PlacementService
from gateway.bootstrap import build
from gateway.cases.escalation import EscalationService, escalation_views
from gateway.cases.expiry import ExpiryService
from gateway.clock import ManualClock
from gateway.config.agencies import AgencyConfig
from gateway.config.settings import AllocationSection, GatewaySettings
from gateway.dispatch.outbox import open_payload
from gateway.errors import GatewayError, NotFound
from gateway.privacy.pii import PiiKeyRing
from gateway.runtime import run_workers
from gateway.store.case_tables import CaseHistory, Escalation
from gateway.store.database import Database
from gateway.store.migrate import upgrade
from gateway.store.tables import Case, EvidenceLeaf, OutboxItem, Placement
from tests.conftest import Seeder
from tests.factories import agency_config

CASES = Case.__table__  # type: ignore[attr-defined]
PLACEMENTS = Placement.__table__  # type: ignore[attr-defined]
OUTBOX = OutboxItem.__table__  # type: ignore[attr-defined]
LEAVES = EvidenceLeaf.__table__  # type: ignore[attr-defined]
HISTORY = CaseHistory.__table__  # type: ignore[attr-defined]
ESCALATIONS = Escalation.__table__  # type: ignore[attr-defined]
P = PLACEMENTS.c

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas" / "json"
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
DAY = 86_400.0
GRACE = 2
WARN_DAYS = 14
CASES_SEEDED = 12
WARNED, QUIET = "AGY_WARN", "AGY_QUIET"
ConfigFactory = Callable[..., tuple[Path, GatewaySettings, dict[str, AgencyConfig]]]


def agencies(**tiers: str) -> dict[str, AgencyConfig]:
    """AGY_WARN takes expiry warnings, AGY_QUIET does not; both primary unless told."""
    return {
        WARNED: agency_config(id=WARNED, expiry_warning=True, tier=tiers.get(WARNED, "primary")),
        QUIET: agency_config(id=QUIET, tier=tiers.get(QUIET, "primary")),
    }


@dataclass
class World:
    db: Database
    clock: ManualClock
    agencies: dict[str, AgencyConfig]
    placed: list[tuple[str, str, str, int]]
    return_by: date

    def settings(self, **overrides: Any) -> AllocationSection:
        return AllocationSection(
            expiry_grace_days=GRACE, expiry_warning_days=WARN_DAYS, **overrides
        )

    def placements(self, agencies: Mapping[str, AgencyConfig] | None = None) -> PlacementService:
        return PlacementService(
            db=self.db,
            agencies=agencies or self.agencies,
            pii=PiiKeyRing.parse(PiiKeyRing.generate_line("k1")),
            settings=self.settings(),
            clock=self.clock,
        )

    def expiry(self) -> ExpiryService:
        return ExpiryService(
            db=self.db,
            agencies=self.agencies,
            placements=self.placements(),
            settings=self.settings(),
            clock=self.clock,
        )

    def escalations(
        self, mode: str, agencies: Mapping[str, AgencyConfig] | None = None
    ) -> EscalationService:
        chosen = agencies or self.agencies
        return EscalationService(
            db=self.db,
            agencies=chosen,
            placements=self.placements(chosen),
            settings=self.settings(escalation=mode),
            clock=self.clock,
        )

    def at(self, day: date, hour: int = 9) -> None:
        """Move the clock to ``hour`` o'clock (UTC) on ``day``."""
        self.clock = ManualClock(
            datetime(day.year, day.month, day.day, hour, tzinfo=UTC).timestamp()
        )

    def by_agency(self, agency_id: str) -> list[str]:
        return [pid for pid, _, agency, _ in self.placed if agency == agency_id]


@pytest.fixture
async def world(db: Database, seed_placements: Seeder) -> World:
    clock = ManualClock(START.timestamp())
    chosen = agencies()
    placed = await seed_placements(db, chosen, CASES_SEEDED, clock)
    assert {agency for _, _, agency, _ in placed} == {WARNED, QUIET}
    async with db.connect() as conn:
        ends = set((await conn.execute(sa.select(P.return_by))).scalars())
    [return_by] = ends
    return World(db, clock, chosen, placed, return_by)


async def rows(db: Database, query: Any) -> list[Any]:
    async with db.connect() as conn:
        return list((await conn.execute(query)).all())


async def packets(db: Database, packet_type: str) -> list[dict[str, Any]]:
    """The queued packets of one type, as the agency will read them, oldest first."""
    found = []
    async with db.connect() as conn:
        for key, stored in await conn.execute(
            sa.select(OUTBOX.c.dedupe_key, OUTBOX.c.payload)
            .where(OUTBOX.c.packet_type == packet_type)
            .order_by(OUTBOX.c.id)
        ):
            payload = open_payload(conn, key, stored)
            assert payload is not None
            found.append(json.loads(payload))
    return found


def schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMAS / f"{name}.json").read_text(encoding="utf-8"))
    return loaded


async def test_a_placement_is_recalled_the_day_after_its_grace_and_not_before(
    world: World,
) -> None:
    world.at(world.return_by + timedelta(days=GRACE), hour=23)
    inside = await world.expiry().run()
    assert inside.expired.total() == 0 and inside.expired_ids == []
    assert {s for (s,) in await rows(world.db, sa.select(P.state))} == {"placed"}

    world.at(world.return_by + timedelta(days=GRACE + 1), hour=0)
    report = await world.expiry().run(batch=5)

    every = sorted(pid for pid, *_ in world.placed)
    assert sorted(report.expired_ids) == every
    assert dict(report.expired) == {a: len(world.by_agency(a)) for a in (WARNED, QUIET)}
    stored = await rows(world.db, sa.select(P.id, P.state, P.recall_reason).order_by(P.id))
    assert stored == [(pid, "recalled", "EXPIRED") for pid in every]
    statuses = await rows(world.db, sa.select(CASES.c.status))
    assert {s for (s,) in statuses} == {"returned"}
    history = await rows(
        world.db,
        sa.select(HISTORY.c.placement_id, HISTORY.c.event, HISTORY.c.actor, HISTORY.c.reason)
        .where(HISTORY.c.event == "expire")
        .order_by(HISTORY.c.placement_id),
    )
    assert history == [(pid, "expire", "expiry", "EXPIRED") for pid in every]
    recalled = await packets(world.db, "placement.recalled")
    assert sorted(p["data"]["placement_id"] for p in recalled) == every
    assert {p["data"]["reason_code"] for p in recalled} == {"EXPIRED"}
    for packet in recalled:
        jsonschema.validate(packet, schema("placement.recalled"))

    again = await world.expiry().run()
    assert again.expired.total() == 0
    assert len(await packets(world.db, "placement.recalled")) == len(every)


async def test_the_warning_goes_once_per_term_and_only_to_agencies_that_take_it(
    world: World,
) -> None:
    world.at(world.return_by - timedelta(days=WARN_DAYS + 1))
    early = await world.expiry().plan()
    assert early.warnings == [] and early.expired == []

    world.at(world.return_by - timedelta(days=WARN_DAYS))
    report = await world.expiry().run()
    warned = sorted(world.by_agency(WARNED))
    assert sorted(report.warned_ids) == warned and dict(report.warned) == {WARNED: len(warned)}
    sent = await packets(world.db, "placement.expiring")
    assert sorted(p["data"]["placement_id"] for p in sent) == warned
    recall_on = (world.return_by + timedelta(days=GRACE + 1)).isoformat()
    for packet in sent:
        jsonschema.validate(packet, schema("placement.expiring"))
        jsonschema.validate(packet, schema("case-packet"))
        assert packet["data"]["return_by"] == world.return_by.isoformat()
        assert packet["data"]["recall_on"] == recall_on
        assert packet["data"]["packet_id"].startswith("pkt_")
    marks = await rows(world.db, sa.select(P.id, P.expiry_warned_at).order_by(P.id))
    assert {pid for pid, at in marks if at is not None} == set(warned)

    for days_left in (WARN_DAYS, 3, 0):
        world.at(world.return_by - timedelta(days=days_left), hour=18)
        assert (await world.expiry().run()).warned.total() == 0
    assert len(await packets(world.db, "placement.expiring")) == len(warned)
    assert not any(p["data"]["placement_id"] in world.by_agency(QUIET) for p in sent)


async def test_a_renewal_extends_the_term_tells_the_agency_and_is_warned_again(
    world: World,
) -> None:
    world.at(world.return_by - timedelta(days=WARN_DAYS))
    await world.expiry().run()
    renewed_id = world.by_agency(WARNED)[0]
    new_end = world.return_by + timedelta(days=30)

    renewal = await world.expiry().renew(renewed_id, 30, actor="ops:alice", note="court date set")

    assert (renewal.previous_return_by, renewal.return_by) == (world.return_by, new_end)
    assert (renewal.version, renewal.renewals) == (2, 1)
    [stored] = await rows(
        world.db,
        sa.select(P.return_by, P.version, P.renewals, P.expiry_warned_at).where(P.id == renewed_id),
    )
    assert tuple(stored) == (new_end, 2, 1, None)
    [amended] = await packets(world.db, "placement.amended")
    jsonschema.validate(amended, schema("placement.amended"))
    data = amended["data"]
    assert (data["placement_id"], data["version"], data["return_by"]) == (
        renewed_id,
        2,
        new_end.isoformat(),
    )
    assert data["balance"] == data["previous_balance"]
    assert data["reason"] == f"renewed until {new_end.isoformat()}"
    [leaf] = await rows(world.db, sa.select(LEAVES.c.body).where(LEAVES.c.kind == "renewal"))
    body = json.loads(leaf.body)
    assert (body["ref"], body["actor"], body["to"], body["note"]) == (
        f"placement:{renewed_id}",
        "ops:alice",
        new_end.isoformat(),
        "court date set",
    )

    world.at(world.return_by + timedelta(days=GRACE + 1))
    report = await world.expiry().run()
    assert renewed_id not in report.expired_ids
    assert len(report.expired_ids) == len(world.placed) - 1
    [(state,)] = await rows(world.db, sa.select(P.state).where(P.id == renewed_id))
    assert state == "placed"

    world.at(new_end - timedelta(days=WARN_DAYS))
    second = await world.expiry().run()
    assert second.warned_ids == [renewed_id]
    warnings = [
        p
        for p in await packets(world.db, "placement.expiring")
        if p["data"]["placement_id"] == renewed_id
    ]
    assert [w["data"]["return_by"] for w in warnings] == [
        world.return_by.isoformat(),
        new_end.isoformat(),
    ]
    assert warnings[0]["data"]["packet_id"] != warnings[1]["data"]["packet_id"]


async def test_renewal_refuses_what_it_cannot_renew(world: World) -> None:
    service = world.expiry()
    with pytest.raises(NotFound, match="placement PL-NOPE-1 does not exist"):
        await service.renew("PL-NOPE-1", 10, actor="ops:alice")
    first = world.by_agency(QUIET)[0]
    world.at(world.return_by + timedelta(days=GRACE + 10))
    # Today is return_by + 12: with 2 days' grace the new date must reach return_by + 10.
    with pytest.raises(GatewayError, match="renew by at least 10 days"):
        await world.expiry().renew(first, 9, actor="ops:alice")
    just = world.by_agency(WARNED)[0]
    assert (await world.expiry().renew(just, 10, actor="ops:alice")).renewals == 1
    report = await world.expiry().run()
    assert first in report.expired_ids and just not in report.expired_ids
    with pytest.raises(GatewayError, match=f"placement {first} is recalled: only an open"):
        await world.expiry().renew(first, 60, actor="ops:alice")
    with pytest.raises(GatewayError, match="renew by 1 to 730 days, not 0"):
        await world.expiry().renew(just, 0, actor="ops:alice")
    assert [p["data"]["placement_id"] for p in await packets(world.db, "placement.amended")] == [
        just
    ]


async def make_legal(world: World, placement_ids: list[str]) -> None:
    """The lender's next file shows these placements' cases past the legal threshold."""
    async with world.db.transaction() as conn:
        cases = list(
            (await conn.execute(sa.select(P.case_id).where(P.id.in_(placement_ids)))).scalars()
        )
        await conn.execute(
            CASES.update().where(CASES.c.id.in_(cases)).values(bucket="LEGAL", dpd=400)
        )


async def test_escalation_off_leaves_the_case_where_it_is(world: World) -> None:
    await make_legal(world, world.by_agency(WARNED))
    report = await world.escalations("off").scan()
    assert (report.found, report.proposed, report.recalled.total()) == (
        len(world.by_agency(WARNED)),
        [],
        0,
    )
    assert await rows(world.db, sa.select(ESCALATIONS)) == []
    assert {s for (s,) in await rows(world.db, sa.select(P.state))} == {"placed"}


async def test_escalation_auto_recalls_at_once_for_the_legal_tier(world: World) -> None:
    legal = world.by_agency(WARNED)[:2]
    await make_legal(world, legal)
    report = await world.escalations("auto").scan()
    assert sorted(report.recalled_ids) == sorted(legal)
    assert dict(report.recalled) == {WARNED: 2}
    stored = await rows(
        world.db, sa.select(P.id, P.state, P.recall_reason).where(P.id.in_(legal)).order_by(P.id)
    )
    assert stored == [(pid, "recalled", "LEGAL_ESCALATION") for pid in sorted(legal)]
    history = await rows(
        world.db,
        sa.select(HISTORY.c.event, HISTORY.c.actor, HISTORY.c.to_status).where(
            HISTORY.c.placement_id.in_(legal), HISTORY.c.event == "escalate"
        ),
    )
    assert history == [("escalate", "escalation", "returned")] * 2
    escalations = await rows(
        world.db,
        sa.select(ESCALATIONS.c.placement_id, ESCALATIONS.c.state, ESCALATIONS.c.decided_by),
    )
    assert sorted(escalations) == [(pid, "approved", "escalation") for pid in sorted(legal)]
    recalled = await packets(world.db, "placement.recalled")
    assert sorted(p["data"]["placement_id"] for p in recalled) == sorted(legal)
    assert (await world.escalations("auto").scan()).found == 0


async def test_escalation_by_approval_proposes_once_and_ops_decide(world: World) -> None:
    # AGY_QUIET is configured as a law firm here: its LEGAL cases are where they belong.
    config = agencies(**{QUIET: "legal"})
    await make_legal(world, [pid for pid, *_ in world.placed])
    first = await world.escalations("approval", config).scan()
    proposed_for = sorted(world.by_agency(WARNED))
    assert first.found == len(proposed_for) and len(first.proposed) == len(proposed_for)
    async with world.db.connect() as conn:
        views = await escalation_views(conn, state="proposed")
    assert sorted(v.placement_id for v in views) == proposed_for
    assert all(v.placement_state == "placed" and "not 'legal'" in v.reason for v in views)
    assert (await world.escalations("approval", config).scan()).proposed == []
    assert {s for (s,) in await rows(world.db, sa.select(P.state))} == {"placed"}

    by_placement = {v.placement_id: v.id for v in views}
    rejected_id, approved_id = by_placement[proposed_for[0]], by_placement[proposed_for[1]]
    service = world.escalations("approval", config)
    rejected = await service.reject(rejected_id, actor="ops:bob", note="settling with agency")
    assert (rejected.state, rejected.decided_by, rejected.note) == (
        "rejected",
        "ops:bob",
        "settling with agency",
    )
    approved = await service.approve(approved_id, actor="ops:carol")
    assert (approved.state, approved.placement_state) == ("approved", "recalled")
    [(reason,)] = await rows(world.db, sa.select(P.recall_reason).where(P.id == proposed_for[1]))
    assert reason == "LEGAL_ESCALATION"
    [move] = await rows(
        world.db,
        sa.select(HISTORY.c.event, HISTORY.c.actor, HISTORY.c.reason).where(
            HISTORY.c.placement_id == proposed_for[1], HISTORY.c.event == "escalate"
        ),
    )
    assert tuple(move) == ("escalate", "ops:carol", "LEGAL_ESCALATION")
    [(state,)] = await rows(world.db, sa.select(P.state).where(P.id == proposed_for[0]))
    assert state == "placed"

    again = await world.escalations("approval", config).scan()
    assert again.found == 0 and again.proposed == []
    with pytest.raises(GatewayError, match=f"escalation {rejected_id} is already rejected"):
        await service.approve(rejected_id, actor="ops:carol")
    with pytest.raises(GatewayError, match=f"escalation {approved_id} is already approved"):
        await service.reject(approved_id, actor="ops:carol")
    with pytest.raises(NotFound, match="escalation 9999 does not exist"):
        await service.approve(9999, actor="ops:carol")
    leaves = await rows(world.db, sa.select(LEAVES.c.body).where(LEAVES.c.kind == "escalation"))
    states = sorted(json.loads(leaf.body)["state"] for leaf in leaves)
    assert states == sorted(["proposed"] * len(proposed_for) + ["rejected", "approved"])


async def test_an_escalation_whose_placement_ended_cannot_be_approved(world: World) -> None:
    target = world.by_agency(WARNED)[0]
    await make_legal(world, [target])
    [escalation_id] = (await world.escalations("approval").scan()).proposed
    world.at(world.return_by + timedelta(days=GRACE + 1))
    await world.expiry().run()
    with pytest.raises(GatewayError, match="has already ended; reject the escalation instead"):
        await world.escalations("approval").approve(escalation_id, actor="ops:carol")
    rejected = await world.escalations("approval").reject(escalation_id, actor="ops:carol")
    assert (rejected.state, rejected.placement_state) == ("rejected", "recalled")


async def test_serve_recalls_expired_placements_and_scans_for_escalations_on_its_timer(
    make_config: ConfigFactory, seed_placements: Seeder, tmp_path: Path
) -> None:
    _, settings, configured = make_config(
        database_url=f"sqlite:///{tmp_path / 'serve.db'}",
        agencies={"AGY_A": {"url": "http://127.0.0.1:9/unused"}},
    )
    clock = ManualClock(START.timestamp())
    gateway = build(settings, configured, clock=clock)
    try:
        await upgrade(gateway.db)
        placed = await seed_placements(gateway.db, configured, 4, clock)
        legal = placed[0][0]
        world = World(gateway.db, clock, dict(configured), placed, START.date())
        await make_legal(world, [legal])
        clock.advance(200 * DAY)  # past every return_by (180 days) and its grace
        stop = asyncio.Event()
        workers = asyncio.create_task(run_workers(gateway, stop))
        for _ in range(200):
            states = dict(await rows(gateway.db, sa.select(P.id, P.state)))
            if set(states.values()) == {"recalled"}:
                break
            await asyncio.sleep(0.05)
        stop.set()
        await workers
        assert set(states.values()) == {"recalled"}
        reasons = {r for (r,) in await rows(gateway.db, sa.select(P.recall_reason))}
        assert reasons == {"EXPIRED"}
        # The escalation scan ran after the expiry job: the legal case had already expired.
        assert await rows(gateway.db, sa.select(ESCALATIONS)) == []
    finally:
        await gateway.aclose()

    idle = settings.model_copy(
        update={"schedules": settings.schedules.model_copy(update={"expiry_every_seconds": 0})}
    )
    gateway = build(idle, configured, clock=ManualClock(START.timestamp() + 400 * DAY))
    try:
        async with gateway.db.transaction() as conn:
            await conn.execute(PLACEMENTS.update().values(state="placed"))
        stop = asyncio.Event()
        workers = asyncio.create_task(run_workers(gateway, stop))
        await asyncio.sleep(0.3)
        stop.set()
        await workers
        assert {s for (s,) in await rows(gateway.db, sa.select(P.state))} == {"placed"}
    finally:
        await gateway.aclose()

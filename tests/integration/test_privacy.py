"""Proof of deletion (PIPL Art. 21): ended placements are asked to delete, on SQLite and
PostgreSQL; the agency's data.deleted meets the request; an unanswered one becomes a
mismatch when due."""

import json
from datetime import timedelta

import pytest
import sqlalchemy as sa

from gateway.allocation.placements import PlacementService
from gateway.clock import ManualClock, to_datetime
from gateway.config.settings import AllocationSection
from gateway.console import read_model
from gateway.dispatch.packets import LEGAL_BASIS
from gateway.privacy.deletion import deletion_status, request_deletions
from gateway.privacy.pii import PiiKeyRing
from gateway.reconciliation.sla import run_sla_checks
from gateway.store.database import Database
from schemas.packets import DataDeletionRequested
from tests.conftest import Seeder
from tests.factories import NOW, agency_config, event
from tests.integration.test_recon_engine import (
    EXPECTATIONS,
    LEAVES,
    OUTBOX,
    PLACEMENTS,
    World,
)

DAYS = 30


@pytest.fixture
async def world(db: Database, seed_placements: Seeder) -> World:
    clock = ManualClock(NOW.timestamp())
    placed = await seed_placements(db, allowlisting(), 8, clock)
    w = World(db, placed, clock)
    w.agencies = allowlisting()
    return w


def allowlisting() -> dict:
    return {
        "AGA": agency_config(id="AGA", fields=["debtor.phones", "debtor.name"]),
        "AGB": agency_config(id="AGB"),
    }


async def sweep(world: World):
    async with world.db.transaction() as conn:
        return await request_deletions(
            conn, world.agencies, days=DAYS, now=to_datetime(world.clock.now())
        )


async def deletion_packets(world: World) -> list[DataDeletionRequested]:
    async with world.db.connect() as conn:
        rows = await conn.execute(
            sa.select(OUTBOX.c.payload)
            .where(OUTBOX.c.packet_type == "data.deletion_requested")
            .order_by(OUTBOX.c.id)
        )
        return [DataDeletionRequested.model_validate_json(bytes(r[0])) for r in rows.all()]


async def test_ended_placements_are_asked_once_and_the_confirmation_meets_it(world: World):
    recalled, closed = world.placement("AGA", 0), world.placement("AGA", 1)
    still_open = world.placement("AGB", 0)
    placements = PlacementService(
        db=world.db,
        agencies=world.agencies,
        pii=PiiKeyRing.parse(PiiKeyRing.generate_line("k1")),
        settings=AllocationSection(),
        clock=world.clock,
    )
    await placements.recall(recalled[1], "PAID_DIRECT")
    await world.report("AGA", [event("placement.acknowledged", placement_id=closed[0])])
    await world.report("AGA", [event("case.closed", placement_id=closed[0], reason="settled")])
    assert (await sweep(world)).as_dict() == {
        "requested": 2,
        "already_confirmed": 0,
        "unknown_agency": 0,
        "by_agency": {"AGA": 2},
    }
    assert (await sweep(world)).requested == 0  # asked once, ever

    packets = {p.data.placement_id: p.data for p in await deletion_packets(world)}
    assert set(packets) == {recalled[0], closed[0]}
    assert packets[recalled[0]].reason == "recalled" and packets[closed[0]].reason == "closed"
    assert packets[closed[0]].categories == ("debtor.debtor_id", "debtor.name", "debtor.phones")
    assert packets[closed[0]].legal_basis == LEGAL_BASIS
    assert packets[closed[0]].delete_by == (NOW + timedelta(days=DAYS)).date()
    async with world.db.connect() as conn:
        leaves = (
            await conn.execute(sa.select(LEAVES.c.body).where(LEAVES.c.kind == "packet"))
        ).scalars()
        asked = [json.loads(b) for b in leaves]
    assert sum(1 for leaf in asked if leaf["packet_type"] == "data.deletion_requested") == 2

    # The agency confirms one; a confirmation on a placement it still works is refused.
    await world.report("AGA", [event("data.deleted", placement_id=recalled[0], reference="DEL-77")])
    await world.report("AGB", [event("data.deleted", placement_id=still_open[0])])
    async with world.db.connect() as conn:
        status = {d["placement_id"]: d for d in await deletion_status(conn)}
    assert status[recalled[0]]["state"] == "met"
    assert status[recalled[0]]["confirmed_by_event_id"] is not None
    assert status[closed[0]]["state"] == "open"
    assert still_open[0] not in status
    [illegal] = [m for m in await world.mismatches() if m["kind"] == "illegal_transition"]
    assert illegal["placement_id"] == still_open[0] and "data.deleted" in illegal["detail"]
    async with world.db.connect() as conn:
        state = (
            await conn.execute(sa.select(PLACEMENTS.c.state).where(PLACEMENTS.c.id == closed[0]))
        ).scalar_one()
    assert state == "closed"  # confirming deletion changes nothing about the placement

    # Unanswered past due: breached, raised once as a high mismatch.
    late = to_datetime(world.clock.now()) + timedelta(days=DAYS, hours=1)
    async with world.db.transaction() as conn:
        assert await run_sla_checks(conn, now=late) == {"deletion_unconfirmed": 1}
    [overdue] = [m for m in await world.mismatches() if m["kind"] == "deletion_unconfirmed"]
    assert overdue["placement_id"] == closed[0] and overdue["severity"] == "high"
    assert "data.deleted" in overdue["detail"]
    async with world.db.connect() as conn:
        states = dict(
            (
                await conn.execute(
                    sa.select(EXPECTATIONS.c.placement_id, EXPECTATIONS.c.state).where(
                        EXPECTATIONS.c.kind == "deletion"
                    )
                )
            ).all()
        )
    assert states == {recalled[0]: "met", closed[0]: "breached"}
    async with world.db.connect() as conn:
        page = await read_model.agency_page(conn, world.agencies["AGA"], None, now=late)
    assert page["deletions"] == {"open": 0, "met": 1, "breached": 1}
    assert page["sla_breaches_open"]["deletion_unconfirmed"] == 1


async def test_an_agency_that_confirmed_before_it_was_asked_is_not_asked(world: World):
    returned = world.placement("AGA", 0)
    await world.report("AGA", [event("placement.acknowledged", placement_id=returned[0])])
    await world.report("AGA", [event("case.returned", placement_id=returned[0])])
    await world.report("AGA", [event("data.deleted", placement_id=returned[0])])
    result = await sweep(world)
    assert (result.requested, result.already_confirmed) == (0, 1)
    assert await deletion_packets(world) == []
    async with world.db.connect() as conn:
        [status] = await deletion_status(conn)
    assert status["state"] == "met" and status["confirmed_by_event_id"] is not None
    assert (await sweep(world)).already_confirmed == 0  # recorded once


async def test_placements_of_an_agency_no_longer_configured_are_counted_not_asked(world: World):
    gone = world.placement("AGB", 0)
    await world.report("AGB", [event("placement.rejected", placement_id=gone[0])])
    world.agencies = {"AGA": world.agencies["AGA"]}
    result = await sweep(world)
    assert (result.requested, result.unknown_agency) == (0, 1)
    assert await deletion_packets(world) == []


async def test_a_contract_end_recalls_everything_the_agency_holds_then_asks_deletion(
    world: World,
):
    placements = PlacementService(
        db=world.db,
        agencies=world.agencies,
        pii=PiiKeyRing.parse(PiiKeyRing.generate_line("k1")),
        settings=AllocationSection(),
        clock=world.clock,
    )
    held = [row[0] for row in world.by_agency["AGB"]]
    returned = world.by_agency["AGB"][0]
    await world.report("AGB", [event("placement.acknowledged", placement_id=returned[0])])
    await world.report("AGB", [event("case.returned", placement_id=returned[0])])
    seen: list[tuple[int, int]] = []
    recalled = await placements.recall_agency(
        "AGB", "CONTRACT_END", batch=2, progress=lambda done, total: seen.append((done, total))
    )
    assert sorted(recalled) == sorted(held[1:])  # the returned one was not open any more
    assert seen[-1] == (len(held) - 1, len(held) - 1)
    async with world.db.connect() as conn:
        states = dict(
            (
                await conn.execute(
                    sa.select(PLACEMENTS.c.id, PLACEMENTS.c.state).where(
                        PLACEMENTS.c.agency_id.in_(["AGA", "AGB"])
                    )
                )
            ).all()
        )
        recalls = (
            await conn.execute(
                sa.select(sa.func.count())
                .select_from(OUTBOX)
                .where(OUTBOX.c.packet_type == "placement.recalled")
            )
        ).scalar_one()
    assert {states[p] for p in held[1:]} == {"recalled"} and states[returned[0]] == "returned"
    assert all(states[row[0]] != "recalled" for row in world.by_agency["AGA"])
    assert recalls == len(held) - 1
    assert (await sweep(world)).by_agency == {"AGB": len(held)}
    assert await placements.recall_agency("AGB", "CONTRACT_END") == []  # nothing left

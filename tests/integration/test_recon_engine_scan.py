"""The events pass of the batch engine as the database feeds it: a full run reads its
events in windows computed ahead, and must judge them exactly as the pure audit judges the
whole stream at once; the garbage collector is kept out of a run and given back after it,
however the run ends."""

import gc
from datetime import timedelta

import pytest
import sqlalchemy as sa

from gateway.reconciliation.contact_rules import ContactRules, check_contacts
from gateway.reconciliation.event_audit import EventAudit
from gateway.reconciliation.runs import Run
from gateway.reconciliation.sources import event_facts, placement_facts
from gateway.store.row_stream import all_rows
from tests.factories import event, money
from tests.integration.test_recon_engine import (
    EVENTS,
    MISMATCHES,
    SETTINGS,
    World,
    agencies,
    at,
    world as world,
)


async def report_many(world: World) -> int:
    """Store a few thousand events of every sort in bulk; return how many."""
    pids = [row[0] for rows in world.by_agency.values() for row in rows]
    events = []
    for n in range(1, 3_001):
        pid = "PL-NEVER-1" if n % 97 == 0 else pids[n % len(pids)]
        when = at(1 + n / 1_000)
        kind = n % 7
        if kind == 0:
            events.append(
                event(
                    "payment.reported",
                    placement_id=pid,
                    payment_id=f"P{n % 50}",
                    amount=money(1_000 + n % 3),
                    paid_at=when.isoformat(),
                    timestamp=when,
                )
            )
        elif kind == 1:
            events.append(
                event(
                    "payment.reversed",
                    placement_id=pid,
                    payment_id=f"P{n % 50}",
                    amount=money(500),
                    timestamp=when,
                )
            )
        elif kind == 2:
            events.append(event("dispute.opened", placement_id=pid, timestamp=when))
        else:
            local_night = when.replace(hour=16) + timedelta(minutes=n % 60)  # 00:xx Shanghai
            events.append(
                event(
                    "contact.attempted",
                    placement_id=pid,
                    effective=n % 2 == 0,
                    attempted_at=(local_night if n % 11 == 0 else when).isoformat(),
                    timestamp=when,
                )
            )
    for start in range(0, len(events), 500):
        await world.report("AGA", events[start : start + 500], bulk=True)
    return len(events)


async def test_a_full_run_in_windows_judges_the_events_as_one_stream(world: World) -> None:
    added = await report_many(world)
    db = world.db
    async with db.snapshot() as conn:
        upto = (await conn.execute(sa.select(sa.func.max(EVENTS.c.id)))).scalar_one()
        placements = {row[0]: row for row in await all_rows(conn, placement_facts(db.dialect))}
        rows = await all_rows(conn, event_facts(db.dialect, upto=upto))
    audit = EventAudit(placements)  # the whole stream at once, with nothing in between
    expected = {b.dedupe_key for b in audit.feed(rows)}
    rules = ContactRules.from_settings(SETTINGS)
    expected |= {b.dedupe_key for b in check_contacts(audit.contacts, placements, rules)}
    assert len(expected) > 50

    settings = SETTINGS.model_copy(update={"batch_events": 1_000})  # windows of 1,000 ids
    report = await world.engine(settings).run()
    async with db.connect() as conn:
        stored = set((await conn.execute(sa.select(MISMATCHES.c.dedupe_key))).scalars())
    assert expected <= stored
    classified = report.run.counts["classified"]
    assert classified == {k: v for k, v in audit.counts.items() if v}
    assert sum(classified.values()) == added + sum(len(r) for r in world.by_agency.values())
    found = report.run.counts["found"]
    assert sum(found[k] for k in found if k != "payment_not_received") >= len(expected)


async def test_the_collector_is_paused_for_a_run_and_given_back(world: World) -> None:
    seen: list[bool] = []

    class Watching(type(world.engine())):  # type: ignore[misc]
        async def _statements(self, run: Run) -> None:
            seen.append(gc.isenabled())
            await super()._statements(run)

    class Failing(type(world.engine())):  # type: ignore[misc]
        async def _statements(self, run: Run) -> None:
            raise RuntimeError("power cut")

    assert gc.isenabled()
    engine = Watching(db=world.db, agencies=agencies(), settings=SETTINGS, clock=world.clock)
    assert (await engine.run()).run.state == "completed"
    assert seen == [False] and gc.isenabled()
    failing = Failing(db=world.db, agencies=agencies(), settings=SETTINGS, clock=world.clock)
    with pytest.raises(RuntimeError, match="power cut"):
        await failing.run(full=True)
    assert gc.isenabled()
    gc.disable()
    try:
        await engine.run(dry_run=True)
        assert not gc.isenabled(), "a collector the caller had stopped stays stopped"
    finally:
        gc.enable()

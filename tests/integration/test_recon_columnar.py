"""The events pass in DuckDB (gateway.reconciliation.columnar) against the pure reference
audit (gateway.reconciliation.event_audit and the contact rules), on a real store (SQLite
file, and PostgreSQL when GATEWAY_TEST_POSTGRES_URL is set): a seeded stream of events of
every sort, with long histories per payment ref (partial and full reversals, repeats,
re-reports, over-reversals), disputes around legal action, closes and returns, a recall, and
contact attempts that break every contact rule, must give the same breaks (every field of
every draft), the same counts, the same payments and the same contact violations; from a
resume point and in an incremental run as well."""

import random
from datetime import timedelta

import pytest
import sqlalchemy as sa

from gateway.config.settings import ReconciliationSection
from gateway.reconciliation import columnar, columnar_worker
from gateway.reconciliation.columnar import ColumnarUnavailable, EventPass, open_store
from gateway.reconciliation.columnar_worker import EventsJob
from gateway.reconciliation.contact_rules import ContactRules, check_contacts
from gateway.reconciliation.event_audit import Break, EventAudit
from gateway.reconciliation.sources import affected_placements, event_facts, placement_facts
from gateway.store.row_stream import all_rows
from schemas.events import AgencyEvent
from tests.factories import event, money
from tests.integration.test_recon_engine import (
    EVENTS,
    PLACEMENTS,
    World,
    at,
    world as world,
)

RULES = ContactRules.from_settings(
    ReconciliationSection(max_effective_calls_per_day=1, max_calls_per_7_days=4)
)


def stream(world: World, rng: random.Random, n: int, start_day: float) -> list[AgencyEvent]:
    """``n`` events of every sort on a few placements (and one we never placed)."""
    pids = [world.placement("AGA", i)[0] for i in range(4)]
    pids += [world.placement("AGB", 0)[0], "PL-NEVER-9"]
    events = []
    for k in range(n):
        pid = rng.choice(pids)
        when = at(start_day + k / 40, rng.choice([0, 3, 14, 15, 16, 23]))
        roll = rng.random()
        if roll < 0.3:
            paid = when + timedelta(days=rng.choice([0, 0, 0, -400, 3]))
            events.append(
                event(
                    "payment.reported",
                    placement_id=pid,
                    payment_id=f"P{rng.randrange(3)}",
                    amount=money(
                        rng.choice([300, 500, 800, 50_000_000]), rng.choice(["CNY"] * 9 + ["USD"])
                    ),
                    paid_at=paid.isoformat(),
                    timestamp=when,
                )
            )
        elif roll < 0.45:
            events.append(
                event(
                    "payment.reversed",
                    placement_id=pid,
                    payment_id=f"P{rng.randrange(3)}",
                    amount=money(rng.choice([200, 300, 500, 900])),
                    timestamp=when,
                )
            )
        elif roll < 0.52:
            events.append(event("dispute.opened", placement_id=pid, timestamp=when))
        elif roll < 0.56:
            events.append(event("legal.action", placement_id=pid, timestamp=when))
        elif roll < 0.6:
            reason = rng.choice(["paid_in_full", "settled"])
            events.append(event("case.closed", placement_id=pid, reason=reason, timestamp=when))
        elif roll < 0.63:
            reason = rng.choice(["recalled", "uncollectable"])
            events.append(event("case.returned", placement_id=pid, reason=reason, timestamp=when))
        elif roll < 0.66:
            events.append(event("promise.made", placement_id=pid, timestamp=when))
        else:
            events.append(
                event(
                    "contact.attempted",
                    placement_id=pid,
                    channel=rng.choice(["call", "call", "sms", "letter"]),
                    effective=rng.random() < 0.6,
                    attempted_at=when.isoformat(),
                    timestamp=when,
                )
            )
    return events


async def store(world: World, events: list[AgencyEvent]) -> int:
    for first in range(0, len(events), 200):
        await world.report("AGA", events[first : first + 200], bulk=True)
    async with world.db.connect() as conn:
        return int((await conn.execute(sa.select(sa.func.max(EVENTS.c.id)))).scalar_one())


async def recall(world: World, n: int, days: float) -> None:
    async with world.db.transaction() as conn:
        await conn.execute(
            PLACEMENTS.update()
            .where(PLACEMENTS.c.id == world.placement("AGA", n)[0])
            .values(state="recalled", recalled_at=at(days))
        )


def columnar_pass(world: World, *, after: int, upto: int, emit_after: int) -> EventPass:
    """The pass in the columnar worker, as the engine runs it: DuckDB's copy of SQLite is
    never opened on the store in the process that holds the test's aiosqlite connections."""
    job = EventsJob(world.db.url, 0, after, upto, emit_after, window=1_000, rules=RULES)
    return columnar_worker.executor().submit(columnar_worker.events_pass, job).result()


def as_fields(breaks: list[Break]) -> list[tuple[object, ...]]:
    return [(b.dedupe_key, b.event_id, b.agency_id, b.draft) for b in breaks]


def every_break(found: EventPass) -> list[Break]:
    return [b for w in sorted(found.breaks) for b in found.breaks[w]]


def every_count(found: EventPass) -> dict[str, int]:
    total: dict[str, int] = {}
    for counts in found.counts.values():
        for kind, n in counts.items():
            total[kind] = total.get(kind, 0) + n
    return {k: v for k, v in total.items() if v}


@pytest.mark.parametrize("seed", [1, 2])
async def test_the_columnar_pass_finds_what_the_pure_audit_finds(world: World, seed: int) -> None:
    await recall(world, 1, 3)
    upto = await store(world, stream(world, random.Random(seed), 400, 1))
    db = world.db
    async with db.snapshot() as conn:
        placements = {row[0]: row for row in await all_rows(conn, placement_facts(db.dialect))}
        rows = await all_rows(conn, event_facts(db.dialect, upto=upto))
    audit = EventAudit(placements)
    expected = audit.feed(rows)
    violations = check_contacts(audit.contacts, placements, RULES)
    assert {b.draft.kind for b in expected} >= {
        "unknown_placement",
        "wrong_agency",
        "currency_mismatch",
        "activity_after_recall",
        "conflicting_duplicate",
        "unmatched_reversal",
        "over_collection",
        "date_out_of_window",
        "status_conflict",
    }
    assert {b.rule for b in violations} == {
        "quiet_hours",
        "daily_effective_calls",
        "calls_per_7_days",
    }
    assert audit.counts["repeat"] > 0

    found = columnar_pass(world, after=0, upto=upto, emit_after=0)
    assert as_fields(every_break(found)) == as_fields(expected)
    assert every_count(found) == {k: v for k, v in audit.counts.items() if v}
    assert found.payments == audit.payments
    assert found.contacts == len(audit.contacts)
    assert as_fields(found.violations) == as_fields(violations)
    assert [(b.dedupe_key, b.rule) for b in found.violations] == [
        (b.dedupe_key, b.rule) for b in violations
    ]

    # Resumed past a cut: what follows it, counted from it, the state from before it.
    cut = rows[len(rows) // 2][0]
    resumed = EventAudit(placements)
    resumed.feed([r for r in rows if r[0] <= cut], emit=False)
    resumed.counts.clear()
    after_cut = resumed.feed([r for r in rows if r[0] > cut])
    again = columnar_pass(world, after=0, upto=upto, emit_after=cut)
    assert as_fields(every_break(again)) == as_fields(after_cut)
    assert every_count(again) == {k: v for k, v in resumed.counts.items() if v}
    assert all(w >= cut // 1_000 for w in again.breaks)


async def test_an_incremental_pass_judges_new_events_with_their_debtors_history(
    world: World,
) -> None:
    rng = random.Random(7)
    first = await store(world, stream(world, rng, 250, 1))
    upto = await store(world, stream(world, rng, 120, 10))
    db = world.db
    only = affected_placements(first, upto)
    async with db.snapshot() as conn:
        placements = {
            row[0]: row
            for row in await all_rows(conn, placement_facts(db.dialect, only, named_upto=upto))
        }
        rows = await all_rows(conn, event_facts(db.dialect, upto=upto, after=first, only=only))
    audit = EventAudit(placements)
    audit.feed([r for r in rows if r[0] <= first], emit=False)
    audit.counts.clear()
    expected = audit.feed([r for r in rows if r[0] > first])
    assert expected

    found = columnar_pass(world, after=first, upto=upto, emit_after=first)
    assert as_fields(every_break(found)) == as_fields(expected)
    assert every_count(found) == {k: v for k, v in audit.counts.items() if v}
    assert found.payments == audit.payments
    assert found.known == frozenset(placements)
    assert found.knows(world.placement("AGA", 0)[0]) == audit.knows(world.placement("AGA", 0)[0])


def test_a_database_in_memory_is_refused_by_name() -> None:
    for url in ("sqlite://", "sqlite:///:memory:", "sqlite+aiosqlite:///:memory:"):
        with pytest.raises(ColumnarUnavailable, match="in memory"), open_store(url):
            pass
    with pytest.raises(ColumnarUnavailable, match="mysql"), open_store("mysql://h/db"):
        pass


def test_the_scanners_are_loaded_from_their_packages() -> None:
    for dialect in ("sqlite", "postgresql"):
        path = columnar.extension_path(dialect)
        assert path.is_file() and path.suffix == ".duckdb_extension"
